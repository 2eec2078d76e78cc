//! Executor tests on the in-memory cloud: each kind of step, and the cloud faults that the
//! HTTP simulator can hardly produce, in milliseconds. A test either executes one action it
//! wrote by hand or runs whole rounds (observe → plan → execute) against `MemoryCloud`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{LaunchCache, Runner, Tally};
use crate::cloud::memory::{Fault, MemoryCloud, Op};
use crate::cloud::{meta, CloudError, ErrorKind};
use crate::config::Config;
use crate::model::node::{Node, Subnode};
use crate::model::{LaunchPhase, Member, NodeId, NodeState, ProviderName};
use crate::plan::{self, Action, CloudStep, LocalStep, Mode, Plan, SshStep, Step};
use crate::state::{nodes, pass, subnodes, Db};

/// One provider, `p1`, booting `trusty` from the cloud image `Ubuntu Trusty`; SSH checks are
/// off unless a test turns them on, so rounds need no sshd.
const CONFIG: &str = r#"
labels:
  - name: small
    image: trusty
    min-ready: 1
    providers:
      - name: p1
  - name: multi
    image: trusty
    min-ready: 0
    subnodes: 1
    providers:
      - name: p1
providers:
  - name: p1
    username: jenkins
    password: secret
    auth-url: https://keystone.example.com/v3
    project-id: ci
    max-servers: 10
    host-key-checking: false
    images:
      - name: trusty
        base-image: Ubuntu Trusty
        min-ram: 2048
        private-key: /nonexistent/id_rsa
        connection-port: 1
targets:
  - name: jenkins
"#;

struct Harness {
    _dir: tempfile::TempDir,
    config: Config,
    db: Db,
    clouds: BTreeMap<ProviderName, MemoryCloud>,
    installation: String,
    cache: LaunchCache,
    image_id: String,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(|_| {})
    }

    /// Floating IPs from the external network `public`, on a cloud whose servers get only
    /// private addresses.
    fn with_pool() -> Harness {
        let h = Harness::with(|c| {
            *c = c.replace("max-servers: 10", "max-servers: 10\n    pool: public")
        });
        h.cloud().add_network("public", true);
        h.cloud().set_private_only(true);
        h
    }

    /// Move every node's current phase this far into the past.
    fn age_phases(&self, seconds: i64) {
        self.db
            .conn()
            .execute("UPDATE node SET phase_time = phase_time - ?1", [seconds])
            .unwrap();
    }

    /// The fixture with min-ready 0: rounds launch nothing of their own.
    fn settled() -> Harness {
        Harness::with(|c| *c = c.replace("min-ready: 1", "min-ready: 0"))
    }

    /// The fixture with `change` applied to the configuration text.
    fn with(change: impl FnOnce(&mut String)) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut text = format!("dburi: {}\n{CONFIG}", dir.path().join("n.db").display());
        change(&mut text);
        let path = dir.path().join("nodepool.yaml");
        std::fs::write(&path, text).expect("write config");
        let config = crate::config::load(&path).unwrap_or_else(|e| panic!("fixture: {e}"));
        let db = Db::open(&config.database).expect("database");
        let installation = pass::installation(db.conn()).expect("installation");
        let cloud = MemoryCloud::new();
        cloud.add_flavor("m1.small", 2048, 1);
        let image_id = cloud.add_image("Ubuntu Trusty");
        Harness {
            _dir: dir,
            config,
            db,
            clouds: [("p1".into(), cloud)].into_iter().collect(),
            installation,
            cache: LaunchCache::default(),
            image_id,
        }
    }

    fn cloud(&self) -> &MemoryCloud {
        &self.clouds["p1"]
    }

    fn runner(&self, deadline: Instant) -> Runner<'_, MemoryCloud> {
        Runner {
            config: &self.config,
            db_path: self.db.path(),
            clouds: &self.clouds,
            installation: &self.installation,
            deadline,
            cache: &self.cache,
        }
    }

    fn execute(&self, actions: Vec<Action>) -> Tally {
        let plan = Plan {
            actions,
            ..Plan::default()
        };
        self.runner(Instant::now() + Duration::from_secs(60))
            .execute(&self.db, &plan, crate::clock::now())
    }

    /// One round as `reconcile` runs it.
    fn round(&self) -> (Plan, Tally) {
        let now = crate::clock::now();
        let mut observed = crate::observe::database(self.db.conn(), now).expect("observe");
        observed.clouds = crate::observe::clouds(&self.clouds, &BTreeMap::new());
        let plan = plan::plan(&self.config, &observed, Mode::Reconcile);
        let tally = self
            .runner(Instant::now() + Duration::from_secs(60))
            .execute(&self.db, &plan, now);
        (plan, tally)
    }

    /// An operator's `hold`, typed while a round runs.
    fn hold(&self, node: &Node) {
        let held = nodes::transition(
            self.db.conn(),
            node.id,
            NodeState::Building,
            NodeState::Hold,
            1,
        );
        assert!(held.unwrap(), "held");
    }

    fn nodes(&self) -> Vec<Node> {
        nodes::list(self.db.conn()).expect("nodes")
    }

    fn subnodes(&self) -> Vec<Subnode> {
        subnodes::list(self.db.conn()).expect("subnodes")
    }

    fn launch(&self, label: &str) -> Action {
        Action {
            provider: "p1".into(),
            label: Some(label.into()),
            step: Step::Cloud(CloudStep::Launch {
                target: "jenkins".into(),
                image: "trusty".into(),
                image_id: self.image_id.clone(),
                az: None,
            }),
            reason: "test".into(),
        }
    }

    /// A node launched and recorded (phase booting), its server still in BUILD.
    fn launched(&self, label: &str) -> Node {
        let tally = self.execute(vec![self.launch(label)]);
        assert!(tally.errors.is_empty(), "{:?}", tally.errors);
        self.nodes().pop().expect("a node")
    }
}

fn action(label: Option<&str>, step: Step) -> Action {
    Action {
        provider: "p1".into(),
        label: label.map(Into::into),
        step,
        reason: "test".into(),
    }
}

fn names(plan: &Plan) -> Vec<&'static str> {
    plan.actions.iter().map(|a| a.step.name()).collect()
}

// ---------------------------------------------------------------------------------------------
// Launches.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_launch_records_its_row_and_marks_the_server_as_this_installations() {
    let h = Harness::new();
    let node = h.launched("small");
    assert_eq!(node.state, NodeState::Building);
    assert_eq!(node.launch_phase, Some(LaunchPhase::Booting));
    let servers = h.cloud().servers();
    assert_eq!(servers.len(), 1);
    assert_eq!(node.external_id.as_deref(), Some(servers[0].id.as_str()));
    let metadata = &servers[0].metadata;
    assert_eq!(
        metadata.get(meta::INSTALLATION),
        Some(h.installation.as_str())
    );
    assert_eq!(
        metadata.get(meta::NODE_ID),
        Some(node.id.to_string().as_str())
    );
    assert_eq!(metadata.get(meta::PROVIDER), Some("p1"));
    assert_eq!(metadata.get(meta::LABEL), Some("small"));
    assert_eq!(metadata.get(meta::SUBNODE_ID), None);
    assert_eq!(servers[0].name, node.hostname);
    // What a create needs is found once per run.
    h.launched("small");
    assert_eq!(h.cloud().calls(Op::ListFlavors), 1);
    assert_eq!(h.cloud().calls(Op::CreateServer), 2);
}

#[test]
fn a_create_that_times_out_keeps_its_row_and_the_next_round_adopts_the_server() {
    let h = Harness::new();
    h.cloud()
        .script(Op::CreateServer, Fault::TimeoutAfterCreate);
    let tally = h.execute(vec![h.launch("small")]);
    assert_eq!((tally.launched, tally.errors.len()), (0, 1), "{tally:?}");
    let node = &h.nodes()[0];
    assert_eq!(node.external_id, None);
    assert!(node.last_error.is_some(), "{node:?}");
    let server = h.cloud().servers().pop().expect("the server exists");

    let (plan, _) = h.round();
    assert_eq!(names(&plan), ["adopt"], "{plan:#?}");
    assert_eq!(h.nodes()[0].external_id, Some(server.id));
    assert_eq!(
        h.cloud().calls(Op::CreateServer),
        1,
        "nothing launched twice"
    );
}

#[test]
fn a_quota_refusal_forgets_the_row_and_blocks_the_provider_without_counting_a_failure() {
    let h = Harness::new();
    let quota = CloudError::new(ErrorKind::QuotaExceeded, "Quota exceeded for instances");
    h.cloud().script(Op::CreateServer, Fault::Error(quota));
    let tally = h.execute(vec![h.launch("small")]);
    assert_eq!((tally.failed, tally.errors.len()), (0, 1), "{tally:?}");
    assert!(h.nodes().is_empty());
    let cooldowns = pass::cooldowns(h.db.conn()).unwrap();
    assert_eq!(cooldowns.len(), 1);
    assert_eq!(
        (cooldowns[0].label.as_ref(), cooldowns[0].failures),
        (None, 0)
    );

    let (plan, _) = h.round();
    assert!(names(&plan).is_empty(), "the quota wait holds: {plan:#?}");
}

#[test]
fn a_refused_create_forgets_its_row_and_counts_a_failure() {
    let h = Harness::new();
    let refused = CloudError::new(ErrorKind::Api { status: 400 }, "Invalid flavor");
    h.cloud().script(Op::CreateServer, Fault::Error(refused));
    let tally = h.execute(vec![h.launch("small")]);
    assert_eq!(tally.failed, 1, "{tally:?}");
    assert!(h.nodes().is_empty());
    let cooldowns = pass::cooldowns(h.db.conn()).unwrap();
    assert_eq!(cooldowns[0].failures, 1);
}

#[test]
fn a_subnode_launch_uses_the_primarys_image_and_zone_and_names_itself() {
    let h = Harness::with(|c| {
        *c = c.replace(
            "max-servers: 10",
            "max-servers: 10\n    availability-zones: [nova]",
        )
    });
    let node = {
        let mut launch = h.launch("multi");
        if let Step::Cloud(CloudStep::Launch { az, .. }) = &mut launch.step {
            *az = Some("nova".into());
        }
        assert!(h.execute(vec![launch]).errors.is_empty());
        h.nodes().pop().unwrap()
    };
    let tally = h.execute(vec![action(
        Some("multi"),
        Step::Cloud(CloudStep::LaunchSubnode { node: node.id }),
    )]);
    assert!(tally.errors.is_empty(), "{tally:?}");
    let sub = h.subnodes().pop().expect("a subnode row");
    let server_id = sub.external_id.clone().expect("its server recorded");
    let request = h.cloud().request(&server_id).expect("its create request");
    assert_eq!(request.image_id, h.image_id);
    assert_eq!(request.availability_zone.as_deref(), Some("nova"));
    assert_eq!(request.metadata[meta::SUBNODE_ID], sub.id.to_string());
    assert_eq!(request.metadata[meta::NODE_ID], node.id.to_string());
}

#[test]
fn a_subnode_of_a_primary_held_meanwhile_is_not_launched() {
    let h = Harness::new();
    let node = h.launched("multi");
    h.hold(&node);
    let tally = h.execute(vec![action(
        Some("multi"),
        Step::Cloud(CloudStep::LaunchSubnode { node: node.id }),
    )]);
    assert!(tally.errors.is_empty(), "{tally:?}");
    assert!(h.subnodes().is_empty());
    assert_eq!(h.cloud().calls(Op::CreateServer), 1);
}

// ---------------------------------------------------------------------------------------------
// The lifecycle, round by round.
// ---------------------------------------------------------------------------------------------

#[test]
fn rounds_take_a_node_from_launch_to_ready_one_step_each() {
    let h = Harness::new();
    let (plan, tally) = h.round();
    assert_eq!((names(&plan), tally.launched), (vec!["launch"], 1));
    let (plan, _) = h.round();
    assert!(names(&plan).is_empty(), "waits for ACTIVE: {plan:#?}");
    h.cloud().activate_all();
    let (plan, _) = h.round();
    assert_eq!(names(&plan), ["record-address"]);
    let node = &h.nodes()[0];
    assert_eq!(node.launch_phase, Some(LaunchPhase::Reachable));
    assert!(node.ip.is_some());
    let (plan, tally) = h.round();
    assert_eq!((names(&plan), tally.ready), (vec!["mark-ready"], 1));
    assert_eq!(h.nodes()[0].state, NodeState::Ready);
    let (plan, _) = h.round();
    assert!(plan.actions.is_empty(), "a full pool: {plan:#?}");
}

#[test]
fn a_lost_create_answer_without_a_server_waits_out_the_grace_then_counts_a_failure() {
    let h = Harness::new();
    h.cloud().script(
        Op::CreateServer,
        Fault::Error(CloudError::new(ErrorKind::Transport, "connection reset")),
    );
    let tally = h.execute(vec![h.launch("small")]);
    assert_eq!((tally.failed, tally.errors.len()), (0, 1), "{tally:?}");
    assert_eq!(h.nodes()[0].launch_phase, Some(LaunchPhase::Creating));
    let (plan, _) = h.round();
    assert!(
        plan.actions.is_empty(),
        "no second create while it may appear: {plan:#?}"
    );
    h.age_phases(plan::policy::CREATE_ANSWER_GRACE_S);
    let (plan, tally) = h.round();
    assert_eq!(names(&plan), ["forget"], "{plan:#?}");
    assert_eq!(tally.failed, 1, "{tally:?}");
    assert_eq!(pass::cooldowns(h.db.conn()).unwrap()[0].failures, 1);
    let (plan, _) = h.round();
    assert_eq!(names(&plan), ["launch"], "then a replacement: {plan:#?}");
}

#[test]
fn a_row_whose_create_was_never_sent_is_forgotten_at_once() {
    let h = Harness::settled();
    let new = nodes::NewNode {
        provider: "p1".into(),
        label: "small".into(),
        target: "jenkins".into(),
        state: NodeState::Building,
        az: None,
        launch_phase: Some(LaunchPhase::Requested),
        image_external_id: Some(h.image_id.clone()),
    };
    nodes::insert(h.db.conn(), &new, crate::clock::now(), |_| "n".into()).unwrap();
    let (plan, tally) = h.round();
    assert_eq!(names(&plan), ["forget"], "{plan:#?}");
    assert_eq!(tally.failed, 0, "{tally:?}");
    assert!(h.nodes().is_empty());
}

#[test]
fn a_create_answered_without_an_id_keeps_its_row_and_adopts_the_server() {
    let h = Harness::new();
    h.cloud().script(Op::CreateServer, Fault::CreatedWithoutId);
    let tally = h.execute(vec![h.launch("small")]);
    assert_eq!((tally.failed, tally.errors.len()), (0, 1), "{tally:?}");
    assert_eq!(h.nodes().len(), 1, "the row stays");
    let (plan, _) = h.round();
    assert_eq!(names(&plan), ["adopt"], "{plan:#?}");
    let server = h.cloud().servers().pop().unwrap();
    assert_eq!(h.nodes()[0].external_id, Some(server.id));
    assert!(
        pass::cooldowns(h.db.conn()).unwrap().is_empty(),
        "no failure"
    );
}

#[test]
fn a_server_without_a_public_address_gets_a_floating_ip() {
    let h = Harness::with_pool();
    h.launched("small");
    h.cloud().activate_all();
    let (plan, tally) = h.round();
    assert_eq!(names(&plan), ["attach-floating-ip"], "{plan:#?}");
    assert!(tally.errors.is_empty(), "{tally:?}");
    let ips = h.cloud().floating_ips();
    assert_eq!(ips.len(), 1);
    let node = &h.nodes()[0];
    assert_eq!(node.launch_phase, Some(LaunchPhase::FloatingIp));
    assert_eq!(node.ip.as_deref(), Some(ips[0].ip.as_str()));
}

#[test]
fn an_attach_that_fails_releases_its_floating_ip_at_once_and_counts_a_failure() {
    let h = Harness::with_pool();
    let node = h.launched("small");
    h.cloud().activate_all();
    let refused = CloudError::new(ErrorKind::Api { status: 409 }, "port has no fixed IP");
    h.cloud()
        .script(Op::AttachFloatingIp, Fault::Error(refused));
    let (_, tally) = h.round();
    assert_eq!((tally.errors.len(), tally.failed), (1, 1), "{tally:?}");
    assert!(
        tally.errors[0].contains("port has no fixed IP"),
        "{tally:?}"
    );
    assert!(h.cloud().floating_ips().is_empty(), "released at once");
    let after = &h.nodes()[0];
    assert_eq!((after.id, after.state), (node.id, NodeState::Building));
    assert_eq!(
        (after.ip.clone(), after.floating_ip_id.clone()),
        (None, None)
    );
    assert_eq!(pass::cooldowns(h.db.conn()).unwrap()[0].failures, 1);
    // The next round tries again, and a node that gets one releases it with itself.
    let (_, tally) = h.round();
    assert!(tally.errors.is_empty(), "{tally:?}");
    let fip = h.cloud().floating_ips().pop().expect("attached this time");
    let recorded = h.nodes()[0].floating_ip_id.clone();
    assert_eq!(recorded.as_deref(), Some(fip.id.as_str()));
    let node = h.nodes().pop().unwrap();
    h.execute(vec![delete(&node, NodeState::Building, false)]);
    assert!(
        h.cloud().floating_ips().is_empty(),
        "released by its recorded id"
    );
}

#[test]
fn a_server_missing_from_one_listing_does_not_retire_its_node() {
    let h = Harness::new();
    h.round();
    h.cloud().activate_all();
    h.round();
    h.round();
    let node = h.nodes().pop().unwrap();
    assert_eq!(node.state, NodeState::Ready);
    let server = node.external_id.clone().unwrap();
    h.cloud()
        .script(Op::ListServers, Fault::Omit(server.clone()));
    let (plan, tally) = h.round();
    assert_eq!(names(&plan), ["check-vanished"], "{plan:#?}");
    assert!(tally.errors.is_empty(), "{tally:?}");
    assert_eq!(
        h.nodes(),
        [node],
        "the GET found the server: nothing changed"
    );
    assert_eq!(h.cloud().calls(Op::DeleteServer), 0);
    let (plan, _) = h.round();
    assert!(plan.actions.is_empty(), "listed again: {plan:#?}");
}

#[test]
fn a_server_the_cloud_no_longer_has_retires_its_node_and_a_building_one_counts_a_failure() {
    let h = Harness::new();
    let node = h.launched("small");
    h.cloud()
        .remove_server(node.external_id.as_deref().unwrap());
    let (plan, tally) = h.round();
    assert_eq!(names(&plan), ["check-vanished"], "{plan:#?}");
    assert_eq!(tally.failed, 1, "{tally:?}");
    let after = h.nodes().into_iter().find(|n| n.id == node.id).unwrap();
    assert_eq!(after.state, NodeState::Delete);
    assert!(after.last_error.unwrap().contains("vanished"));
    assert_eq!(pass::cooldowns(h.db.conn()).unwrap()[0].failures, 1);
}

// ---------------------------------------------------------------------------------------------
// Deletes and leaks.
// ---------------------------------------------------------------------------------------------

fn delete(node: &Node, from: NodeState, failure: bool) -> Action {
    action(
        Some(node.label.as_str()),
        Step::Cloud(CloudStep::Delete {
            node: node.id,
            from,
            server_ids: node.external_id.iter().cloned().collect(),
            failure,
        }),
    )
}

#[test]
fn a_delete_marks_the_node_deletes_its_server_and_counts_a_failure_when_asked() {
    let h = Harness::settled();
    let node = h.launched("small");
    let tally = h.execute(vec![delete(&node, NodeState::Building, true)]);
    assert_eq!((tally.deleting, tally.failed), (1, 1), "{tally:?}");
    let after = &h.nodes()[0];
    assert_eq!(after.state, NodeState::Delete);
    assert_eq!(after.launch_phase, Some(LaunchPhase::Deleting));
    assert!(h.cloud().servers().is_empty());
    assert_eq!(pass::cooldowns(h.db.conn()).unwrap()[0].failures, 1);
    let (plan, tally) = h.round();
    assert_eq!(names(&plan)[0], "remove-row", "{plan:#?}");
    assert_eq!(tally.deleted, 1);
    assert!(h.nodes().is_empty());
}

#[test]
fn a_delete_loses_to_a_hold_typed_since_the_round_observed() {
    let h = Harness::new();
    let node = h.launched("small");
    h.hold(&node);
    h.execute(vec![delete(&node, NodeState::Building, true)]);
    assert_eq!(h.nodes()[0].state, NodeState::Hold);
    assert_eq!(h.cloud().servers().len(), 1);
    assert_eq!(h.cloud().calls(Op::DeleteServer), 0);
}

#[test]
fn a_delete_the_cloud_accepts_and_does_not_do_is_sent_again_after_the_retry_time() {
    let h = Harness::settled();
    let node = h.launched("small");
    h.cloud().script(Op::DeleteServer, Fault::IgnoreDelete);
    h.execute(vec![delete(&node, NodeState::Building, false)]);
    assert_eq!(h.cloud().servers().len(), 1, "the cloud kept it");
    let (plan, _) = h.round();
    assert!(
        !names(&plan).contains(&"delete"),
        "asked a moment ago: {plan:#?}"
    );
    h.age_phases(plan::policy::DELETE_RETRY_S);
    let (plan, _) = h.round();
    assert_eq!(names(&plan), ["delete"], "{plan:#?}");
    assert!(h.cloud().servers().is_empty());
    assert_eq!(h.cloud().calls(Op::DeleteServer), 2);
}

#[test]
fn a_leak_is_deleted_only_when_a_get_still_shows_it_as_ours() {
    let h = Harness::new();
    let node = h.launched("small");
    let ours = node.external_id.clone().unwrap();
    nodes::remove(h.db.conn(), node.id, NodeState::Building).unwrap();
    let stranger = h.cloud().add_server(&crate::cloud::CreateServer {
        name: "someone-else".into(),
        metadata: [(meta::INSTALLATION.to_string(), "another".to_string())].into(),
        ..Default::default()
    });
    let leak = |id: &str| {
        action(
            None,
            Step::Cloud(CloudStep::DeleteLeak {
                server_id: id.into(),
            }),
        )
    };
    let sight = |id: &str| {
        action(
            None,
            Step::Local(LocalStep::SightLeak {
                server_id: id.into(),
            }),
        )
    };
    h.execute(vec![sight(&ours), sight(&stranger)]);
    assert_eq!(pass::leaks(h.db.conn()).unwrap().len(), 2);
    let tally = h.execute(vec![leak(&ours), leak(&stranger)]);
    assert_eq!(tally.leaks_deleted, 1, "{tally:?}");
    let left: Vec<String> = h.cloud().servers().into_iter().map(|s| s.id).collect();
    assert_eq!(left, [stranger]);
    assert_eq!(h.cloud().calls(Op::GetServer), 2);
    // The stranger's sighting is dropped; ours stays until the listing no longer shows it.
    assert_eq!(pass::leaks(h.db.conn()).unwrap().len(), 1);
    h.execute(vec![action(
        None,
        Step::Local(LocalStep::ForgetLeak { server_id: ours }),
    )]);
    assert!(pass::leaks(h.db.conn()).unwrap().is_empty());
}

#[test]
fn delete_now_finds_unrecorded_servers_of_this_installation_and_provider_only() {
    let h = Harness::new();
    let ours = h.cloud().add_server(&crate::cloud::CreateServer {
        metadata: [
            (meta::INSTALLATION.to_string(), h.installation.clone()),
            (meta::PROVIDER.to_string(), "p1".to_string()),
            (meta::NODE_ID.to_string(), "7".to_string()),
        ]
        .into(),
        ..Default::default()
    });
    for (installation, provider) in [("another", "p1"), (h.installation.as_str(), "p2")] {
        h.cloud().add_server(&crate::cloud::CreateServer {
            metadata: [
                (meta::INSTALLATION.to_string(), installation.to_string()),
                (meta::PROVIDER.to_string(), provider.to_string()),
                (meta::NODE_ID.to_string(), "7".to_string()),
            ]
            .into(),
            ..Default::default()
        });
    }
    let listed = crate::cloud::Cloud::list_servers(h.cloud()).unwrap();
    let found: Vec<&str> = super::servers_of_node(&listed, &h.installation, "p1", NodeId(7))
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(found, [ours.as_str()]);
}

// ---------------------------------------------------------------------------------------------
// SSH steps, the deadline, and the store-only steps on subnodes.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_host_key_scan_of_a_node_not_answering_yet_waits_without_an_error() {
    let h = Harness::new();
    let node = h.launched("small");
    let tally = h.execute(vec![action(
        Some("small"),
        Step::Ssh(SshStep::ScanHostKeys {
            member: Member::primary(node.id),
            ip: "127.0.0.1".into(),
            port: 1,
        }),
    )]);
    assert!(tally.errors.is_empty() && !tally.progressed, "{tally:?}");
    assert_eq!(h.nodes()[0].launch_phase, Some(LaunchPhase::Booting));
}

#[test]
fn a_failed_bootstrap_deletes_the_node_as_a_launch_failure() {
    let h = Harness::new();
    let node = h.launched("small");
    let step = nodes::Progress {
        phase: Some(LaunchPhase::Reachable),
        ip: Some("127.0.0.1"),
        ..nodes::Progress::default()
    };
    nodes::progress(
        h.db.conn(),
        Member::primary(node.id),
        NodeState::Building,
        &step,
        1,
    )
    .unwrap();
    let tally = h.execute(vec![action(
        Some("small"),
        Step::Ssh(SshStep::Bootstrap { node: node.id }),
    )]);
    assert_eq!((tally.failed, tally.errors.len()), (1, 1), "{tally:?}");
    assert!(tally.errors[0].contains("bootstrap failed"), "{tally:?}");
    assert_eq!(h.nodes()[0].state, NodeState::Delete);
    assert_eq!(pass::cooldowns(h.db.conn()).unwrap()[0].failures, 1);
}

#[test]
fn no_cloud_call_starts_after_the_deadline() {
    let h = Harness::new();
    let plan = Plan {
        actions: vec![h.launch("small"), h.launch("small")],
        ..Plan::default()
    };
    let tally = h
        .runner(Instant::now())
        .execute(&h.db, &plan, crate::clock::now());
    assert_eq!((tally.deferred, tally.launched), (2, 0), "{tally:?}");
    assert!(h.cloud().log().is_empty(), "{:?}", h.cloud().log());
    assert!(h.nodes().is_empty(), "no intent written either");
}

#[test]
fn no_ssh_step_starts_after_the_deadline() {
    let h = Harness::new();
    let node = h.launched("small");
    let scan = action(
        Some("small"),
        Step::Ssh(SshStep::ScanHostKeys {
            member: Member::primary(node.id),
            ip: "127.0.0.1".into(),
            port: 1,
        }),
    );
    let plan = Plan {
        actions: vec![
            scan,
            action(
                Some("small"),
                Step::Ssh(SshStep::Bootstrap { node: node.id }),
            ),
        ],
        ..Plan::default()
    };
    let started = Instant::now();
    let tally = h
        .runner(Instant::now())
        .execute(&h.db, &plan, crate::clock::now());
    assert_eq!((tally.deferred, tally.failed), (2, 0), "{tally:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "nothing was run"
    );
    assert_eq!(h.nodes()[0].state, NodeState::Building);
}

#[test]
fn store_steps_on_a_subnode_change_only_its_row() {
    let h = Harness::new();
    let node = h.launched("multi");
    h.execute(vec![action(
        Some("multi"),
        Step::Cloud(CloudStep::LaunchSubnode { node: node.id }),
    )]);
    let sub = h.subnodes().pop().unwrap();
    let record = action(
        Some("multi"),
        Step::Local(LocalStep::RecordAddress {
            member: sub.member(),
            ip: "127.2.0.9".into(),
            ip_private: None,
            next_phase: LaunchPhase::Reachable,
        }),
    );
    assert!(h.execute(vec![record]).progressed);
    let (node_after, sub_after) = (&h.nodes()[0], &h.subnodes()[0]);
    assert_eq!(sub_after.ip.as_deref(), Some("127.2.0.9"));
    assert_eq!(sub_after.launch_phase, Some(LaunchPhase::Reachable));
    assert_eq!(node_after.ip, None);
    assert_eq!(node_after.launch_phase, Some(LaunchPhase::Booting));
    h.execute(vec![action(
        Some("multi"),
        Step::Local(LocalStep::Forget {
            member: sub.member(),
            failure: false,
        }),
    )]);
    assert!(h.subnodes().is_empty());
    assert_eq!(h.nodes().len(), 1);
    h.execute(vec![action(
        Some("multi"),
        Step::Local(LocalStep::MarkReady { node: node.id }),
    )]);
    assert_eq!(h.nodes()[0].state, NodeState::Ready);
}

#[test]
fn a_recorded_floating_ip_released_by_someone_else_is_forgotten_and_a_new_one_asked_for() {
    let h = Harness::with_pool();
    let node = h.launched("small");
    h.cloud().activate_all();
    let member = Member::primary(node.id);
    let server_id = node.external_id.clone().unwrap();
    let attach = |recorded: Option<String>| {
        action(
            Some("small"),
            Step::Cloud(CloudStep::AttachFloatingIp {
                member,
                server_id: server_id.clone(),
                pool: "public".into(),
                floating_ip_id: recorded,
            }),
        )
    };
    let step = nodes::Progress {
        floating_ip_id: Some("fip-gone"),
        ..nodes::Progress::default()
    };
    nodes::progress(h.db.conn(), member, NodeState::Building, &step, 1).unwrap();
    let tally = h.execute(vec![attach(Some("fip-gone".into()))]);
    assert!(tally.errors[0].contains("is gone"), "{tally:?}");
    assert_eq!(h.nodes()[0].floating_ip_id, None);
    let tally = h.execute(vec![attach(None)]);
    assert!(tally.errors.is_empty(), "{tally:?}");
    assert_eq!(h.cloud().floating_ips().len(), 1);
}

#[test]
fn a_providers_creates_overlap_up_to_max_concurrency_and_never_beyond() {
    let fill = |concurrency: &str| {
        let h = Harness::with(|c| {
            *c = c
                .replace("min-ready: 1", "min-ready: 12")
                .replace("max-servers: 10", &format!("max-servers: 12{concurrency}"))
        });
        h.cloud().set_create_latency(Duration::from_millis(100));
        let (_, tally) = h.round();
        assert_eq!(tally.launched, 12, "{tally:?}");
        assert_eq!(
            h.cloud().calls(Op::CreateServer),
            12,
            "each node one create"
        );
        h.cloud().peak_creates_in_flight()
    };
    assert_eq!(fill("\n    max-concurrency: 3"), 3);
    assert_eq!(
        fill("\n    max-concurrency: 1"),
        1,
        "1 is the one-at-a-time of before"
    );
    // By default only the thread cap bounds them here (`rate` spaces starts in the HTTP
    // client's gate, which this cloud has not: see cloud::gate's tests); each thread's intent
    // commit comes first, one after another, so not all twelve need overlap.
    let peak = fill("");
    assert!(peak > 3, "{peak}");
}

#[test]
fn a_floating_ip_allocated_by_a_run_that_died_before_recording_it_is_adopted_not_leaked() {
    use crate::cloud::Cloud;
    let h = Harness::with_pool();
    let node = h.launched("small");
    h.cloud().activate_all();
    // The dead run: its intent, then an allocation whose answer it never recorded.
    let member = Member::primary(node.id);
    let intent = nodes::begin_floating_ip(h.db.conn(), member, crate::clock::now()).unwrap();
    assert_eq!(intent, nodes::FloatingIpIntent::New);
    let description = crate::cloud::floating_ip_description(&h.installation, member);
    let orphan = h
        .cloud()
        .allocate_floating_ip("public", &description)
        .unwrap();
    let (plan, tally) = h.round();
    assert_eq!(names(&plan), ["attach-floating-ip"], "{plan:#?}");
    assert!(tally.errors.is_empty(), "{tally:?}");
    let ips = h.cloud().floating_ips();
    assert_eq!(ips.len(), 1, "no second IP: {ips:?}");
    assert_eq!(ips[0].id, orphan.id);
    assert!(ips[0].server_id.is_some(), "attached");
    assert_eq!(
        h.nodes()[0].floating_ip_id.as_deref(),
        Some(orphan.id.as_str())
    );
}

#[test]
fn flavors_are_listed_once_and_kept_for_later_runs() {
    let h = Harness::new();
    h.launched("small");
    assert_eq!(h.cloud().calls(Op::ListFlavors), 1);
    // A later run (its own launch cache) reuses the kept listing.
    let later = Harness {
        cache: LaunchCache::default(),
        ..h
    };
    later.launched("small");
    assert_eq!(later.cloud().calls(Op::ListFlavors), 1);
}

#[test]
fn a_create_refused_for_a_gone_image_or_flavor_forgets_the_kept_listing() {
    use crate::state::listings::{self, Kind};
    let h = Harness::new();
    let p1 = ProviderName::from("p1");
    let now = crate::clock::now();
    let images = crate::cloud::Cloud::list_images(h.cloud()).unwrap();
    listings::put(h.db.conn(), &p1, Kind::Images, now, &images).unwrap();
    let gone = |what: &str| CloudError::new(ErrorKind::Api { status: 400 }, what);
    h.cloud().script(
        Op::CreateServer,
        Fault::Error(gone("Image image-1 could not be found.")),
    );
    let tally = h.execute(vec![h.launch("small")]);
    assert_eq!(tally.failed, 1, "{tally:?}");
    let kept = |kind| {
        listings::get::<serde_json::Value>(h.db.conn(), &p1, kind, 0)
            .unwrap()
            .is_some()
    };
    assert!(!kept(Kind::Images), "the image listing is stale");
    assert!(kept(Kind::Flavors), "the flavors are not");
    h.cloud().script(
        Op::CreateServer,
        Fault::Error(gone("Flavor flavor-1 could not be found.")),
    );
    h.execute(vec![h.launch("small")]);
    assert!(!kept(Kind::Flavors));
    // The next launch finds a flavor again.
    h.launched("small");
    assert_eq!(h.cloud().calls(Op::ListFlavors), 2);
}

#[test]
fn a_create_that_was_never_sent_forgets_its_row_and_is_no_failure() {
    let h = Harness::new();
    let late = CloudError::new(
        ErrorKind::NotSent,
        "memory: POST compute /servers: not started: the run's time is up",
    );
    h.cloud().script(Op::CreateServer, Fault::Error(late));
    let tally = h.execute(vec![h.launch("small")]);
    assert_eq!((tally.failed, tally.errors.len()), (0, 1), "{tally:?}");
    assert!(h.nodes().is_empty(), "no server can exist for it");
    assert!(pass::cooldowns(h.db.conn()).unwrap().is_empty());
}

#[test]
fn a_create_refused_for_its_image_counts_against_that_image() {
    use crate::state::images;
    let h = Harness::new();
    let conn = h.db.conn();
    let row = images::insert_provider_image(
        conn,
        &"p1".into(),
        &"trusty".into(),
        1,
        crate::model::ImageState::Building,
        0,
    )
    .unwrap();
    images::record_external_id(conn, row, &h.image_id).unwrap();
    images::transition_provider_image(
        conn,
        row,
        crate::model::ImageState::Building,
        crate::model::ImageState::Ready,
        0,
    )
    .unwrap();
    let failed = || images::list_provider_images(conn).unwrap()[0].failed_launches;
    let too_big = CloudError::new(
        ErrorKind::Api { status: 400 },
        "Flavor's disk is too small for requested image. Flavor disk is 1 GB, image is 20 GB.",
    );
    h.cloud().script(Op::CreateServer, Fault::Error(too_big));
    h.execute(vec![h.launch("small")]);
    assert_eq!(failed(), 1);
    // A refusal about something else is not the image's.
    let flavor = CloudError::new(ErrorKind::Api { status: 400 }, "Invalid flavor");
    h.cloud().script(Op::CreateServer, Fault::Error(flavor));
    h.execute(vec![h.launch("small")]);
    assert_eq!(failed(), 1);
}
