//! Step 2 of the plan: every node row against its servers, one step per node per round.
//!
//! For each node, in order: count the servers it takes (`reserve`); a held node is never
//! touched (`held`); a node whose label, target or provider left the configuration is
//! deleted; then by state — `delete` (delete its servers, or remove the row once they are
//! gone), ready/test/used (retire it when its server vanished or failed, or it was used for
//! too long), building (`building`: the next launch step of each member of its set).

use std::collections::{BTreeMap, HashSet};

use super::policy::{CREATE_ANSWER_GRACE_S, DELETE_RETRY_S, STALE_AFTER_S};
use super::{Action, CloudStep, LocalStep, Mode, Observed, Plan, Servers, SshStep, Step};
use crate::config::{Config, Provider};
use crate::model::cloud::{Server, ServerStatus};
use crate::model::node::{Node, Subnode};
use crate::model::{LabelName, LaunchPhase, Member, NodeId, NodeState, ProviderName, TargetName};

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

pub(super) fn walk<'a>(
    config: &Config,
    observed: &'a Observed,
    servers: &BTreeMap<&ProviderName, Servers<'a>>,
    mode: Mode,
    plan: &mut Plan,
) -> Walked<'a> {
    let mut walked = Walked::default();
    let mut subnodes: BTreeMap<NodeId, Vec<&Subnode>> = BTreeMap::new();
    for subnode in &observed.subnodes {
        subnodes.entry(subnode.node_id).or_default().push(subnode);
    }
    let recorded = (observed.nodes.iter().map(|n| &n.external_id))
        .chain(observed.subnodes.iter().map(|s| &s.external_id))
        // A snapshot's template server while its row still has it (its phase ends once it is
        // deleted; one that lingers after that is a leak).
        .chain(
            observed
                .images
                .iter()
                .filter(|i| i.phase.is_some())
                .map(|i| &i.server_external_id),
        );
    walked
        .known_servers
        .extend(recorded.filter_map(|id| id.as_deref()));
    for node in &observed.nodes {
        let subs = subnodes.get(&node.id).map(Vec::as_slice).unwrap_or(&[]);
        reserve(config, node, subs, &mut walked);
        let walk = NodeWalk {
            config,
            now: observed.now,
            mode,
            node,
            subs,
            index: servers.get(&node.provider),
        };
        if walk.plan(plan, &mut walked) && node.state.counts_as_supply() {
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

/// Count the servers a node takes on its provider, and its zone. A building node will have
/// all its label's subnodes: reserve the ones not launched yet, or new launches this round
/// would take their room under max-servers.
fn reserve(config: &Config, node: &Node, subs: &[&Subnode], walked: &mut Walked<'_>) {
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
}

/// One member of a node's set (the primary or a subnode) against the listing.
struct MemberView<'a> {
    member: Member,
    phase: Option<LaunchPhase>,
    phase_since: i64,
    external_id: Option<&'a str>,
    ip: Option<&'a str>,
    /// The floating IP allocated for it, once allocated.
    floating_ip_id: Option<&'a str>,
    server: Option<&'a Server>,
    /// A server carrying this member's id that the row never recorded.
    unrecorded: Option<&'a Server>,
}

/// Where a member of a building node stands.
enum Next {
    /// Nothing to do until the cloud moves.
    Wait,
    /// Do this.
    Act(Step, String),
    /// Up, with host keys (or without SSH); the set can be bootstrapped once all are.
    Done,
    /// The launch failed.
    Fail(String),
}

/// One node of the walk and what it is planned against.
struct NodeWalk<'a, 'w> {
    config: &'w Config,
    now: i64,
    mode: Mode,
    node: &'a Node,
    subs: &'w [&'a Subnode],
    /// Its provider's listing; None when the provider was not listed this round.
    index: Option<&'w Servers<'a>>,
}

impl<'a> NodeWalk<'a, '_> {
    fn act(&self, step: Step, reason: impl Into<String>) -> Action {
        Action {
            provider: self.node.provider.clone(),
            label: Some(self.node.label.clone()),
            step,
            reason: reason.into(),
        }
    }

    /// Plan the node; true when it still counts towards its label's supply.
    fn plan(&self, plan: &mut Plan, walked: &mut Walked<'a>) -> bool {
        let node = self.node;
        let unconfigured = self.unconfigured();
        if node.state == NodeState::Hold {
            self.held(unconfigured, plan, walked);
            return true;
        }
        let (Some(index), Some(provider)) = (self.index, self.config.providers.get(&node.provider))
        else {
            if let (Some(why), None) = (&unconfigured, self.config.providers.get(&node.provider)) {
                plan.notes.push(format!(
                    "node {}: {why}, so nodepool cannot delete its servers; delete them by \
                     hand or configure the provider again",
                    node.id
                ));
            }
            // Not observed this round (unreachable, or another `--provider`): no decision.
            return true;
        };
        let members = self.members(index);
        let live = live_servers(index, node.id, &members);
        walked.known_servers.extend(live.iter().copied());
        let set = Set { members, live };
        if node.state != NodeState::Delete {
            if let Some(why) = unconfigured {
                return self.retire(&set, plan, why, false);
            }
        }
        match node.state {
            NodeState::Hold => true,
            NodeState::Delete => {
                self.deleting(&set, plan);
                false
            }
            NodeState::Ready | NodeState::Test | NodeState::Used => self.settled(&set, plan),
            NodeState::Building => {
                if self.mode == Mode::Cleanup && self.now - node.state_time > STALE_AFTER_S {
                    return self.retire(&set, plan, "building for over 8 hours".into(), true);
                }
                self.building(provider, &set, plan)
            }
        }
    }

    /// Why the node's label, target or provider is no longer configured, if it is not.
    fn unconfigured(&self) -> Option<String> {
        let (config, node) = (self.config, self.node);
        if !config.labels.contains_key(&node.label) {
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
        }
    }

    /// A held node is never touched, not even a server a killed run made for it but never
    /// recorded: no leak either.
    fn held(&self, unconfigured: Option<String>, plan: &mut Plan, walked: &mut Walked<'a>) {
        if let Some(index) = self.index {
            let made = index.by_node.get(&self.node.id).into_iter().flatten();
            let made_sub = self
                .subs
                .iter()
                .filter_map(|sub| index.by_subnode.get(&sub.id));
            walked
                .known_servers
                .extend(made.chain(made_sub).map(|s| s.id.as_str()));
        }
        if let Some(why) = unconfigured {
            plan.notes.push(format!(
                "node {} is held; kept although its {why}",
                self.node.id
            ));
        }
    }

    fn members(&self, index: &Servers<'a>) -> Vec<MemberView<'a>> {
        let node = self.node;
        let primary = MemberView {
            member: Member::primary(node.id),
            phase: node.launch_phase,
            phase_since: node.phase_since(),
            external_id: node.external_id.as_deref(),
            ip: node.ip.as_deref(),
            floating_ip_id: node.floating_ip_id.as_deref(),
            server: index.live(node.external_id.as_deref()),
            unrecorded: index.by_node.get(&node.id).and_then(|list| {
                list.iter()
                    .copied()
                    .find(|s| Some(s.id.as_str()) != node.external_id.as_deref())
            }),
        };
        let subnodes = self.subs.iter().map(|sub| MemberView {
            member: sub.member(),
            phase: sub.launch_phase,
            phase_since: sub.phase_since(),
            external_id: sub.external_id.as_deref(),
            ip: sub.ip.as_deref(),
            floating_ip_id: sub.floating_ip_id.as_deref(),
            server: index.live(sub.external_id.as_deref()),
            unrecorded: index
                .by_subnode
                .get(&sub.id)
                .copied()
                .filter(|s| Some(s.id.as_str()) != sub.external_id.as_deref()),
        });
        std::iter::once(primary).chain(subnodes).collect()
    }

    /// Move the node to `delete` (a failure when it counts towards a cooldown).
    fn retire(&self, set: &Set<'a>, plan: &mut Plan, why: String, failure: bool) -> bool {
        plan.actions.push(self.act(
            Step::Cloud(CloudStep::Delete {
                node: self.node.id,
                from: self.node.state,
                server_ids: set.server_ids(),
                failure,
            }),
            why,
        ));
        plan.in_flight += 1;
        false
    }

    /// A node in `delete`: remove the row once every server is gone, else (re)send the
    /// delete calls unless they went out a short while ago.
    fn deleting(&self, set: &Set<'a>, plan: &mut Plan) {
        let node = self.node;
        if set.live.is_empty() {
            plan.actions.push(self.act(
                Step::Local(LocalStep::RemoveRow {
                    node: node.id,
                    from: NodeState::Delete,
                }),
                "every server of the node is gone",
            ));
            return;
        }
        plan.in_flight += 1;
        let asked = node.launch_phase == Some(LaunchPhase::Deleting)
            && node.phase_time.unwrap_or(0) + DELETE_RETRY_S > self.now;
        if !asked {
            let why = node
                .last_error
                .clone()
                .unwrap_or_else(|| "marked for deletion".into());
            plan.actions.push(self.act(
                Step::Cloud(CloudStep::Delete {
                    node: node.id,
                    from: NodeState::Delete,
                    server_ids: set.server_ids(),
                    failure: false,
                }),
                why,
            ));
        }
    }

    /// A ready, test or used node: retired when a server failed or the cloud says it is
    /// gone, or when it was used for too long.
    fn settled(&self, set: &Set<'a>, plan: &mut Plan) -> bool {
        let members = &set.members;
        if let Some(check) = self.vanished(set, false) {
            plan.actions.push(check);
            plan.in_flight += 1;
            return true;
        }
        if members
            .iter()
            .any(|m| m.server.is_some_and(|s| s.status == ServerStatus::Error))
        {
            return self.retire(set, plan, "server in ERROR".into(), false);
        }
        if self.node.state == NodeState::Used {
            let used_for = self.now - self.node.state_time;
            match &self.node.owner {
                Some(owner) if used_for > self.config.max_acquired_age.as_secs() as i64 => {
                    let why = format!(
                        "acquired by {owner} {} s ago and never released (max-acquired-age)",
                        used_for
                    );
                    return self.retire(set, plan, why, false);
                }
                None if used_for > STALE_AFTER_S => {
                    return self.retire(set, plan, "used for over 8 hours".into(), false);
                }
                _ => {}
            }
        }
        true
    }

    /// A building node: one step for each member of its set, or the whole set fails.
    fn building(&self, provider: &Provider, set: &Set<'a>, plan: &mut Plan) -> bool {
        let node = self.node;
        let launched = node.launch_time.unwrap_or(node.state_time);
        let launch_timeout = provider.launch_timeout.as_secs() as i64;
        if self.now - launched > launch_timeout {
            let why = format!("launch-timeout: not ready {launch_timeout} s after launch");
            return self.retire(set, plan, why, true);
        }
        if let Some(check) = self.vanished(set, true) {
            plan.actions.push(check);
            plan.in_flight += 1;
            return true;
        }
        let mut steps = Vec::new();
        for member in &set.members {
            match self.next(provider, member) {
                Next::Fail(why) => {
                    let who = match member.member.subnode {
                        Some(id) => format!("subnode {id}: {why}"),
                        None => why,
                    };
                    return self.retire(set, plan, who, true);
                }
                other => steps.push(other),
            }
        }
        plan.in_flight += 1;
        let have = self.subs.len();
        let wanted = self
            .config
            .labels
            .get(&node.label)
            .map_or(0, |l| l.subnodes as usize);
        // The primary's missing subnodes are launched before new primaries (allocation runs
        // after the walk).
        if node.external_id.is_some() && have < wanted {
            for _ in have..wanted {
                plan.actions.push(self.act(
                    Step::Cloud(CloudStep::LaunchSubnode { node: node.id }),
                    format!("node {} has {have} of {wanted} subnodes", node.id),
                ));
            }
        }
        let all_done = have >= wanted && steps.iter().all(|s| matches!(s, Next::Done));
        for step in steps {
            if let Next::Act(step, reason) = step {
                plan.actions.push(self.act(step, reason));
            }
        }
        if all_done {
            plan.actions.push(if provider.host_key_checking {
                self.act(
                    Step::Ssh(SshStep::Bootstrap { node: node.id }),
                    if node.launch_phase == Some(LaunchPhase::Bootstrapping) {
                        "the set's ready scripts run: see how they are doing"
                    } else {
                        "every node of the set answers SSH: write /etc/nodepool, run the ready \
                         script"
                    },
                )
            } else {
                self.act(
                    Step::Local(LocalStep::MarkReady { node: node.id }),
                    "every server of the set is ACTIVE with an address (host-key-checking off)",
                )
            });
        }
        true
    }

    /// The next launch step of one member of a building set.
    fn next(&self, provider: &Provider, view: &MemberView<'_>) -> Next {
        let member = view.member;
        let Some(server) = view.server else {
            // (A recorded server missing from the listing was checked before.)
            // The create call's answer was never recorded (the run died, or the answer was
            // lost): adopt the server it made, or forget the row once none can appear.
            let forget = |failure: bool, reason: String| {
                Next::Act(Step::Local(LocalStep::Forget { member, failure }), reason)
            };
            let waited = self.now - view.phase_since;
            return match (view.unrecorded, view.phase) {
                (Some(server), _) => Next::Act(
                    Step::Local(LocalStep::Adopt {
                        member,
                        server_id: server.id.clone(),
                    }),
                    "a server carries this row's id but the row has no server id".into(),
                ),
                (None, Some(LaunchPhase::Creating)) if waited < CREATE_ANSWER_GRACE_S => Next::Wait,
                (None, Some(LaunchPhase::Creating)) => forget(
                    true,
                    format!("no server appeared within {waited} s of an unanswered create"),
                ),
                (None, _) => forget(false, "the create call was never sent".into()),
            };
        };
        match server.status {
            ServerStatus::Error => return Next::Fail("server went to ERROR".into()),
            ServerStatus::Deleted => return Next::Fail("server was deleted".into()),
            ServerStatus::Active => {}
            ServerStatus::Build | ServerStatus::Other => return Next::Wait,
        }
        let boot_timeout = provider.boot_timeout.as_secs() as i64;
        let in_phase = self.now - view.phase_since;
        match view.phase.unwrap_or(LaunchPhase::Booting) {
            LaunchPhase::Reachable | LaunchPhase::Bootstrapping | LaunchPhase::Ready => Next::Done,
            LaunchPhase::Ssh if in_phase > boot_timeout => Next::Fail(format!(
                "boot-timeout: SSH did not answer within {boot_timeout} s of ACTIVE"
            )),
            LaunchPhase::Ssh => Next::Act(
                Step::Ssh(SshStep::ScanHostKeys {
                    member,
                    ip: view.ip.unwrap_or_default().to_string(),
                    port: self.port(provider),
                }),
                "server is ACTIVE: waiting for SSH".into(),
            ),
            _ => self.address(provider, view, server, in_phase),
        }
    }

    /// An ACTIVE server without a recorded address: record its public one, or give it a
    /// floating IP, or settle for a private one.
    fn address(
        &self,
        provider: &Provider,
        view: &MemberView<'_>,
        server: &Server,
        in_phase: i64,
    ) -> Next {
        let member = view.member;
        let public = if provider.ipv6_preferred {
            server.public_v6.clone().or(server.public_v4.clone())
        } else {
            server.public_v4.clone().or(server.public_v6.clone())
        };
        let next_phase = if provider.host_key_checking {
            LaunchPhase::Ssh
        } else {
            LaunchPhase::Reachable
        };
        let record = |ip: String, how: &str| {
            Next::Act(
                Step::Local(LocalStep::RecordAddress {
                    member,
                    ip,
                    ip_private: server.private_v4.clone(),
                    next_phase,
                }),
                format!("server is ACTIVE with {how} address"),
            )
        };
        let boot_timeout = provider.boot_timeout.as_secs() as i64;
        match (public, &provider.pool) {
            (Some(ip), _) => record(ip, "a public"),
            (None, Some(pool)) if view.phase == Some(LaunchPhase::FloatingIp) => {
                if in_phase > boot_timeout {
                    Next::Fail(format!(
                        "no floating IP from pool `{pool}` within {boot_timeout} s"
                    ))
                } else if view.ip.is_none() {
                    // The attach did not happen: it failed (its IP was released) or the run
                    // was killed before it (the IP, if allocated, is recorded): again.
                    Next::Act(
                        Step::Cloud(CloudStep::AttachFloatingIp {
                            member,
                            server_id: server.id.clone(),
                            pool: pool.clone(),
                            floating_ip_id: view.floating_ip_id.map(str::to_string),
                        }),
                        "a floating IP was asked for but not attached".into(),
                    )
                } else {
                    Next::Wait // attached: the listing shows it soon
                }
            }
            (None, Some(pool)) => Next::Act(
                Step::Cloud(CloudStep::AttachFloatingIp {
                    member,
                    server_id: server.id.clone(),
                    pool: pool.clone(),
                    floating_ip_id: None,
                }),
                "server is ACTIVE without a public address".into(),
            ),
            (None, None) => match &server.private_v4 {
                Some(ip) => record(ip.clone(), "only a private"),
                None => Next::Wait,
            },
        }
    }

    /// A recorded server of the set that the listing does not show: check it with a GET
    /// before anything else is decided about the node.
    fn vanished(&self, set: &Set<'a>, failure: bool) -> Option<Action> {
        let missing = set
            .members
            .iter()
            .find(|m| m.server.is_none() && m.external_id.is_some())?;
        let server_id = missing.external_id?.to_string();
        Some(self.act(
            Step::Cloud(CloudStep::CheckVanished {
                node: self.node.id,
                from: self.node.state,
                server_id: server_id.clone(),
                failure,
            }),
            format!(
                "server {server_id} of {} is not in the listing",
                missing.member
            ),
        ))
    }

    /// The SSH port of the node's image (`connection-port`, default 22).
    fn port(&self, provider: &Provider) -> u16 {
        self.config
            .labels
            .get(&self.node.label)
            .and_then(|label| provider.images.get(&label.image))
            .map_or(22, |image| image.connection_port)
    }
}

/// A node's set as listed: its members and every live server among them.
struct Set<'a> {
    members: Vec<MemberView<'a>>,
    live: Vec<&'a str>,
}

impl Set<'_> {
    fn server_ids(&self) -> Vec<String> {
        self.live.iter().map(|id| id.to_string()).collect()
    }
}

/// Every live server of a node's set, including ones a killed run created but never
/// recorded, each once.
fn live_servers<'a>(index: &Servers<'a>, node: NodeId, members: &[MemberView<'a>]) -> Vec<&'a str> {
    let mut live: Vec<&'a str> = Vec::new();
    let listed = members
        .iter()
        .flat_map(|m| [m.server, m.unrecorded])
        .flatten()
        .chain(index.by_node.get(&node).into_iter().flatten().copied());
    for server in listed {
        if !live.contains(&server.id.as_str()) {
            live.push(&server.id);
        }
    }
    live
}
