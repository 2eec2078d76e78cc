//! Execute a plan. Each step is routed once, by its type: store-only steps run first on this
//! thread (`local.rs`), each provider's cloud steps on threads of their own (`launch.rs`,
//! `delete.rs`; as many as `max-concurrency`, at most `CLOUD_THREADS`, so a slow Nova does
//! not serialise a fill; the provider's gate spaces and bounds the calls), and the SSH steps
//! on a small pool (`ssh.rs`), all in parallel. Every cloud call
//! is preceded by a committed intent; every state change is compare-and-set, so an operator's
//! `hold` or `delete` typed meanwhile wins. Errors are collected per action, never stop the
//! others, and become data the next plan reads (last_error, cooldowns). No new mutating call
//! starts after the deadline; what was not done waits for the next round.

mod delete;
mod launch;
mod local;
mod ssh;
mod tally;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use rusqlite::Connection;

pub use delete::{delete_node_servers, servers_of_node};
pub use launch::LaunchCache;
pub use tally::Tally;

use crate::cloud::Cloud;
use crate::config::{Config, Provider};
use crate::model::ProviderName;
use crate::plan::{Action, CloudStep, Plan, SshStep, Step};
use crate::state::{pass, Db};

/// SSH steps of one round run on at most this many threads.
const SSH_WORKERS: usize = 8;
/// Threads per provider for its cloud steps when `max-concurrency` does not say fewer: at
/// 0.5 s a create and `rate` 0.01 s, 50 creates are in flight at once, so 64 keep a slow
/// Nova busy; each thread costs a stack, a malloc arena and a database connection, and a
/// round has at most `max-actions-per-pass` (100) steps per provider anyway.
const CLOUD_THREADS: usize = 64;
/// A provider starts with one thread and doubles them (up to its bound) whenever every one
/// has been on its step this long: on a fast API one thread is fastest (parallel writers
/// only queue for the database), on a slow one the calls overlap within a few ticks.
const SLOW_STEP: Duration = Duration::from_millis(20);
const GROW_TICK: Duration = Duration::from_millis(10);

/// What the executor needs besides the plan.
pub struct Runner<'a, C: Cloud> {
    pub config: &'a Config,
    pub db_path: &'a Path,
    pub clouds: &'a BTreeMap<ProviderName, C>,
    pub installation: &'a str,
    /// No mutating call starts after this.
    pub deadline: Instant,
    /// Flavors, networks and keypairs, looked up once per run.
    pub cache: &'a LaunchCache,
}

/// One thread's share of a round: the run, its own database connection, and what it did.
struct Worker<'r, C: Cloud> {
    runner: &'r Runner<'r, C>,
    conn: &'r Connection,
    now: i64,
    tally: Tally,
}

/// One provider's cloud steps of a round, and its threads' progress.
struct ProviderWork<'a, C: Cloud> {
    cloud: &'a C,
    provider: &'a Provider,
    max_threads: usize,
    queue: Mutex<VecDeque<(&'a Action, &'a CloudStep)>>,
    /// Per thread: since when it is on its current step (None: between steps).
    busy: Mutex<Vec<Option<Instant>>>,
}

impl<C: Cloud> ProviderWork<'_, C> {
    /// A new thread's number.
    fn join(&self) -> usize {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        busy.push(None);
        busy.len() - 1
    }

    fn mark(&self, me: usize, since: Option<Instant>) {
        if let Some(slot) = self
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(me)
        {
            *slot = since;
        }
    }

    /// How many threads to add now: as many again (up to the bound) when every thread has
    /// been on its step for `SLOW_STEP`, else none.
    fn more_threads(&self) -> usize {
        let busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let slow = busy
            .iter()
            .all(|since| since.is_some_and(|at| at.elapsed() >= SLOW_STEP));
        if slow {
            busy.len().min(self.max_threads.saturating_sub(busy.len()))
        } else {
            0
        }
    }
}

/// A worker on one provider's cloud calls.
struct CloudWorker<'r, C: Cloud> {
    work: Worker<'r, C>,
    cloud: &'r C,
    provider: &'r Provider,
}

impl<C: Cloud> Runner<'_, C> {
    pub fn execute(&self, db: &Db, plan: &Plan, now: i64) -> Tally {
        let mut local = Worker {
            runner: self,
            conn: db.conn(),
            now,
            tally: Tally::default(),
        };
        let mut cloud_work: BTreeMap<&ProviderName, Vec<(&Action, &CloudStep)>> = BTreeMap::new();
        let mut ssh_work = VecDeque::new();
        for action in &plan.actions {
            match &action.step {
                Step::Local(step) => {
                    let outcome = local.local(action, step);
                    local.tally.outcome(action, outcome);
                }
                Step::Cloud(step) => cloud_work
                    .entry(&action.provider)
                    .or_default()
                    .push((action, step)),
                Step::Ssh(step) => ssh_work.push_back((action, step)),
            }
        }
        let mut tally = local.tally;
        let providers: Vec<ProviderName> =
            plan.allocation.iter().map(|a| a.provider.clone()).collect();
        if let Err(error) = pass::store_allocations(db.conn(), &providers, &plan.allocation) {
            log::warn!("storing the allocation: {error:#}");
        }
        let ssh_threads = SSH_WORKERS.min(ssh_work.len());
        let ssh_work = Mutex::new(ssh_work);
        let cloud_work: Vec<_> = cloud_work
            .into_iter()
            .filter_map(|(provider, steps)| {
                let cloud = self.clouds.get(provider)?;
                let settings = self.config.providers.get(provider)?;
                let max_threads = settings
                    .max_concurrency
                    .map_or(CLOUD_THREADS, |n| n as usize)
                    .clamp(1, CLOUD_THREADS)
                    .min(steps.len());
                Some(ProviderWork {
                    cloud,
                    provider: settings,
                    max_threads,
                    queue: Mutex::new(VecDeque::from(steps)),
                    busy: Mutex::new(Vec::new()),
                })
            })
            .collect();
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for work in &cloud_work {
                handles.push(scope.spawn(|| self.provider_threads(work, now)));
            }
            for _ in 0..ssh_threads {
                handles.push(scope.spawn(|| self.ssh_worker(&ssh_work, now)));
            }
            for handle in handles {
                match handle.join() {
                    Ok(done) => tally.add(done),
                    Err(_) => tally.errors.push("a worker thread panicked".into()),
                }
            }
        });
        tally
    }

    /// A provider's threads: one, doubled while every one is held up by a slow call.
    fn provider_threads(&self, work: &ProviderWork<'_, C>, now: i64) -> Tally {
        let mut tally = Tally::default();
        std::thread::scope(|scope| {
            // A thread is counted before it starts, so the next look sees it.
            let start = || {
                let me = work.join();
                scope.spawn(move || self.cloud_worker(work, me, now))
            };
            let mut handles = vec![start()];
            // Until the queue is empty, or every thread has ended (one that could not open
            // the database takes no steps; what is left waits for the next round).
            while work.queue.lock().is_ok_and(|q| !q.is_empty())
                && handles.iter().any(|h| !h.is_finished())
            {
                std::thread::sleep(GROW_TICK);
                for _ in 0..work.more_threads() {
                    handles.push(start());
                }
            }
            for handle in handles {
                match handle.join() {
                    Ok(done) => tally.add(done),
                    Err(_) => tally.errors.push("a worker thread panicked".into()),
                }
            }
        });
        tally
    }

    /// One of a provider's threads (number `me`): its cloud steps, taken in plan order
    /// (deletes first).
    fn cloud_worker(&self, work: &ProviderWork<'_, C>, me: usize, now: i64) -> Tally {
        let db = match Db::connect(self.db_path) {
            Ok(db) => db,
            Err(error) => return Tally::failed(format!("{}: {error:#}", work.provider.name)),
        };
        let mut worker = CloudWorker {
            work: Worker {
                runner: self,
                conn: db.conn(),
                now,
                tally: Tally::default(),
            },
            cloud: work.cloud,
            provider: work.provider,
        };
        while let Some((action, step)) = work.queue.lock().ok().and_then(|mut q| q.pop_front()) {
            if Instant::now() >= self.deadline || crate::interrupt::requested() {
                worker.work.tally.deferred += 1;
                continue;
            }
            work.mark(me, Some(Instant::now()));
            let outcome = worker.cloud_step(action, step);
            work.mark(me, None);
            worker.work.tally.outcome(action, outcome);
        }
        worker.work.tally
    }

    fn ssh_worker(&self, queue: &Mutex<VecDeque<(&Action, &SshStep)>>, now: i64) -> Tally {
        let db = match Db::connect(self.db_path) {
            Ok(db) => db,
            Err(error) => return Tally::failed(format!("{error:#}")),
        };
        let mut worker = Worker {
            runner: self,
            conn: db.conn(),
            now,
            tally: Tally::default(),
        };
        while let Some((action, step)) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
            // No SSH step starts after the run's deadline either.
            if Instant::now() >= self.deadline || crate::interrupt::requested() {
                worker.tally.deferred += 1;
                continue;
            }
            let outcome = worker.ssh(step);
            worker.tally.outcome(action, outcome);
        }
        worker.tally
    }
}

impl<C: Cloud> CloudWorker<'_, C> {
    fn cloud_step(&mut self, action: &Action, step: &CloudStep) -> Result<()> {
        match step {
            CloudStep::Launch {
                target,
                image,
                image_id,
                az,
            } => self.launch(action, target, image, image_id, az.as_deref()),
            CloudStep::LaunchSubnode { node } => self.launch_subnode(*node),
            CloudStep::AttachFloatingIp {
                member,
                server_id,
                pool,
                floating_ip_id,
            } => self.attach(action, *member, server_id, pool, floating_ip_id.as_deref()),
            CloudStep::Delete {
                node,
                from,
                server_ids,
                failure,
            } => self.delete(action, *node, *from, server_ids, *failure),
            CloudStep::DeleteLeak { server_id } => self.delete_leak(server_id),
            CloudStep::CheckVanished {
                node,
                from,
                server_id,
                failure,
            } => self.check_vanished(action, *node, *from, server_id, *failure),
        }
    }
}
