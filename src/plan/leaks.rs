//! Step 4 of the plan: servers that carry this installation's metadata but belong to no row.
//! They are deleted only when seen on two passes, first seen at least the grace period ago,
//! and still there on a direct GET (done by the executor) — a slow listing or a row being
//! written must never cost a healthy node. Servers without our metadata are never touched.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::policy::LEAK_GRACE_S;
use super::{meta, Action, CloudStep, LocalStep, Observed, Plan, Servers, Step};
use crate::model::ProviderName;

pub(super) fn plan(
    observed: &Observed,
    servers: &BTreeMap<&ProviderName, Servers<'_>>,
    known: &HashSet<&str>,
    plan: &mut Plan,
) {
    let now = observed.now;
    for (provider, index) in servers {
        let action = |step: Step, reason: String| Action {
            provider: (*provider).clone(),
            label: None,
            step,
            reason,
        };
        // A snapshot's template server whose create answered but whose id its row (still
        // being made) has not written: the builder adopts it. Any other is a leak like any
        // server (a recorded one is known already).
        let template_of_a_row = |server: &crate::model::cloud::Server| {
            server
                .metadata
                .get(meta::SNAPSHOT_IMAGE_ID)
                .and_then(|id| id.parse::<i64>().ok())
                .is_some_and(|id| {
                    observed.images.iter().any(|row| {
                        row.id == id
                            && row.state == crate::model::ImageState::Building
                            && row.server_external_id.is_none()
                    })
                })
        };
        let mut candidates: Vec<_> = index
            .by_id
            .values()
            .filter(|server| {
                !known.contains(server.id.as_str())
                    && !template_of_a_row(server)
                    && server.metadata.get(meta::INSTALLATION)
                        == Some(observed.installation.as_str())
                    && server.metadata.get(meta::PROVIDER) == Some(provider.as_str())
            })
            .collect();
        candidates.sort_by(|a, b| a.id.cmp(&b.id));
        let mut leaked = BTreeSet::new();
        for server in candidates {
            leaked.insert(server.id.clone());
            let sighting = observed
                .leaks
                .get(&((*provider).clone(), server.id.clone()));
            let step = match sighting {
                Some(seen) if seen.first_seen + LEAK_GRACE_S <= now && seen.last_seen < now => {
                    Step::Cloud(CloudStep::DeleteLeak {
                        server_id: server.id.clone(),
                    })
                }
                _ => Step::Local(LocalStep::SightLeak {
                    server_id: server.id.clone(),
                }),
            };
            let reason = match sighting {
                None => format!(
                    "server `{}` has this installation's metadata but no row: first sighting",
                    server.name
                ),
                Some(seen) => format!(
                    "server `{}` has no row; first seen {} s ago",
                    server.name,
                    now - seen.first_seen
                ),
            };
            plan.actions.push(action(step, reason));
        }
        for ((sighted_on, server_id), _) in observed.leaks.iter() {
            if sighted_on == *provider && !leaked.contains(server_id) {
                plan.actions.push(action(
                    Step::Local(LocalStep::ForgetLeak {
                        server_id: server_id.clone(),
                    }),
                    "the leaked server is gone or has a row again".into(),
                ));
            }
        }
    }
}
