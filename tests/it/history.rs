//! The run journal: `nodepool history` after runs that went well, failed, were interrupted
//! by SIGTERM or killed, and the one-line-per-action log at the default level.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::pool::{Options, Pool};
use crate::support::{status, stderr, BIN};

fn history(pool: &Pool, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--format", "json", "history"];
    all.extend_from_slice(args);
    let out = pool.ok(&all);
    serde_json::from_str::<Value>(&out)
        .unwrap_or_else(|e| panic!("{e}: {out}"))
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn history_tells_what_each_run_saw_planned_and_did_and_how_it_ended() {
    let pool = Pool::start(Options::default());
    let out = pool.run(&["reconcile", "--duration", "20"]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    // At the default level each launch is one line with its reason.
    let err = stderr(&out);
    assert!(
        err.contains(
            "launch on sim (label small): label small: 0 ready/building/test < min-ready 2"
        ),
        "{err}"
    );
    // A failed run: the cloud answers 500 to everything, so the provider cannot be listed.
    pool.sim.set_knobs(|k| k.server_error_ratio = 1.0);
    let failed = pool.run(&["reconcile"]);
    assert_eq!(status(&failed), 69, "{}", stderr(&failed));
    pool.sim.set_knobs(|k| k.server_error_ratio = 0.0);
    // A command that is refused is journaled too.
    assert_eq!(status(&pool.run(&["hold", "999"])), 1);

    let runs = history(&pool, &[]);
    assert_eq!(runs.len(), 3, "{runs:#?}");
    let (hold, failed, filled) = (&runs[0], &runs[1], &runs[2]);
    assert_eq!(
        (hold["command"].as_str(), hold["exit_status"].as_i64()),
        (Some("hold"), Some(1))
    );
    assert_eq!(failed["command"], "reconcile");
    assert_eq!(failed["exit_status"], 69);
    assert!(
        failed["summary"]["unreachable"][0]["error"].is_string(),
        "{failed:#}"
    );
    assert_eq!(filled["exit_status"], 0);
    assert_eq!(
        filled["argv"],
        "-c {} reconcile --duration 20".replace("{}", pool.config.to_str().unwrap())
    );
    assert_eq!(filled["config_hash"].as_str().map(str::len), Some(16));
    assert!(filled["lock_wait"].as_f64().is_some(), "{filled:#}");
    assert!(filled["seconds"].as_f64().is_some(), "{filled:#}");
    assert_eq!(filled["summary"]["launched"], 2, "{filled:#}");
    assert_eq!(
        filled["summary"]["observed"]["servers"]["sim"], 2,
        "{filled:#}"
    );
    let launches: Vec<&Value> = filled["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["action"]
                .as_str()
                .is_some_and(|s| s.starts_with("launch on sim"))
        })
        .collect();
    assert_eq!(launches.len(), 2, "{filled:#}");
    assert!(launches[0]["reason"]
        .as_str()
        .unwrap()
        .contains("< min-ready 2"));
    assert!(launches.iter().all(|a| a["error"].is_null()));
    assert!(
        filled["api_calls"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("sim ") && k.contains("servers")),
        "{filled:#}"
    );
    // --limit and --since.
    assert_eq!(history(&pool, &["--limit", "1"]).len(), 1);
    assert_eq!(history(&pool, &["--since", "1h"]).len(), 3);
    assert!(history(&pool, &["--since", "2099-01-01T00:00:00Z"]).is_empty());
    let bad = pool.run(&["history", "--since", "yesterday-ish"]);
    assert_eq!(status(&bad), 1);
    assert!(stderr(&bad).contains("RFC 3339"), "{}", stderr(&bad));
    // The table says it in one line per run.
    let table = pool.ok(&["history"]);
    assert!(table.contains("launched 2, ready 2"), "{table}");
}

#[test]
fn an_interrupted_run_and_a_killed_one_are_told_apart() {
    let pool = Pool::start(Options {
        knobs: nodepool_simulator::Knobs {
            // Servers that never leave BUILD keep the run polling until it is stopped.
            stuck_ratio: 1.0,
            server_ip: "127.0.0.1".into(),
            ..nodepool_simulator::Knobs::default()
        },
        ..Options::default()
    });
    for signal in ["-TERM", "-KILL"] {
        let mut child = Command::new(BIN)
            .arg("-c")
            .arg(&pool.config)
            .args(["reconcile", "--duration", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Until its first round has launched (the servers are created).
        let deadline = Instant::now() + Duration::from_secs(30);
        while pool.servers().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        let killed = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let waited = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() && Instant::now() < waited {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            child.try_wait().unwrap().is_some(),
            "reconcile did not stop on {signal}"
        );
    }
    let runs = history(&pool, &[]);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    let (killed, interrupted) = (&runs[0], &runs[1]);
    assert_eq!(interrupted["interrupted"], "SIGTERM", "{interrupted:#}");
    assert!(interrupted["finished"].is_string());
    assert_eq!(interrupted["summary"]["interrupted"], "SIGTERM");
    assert!(killed["finished"].is_null(), "{killed:#}");
    assert!(killed["exit_status"].is_null());
    let table = pool.ok(&["history"]);
    assert!(table.contains("unfinished"), "{table}");
    assert!(table.contains("interrupted by SIGTERM"), "{table}");
}
