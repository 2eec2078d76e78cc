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

pub mod action;
pub mod allocate;
mod leaks;
mod nodes;

use std::collections::{BTreeMap, HashMap};

pub use action::{Action, Kind};

use crate::cloud::{Image, Server};
use crate::config::{Config, ImageSource};
use crate::model::{LabelName, NodeId, NodeState, ProviderName};
use crate::observe::{CloudView, Observed};
use crate::state::pass::Allocation;

/// Nodes in a non-ready, non-hold state this long are deleted (2015's cleanup rule).
pub const STALE_AFTER_S: i64 = 8 * 3600;
/// A server still listed this long after its delete call gets another delete call.
pub const DELETE_RETRY_S: i64 = 60;
/// A leaked server is deleted only after it was first seen this long ago.
pub const LEAK_GRACE_S: i64 = 300;

pub use crate::cloud::meta;

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
    by_subnode: HashMap<i64, &'a Server>,
    images: &'a [Image],
}

impl<'a> Servers<'a> {
    fn index(servers: &'a [Server], images: &'a [Image], installation: &str) -> Servers<'a> {
        let mut index = Servers {
            images,
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
                    index.by_subnode.insert(subnode, server);
                }
                (None, Some(node)) => index.by_node.entry(node).or_default().push(server),
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
            CloudView::Seen { servers, images } => Some((
                name,
                Servers::index(servers, images, &observed.installation),
            )),
            CloudView::Unreachable { .. } => None,
        })
        .collect();
    let mut plan = Plan::default();
    let walked = nodes::walk(config, observed, &servers, mode, &mut plan);
    let mut launches = Vec::new();
    if mode == Mode::Reconcile {
        launches = allocate_launches(config, observed, &servers, &walked, &mut plan);
    }
    leaks::plan(observed, &servers, &walked.known_servers, &mut plan);
    // Cleanup drops what it would not do before the bound, so that work neither takes the
    // budget nor is reported as deferred.
    if mode == Mode::Cleanup {
        plan.actions.retain(|a| {
            matches!(
                a.kind,
                Kind::Delete { .. }
                    | Kind::RemoveRow { .. }
                    | Kind::Forget { .. }
                    | Kind::SightLeak { .. }
                    | Kind::DeleteLeak { .. }
                    | Kind::ForgetLeak { .. }
            )
        });
    }
    bound(config, &mut plan, launches);
    plan
}

/// The newest ready image of `image` on a provider, as the cloud id to boot from.
fn ready_image(
    config: &Config,
    observed: &Observed,
    provider: &ProviderName,
    image: &crate::model::ImageName,
    servers: &Servers<'_>,
) -> Option<String> {
    let wanted = config.providers.get(provider)?.images.get(image)?;
    let active = |id: &str| {
        servers
            .images
            .iter()
            .any(|i| i.id == id && i.status == "active")
    };
    match &wanted.source {
        // The cloud's own image, by UUID or by name (the first listed: Glance lists newest
        // first).
        ImageSource::Cloud { base_image } => servers
            .images
            .iter()
            .find(|i| i.status == "active" && (&i.id == base_image || &i.name == base_image))
            .map(|i| i.id.clone()),
        // Images nodepool made: the newest ready row the cloud still has.
        ImageSource::Snapshot { .. } | ImageSource::DiskImage { .. } => observed
            .images
            .iter()
            .filter(|row| {
                &row.provider == provider
                    && &row.image == image
                    && row.state == crate::model::ImageState::Ready
            })
            .filter_map(|row| row.external_id.clone())
            .rfind(|id| active(id)),
    }
}

/// Decide new launches: per label deficit, spread over eligible providers.
fn allocate_launches(
    config: &Config,
    observed: &Observed,
    servers: &BTreeMap<&ProviderName, Servers<'_>>,
    walked: &nodes::Walked,
    plan: &mut Plan,
) -> Vec<Action> {
    let now = observed.now;
    let starved: BTreeMap<&LabelName, bool> = {
        let mut got: BTreeMap<&LabelName, (u32, u32)> = BTreeMap::new();
        for row in &observed.allocations {
            let entry = got.entry(&row.label).or_default();
            entry.0 = entry.0.max(row.deficit);
            entry.1 += row.granted;
        }
        got.into_iter()
            .map(|(label, (deficit, granted))| (label, deficit > 0 && granted == 0))
            .collect()
    };
    let mut requests = Vec::new();
    let mut blockers: BTreeMap<(LabelName, ProviderName), String> = BTreeMap::new();
    let mut images: BTreeMap<(LabelName, ProviderName), String> = BTreeMap::new();
    let mut deficits: BTreeMap<LabelName, u32> = BTreeMap::new();
    for label in config.labels.values() {
        let Some(min_ready) = label.min_ready else {
            continue; // min-ready -1: disabled
        };
        let have = walked.counted.get(&label.name).copied().unwrap_or(0);
        let deficit = min_ready.saturating_sub(have);
        deficits.insert(label.name.clone(), deficit);
        let mut eligible = Vec::new();
        for provider in &label.providers {
            let key = (label.name.clone(), provider.clone());
            let blocker = match (observed.clouds.get(provider), servers.get(provider)) {
                (None, _) => continue, // not part of this run (`--provider`)
                (Some(CloudView::Unreachable { error }), _) => {
                    Some(format!("unreachable: {error}"))
                }
                (_, Some(index)) => {
                    match ready_image(config, observed, provider, &label.image, index) {
                        None => Some(format!("no ready image `{}`", label.image)),
                        Some(image_id) => {
                            images.insert(key.clone(), image_id);
                            cooldown_blocker(observed, provider, &label.name, now)
                                .or_else(|| failing_blocker(observed, plan, provider, &label.name))
                        }
                    }
                }
                (Some(_), None) => continue,
            };
            match blocker {
                Some(blocker) => {
                    blockers.insert(key, blocker);
                }
                None => eligible.push(provider.clone()),
            }
        }
        requests.push(allocate::Request {
            label: label.name.clone(),
            deficit,
            size: 1 + label.subnodes,
            providers: eligible,
            starved: starved.get(&label.name).copied().unwrap_or(false),
        });
    }
    let mut rooms = BTreeMap::new();
    for (name, provider) in &config.providers {
        if !servers.contains_key(name) {
            continue;
        }
        let used = walked.servers_used.get(name).copied().unwrap_or(0);
        let mutating = plan
            .actions
            .iter()
            .filter(|a| &a.provider == name && a.kind.is_mutating())
            .count() as u32;
        rooms.insert(
            name.clone(),
            allocate::Room {
                servers: provider.max_servers.saturating_sub(used),
                launches: provider.max_actions_per_pass.saturating_sub(mutating),
            },
        );
    }
    let grants = allocate::allocate(&requests, &rooms);
    let mut left = rooms.clone();
    let mut launches = Vec::new();
    for request in &requests {
        let label = &config.labels[&request.label];
        let granted_here = |p: &ProviderName| {
            grants
                .get(&(request.label.clone(), p.clone()))
                .copied()
                .unwrap_or(0)
        };
        let total: u32 = request.providers.iter().map(granted_here).sum();
        // The walk gave every label an entry for every target.
        let no_nodes = BTreeMap::new();
        let targets = allocate::spread_targets(
            total,
            walked.per_target.get(&request.label).unwrap_or(&no_nodes),
        );
        let mut targets = targets.into_iter();
        let have = walked.counted.get(&label.name).copied().unwrap_or(0);
        let reason = format!(
            "label {}: {} ready/building/test < min-ready {}",
            label.name,
            have,
            label.min_ready.unwrap_or(0)
        );
        for provider in &request.providers {
            let count = granted_here(provider);
            if let Some(room) = left.get_mut(provider) {
                room.servers = room.servers.saturating_sub(count * request.size);
                room.launches = room.launches.saturating_sub(count);
            }
            let mut zones = walked.zones.get(provider).cloned().unwrap_or_default();
            let Some(provider_config) = config.providers.get(provider) else {
                continue;
            };
            for _ in 0..count {
                let Some(target) = targets.next() else { break };
                let az = allocate::choose_az(&provider_config.availability_zones, &zones);
                if let Some(az) = &az {
                    *zones.entry(az.clone()).or_default() += 1;
                }
                launches.push(Action {
                    provider: provider.clone(),
                    label: Some(label.name.clone()),
                    node: None,
                    kind: Kind::Launch {
                        target,
                        image: label.image.clone(),
                        image_id: images[&(label.name.clone(), provider.clone())].clone(),
                        az,
                    },
                    reason: reason.clone(),
                });
            }
        }
        // What kept the rest of the deficit from being granted, per eligible provider.
        if total < request.deficit {
            for provider in &request.providers {
                let room = left.get(provider).copied().unwrap_or_default();
                let blocker = if room.servers < request.size {
                    "at max-servers"
                } else if room.launches == 0 {
                    "per-pass bound"
                } else {
                    continue;
                };
                blockers.insert(
                    (request.label.clone(), provider.clone()),
                    blocker.to_string(),
                );
            }
        }
    }
    for label in config.labels.values() {
        let Some(deficit) = deficits.get(&label.name) else {
            continue;
        };
        for provider in &label.providers {
            if !observed.clouds.contains_key(provider) {
                continue;
            }
            let key = (label.name.clone(), provider.clone());
            plan.allocation.push(Allocation {
                label: label.name.clone(),
                provider: provider.clone(),
                deficit: *deficit,
                granted: grants.get(&key).copied().unwrap_or(0),
                blocker: if *deficit > 0 {
                    blockers.get(&key).cloned()
                } else {
                    None
                },
                time: now,
            });
        }
    }
    launches
}

/// Why `label` may not launch on `provider` now, if a cooldown says so.
fn cooldown_blocker(
    observed: &Observed,
    provider: &ProviderName,
    label: &LabelName,
    now: i64,
) -> Option<String> {
    observed
        .cooldowns
        .iter()
        .filter(|c| &c.provider == provider && c.until > now)
        .find(|c| c.label.is_none() || c.label.as_ref() == Some(label))
        .map(|c| {
            let error = c.last_error.as_deref().unwrap_or("");
            if c.label.is_none() {
                format!("quota, {} s left: {error}", c.until - now)
            } else {
                format!(
                    "cooldown, {} s left after {} failures: {error}",
                    c.until - now,
                    c.failures
                )
            }
        })
}

/// The cooldown that the launch failures this round is about to record will start: the
/// round must not launch replacements that the stored count alone would still allow.
fn failing_blocker(
    observed: &Observed,
    plan: &Plan,
    provider: &ProviderName,
    label: &LabelName,
) -> Option<String> {
    let pending = plan
        .actions
        .iter()
        .filter(|a| &a.provider == provider && a.label.as_ref() == Some(label))
        .filter(|a| matches!(a.kind, Kind::Delete { failure: true, .. }))
        .count() as u32;
    if pending == 0 {
        return None;
    }
    let stored = observed
        .cooldowns
        .iter()
        .find(|c| &c.provider == provider && c.label.as_ref() == Some(label))
        .map_or(0, |c| c.failures);
    let failures = stored + pending;
    (crate::state::pass::cooldown_seconds(failures) > 0)
        .then(|| format!("cooldown starting after {failures} failures"))
}

/// Keep at most `max-actions-per-pass` mutating actions per provider: deletes first, then
/// launch steps of existing nodes, then new launches. Deferred work keeps the run polling.
fn bound(config: &Config, plan: &mut Plan, launches: Vec<Action>) {
    let mut used: BTreeMap<ProviderName, u32> = BTreeMap::new();
    let mut deferred: BTreeMap<ProviderName, u32> = BTreeMap::new();
    let mut actions = std::mem::take(&mut plan.actions);
    // Stable sort: deletes before other mutating steps; order otherwise kept.
    actions.sort_by_key(|a| !matches!(a.kind, Kind::Delete { .. } | Kind::DeleteLeak { .. }));
    actions.extend(launches);
    for action in actions {
        if action.kind.is_mutating() {
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

impl NodeState {
    /// Counted against min-ready.
    fn counts_as_supply(self) -> bool {
        matches!(
            self,
            NodeState::Ready | NodeState::Building | NodeState::Test
        )
    }
}

#[cfg(test)]
mod tests;
