//! Benchmark: `nodepool list` and `list --format json` over 10,000 nodes, timed as whole
//! processes (start-up, config, database, formatting, output). Run with
//! `cargo bench --bench list`; it prints figures and asserts nothing (machines are noisy).

use std::process::Command;
use std::time::{Duration, Instant};

use nodepool::model::NodeState;
use nodepool::state::nodes::{self, NewNode};
use nodepool::state::Db;

const NODES: usize = 10_000;
const RUNS: usize = 15;

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("nodepool.yaml");
    let providers: String = (0..50)
        .map(|p| {
            format!(
                "  - name: p{p}\n    cloud: c{p}\n    max-servers: 1000\n    images:\n      - name: img\n        base-image: base\n        min-ram: 1024\n"
            )
        })
        .collect();
    std::fs::write(
        &config,
        format!("dburi: nodepool.db\nproviders:\n{providers}"),
    )
    .expect("config");
    seed(&dir.path().join("nodepool.db"));

    let bin = env!("CARGO_BIN_EXE_nodepool");
    println!("nodepool list over {NODES} nodes, {RUNS} runs each, whole process:");
    for args in [&["list"][..], &["--format", "json", "list"]] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..RUNS {
            let start = Instant::now();
            let out = Command::new(bin)
                .arg("-c")
                .arg(&config)
                .args(args)
                .output()
                .expect("run");
            times.push(start.elapsed());
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            bytes = out.stdout.len();
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {:<22} min {:6.1} ms  median {:6.1} ms  max {:6.1} ms  ({} KiB of output)",
            args.join(" "),
            ms(times[0]),
            ms(times[RUNS / 2]),
            ms(times[RUNS - 1]),
            bytes / 1024
        );
    }
}

fn seed(path: &std::path::Path) {
    let db = Db::open(path).expect("db");
    let now = nodepool::clock::now();
    db.conn().execute_batch("BEGIN").expect("begin");
    for i in 0..NODES {
        let state = [NodeState::Ready, NodeState::Building, NodeState::Used][i % 3];
        let (nodepool::model::NodeId(id), _) = nodes::insert(
            db.conn(),
            &NewNode {
                provider: format!("p{}", i % 50).as_str().into(),
                label: ["small", "large", "multi"][i % 3].into(),
                target: "jenkins".into(),
                state,
                az: Some("nova".into()),
                launch_phase: None,
                image_external_id: None,
            },
            now - (i as i64 % 7200),
            |id| format!("small-p{}-{id}", i % 50),
        )
        .expect("insert");
        db.conn()
            .execute(
                "UPDATE node SET nodename = hostname, external_id = ?2, ip = ?3 WHERE id = ?1",
                rusqlite::params![
                    id,
                    format!("6f1c2a9e-0b7d-4c2e-9f1a-{id:012}"),
                    format!("203.0.{}.{}", id / 250 % 250, id % 250)
                ],
            )
            .expect("update");
    }
    db.conn().execute_batch("COMMIT").expect("commit");
}
