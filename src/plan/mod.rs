//! The planner: a pure function of the configuration, what a round observed and the time it
//! observed it. No I/O; the same input gives the same plan.
//!
//! Step by step:
//! 1. Index each reachable provider's servers by id and by the node id in their metadata.
//! 2. Walk every node (`nodes.rs`): held nodes are never touched; nodes whose label or target
//!    left the configuration are deleted; building nodes advance one step of their launch
//!    (adopt → ACTIVE → address → SSH host keys → bootstrap → ready) or fail (ERROR,
//!    launch-timeout, boot-timeout, vanished); nodes in `delete` get their servers deleted,
//!    then their row removed once every server is gone.
//! 3. Allocate (`allocate.rs`): per label, deficit = min-ready − (ready + building + test),
//!    over providers with a ready image, room under max-servers and the per-pass bound, and
//!    no cooldown. What blocks a label is recorded for `status`.
//! 4. Leaks (`leaks.rs`): servers with this installation's metadata and no row are sighted,
//!    and deleted only when seen again after the grace period.
//! 5. Bound the mutating calls per provider (deletes first, then launch steps, then new
//!    launches); the rest waits for the next round.

pub mod allocate;
mod images;
pub mod input;
mod launches;
mod leaks;
mod nodes;
pub mod policy;
pub mod retention;
pub mod step;

use std::collections::{BTreeMap, HashMap};

pub use images::launches_from;
pub use input::{CloudView, Observed};
pub use step::{Action, CloudStep, LocalStep, SshStep, Step};

use crate::config::Config;
use crate::model::cloud::{meta, Image, Server};
use crate::model::pass::Allocation;
use crate::model::{NodeId, ProviderName, SubnodeId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything: launches, lifecycle, deletes, leaks.
    Reconcile,
    /// Only what removes things: deletes, stale nodes, leaks (`nodepool cleanup`).
    Cleanup,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Things an operator should know that need no action (held nodes of removed labels, …).
    pub notes: Vec<String>,
    /// This pass's allocation per label and provider, stored for fairness and `status`.
    pub allocation: Vec<Allocation>,
    /// Nodes on their way (building, deleting) or actions deferred: the run polls again.
    pub in_flight: usize,
}

/// One provider's servers, indexed.
#[derive(Default)]
struct Servers<'a> {
    by_id: HashMap<&'a str, &'a Server>,
    /// Servers of this installation by the node id in their metadata (subnodes excluded).
    by_node: HashMap<NodeId, Vec<&'a Server>>,
    by_subnode: HashMap<SubnodeId, &'a Server>,
    images: &'a [Image],
    /// When `images` was listed (it may be an earlier round's listing).
    images_listed_at: i64,
}

impl<'a> Servers<'a> {
    fn index(
        servers: &'a [Server],
        (images, images_listed_at): (&'a [Image], i64),
        installation: &str,
    ) -> Servers<'a> {
        let mut index = Servers {
            images,
            images_listed_at,
            ..Servers::default()
        };
        for server in servers {
            index.by_id.insert(&server.id, server);
            if server.metadata.get(meta::INSTALLATION) != Some(installation) {
                continue;
            }
            let id = |key| server.metadata.get(key).and_then(|v| v.parse::<i64>().ok());
            match (id(meta::SUBNODE_ID), id(meta::NODE_ID)) {
                (Some(subnode), _) => {
                    index.by_subnode.insert(SubnodeId(subnode), server);
                }
                (None, Some(node)) => index.by_node.entry(NodeId(node)).or_default().push(server),
                (None, None) => {}
            }
        }
        index
    }

    fn live(&self, id: Option<&str>) -> Option<&'a Server> {
        id.and_then(|id| self.by_id.get(id).copied())
    }
}

pub fn plan(config: &Config, observed: &Observed, mode: Mode) -> Plan {
    let servers: BTreeMap<&ProviderName, Servers<'_>> = observed
        .clouds
        .iter()
        .filter_map(|(name, view)| match view {
            CloudView::Seen {
                servers,
                images,
                images_listed_at,
            } => Some((
                name,
                Servers::index(servers, (images, *images_listed_at), &observed.installation),
            )),
            CloudView::Unreachable { .. } => None,
        })
        .collect();
    let mut plan = Plan::default();
    let walked = nodes::walk(config, observed, &servers, mode, &mut plan);
    let mut launches = Vec::new();
    if mode == Mode::Reconcile {
        launches = launches::plan(config, observed, &servers, &walked, &mut plan);
        images::rollbacks(
            config,
            observed,
            servers.keys().map(|p| (*p).clone()),
            &mut plan,
        );
    }
    leaks::plan(observed, &servers, &walked.known_servers, &mut plan);
    // Cleanup drops what it would not do before the bound, so that work neither takes the
    // budget nor is reported as deferred.
    if mode == Mode::Cleanup {
        plan.actions.retain(|a| {
            matches!(
                a.step,
                Step::Cloud(
                    CloudStep::Delete { .. }
                        | CloudStep::DeleteLeak { .. }
                        | CloudStep::CheckVanished { .. }
                ) | Step::Local(
                    LocalStep::RemoveRow { .. }
                        | LocalStep::Forget { .. }
                        | LocalStep::SightLeak { .. }
                        | LocalStep::ForgetLeak { .. }
                )
            )
        });
    }
    bound(config, &mut plan, launches);
    plan
}

/// Keep at most `max-actions-per-pass` mutating actions per provider: deletes first, then
/// launch steps of existing nodes, then new launches. Deferred work keeps the run polling.
fn bound(config: &Config, plan: &mut Plan, launches: Vec<Action>) {
    let mut used: BTreeMap<ProviderName, u32> = BTreeMap::new();
    let mut deferred: BTreeMap<ProviderName, u32> = BTreeMap::new();
    let mut actions = std::mem::take(&mut plan.actions);
    // Stable sort: deletes before other mutating steps; order otherwise kept.
    actions.sort_by_key(|a| !a.step.is_delete());
    actions.extend(launches);
    for action in actions {
        if action.step.is_cloud_call() {
            let limit = config
                .providers
                .get(&action.provider)
                .map_or(u32::MAX, |p| p.max_actions_per_pass);
            let count = used.entry(action.provider.clone()).or_default();
            if *count >= limit {
                *deferred.entry(action.provider.clone()).or_default() += 1;
                continue;
            }
            *count += 1;
        }
        plan.actions.push(action);
    }
    for (provider, count) in deferred {
        plan.in_flight += 1;
        plan.notes.push(format!(
            "{provider}: {count} actions deferred to the next round by max-actions-per-pass"
        ));
    }
}

#[cfg(test)]
mod tests;
