//! `nodepool reconcile`, the real binary, against the simulator and (where nodes are
//! bootstrapped) a real sshd on loopback that stands in for every server.

use std::collections::BTreeSet;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nodepool::cloud::Cloud;

use crate::support;
use crate::support::pool::{Label, Options, Pool, MARK, PROVIDER};
use crate::support::{stderr, stdout};

/// The (id, hostname) of every node in `state`.
fn hostnames(pool: &Pool, state: &str) -> Vec<(i64, String)> {
    pool.list_json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"] == state)
        .map(|n| {
            (
                n["id"].as_i64().unwrap(),
                n["hostname"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// The number after `word` in a summary line ("launched 2, …").
fn tally(summary: &str, word: &str) -> u32 {
    let rest = summary
        .split(&format!("{word} "))
        .nth(1)
        .unwrap_or_else(|| panic!("no `{word}` in {summary}"));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("`{word}` in {summary}"))
}

/// Server ids the database knows (nodes and subnodes).
fn known_servers(pool: &Pool) -> BTreeSet<String> {
    let db = pool.db();
    let mut stmt = db
        .conn()
        .prepare(
            "SELECT external_id FROM node WHERE external_id IS NOT NULL \
             UNION ALL SELECT external_id FROM subnode WHERE external_id IS NOT NULL",
        )
        .unwrap();
    let ids: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let set: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "two rows share a server: {ids:?}");
    set
}

fn server_ids(pool: &Pool) -> BTreeSet<String> {
    pool.servers().into_iter().map(|s| s.id).collect()
}

#[test]
fn empty_pool_reaches_min_ready_in_one_run_with_files_ready_script_and_host_keys() {
    let pool = Pool::start(Options {
        sshd: true,
        ..Options::default()
    });
    let summary = pool.reconcile(30, &[]);
    assert!(
        summary.contains("launched 2, became ready 2") && summary.contains("failed 0"),
        "{summary}"
    );

    let ready = hostnames(&pool, "ready");
    assert_eq!(ready.len(), 2, "{:#}", pool.list_json());
    let servers = pool.servers();
    assert_eq!(servers.len(), 2);

    let etc = pool.node_root().join("etc/nodepool");
    let read = |name: &str| {
        fs::read_to_string(etc.join(name)).unwrap_or_else(|e| panic!("/etc/nodepool/{name}: {e}"))
    };
    assert_eq!(read("role"), "primary\n");
    assert_eq!(read("node"), "127.0.0.1\n");
    assert_eq!(read("primary_node"), "127.0.0.1\n");
    assert_eq!(read("sub_nodes"), "");
    assert!(read("provider").contains(&format!("NODEPOOL_PROVIDER={PROVIDER}\n")));
    let uuid = read("uuid");
    assert!(
        servers.iter().any(|s| uuid == format!("{}\n", s.id)),
        "uuid {uuid:?} is no server of {servers:?}"
    );
    assert!(read("id_rsa").contains("PRIVATE KEY"));
    assert!(read("id_rsa.pub").starts_with("ssh-rsa "));

    // The ready script ran once per node with the hostname and nodepool's NODEPOOL_* env.
    let ran = fs::read_to_string(pool.node_root().join("ready-ran")).expect("ready-ran");
    let mut lines: Vec<&str> = ran.lines().collect();
    lines.sort();
    let mut expected: Vec<String> = ready.iter().map(|(_, h)| format!("{h} {MARK}")).collect();
    expected.sort();
    assert_eq!(lines, expected);

    let without_keys = pool.scalar("SELECT COUNT(*) FROM node WHERE host_keys IS NULL");
    let sshd_port = pool.sshd.as_ref().unwrap().port;
    let keys: String = pool
        .db()
        .conn()
        .query_row("SELECT host_keys FROM node LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(without_keys, 0);
    assert!(
        keys.starts_with(&format!("[127.0.0.1]:{sshd_port} ssh-ed25519 ")),
        "{keys}"
    );
}

#[test]
fn a_full_pool_is_one_round_and_one_call_the_server_listing() {
    let pool = Pool::start(Options::default());
    pool.reconcile(20, &[]);
    assert_eq!(pool.count("small", "ready"), 2);

    let before = pool.sim.calls();
    let out = pool.run(&["--debug", "reconcile", "--duration", "20"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(
        summary.contains("1 round;") && summary.contains("launched 0"),
        "{summary}"
    );
    assert!(
        stderr(&out).contains("API calls: 1 in all"),
        "{}",
        stderr(&out)
    );
    let after = pool.sim.calls();
    let made: Vec<(String, u64)> = after
        .by_route
        .iter()
        .map(|(route, n)| (route.clone(), n - before.route(route)))
        .filter(|(_, n)| *n > 0)
        .collect();
    // The stored token, the kept image listing: only the servers are listed.
    assert_eq!(made, [("GET /compute/servers/detail".to_string(), 1)]);

    // With cache-ttl 0 the images are listed every round again.
    let text = fs::read_to_string(&pool.config).unwrap();
    fs::write(
        &pool.config,
        text.replacen("    max-servers:", "    cache-ttl: 0\n    max-servers:", 1),
    )
    .unwrap();
    let before = pool.sim.calls().route("GET /image/images");
    pool.reconcile(20, &[]);
    assert_eq!(pool.sim.calls().route("GET /image/images"), before + 1);
}

#[test]
fn a_label_with_subnodes_gets_its_primary_and_subnode_ready_together() {
    let pool = Pool::start(Options {
        sshd: true,
        labels: vec![Label::new("multi", 1).subnodes(1)],
        ..Options::default()
    });
    let summary = pool.reconcile(30, &[]);
    assert!(summary.contains("became ready 1"), "{summary}");
    assert_eq!(pool.count("multi", "ready"), 1);
    assert_eq!(pool.servers().len(), 2, "a primary and a subnode");

    let db = pool.db();
    let (state, ip, keys): (String, Option<String>, Option<String>) = db
        .conn()
        .query_row("SELECT state, ip, host_keys FROM subnode", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("one subnode row");
    assert_eq!(
        (state.as_str(), ip.as_deref()),
        ("ready", Some("127.0.0.1"))
    );
    assert!(keys.is_some());
    assert_eq!(known_servers(&pool), server_ids(&pool));

    // Both members share the one sshd, so its node root holds the last writer's files: the
    // primary's (bootstrapped last), naming its subnode.
    let etc = pool.node_root().join("etc/nodepool");
    assert_eq!(fs::read_to_string(etc.join("role")).unwrap(), "primary\n");
    assert_eq!(
        fs::read_to_string(etc.join("sub_nodes")).unwrap(),
        "127.0.0.1\n"
    );
    let ran = fs::read_to_string(pool.node_root().join("ready-ran")).unwrap();
    assert_eq!(ran.lines().count(), 2, "the ready script on both: {ran}");
}

#[test]
fn ssh_that_never_answers_hits_boot_timeout_then_deletes_and_cools_down() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pool = Pool::start(Options {
        ssh_without_sshd: true,
        connection_port: Some(closed),
        boot_timeout: 2,
        labels: vec![Label::new("small", 1)],
        ..Options::default()
    });
    // The first failure is retried at once; the second starts a cooldown, which ends the run.
    let summary = pool.reconcile(20, &[]);
    assert!(summary.contains("failed 2"), "{summary}");
    assert!(pool.nodes().is_empty(), "{:#}", pool.list_json());
    assert!(pool.servers().is_empty(), "{:?}", pool.servers());
    let failures =
        pool.scalar("SELECT failures FROM cooldown WHERE label_name = 'small' AND last_time > 0");
    assert_eq!(failures, 2);
    let plan = pool.ok(&["reconcile", "--dry-run"]);
    assert!(
        plan.contains("cooldown") && plan.contains("boot-timeout"),
        "{plan}"
    );
}

#[test]
fn error_servers_fail_into_a_cooldown_without_spinning_or_leaking() {
    let mut options = Options::default();
    options.knobs.error_ratio = 1.0;
    let pool = Pool::start(options);
    let started = Instant::now();
    let summary = pool.reconcile(20, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the cooldown should end the run: {summary}"
    );
    // Both servers fail in one round (2 failures start the cooldown, nothing replaces
    // them); should a listing split them, the replacement of the first is a third.
    let failed = tally(&summary, "failed");
    assert!(failed == 2 || failed == 3, "{summary}");
    assert_eq!(tally(&summary, "launched"), failed, "{summary}");
    assert!(pool.nodes().is_empty(), "{:#}", pool.list_json());
    assert!(pool.servers().is_empty(), "{:?}", pool.servers());
    let (reason, failures): (String, u32) = pool
        .db()
        .conn()
        .query_row(
            "SELECT reason, failures FROM cooldown WHERE label_name = 'small'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((reason.as_str(), failures), ("failures", failed));

    // While cooling down a run is one round that launches nothing.
    let again = pool.reconcile(20, &[]);
    assert!(
        again.contains("1 round;") && again.contains("launched 0"),
        "{again}"
    );
    let plan = pool.ok(&["reconcile", "--dry-run"]);
    assert!(
        plan.contains("cooldown") && plan.contains("ERROR"),
        "{plan}"
    );
}

#[test]
fn quota_refusals_stop_launches_and_are_not_failures() {
    let mut options = Options::default();
    options.knobs.instance_quota = Some(2);
    options.labels = vec![Label::new("small", 4)];
    let pool = Pool::start(options);
    let summary = pool.reconcile(20, &[]);
    assert!(
        summary.contains("launched 2, became ready 2") && summary.contains("failed 0"),
        "{summary}"
    );
    assert_eq!(pool.count("small", "ready"), 2);
    assert_eq!(pool.nodes().len(), 2, "refused launches leave no rows");
    assert_eq!(pool.servers().len(), 2);
    let (reason, failures) = pool
        .db()
        .conn()
        .query_row(
            "SELECT reason, failures FROM cooldown WHERE label_name = ''",
            [],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
        )
        .expect("a quota cooldown");
    assert_eq!((reason.as_str(), failures), ("quota", 0));
    assert_eq!(
        pool.scalar("SELECT COUNT(*) FROM cooldown WHERE label_name = 'small'"),
        0
    );
    let plan = pool.ok(&["reconcile", "--dry-run"]);
    assert!(
        plan.contains("blocked: label small on sim: quota"),
        "{plan}"
    );
}

#[test]
fn a_5xx_storm_converges_over_a_few_runs_without_duplicate_servers() {
    const WANTED: i64 = 3;
    let mut options = Options::default();
    options.knobs.server_error_ratio = 0.2;
    options.labels = vec![Label::new("small", WANTED)];
    let pool = Pool::start(options);
    let mut summaries = Vec::new();
    for _ in 0..10 {
        summaries.push(pool.reconcile(5, &[]));
        // No server without a row, no row sharing a server, at every step.
        let known = known_servers(&pool);
        for server in pool.servers() {
            assert!(
                known.contains(&server.id),
                "server {server:?} has no row; runs: {summaries:#?}"
            );
        }
        if pool.count("small", "ready") == WANTED as usize {
            break;
        }
        // A cooldown earned in the storm would end the next run at once, and a create
        // answered 500 keeps its row while its server may still appear: let their time pass.
        let db = pool.db();
        db.conn()
            .execute("UPDATE cooldown SET last_time = 0", [])
            .unwrap();
        for table in ["node", "subnode"] {
            db.conn()
                .execute(
                    &format!(
                        "UPDATE {table} SET phase_time = phase_time - 3600 \
                         WHERE launch_phase = 'creating'"
                    ),
                    [],
                )
                .unwrap();
        }
    }
    assert_eq!(
        pool.count("small", "ready"),
        WANTED as usize,
        "runs: {summaries:#?}\n{:#}",
        pool.list_json()
    );
    pool.sim.set_knobs(|k| k.server_error_ratio = 0.0);
    pool.reconcile(5, &[]);
    assert_eq!(
        pool.nodes().len(),
        WANTED as usize,
        "{:#}",
        pool.list_json()
    );
    assert_eq!(known_servers(&pool), server_ids(&pool));
}

#[test]
fn hold_typed_during_a_run_wins_and_survives_its_label_leaving_the_config() {
    let mut options = Options::default();
    options.knobs.boot_delay = Duration::from_secs(1);
    // Slow answers hold the run inside its create call when the row appears.
    options.knobs.latency = Duration::from_millis(400);
    options.labels = vec![Label::new("small", 1)];
    let pool = Pool::start(options);
    let run = Command::new(support::BIN)
        .arg("-c")
        .arg(&pool.config)
        .args(["reconcile", "--duration", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Hold the first node as soon as its row (the intent) exists: the create call is still
    // waiting for its answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    let held = loop {
        if let Some((id, _, state)) = pool.nodes().into_iter().next() {
            assert_eq!(state, "building");
            break id;
        }
        assert!(Instant::now() < deadline, "no node launched");
        std::thread::sleep(Duration::from_millis(20));
    };
    pool.ok(&["hold", &held.to_string()]);
    pool.sim.set_knobs(|k| k.latency = Duration::ZERO);
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let node = |id: i64| {
        pool.list_json()
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .cloned()
    };
    let frozen = node(held).expect("the held node");
    assert_eq!(frozen["state"], "hold");
    assert_eq!(
        frozen["ip"],
        serde_json::Value::Null,
        "no step after the hold"
    );
    let held_server = pool
        .servers()
        .into_iter()
        .find(|s| s.metadata.get("nodepool_node_id") == Some(&held.to_string()))
        .expect("the held node's server")
        .id;
    assert_eq!(
        frozen["server_id"].as_str(),
        Some(held_server.as_str()),
        "the server id of a node held during its create call is recorded: {frozen:#}"
    );
    assert_eq!(
        pool.count("small", "ready"),
        1,
        "a held node is no supply: {:#}",
        pool.list_json()
    );

    pool.reconcile(10, &[]);
    let mut later = node(held).unwrap();
    later["age_hours"] = frozen["age_hours"].clone();
    assert_eq!(later, frozen);

    // The label leaves the config: its ready node goes, the held one stays, with its server.
    pool.write_config(&[]);
    let plan = pool.ok(&["reconcile", "--dry-run"]);
    assert!(
        plan.contains(&format!("note: node {held} is held")),
        "{plan}"
    );
    pool.reconcile(10, &[]);
    let left = pool.nodes();
    assert_eq!(left, vec![(held, "small".into(), "hold".into())]);
    assert_eq!(server_ids(&pool), BTreeSet::from([held_server]));
}

#[test]
fn delete_removes_the_server_then_the_row_once_the_server_is_gone() {
    let pool = Pool::start(Options {
        labels: vec![Label::new("small", 1)],
        ..Options::default()
    });
    pool.reconcile(20, &[]);
    let nodes = pool.list_json();
    let node = &nodes[0];
    let (id, server) = (node["id"].as_i64().unwrap(), node["server_id"].clone());
    let server = server.as_str().unwrap().to_string();

    pool.sim
        .set_knobs(|k| k.delete_delay = Duration::from_millis(1500));
    pool.ok(&["delete", &id.to_string()]);
    // One round: the delete call goes out; the cloud still lists the server, so the row stays.
    let summary = pool.reconcile(0, &[]);
    assert!(summary.contains("deleting 1"), "{summary}");
    let row = pool
        .nodes()
        .into_iter()
        .find(|n| n.0 == id)
        .expect("the row stays while the server is listed");
    assert_eq!(row.2, "delete");

    let summary = pool.reconcile(20, &[]);
    assert!(summary.contains("deleted 1"), "{summary}");
    assert!(pool.nodes().iter().all(|n| n.0 != id));
    assert!(!server_ids(&pool).contains(&server));
    assert_eq!(pool.count("small", "ready"), 1, "replaced");
}

#[test]
fn nodes_of_a_label_removed_from_the_config_are_deleted() {
    let pool = Pool::start(Options {
        labels: vec![Label::new("keep", 1), Label::new("gone", 1)],
        ..Options::default()
    });
    pool.reconcile(20, &[]);
    assert_eq!(
        (pool.count("keep", "ready"), pool.count("gone", "ready")),
        (1, 1)
    );
    let gone_server = pool
        .list_json()
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["label"] == "gone")
        .unwrap()["server_id"]
        .as_str()
        .unwrap()
        .to_string();

    pool.write_config(&[Label::new("keep", 1)]);
    let plan = pool.ok(&["reconcile", "--dry-run"]);
    assert!(
        plan.contains("label `gone` is no longer configured"),
        "{plan}"
    );
    let summary = pool.reconcile(20, &[]);
    assert!(summary.contains("deleted 1"), "{summary}");
    let nodes = pool.nodes();
    assert_eq!(nodes.len(), 1);
    assert_eq!(
        (nodes[0].1.as_str(), nodes[0].2.as_str()),
        ("keep", "ready")
    );
    assert!(!server_ids(&pool).contains(&gone_server));
    assert_eq!(pool.servers().len(), 1);
}

#[test]
fn dry_run_changes_nothing_and_lists_launches_with_reasons() {
    let pool = Pool::start(Options {
        labels: vec![Label::new("small", 3)],
        ..Options::default()
    });
    // Before any run: no database appears.
    let plan = pool.ok(&["reconcile", "--dry-run"]);
    assert!(plan.contains("launch"), "{plan}");
    assert!(!pool.database().exists(), "a dry run created the database");

    pool.write_config(&[Label::new("small", 1)]);
    pool.reconcile(20, &[]);
    pool.write_config(&[Label::new("small", 3)]);
    let snapshot = || {
        let wal = fs::read(pool.database().with_file_name("nodepool.db-wal"));
        (
            fs::read(pool.database()).unwrap(),
            wal.unwrap_or_default(),
            pool.sim.dump(),
        )
    };
    let before = snapshot();

    let plan = pool.ok(&["reconcile", "--dry-run"]);
    assert!(plan.contains("| Provider | Label"), "{plan}");
    let launches: Vec<&str> = plan.lines().filter(|l| l.contains(" launch ")).collect();
    assert_eq!(launches.len(), 2, "{plan}");
    assert!(
        launches
            .iter()
            .all(|l| l.contains("1 ready/building/test < min-ready 3")),
        "{plan}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&pool.ok(&["--format", "json", "reconcile", "--dry-run"])).unwrap();
    let actions = json["actions"].as_array().expect("actions");
    assert_eq!(actions.len(), 2, "{json:#}");
    assert!(actions
        .iter()
        .all(|a| a["action"] == "launch" && a["provider"] == PROVIDER && a["label"] == "small"));
    assert!(actions[0]["reason"]
        .as_str()
        .unwrap()
        .contains("min-ready 3"));

    let after = snapshot();
    assert!(before.0 == after.0, "a dry run changed the database file");
    assert!(before.1 == after.1, "a dry run wrote to the WAL");
    assert_eq!(before.2, after.2, "a dry run changed the cloud");
}

#[test]
fn a_leaked_server_is_sighted_then_deleted_after_the_grace_period_and_strangers_never() {
    let pool = Pool::start(Options {
        labels: vec![Label::new("small", 0)],
        ..Options::default()
    });
    let installation = pool.installation();
    let cloud = pool.client();
    let leaked = support::create_server(
        &cloud,
        "small-sim-99",
        &[
            ("nodepool_installation", &installation),
            ("nodepool_provider_name", PROVIDER),
            ("nodepool_node_id", "99"),
        ],
    );
    let stranger = support::create_server(&cloud, "someones-vm", &[]);
    let other = support::create_server(
        &cloud,
        "small-sim-5",
        &[
            ("nodepool_installation", "another-installation"),
            ("nodepool_provider_name", PROVIDER),
            ("nodepool_node_id", "5"),
        ],
    );

    let started = Instant::now();
    pool.reconcile(10, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a sighting is no work in flight: {:?}",
        started.elapsed()
    );
    let (first, last): (i64, i64) = pool
        .db()
        .conn()
        .query_row(
            "SELECT first_seen, last_seen FROM leak WHERE server_id = ?1",
            [&leaked],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a sighting");
    assert!(first <= last);
    assert_eq!(pool.scalar("SELECT COUNT(*) FROM leak"), 1);
    assert_eq!(
        pool.servers().len(),
        3,
        "nothing deleted on a first sighting"
    );

    pool.db()
        .conn()
        .execute(
            "UPDATE leak SET first_seen = first_seen - 600, last_seen = last_seen - 600",
            [],
        )
        .unwrap();
    let summary = pool.reconcile(10, &[]);
    assert!(summary.contains("leaked servers deleted 1"), "{summary}");
    assert_eq!(server_ids(&pool), BTreeSet::from([stranger, other]));
    pool.reconcile(10, &[]);
    assert_eq!(pool.scalar("SELECT COUNT(*) FROM leak"), 0);
    assert_eq!(pool.servers().len(), 2);
    assert!(cloud.get_server(&leaked).unwrap().is_none());
}

#[test]
fn a_node_whose_server_vanished_is_removed_and_replaced() {
    let pool = Pool::start(Options {
        labels: vec![Label::new("small", 1)],
        ..Options::default()
    });
    pool.reconcile(20, &[]);
    let nodes = pool.list_json();
    let id = nodes[0]["id"].as_i64().unwrap();
    let server = nodes[0]["server_id"].as_str().unwrap().to_string();
    pool.client().delete_server(&server).unwrap();

    let summary = pool.reconcile(20, &[]);
    assert!(summary.contains("deleted 1"), "{summary}");
    let nodes = pool.nodes();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_ne!(nodes[0].0, id);
    assert_eq!(nodes[0].2, "ready");
    assert_eq!(known_servers(&pool), server_ids(&pool));
}

/// Stricter than the test above: not even SQLite's side files (-wal, -shm) appear.
#[test]
fn dry_run_leaves_no_database_side_files_behind() {
    let pool = Pool::start(Options::default());
    pool.reconcile(20, &[]);
    let files = || -> BTreeSet<String> {
        fs::read_dir(pool.database().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let before = files();
    pool.ok(&["reconcile", "--dry-run"]);
    assert_eq!(files(), before);
}

#[test]
fn a_run_empties_the_private_work_directory_a_killed_run_left_behind() {
    use std::os::unix::fs::PermissionsExt;
    let pool = Pool::start(Options::default());
    pool.reconcile(5, &[]);
    let work = nodepool::state::work_dir(&pool.database());
    let left = work.join("nodepool-key.killed");
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("id_rsa"), "-----BEGIN RSA PRIVATE KEY-----\n").unwrap();
    pool.reconcile(1, &[]);
    assert!(!left.exists(), "a killed run's key is still there");
    let mode = std::fs::metadata(&work).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(work.starts_with(pool.database().parent().unwrap()));
}

/// A pool of one node bootstrapped over SSH whose ready script is `script`.
fn one_node_with_ready_script(script: &str) -> Pool {
    let pool = Pool::start(Options {
        sshd: true,
        labels: vec![Label::new("small", 1)],
        ..Options::default()
    });
    fs::write(pool.dir.path().join("scripts/ready.sh"), script).unwrap();
    pool
}

#[test]
fn a_ready_script_longer_than_the_run_finishes_in_a_later_run_and_runs_once() {
    let pool = one_node_with_ready_script(
        "#!/bin/sh\nset -eu\nsleep 4\necho \"$1\" >> \"$NODEPOOL_NODE_ROOT/ready-ran\"\n",
    );
    let started = Instant::now();
    let first = pool.reconcile(2, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the run waited for the ready script: {:?}",
        started.elapsed()
    );
    assert_eq!(tally(&first, "became ready"), 0, "{first}");
    assert_eq!(
        pool.scalar("SELECT COUNT(*) FROM node WHERE launch_phase = 'bootstrapping'"),
        1,
        "{first}"
    );
    // Later runs ask how the script is doing until it has finished (bounded: 20 runs).
    let mut ready = 0;
    for _ in 0..20 {
        ready += tally(&pool.reconcile(2, &[]), "became ready");
        if ready > 0 {
            break;
        }
    }
    assert_eq!(ready, 1);
    let ran = fs::read_to_string(pool.node_root().join("ready-ran")).unwrap();
    assert_eq!(ran.lines().count(), 1, "the ready script ran once: {ran}");
}

#[test]
fn a_failing_ready_script_fails_its_node_with_the_scripts_status_and_output() {
    let pool = one_node_with_ready_script("#!/bin/sh\necho 'no disk space' >&2\nexit 3\n");
    let out = pool.run(&["reconcile", "--duration", "5"]);
    let (summary, log) = (stdout(&out), stderr(&out));
    assert!(tally(&summary, "failed") >= 1, "{summary}\n{log}");
    assert!(
        log.contains(
            "bootstrap on sim (node 1): bootstrap failed: ready script ready.sh on small-sim-1 \
             exited with status 3; its output ends:\n    no disk space"
        ),
        "{log}"
    );
}
