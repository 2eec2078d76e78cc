//! The allocator, after Nodepool's 2015 one: share the free room of the providers among the
//! labels that are short of min-ready.
//!
//! - A label's request may go only to its eligible providers (configured, reachable, with a
//!   ready image, not cooling down).
//! - Room is counted in servers (a node with N subnodes takes N + 1) and in launches (the
//!   per-pass bound).
//! - Labels take turns one node at a time, so a small label is never starved by a large one;
//!   a label that got nothing last pass while it was short takes the first turn.
//! - Each node goes to the eligible provider where this label's share is smallest relative
//!   to that provider's room, which spreads a label over providers in proportion to capacity.
//!
//! Pure: the same input gives the same grants.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::model::{LabelName, ProviderName, TargetName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub label: LabelName,
    /// Nodes wanted: min-ready minus ready, building and test.
    pub deficit: u32,
    /// Servers one node takes: 1 + subnodes.
    pub size: u32,
    /// Eligible providers.
    pub providers: Vec<ProviderName>,
    /// The label was short last pass and got nothing.
    pub starved: bool,
}

/// What a provider can still take this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Room {
    /// max-servers minus the servers it has.
    pub servers: u32,
    /// Launches left under the per-pass bound.
    pub launches: u32,
}

/// Nodes granted per (label, provider); absent means none.
pub type Grants = BTreeMap<(LabelName, ProviderName), u32>;

pub fn allocate(requests: &[Request], room: &BTreeMap<ProviderName, Room>) -> Grants {
    let mut order: Vec<&Request> = requests.iter().filter(|r| r.deficit > 0).collect();
    // Starved labels first, then small requests, then by name: stable and fair.
    order.sort_by(|a, b| {
        b.starved
            .cmp(&a.starved)
            .then(a.deficit.cmp(&b.deficit))
            .then(a.label.cmp(&b.label))
    });
    let capacity: BTreeMap<&ProviderName, u32> =
        room.iter().map(|(name, r)| (name, r.servers)).collect();
    let mut left = room.clone();
    let mut wanted: Vec<u32> = order.iter().map(|r| r.deficit).collect();
    let mut grants = Grants::new();
    loop {
        let mut granted_this_turn = false;
        for (request, wanted) in order.iter().zip(wanted.iter_mut()) {
            if *wanted == 0 {
                continue;
            }
            let Some(provider) = choose(request, &left, &capacity, &grants) else {
                // Nothing fits this label any more.
                *wanted = 0;
                continue;
            };
            let room = left.get_mut(provider).expect("chosen from room");
            room.servers -= request.size;
            room.launches -= 1;
            *grants
                .entry((request.label.clone(), provider.clone()))
                .or_default() += 1;
            *wanted -= 1;
            granted_this_turn = true;
        }
        if !granted_this_turn {
            return grants;
        }
    }
}

/// The eligible provider with room where this label's share, relative to the provider's
/// capacity, would be smallest; ties go to the provider named first.
fn choose<'a>(
    request: &'a Request,
    left: &BTreeMap<ProviderName, Room>,
    capacity: &BTreeMap<&ProviderName, u32>,
    grants: &Grants,
) -> Option<&'a ProviderName> {
    let share = |provider: &ProviderName| -> (u64, u64) {
        let had = grants
            .get(&(request.label.clone(), provider.clone()))
            .copied()
            .unwrap_or(0);
        let cap = capacity.get(provider).copied().unwrap_or(0).max(1);
        (u64::from(had) + 1, u64::from(cap))
    };
    request
        .providers
        .iter()
        .filter(|p| {
            left.get(*p)
                .is_some_and(|r| r.servers >= request.size && r.launches > 0)
        })
        .min_by(|a, b| {
            let (na, da) = share(a);
            let (nb, db) = share(b);
            // na/da against nb/db without floating point.
            (na * db).cmp(&(nb * da)).then_with(|| a.cmp(b))
        })
}

/// Spread `count` new nodes of a label over its targets, evenly: each goes to the target
/// with the fewest nodes of the label (existing counts given), ties by name.
pub fn spread_targets(count: u32, existing: &BTreeMap<TargetName, u32>) -> Vec<TargetName> {
    let mut counts = existing.clone();
    (0..count)
        .filter_map(|_| {
            let target = counts
                .iter()
                .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
                .map(|(name, _)| name.clone())?;
            *counts.get_mut(&target).expect("present") += 1;
            Some(target)
        })
        .collect()
}

/// Pick an availability zone: the one with the fewest nodes of the provider (ties: the
/// order the operator listed them).
pub fn choose_az(zones: &[String], used: &BTreeMap<String, u32>) -> Option<String> {
    zones
        .iter()
        .enumerate()
        .min_by(|(ia, a), (ib, b)| {
            let ua = used.get(*a).copied().unwrap_or(0);
            let ub = used.get(*b).copied().unwrap_or(0);
            match ua.cmp(&ub) {
                Ordering::Equal => ia.cmp(ib),
                other => other,
            }
        })
        .map(|(_, zone)| zone.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(label: &str, deficit: u32, providers: &[&str]) -> Request {
        Request {
            label: label.into(),
            deficit,
            size: 1,
            providers: providers.iter().map(|p| (*p).into()).collect(),
            starved: false,
        }
    }

    fn room(rooms: &[(&str, u32)]) -> BTreeMap<ProviderName, Room> {
        rooms
            .iter()
            .map(|(name, servers)| {
                (
                    (*name).into(),
                    Room {
                        servers: *servers,
                        launches: 1000,
                    },
                )
            })
            .collect()
    }

    fn granted(grants: &Grants, label: &str, provider: &str) -> u32 {
        grants
            .get(&(label.into(), provider.into()))
            .copied()
            .unwrap_or(0)
    }

    #[test]
    fn allocation_rules_table() {
        struct Case {
            name: &'static str,
            requests: Vec<Request>,
            room: BTreeMap<ProviderName, Room>,
            /// (label, provider, nodes)
            expect: &'static [(&'static str, &'static str, u32)],
        }
        let cases = vec![
            Case {
                name: "deficit fits: all granted on the one provider",
                requests: vec![request("small", 3, &["p1"])],
                room: room(&[("p1", 10)]),
                expect: &[("small", "p1", 3)],
            },
            Case {
                name: "bounded by free capacity",
                requests: vec![request("small", 5, &["p1"])],
                room: room(&[("p1", 2)]),
                expect: &[("small", "p1", 2)],
            },
            Case {
                name: "spread over providers in proportion to capacity",
                requests: vec![request("small", 6, &["p1", "p2"])],
                room: room(&[("p1", 10), ("p2", 5)]),
                expect: &[("small", "p1", 4), ("small", "p2", 2)],
            },
            Case {
                name: "only eligible providers (with an image) take the label",
                requests: vec![request("small", 4, &["p2"])],
                room: room(&[("p1", 10), ("p2", 10)]),
                expect: &[("small", "p1", 0), ("small", "p2", 4)],
            },
            Case {
                name: "short capacity: labels take turns, the small one is not starved",
                requests: vec![request("big", 10, &["p1"]), request("small", 2, &["p1"])],
                room: room(&[("p1", 4)]),
                expect: &[("big", "p1", 2), ("small", "p1", 2)],
            },
            Case {
                name: "short capacity: the label starved last pass goes first",
                requests: vec![
                    request("a", 5, &["p1"]),
                    Request {
                        starved: true,
                        ..request("b", 5, &["p1"])
                    },
                ],
                room: room(&[("p1", 1)]),
                expect: &[("a", "p1", 0), ("b", "p1", 1)],
            },
            Case {
                name: "a node with subnodes takes 1 + subnodes servers",
                requests: vec![Request {
                    size: 3,
                    ..request("multi", 3, &["p1"])
                }],
                room: room(&[("p1", 7)]),
                expect: &[("multi", "p1", 2)],
            },
            Case {
                name: "no deficit, no grant",
                requests: vec![request("small", 0, &["p1"])],
                room: room(&[("p1", 10)]),
                expect: &[("small", "p1", 0)],
            },
            Case {
                name: "a label that fits nowhere does not stop the others",
                requests: vec![
                    Request {
                        size: 5,
                        ..request("multi", 1, &["p1"])
                    },
                    request("small", 2, &["p1"]),
                ],
                room: room(&[("p1", 3)]),
                expect: &[("multi", "p1", 0), ("small", "p1", 2)],
            },
        ];
        for case in cases {
            let grants = allocate(&case.requests, &case.room);
            for (label, provider, nodes) in case.expect {
                assert_eq!(
                    granted(&grants, label, provider),
                    *nodes,
                    "{}: {label} on {provider}",
                    case.name
                );
            }
        }
    }

    #[test]
    fn the_per_pass_bound_limits_launches() {
        let mut rooms = room(&[("p1", 100)]);
        rooms.get_mut("p1").unwrap().launches = 3;
        let grants = allocate(&[request("small", 10, &["p1"])], &rooms);
        assert_eq!(granted(&grants, "small", "p1"), 3);
    }

    #[test]
    fn targets_get_nodes_evenly() {
        let existing: BTreeMap<TargetName, u32> =
            [("j1".into(), 2), ("j2".into(), 0)].into_iter().collect();
        let spread = spread_targets(4, &existing);
        let j1 = spread.iter().filter(|t| t.as_str() == "j1").count();
        assert_eq!((j1, spread.len()), (1, 4));
    }

    #[test]
    fn zones_fill_evenly_in_the_listed_order() {
        let zones = vec!["az1".to_string(), "az2".to_string()];
        let used: BTreeMap<String, u32> = [("az1".to_string(), 1)].into_iter().collect();
        assert_eq!(choose_az(&zones, &used).as_deref(), Some("az2"));
        assert_eq!(choose_az(&zones, &BTreeMap::new()).as_deref(), Some("az1"));
        assert_eq!(choose_az(&[], &used), None);
    }
}
