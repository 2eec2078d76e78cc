//! Metrics of a run: statsd packets read from a real UDP socket on loopback, and the
//! Prometheus text file parsed line by line.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::pool::{Options, Pool};
use crate::support::{status, stderr, BIN};

#[test]
fn a_reconcile_run_sends_the_2015_statsd_gauges_and_its_counters() {
    let pool = Pool::start(Options::default());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let out = Command::new(BIN)
        .arg("-c")
        .arg(&pool.config)
        .args(["reconcile", "--duration", "20"])
        .env("STATSD_HOST", "127.0.0.1")
        .env("STATSD_PORT", port.to_string())
        .output()
        .unwrap();
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        match socket.recv(&mut buf) {
            Ok(n) => {
                assert!(n <= 512, "a packet of {n} bytes");
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                lines.extend(text.lines().map(str::to_string));
            }
            Err(_) if !lines.is_empty() => break,
            Err(_) => {}
        }
    }
    for expected in [
        "nodepool.target.jenkins.small.sim.ready:2|g",
        "nodepool.target.ready:2|g",
        "nodepool.target.building:0|g",
        // Zero, not absent: a gauge whose last node went drops back.
        "nodepool.target.jenkins.small.sim.used:0|g",
        "nodepool.label.small.min_ready:2|g",
        "nodepool.provider.sim.max_servers:10|g",
        "nodepool.launch.count:2|c",
        "nodepool.launch.ready:2|c",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "{expected} not in {lines:#?}"
        );
    }
    assert!(lines
        .iter()
        .any(|l| l.starts_with("nodepool.run.reconcile:") && l.ends_with("|ms")));
    // Every line is statsd: key:value|type.
    for line in &lines {
        let (key, rest) = line.split_once(':').unwrap_or_else(|| panic!("{line}"));
        let (value, kind) = rest.split_once('|').unwrap_or_else(|| panic!("{line}"));
        assert!(!key.contains(' ') && value.parse::<u64>().is_ok(), "{line}");
        assert!(["g", "c", "ms"].contains(&kind), "{line}");
    }
}

#[test]
fn a_run_writes_the_prometheus_text_file_the_textfile_collector_reads() {
    let pool = Pool::start(Options::default());
    let file = pool.dir.path().join("nodepool.prom");
    let text = std::fs::read_to_string(&pool.config).unwrap();
    std::fs::write(
        &pool.config,
        format!("prometheus-textfile: {}\n{text}", file.display()),
    )
    .unwrap();
    pool.reconcile(20, &[]);
    let prom = std::fs::read_to_string(&file).unwrap();
    // Parsed as the exposition format: HELP/TYPE comments, then name{labels} value.
    let mut samples: BTreeMap<String, f64> = BTreeMap::new();
    let mut typed = Vec::new();
    for line in prom.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(kind, "gauge", "{line}");
            typed.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let name = series.split('{').next().unwrap();
        assert!(typed.iter().any(|t| t == name), "{name} has no TYPE line");
        assert!(series.ends_with('}') || !series.contains('{'), "{line}");
        samples.insert(
            series.to_string(),
            value.parse().unwrap_or_else(|_| panic!("{line}")),
        );
    }
    assert_eq!(
        samples.get(r#"nodepool_nodes{label="small",provider="sim",state="ready"}"#),
        Some(&2.0),
        "{prom}"
    );
    assert_eq!(
        samples.get(r#"nodepool_last_run_exit_status{command="reconcile"}"#),
        Some(&0.0)
    );
    assert!(samples.contains_key(r#"nodepool_last_run_seconds{command="reconcile"}"#));
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with(r#"nodepool_last_run_api_calls{command="reconcile",provider="sim",route="POST compute /servers"}"#)),
        "{prom}"
    );
    // No temporary file is left beside it.
    let left: Vec<_> = std::fs::read_dir(pool.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
