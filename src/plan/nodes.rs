//! Step 2 of the plan: every node row against its servers. One step per node per round.

use std::collections::{BTreeMap, HashSet};

use super::{Action, Kind, Mode, Plan, Servers, DELETE_RETRY_S, STALE_AFTER_S};
use crate::cloud::{Server, ServerStatus};
use crate::config::{Config, Provider};
use crate::model::{LabelName, NodeState, ProviderName, TargetName};
use crate::observe::Observed;
use crate::state::nodes::Node;
use crate::state::subnodes::Subnode;

/// What the walk learned that allocation and leak detection need.
#[derive(Default)]
pub(super) struct Walked<'a> {
    /// Per label: nodes that count against min-ready (ready, building, test; not retiring).
    pub counted: BTreeMap<LabelName, u32>,
    /// Per label and target: the same, for spreading over targets.
    pub per_target: BTreeMap<LabelName, BTreeMap<TargetName, u32>>,
    /// Per provider: servers it has or will have (nodes + subnodes, every state).
    pub servers_used: BTreeMap<ProviderName, u32>,
    /// Per provider: nodes per availability zone.
    pub zones: BTreeMap<ProviderName, BTreeMap<String, u32>>,
    /// Server ids that belong to a row (or are adopted by one this round).
    pub known_servers: HashSet<&'a str>,
}

/// One member of a node's set (the primary or a subnode) as the walk sees it.
struct Member<'a> {
    subnode: Option<i64>,
    phase: Option<&'a str>,
    phase_time: i64,
    external_id: Option<&'a str>,
    ip: Option<&'a str>,
    server: Option<&'a Server>,
    /// A server carrying this member's id that the row never recorded.
    unrecorded: Option<&'a Server>,
}

/// Where a member of a building node stands.
enum Step {
    /// Nothing to do until the cloud moves.
    Wait,
    /// Do this.
    Act(Kind, String),
    /// Up, with host keys (or without SSH); the set can be bootstrapped once all are.
    Done,
    /// The launch failed.
    Fail(String),
}

pub(super) fn walk<'a>(
    config: &Config,
    observed: &'a Observed,
    servers: &BTreeMap<&ProviderName, Servers<'a>>,
    mode: Mode,
    plan: &mut Plan,
) -> Walked<'a> {
    let mut walked = Walked::default();
    let mut subnodes: BTreeMap<i64, Vec<&Subnode>> = BTreeMap::new();
    for subnode in &observed.subnodes {
        subnodes.entry(subnode.node_id).or_default().push(subnode);
        if let Some(id) = &subnode.external_id {
            walked.known_servers.insert(id);
        }
    }
    for node in &observed.nodes {
        if let Some(id) = &node.external_id {
            walked.known_servers.insert(id);
        }
    }
    for row in &observed.images {
        if let Some(id) = &row.server_external_id {
            walked.known_servers.insert(id);
        }
    }
    for node in &observed.nodes {
        let subs = subnodes.get(&node.id).map(Vec::as_slice).unwrap_or(&[]);
        // A building node will have all its label's subnodes: reserve the ones not launched
        // yet, or new launches this round would take their room under max-servers.
        let wanted = match node.state {
            NodeState::Building => config.labels.get(&node.label).map_or(0, |l| l.subnodes),
            _ => 0,
        };
        *walked
            .servers_used
            .entry(node.provider.clone())
            .or_default() += 1 + (subs.len() as u32).max(wanted);
        if let Some(az) = &node.az {
            *walked
                .zones
                .entry(node.provider.clone())
                .or_default()
                .entry(az.clone())
                .or_default() += 1;
        }
        let counted = one(
            config,
            observed,
            servers,
            mode,
            node,
            subs,
            plan,
            &mut walked,
        );
        if counted && node.state.counts_as_supply() {
            *walked.counted.entry(node.label.clone()).or_default() += 1;
            *walked
                .per_target
                .entry(node.label.clone())
                .or_default()
                .entry(node.target.clone())
                .or_default() += 1;
        }
    }
    // Targets with no node yet still take their turn.
    for label in config.labels.keys() {
        let per_target = walked.per_target.entry(label.clone()).or_default();
        for target in config.targets.keys() {
            per_target.entry(target.clone()).or_default();
        }
        per_target.retain(|target, _| config.targets.contains_key(target));
    }
    walked
}

/// Plan one node; true when it still counts towards its label's supply.
#[allow(clippy::too_many_arguments)]
fn one<'a>(
    config: &Config,
    observed: &'a Observed,
    servers: &BTreeMap<&ProviderName, Servers<'a>>,
    mode: Mode,
    node: &'a Node,
    subs: &[&'a Subnode],
    plan: &mut Plan,
    walked: &mut Walked<'a>,
) -> bool {
    let now = observed.now;
    let unconfigured = if !config.labels.contains_key(&node.label) {
        Some(format!("label `{}` is no longer configured", node.label))
    } else if !config.targets.contains_key(&node.target) {
        Some(format!("target `{}` is no longer configured", node.target))
    } else if !config.providers.contains_key(&node.provider) {
        Some(format!(
            "provider `{}` is no longer configured",
            node.provider
        ))
    } else {
        None
    };
    if node.state == NodeState::Hold {
        // Not even a server a killed run made for it but never recorded: no leak either.
        if let Some(index) = servers.get(&node.provider) {
            let made = index.by_node.get(&node.id).into_iter().flatten().copied();
            let made_sub = subs
                .iter()
                .filter_map(|sub| index.by_subnode.get(&sub.id).copied());
            walked
                .known_servers
                .extend(made.chain(made_sub).map(|s| s.id.as_str()));
        }
        if let Some(why) = unconfigured {
            plan.notes
                .push(format!("node {} is held; kept although its {why}", node.id));
        }
        return true;
    }
    let (Some(index), Some(provider)) = (
        servers.get(&node.provider),
        config.providers.get(&node.provider),
    ) else {
        if let (Some(why), None) = (&unconfigured, config.providers.get(&node.provider)) {
            plan.notes.push(format!(
                "node {}: {why}, so nodepool cannot delete its servers; delete them by hand \
                 or configure the provider again",
                node.id
            ));
        }
        // Not observed this round (unreachable, or another `--provider`): no decision.
        return true;
    };
    let action = |kind: Kind, reason: String| Action {
        provider: node.provider.clone(),
        label: Some(node.label.clone()),
        node: Some(node.id),
        kind,
        reason,
    };
    let primary = Member {
        subnode: None,
        phase: node.launch_phase.as_deref(),
        phase_time: node.phase_time.unwrap_or(node.state_time),
        external_id: node.external_id.as_deref(),
        ip: node.ip.as_deref(),
        server: index.live(node.external_id.as_deref()),
        unrecorded: index.by_node.get(&node.id).and_then(|list| {
            list.iter()
                .copied()
                .find(|s| Some(s.id.as_str()) != node.external_id.as_deref())
        }),
    };
    let members: Vec<Member<'_>> = std::iter::once(primary)
        .chain(subs.iter().map(|sub| {
            Member {
                subnode: Some(sub.id),
                phase: sub.launch_phase.as_deref(),
                phase_time: sub.phase_time.unwrap_or(sub.state_time),
                external_id: sub.external_id.as_deref(),
                ip: sub.ip.as_deref(),
                server: index.live(sub.external_id.as_deref()),
                unrecorded: index
                    .by_subnode
                    .get(&sub.id)
                    .copied()
                    .filter(|s| Some(s.id.as_str()) != sub.external_id.as_deref()),
            }
        }))
        .collect();
    // Every live server of the set, including ones a killed run created but never recorded.
    let mut live: Vec<&'a str> = Vec::new();
    for member in &members {
        for server in [member.server, member.unrecorded].into_iter().flatten() {
            if !live.contains(&server.id.as_str()) {
                live.push(&server.id);
            }
        }
    }
    for extra in index.by_node.get(&node.id).into_iter().flatten() {
        if !live.contains(&extra.id.as_str()) {
            live.push(&extra.id);
        }
    }
    walked.known_servers.extend(live.iter().copied());
    let server_ids = || live.iter().map(|id| id.to_string()).collect::<Vec<_>>();
    let retire = |plan: &mut Plan, why: String, failure: bool| {
        plan.actions.push(action(
            Kind::Delete {
                from: node.state,
                server_ids: server_ids(),
                failure,
            },
            why,
        ));
        plan.in_flight += 1;
        false
    };
    if node.state != NodeState::Delete {
        if let Some(why) = unconfigured {
            return retire(plan, why, false);
        }
    }
    match node.state {
        NodeState::Hold => true,
        NodeState::Delete => {
            if live.is_empty() {
                plan.actions.push(action(
                    Kind::RemoveRow {
                        from: NodeState::Delete,
                    },
                    "every server of the node is gone".into(),
                ));
            } else {
                plan.in_flight += 1;
                let asked = node.launch_phase.as_deref() == Some("deleting")
                    && node.phase_time.unwrap_or(0) + DELETE_RETRY_S > now;
                if !asked {
                    let why = node
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "marked for deletion".into());
                    plan.actions.push(action(
                        Kind::Delete {
                            from: NodeState::Delete,
                            server_ids: server_ids(),
                            failure: false,
                        },
                        why,
                    ));
                }
            }
            false
        }
        NodeState::Ready | NodeState::Test | NodeState::Used => {
            let vanished = members
                .iter()
                .any(|m| m.external_id.is_some() && m.server.is_none());
            if vanished {
                return retire(plan, "server vanished".into(), false);
            }
            if members
                .iter()
                .any(|m| m.server.is_some_and(|s| s.status == ServerStatus::Error))
            {
                return retire(plan, "server in ERROR".into(), false);
            }
            if node.state == NodeState::Used && now - node.state_time > STALE_AFTER_S {
                return retire(plan, "used for over 8 hours".into(), false);
            }
            true
        }
        NodeState::Building => {
            if mode == Mode::Cleanup && now - node.state_time > STALE_AFTER_S {
                return retire(plan, "building for over 8 hours".into(), true);
            }
            building(
                config,
                provider,
                node,
                &members,
                subs.len(),
                now,
                plan,
                &action,
                &retire,
            )
        }
    }
}

/// A building node: one step for each member of its set, or the whole set fails.
#[allow(clippy::too_many_arguments)]
fn building(
    config: &Config,
    provider: &Provider,
    node: &Node,
    members: &[Member<'_>],
    have_subnodes: usize,
    now: i64,
    plan: &mut Plan,
    action: &dyn Fn(Kind, String) -> Action,
    retire: &dyn Fn(&mut Plan, String, bool) -> bool,
) -> bool {
    let launched = node.launch_time.unwrap_or(node.state_time);
    let launch_timeout = provider.launch_timeout.as_secs() as i64;
    if now - launched > launch_timeout {
        return retire(
            plan,
            format!("launch-timeout: not ready {launch_timeout} s after launch"),
            true,
        );
    }
    let mut steps = Vec::new();
    for member in members {
        match step(config, provider, node, member, now) {
            Step::Fail(why) => {
                let who = match member.subnode {
                    Some(id) => format!("subnode {id}: {why}"),
                    None => why,
                };
                return retire(plan, who, true);
            }
            other => steps.push((member.subnode, other)),
        }
    }
    plan.in_flight += 1;
    let wanted = config
        .labels
        .get(&node.label)
        .map_or(0, |l| l.subnodes as usize);
    // The primary's missing subnodes are launched before new primaries (allocation runs
    // after the walk).
    let primary_launched = node.external_id.is_some();
    if primary_launched && have_subnodes < wanted {
        for _ in have_subnodes..wanted {
            plan.actions.push(action(
                Kind::LaunchSubnode,
                format!("node {} has {have_subnodes} of {wanted} subnodes", node.id),
            ));
        }
    }
    let all_done = have_subnodes >= wanted && steps.iter().all(|(_, s)| matches!(s, Step::Done));
    for (_, step) in steps {
        if let Step::Act(kind, reason) = step {
            plan.actions.push(action(kind, reason));
        }
    }
    if all_done {
        let (kind, reason) = if provider.host_key_checking {
            (
                Kind::Bootstrap,
                "every node of the set answers SSH: write /etc/nodepool, run the ready script"
                    .to_string(),
            )
        } else {
            (
                Kind::MarkReady,
                "every server of the set is ACTIVE with an address (host-key-checking off)"
                    .to_string(),
            )
        };
        plan.actions.push(action(kind, reason));
    }
    true
}

/// The next step of one member of a building set.
fn step(config: &Config, provider: &Provider, node: &Node, member: &Member<'_>, now: i64) -> Step {
    let Some(server) = member.server else {
        if member.external_id.is_some() {
            return Step::Fail("server vanished".into());
        }
        // The create call's answer was never recorded (the run died, or the call failed
        // ambiguously): adopt the server it made, or forget the row.
        return match member.unrecorded {
            Some(server) => Step::Act(
                Kind::Adopt {
                    subnode: member.subnode,
                    server_id: server.id.clone(),
                },
                "a server carries this row's id but the row has no server id".into(),
            ),
            None => Step::Act(
                Kind::Forget {
                    subnode: member.subnode,
                },
                "no server was created for this row".into(),
            ),
        };
    };
    match server.status {
        ServerStatus::Error => return Step::Fail("server went to ERROR".into()),
        ServerStatus::Deleted => return Step::Fail("server was deleted".into()),
        ServerStatus::Active => {}
        ServerStatus::Build | ServerStatus::Other => return Step::Wait,
    }
    let boot_timeout = provider.boot_timeout.as_secs() as i64;
    match member.phase.unwrap_or("booting") {
        "reachable" => Step::Done,
        "ssh" => {
            if now - member.phase_time > boot_timeout {
                return Step::Fail(format!(
                    "boot-timeout: SSH did not answer within {boot_timeout} s of ACTIVE"
                ));
            }
            let port = port_of(config, provider, node);
            Step::Act(
                Kind::ScanHostKeys {
                    subnode: member.subnode,
                    ip: member.ip.unwrap_or_default().to_string(),
                    port,
                },
                "server is ACTIVE: waiting for SSH".into(),
            )
        }
        phase => {
            let public = if provider.ipv6_preferred {
                server.public_v6.clone().or(server.public_v4.clone())
            } else {
                server.public_v4.clone().or(server.public_v6.clone())
            };
            let next_phase = if provider.host_key_checking {
                "ssh"
            } else {
                "reachable"
            };
            let record = |ip: String, how: &str| {
                Step::Act(
                    Kind::RecordAddress {
                        subnode: member.subnode,
                        ip,
                        ip_private: server.private_v4.clone(),
                        next_phase: next_phase.into(),
                    },
                    format!("server is ACTIVE with {how} address"),
                )
            };
            match (public, &provider.pool) {
                (Some(ip), _) => record(ip, "a public"),
                (None, Some(pool)) if phase == "floating-ip" => {
                    if now - member.phase_time > boot_timeout {
                        Step::Fail(format!(
                            "no floating IP from pool `{pool}` within {boot_timeout} s"
                        ))
                    } else {
                        Step::Wait
                    }
                }
                (None, Some(pool)) => Step::Act(
                    Kind::AttachFloatingIp {
                        subnode: member.subnode,
                        server_id: server.id.clone(),
                        pool: pool.clone(),
                    },
                    "server is ACTIVE without a public address".into(),
                ),
                (None, None) => match &server.private_v4 {
                    Some(ip) => record(ip.clone(), "only a private"),
                    None => Step::Wait,
                },
            }
        }
    }
}

/// The SSH port of the node's image (`connection-port`, default 22).
fn port_of(config: &Config, provider: &Provider, node: &Node) -> u16 {
    config
        .labels
        .get(&node.label)
        .and_then(|label| provider.images.get(&label.image))
        .map_or(22, |image| image.connection_port)
}
