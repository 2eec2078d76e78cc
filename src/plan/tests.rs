//! Table tests of the planner: a configuration loaded from YAML, an `Observed` written by hand,
//! and the plan it gives. Each test states one behaviour; the helpers below keep each case to
//! a few lines.
//!
//! The fixture's pool is settled (min-ready 0) unless a test asks for a deficit, so the only
//! actions in a plan are the ones the test is about.

use std::collections::BTreeMap;

use super::policy::{CREATE_ANSWER_GRACE_S, DELETE_RETRY_S, LEAK_GRACE_S, STALE_AFTER_S};
use super::{plan, Action, CloudStep, CloudView, LocalStep, Mode, Observed, Plan, SshStep, Step};
use crate::config::{Config, ImageSource, Provider};
use crate::model::cloud::{Image, Metadata, Server, ServerStatus};
use crate::model::image::ProviderImage;
use crate::model::node::{Node, Subnode};
use crate::model::pass::{Allocation, Blocker, Cooldown, Sighting};
use crate::model::{ImageState, LaunchPhase, Member, NodeId, NodeState, SubnodeId};

const NOW: i64 = 1_700_000_000;
const INSTALLATION: &str = "install-a";
/// The cloud image the fixture's providers boot `trusty` from (`base-image`).
const BASE_IMAGE: &str = "Ubuntu Trusty";
const IMAGE_ID: &str = "img-trusty";

/// Two providers: p1 (max-servers 10, two zones, SSH on port 2222, boot-timeout 60 s,
/// launch-timeout 3600 s) and p2 (max-servers 5, inline credentials, floating IPs from `public`,
/// no SSH); labels `trusty`, `precise` and `multi` (two subnodes); two targets.
const CONFIG: &str = r#"
labels:
  - name: trusty
    image: trusty
    min-ready: 0
    providers:
      - name: p1
      - name: p2
  - name: precise
    image: trusty
    min-ready: 0
    providers:
      - name: p1
  - name: multi
    image: trusty
    min-ready: 0
    subnodes: 2
    providers:
      - name: p1
      - name: p2

providers:
  - name: p1
    cloud: cloud1
    max-servers: 10
    availability-zones: [az1, az2]
    max-actions-per-pass: 100
    images:
      - name: trusty
        base-image: 'Ubuntu Trusty'
        min-ram: 2048
        connection-port: 2222
  - name: p2
    username: jenkins
    password: secret
    auth-url: https://keystone.example.com/v3
    project-id: ci
    max-servers: 5
    boot-timeout: 120
    launch-timeout: 1800
    pool: public
    host-key-checking: false
    images:
      - name: trusty
        base-image: 'Ubuntu Trusty'
        min-ram: 2048

targets:
  - name: jenkins1
  - name: jenkins2
"#;

fn load_config(yaml: &str) -> Config {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nodepool.yaml");
    std::fs::write(&path, yaml).expect("write config");
    crate::config::load(&path).unwrap_or_else(|e| panic!("fixture config invalid:\n{e}"))
}

// ---------------------------------------------------------------------------------------------
// The world a test plans over.
// ---------------------------------------------------------------------------------------------

struct World {
    config: Config,
    observed: Observed,
}

impl World {
    /// A settled pool: both providers reachable, listing the base image, no nodes, no servers.
    fn new() -> World {
        let seen = CloudView::Seen {
            servers: Vec::new(),
            images: vec![cloud_image(IMAGE_ID, BASE_IMAGE)],
            images_listed_at: NOW,
        };
        World {
            config: load_config(CONFIG),
            observed: Observed {
                now: NOW,
                installation: INSTALLATION.into(),
                clouds: [("p1".into(), seen.clone()), ("p2".into(), seen)]
                    .into_iter()
                    .collect(),
                ..Observed::default()
            },
        }
    }

    fn min_ready(&mut self, label: &str, n: u32) -> &mut Self {
        self.config.labels.get_mut(label).expect("label").min_ready = Some(n);
        self
    }

    /// Restrict a label to the given providers.
    fn only_on(&mut self, label: &str, providers: &[&str]) -> &mut Self {
        self.config.labels.get_mut(label).expect("label").providers =
            providers.iter().map(|p| (*p).into()).collect();
        self
    }

    fn provider(&mut self, name: &str) -> &mut Provider {
        self.config.providers.get_mut(name).expect("provider")
    }

    /// p1's image trusty is made by snapshot (a setup script) instead of being the cloud's.
    fn snapshot_trusty_on_p1(&mut self) -> &mut Self {
        self.provider("p1")
            .images
            .get_mut("trusty")
            .expect("image")
            .source = ImageSource::Snapshot {
            base_image: BASE_IMAGE.into(),
            setup: "prepare_node.sh".into(),
        };
        self
    }

    fn add(&mut self, node: Node) -> &mut Self {
        self.observed.nodes.push(node);
        self
    }

    fn add_subnode(&mut self, subnode: Subnode) -> &mut Self {
        self.observed.subnodes.push(subnode);
        self
    }

    /// A node row and, listed on its provider, its ACTIVE server.
    fn add_live(&mut self, node: Node) -> &mut Self {
        let server = server_on(node.provider.as_str(), &srv(node.id.0), node.id.0);
        self.serve(node.provider.as_str(), server).add(node)
    }

    /// A subnode row of a node on `provider` and its ACTIVE server.
    fn add_live_subnode(&mut self, provider: &str, subnode: Subnode) -> &mut Self {
        let id = subnode.external_id.clone().expect("subnode with a server");
        let server = subnode_server_on(provider, &id, subnode.node_id.0, subnode.id.0);
        self.serve(provider, server).add_subnode(subnode)
    }

    fn serve(&mut self, provider: &str, server: Server) -> &mut Self {
        match self.observed.clouds.get_mut(provider) {
            Some(CloudView::Seen { servers, .. }) => servers.push(server),
            _ => panic!("{provider} is not listed"),
        }
        self
    }

    fn images_on(&mut self, provider: &str, listed: Vec<Image>) -> &mut Self {
        match self.observed.clouds.get_mut(provider) {
            Some(CloudView::Seen { images, .. }) => *images = listed,
            _ => panic!("{provider} is not listed"),
        }
        self
    }

    /// The provider's image listing was made at `at` (kept from an earlier round).
    fn images_listed_on(&mut self, provider: &str, at: i64) -> &mut Self {
        match self.observed.clouds.get_mut(provider) {
            Some(CloudView::Seen {
                images_listed_at, ..
            }) => *images_listed_at = at,
            _ => panic!("{provider} is not listed"),
        }
        self
    }

    fn unreachable(&mut self, provider: &str) -> &mut Self {
        self.observed.clouds.insert(
            provider.into(),
            CloudView::Unreachable {
                error: "connection refused".into(),
                auth_refused: false,
            },
        );
        self
    }

    /// A cooldown that ends at `until` by the policy: three failures of `label`, or a quota
    /// refusal of the whole provider (no label).
    fn cooldown(&mut self, provider: &str, label: Option<&str>, until: i64) -> &mut Self {
        let mut cooldown = Cooldown {
            provider: provider.into(),
            label: label.map(Into::into),
            failures: if label.is_some() { 3 } else { 0 },
            last_time: 0,
            last_error: Some("No valid host was found".into()),
        };
        cooldown.last_time = until - super::policy::cooldown_end(&cooldown);
        self.observed.cooldowns.push(cooldown);
        self
    }

    fn sighted(&mut self, provider: &str, server_id: &str, first: i64, last: i64) -> &mut Self {
        self.observed.leaks.insert(
            (provider.into(), server_id.into()),
            Sighting {
                first_seen: first,
                last_seen: last,
            },
        );
        self
    }

    fn plan(&self) -> Plan {
        plan(&self.config, &self.observed, Mode::Reconcile)
    }

    fn cleanup(&self) -> Plan {
        plan(&self.config, &self.observed, Mode::Cleanup)
    }
}

// ---------------------------------------------------------------------------------------------
// Rows and servers.
// ---------------------------------------------------------------------------------------------

/// The server id the fixtures give node `id`.
fn srv(id: i64) -> String {
    format!("srv-{id}")
}

/// A node of label `trusty` on p1 for target jenkins1, in `state` for a minute, with its
/// server recorded.
/// A ready provider image nodepool made: row `id` of image trusty on p1, version `id`, cloud
/// image `snap-ID`, ready an hour ago.
fn provider_image(id: i64) -> ProviderImage {
    ProviderImage {
        id,
        provider: "p1".into(),
        image: "trusty".into(),
        hostname: None,
        version: Some(id),
        external_id: Some(format!("snap-{id}")),
        server_external_id: None,
        dib_image_id: None,
        state: ImageState::Ready,
        state_time: NOW - 3600 + id,
        phase: None,
        last_error: None,
        phase_time: None,
        ip: None,
        keypair_name: None,
        log: None,
        failed_launches: 0,
        launched_ok: false,
    }
}

fn node(id: i64, state: NodeState) -> Node {
    Node {
        id: NodeId(id),
        provider: "p1".into(),
        label: "trusty".into(),
        target: "jenkins1".into(),
        manager: None,
        hostname: format!("trusty-p1-{id}"),
        nodename: Some(format!("trusty-p1-{id}")),
        external_id: Some(srv(id)),
        az: None,
        ip: Some(format!("203.0.113.{id}")),
        ip_private: Some(format!("10.0.0.{id}")),
        state,
        state_time: NOW - 60,
        comment: None,
        launch_phase: None,
        launch_time: Some(NOW - 60),
        last_error: None,
        snapshot_image_id: None,
        image_external_id: Some(IMAGE_ID.into()),
        owner: None,
        phase_time: Some(NOW - 60),
        floating_ip_id: None,
    }
}

/// A building node in `phase` (entered 10 s ago), launched 30 s ago, its server recorded.
fn building(id: i64, phase: &str) -> Node {
    Node {
        launch_phase: Some(phase_of(phase)),
        phase_time: Some(NOW - 10),
        launch_time: Some(NOW - 30),
        state_time: NOW - 30,
        ..node(id, NodeState::Building)
    }
}

/// Subnode `id` of node `node_id`, building in `phase`, its server (`sub-ID`) recorded.
fn subnode(id: i64, node_id: i64, phase: &str) -> Subnode {
    Subnode {
        id: SubnodeId(id),
        node_id: NodeId(node_id),
        hostname: format!("multi-{node_id}-{id}"),
        external_id: Some(format!("sub-{id}")),
        ip: Some(format!("203.0.113.{id}")),
        ip_private: None,
        state: NodeState::Building,
        state_time: NOW - 30,
        launch_phase: Some(phase_of(phase)),
        phase_time: Some(NOW - 10),
        last_error: None,
        floating_ip_id: None,
    }
}

fn phase_of(name: &str) -> LaunchPhase {
    LaunchPhase::parse(name).unwrap_or_else(|| panic!("no launch phase `{name}`"))
}

/// An ACTIVE server on p1 carrying this installation's metadata for node `node`.
fn server(id: &str, node: i64) -> Server {
    server_on("p1", id, node)
}

fn server_on(provider: &str, id: &str, node: i64) -> Server {
    let metadata: Metadata = [
        (super::meta::INSTALLATION, INSTALLATION.to_string()),
        (super::meta::PROVIDER, provider.to_string()),
        (super::meta::NODE_ID, node.to_string()),
        (super::meta::LABEL, "trusty".to_string()),
        (super::meta::IMAGE, "trusty".to_string()),
    ]
    .into_iter()
    .collect();
    Server {
        id: id.into(),
        name: format!("server-{id}"),
        status: ServerStatus::Active,
        metadata,
        public_v4: Some(format!("198.51.100.{node}")),
        public_v6: None,
        private_v4: Some(format!("10.1.0.{node}")),
    }
}

fn subnode_server_on(provider: &str, id: &str, node: i64, subnode: i64) -> Server {
    let mut server = server_on(provider, id, node);
    server
        .metadata
        .insert(super::meta::SUBNODE_ID, subnode.to_string());
    server
}

/// A server with `status` and no public address.
fn private_only(server: Server, status: ServerStatus) -> Server {
    Server {
        status,
        public_v4: None,
        ..server
    }
}

fn cloud_image(id: &str, name: &str) -> Image {
    Image {
        id: id.into(),
        name: name.into(),
        status: "active".into(),
        properties: BTreeMap::new(),
        size: None,
        md5: None,
        sha512: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a plan.
// ---------------------------------------------------------------------------------------------

fn steps(plan: &Plan) -> Vec<&Step> {
    plan.actions.iter().map(|a| &a.step).collect()
}

fn names(plan: &Plan) -> Vec<&'static str> {
    plan.actions.iter().map(|a| a.step.name()).collect()
}

fn of_node(plan: &Plan, id: i64) -> Vec<&Step> {
    plan.actions
        .iter()
        .filter(|a| a.step.node() == Some(NodeId(id)))
        .map(|a| &a.step)
        .collect()
}

fn launches(plan: &Plan) -> Vec<&Action> {
    plan.actions
        .iter()
        .filter(|a| matches!(a.step, Step::Cloud(CloudStep::Launch { .. })))
        .collect()
}

/// Launches per provider, as (provider, count), providers in name order.
fn launches_per_provider(plan: &Plan) -> Vec<(String, usize)> {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for action in launches(plan) {
        *count.entry(action.provider.to_string()).or_default() += 1;
    }
    count.into_iter().collect()
}

fn allocation<'a>(plan: &'a Plan, label: &str, provider: &str) -> &'a Allocation {
    plan.allocation
        .iter()
        .find(|a| a.label.as_str() == label && a.provider.as_str() == provider)
        .unwrap_or_else(|| panic!("no allocation row for {label} on {provider}: {plan:#?}"))
}

/// What blocked `label` on `provider`, as the text `status` shows.
fn blocker(plan: &Plan, label: &str, provider: &str) -> String {
    allocation(plan, label, provider)
        .blocker
        .as_ref()
        .map(Blocker::to_string)
        .unwrap_or_else(|| panic!("no blocker for {label} on {provider}: {plan:#?}"))
}

/// The member of node `node`: its primary, or subnode `sub`.
fn member(node: i64, sub: Option<i64>) -> Member {
    Member {
        node: NodeId(node),
        subnode: sub.map(SubnodeId),
    }
}

fn delete(node: i64, from: NodeState, server_ids: &[&str], failure: bool) -> Step {
    Step::Cloud(CloudStep::Delete {
        node: NodeId(node),
        from,
        server_ids: server_ids.iter().map(|s| (*s).to_string()).collect(),
        failure,
    })
}

fn check_vanished(from: NodeState, server_id: &str, failure: bool) -> Step {
    Step::Cloud(CloudStep::CheckVanished {
        node: NodeId(1),
        from,
        server_id: server_id.into(),
        failure,
    })
}

fn forget(node: i64, sub: Option<i64>) -> Step {
    Step::Local(LocalStep::Forget {
        member: member(node, sub),
        failure: false,
    })
}

fn adopt(node: i64, server_id: &str) -> Step {
    Step::Local(LocalStep::Adopt {
        member: member(node, None),
        server_id: server_id.into(),
    })
}

fn record_address(ip: &str, ip_private: &str, next_phase: LaunchPhase) -> Step {
    Step::Local(LocalStep::RecordAddress {
        member: member(1, None),
        ip: ip.into(),
        ip_private: Some(ip_private.into()),
        next_phase,
    })
}

fn scan(node: i64, sub: Option<i64>, ip: &str, port: u16) -> Step {
    Step::Ssh(SshStep::ScanHostKeys {
        member: member(node, sub),
        ip: ip.into(),
        port,
    })
}

fn bootstrap(node: i64) -> Step {
    Step::Ssh(SshStep::Bootstrap { node: NodeId(node) })
}

fn mark_ready(node: i64) -> Step {
    Step::Local(LocalStep::MarkReady { node: NodeId(node) })
}

fn sight_leak(server_id: &str) -> Step {
    Step::Local(LocalStep::SightLeak {
        server_id: server_id.into(),
    })
}

fn forget_leak(server_id: &str) -> Step {
    Step::Local(LocalStep::ForgetLeak {
        server_id: server_id.into(),
    })
}

fn delete_leak(server_id: &str) -> Step {
    Step::Cloud(CloudStep::DeleteLeak {
        server_id: server_id.into(),
    })
}

// ---------------------------------------------------------------------------------------------
// Allocation: how many new nodes, where.
// ---------------------------------------------------------------------------------------------

#[test]
fn an_empty_pool_launches_min_ready_spread_over_providers_by_room() {
    let mut world = World::new();
    world.min_ready("trusty", 6);
    let plan = world.plan();

    // p1 has room for 10, p2 for 5: two thirds of the nodes go to p1.
    assert_eq!(
        launches_per_provider(&plan),
        [("p1".to_string(), 4), ("p2".to_string(), 2)]
    );
    assert_eq!(launches(&plan).len(), plan.actions.len(), "{plan:#?}");
    let mut per_target: BTreeMap<String, usize> = BTreeMap::new();
    for action in launches(&plan) {
        let Step::Cloud(CloudStep::Launch {
            target,
            image,
            image_id,
            ..
        }) = &action.step
        else {
            unreachable!()
        };
        assert_eq!(action.label.as_ref().map(|l| l.as_str()), Some("trusty"));
        assert_eq!((image.as_str(), image_id.as_str()), ("trusty", IMAGE_ID));
        assert!(
            action.reason.contains("min-ready 6"),
            "reason: {}",
            action.reason
        );
        *per_target.entry(target.to_string()).or_default() += 1;
    }
    assert_eq!(
        per_target.into_iter().collect::<Vec<_>>(),
        [("jenkins1".to_string(), 3), ("jenkins2".to_string(), 3)]
    );
    // p1 lists two zones and fills them evenly; p2 lists none.
    let zones: Vec<(&str, Option<&str>)> = launches(&plan)
        .iter()
        .map(|a| match &a.step {
            Step::Cloud(CloudStep::Launch { az, .. }) => (a.provider.as_str(), az.as_deref()),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        zones,
        [
            ("p1", Some("az1")),
            ("p1", Some("az2")),
            ("p1", Some("az1")),
            ("p1", Some("az2")),
            ("p2", None),
            ("p2", None),
        ]
    );
    let row = allocation(&plan, "trusty", "p1");
    assert_eq!((row.deficit, row.granted, row.time), (6, 4, NOW));
    assert_eq!(row.blocker, None);
    assert_eq!(allocation(&plan, "trusty", "p2").granted, 2);
}

#[test]
fn new_nodes_go_to_the_target_and_zone_with_fewest_nodes() {
    let mut world = World::new();
    world.min_ready("precise", 3);
    for id in 1..=2 {
        world.add_live(Node {
            label: "precise".into(),
            az: Some("az1".into()),
            ..node(id, NodeState::Ready)
        });
    }
    let plan = world.plan();
    let launched: Vec<(String, Option<String>)> = launches(&plan)
        .iter()
        .map(|a| match &a.step {
            Step::Cloud(CloudStep::Launch { target, az, .. }) => (target.to_string(), az.clone()),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        launched,
        [("jenkins2".to_string(), Some("az2".to_string()))]
    );
}

#[test]
fn ready_building_and_test_nodes_count_against_min_ready() {
    let mut world = World::new();
    world.min_ready("trusty", 4).only_on("trusty", &["p1"]);
    world
        .add_live(node(1, NodeState::Ready))
        .add_live(building(2, "ssh"))
        .add_live(node(3, NodeState::Test));
    let plan = world.plan();
    assert_eq!(launches(&plan).len(), 1, "{plan:#?}");
    assert!(launches(&plan)[0]
        .reason
        .contains("3 ready/building/test < min-ready 4"));
    assert_eq!(allocation(&plan, "trusty", "p1").deficit, 1);
}

#[test]
fn used_held_and_deleting_nodes_do_not_count_against_min_ready() {
    let mut world = World::new();
    world.min_ready("trusty", 3).only_on("trusty", &["p1"]);
    world
        .add_live(node(1, NodeState::Used))
        .add_live(node(2, NodeState::Hold))
        .add_live(node(3, NodeState::Delete));
    let plan = world.plan();
    assert_eq!(launches(&plan).len(), 3, "{plan:#?}");
    assert_eq!(allocation(&plan, "trusty", "p1").deficit, 3);
}

#[test]
fn a_disabled_label_launches_nothing() {
    let mut world = World::new();
    world.config.labels.get_mut("trusty").unwrap().min_ready = None;
    let plan = world.plan();
    assert!(plan.actions.is_empty(), "{plan:#?}");
    assert!(plan.allocation.iter().all(|a| a.label.as_str() != "trusty"));
}

#[test]
fn a_full_pool_launches_nothing() {
    let mut world = World::new();
    world.min_ready("trusty", 2);
    world
        .add_live(node(1, NodeState::Ready))
        .add_live(node(2, NodeState::Ready));
    let plan = world.plan();
    assert!(plan.actions.is_empty(), "{plan:#?}");
    let row = allocation(&plan, "trusty", "p1");
    assert_eq!(
        (row.deficit, row.granted, row.blocker.as_ref()),
        (0, 0, None)
    );
}

#[test]
fn a_provider_without_the_image_gets_no_launch() {
    let mut world = World::new();
    world.min_ready("trusty", 3);
    // The image is listed but not usable yet, then not listed at all.
    world.images_on(
        "p2",
        vec![Image {
            status: "queued".into(),
            ..cloud_image(IMAGE_ID, BASE_IMAGE)
        }],
    );
    let plan = world.plan();
    assert_eq!(launches_per_provider(&plan), [("p1".to_string(), 3)]);
    let missing = "no ready image `trusty`: cloud image `Ubuntu Trusty` not found in Glance";
    assert_eq!(blocker(&plan, "trusty", "p2"), missing);

    world.images_on("p2", Vec::new());
    assert_eq!(blocker(&world.plan(), "trusty", "p2"), missing);
}

#[test]
fn status_tells_why_a_diskimage_has_no_ready_image() {
    use crate::model::image::DibImage;
    let mut world = World::new();
    world.min_ready("precise", 1);
    world
        .provider("p1")
        .images
        .get_mut("trusty")
        .unwrap()
        .source = ImageSource::DiskImage {
        diskimage: "ubuntu-dib".into(),
    };
    let why = |world: &World| blocker(&world.plan(), "precise", "p1");
    assert_eq!(why(&world), "no ready image `trusty`: never built");
    world.observed.build_failures.insert(
        "ubuntu-dib".into(),
        "/var/log/nodepool/builds/ubuntu-dib-7.log".into(),
    );
    assert_eq!(
        why(&world),
        "no ready image `trusty`: last build failed: /var/log/nodepool/builds/ubuntu-dib-7.log"
    );
    let build = |state| DibImage {
        id: 1,
        image: "ubuntu-dib".into(),
        filename: Some("/opt/images/ubuntu-dib-8".into()),
        version: 8,
        state,
        state_time: NOW - 60,
        last_error: None,
        builder_pid: None,
    };
    world.observed.builds = vec![build(ImageState::Ready)];
    assert_eq!(
        why(&world),
        "no ready image `trusty`: built (version 8), not uploaded here yet"
    );
    world.observed.builds = vec![build(ImageState::Building)];
    assert_eq!(
        why(&world),
        format!(
            "no ready image `trusty`: building since {}",
            crate::clock::rfc3339(NOW - 60)
        )
    );
}

#[test]
fn a_cloud_image_is_found_by_id_as_well_as_by_name() {
    let mut world = World::new();
    world.min_ready("precise", 1);
    world.images_on("p1", vec![cloud_image(BASE_IMAGE, "renamed")]);
    let plan = world.plan();
    match &launches(&plan)[..] {
        [action] => {
            assert!(
                matches!(&action.step, Step::Cloud(CloudStep::Launch { image_id, .. }) if image_id == BASE_IMAGE)
            )
        }
        other => panic!("expected one launch: {other:#?}"),
    }
}

#[test]
fn snapshot_images_boot_from_the_newest_ready_one_the_cloud_still_has() {
    let mut world = World::new();
    world.min_ready("precise", 1);
    world.snapshot_trusty_on_p1();
    let row = |id: i64, provider: &str, external: Option<&str>, state: ImageState| ProviderImage {
        provider: provider.into(),
        external_id: external.map(Into::into),
        state,
        ..provider_image(id)
    };
    world.observed.images = vec![
        row(1, "p1", Some("snap-1"), ImageState::Ready),
        row(2, "p1", Some("snap-2"), ImageState::Ready),
        row(3, "p1", None, ImageState::Building),
        // Ready in the database, but the cloud no longer lists it.
        row(4, "p1", Some("snap-4"), ImageState::Ready),
        // Another provider's upload.
        row(5, "p2", Some("snap-5"), ImageState::Ready),
    ];
    let listed = |ids: &[&str]| ids.iter().map(|id| cloud_image(id, "trusty")).collect();
    let booted_from = |world: &World| -> Vec<String> {
        launches(&world.plan())
            .iter()
            .map(|a| match &a.step {
                Step::Cloud(CloudStep::Launch { image_id, .. }) => image_id.clone(),
                _ => unreachable!(),
            })
            .collect()
    };
    world.images_on("p1", listed(&["snap-1", "snap-2", "snap-5"]));
    assert_eq!(booted_from(&world), ["snap-2"]);
    // The newest deleted: launches fall back to the previous one.
    world.images_on("p1", listed(&["snap-1"]));
    assert_eq!(booted_from(&world), ["snap-1"]);
    // The base image alone is not a snapshot.
    world.images_on("p1", vec![cloud_image(IMAGE_ID, BASE_IMAGE)]);
    let plan = world.plan();
    assert!(launches(&plan).is_empty());
    assert_eq!(
        blocker(&plan, "precise", "p1"),
        format!(
            "no ready image `trusty`: building since {}",
            crate::clock::rfc3339(NOW - 3600 + 3)
        )
    );

    // A listing kept from before snap-4 became ready does not know it: the row is trusted.
    world.images_on("p1", listed(&["snap-1", "snap-2"]));
    world.images_listed_on("p1", NOW - 3600 + 3);
    assert_eq!(booted_from(&world), ["snap-4"]);
    // One made after it does, and it is not there: gone.
    world.images_listed_on("p1", NOW - 3600 + 4);
    assert_eq!(booted_from(&world), ["snap-2"]);
}

#[test]
fn a_new_image_whose_first_launches_all_failed_is_rolled_back_from() {
    let mut world = World::new();
    world.min_ready("precise", 1);
    world.snapshot_trusty_on_p1();
    let row = |id: i64, failed_launches: i64, launched_ok: bool| ProviderImage {
        version: Some(100 + id),
        failed_launches,
        launched_ok,
        ..provider_image(id)
    };
    world.images_on(
        "p1",
        vec![
            cloud_image("snap-1", "trusty"),
            cloud_image("snap-2", "trusty"),
        ],
    );
    let outcome = |world: &World| {
        let plan = world.plan();
        let booted: Vec<String> = launches(&plan)
            .iter()
            .filter_map(|a| match &a.step {
                Step::Cloud(CloudStep::Launch { image_id, .. }) => Some(image_id.clone()),
                _ => None,
            })
            .collect();
        let marked: Vec<(i64, String)> = plan
            .actions
            .iter()
            .filter_map(|a| match &a.step {
                Step::Local(LocalStep::MarkImageFailed { image }) => {
                    Some((*image, a.reason.clone()))
                }
                _ => None,
            })
            .collect();
        (booted, marked)
    };
    // Two failures of the new image: still launched from (rollback-after is 3).
    world.observed.images = vec![row(1, 0, true), row(2, 2, false)];
    assert_eq!(outcome(&world), (vec!["snap-2".to_string()], vec![]));
    // The third: marked failed, and this very round launches from the previous one.
    world.observed.images = vec![row(1, 0, true), row(2, 3, false)];
    let (booted, marked) = outcome(&world);
    assert_eq!(booted, ["snap-1"]);
    assert_eq!(marked.len(), 1, "{marked:?}");
    assert_eq!(marked[0].0, 2);
    assert!(
        marked[0].1.contains("3 launches in a row failed"),
        "{}",
        marked[0].1
    );
    assert!(marked[0].1.contains("version 101"), "{}", marked[0].1);
    // Once marked, it is skipped and not marked again.
    let mut failed = row(2, 3, false);
    failed.last_error = Some("rolled back".into());
    world.observed.images = vec![row(1, 0, true), failed];
    assert_eq!(outcome(&world), (vec!["snap-1".to_string()], vec![]));
    // An image that has worked is not rolled back from by later failures (the cloud, not the
    // image, is likelier at fault); nor is one with nothing to fall back to.
    world.observed.images = vec![row(1, 0, true), row(2, 5, true)];
    assert_eq!(outcome(&world), (vec!["snap-2".to_string()], vec![]));
    world.observed.images = vec![row(2, 5, false)];
    assert_eq!(outcome(&world), (vec!["snap-2".to_string()], vec![]));
    // rollback-after is the provider's.
    world.provider("p1").rollback_after = 6;
    world.observed.images = vec![row(1, 0, true), row(2, 5, false)];
    assert_eq!(outcome(&world), (vec!["snap-2".to_string()], vec![]));
}

#[test]
fn an_unreachable_provider_gets_no_launch_and_says_why() {
    let mut world = World::new();
    world.min_ready("trusty", 3).unreachable("p2");
    let plan = world.plan();
    assert_eq!(launches_per_provider(&plan), [("p1".to_string(), 3)]);
    let why = blocker(&plan, "trusty", "p2");
    assert!(why.starts_with("unreachable") && why.contains("connection refused"));
}

#[test]
fn refused_credentials_block_a_label_as_such_not_as_unreachable() {
    let mut world = World::new();
    world.min_ready("trusty", 3);
    world.observed.clouds.insert(
        "p2".into(),
        CloudView::Unreachable {
            error: "p2: authentication refused by https://k/v3 for user `u`".into(),
            auth_refused: true,
        },
    );
    let plan = world.plan();
    let blocked = allocation(&plan, "trusty", "p2").blocker.clone().unwrap();
    assert_eq!(blocked.code(), "auth-refused");
    assert!(
        blocked
            .to_string()
            .starts_with("authentication refused: p2: "),
        "{blocked}"
    );
}

#[test]
fn a_label_cooling_down_on_a_provider_launches_elsewhere() {
    let mut world = World::new();
    world
        .min_ready("trusty", 3)
        .cooldown("p2", Some("trusty"), NOW + 30);
    let plan = world.plan();
    assert_eq!(launches_per_provider(&plan), [("p1".to_string(), 3)]);
    let why = blocker(&plan, "trusty", "p2");
    assert!(
        why.starts_with("cooldown, 30 s left after 3 failures"),
        "{why}"
    );
    assert!(why.contains("No valid host"), "{why}");
}

#[test]
fn a_cooldown_of_another_label_does_not_block() {
    let mut world = World::new();
    world
        .min_ready("trusty", 3)
        .cooldown("p2", Some("multi"), NOW + 30);
    assert_eq!(
        launches_per_provider(&world.plan()),
        [("p1".to_string(), 2), ("p2".to_string(), 1)]
    );
}

#[test]
fn an_expired_cooldown_launches_again() {
    let mut world = World::new();
    world
        .min_ready("trusty", 3)
        .cooldown("p2", Some("trusty"), NOW);
    let plan = world.plan();
    assert_eq!(
        launches_per_provider(&plan),
        [("p1".to_string(), 2), ("p2".to_string(), 1)]
    );
    assert_eq!(allocation(&plan, "trusty", "p2").blocker, None);
}

#[test]
fn a_provider_out_of_quota_launches_no_label() {
    let mut world = World::new();
    world
        .min_ready("trusty", 3)
        .min_ready("multi", 1)
        .cooldown("p2", None, NOW + 60);
    let plan = world.plan();
    assert!(launches(&plan).iter().all(|a| a.provider.as_str() == "p1"));
    for label in ["trusty", "multi"] {
        let why = blocker(&plan, label, "p2");
        assert!(why.starts_with("quota, 60 s left"), "{label}: {why}");
    }
}

#[test]
fn a_provider_at_max_servers_counts_nodes_and_subnodes() {
    let mut world = World::new();
    world.min_ready("trusty", 20);
    // p2 (max-servers 5): one node of `multi` with its two subnodes, and two of `trusty`.
    world.add_live(Node {
        provider: "p2".into(),
        label: "multi".into(),
        ..node(1, NodeState::Ready)
    });
    world
        .add_live_subnode(
            "p2",
            Subnode {
                state: NodeState::Ready,
                ..subnode(11, 1, "reachable")
            },
        )
        .add_live_subnode(
            "p2",
            Subnode {
                state: NodeState::Ready,
                ..subnode(12, 1, "reachable")
            },
        );
    for id in 2..=3 {
        world.add_live(Node {
            provider: "p2".into(),
            ..node(id, NodeState::Ready)
        });
    }
    let plan = world.plan();
    assert_eq!(launches_per_provider(&plan), [("p1".to_string(), 10)]);
    assert_eq!(blocker(&plan, "trusty", "p2"), "at max-servers");
    assert_eq!(blocker(&plan, "trusty", "p1"), "at max-servers");
}

#[test]
fn a_node_with_subnodes_needs_room_for_all_its_servers() {
    let mut world = World::new();
    world.min_ready("multi", 5).only_on("multi", &["p2"]);
    let plan = world.plan();
    // p2 has room for 5 servers: one node of three.
    assert_eq!(launches_per_provider(&plan), [("p2".to_string(), 1)]);
    assert_eq!(blocker(&plan, "multi", "p2"), "at max-servers");
}

#[test]
fn subnodes_still_to_launch_are_reserved_under_max_servers() {
    let mut world = World::new();
    world.min_ready("multi", 2).only_on("multi", &["p1"]);
    world.provider("p1").max_servers = 4;
    // A primary whose two subnodes are not launched yet: it will take three servers.
    world
        .add_live(Node {
            label: "multi".into(),
            ..building(1, "booting")
        })
        .serve("p1", private_only(server("srv-1", 1), ServerStatus::Build));
    let plan = world.plan();
    assert_eq!(
        names(&plan),
        ["launch-subnode", "launch-subnode"],
        "{plan:#?}"
    );
    assert_eq!(blocker(&plan, "multi", "p1"), "at max-servers");
}

#[test]
fn launches_stop_at_max_actions_per_pass() {
    let mut world = World::new();
    world.min_ready("trusty", 5).only_on("trusty", &["p1"]);
    world.provider("p1").max_actions_per_pass = 3;
    let plan = world.plan();
    assert_eq!(launches_per_provider(&plan), [("p1".to_string(), 3)]);
    assert_eq!(blocker(&plan, "trusty", "p1"), "per-pass bound");
}

#[test]
fn max_actions_per_pass_keeps_deletes_first_and_defers_the_rest() {
    let mut world = World::new();
    world.min_ready("trusty", 2).only_on("trusty", &["p1"]);
    world.provider("p1").max_actions_per_pass = 2;
    // Node 1 wants two subnodes (mutating), nodes 2 and 3 want their servers deleted.
    world
        .add(Node {
            label: "multi".into(),
            ..building(1, "booting")
        })
        .serve("p1", private_only(server("srv-1", 1), ServerStatus::Build))
        .add_live(node(2, NodeState::Delete))
        .add_live(node(3, NodeState::Delete));
    let plan = world.plan();
    assert_eq!(
        steps(&plan),
        [
            &delete(2, NodeState::Delete, &["srv-2"], false),
            &delete(3, NodeState::Delete, &["srv-3"], false),
        ]
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("p1: 2 actions deferred") && n.contains("max-actions-per-pass")),
        "{:?}",
        plan.notes
    );
    assert!(plan.in_flight > 0);
    assert_eq!(blocker(&plan, "trusty", "p1"), "per-pass bound");
}

#[test]
fn a_label_starved_last_pass_goes_first_when_room_is_short() {
    let mut world = World::new();
    world
        .min_ready("trusty", 5)
        .min_ready("precise", 5)
        .unreachable("p2");
    world.provider("p1").max_servers = 1;
    let launched = |plan: &Plan| -> Vec<String> {
        launches(plan)
            .iter()
            .map(|a| a.label.as_ref().unwrap().to_string())
            .collect()
    };
    // Equal need: the first by name wins the one server.
    assert_eq!(launched(&world.plan()), ["precise"]);

    world.observed.allocations = vec![
        Allocation {
            label: "trusty".into(),
            provider: "p1".into(),
            deficit: 5,
            granted: 0,
            blocker: Some(Blocker::AtMaxServers),
            time: NOW - 60,
        },
        Allocation {
            label: "precise".into(),
            provider: "p1".into(),
            deficit: 5,
            granted: 1,
            blocker: None,
            time: NOW - 60,
        },
    ];
    assert_eq!(launched(&world.plan()), ["trusty"]);
}

// ---------------------------------------------------------------------------------------------
// Held nodes and nodes the configuration no longer knows.
// ---------------------------------------------------------------------------------------------

#[test]
fn held_nodes_are_never_touched() {
    let mut world = World::new();
    // Server vanished; server in ERROR; label left the configuration; old and used.
    world.add(node(1, NodeState::Hold));
    world.add(node(2, NodeState::Hold)).serve(
        "p1",
        Server {
            status: ServerStatus::Error,
            ..server("srv-2", 2)
        },
    );
    world.add_live(Node {
        label: "gone".into(),
        ..node(3, NodeState::Hold)
    });
    world.add_live(Node {
        state_time: NOW - STALE_AFTER_S - 1,
        ..node(4, NodeState::Hold)
    });
    let plan = world.plan();
    assert!(plan.actions.is_empty(), "{plan:#?}");
    assert_eq!(plan.in_flight, 0);
    assert_eq!(
        plan.notes,
        ["node 3 is held; kept although its label `gone` is no longer configured"]
    );
}

#[test]
fn a_server_made_for_a_held_node_is_not_a_leak() {
    let mut world = World::new();
    // Held while building, after the create call but before its answer was recorded.
    world
        .add(Node {
            external_id: None,
            ..Node {
                state: NodeState::Hold,
                ..building(1, "requested")
            }
        })
        .serve("p1", server("srv-made", 1))
        .sighted("p1", "srv-made", NOW - LEAK_GRACE_S - 60, NOW - 60);
    let plan = world.plan();
    // Its earlier sighting as a leak is dropped; nothing is deleted.
    assert_eq!(steps(&plan), [&forget_leak("srv-made")]);
}

#[test]
fn a_node_whose_label_left_the_config_is_deleted() {
    let mut world = World::new();
    world.add_live(Node {
        label: "gone".into(),
        ..node(1, NodeState::Ready)
    });
    let plan = world.plan();
    assert_eq!(
        steps(&plan),
        [&delete(1, NodeState::Ready, &["srv-1"], false)]
    );
    assert!(plan.actions[0].reason.contains("label `gone`"));
}

#[test]
fn a_node_whose_target_left_the_config_is_deleted() {
    let mut world = World::new();
    world.add_live(Node {
        target: "jenkins9".into(),
        ..building(1, "ssh")
    });
    let plan = world.plan();
    assert_eq!(
        steps(&plan),
        [&delete(1, NodeState::Building, &["srv-1"], false)]
    );
    assert!(plan.actions[0].reason.contains("target `jenkins9`"));
}

#[test]
fn a_node_whose_provider_left_the_config_gets_a_note_and_no_action() {
    let mut world = World::new();
    world.add(Node {
        provider: "p9".into(),
        ..node(1, NodeState::Ready)
    });
    let plan = world.plan();
    assert!(plan.actions.is_empty(), "{plan:#?}");
    assert_eq!(plan.notes.len(), 1);
    assert!(plan.notes[0].contains("node 1: provider `p9` is no longer configured"));
}

#[test]
fn nodes_on_an_unreachable_provider_are_left_alone() {
    let mut world = World::new();
    world
        .add(node(1, NodeState::Ready))
        .add(node(2, NodeState::Delete))
        .add(building(3, "ssh"))
        .unreachable("p1");
    let plan = world.plan();
    assert!(plan.actions.is_empty(), "{plan:#?}");
    assert!(plan.notes.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Building nodes: one step per round.
// ---------------------------------------------------------------------------------------------

#[test]
fn building_nodes_take_one_step_per_round() {
    struct Case {
        name: &'static str,
        node: Node,
        servers: Vec<Server>,
        expect: Vec<Step>,
    }
    let on_p2 = |node: Node| Node {
        provider: "p2".into(),
        ..node
    };
    let cases = vec![
        Case {
            name: "create call left no server: forget the row",
            node: Node {
                external_id: None,
                ..building(1, "requested")
            },
            servers: vec![],
            expect: vec![forget(1, None)],
        },
        Case {
            name: "a server names the row but the row never recorded it: adopt it",
            node: Node {
                external_id: None,
                ..building(1, "requested")
            },
            servers: vec![server("srv-made", 1)],
            expect: vec![adopt(1, "srv-made")],
        },
        Case {
            name: "create sent, no answer recorded, no server yet: wait for it",
            node: Node {
                external_id: None,
                phase_time: Some(NOW - CREATE_ANSWER_GRACE_S + 1),
                ..building(1, "creating")
            },
            servers: vec![],
            expect: vec![],
        },
        Case {
            name: "create sent and no server within the grace period: forget, a failure",
            node: Node {
                external_id: None,
                phase_time: Some(NOW - CREATE_ANSWER_GRACE_S),
                ..building(1, "creating")
            },
            servers: vec![],
            expect: vec![Step::Local(LocalStep::Forget {
                member: member(1, None),
                failure: true,
            })],
        },
        Case {
            name: "create sent, answer lost, its server listed: adopt it",
            node: Node {
                external_id: None,
                ..building(1, "creating")
            },
            servers: vec![server("srv-made", 1)],
            expect: vec![adopt(1, "srv-made")],
        },
        Case {
            name: "a server of another installation naming the same id is not ours",
            node: Node {
                external_id: None,
                ..building(1, "requested")
            },
            servers: vec![{
                let mut alien = server("srv-alien", 1);
                alien
                    .metadata
                    .insert(super::meta::INSTALLATION, "install-b");
                alien
            }],
            expect: vec![forget(1, None)],
        },
        Case {
            name: "server still BUILD: wait",
            node: building(1, "booting"),
            servers: vec![private_only(server("srv-1", 1), ServerStatus::Build)],
            expect: vec![],
        },
        Case {
            name: "ACTIVE with a public address: record it, SSH next",
            node: building(1, "booting"),
            servers: vec![server("srv-1", 1)],
            expect: vec![record_address("198.51.100.1", "10.1.0.1", LaunchPhase::Ssh)],
        },
        Case {
            name: "ACTIVE with only a private address and no pool: use it",
            node: building(1, "booting"),
            servers: vec![private_only(server("srv-1", 1), ServerStatus::Active)],
            expect: vec![record_address("10.1.0.1", "10.1.0.1", LaunchPhase::Ssh)],
        },
        Case {
            name: "host-key-checking off: an address makes it reachable",
            node: on_p2(building(1, "booting")),
            servers: vec![server_on("p2", "srv-1", 1)],
            expect: vec![record_address(
                "198.51.100.1",
                "10.1.0.1",
                LaunchPhase::Reachable,
            )],
        },
        Case {
            name: "ACTIVE without a public address on a provider with a pool: floating IP",
            node: on_p2(building(1, "booting")),
            servers: vec![private_only(
                server_on("p2", "srv-1", 1),
                ServerStatus::Active,
            )],
            expect: vec![Step::Cloud(CloudStep::AttachFloatingIp {
                member: member(1, None),
                server_id: "srv-1".into(),
                pool: "public".into(),
                floating_ip_id: None,
            })],
        },
        Case {
            name: "floating IP asked for: wait",
            node: on_p2(building(1, "floating-ip")),
            servers: vec![private_only(
                server_on("p2", "srv-1", 1),
                ServerStatus::Active,
            )],
            expect: vec![],
        },
        Case {
            name: "floating IP allocated and recorded, the run killed before the attach: attach it",
            node: Node {
                ip: None,
                floating_ip_id: Some("fip-7".into()),
                ..on_p2(building(1, "floating-ip"))
            },
            servers: vec![private_only(
                server_on("p2", "srv-1", 1),
                ServerStatus::Active,
            )],
            expect: vec![Step::Cloud(CloudStep::AttachFloatingIp {
                member: member(1, None),
                server_id: "srv-1".into(),
                pool: "public".into(),
                floating_ip_id: Some("fip-7".into()),
            })],
        },
        Case {
            name: "no floating IP within boot-timeout: fail",
            node: Node {
                phase_time: Some(NOW - 121),
                ..on_p2(building(1, "floating-ip"))
            },
            servers: vec![private_only(
                server_on("p2", "srv-1", 1),
                ServerStatus::Active,
            )],
            expect: vec![delete(1, NodeState::Building, &["srv-1"], true)],
        },
        Case {
            name: "address recorded: scan host keys on the image's connection-port",
            node: building(1, "ssh"),
            servers: vec![server("srv-1", 1)],
            expect: vec![scan(1, None, "203.0.113.1", 2222)],
        },
        Case {
            name: "SSH silent past boot-timeout: delete as a failure",
            node: Node {
                phase_time: Some(NOW - 61),
                ..building(1, "ssh")
            },
            servers: vec![server("srv-1", 1)],
            expect: vec![delete(1, NodeState::Building, &["srv-1"], true)],
        },
        Case {
            name: "server in ERROR: delete as a failure",
            node: building(1, "booting"),
            servers: vec![Server {
                status: ServerStatus::Error,
                ..server("srv-1", 1)
            }],
            expect: vec![delete(1, NodeState::Building, &["srv-1"], true)],
        },
        Case {
            name: "past launch-timeout: delete as a failure",
            node: Node {
                launch_time: Some(NOW - 3601),
                ..building(1, "booting")
            },
            servers: vec![private_only(server("srv-1", 1), ServerStatus::Build)],
            expect: vec![delete(1, NodeState::Building, &["srv-1"], true)],
        },
        Case {
            name: "recorded server missing from the listing: a GET decides (a failure if gone)",
            node: building(1, "booting"),
            servers: vec![],
            expect: vec![check_vanished(NodeState::Building, "srv-1", true)],
        },
        Case {
            name: "host keys recorded: bootstrap",
            node: building(1, "reachable"),
            servers: vec![server("srv-1", 1)],
            expect: vec![bootstrap(1)],
        },
        Case {
            name: "ready scripts running: the bootstrap looks at them again",
            node: building(1, "bootstrapping"),
            servers: vec![server("srv-1", 1)],
            expect: vec![bootstrap(1)],
        },
        Case {
            name: "ready scripts running past launch-timeout: delete as a failure",
            node: Node {
                launch_time: Some(NOW - 3601),
                ..building(1, "bootstrapping")
            },
            servers: vec![server("srv-1", 1)],
            expect: vec![delete(1, NodeState::Building, &["srv-1"], true)],
        },
        Case {
            name: "reachable without SSH: mark ready",
            node: on_p2(building(1, "reachable")),
            servers: vec![server_on("p2", "srv-1", 1)],
            expect: vec![mark_ready(1)],
        },
    ];
    for case in cases {
        let mut world = World::new();
        let provider = case.node.provider.to_string();
        world.add(case.node);
        for server in case.servers {
            world.serve(&provider, server);
        }
        let plan = world.plan();
        let expect: Vec<&Step> = case.expect.iter().collect();
        // The whole plan: an adopted or alien server is no leak either.
        assert_eq!(steps(&plan), expect, "{}: {plan:#?}", case.name);
        assert!(
            plan.actions
                .iter()
                .all(|a| a.step.node() == Some(NodeId(1))),
            "{}: {plan:#?}",
            case.name
        );
        assert!(plan.in_flight > 0, "{}: nothing in flight", case.name);
    }
}

#[test]
fn an_adopted_server_is_not_a_leak_even_when_sighted_before() {
    let mut world = World::new();
    world
        .add(Node {
            external_id: None,
            ..building(1, "requested")
        })
        .serve("p1", server("srv-made", 1))
        .sighted("p1", "srv-made", NOW - LEAK_GRACE_S - 60, NOW - 60);
    let plan = world.plan();
    assert_eq!(
        steps(&plan),
        [&adopt(1, "srv-made"), &forget_leak("srv-made"),]
    );
}

#[test]
fn a_primary_launches_its_missing_subnodes_first() {
    let mut world = World::new();
    world.min_ready("multi", 2).only_on("multi", &["p1"]);
    world
        .add(Node {
            label: "multi".into(),
            ..building(1, "booting")
        })
        .serve("p1", private_only(server("srv-1", 1), ServerStatus::Build));
    let plan = world.plan();
    assert_eq!(
        names(&plan),
        ["launch-subnode", "launch-subnode", "launch"],
        "{plan:#?}"
    );
    assert_eq!(of_node(&plan, 1).len(), 2);
}

#[test]
fn a_primary_not_yet_created_launches_no_subnodes() {
    let mut world = World::new();
    world.add(Node {
        label: "multi".into(),
        external_id: None,
        ..building(1, "requested")
    });
    assert_eq!(steps(&world.plan()), [&forget(1, None)]);
}

/// A `multi` node on `provider`: primary and subnodes 11, 12 in the given phases, all ACTIVE.
fn multi_world(provider: &str, primary: &str, subnodes: [&str; 2]) -> World {
    let mut world = World::new();
    world.add_live(Node {
        provider: provider.into(),
        label: "multi".into(),
        ..building(1, primary)
    });
    for (id, phase) in [11, 12].into_iter().zip(subnodes) {
        world.add_live_subnode(provider, subnode(id, 1, phase));
    }
    world
}

#[test]
fn a_set_is_bootstrapped_only_when_every_member_is_reachable() {
    let plan = multi_world("p1", "reachable", ["reachable", "ssh"]).plan();
    assert_eq!(steps(&plan), [&scan(1, Some(12), "203.0.113.12", 2222)]);

    let mut world = multi_world("p1", "reachable", ["reachable", "booting"]);
    if let Some(CloudView::Seen { servers, .. }) = world.observed.clouds.get_mut("p1") {
        let sub = servers.iter_mut().find(|s| s.id == "sub-12").unwrap();
        sub.status = ServerStatus::Build;
    }
    let plan = world.plan();
    assert!(plan.actions.is_empty(), "{plan:#?}");
    assert!(plan.in_flight > 0);

    let plan = multi_world("p1", "reachable", ["reachable", "reachable"]).plan();
    assert_eq!(steps(&plan), [&bootstrap(1)]);

    let plan = multi_world("p2", "reachable", ["reachable", "reachable"]).plan();
    assert_eq!(steps(&plan), [&mark_ready(1)]);
}

#[test]
fn a_failed_subnode_fails_the_whole_set() {
    let mut world = multi_world("p1", "reachable", ["reachable", "ssh"]);
    if let Some(CloudView::Seen { servers, .. }) = world.observed.clouds.get_mut("p1") {
        let sub = servers.iter_mut().find(|s| s.id == "sub-12").unwrap();
        sub.status = ServerStatus::Error;
    }
    let plan = world.plan();
    assert_eq!(
        steps(&plan),
        [&delete(
            1,
            NodeState::Building,
            &["srv-1", "sub-11", "sub-12"],
            true
        )]
    );
    assert!(plan.actions[0].reason.starts_with("subnode 12:"));
}

#[test]
fn a_subnode_server_missing_from_the_listing_is_checked_before_anything_else() {
    let mut world = multi_world("p1", "reachable", ["reachable", "ssh"]);
    if let Some(CloudView::Seen { servers, .. }) = world.observed.clouds.get_mut("p1") {
        servers.retain(|s| s.id != "sub-12");
    }
    let plan = world.plan();
    assert_eq!(
        steps(&plan),
        [&check_vanished(NodeState::Building, "sub-12", true)]
    );
    assert!(
        plan.actions[0].reason.contains("node 1 subnode 12"),
        "{plan:#?}"
    );
}

#[test]
fn a_subnode_row_without_a_server_is_forgotten() {
    let mut world = multi_world("p1", "reachable", ["reachable", "reachable"]);
    world.observed.subnodes[1].external_id = None;
    if let Some(CloudView::Seen { servers, .. }) = world.observed.clouds.get_mut("p1") {
        servers.retain(|s| s.id != "sub-12");
    }
    assert_eq!(steps(&world.plan()), [&forget(1, Some(12))]);
}

// ---------------------------------------------------------------------------------------------
// Nodes in use, and nodes to delete.
// ---------------------------------------------------------------------------------------------

#[test]
fn ready_and_used_nodes_are_deleted_when_broken_or_stale() {
    struct Case {
        name: &'static str,
        node: Node,
        server: Option<Server>,
        expect: Vec<Step>,
    }
    let cases = vec![
        Case {
            name: "healthy ready node: nothing",
            node: node(1, NodeState::Ready),
            server: Some(server("srv-1", 1)),
            expect: vec![],
        },
        Case {
            name: "ready node whose server is missing from the listing: a GET decides",
            node: node(1, NodeState::Ready),
            server: None,
            expect: vec![check_vanished(NodeState::Ready, "srv-1", false)],
        },
        Case {
            name: "ready node whose server is in ERROR",
            node: node(1, NodeState::Ready),
            server: Some(Server {
                status: ServerStatus::Error,
                ..server("srv-1", 1)
            }),
            expect: vec![delete(1, NodeState::Ready, &["srv-1"], false)],
        },
        Case {
            name: "used for an hour: nothing",
            node: Node {
                state_time: NOW - 3600,
                ..node(1, NodeState::Used)
            },
            server: Some(server("srv-1", 1)),
            expect: vec![],
        },
        Case {
            name: "used for over 8 hours",
            node: Node {
                state_time: NOW - STALE_AFTER_S - 1,
                ..node(1, NodeState::Used)
            },
            server: Some(server("srv-1", 1)),
            expect: vec![delete(1, NodeState::Used, &["srv-1"], false)],
        },
        Case {
            name: "acquired an hour ago: nothing",
            node: Node {
                state_time: NOW - 3600,
                owner: Some("ci".into()),
                ..node(1, NodeState::Used)
            },
            server: Some(server("srv-1", 1)),
            expect: vec![],
        },
        Case {
            name: "acquired and not released for over max-acquired-age (8 hours)",
            node: Node {
                state_time: NOW - STALE_AFTER_S - 1,
                owner: Some("ci".into()),
                ..node(1, NodeState::Used)
            },
            server: Some(server("srv-1", 1)),
            expect: vec![delete(1, NodeState::Used, &["srv-1"], false)],
        },
        Case {
            name: "ready for over 8 hours: nothing (only used and building go stale)",
            node: Node {
                state_time: NOW - STALE_AFTER_S - 1,
                ..node(1, NodeState::Ready)
            },
            server: Some(server("srv-1", 1)),
            expect: vec![],
        },
    ];
    for case in cases {
        let mut world = World::new();
        world.add(case.node);
        if let Some(server) = case.server {
            world.serve("p1", server);
        }
        let plan = world.plan();
        let expect: Vec<&Step> = case.expect.iter().collect();
        assert_eq!(steps(&plan), expect, "{}: {plan:#?}", case.name);
    }
}

#[test]
fn a_deleted_node_loses_every_server_then_its_row() {
    let mut world = World::new();
    world
        .add_live(Node {
            label: "multi".into(),
            ..node(1, NodeState::Delete)
        })
        .add_live_subnode("p1", subnode(11, 1, "reachable"))
        .add_live_subnode("p1", subnode(12, 1, "reachable"))
        // A second server a killed run made for the same node.
        .serve("p1", server("srv-extra", 1));
    let plan = world.plan();
    match &steps(&plan)[..] {
        [Step::Cloud(CloudStep::Delete {
            from: NodeState::Delete,
            server_ids,
            failure: false,
            ..
        })] => {
            let mut ids = server_ids.clone();
            ids.sort();
            assert_eq!(ids, ["srv-1", "srv-extra", "sub-11", "sub-12"]);
        }
        other => panic!("expected one delete: {other:#?}"),
    }
    assert_eq!(plan.in_flight, 1);

    let mut world = World::new();
    world.add(node(1, NodeState::Delete));
    let plan = world.plan();
    assert_eq!(
        steps(&plan),
        [&Step::Local(LocalStep::RemoveRow {
            node: NodeId(1),
            from: NodeState::Delete
        })]
    );
}

#[test]
fn a_delete_just_asked_for_is_not_repeated_until_the_retry_time() {
    let deleting = |since: i64| Node {
        launch_phase: Some(LaunchPhase::Deleting),
        phase_time: Some(NOW - since),
        ..node(1, NodeState::Delete)
    };
    let mut world = World::new();
    world.add_live(deleting(10));
    let plan = world.plan();
    assert!(plan.actions.is_empty(), "{plan:#?}");
    assert_eq!(plan.in_flight, 1);

    let mut world = World::new();
    world.add_live(deleting(DELETE_RETRY_S));
    assert_eq!(
        steps(&world.plan()),
        [&delete(1, NodeState::Delete, &["srv-1"], false)]
    );
}

#[test]
fn a_delete_reason_is_the_nodes_last_error() {
    let mut world = World::new();
    world.add_live(Node {
        last_error: Some("ready-script failed".into()),
        ..node(1, NodeState::Delete)
    });
    assert_eq!(world.plan().actions[0].reason, "ready-script failed");
}

// ---------------------------------------------------------------------------------------------
// Leaked servers.
// ---------------------------------------------------------------------------------------------

#[test]
fn leaks_are_sighted_then_deleted_after_the_grace_period() {
    struct Case {
        name: &'static str,
        sighting: Option<(i64, i64)>,
        expect: Step,
    }
    let sight = sight_leak("srv-leak");
    let cases = vec![
        Case {
            name: "first sighting",
            sighting: None,
            expect: sight.clone(),
        },
        Case {
            name: "sighted recently: sight again",
            sighting: Some((NOW - 10, NOW - 10)),
            expect: sight.clone(),
        },
        Case {
            name: "sighted just inside the grace period",
            sighting: Some((NOW - LEAK_GRACE_S + 1, NOW - 60)),
            expect: sight.clone(),
        },
        Case {
            name: "first seen a grace period ago, seen on an earlier pass: delete",
            sighting: Some((NOW - LEAK_GRACE_S, NOW - 60)),
            expect: delete_leak("srv-leak"),
        },
        Case {
            name: "old sighting but only recorded this very second: sight again",
            sighting: Some((NOW - LEAK_GRACE_S, NOW)),
            expect: sight.clone(),
        },
    ];
    for case in cases {
        let mut world = World::new();
        world.serve("p1", server("srv-leak", 42));
        if let Some((first, last)) = case.sighting {
            world.sighted("p1", "srv-leak", first, last);
        }
        let plan = world.plan();
        assert_eq!(steps(&plan), [&case.expect], "{}", case.name);
        assert_eq!(plan.actions[0].step.node(), None);
        assert_eq!(plan.actions[0].provider.as_str(), "p1");
    }
}

#[test]
fn a_sighted_leak_that_is_gone_is_forgotten() {
    let mut world = World::new();
    world.sighted("p1", "srv-gone", NOW - 600, NOW - 60);
    assert_eq!(steps(&world.plan()), [&forget_leak("srv-gone")]);
}

#[test]
fn a_sighting_on_an_unreachable_provider_is_kept() {
    let mut world = World::new();
    world
        .sighted("p1", "srv-leak", NOW - 600, NOW - 60)
        .unreachable("p1");
    assert!(world.plan().actions.is_empty());
}

#[test]
fn servers_that_are_not_ours_or_belong_to_a_row_are_no_leak() {
    let mut world = World::new();
    let mut stranger = server("srv-stranger", 42);
    stranger.metadata.clear();
    let mut other_installation = server("srv-other", 43);
    other_installation
        .metadata
        .insert(super::meta::INSTALLATION, "install-b");
    // Ours, but made for the other provider: that provider's business.
    let other_provider = server_on("p2", "srv-p2", 44);
    world
        .serve("p1", stranger)
        .serve("p1", other_installation)
        .serve("p1", other_provider)
        // The server an image snapshot is being taken from.
        .serve("p1", server("srv-template", 0));
    world.observed.images.push(ProviderImage {
        hostname: Some("trusty-1.template.openstack.org".into()),
        external_id: None,
        server_external_id: Some("srv-template".into()),
        state: ImageState::Building,
        state_time: NOW - 60,
        phase: Some("booting".into()),
        phase_time: Some(NOW - 60),
        ..provider_image(1)
    });
    // A node's recorded server is known whatever the node's state.
    world.add_live(node(5, NodeState::Used));
    let plan = world.plan();
    assert!(plan.actions.is_empty(), "{plan:#?}");
}

#[test]
fn a_template_server_is_its_snapshot_rows_even_unrecorded_and_a_leak_without_one() {
    let template = |id: &str, row: i64| {
        let mut server = server(id, 0);
        server.metadata.remove(super::meta::NODE_ID);
        server
            .metadata
            .insert(super::meta::SNAPSHOT_IMAGE_ID, row.to_string());
        server
    };
    let mut world = World::new();
    // Row 1's create answer was lost: its server id is not recorded.
    world
        .serve("p1", template("srv-lost-answer", 1))
        .serve("p1", template("srv-orphan", 2))
        // Row 3's image is ready and its template was deleted, but the server lingers.
        .serve("p1", template("srv-lingering", 3));
    world.observed.images.push(ProviderImage {
        server_external_id: Some("srv-lingering".into()),
        ..provider_image(3)
    });
    world.observed.images.push(ProviderImage {
        hostname: Some("trusty-1.template.openstack.org".into()),
        external_id: None,
        server_external_id: None,
        state: ImageState::Building,
        state_time: NOW - 60,
        phase: Some("creating".into()),
        phase_time: Some(NOW - 60),
        ..provider_image(1)
    });
    let plan = world.plan();
    let sighted: Vec<&str> = plan
        .actions
        .iter()
        .filter_map(|a| match &a.step {
            Step::Local(LocalStep::SightLeak { server_id }) => Some(server_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(sighted, ["srv-lingering", "srv-orphan"], "{plan:#?}");
}

// ---------------------------------------------------------------------------------------------
// Cleanup mode.
// ---------------------------------------------------------------------------------------------

#[test]
fn cleanup_only_removes_things() {
    let mut world = World::new();
    world.min_ready("trusty", 3);
    world
        // Would record its address.
        .add_live(building(1, "booting"))
        // Would scan host keys.
        .add_live(building(2, "ssh"))
        // Stale: building for over 8 hours.
        .add_live(Node {
            state_time: NOW - STALE_AFTER_S - 1,
            launch_time: Some(NOW - STALE_AFTER_S - 1),
            ..building(3, "booting")
        })
        // To delete.
        .add_live(node(4, NodeState::Delete))
        // Its create call left no server.
        .add(Node {
            external_id: None,
            ..building(5, "requested")
        })
        // An old leak.
        .serve("p2", server_on("p2", "srv-leak", 42))
        .sighted("p2", "srv-leak", NOW - LEAK_GRACE_S - 1, NOW - 60);
    let plan = world.cleanup();
    assert_eq!(
        steps(&plan),
        [
            &delete(3, NodeState::Building, &["srv-3"], true),
            &delete(4, NodeState::Delete, &["srv-4"], false),
            &delete_leak("srv-leak"),
            &forget(5, None),
        ],
        "{plan:#?}"
    );
    assert_eq!(plan.actions[0].reason, "building for over 8 hours");
    assert!(plan.allocation.is_empty());
}

#[test]
fn cleanup_defers_only_what_it_would_do() {
    let mut world = World::new();
    world.provider("p2").max_actions_per_pass = 1;
    world
        // Wants a floating IP (not a cleanup action).
        .add_live(Node {
            provider: "p2".into(),
            ..building(1, "booting")
        })
        .add_live(Node {
            provider: "p2".into(),
            ..node(2, NodeState::Delete)
        });
    if let Some(CloudView::Seen { servers, .. }) = world.observed.clouds.get_mut("p2") {
        servers[0].public_v4 = None;
    }
    let plan = world.cleanup();
    assert_eq!(names(&plan), ["delete"]);
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);
}

// ---------------------------------------------------------------------------------------------
// Same input, same plan.
// ---------------------------------------------------------------------------------------------

/// A bit of everything: deficits, every lifecycle step, deletes, leaks, notes.
fn busy_world() -> World {
    let mut world = World::new();
    world
        .min_ready("trusty", 7)
        .min_ready("precise", 2)
        .min_ready("multi", 1);
    world
        .add_live(node(1, NodeState::Ready))
        .add_live(building(2, "booting"))
        .add_live(building(3, "ssh"))
        .add_live(node(4, NodeState::Delete))
        .add_live(Node {
            label: "gone".into(),
            ..node(5, NodeState::Hold)
        })
        .add(Node {
            external_id: None,
            ..building(6, "requested")
        })
        .serve("p1", server("srv-made", 6))
        .serve("p1", server("srv-leak-a", 40))
        .serve("p2", server_on("p2", "srv-leak-b", 41))
        .sighted("p1", "srv-leak-a", NOW - 900, NOW - 60)
        .sighted("p2", "srv-gone", NOW - 900, NOW - 60)
        .cooldown("p2", Some("precise"), NOW + 100);
    world
}

#[test]
fn the_same_input_gives_the_same_plan() {
    let world = busy_world();
    let first = world.plan();
    let second = world.plan();
    assert!(!first.actions.is_empty());
    assert_eq!(first.actions, second.actions);
    assert_eq!(first.notes, second.notes);
    assert_eq!(first.allocation, second.allocation);
    assert_eq!(first.in_flight, second.in_flight);
}

#[test]
fn the_order_of_a_cloud_listing_does_not_change_the_plan() {
    let world = busy_world();
    let mut reversed = busy_world();
    for view in reversed.observed.clouds.values_mut() {
        if let CloudView::Seen {
            servers, images, ..
        } = view
        {
            servers.reverse();
            images.reverse();
        }
    }
    assert_eq!(world.plan().actions, reversed.plan().actions);
}

#[test]
fn every_action_says_why() {
    let plan = busy_world().plan();
    for action in &plan.actions {
        assert!(!action.reason.is_empty(), "{action:?}");
        assert!(action.to_string().contains(&action.reason));
    }
}

// ---------------------------------------------------------------------------------------------
// Image retention (`retention.rs`).
// ---------------------------------------------------------------------------------------------

mod retention_rules {
    use super::*;
    use crate::model::image::DibImage;
    use crate::model::ProviderName;
    use crate::plan::retention::{self, Doomed};
    use std::collections::BTreeSet;

    const HOUR: i64 = 3600;

    /// trusty made by snapshot on p1 (p2 keeps the cloud image).
    fn config() -> Config {
        let mut world = World::new();
        world.snapshot_trusty_on_p1();
        world.config
    }

    fn aged(id: i64, hours: i64) -> ProviderImage {
        ProviderImage {
            state_time: NOW - hours * HOUR,
            ..provider_image(id)
        }
    }

    fn ids(doomed: &[Doomed]) -> Vec<i64> {
        doomed.iter().map(|d| d.id).collect()
    }

    fn reachable(names: &[&str]) -> BTreeSet<ProviderName> {
        names.iter().map(|n| (*n).into()).collect()
    }

    #[test]
    fn the_current_and_the_previous_stay_and_older_ones_go_after_eight_hours() {
        let config = config();
        let images = [
            aged(1, 30),
            aged(2, 20),
            aged(3, 7),
            aged(4, 10),
            aged(5, 9),
        ];
        let doomed = retention::provider_images(&config, &images, &[], &reachable(&["p1"]), NOW);
        // 5 and 4 are kept (newest two); 3 is younger than 8 hours.
        assert_eq!(ids(&doomed), [1, 2]);
        assert!(doomed[0].why.contains("30 hours old"), "{}", doomed[0].why);
        // An unreachable provider's images are not looked at.
        assert!(
            retention::provider_images(&config, &images, &[], &reachable(&["p2"]), NOW).is_empty()
        );
    }

    #[test]
    fn a_failed_image_is_neither_current_nor_previous() {
        let config = config();
        let failed = ProviderImage {
            last_error: Some("rolled back".into()),
            ..aged(3, 9)
        };
        let images = [aged(1, 30), aged(2, 20), failed];
        // 2 and 1 are the current and the previous; the failed one goes once 8 hours old.
        let doomed = retention::provider_images(&config, &images, &[], &reachable(&["p1"]), NOW);
        assert_eq!(ids(&doomed), [3]);
    }

    #[test]
    fn an_image_a_ready_or_held_node_was_booted_from_waits() {
        let config = config();
        let images = [
            aged(1, 30),
            aged(2, 20),
            aged(3, 12),
            aged(4, 10),
            aged(5, 9),
        ];
        let booted = |id: i64, state: NodeState, image: &str| Node {
            image_external_id: Some(image.into()),
            ..node(id, state)
        };
        let nodes = [
            booted(1, NodeState::Hold, "snap-1"),
            booted(2, NodeState::Ready, "snap-2"),
            // A used node is on its way out: it does not hold its image.
            booted(3, NodeState::Used, "snap-3"),
        ];
        let doomed = retention::provider_images(&config, &images, &nodes, &reachable(&["p1"]), NOW);
        assert_eq!(ids(&doomed), [3]);
    }

    #[test]
    fn unconfigured_images_go_at_any_age_and_removals_are_finished() {
        let mut config = config();
        let gone = ProviderImage {
            image: "precise-old".into(),
            ..aged(1, 1)
        };
        let deleting = ProviderImage {
            state: ImageState::Delete,
            ..aged(2, 1)
        };
        let building = ProviderImage {
            state: ImageState::Building,
            ..aged(3, 40)
        };
        let images = [gone, deleting, building, aged(4, 1)];
        let doomed = retention::provider_images(&config, &images, &[], &reachable(&["p1"]), NOW);
        assert_eq!(ids(&doomed), [1, 2]);
        assert!(doomed[0].why.contains("no longer configured"), "{doomed:?}");
        // A provider image that became the cloud's own (base-image only): nodepool's go.
        config
            .providers
            .get_mut("p1")
            .unwrap()
            .images
            .get_mut("trusty")
            .unwrap()
            .source = ImageSource::Cloud {
            base_image: BASE_IMAGE.into(),
        };
        let doomed = retention::provider_images(&config, &images, &[], &reachable(&["p1"]), NOW);
        assert_eq!(ids(&doomed), [1, 2, 4]);
    }

    fn build(id: i64, image: &str) -> DibImage {
        DibImage {
            id,
            image: image.into(),
            filename: Some(format!("/images/{image}-{id}")),
            version: id,
            state: ImageState::Ready,
            state_time: NOW - 40 * HOUR,
            last_error: None,
            builder_pid: None,
        }
    }

    #[test]
    fn local_builds_beyond_the_two_newest_go_once_no_upload_needs_them() {
        let config = load_config(&format!(
            "{CONFIG}diskimages:\n  - name: ubuntu\n    elements: [ubuntu]\n"
        ));
        let builds = [
            build(1, "ubuntu"),
            build(2, "ubuntu"),
            build(3, "ubuntu"),
            build(4, "ubuntu"),
            build(5, "ubuntu"),
            build(6, "retired"),
            build(7, "retired"),
        ];
        let upload_of = |id: i64, build: i64, state: ImageState| ProviderImage {
            dib_image_id: Some(build),
            state,
            ..provider_image(id)
        };
        let images = [
            upload_of(1, 2, ImageState::Ready),
            upload_of(2, 3, ImageState::Building),
            // Being removed: it needs its build no longer.
            upload_of(3, 1, ImageState::Delete),
            upload_of(4, 7, ImageState::Ready),
        ];
        let doomed = retention::builds(&config, &images, &builds);
        // 5 and 4 are the newest two; 2 and 3 have uploads; 7 has one though retired.
        assert_eq!(ids(&doomed), [6, 1]);
        assert!(doomed[0].why.contains("no longer configured"), "{doomed:?}");
    }

    fn listed(id: &str, properties: &[(&str, &str)]) -> crate::model::cloud::Image {
        crate::model::cloud::Image {
            id: id.into(),
            name: format!("image-{id}"),
            status: "active".into(),
            properties: properties
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            size: None,
            md5: None,
            sha512: None,
        }
    }

    #[test]
    fn images_of_this_installation_without_a_row_are_sighted_then_deleted_past_the_grace() {
        use crate::model::cloud::{image_meta, meta};
        let ours = |extra: &[(&'static str, &'static str)]| {
            let mut props = vec![(meta::INSTALLATION, INSTALLATION), (meta::PROVIDER, "p1")];
            props.extend_from_slice(extra);
            props
        };
        let cloud = [
            listed("leak", &ours(&[])),
            listed("snap-1", &ours(&[])),
            // A create answered, its id not yet written: the row names it.
            listed("in-flight", &ours(&[(image_meta::UPLOAD_ID, "2")])),
            // Naming a row that recorded another image: a second one, a leak.
            listed("duplicate", &ours(&[(image_meta::UPLOAD_ID, "1")])),
            // Made for p2, which shares this Glance, and recorded by p2's row.
            listed(
                "p2-upload",
                &[(meta::INSTALLATION, INSTALLATION), (meta::PROVIDER, "p2")],
            ),
            listed("stranger", &[(meta::INSTALLATION, "install-b")]),
            listed("base", &[]),
        ];
        let rows = [
            provider_image(1),
            ProviderImage {
                external_id: None,
                state: ImageState::Building,
                ..provider_image(2)
            },
            ProviderImage {
                provider: "p2".into(),
                external_id: Some("p2-upload".into()),
                ..provider_image(3)
            },
        ];
        let p1 = ProviderName::from("p1");
        let here = (INSTALLATION, &p1);
        let none = BTreeMap::new();
        let first = retention::image_leaks(here, &cloud, &rows, &none, NOW);
        assert_eq!(first.sight, ["leak", "duplicate"]);
        assert!(first.delete.is_empty() && first.forget.is_empty());
        let seen = |first_seen: i64, last_seen: i64| {
            BTreeMap::from([
                (
                    "leak".to_string(),
                    Sighting {
                        first_seen,
                        last_seen,
                    },
                ),
                (
                    "gone".to_string(),
                    Sighting {
                        first_seen,
                        last_seen,
                    },
                ),
            ])
        };
        // Seen before, but not long enough ago: seen again.
        let soon = retention::image_leaks(here, &cloud, &rows, &seen(NOW - 60, NOW - 60), NOW);
        assert_eq!(soon.sight, ["leak", "duplicate"]);
        assert!(soon.delete.is_empty());
        assert_eq!(soon.forget, ["gone"]);
        let late = retention::image_leaks(here, &cloud, &rows, &seen(NOW - 600, NOW - 60), NOW);
        assert_eq!(late.sight, ["duplicate"]);
        assert_eq!(late.delete, ["leak"]);
    }
}

#[test]
fn max_acquired_age_is_the_operators() {
    let mut world = World::new();
    world.config.max_acquired_age = std::time::Duration::from_secs(600);
    world.add_live(Node {
        state_time: NOW - 601,
        owner: Some("pipeline-3".into()),
        ..node(1, NodeState::Used)
    });
    let plan = world.plan();
    assert_eq!(
        steps(&plan),
        [&delete(1, NodeState::Used, &["srv-1"], false)]
    );
    assert!(
        plan.actions[0]
            .reason
            .contains("acquired by pipeline-3 601 s ago"),
        "{}",
        plan.actions[0].reason
    );
    // Used by Jenkins (no owner): the 8-hour rule.
    world.observed.nodes[0].owner = None;
    assert!(world.plan().actions.is_empty());
}
