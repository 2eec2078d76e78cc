//! Step 3 of the plan: new launches. Per label, the deficit against min-ready and the
//! providers that may take it (reachable, a ready image, no cooldown); the allocator
//! (`allocate.rs`) shares the providers' room among the labels; each grant becomes a launch
//! with a target and a zone; what kept a label short is recorded for `status`.

use std::collections::BTreeMap;

use super::images::{ready_image, why_missing};
use super::nodes::Walked;
use super::{allocate, policy, Action, CloudStep, LocalStep, Observed, Plan, Servers, Step};
use crate::config::Config;
use crate::model::pass::{Allocation, Blocker};
use crate::model::{LabelName, ProviderName};

type Key = (LabelName, ProviderName);

/// What the labels ask for, and what the round learned while finding out.
#[derive(Default)]
struct Demand {
    requests: Vec<allocate::Request>,
    /// Per label: min-ready minus its supply (absent for disabled labels).
    deficits: BTreeMap<LabelName, u32>,
    /// The image each eligible label/provider boots from.
    images: BTreeMap<Key, String>,
    blockers: BTreeMap<Key, Blocker>,
}

pub(super) fn plan(
    config: &Config,
    observed: &Observed,
    servers: &BTreeMap<&ProviderName, Servers<'_>>,
    walked: &Walked<'_>,
    plan: &mut Plan,
) -> Vec<Action> {
    let mut demand = demand(config, observed, servers, walked, plan);
    let rooms = rooms(config, servers, walked, plan);
    let grants = allocate::allocate(&demand.requests, &rooms);
    let launches = launch_actions((config, observed), walked, &mut demand, &grants, rooms);
    record_allocation(config, observed, &demand, &grants, plan);
    launches
}

/// Per label: its deficit and the providers eligible to take it; the others get a blocker.
fn demand(
    config: &Config,
    observed: &Observed,
    servers: &BTreeMap<&ProviderName, Servers<'_>>,
    walked: &Walked<'_>,
    plan: &Plan,
) -> Demand {
    let starved = starved_labels(observed);
    let mut demand = Demand::default();
    for label in config.labels.values() {
        let Some(wanted) = wanted(label, observed) else {
            continue; // min-ready -1 (disabled) and nobody waiting for one
        };
        let have = walked.counted.get(&label.name).copied().unwrap_or(0);
        let deficit = wanted.saturating_sub(have);
        demand.deficits.insert(label.name.clone(), deficit);
        let mut eligible = Vec::new();
        for provider in &label.providers {
            if !observed.clouds.contains_key(provider) {
                continue; // not part of this run (`--provider`)
            }
            let key = (label.name.clone(), provider.clone());
            let blocker = match servers.get(provider) {
                None => match &observed.clouds[provider] {
                    super::CloudView::Unreachable {
                        error,
                        auth_refused: true,
                    } => Blocker::AuthRefused {
                        error: error.clone(),
                    },
                    super::CloudView::Unreachable { error, .. } => Blocker::Unreachable {
                        error: error.clone(),
                    },
                    super::CloudView::Seen { .. } => continue,
                },
                Some(index) => match ready_image(config, observed, provider, &label.image, index) {
                    None => Blocker::NoReadyImage {
                        image: label.image.clone(),
                        why: why_missing(config, observed, provider, &label.image),
                    },
                    Some(image_id) => {
                        demand.images.insert(key.clone(), image_id);
                        match cooldown(observed, provider, &label.name)
                            .or_else(|| starting_cooldown(observed, plan, provider, &label.name))
                        {
                            Some(blocker) => blocker,
                            None => {
                                eligible.push(provider.clone());
                                continue;
                            }
                        }
                    }
                },
            };
            demand.blockers.insert(key, blocker);
        }
        demand.requests.push(allocate::Request {
            label: label.name.clone(),
            deficit,
            size: 1 + label.subnodes,
            providers: eligible,
            starved: starved.get(&label.name).copied().unwrap_or(false),
        });
    }
    demand
}

/// Labels that were short last pass and got nothing: they take the first turn.
fn starved_labels(observed: &Observed) -> BTreeMap<&LabelName, bool> {
    let mut got: BTreeMap<&LabelName, (u32, u32)> = BTreeMap::new();
    for row in &observed.allocations {
        let entry = got.entry(&row.label).or_default();
        entry.0 = entry.0.max(row.deficit);
        entry.1 += row.granted;
    }
    got.into_iter()
        .map(|(label, (deficit, granted))| (label, deficit > 0 && granted == 0))
        .collect()
}

/// What each listed provider can still take this round: servers under max-servers, and
/// mutating calls under the per-pass bound after the walk's own.
fn rooms(
    config: &Config,
    servers: &BTreeMap<&ProviderName, Servers<'_>>,
    walked: &Walked<'_>,
    plan: &Plan,
) -> BTreeMap<ProviderName, allocate::Room> {
    let mut rooms = BTreeMap::new();
    for (name, provider) in &config.providers {
        if !servers.contains_key(name) {
            continue;
        }
        let used = walked.servers_used.get(name).copied().unwrap_or(0);
        let mutating = plan
            .actions
            .iter()
            .filter(|a| &a.provider == name && a.step.is_cloud_call())
            .count() as u32;
        rooms.insert(
            name.clone(),
            allocate::Room {
                servers: provider.max_servers.saturating_sub(used),
                launches: provider.max_actions_per_pass.saturating_sub(mutating),
            },
        );
    }
    rooms
}

/// Each grant as a launch with its target and zone; what kept the rest of a deficit from
/// being granted goes to the blockers.
fn launch_actions(
    (config, observed): (&Config, &Observed),
    walked: &Walked<'_>,
    demand: &mut Demand,
    grants: &allocate::Grants,
    mut left: BTreeMap<ProviderName, allocate::Room>,
) -> Vec<Action> {
    let mut launches = Vec::new();
    for request in &demand.requests {
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
        let mut targets = allocate::spread_targets(
            total,
            walked.per_target.get(&request.label).unwrap_or(&no_nodes),
        )
        .into_iter();
        let have = walked.counted.get(&label.name).copied().unwrap_or(0);
        let asked = requested(&label.name, observed);
        let reason = format!(
            "label {}: {} ready/building/test < min-ready {}{}",
            label.name,
            have,
            label.min_ready.unwrap_or(0),
            if asked > 0 {
                format!(" + {asked} asked for by acquire --wait")
            } else {
                String::new()
            }
        );
        for provider in &request.providers {
            let count = granted_here(provider);
            if let Some(room) = left.get_mut(provider) {
                room.servers = room.servers.saturating_sub(count * request.size);
                room.launches = room.launches.saturating_sub(count);
            }
            let (Some(provider_config), Some(image_id)) = (
                config.providers.get(provider),
                demand.images.get(&(label.name.clone(), provider.clone())),
            ) else {
                continue;
            };
            let mut zones = walked.zones.get(provider).cloned().unwrap_or_default();
            for _ in 0..count {
                let Some(target) = targets.next() else { break };
                let az = allocate::choose_az(&provider_config.availability_zones, &zones);
                if let Some(az) = &az {
                    *zones.entry(az.clone()).or_default() += 1;
                }
                launches.push(Action {
                    provider: provider.clone(),
                    label: Some(label.name.clone()),
                    step: Step::Cloud(CloudStep::Launch {
                        target,
                        image: label.image.clone(),
                        image_id: image_id.clone(),
                        az,
                    }),
                    reason: reason.clone(),
                });
            }
        }
        if total < request.deficit {
            for provider in &request.providers {
                let room = left.get(provider).copied().unwrap_or_default();
                let blocker = if room.servers < request.size {
                    Blocker::AtMaxServers
                } else if room.launches == 0 {
                    Blocker::PerPassBound
                } else {
                    continue;
                };
                demand
                    .blockers
                    .insert((request.label.clone(), provider.clone()), blocker);
            }
        }
    }
    launches
}

/// This pass's share per label and provider, with what blocked it, for fairness next pass
/// and for `status`.
fn record_allocation(
    config: &Config,
    observed: &Observed,
    demand: &Demand,
    grants: &allocate::Grants,
    plan: &mut Plan,
) {
    for label in config.labels.values() {
        let Some(deficit) = demand.deficits.get(&label.name) else {
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
                    demand.blockers.get(&key).cloned()
                } else {
                    None
                },
                time: observed.now,
            });
        }
    }
}

/// A stored cooldown of `label` (or a quota wait of the whole provider) still running.
fn cooldown(observed: &Observed, provider: &ProviderName, label: &LabelName) -> Option<Blocker> {
    let now = observed.now;
    observed
        .cooldowns
        .iter()
        .filter(|c| &c.provider == provider && policy::cooldown_end(c) > now)
        .find(|c| c.label.is_none() || c.label.as_ref() == Some(label))
        .map(|c| {
            let seconds_left = policy::cooldown_end(c) - now;
            let error = c.last_error.clone().unwrap_or_default();
            match c.label {
                None => Blocker::Quota {
                    seconds_left,
                    error,
                },
                Some(_) => Blocker::Cooldown {
                    seconds_left,
                    failures: c.failures,
                    error,
                },
            }
        })
}

/// The cooldown that the launch failures this round is about to record will start: the
/// round must not launch replacements that the stored count alone would still allow.
fn starting_cooldown(
    observed: &Observed,
    plan: &Plan,
    provider: &ProviderName,
    label: &LabelName,
) -> Option<Blocker> {
    let pending = plan
        .actions
        .iter()
        .filter(|a| &a.provider == provider && a.label.as_ref() == Some(label))
        .filter(|a| {
            matches!(
                a.step,
                Step::Cloud(CloudStep::Delete { failure: true, .. })
                    | Step::Local(LocalStep::Forget { failure: true, .. })
            )
        })
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
    (policy::cooldown_seconds(failures) > 0).then_some(Blocker::CooldownStarting { failures })
}

/// How many nodes of `label` should be ready or on their way: min-ready plus what `acquire
/// --wait` asks for (requests not yet expired); `None` for a disabled label nobody asked for.
fn wanted(label: &crate::config::Label, observed: &Observed) -> Option<u32> {
    let asked = requested(&label.name, observed);
    match label.min_ready {
        Some(min_ready) => Some(min_ready + asked),
        None if asked > 0 => Some(asked),
        None => None,
    }
}

/// The nodes of `label` that live `acquire --wait` requests ask for.
fn requested(label: &crate::model::LabelName, observed: &Observed) -> u32 {
    observed
        .requests
        .iter()
        .filter(|r| &r.label == label && r.expires >= observed.now)
        .map(|r| r.count)
        .sum()
}
