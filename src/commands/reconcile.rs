//! `nodepool reconcile [--dry-run] [--provider P] [--duration S]`: rounds of observe → plan →
//! execute while work is in flight, for at most S seconds; one summary line at the end.
//! `--dry-run` prints the first round's plan and changes nothing, not even the database.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;

use super::Context;
use crate::cli::{Format, LockArgs, ReconcileArgs};
use crate::cloud::openstack::OpenStack;
use crate::config::Provider;
use crate::execute::{LaunchCache, Runner, Tally};
use crate::exit::Unreachable;
use crate::interrupt;
use crate::lock::{Lock, LockKind};
use crate::model::ProviderName;
use crate::observe::{self, CloudView};
use crate::output;
use crate::plan::{self, LocalStep, Mode, Plan, Step};
use crate::state::{pass, Db};

/// A run with `--duration 0` still gets this long to start mutating calls in its one round.
const MIN_ROUND_BUDGET: Duration = Duration::from_secs(45);
/// Polling between rounds starts here after progress and backs off to `POLL_MAX`.
const POLL_MIN: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_secs(2);
/// No new round starts with less than this left before the run's deadline: its listings
/// would be cut short and the providers reported unreachable; the next run carries on.
const ROUND_MARGIN: Duration = Duration::from_secs(5);

pub fn run(ctx: &Context, args: &ReconcileArgs) -> Result<()> {
    let providers = select_providers(ctx, args.provider.as_deref())?;
    if args.dry_run {
        return dry_run(ctx, &providers);
    }
    let _lock = take_lock(ctx, "reconcile", &args.lock)?;
    let summary = rounds(
        ctx,
        &connect(ctx, &providers)?,
        Mode::Reconcile,
        Duration::from_secs(args.duration),
    )?;
    summary.print(ctx, "reconcile")?;
    summary.unreachable()
}

pub(super) fn take_lock(ctx: &Context, command: &str, args: &LockArgs) -> Result<Lock> {
    super::take(ctx, LockKind::Run, command, args.wait_lock)
}

/// The providers of this run: all, or the one named (an unknown name is an error).
pub(super) fn select_providers<'a>(
    ctx: &'a Context,
    only: Option<&str>,
) -> Result<Vec<&'a Provider>> {
    match only {
        None => Ok(ctx.config.providers.values().collect()),
        Some(name) => match ctx.config.providers.get(name) {
            Some(provider) => Ok(vec![provider]),
            None => {
                let known: Vec<&str> = ctx.config.providers.keys().map(|p| p.as_str()).collect();
                bail!(
                    "no provider named `{name}` in {}; providers: {}",
                    ctx.config.path.display(),
                    known.join(", ")
                )
            }
        },
    }
}

/// What a run did, printed as one line (or one JSON document).
#[derive(Debug, Serialize)]
pub(super) struct Summary {
    /// What the last round saw.
    pub observed: ObservedCounts,
    pub rounds: u32,
    /// The signal that stopped the run early (`SIGTERM`, `SIGINT`); null when it ran out.
    pub interrupted: Option<&'static str>,
    #[serde(flatten)]
    pub tally: Tally,
    pub errors: usize,
    /// Providers that could not be reached (at connect, or in the last round's listing):
    /// their part was not done, and the command exits 69.
    pub unreachable: Vec<UnreachableProvider>,
    pub api_calls: u64,
    pub seconds: f64,
    /// `cleanup` only: keypairs nodepool made for images no longer configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keypairs_deleted: Option<u32>,
    /// `cleanup` only: unattached floating IPs deleted (`clean-floating-ips`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floating_ips_deleted: Option<u32>,
    /// `cleanup` only: provider images retention removed (old ones, unconfigured ones,
    /// leaked ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_deleted: Option<u32>,
    /// `cleanup` only: local builds retention removed, with their files and logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builds_deleted: Option<u32>,
}

/// What a round saw: nodes by state, servers and images per provider.
#[derive(Debug, Default, Serialize)]
pub(super) struct ObservedCounts {
    pub nodes: BTreeMap<String, u32>,
    pub servers: BTreeMap<String, usize>,
    pub images: BTreeMap<String, usize>,
}

impl ObservedCounts {
    fn of(observed: &plan::Observed) -> ObservedCounts {
        let mut counts = ObservedCounts::default();
        for node in &observed.nodes {
            *counts.nodes.entry(node.state.to_string()).or_default() += 1;
        }
        for (provider, view) in &observed.clouds {
            if let CloudView::Seen {
                servers, images, ..
            } = view
            {
                counts.servers.insert(provider.to_string(), servers.len());
                counts.images.insert(provider.to_string(), images.len());
            }
        }
        counts
    }
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct UnreachableProvider {
    pub provider: ProviderName,
    pub error: String,
}

impl Summary {
    /// Ok, or the exit-69 error naming the providers that could not be reached.
    pub(super) fn unreachable(&self) -> Result<()> {
        Unreachable(
            self.unreachable
                .iter()
                .map(|u| (u.provider.to_string(), u.error.clone()))
                .collect(),
        )
        .into_result()
    }

    /// Print it, and give it to the run's journal row.
    pub(super) fn print(&self, ctx: &Context, command: &str) -> Result<()> {
        ctx.note(|n| n.summary = serde_json::to_string(self).ok());
        match ctx.format {
            Format::Json => output::json(self),
            Format::Table => {
                let t = &self.tally;
                let stopped = self
                    .interrupted
                    .map(|signal| format!(" (interrupted by {signal})"))
                    .unwrap_or_default();
                let mut line = format!(
                    "{command}{stopped}: {} round{}; launched {}, became ready {}, deleting {}, \
                     deleted {}, failed {}",
                    self.rounds,
                    if self.rounds == 1 { "" } else { "s" },
                    t.launched,
                    t.ready,
                    t.deleting,
                    t.deleted,
                    t.failed
                );
                if t.leaks_deleted > 0 {
                    line.push_str(&format!(", leaked servers deleted {}", t.leaks_deleted));
                }
                if let Some(keypairs) = self.keypairs_deleted {
                    line.push_str(&format!(", leaked keypairs deleted {keypairs}"));
                }
                if let Some(ips) = self.floating_ips_deleted.filter(|n| *n > 0) {
                    line.push_str(&format!(", unattached floating IPs deleted {ips}"));
                }
                if let Some(images) = self.images_deleted.filter(|n| *n > 0) {
                    line.push_str(&format!(", images deleted {images}"));
                }
                if let Some(builds) = self.builds_deleted.filter(|n| *n > 0) {
                    line.push_str(&format!(", local builds deleted {builds}"));
                }
                if t.deferred > 0 {
                    line.push_str(&format!(", deferred {}", t.deferred));
                }
                if !self.unreachable.is_empty() {
                    let names: Vec<&str> = self
                        .unreachable
                        .iter()
                        .map(|u| u.provider.as_str())
                        .collect();
                    line.push_str(&format!(
                        "; {} provider{} unreachable ({})",
                        names.len(),
                        if names.len() == 1 { "" } else { "s" },
                        names.join(", ")
                    ));
                }
                line.push_str(&format!(
                    "; {} API calls; {:.1} s",
                    self.api_calls, self.seconds
                ));
                output::line(&line)
            }
        }
    }
}

/// The providers of a run, connected once (one token each, or a stored one) and used by
/// every round.
pub(super) struct Connected {
    pub clouds: BTreeMap<ProviderName, OpenStack>,
    /// The ones that could not be reached, kept so plans say why nothing happens there.
    pub unreachable: BTreeMap<ProviderName, crate::cloud::CloudError>,
    /// The tokens earlier runs stored, as they were read.
    pub stored: BTreeMap<ProviderName, crate::cloud::StoredSession>,
}

impl Connected {
    /// Store the tokens worth keeping for the next run (see `super::keep_sessions`).
    fn keep_sessions(&self, ctx: &Context, db: &Db) {
        let refused = self
            .unreachable
            .iter()
            .filter(|(_, e)| e.kind == crate::cloud::ErrorKind::AuthFailed)
            .map(|(name, _)| name.clone());
        if let Err(error) = super::keep_sessions(ctx, db, &self.clouds, refused, &self.stored) {
            log::warn!("keeping the tokens for the next run: {error:#}");
        }
    }
}

/// Connect to the providers in parallel; an error when none can be reached.
pub(super) fn connect(ctx: &Context, providers: &[&Provider]) -> Result<Connected> {
    let mut connected = Connected {
        clouds: BTreeMap::new(),
        unreachable: BTreeMap::new(),
        stored: super::stored_sessions(ctx),
    };
    let connecting =
        crate::cloud::connect_all(providers.iter().copied(), &ctx.calls, &connected.stored);
    for (provider, cloud) in connecting {
        match cloud {
            Ok(cloud) => {
                connected.clouds.insert(provider.name.clone(), cloud);
            }
            Err(error) => {
                log::warn!(
                    "{}",
                    crate::exit::named(provider.name.as_str(), &error.message)
                );
                connected.unreachable.insert(provider.name.clone(), error);
            }
        }
    }
    if connected.clouds.is_empty() && !providers.is_empty() {
        let why: Vec<String> = connected
            .unreachable
            .iter()
            .map(|(name, error)| crate::exit::named(name.as_str(), &error.message))
            .collect();
        bail!("no provider could be reached; {}", why.join("; "));
    }
    Ok(connected)
}

/// Observe the database and the clouds for one round; keep the image listings it made
/// (unless `dry_run`: then nothing is written).
fn observe_round(
    ctx: &Context,
    db: &Db,
    connected: &Connected,
    dry_run: bool,
) -> Result<observe::Observed> {
    let mut observed = observe::database(db.conn(), crate::clock::now())?;
    let kept = observe::kept_images(db.conn(), &ctx.config, observed.now)?;
    observed.clouds = observe::clouds(&connected.clouds, &kept);
    if !dry_run {
        observe::keep_images(db.conn(), &observed.clouds, &kept)?;
    }
    for (name, error) in &connected.unreachable {
        observed
            .clouds
            .insert(name.clone(), CloudView::unreachable(error));
    }
    for (name, view) in &observed.clouds {
        if let CloudView::Unreachable { error, .. } = view {
            log::warn!("{name}: cannot list: {error}");
        }
    }
    Ok(observed)
}

/// Rounds of observe → plan → execute until nothing is in flight or `duration` is spent.
pub(super) fn rounds(
    ctx: &Context,
    connected: &Connected,
    mode: Mode,
    duration: Duration,
) -> Result<Summary> {
    let started = Instant::now();
    // From here SIGTERM/SIGINT stop the run cleanly; other commands keep the default action.
    interrupt::install();
    let db = ctx.open_db()?;
    connected.keep_sessions(ctx, &db);
    // The lock is held: nothing else uses the scratch directory; a killed run's leftovers go.
    crate::state::reset_work_dir(db.path())?;
    let installation = pass::installation(db.conn())?;
    let cache = LaunchCache::default();
    let deadline = started + duration.max(MIN_ROUND_BUDGET);
    // Every call of the run, listings included, ends by its deadline.
    for cloud in connected.clouds.values() {
        cloud.set_deadline(deadline);
    }
    let runner = Runner {
        config: &ctx.config,
        db_path: db.path(),
        clouds: &connected.clouds,
        installation: &installation,
        deadline,
        cache: &cache,
    };
    let mut tally = Tally::default();
    let mut journal: Vec<serde_json::Value> = Vec::new();
    let mut observed_counts;
    let mut rounds = 0;
    let mut poll = POLL_MIN;
    let mut unreachable: Vec<UnreachableProvider>;
    loop {
        rounds += 1;
        let observed = observe_round(ctx, &db, connected, false)?;
        unreachable = observed
            .clouds
            .iter()
            .filter_map(|(name, view)| match view {
                CloudView::Unreachable { error, .. } => Some(UnreachableProvider {
                    provider: name.clone(),
                    error: error.clone(),
                }),
                CloudView::Seen { .. } => None,
            })
            .collect();
        observed_counts = ObservedCounts::of(&observed);
        let plan = plan::plan(&ctx.config, &observed, mode);
        log_plan(&plan, rounds);
        let done = runner.execute(&db, &plan, observed.now);
        for result in &done.results {
            journal.push(serde_json::json!({
                "round": rounds,
                "action": result.action,
                "reason": result.reason,
                "error": result.error,
            }));
        }
        let progressed = done.progressed;
        // Leak sightings wait out a grace period far longer than a run: not work in flight.
        let acted = plan.actions.iter().any(|a| {
            !matches!(
                a.step,
                Step::Local(LocalStep::SightLeak { .. } | LocalStep::ForgetLeak { .. })
            )
        });
        tally.add(done);
        let spent = started.elapsed();
        if (plan.in_flight == 0 && !acted) || spent >= duration || interrupt::requested() {
            break;
        }
        poll = if progressed {
            POLL_MIN
        } else {
            (poll * 3 / 2).min(POLL_MAX)
        };
        interruptible_sleep(poll.min(duration - spent));
        let left = deadline.saturating_duration_since(Instant::now());
        if interrupt::requested() || left < ROUND_MARGIN {
            break;
        }
    }
    ctx.note(|n| n.actions = serde_json::to_string(&journal).ok());
    let summary = Summary {
        observed: observed_counts,
        rounds,
        interrupted: interrupt::received().map(interrupt::name),
        errors: tally.errors.len(),
        unreachable,
        tally,
        api_calls: ctx.calls.total(),
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        keypairs_deleted: None,
        floating_ips_deleted: None,
        images_deleted: None,
        builds_deleted: None,
    };
    // A token replaced during the run (the cloud refused the stored one) is kept too.
    connected.keep_sessions(ctx, &db);
    Ok(summary)
}

/// Sleep between rounds, but wake within a tenth of a second of SIGTERM or SIGINT.
fn interruptible_sleep(duration: Duration) {
    let until = Instant::now() + duration;
    while !interrupt::requested() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// With `--debug`, every action of every round, with its reason.
fn log_plan(plan: &Plan, round: u32) {
    for action in &plan.actions {
        log::debug!("round {round}: {action}");
    }
    for note in &plan.notes {
        log::info!("{note}");
    }
}

#[derive(Serialize)]
struct DryRun<'a> {
    actions: &'a [plan::Action],
    notes: &'a [String],
    allocation: Vec<AllocationJson<'a>>,
}

#[derive(Serialize)]
struct AllocationJson<'a> {
    label: &'a str,
    provider: &'a str,
    deficit: u32,
    granted: u32,
    blocker: Option<String>,
    /// Stable for scripts: `model::pass::Blocker::code`.
    blocker_code: Option<&'static str>,
}

const DRY_RUN_HEADERS: [&str; 5] = ["Provider", "Label", "Node", "Action", "Reason"];

/// Observe and plan one round; print the plan; write nothing anywhere.
fn dry_run(ctx: &Context, providers: &[&Provider]) -> Result<()> {
    let db = Db::open_read_only(&ctx.config.database)?;
    let observed = observe_round(ctx, &db, &connect(ctx, providers)?, true)?;
    let plan = plan::plan(&ctx.config, &observed, Mode::Reconcile);
    match ctx.format {
        Format::Json => output::json(&DryRun {
            actions: &plan.actions,
            notes: &plan.notes,
            allocation: plan
                .allocation
                .iter()
                .map(|a| AllocationJson {
                    label: a.label.as_str(),
                    provider: a.provider.as_str(),
                    deficit: a.deficit,
                    granted: a.granted,
                    blocker: a.blocker.as_ref().map(ToString::to_string),
                    blocker_code: a.blocker.as_ref().map(|b| b.code()),
                })
                .collect(),
        }),
        Format::Table => {
            let rows: Vec<Vec<String>> = plan
                .actions
                .iter()
                .map(|a| {
                    vec![
                        a.provider.to_string(),
                        a.label.as_ref().map(|l| l.to_string()).unwrap_or_default(),
                        a.step.node().map(|n| n.to_string()).unwrap_or_default(),
                        a.step.name().to_string(),
                        a.reason.clone(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                output::line("nothing to do")?;
            } else {
                output::table(&DRY_RUN_HEADERS, &rows)?;
            }
            for note in &plan.notes {
                output::line(&format!("note: {note}"))?;
            }
            for a in &plan.allocation {
                if let Some(blocker) = &a.blocker {
                    output::line(&format!(
                        "blocked: label {} on {}: {blocker}",
                        a.label, a.provider
                    ))?;
                }
            }
            Ok(())
        }
    }
}
