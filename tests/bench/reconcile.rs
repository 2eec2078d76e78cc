//! Benchmarks of the reconciler: run with `cargo bench --bench reconcile` (BENCH_ONLY=steady,
//! round or fill runs one part). Prints figures,
//! asserts only what would make them meaningless. Peak RSS of a `nodepool` process is read
//! with GNU time (`apt-get install time` if /usr/bin/time is missing), its CPU time with
//! bash's `times`.
//!
//! 1. Steady state: API calls of a run with the pool full, per provider (target: 1, the
//!    server listing; the token and the image listing are kept from the filling run).
//! 2. One round over 10,000 ready nodes on 50 providers (50 simulators, 200 servers each):
//!    CPU and peak RSS of the whole `nodepool reconcile` process (target < 100 ms CPU,
//!    < 30 MB), and `plan()` alone in-process.
//! 3. Filling min-ready 1000 from empty: a simulator process with a 0.1 s boot delay,
//!    `host-key-checking: false`, one `reconcile --duration` run: wall, CPU, peak RSS
//!    (targets < 15 s, < 2 s, < 25 MB; issue 11: no worse than 2.0 s, 0.28 s, 11 MiB).
//! 4. Filling min-ready 100 on a slow Nova, whose `POST /servers` answers after 0.5 s
//!    (`rate: 0.001`, 0.1 s boot): with the defaults, `max-concurrency: 10` and
//!    `max-concurrency: 1` (the one-at-a-time of before); target with the defaults < 2.5 s.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::client_settings;
use nodepool::cloud::openstack::http::CallCounter;
use nodepool::cloud::openstack::OpenStack;
use nodepool::cloud::{Cloud, CreateServer};
use nodepool::model::{NodeState, ProviderName};
use nodepool::state::nodes::{self, NewNode};
use nodepool::state::{pass, Db};
use nodepool_simulator::{Knobs, Simulator};

#[path = "common.rs"]
mod common;

const NODEPOOL: &str = env!("CARGO_BIN_EXE_nodepool");
const GNU_TIME: &str = "/usr/bin/time";

fn main() {
    if !Path::new(GNU_TIME).exists() {
        eprintln!("bench reconcile: {GNU_TIME} is missing; install it (apt-get install time)");
        std::process::exit(1);
    }
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "steady" {
        steady_state_calls();
    }
    if only.is_empty() || only == "round" {
        round_over_10k_nodes();
    }
    if only.is_empty() || only == "fill" {
        fill_1000();
    }
    if only.is_empty() || only == "slow" {
        fill_100_on_a_slow_nova();
    }
}

/// Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one command.
struct Measured {
    wall: f64,
    cpu: f64,
    rss_mib: f64,
    stdout: String,
    stderr: String,
}

fn measure(config: &Path, args: &[&str]) -> Measured {
    let report = tempfile::NamedTempFile::new().expect("temp file");
    let started = Instant::now();
    // GNU time reports CPU to 10 ms; bash's `times` reports its children's (GNU time and the
    // nodepool it waited for) to the millisecond.
    let script = r#""$1" -o "$2" -f %M "${@:3}"; status=$?; times >> "$2"; exit $status"#;
    let out = Command::new("bash")
        .args(["-c", script, "measure", GNU_TIME])
        .arg(report.path())
        .args([NODEPOOL, "-c"])
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run nodepool");
    let wall = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "nodepool {args:?}: {stdout}\n{stderr}"
    );
    let text = std::fs::read_to_string(report.path()).expect("time report");
    let (rss_kib, cpu) = parse_report(&text).unwrap_or_else(|| panic!("time report: {text}"));
    Measured {
        wall,
        cpu,
        rss_mib: rss_kib / 1024.0,
        stdout,
        stderr,
    }
}

/// GNU time's peak RSS (KiB), then `times`: the shell's own user and system time, then its
/// children's (`0m0.091s 0m0.053s`). Returns the RSS and the children's CPU seconds.
fn parse_report(text: &str) -> Option<(f64, f64)> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let rss: f64 = lines.next()?.trim().parse().ok()?;
    let children = lines.nth(1)?;
    let seconds = |field: &str| -> Option<f64> {
        let (minutes, rest) = field.split_once('m')?;
        Some(minutes.parse::<f64>().ok()? * 60.0 + rest.strip_suffix('s')?.parse::<f64>().ok()?)
    };
    let mut fields = children.split_whitespace();
    let cpu = seconds(fields.next()?)? + seconds(fields.next()?)?;
    Some((rss, cpu))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A configuration with one label per provider, each provider on its own simulator.
fn write_config(
    dir: &Path,
    providers: &[(String, String)],
    min_ready: u32,
    max_servers: u32,
) -> PathBuf {
    write_config_with(dir, providers, min_ready, max_servers, "rate: 0")
}

/// As `write_config`, with `keys` (indented provider keys, one a line) instead of `rate: 0`.
fn write_config_with(
    dir: &Path,
    providers: &[(String, String)],
    min_ready: u32,
    max_servers: u32,
    keys: &str,
) -> PathBuf {
    let mut yaml = String::from("dburi: state/nodepool.db\nlabels:\n");
    for (name, _) in providers {
        let _ = write!(
            yaml,
            "  - name: label-{name}\n    image: ubuntu\n    min-ready: {min_ready}\n    \
             providers:\n      - name: {name}\n"
        );
    }
    yaml.push_str("providers:\n");
    for (name, auth_url) in providers {
        let _ = write!(
            yaml,
            "  - name: {name}\n    username: demo\n    password: secret\n    project-id: demo\n    \
             auth-url: {auth_url}\n    max-servers: {max_servers}\n    {keys}\n    \
             host-key-checking: false\n    images:\n      - name: ubuntu\n        \
             base-image: 'Ubuntu 22.04'\n        min-ram: 1024\n"
        );
    }
    let path = dir.join("nodepool.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

fn steady_state_calls() {
    let simulators: Vec<Simulator> = (0..3)
        .map(|_| Simulator::start(Knobs::default()).expect("simulator"))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let providers: Vec<(String, String)> = simulators
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("p{i}"), s.auth_url_v3()))
        .collect();
    let config = write_config(dir.path(), &providers, 5, 10);
    let fill = measure(&config, &["reconcile", "--duration", "30"]);
    assert!(fill.stdout.contains("became ready 15"), "{}", fill.stdout);
    let before: Vec<u64> = simulators.iter().map(|s| s.calls().total).collect();
    let steady = measure(&config, &["--debug", "reconcile"]);
    let per_provider: Vec<u64> = simulators
        .iter()
        .zip(before)
        .map(|(s, b)| s.calls().total - b)
        .collect();
    println!(
        "steady state (pool full, 3 providers): API calls per provider {per_provider:?} \
         (target 1: list servers; token and images kept); CPU {:.3} s, peak RSS {:.1} MiB; {}",
        steady.cpu,
        steady.rss_mib,
        steady.stdout.trim()
    );
}

fn round_over_10k_nodes() {
    const PROVIDERS: usize = 50;
    // BENCH_PER_PROVIDER=N: another pool size, to separate fixed from per-node costs.
    let per_provider: usize = std::env::var("BENCH_PER_PROVIDER")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("tempdir");
    let simulators: Vec<Simulator> = (0..PROVIDERS)
        .map(|_| Simulator::start(Knobs::default()).expect("simulator"))
        .collect();
    let providers: Vec<(String, String)> = simulators
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("p{i:02}"), s.auth_url_v3()))
        .collect();
    let config = write_config(dir.path(), &providers, per_provider as u32, 250);
    let db = Db::open(&dir.path().join("state/nodepool.db")).expect("db");
    let installation = pass::installation(db.conn()).expect("installation");
    let seeding = Instant::now();
    // Servers first (in parallel, one thread per simulator), then their rows.
    let servers: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = simulators
            .iter()
            .enumerate()
            .map(|(i, sim)| {
                let installation = installation.clone();
                scope.spawn(move || {
                    let cloud = OpenStack::connect(
                        &client_settings(sim, &format!("p{i:02}")),
                        CallCounter::default(),
                    )
                    .expect("connect");
                    let image = cloud.list_images().expect("images")[0].id.clone();
                    let flavor = cloud.list_flavors().expect("flavors")[0].id.clone();
                    (0..per_provider)
                        .map(|n| {
                            let metadata = BTreeMap::from([
                                ("nodepool_installation".to_string(), installation.clone()),
                                ("nodepool_provider_name".to_string(), format!("p{i:02}")),
                            ]);
                            cloud
                                .create_server(&CreateServer {
                                    name: format!("node-{i}-{n}"),
                                    image_id: image.clone(),
                                    flavor_id: flavor.clone(),
                                    metadata,
                                    ..CreateServer::default()
                                })
                                .expect("create server")
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("seeding thread"))
            .collect()
    });
    db.conn().execute_batch("BEGIN").expect("begin");
    for (i, ids) in servers.iter().enumerate() {
        let provider = ProviderName::from(format!("p{i:02}"));
        for server_id in ids {
            let (id, _) = nodes::insert(
                db.conn(),
                &NewNode {
                    provider: provider.clone(),
                    label: format!("label-{provider}").as_str().into(),
                    target: "default".into(),
                    state: NodeState::Ready,
                    az: None,
                    launch_phase: Some(nodepool::model::LaunchPhase::Ready),
                    image_external_id: None,
                },
                nodepool::clock::now(),
                |id| format!("node-{id}"),
            )
            .expect("insert");
            db.conn()
                .execute(
                    "UPDATE node SET external_id = ?1, ip = '127.0.0.1' WHERE id = ?2",
                    rusqlite::params![server_id, id],
                )
                .expect("update");
        }
    }
    db.conn().execute_batch("COMMIT").expect("commit");
    drop(db);
    println!(
        "seeded {} servers and rows in {:.1} s",
        PROVIDERS * per_provider,
        seeding.elapsed().as_secs_f64()
    );
    let runs: Vec<Measured> = (0..7).map(|_| measure(&config, &["reconcile"])).collect();
    for run in &runs {
        assert!(
            run.stdout.contains("launched 0") && run.stdout.contains("deleting 0"),
            "the pool should be full and steady: {}{}",
            run.stdout,
            run.stderr
        );
    }
    // BENCH_WRAP="perf record -g -o FILE" (or heaptrack, …): also run one round under a
    // profiler.
    if let Ok(wrap) = std::env::var("BENCH_WRAP") {
        let mut words = wrap.split_whitespace();
        if let Some(program) = words.next() {
            let _ = Command::new(program)
                .args(words)
                .args([NODEPOOL, "-c"])
                .arg(&config)
                .arg("reconcile")
                .status();
        }
    }
    let cpu: Vec<f64> = runs.iter().map(|r| r.cpu).collect();
    let wall: Vec<f64> = runs.iter().map(|r| r.wall).collect();
    let rss = runs.iter().map(|r| r.rss_mib).fold(0.0, f64::max);
    println!(
        "one round, 10,000 nodes on 50 providers (whole process, 7 runs): CPU median {:.0} ms \
         (min {:.0}, max {:.0}); wall median {:.0} ms; peak RSS {:.1} MiB",
        median(cpu.clone()) * 1000.0,
        cpu.iter().copied().fold(f64::MAX, f64::min) * 1000.0,
        cpu.iter().copied().fold(0.0, f64::max) * 1000.0,
        median(wall) * 1000.0,
        rss
    );
    // The planner alone, in-process, on the same observation.
    let loaded = nodepool::config::load(&config).expect("config");
    let db = Db::open(&dir.path().join("state/nodepool.db")).expect("db");
    let mut observed =
        nodepool::observe::database(db.conn(), nodepool::clock::now()).expect("observe db");
    let clouds: BTreeMap<ProviderName, OpenStack> = simulators
        .iter()
        .enumerate()
        .map(|(i, sim)| {
            let name = format!("p{i:02}");
            let cloud = OpenStack::connect(&client_settings(sim, &name), CallCounter::default())
                .expect("connect");
            (ProviderName::from(name), cloud)
        })
        .collect();
    observed.clouds = nodepool::observe::clouds(&clouds, &BTreeMap::new());
    let mut times = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let plan = nodepool::plan::plan(&loaded, &observed, nodepool::plan::Mode::Reconcile);
        times.push(started.elapsed().as_secs_f64());
        assert!(
            plan.actions.is_empty(),
            "steady pool planned {:?}",
            plan.actions.first()
        );
    }
    println!(
        "plan() alone over 10,000 nodes and 10,000 listed servers: median {:.1} ms",
        median(times) * 1000.0
    );
}

fn fill_1000() {
    let (mut child, url) = common::simulator_process(&["--port", "0", "--boot-delay", "0.1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = vec![("fill".to_string(), format!("{url}/identity/v3"))];
    let config = write_config(dir.path(), &providers, 1000, 1000);
    let run = measure(&config, &["reconcile", "--duration", "120"]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        run.stdout.contains("became ready 1000"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    println!(
        "fill min-ready 1000 from empty (boot delay 0.1 s, host-key-checking off, one run): \
         wall {:.2} s, CPU {:.2} s, peak RSS {:.1} MiB; {}",
        run.wall,
        run.cpu,
        run.rss_mib,
        run.stdout.trim()
    );
}

fn fill_100_on_a_slow_nova() {
    for (what, keys) in [
        ("defaults", "rate: 0.001"),
        ("max-concurrency 10", "rate: 0.001\n    max-concurrency: 10"),
        ("max-concurrency 1", "rate: 0.001\n    max-concurrency: 1"),
    ] {
        let (mut child, url) = common::simulator_process(&[
            "--port",
            "0",
            "--boot-delay",
            "0.1",
            "--route-latency",
            "POST /compute/servers=0.5",
        ]);
        let dir = tempfile::tempdir().expect("tempdir");
        let providers = vec![("slow".to_string(), format!("{url}/identity/v3"))];
        let config = write_config_with(dir.path(), &providers, 100, 100, keys);
        let run = measure(&config, &["reconcile", "--duration", "120"]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            run.stdout.contains("became ready 100"),
            "{}{}",
            run.stdout,
            run.stderr
        );
        println!(
            "fill min-ready 100, 0.5 s per create, {what}: wall {:.2} s, CPU {:.2} s, peak RSS \
             {:.1} MiB; {}",
            run.wall,
            run.cpu,
            run.rss_mib,
            run.stdout.trim()
        );
    }
}
