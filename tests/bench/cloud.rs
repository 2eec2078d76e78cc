//! Benchmarks of the OpenStack client: run with `cargo bench --bench cloud`. Prints figures,
//! asserts only what would make the figures meaningless.
//!
//! 1. A 1 GiB image upload streamed from disk, hashed on the way and checked with Glance's
//!    checksums: throughput as a ratio to `curl -T` of the same file to the same endpoint in
//!    the same run (target >= 0.9), and the uploading process's peak RSS (VmHWM), which must
//!    stay flat (target < 20 MB). The simulator runs as its own process so only the client is
//!    measured (it hashes what it receives too, as Glance does).
//! 2. `nodepool alien-list` over 10 providers (10 simulators): API calls read from the
//!    simulators' counters, and wall time.

use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common.rs"]
mod common;

use common::client_settings;
use nodepool::cloud::openstack::http::CallCounter;
use nodepool::cloud::openstack::OpenStack;
use nodepool::cloud::Cloud;
use nodepool_simulator::{Knobs, Simulator};

fn main() {
    upload_rss();
    alien_list_calls();
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn upload_rss() {
    let (mut child, url) = common::simulator_process(&[]);
    // The simulator runs in its own process here; only its URL differs from the in-process one.
    let local = Simulator::start(Knobs::default()).expect("simulator");
    let mut settings = client_settings(&local, "bench");
    settings.credentials.auth_url = format!("{url}/identity/v3");
    settings.timeouts.call = Duration::from_secs(600);
    drop(local);
    let cloud = OpenStack::connect(&settings, CallCounter::default()).expect("connect");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    file.as_file()
        .set_len(1024 * 1024 * 1024)
        .expect("1 GiB sparse file");
    // Read once before either upload: the first reader of a new file pays for filling the
    // page cache (1.5-2.5 s of kernel time for 1 GiB here), which would be charged to
    // whichever upload runs first instead of to its client.
    std::io::copy(
        &mut std::fs::File::open(file.path()).expect("open"),
        &mut std::io::sink(),
    )
    .expect("read the file once");
    let id = cloud
        .create_image("bench-1g", "qcow2", &Default::default())
        .expect("create image");
    let before = peak_rss_kib();
    let started = Instant::now();
    let sent = nodepool::image::upload::upload_and_verify(
        &cloud,
        &id,
        file.path(),
        Instant::now() + Duration::from_secs(600),
        |_, _| {},
    )
    .expect("upload, hashed and verified");
    let elapsed = started.elapsed();
    let after = peak_rss_kib();
    let size = cloud.get_image(&id).expect("get").and_then(|i| i.size);
    assert_eq!(size, Some(1024 * 1024 * 1024), "the whole file arrived");
    assert_eq!(sent.bytes, 1024 * 1024 * 1024);
    // The same file to the same endpoint with curl -T, in the same run.
    let curl_id = cloud
        .create_image("bench-curl", "qcow2", &Default::default())
        .expect("create image");
    let token = token(&url);
    let started = Instant::now();
    let curl = Command::new("curl")
        .args(["-sS", "-f", "-T"])
        .arg(file.path())
        .args(["-H", &format!("X-Auth-Token: {token}")])
        .args(["-H", "Content-Type: application/octet-stream"])
        .arg(format!("{url}/image/v2/images/{curl_id}/file"))
        .status()
        .expect("curl");
    let curl_elapsed = started.elapsed();
    assert!(curl.success(), "curl -T failed");
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "upload 1 GiB (streamed, MD5 and SHA-512 on the way, checked with Glance's): {:.2} s, \
         {:.0} MiB/s; curl -T of the same file: {:.2} s; throughput ratio nodepool/curl {:.2} \
         (target >= 0.9); client peak RSS {:.1} MiB before, {:.1} MiB after (target < 20)",
        elapsed.as_secs_f64(),
        1024.0 / elapsed.as_secs_f64(),
        curl_elapsed.as_secs_f64(),
        curl_elapsed.as_secs_f64() / elapsed.as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
}

/// A Keystone token for curl, as the simulator's user.
fn token(url: &str) -> String {
    let body = serde_json::json!({"auth": {"identity": {"methods": ["password"], "password":
        {"user": {"name": "demo", "domain": {"id": "default"}, "password": "secret"}}},
        "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}});
    let reply = ureq::post(format!("{url}/identity/v3/auth/tokens"))
        .send_json(&body)
        .expect("token");
    reply
        .headers()
        .get("X-Subject-Token")
        .and_then(|v| v.to_str().ok())
        .expect("X-Subject-Token")
        .to_string()
}

fn alien_list_calls() {
    const PROVIDERS: usize = 10;
    let sims: Vec<Simulator> = (0..PROVIDERS)
        .map(|_| Simulator::start(Knobs::default()).expect("simulator"))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = String::from("dburi: nodepool.db\nproviders:\n");
    for (i, sim) in sims.iter().enumerate() {
        config.push_str(&format!(
            "  - name: p{i}\n    auth-url: {}\n    username: demo\n    password: secret\n    project-id: demo\n    max-servers: 10\n",
            sim.auth_url_v3()
        ));
    }
    let path = dir.path().join("nodepool.yaml");
    std::fs::write(&path, config).expect("config");
    let bin = env!("CARGO_BIN_EXE_nodepool");
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let out = Command::new(bin)
            .arg("-c")
            .arg(&path)
            .arg("alien-list")
            .output()
            .expect("run");
        times.push(started.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    times.sort();
    let calls: Vec<u64> = sims.iter().map(|s| s.calls().total).collect();
    let tokens: u64 = sims
        .iter()
        .map(|s| s.calls().route("POST /identity/v3/auth/tokens"))
        .sum();
    let lists: u64 = sims
        .iter()
        .map(|s| s.calls().route("GET /compute/servers/detail"))
        .sum();
    println!(
        "alien-list over {PROVIDERS} providers, 5 runs: {} calls per run ({} token + {} list servers), \
         per provider per run {:?}; wall median {:.1} ms (min {:.1}, max {:.1})",
        calls.iter().sum::<u64>() / 5,
        tokens / 5,
        lists / 5,
        calls.iter().map(|c| c / 5).collect::<Vec<_>>(),
        times[2].as_secs_f64() * 1000.0,
        times[0].as_secs_f64() * 1000.0,
        times[4].as_secs_f64() * 1000.0
    );
}
