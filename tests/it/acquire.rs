//! `acquire` and `release` against the simulator: nodes handed to a pipeline atomically, with
//! what it needs to log in; `--wait` as demand that makes `reconcile` launch; single use.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::pool::{Label, Options, Pool};
use crate::support::{status, stderr, stdout, BIN};

fn pool(min_ready: i64, sshd: bool) -> Pool {
    Pool::start(Options {
        sshd,
        labels: vec![Label::new("small", min_ready)],
        ..Options::default()
    })
}

/// Reconcile until `ready` nodes are ready (bounded).
fn fill(pool: &Pool, ready: usize) {
    for _ in 0..5 {
        if pool.count("small", "ready") >= ready {
            return;
        }
        pool.reconcile(30, &[]);
    }
    assert_eq!(pool.count("small", "ready"), ready, "{:?}", pool.nodes());
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn acquire_takes_ready_nodes_with_how_to_log_in_and_release_deletes_them() {
    let pool = pool(2, true);
    fill(&pool, 2);
    let sshd = pool.sshd.as_ref().unwrap();
    let taken = json(&pool.ok(&["acquire", "small", "--count", "2", "--owner", "pipeline-7"]));
    let taken = taken.as_array().unwrap();
    assert_eq!(taken.len(), 2, "{taken:#?}");
    for node in taken {
        assert_eq!(node["label"], "small");
        assert_eq!(node["owner"], "pipeline-7");
        assert_eq!(node["ip"], "127.0.0.1");
        assert_eq!(node["username"], sshd.user.as_str());
        assert_eq!(node["port"], sshd.port);
        let keys = node["host_keys"].as_str().unwrap();
        assert!(
            keys.contains(&format!("[127.0.0.1]:{}", sshd.port)),
            "{keys}"
        );
        assert_eq!(node["subnodes"], serde_json::json!([]));
    }
    // They are the job's now: used, with their owner.
    let list = pool.list_json();
    let owners: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"] == "used")
        .map(|n| n["owner"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["pipeline-7", "pipeline-7"]);
    // status tells who holds them and since when.
    let table = pool.ok(&["status"]);
    assert!(
        table.contains("small on sim: 2 acquired and not released"),
        "{table}"
    );
    assert!(
        table.contains("by pipeline-7, 0.0 h ago (deleted at 8.0 h"),
        "{table}"
    );
    let rows = json(&pool.ok(&["--format", "json", "status"]));
    assert_eq!(rows[0]["acquired"], 2, "{rows:#}");
    assert_eq!(
        rows[0]["oldest_acquired"]["owner"], "pipeline-7",
        "{rows:#}"
    );
    // None left: all or nothing, and a clear error.
    let out = pool.run(&["acquire", "small"]);
    assert_eq!(status(&out), 1);
    assert!(
        stderr(&out).contains("fewer than 1 nodes of small are ready"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());

    let id = taken[0]["id"].as_str().unwrap();
    let out = pool.ok(&["release", id]);
    assert!(out.contains("released by pipeline-7"), "{out}");
    let out = pool.ok(&["release", id]);
    assert!(out.contains("released already"), "{out}");
    for (args, why) in [
        (vec!["release", "999"], "no node with id 999"),
        (vec!["acquire", "nosuch"], "no label named `nosuch`"),
    ] {
        let out = pool.run(&args);
        assert_eq!(status(&out), 1, "{args:?}");
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
    }
    // The released node is deleted by the next run and replaced.
    pool.reconcile(30, &[]);
    let states: Vec<(i64, String)> = pool.nodes().into_iter().map(|(i, _, s)| (i, s)).collect();
    assert!(
        !states.iter().any(|(i, _)| i.to_string() == id),
        "released node {id} is gone: {states:?}"
    );
    // A node nobody acquired cannot be released.
    let ready = pool
        .nodes()
        .into_iter()
        .find(|(_, _, s)| s == "ready")
        .expect("a replacement");
    let out = pool.run(&["release", &ready.0.to_string()]);
    assert_eq!(status(&out), 1);
    assert!(
        stderr(&out).contains("was not acquired"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn twenty_concurrent_acquires_on_ten_ready_nodes_get_ten_nodes_once_each() {
    let pool = pool(10, false);
    fill(&pool, 10);
    let children: Vec<_> = (0..20)
        .map(|i| {
            Command::new(BIN)
                .arg("-c")
                .arg(&pool.config)
                .args(["acquire", "small", "--owner", &format!("job-{i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn acquire")
        })
        .collect();
    let mut ids = Vec::new();
    let mut refused = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        match status(&out) {
            0 => {
                let taken = json(&stdout(&out));
                assert_eq!(taken.as_array().unwrap().len(), 1, "{taken:#}");
                ids.push(taken[0]["id"].as_str().unwrap().to_string());
            }
            1 => {
                assert!(stderr(&out).contains("are ready"), "{}", stderr(&out));
                refused += 1;
            }
            other => panic!("acquire exited {other}: {}", stderr(&out)),
        }
    }
    ids.sort();
    let unique = {
        let mut u = ids.clone();
        u.dedup();
        u
    };
    assert_eq!((ids.len(), refused), (10, 10), "{ids:?}");
    assert_eq!(unique, ids, "no node was handed out twice");
    assert_eq!(pool.count("small", "used"), 10);
}

#[test]
fn acquire_wait_makes_reconcile_launch_a_node_above_min_ready_and_times_out_cleanly() {
    let pool = pool(0, false);
    // Nothing will come within a second: 124, and the request is withdrawn.
    let out = pool.run(&["acquire", "small", "--wait", "1"]);
    assert_eq!(status(&out), 124, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not ready within 1 s"),
        "{}",
        stderr(&out)
    );
    assert_eq!(pool.scalar("SELECT count(*) FROM node_request"), 0);

    let mut waiting = Command::new(BIN)
        .arg("-c")
        .arg(&pool.config)
        .args(["acquire", "small", "--wait", "60", "--owner", "ci"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn acquire --wait");
    // The request is registered, then a reconcile run launches for it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while pool.scalar("SELECT count(*) FROM node_request") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let plan = json(&pool.ok(&["--format", "json", "reconcile", "--dry-run"]));
    let reason = plan["actions"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("1 asked for by acquire --wait"), "{plan:#}");
    let mut done = None;
    while done.is_none() && Instant::now() < deadline {
        pool.reconcile(10, &[]);
        done = waiting.try_wait().unwrap();
    }
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let taken = json(&stdout(&out));
    assert_eq!(taken.as_array().unwrap().len(), 1, "{taken:#}");
    assert_eq!(taken[0]["owner"], "ci");
    assert_eq!(pool.scalar("SELECT count(*) FROM node_request"), 0);
    // Met: nothing more is launched for it (min-ready is 0).
    pool.reconcile(0, &[]);
    assert_eq!(pool.nodes().len(), 1, "{:?}", pool.nodes());
}
