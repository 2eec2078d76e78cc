//! The operator commands around reconcile — `delete --now`, `cleanup`, `check`, `status`,
//! `reconcile --provider` and the run lock — the real binary against the simulator and (for
//! `check`) a real sshd on loopback.

use std::collections::BTreeSet;
use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodepool::cloud::managed_keypair_name;
use nodepool::cloud::Cloud;
use nodepool::lock::{lock_path, Lock, LockKind};
use nodepool_simulator::{Knobs, Simulator};
use serde_json::Value;

use crate::support;
use crate::support::pool::{Label, Options, Pool, PROVIDER};
use crate::support::{status, stderr, stdout, Install};

/// A public key for keypairs made behind nodepool's back (the simulator keeps it as given).
const PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake test";

fn server_ids(pool: &Pool) -> BTreeSet<String> {
    pool.servers().into_iter().map(|s| s.id).collect()
}

/// A pool of `labels`, filled by one reconcile run.
fn filled(options: Options) -> Pool {
    let pool = Pool::start(options);
    pool.reconcile(20, &[]);
    pool
}

fn small(min_ready: i64) -> Options {
    Options {
        labels: vec![Label::new("small", min_ready)],
        ..Options::default()
    }
}

/// The node `id` of `list --format json`, if it has a row.
fn node(pool: &Pool, id: i64) -> Option<Value> {
    pool.list_json()
        .as_array()
        .expect("list is an array")
        .iter()
        .find(|n| n["id"] == id)
        .cloned()
}

/// (id, server id) of every node in `state`, by id.
fn nodes_in(pool: &Pool, state: &str) -> Vec<(i64, String)> {
    pool.list_json()
        .as_array()
        .expect("list is an array")
        .iter()
        .filter(|n| n["state"] == state)
        .map(|n| {
            (
                n["id"].as_i64().expect("id"),
                n["server_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Run and parse stdout as one JSON document, insisting on exit status 0.
fn json(pool: &Pool, args: &[&str]) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = pool.ok(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}"))
}

/// The status row of `label` on `provider` in `status --format json`.
fn status_row(pool: &Pool, label: &str, provider: &str) -> Value {
    let rows = json(pool, &["status"]);
    rows.as_array()
        .expect("status is an array")
        .iter()
        .find(|r| r["label"] == label && r["provider"] == provider)
        .cloned()
        .unwrap_or_else(|| panic!("no status row for {label} on {provider}: {rows:#}"))
}

/// A child process this test started, killed (by its own PID) should the test fail early.
struct Started(Option<Child>);

impl Started {
    fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    fn wait(mut self) -> std::process::Output {
        self.0
            .take()
            .expect("running")
            .wait_with_output()
            .expect("wait")
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// delete --now

#[test]
fn delete_now_removes_the_server_and_the_row_at_once() {
    let pool = filled(small(2));
    let ready = nodes_in(&pool, "ready");
    assert_eq!(ready.len(), 2, "{:#}", pool.list_json());
    let (id, server) = ready[0].clone();
    let (other, other_server) = ready[1].clone();

    let out = pool.ok(&["delete", &id.to_string(), "--now"]);
    assert!(out.contains(&format!("node {id} deleted")), "{out}");
    assert!(out.contains("1 server gone"), "{out}");
    let left = server_ids(&pool);
    assert!(!left.contains(&server), "{left:?}");
    assert_eq!(left, BTreeSet::from([other_server]));
    assert!(node(&pool, id).is_none(), "{:#}", pool.list_json());
    assert_eq!(
        node(&pool, other).expect("the other node")["state"],
        "ready"
    );
}

#[test]
fn delete_now_in_json_names_the_node_and_its_deleted_servers() {
    let pool = filled(small(1));
    let (id, server) = nodes_in(&pool, "ready").remove(0);
    let done = json(&pool, &["delete", &id.to_string(), "--now"]);
    assert_eq!(done["id"], id, "{done:#}");
    assert_eq!(
        done["servers_deleted"],
        serde_json::json!([server]),
        "{done:#}"
    );
    assert!(done["seconds"].is_number(), "{done:#}");
    assert!(pool.servers().is_empty(), "{:?}", pool.servers());
    assert!(pool.nodes().is_empty(), "{:#}", pool.list_json());
}

#[test]
fn delete_now_deletes_the_servers_of_subnodes_too() {
    let pool = filled(Options {
        labels: vec![Label::new("multi", 1).subnodes(1)],
        ..Options::default()
    });
    assert_eq!(pool.count("multi", "ready"), 1, "{:#}", pool.list_json());
    let before = server_ids(&pool);
    assert_eq!(before.len(), 2, "a primary and a subnode");
    let (id, _) = nodes_in(&pool, "ready").remove(0);

    let done = json(&pool, &["delete", &id.to_string(), "--now"]);
    let deleted: BTreeSet<String> = done["servers_deleted"]
        .as_array()
        .expect("servers_deleted")
        .iter()
        .map(|s| s.as_str().expect("a server id").to_string())
        .collect();
    assert_eq!(deleted, before, "{done:#}");
    assert!(pool.servers().is_empty(), "{:?}", pool.servers());
    assert!(pool.nodes().is_empty(), "{:#}", pool.list_json());
    assert_eq!(pool.scalar("SELECT COUNT(*) FROM subnode"), 0);
}

#[test]
fn delete_now_waits_for_a_slow_cloud_and_still_succeeds() {
    let pool = filled(small(1));
    let (id, server) = nodes_in(&pool, "ready").remove(0);
    pool.sim
        .set_knobs(|k| k.delete_delay = Duration::from_millis(1500));

    let started = Instant::now();
    let out = pool.ok(&["delete", &id.to_string(), "--now"]);
    let took = started.elapsed();
    assert!(out.contains(&format!("node {id} deleted")), "{out}");
    assert!(
        took >= Duration::from_millis(1200),
        "returned before the cloud forgot the server: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(!server_ids(&pool).contains(&server));
    assert!(node(&pool, id).is_none(), "{:#}", pool.list_json());
}

#[test]
fn delete_now_of_an_unknown_id_fails_naming_it_and_changes_nothing() {
    let pool = filled(small(1));
    let nodes = pool.list_json();
    let servers = pool.sim.dump();

    let out = pool.run(&["delete", "4242", "--now"]);
    assert_eq!(status(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("4242"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");

    let mut after = pool.list_json();
    // Age is computed at listing time; everything else must be as it was.
    for (a, b) in after
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(nodes.as_array().unwrap())
    {
        a["age_hours"] = b["age_hours"].clone();
    }
    assert_eq!(after, nodes);
    assert_eq!(pool.sim.dump(), servers);
}

#[test]
fn delete_now_of_a_node_whose_server_already_vanished_removes_the_row() {
    let pool = filled(small(1));
    let (id, server) = nodes_in(&pool, "ready").remove(0);
    pool.client().delete_server(&server).unwrap();
    assert!(pool.servers().is_empty());

    let out = pool.run(&["delete", &id.to_string(), "--now"]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("node {id} deleted")),
        "{}",
        stdout(&out)
    );
    assert!(node(&pool, id).is_none(), "{:#}", pool.list_json());
}

#[test]
fn a_held_node_can_be_deleted_now() {
    let pool = filled(small(1));
    let (id, server) = nodes_in(&pool, "ready").remove(0);
    pool.ok(&["hold", &id.to_string()]);
    assert_eq!(node(&pool, id).expect("held node")["state"], "hold");

    let out = pool.ok(&["delete", &id.to_string(), "--now"]);
    assert!(out.contains(&format!("node {id} deleted")), "{out}");
    assert!(!server_ids(&pool).contains(&server));
    assert!(node(&pool, id).is_none(), "{:#}", pool.list_json());
}

// ---------------------------------------------------------------------------------------
// cleanup

#[test]
fn cleanup_deletes_a_node_used_for_over_8_hours_and_launches_nothing() {
    let pool = filled(small(2));
    let ready = nodes_in(&pool, "ready");
    assert_eq!(ready.len(), 2);
    let (stale, stale_server) = ready[0].clone();
    let (fresh, fresh_server) = ready[1].clone();
    let nine_hours_ago = nodepool::clock::now() - 9 * 3600;
    let changed = pool
        .db()
        .conn()
        .execute(
            "UPDATE node SET state = 'used', state_time = ?1 WHERE id = ?2",
            rusqlite::params![nine_hours_ago, stale],
        )
        .unwrap();
    assert_eq!(changed, 1);
    // A node used only for a while is no business of cleanup.
    pool.db()
        .conn()
        .execute(
            "UPDATE node SET state = 'used', state_time = ?1 WHERE id = ?2",
            rusqlite::params![nodepool::clock::now() - 3600, fresh],
        )
        .unwrap();

    let summary = pool.ok(&["cleanup"]);
    assert!(summary.starts_with("cleanup:"), "{summary}");
    assert!(summary.contains("launched 0"), "{summary}");
    assert_eq!(
        server_ids(&pool),
        BTreeSet::from([fresh_server]),
        "{summary}"
    );
    assert!(!server_ids(&pool).contains(&stale_server));
    match node(&pool, stale) {
        None => {}
        Some(row) => assert_eq!(row["state"], "delete", "{row:#}"),
    }
    assert_eq!(node(&pool, fresh).expect("the fresh node")["state"], "used");
    // Nothing launched to replace either node.
    assert!(
        pool.nodes()
            .iter()
            .all(|(id, _, _)| *id == stale || *id == fresh),
        "{:#}",
        pool.list_json()
    );
}

#[test]
fn cleanup_deletes_managed_keypairs_of_unconfigured_images_only() {
    let pool = Pool::start(small(0));
    let installation = pool.installation();
    let gone = managed_keypair_name(&installation, &"gone-image".into());
    let configured = managed_keypair_name(&installation, &"ubuntu".into());
    let foreign = managed_keypair_name("0123456789abcdef", &"gone-image".into());
    let stranger = "someones-key".to_string();
    assert_ne!(gone, foreign, "the test needs two installations' names");
    let cloud = pool.client();
    for name in [&gone, &configured, &foreign, &stranger] {
        cloud.create_keypair(name, PUBLIC_KEY).unwrap();
    }

    let report = json(&pool, &["cleanup"]);
    assert_eq!(report["keypairs_deleted"], 1, "{report:#}");
    let left: BTreeSet<String> = pool.sim.dump().keypairs.into_iter().collect();
    assert_eq!(left, BTreeSet::from([configured, foreign, stranger]));

    // Nothing left to delete: a second cleanup deletes none.
    let summary = pool.ok(&["cleanup"]);
    assert!(summary.contains("leaked keypairs deleted 0"), "{summary}");
}

#[test]
fn cleanup_never_launches_into_an_empty_pool() {
    let pool = Pool::start(small(2));
    let summary = pool.ok(&["cleanup"]);
    assert!(summary.contains("launched 0"), "{summary}");
    assert!(pool.nodes().is_empty(), "{:#}", pool.list_json());
    assert!(pool.servers().is_empty(), "{:?}", pool.servers());
    let calls = pool.sim.calls();
    assert!(
        calls
            .by_route
            .keys()
            .all(|route| !route.starts_with("POST") || route.contains("auth/tokens")),
        "cleanup made a mutating call: {:?}",
        calls.by_route
    );
    // One connection serves the round and the keypair sweep.
    let tokens: u64 = calls
        .by_route
        .iter()
        .filter(|(route, _)| route.contains("auth/tokens"))
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(tokens, 1, "{:?}", calls.by_route);
}

#[test]
fn cleanup_and_check_are_refused_while_the_run_lock_is_held() {
    let pool = Pool::start(small(1));
    let held = Lock::acquire(&pool.database(), LockKind::Run, "test-holder", None).unwrap();
    for command in ["cleanup", "check"] {
        let out = pool.run(&[command]);
        assert_eq!(status(&out), 75, "{command}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("test-holder"),
            "{command}: {err}"
        );
        assert_eq!(stdout(&out), "", "{command}");
    }
    assert!(pool.servers().is_empty());
    drop(held);
    pool.ok(&["cleanup"]);
    pool.ok(&["check"]);
}

// ---------------------------------------------------------------------------------------
// check

fn with_sshd(min_ready: i64) -> Options {
    Options {
        sshd: true,
        labels: vec![Label::new("small", min_ready)],
        ..Options::default()
    }
}

#[test]
fn check_logs_into_every_ready_node() {
    let pool = filled(with_sshd(2));
    assert_eq!(pool.count("small", "ready"), 2, "{:#}", pool.list_json());

    let line = pool.ok(&["check"]);
    assert!(line.contains("2 ready nodes checked, 0 failed"), "{line}");
    let report = json(&pool, &["check"]);
    assert_eq!(report["checked"], 2, "{report:#}");
    assert_eq!(report["skipped"], 0, "{report:#}");
    assert_eq!(report["failed"], serde_json::json!([]), "{report:#}");
    assert_eq!(pool.count("small", "ready"), 2);
}

#[test]
fn check_marks_every_node_for_deletion_once_sshd_is_gone() {
    let mut pool = filled(with_sshd(2));
    let ready: BTreeSet<i64> = nodes_in(&pool, "ready").into_iter().map(|n| n.0).collect();
    assert_eq!(ready.len(), 2, "{:#}", pool.list_json());
    // Dropping the fixture's sshd kills the one process it started (by its PID).
    drop(pool.sshd.take());

    let started = Instant::now();
    let report = json(&pool, &["check"]);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(report["checked"], 2, "{report:#}");
    let failed: BTreeSet<i64> = report["failed"]
        .as_array()
        .expect("failed")
        .iter()
        .map(|f| f["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(failed, ready, "{report:#}");
    for f in report["failed"].as_array().unwrap() {
        assert!(
            !f["error"].as_str().unwrap_or_default().is_empty(),
            "{report:#}"
        );
        assert!(f["hostname"].is_string(), "{report:#}");
    }
    for id in ready {
        let row = node(&pool, id).expect("marked, not removed");
        assert_eq!(row["state"], "delete", "{row:#}");
        assert!(
            row["last_error"]
                .as_str()
                .unwrap_or_default()
                .contains("check failed"),
            "{row:#}"
        );
    }
    // Servers are the next pass's business.
    assert_eq!(pool.servers().len(), 2);
}

#[test]
fn check_marks_a_node_whose_host_key_changed_and_keeps_the_other() {
    let pool = filled(with_sshd(2));
    let ready = nodes_in(&pool, "ready");
    assert_eq!(ready.len(), 2, "{:#}", pool.list_json());
    let (bad, good) = (ready[0].0, ready[1].0);
    let sshd = pool.sshd.as_ref().unwrap();
    // A real ed25519 key, but not this sshd's host key: what a man in the middle shows.
    let wrong = fs::read_to_string(sshd.dir.path().join("user_ed25519.pub")).unwrap();
    let line = format!("[127.0.0.1]:{} {}", sshd.port, wrong.trim());
    pool.db()
        .conn()
        .execute(
            "UPDATE node SET host_keys = ?1 WHERE id = ?2",
            rusqlite::params![line, bad],
        )
        .unwrap();

    let out = pool.run(&["check"]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2 ready nodes checked, 1 failed"),
        "{}",
        stdout(&out)
    );
    assert_eq!(node(&pool, bad).unwrap()["state"], "delete");
    assert_eq!(node(&pool, good).unwrap()["state"], "ready");
}

#[test]
fn check_skips_nodes_of_providers_without_host_key_checking() {
    let pool = filled(small(2));
    assert_eq!(pool.count("small", "ready"), 2);
    let report = json(&pool, &["check"]);
    let keys: BTreeSet<&str> = report
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["checked", "skipped", "failed"]));
    assert_eq!(report["checked"], 0, "{report:#}");
    assert_eq!(report["skipped"], 2, "{report:#}");
    assert_eq!(report["failed"], serde_json::json!([]), "{report:#}");
    let line = pool.ok(&["check"]);
    assert!(line.contains("2 skipped"), "{line}");
    assert_eq!(pool.count("small", "ready"), 2);
}

// ---------------------------------------------------------------------------------------
// status

/// The table line of `status` that starts with `label` and names `provider`.
fn status_line(pool: &Pool, label: &str) -> String {
    let table = pool.ok(&["status"]);
    assert!(table.contains("Blocked By"), "{table}");
    table
        .lines()
        .find(|l| l.starts_with(&format!("| {label} ")) && l.contains(PROVIDER))
        .unwrap_or_else(|| panic!("no row for {label}:\n{table}"))
        .to_string()
}

#[test]
fn status_shows_a_deficit_blocked_at_max_servers() {
    let pool = filled(Options {
        max_servers: 1,
        ..small(3)
    });
    assert_eq!(pool.count("small", "ready"), 1, "{:#}", pool.list_json());
    let row = status_row(&pool, "small", PROVIDER);
    assert_eq!(row["ready"], 1, "{row:#}");
    assert_eq!(row["min_ready"], 3, "{row:#}");
    assert_eq!(row["max_servers"], 1, "{row:#}");
    assert_eq!(row["deficit"], 2, "{row:#}");
    assert_eq!(row["blocked_by"], "at max-servers", "{row:#}");
    assert_eq!(row["blocked_by_code"], "at-max-servers", "{row:#}");
    assert!(row["last_pass"].is_string(), "{row:#}");
    let line = status_line(&pool, "small");
    assert!(line.contains("at max-servers"), "{line}");
    assert!(line.contains("| 2 "), "the deficit: {line}");
}

#[test]
fn status_shows_a_deficit_blocked_by_quota() {
    let mut options = small(2);
    options.knobs.instance_quota = Some(1);
    let pool = filled(options);
    assert_eq!(pool.count("small", "ready"), 1, "{:#}", pool.list_json());
    let row = status_row(&pool, "small", PROVIDER);
    assert_eq!(row["deficit"], 1, "{row:#}");
    let blocked = row["blocked_by"].as_str().unwrap_or_default();
    assert!(blocked.contains("quota"), "{row:#}");
    assert_eq!(row["blocked_by_code"], "quota", "{row:#}");
    assert!(status_line(&pool, "small").contains("quota"));
}

#[test]
fn status_shows_no_ready_image_when_the_base_image_is_missing() {
    let mut options = small(2);
    options.knobs.images = vec!["CentOS 7".into()];
    let pool = filled(options);
    assert!(pool.nodes().is_empty(), "{:#}", pool.list_json());
    assert!(pool.servers().is_empty());
    let row = status_row(&pool, "small", PROVIDER);
    assert_eq!(row["deficit"], 2, "{row:#}");
    let blocked = row["blocked_by"].as_str().unwrap_or_default();
    assert!(blocked.contains("no ready image"), "{row:#}");
    assert_eq!(row["blocked_by_code"], "no-ready-image", "{row:#}");
    assert!(status_line(&pool, "small").contains("no ready image"));
}

// ---------------------------------------------------------------------------------------
// reconcile --provider, the run lock

/// Two providers, `east` and `west`, each its own simulator; label `small` (min-ready 2) on
/// both; no SSH (nodes are ready when ACTIVE with an address).
struct TwoClouds {
    east: Simulator,
    west: Simulator,
    install: Install,
}

fn two_clouds() -> TwoClouds {
    let knobs = Knobs {
        boot_delay: Duration::from_millis(200),
        ..Knobs::default()
    };
    let east = Simulator::start(knobs.clone()).expect("east");
    let west = Simulator::start(knobs).expect("west");
    let provider = |name: &str, sim: &Simulator| {
        format!(
            "  - name: {name}\n    auth-url: {}\n    username: demo\n    password: secret\n    \
             project-id: demo\n    max-servers: 10\n    rate: 0\n    boot-timeout: 30\n    \
             host-key-checking: false\n    images:\n      - name: ubuntu\n        \
             base-image: 'Ubuntu 22.04'\n        min-ram: 512\n        username: nobody\n        \
             private-key: /nonexistent/nodepool-test-key\n",
            sim.auth_url_v3()
        )
    };
    let config = format!(
        "dburi: state/nodepool.db\nlabels:\n  - name: small\n    image: ubuntu\n    \
         min-ready: 2\n    providers:\n      - name: east\n      - name: west\nproviders:\n\
         {}{}targets:\n  - name: jenkins\n",
        provider("east", &east),
        provider("west", &west)
    );
    TwoClouds {
        east,
        west,
        install: Install::with_config(&config),
    }
}

#[test]
fn reconcile_with_an_unknown_provider_names_the_known_ones() {
    let clouds = two_clouds();
    let out = clouds
        .install
        .run(&["reconcile", "--provider", "north", "--duration", "5"]);
    assert_eq!(status(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("north"), "{err}");
    assert!(err.contains("east, west"), "{err}");
    assert!(clouds.east.dump().servers.is_empty());
    assert!(clouds.west.dump().servers.is_empty());
}

#[test]
fn reconcile_of_one_provider_launches_only_there() {
    let clouds = two_clouds();
    let out = clouds
        .install
        .run(&["reconcile", "--provider", "west", "--duration", "20"]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("launched 2"), "{}", stdout(&out));
    assert_eq!(clouds.west.dump().servers.len(), 2);
    assert!(clouds.east.dump().servers.is_empty());
    assert_eq!(clouds.east.calls().total, 0, "east was not even asked");

    let out = clouds.install.run(&["--format", "json", "list"]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let providers: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["west", "west"], "{list:#}");
}

#[test]
fn a_second_reconcile_while_one_runs_exits_75_naming_the_holder() {
    let mut options = small(1);
    // The first run waits this long for its server, holding the lock.
    options.knobs.boot_delay = Duration::from_secs(3);
    let pool = Pool::start(options);
    let first = Started(Some(
        Command::new(support::BIN)
            .arg("-c")
            .arg(&pool.config)
            .args(["reconcile", "--duration", "20"])
            .env_remove("NODEPOOL_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the first reconcile"),
    ));
    let lock = lock_path(&pool.database(), LockKind::Run);
    let holder = format!("pid {}", first.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fs::read_to_string(&lock).unwrap_or_default();
        if text.contains(&holder) && text.contains("command reconcile") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first run never took the lock: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let second = pool.run(&["reconcile", "--duration", "20"]);
    assert_eq!(status(&second), 75, "{}", stderr(&second));
    let err = stderr(&second);
    assert!(
        err.contains(&holder) && err.contains("command reconcile"),
        "{err}"
    );
    assert_eq!(stdout(&second), "");

    let first = first.wait();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(stdout(&first).contains("launched 1"), "{}", stdout(&first));
    assert_eq!(pool.servers().len(), 1, "the refused run launched nothing");
}

#[test]
fn cleanup_deletes_only_the_unattached_floating_ips_nodepool_allocated_unless_asked_for_all() {
    let pool = Pool::start(small(0));
    pool.reconcile(1, &[]); // creates the database, and so the installation id
    let installation = nodepool::state::pass::installation(pool.db().conn()).unwrap();
    let cloud = pool.client();
    let server = support::create_server(&cloud, "fip-a", &[]);
    let ours = |n: i64| {
        let member = nodepool::model::Member::primary(nodepool::model::NodeId(n));
        nodepool::cloud::floating_ip_description(&installation, member)
    };
    // Attached, ours: kept. Unattached, ours (a run killed before recording it): deleted.
    let attached = cloud.allocate_floating_ip("public", &ours(1)).unwrap();
    cloud.attach_floating_ip(&attached, &server).unwrap();
    let leaked = cloud.allocate_floating_ip("public", &ours(2)).unwrap();
    // Unattached, someone else's (another installation, or a person): kept by default.
    let other = format!(
        "nodepool 0123456789abcdef {}",
        nodepool::model::Member::primary(nodepool::model::NodeId(2))
    );
    let theirs = cloud.allocate_floating_ip("public", &other).unwrap();
    let persons = cloud.allocate_floating_ip("public", "my bastion").unwrap();

    let report = json(&pool, &["cleanup"]);
    assert_eq!(report["floating_ips_deleted"], 1, "{report:#}");
    let left: BTreeSet<String> = cloud
        .list_floating_ips()
        .unwrap()
        .into_iter()
        .map(|ip| ip.id)
        .collect();
    assert!(!left.contains(&leaked.id), "{left:?}");
    for kept in [&attached, &theirs, &persons] {
        assert!(left.contains(&kept.id), "{left:?}");
    }

    // clean-floating-ips: every unattached one, as in 2015; the attached one stays.
    let text = std::fs::read_to_string(&pool.config).unwrap();
    let text = text.replacen(
        "    max-servers:",
        "    clean-floating-ips: true\n    max-servers:",
        1,
    );
    std::fs::write(&pool.config, text).unwrap();
    let report = json(&pool, &["cleanup"]);
    assert_eq!(report["floating_ips_deleted"], 2, "{report:#}");
    let left = cloud.list_floating_ips().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, attached.id);
}

/// Nodes on a cloud that gives only private addresses get floating IPs from `pool`; the IPs
/// go with the nodes, whether a pass deletes them or `delete --now` does.
#[test]
fn floating_ips_are_attached_from_the_pool_and_released_with_their_nodes() {
    let mut options = small(0);
    options.knobs.server_ip = "10.0.0.5".into();
    let pool = Pool::start(options);
    let text = fs::read_to_string(&pool.config).unwrap();
    let text = text
        .replacen("    max-servers:", "    pool: public\n    max-servers:", 1)
        .replace("min-ready: 0", "min-ready: 2");
    fs::write(&pool.config, text).unwrap();
    pool.reconcile(20, &[]);
    let ready = nodes_in(&pool, "ready");
    assert_eq!(ready.len(), 2, "{:#}", pool.list_json());
    let cloud = pool.client();
    let attached = cloud.list_floating_ips().unwrap();
    assert_eq!(attached.len(), 2, "{attached:?}");
    for (id, _) in &ready {
        let ip = node(&pool, *id).unwrap()["ip"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            attached.iter().any(|f| f.ip == ip),
            "node {id} is not on its floating IP {ip}"
        );
    }

    pool.ok(&["delete", &ready[0].0.to_string(), "--now"]);
    assert_eq!(cloud.list_floating_ips().unwrap().len(), 1);
    pool.ok(&["delete", &ready[1].0.to_string()]);
    pool.reconcile(20, &[]);
    // The pass deleted the second node and launched two more (min-ready 2): two IPs in use,
    // none of them the deleted nodes'.
    let now: Vec<String> = cloud
        .list_floating_ips()
        .unwrap()
        .into_iter()
        .map(|f| f.ip)
        .collect();
    let live: Vec<String> = nodes_in(&pool, "ready")
        .iter()
        .map(|(id, _)| {
            node(&pool, *id).unwrap()["ip"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        now.len(),
        live.len(),
        "floating IPs {now:?} vs nodes {live:?}"
    );
    for ip in &now {
        assert!(live.contains(ip), "floating IP {ip} outlived its node");
    }
}

// ---------------------------------------------------------------------------------------------
// A provider that cannot be reached.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_provider_with_a_wrong_password_makes_a_run_exit_69_naming_it_while_the_others_fill() {
    let pool = Pool::start(small(1));
    let text = std::fs::read_to_string(&pool.config).unwrap();
    let bad = format!(
        "\nproviders:\n  - name: bad\n    auth-url: {}\n    username: demo\n    password: \
         wrong\n    project-id: demo\n    max-servers: 1\n",
        pool.sim.auth_url_v3()
    );
    std::fs::write(&pool.config, text.replacen("\nproviders:\n", &bad, 1)).unwrap();
    let out = pool.run(&["--format", "json", "reconcile", "--duration", "10"]);
    assert_eq!(out.status.code(), Some(69), "{}", support::stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(&support::stdout(&out)).unwrap();
    assert_eq!(summary["unreachable"][0]["provider"], "bad", "{summary:#}");
    assert_eq!(
        summary["launched"], 1,
        "the reachable provider filled: {summary:#}"
    );
    assert!(
        support::stderr(&out).contains("done, but 1 provider could not be reached; bad:"),
        "{}",
        support::stderr(&out)
    );
    // A run where every provider answers exits 0 again.
    std::fs::write(&pool.config, text).unwrap();
    pool.reconcile(5, &[]);
}

#[test]
fn a_provider_slower_than_its_listing_timeout_is_unreachable_for_the_round_not_a_stall() {
    let pool = Pool::start(small(1));
    let slow = Simulator::start(Knobs {
        route_latency: [(
            "GET /compute/servers/detail".into(),
            Duration::from_secs(30),
        )]
        .into(),
        ..Knobs::default()
    })
    .unwrap();
    let text = std::fs::read_to_string(&pool.config).unwrap();
    let with_slow = format!(
        "\nproviders:\n  - name: slow\n    auth-url: {}\n    username: demo\n    password: \
         secret\n    project-id: demo\n    max-servers: 1\n    listing-timeout: 1\n    \
         token-cache: false\n",
        slow.auth_url_v3()
    );
    std::fs::write(&pool.config, text.replacen("\nproviders:\n", &with_slow, 1)).unwrap();
    let reconcile = || {
        let started = Instant::now();
        let out = pool.run(&["--format", "json", "reconcile", "--duration", "10"]);
        (out, started.elapsed())
    };
    let (out, took) = reconcile();
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let summary: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(summary["unreachable"][0]["provider"], "slow", "{summary:#}");
    let error = summary["unreachable"][0]["error"].as_str().unwrap();
    assert!(error.contains("GET compute /servers/detail"), "{error}");
    assert!(
        error.contains("no answer within 1 s (listing-timeout)"),
        "{error}"
    );
    assert_eq!(
        summary["launched"], 1,
        "the other provider filled: {summary:#}"
    );
    // Waiting for the slow listing would take 30 s in the first round alone.
    assert!(took < Duration::from_secs(20), "the run took {took:?}");

    // A Keystone that hangs is bounded the same way when connecting (no token is stored for
    // this provider, so every run asks for one).
    slow.set_knobs(|k| {
        k.route_latency = [(
            "POST /identity/v3/auth/tokens".into(),
            Duration::from_secs(30),
        )]
        .into()
    });
    let (out, took) = reconcile();
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let summary: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let error = summary["unreachable"][0]["error"].as_str().unwrap();
    assert!(error.contains("auth/tokens"), "{error}");
    assert!(
        error.contains("no answer within 1 s (listing-timeout)"),
        "{error}"
    );
    assert!(took < Duration::from_secs(20), "the run took {took:?}");
}

// ---------------------------------------------------------------------------------------------
// Keystone tokens kept between runs.
// ---------------------------------------------------------------------------------------------

const TOKENS: &str = "POST /identity/v3/auth/tokens";

#[test]
fn a_stored_token_saves_the_token_call_and_one_the_cloud_refuses_is_replaced_once() {
    use std::os::unix::fs::PermissionsExt;
    let pool = Pool::start(small(1));
    let tokens = || pool.sim.calls().route(TOKENS);
    let stored = || pool.scalar("SELECT COUNT(*) FROM token");
    pool.reconcile(10, &[]);
    assert_eq!((tokens(), stored()), (1, 1));
    let mode = fs::metadata(pool.database()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the database holding the token is private");

    // A steady run: the stored token, no token call.
    pool.reconcile(10, &[]);
    assert_eq!(tokens(), 1);

    // The cloud refuses it (expired, revoked): one new token, the call repeated, kept.
    pool.sim.revoke_tokens();
    pool.reconcile(10, &[]);
    assert_eq!(tokens(), 2);
    pool.reconcile(10, &[]);
    assert_eq!(tokens(), 2, "the new token is the stored one now");

    // Refused, and the password changed: one try, not a loop; the token is forgotten.
    pool.sim.revoke_tokens();
    pool.sim.set_knobs(|k| k.password = "changed".into());
    let out = pool.run(&["reconcile", "--duration", "5"]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("authentication refused"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tokens(), 3, "a wrong password is not retried");
    assert_eq!(stored(), 0, "a refused token is not kept");
}

#[test]
fn token_cache_false_stores_no_token() {
    let pool = Pool::start(small(1));
    let text = fs::read_to_string(&pool.config).unwrap();
    fs::write(
        &pool.config,
        text.replacen(
            "    max-servers:",
            "    token-cache: false\n    max-servers:",
            1,
        ),
    )
    .unwrap();
    pool.reconcile(10, &[]);
    pool.reconcile(10, &[]);
    assert_eq!(pool.sim.calls().route(TOKENS), 2, "a token per run");
    assert_eq!(pool.scalar("SELECT COUNT(*) FROM token"), 0);
}

// ---------------------------------------------------------------------------------------------
// SIGTERM and SIGINT.
// ---------------------------------------------------------------------------------------------

#[test]
fn sigterm_stops_a_run_with_its_summary_and_journal_row_then_dies_of_sigterm() {
    use std::os::unix::process::ExitStatusExt;
    let mut options = small(1);
    // The server stays in BUILD for a long time: the run polls for it.
    options.knobs.boot_delay = Duration::from_secs(60);
    let pool = Pool::start(options);
    let run = Started(Some(
        Command::new(support::BIN)
            .arg("-c")
            .arg(&pool.config)
            .args(["reconcile", "--duration", "120"])
            .env_remove("NODEPOOL_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start reconcile"),
    ));
    // Wait (bounded) until its server exists, so the run is polling.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.servers().is_empty() {
        assert!(Instant::now() < deadline, "the run never launched");
        std::thread::sleep(Duration::from_millis(50));
    }
    let asked = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = run.wait();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?} to stop",
        asked.elapsed()
    );
    assert_eq!(
        out.status.signal(),
        Some(15),
        "dies of SIGTERM: {:?}",
        out.status
    );
    assert!(
        stdout(&out).contains("reconcile (interrupted by SIGTERM): "),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let (finished, summary): (Option<i64>, Option<String>) = pool
        .db()
        .conn()
        .query_row(
            "SELECT finished, summary FROM run ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(finished.is_some(), "the journal row is finished");
    let summary: Value = serde_json::from_str(&summary.unwrap()).unwrap();
    assert_eq!(summary["interrupted"], "SIGTERM", "{summary:#}");
    assert_eq!(summary["launched"], 1, "{summary:#}");
    // The node it launched is there for the next run.
    assert_eq!(pool.nodes().len(), 1);
}
