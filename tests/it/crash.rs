//! Kill -9 tests: for every point of `nodepool::failpoint::POINTS`, a `nodepool reconcile`
//! is killed there with SIGKILL (`NODEPOOL_FAILPOINT`), and the next runs must converge with
//! nothing leaked and nothing launched twice: every server carrying this installation's
//! metadata belongs to exactly one row, min-ready ready nodes (with their subnodes), one
//! create call per server, and the bootstrap (files and ready script) done on every member.
//!
//! Each case has its own simulator (0.2 s boot), real sshd on loopback and installation.
//! Every point has a test per shape (`crash::single_nodes::mid_ssh`,
//! `crash::with_subnodes::mid_ssh`). A point added to the constant fails
//! `every_failpoint_has_its_tests` until it has its line in `point_tests!`; then it runs (or
//! says how it could not be reached) with the default flow of `scenarios` unless taught a
//! better one. How many cases run at once is nextest's business: the `crash` test group in
//! .config/nextest.toml.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodepool::cloud::openstack::http::CallCounter;
use nodepool::cloud::openstack::OpenStack;
use nodepool::failpoint;
use nodepool::model::node::{Node, Subnode};
use nodepool::model::{LaunchPhase, Member, NodeState, ProviderName};
use nodepool::state::{nodes, pass, subnodes};
use nodepool_simulator::{Dump, Knobs, Simulator};

use crate::support;
use crate::support::simulator::client_settings;
use crate::support::sshd::Sshd;
use crate::support::Install;

const MIN_READY: usize = 2;
/// The pool of the `Burst` flow, and how long each of its creates takes.
const BURST: usize = 10;
const BURST_CREATE: Duration = Duration::from_secs(1);
/// Runs without the failpoint allowed to converge (each is one bounded `--duration` run).
const CONVERGE_RUNS: usize = 3;
/// A `nodepool` process that outlives this is killed and the case fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// The simulator's floating IPs are 127.0.2.2, 127.0.2.3, …: this many get a proxy to sshd.
const FLOATING_PROXIES: u8 = 16;
/// The server create route, counted by the simulator: one call per server, ever.
const CREATE_ROUTE: &str = "POST /compute/servers";
use nodepool::node::bootstrap::ETC_FILES;

/// How the pool is shaped.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    /// One label, min-ready 2, single nodes.
    Plain,
    /// One label, min-ready 2, one subnode each: the subnode launch paths share the points.
    Subnodes,
}

impl Shape {
    fn subnodes(self) -> usize {
        match self {
            Shape::Plain => 0,
            Shape::Subnodes => 1,
        }
    }
}

/// What the crashing run is asked to do, so that it reaches its point.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Flow {
    /// Fill the pool from empty.
    Fill,
    /// Fill the pool from empty; servers have only a private address and the provider a
    /// floating IP `pool`, so every member gets a floating IP.
    Floating,
    /// Fill the pool, `nodepool delete` a ready node, then the crashing run deletes it.
    Delete,
    /// A server with this installation's metadata and no row, sighted long enough ago: the
    /// crashing run deletes it as a leak (and fills the pool).
    Leak,
    /// Fill `BURST` nodes from empty on a Nova whose creates take a second each, so the
    /// crashing run dies with many creates in flight at once.
    Burst,
}

/// How the run reaches `point`, and the occurrences (`point:nth`) it dies at, one case each.
fn scenarios(point: &str, shape: Shape) -> (Flow, Vec<u32>) {
    let plain = shape == Shape::Plain;
    match point {
        // Primaries are launched in the first round (hits 1, 2), their subnodes in the
        // next (hits 3, 4): the third hit is the first subnode's.
        "after-intent" | "after-create" => {
            (Flow::Fill, if plain { vec![1, 2] } else { vec![1, 3] })
        }
        "after-record" => (Flow::Fill, vec![if plain { 1 } else { 3 }]),
        // One hit per member, in parallel: a later one when there are subnodes.
        "after-floating-ip" | "after-floating-ip-allocate" => {
            (Flow::Floating, vec![if plain { 1 } else { 3 }])
        }
        "after-keyscan" => (Flow::Fill, vec![if plain { 1 } else { 3 }]),
        // One hit per set, after its bootstrap.
        "mid-ssh" => (Flow::Fill, vec![if plain { 1 } else { 2 }]),
        // The primary's delete call; with a subnode, also after the subnode's.
        "after-delete-call" => (Flow::Delete, if plain { vec![1] } else { vec![1, 2] }),
        "after-leak-delete" => (Flow::Leak, vec![1]),
        // A point this file does not know yet: the full lifecycle from empty must reach it,
        // or the case fails saying so.
        _ => (Flow::Fill, vec![1]),
    }
}

/// One test per point of `failpoint::POINTS` and shape (`crash::single_nodes::after_intent`,
/// …), so nextest schedules the cases like any other test, names the one that fails, and holds
/// them back with the `crash` test group (.config/nextest.toml).
macro_rules! point_tests {
    ($($test:ident => $point:literal,)*) => {
        /// The points that have tests here.
        const TESTED: &[&str] = &[$($point),*];

        mod single_nodes {
            $(
                #[test]
                fn $test() {
                    super::cases($point, super::Shape::Plain);
                }
            )*
        }

        mod with_subnodes {
            $(
                #[test]
                fn $test() {
                    super::cases($point, super::Shape::Subnodes);
                }
            )*
        }
    };
}

/// The kill -9 of a run with many creates in flight at once (the tenth intent is the tenth
/// thread's; the nine before it are waiting for their create's answer): every one of them
/// is adopted or forgotten, none is sent twice and none leaks.
#[test]
fn a_run_killed_with_ten_creates_in_flight_converges_without_duplicates_or_leaks() {
    case("after-intent", Shape::Plain, Flow::Burst, BURST as u32);
}

point_tests! {
    after_intent => "after-intent",
    after_create => "after-create",
    after_record => "after-record",
    after_floating_ip_allocate => "after-floating-ip-allocate",
    after_floating_ip => "after-floating-ip",
    after_keyscan => "after-keyscan",
    mid_ssh => "mid-ssh",
    after_delete_call => "after-delete-call",
    after_leak_delete => "after-leak-delete",
}

/// A point added to `failpoint::POINTS` fails here until it has its tests above.
#[test]
fn every_failpoint_has_its_tests() {
    let points: BTreeSet<&str> = failpoint::POINTS.iter().copied().collect();
    let tested: BTreeSet<&str> = TESTED.iter().copied().collect();
    assert_eq!(
        tested, points,
        "the points of point_tests! in tests/it/crash.rs are not failpoint::POINTS: add a line \
         for each new point (`scenarios` says how its run reaches it)"
    );
}

/// Every case of `point` on `shape`, one after the other.
fn cases(point: &str, shape: Shape) {
    let (flow, nths) = scenarios(point, shape);
    for nth in nths {
        case(point, shape, flow, nth);
    }
}

/// One kill -9 case: set up, run with `point:nth` armed, check where it died, converge.
fn case(point: &str, shape: Shape, flow: Flow, nth: u32) {
    let started = Instant::now();
    let fx = Fixture::new(shape, flow);
    let mut sets_launched = fx.min_ready;
    let mut extra_creates = 0;

    match flow {
        Flow::Fill | Flow::Floating | Flow::Burst => {}
        Flow::Delete => {
            fx.converge("before the delete");
            let victim = fx.rows().nodes[0].id;
            let out = fx.run(&["delete", &victim.to_string()], None);
            assert!(out.status.success(), "delete {victim}: {}", out.stderr);
            sets_launched += 1; // its replacement
        }
        Flow::Leak => {
            let db = fx.install.db();
            let installation = pass::installation(db.conn()).expect("installation id");
            let leaked = support::create_server(
                &fx.client(),
                "leaked-by-an-earlier-run",
                &[
                    ("nodepool_installation", &installation),
                    ("nodepool_provider_name", "p1"),
                    ("nodepool_node_id", "999999"),
                    ("nodepool_image_name", "jammy"),
                    ("nodepool_label_name", "small"),
                ],
            );
            // First seen ten minutes ago (past the grace), last seen on an earlier pass.
            let now = nodepool::clock::now();
            let p1 = ProviderName::from("p1");
            pass::sight_leak(db.conn(), &p1, &leaked, now - 600).expect("sight");
            pass::sight_leak(db.conn(), &p1, &leaked, now - 60).expect("sight again");
            extra_creates += 1;
        }
    }

    // The crashing run.
    let armed = format!("{point}:{nth}");
    let crashed = fx.run(&["--debug", "reconcile", "--duration", "30"], Some(&armed));
    assert_eq!(
        crashed.status.signal(),
        Some(9),
        "NODEPOOL_FAILPOINT={armed} did not kill the run with SIGKILL ({:?}): the {flow:?} \
         flow does not reach it; teach tests/it/crash.rs how to.\nstdout: {}\nstderr: {}",
        crashed.status,
        crashed.stdout,
        crashed.stderr
    );
    assert!(
        crashed
            .stderr
            .contains(&format!("failpoint {point}: killing")),
        "{}",
        crashed.stderr
    );
    let at_crash = fx.rows();
    let ready_log_at_crash = fx.ready_log();
    if flow == Flow::Burst {
        // Most creates were sent and none answered: they were in flight at the kill.
        let sent = fx.sim.calls().route(CREATE_ROUTE);
        let unanswered = at_crash
            .nodes
            .iter()
            .filter(|n| n.launch_phase == Some(LaunchPhase::Creating))
            .count();
        assert!(
            sent >= 5 && unanswered as u64 >= sent,
            "{armed}: {sent} creates sent, {unanswered} rows waiting for an answer\n{}",
            fx.describe()
        );
    }
    if let Err(why) = fx.crashed_where_expected(point, nth, &at_crash, &ready_log_at_crash) {
        panic!(
            "{armed}: the run did not die where expected: {why}\n{}\nstderr: {}",
            fx.describe(),
            crashed.stderr
        );
    }
    // Whatever /etc/nodepool the crashed run wrote goes, so the files found at the end were
    // written after the crash; except after a finished bootstrap, which the next run must
    // take as it is (its ready scripts' exit status is there).
    if point != "mid-ssh" {
        let _ = fs::remove_dir_all(fx.sshd.node_root.join("etc/nodepool"));
    }

    let runs = fx.converge(&format!("after {armed}"));

    // Nothing launched twice: one create call per server that was ever wanted.
    let members = 1 + shape.subnodes();
    let creates = fx.sim.calls().route(CREATE_ROUTE);
    assert_eq!(
        creates as usize,
        sets_launched * members + extra_creates,
        "{armed}: create calls (a server launched twice, or a node replaced instead of \
         resumed)\n{}",
        fx.describe()
    );

    let end = fx.rows();
    // Members the crash caught building with a server are resumed (adopted), not failed and
    // replaced; the rest of the set stays with them.
    let made = |key: &str, id: i64| {
        at_crash
            .servers
            .iter()
            .any(|s| s.meta(key) == Some(id.to_string()))
    };
    for node in &at_crash.nodes {
        let had_server = node.external_id.is_some() || made("nodepool_node_id", node.id.0);
        if node.state == NodeState::Building && had_server {
            assert!(
                end.nodes.iter().any(|n| n.id == node.id),
                "{armed}: node {} was building with a server at the crash and was not \
                 resumed\n{}",
                node.id,
                fx.describe()
            );
        }
    }
    for sub in &at_crash.subnodes {
        let had_server = sub.external_id.is_some() || made("nodepool_subnode_id", sub.id.0);
        if sub.state == NodeState::Building && had_server {
            assert!(
                end.subnodes.iter().any(|s| s.id == sub.id),
                "{armed}: subnode {} was building with a server at the crash and was not \
                 resumed\n{}",
                sub.id,
                fx.describe()
            );
        }
    }

    match point {
        "mid-ssh" => {
            // The crash came after the set's ready scripts had finished: the next run finds
            // their exit status on the nodes and makes the set ready without running them
            // again.
            let log = fx.ready_log();
            for hostname in at_crash.nodes.iter().map(|n| &n.hostname) {
                assert_eq!(
                    count(&log, hostname),
                    count(&ready_log_at_crash, hostname),
                    "{armed}: {hostname}'s ready script ran again after the crash\n{}",
                    fx.describe()
                );
            }
        }
        "after-keyscan" => {
            // The bootstrap was redone for the set the crash interrupted: its ready script
            // ran after the crash.
            let log = fx.ready_log();
            let building = at_crash
                .nodes
                .iter()
                .filter(|n| n.state == NodeState::Building)
                .map(|n| &n.hostname)
                .chain(
                    at_crash
                        .subnodes
                        .iter()
                        .filter(|s| s.state == NodeState::Building)
                        .map(|s| &s.hostname),
                );
            for hostname in building {
                let before = count(&ready_log_at_crash, hostname);
                let after = count(&log, hostname);
                assert!(
                    after > before,
                    "{armed}: {hostname} was not bootstrapped after the crash (its ready \
                     script ran {before} times before, {after} after)\n{}",
                    fx.describe()
                );
            }
        }
        "after-delete-call" => {
            let victim = at_crash
                .nodes
                .iter()
                .find(|n| n.state == NodeState::Delete)
                .expect("the deleted node");
            assert!(
                end.nodes.iter().all(|n| n.id != victim.id),
                "{armed}: the deleted node's row is still there\n{}",
                fx.describe()
            );
        }
        "after-leak-delete" => {
            assert!(
                end.leaks.is_empty(),
                "{armed}: leak sightings left: {:?}",
                end.leaks
            );
        }
        _ => {}
    }
    eprintln!(
        "{shape:?} {armed}: converged in {runs} run(s); case {:.1?}",
        started.elapsed()
    );
}

fn count(log: &str, hostname: &str) -> usize {
    log.lines().filter(|l| l.trim() == hostname).count()
}

/// One case's world: a simulator, an sshd, an installation whose config points at both.
struct Fixture {
    shape: Shape,
    /// The label's min-ready.
    min_ready: usize,
    /// Creates go out in parallel (the burst flow); otherwise one call at a time.
    parallel: bool,
    /// Members reach their nodes through floating IPs.
    floating: bool,
    sim: Simulator,
    sshd: Sshd,
    install: Install,
    runs: AtomicU32,
    /// Kept listening for the case's life (floating IPs only).
    _proxies: Vec<Proxy>,
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Fixture {
    fn new(shape: Shape, flow: Flow) -> Fixture {
        let floating = flow == Flow::Floating;
        let min_ready = if flow == Flow::Burst {
            BURST
        } else {
            MIN_READY
        };
        let route_latency = if flow == Flow::Burst {
            [(CREATE_ROUTE.to_string(), BURST_CREATE)].into()
        } else {
            BTreeMap::new()
        };
        let sim = Simulator::start(Knobs {
            route_latency,
            boot_delay: Duration::from_millis(200),
            // A slow delete: a server stays listed (DELETED) a little while after the call.
            delete_delay: Duration::from_millis(300),
            // Without a public address nodepool attaches a floating IP (127.0.2.x).
            server_ip: if floating { "10.0.0.5" } else { "127.0.0.1" }.into(),
            ..Knobs::default()
        })
        .expect("simulator");
        let sshd = Sshd::start();
        serialize_sessions(&sshd);
        let proxies = if floating {
            (2..2 + FLOATING_PROXIES)
                .filter_map(|last| Proxy::start([127, 0, 2, last], sshd.port))
                .collect()
        } else {
            Vec::new()
        };
        let install = Install::with_config("");
        let scripts = install.dir.path().join("scripts");
        fs::create_dir_all(&scripts).expect("script dir");
        let ready = scripts.join("ready.sh");
        fs::write(
            &ready,
            "#!/bin/sh\necho \"$1\" >> \"$NODEPOOL_NODE_ROOT/ready.log\"\n",
        )
        .expect("ready script");
        fs::set_permissions(&ready, fs::Permissions::from_mode(0o755)).expect("chmod");
        let config = format!(
            "dburi: state/nodepool.db
script-dir: {scripts}
labels:
  - name: small
    image: jammy
    min-ready: {min_ready}
    subnodes: {subnodes}
    ready-script: ready.sh
    providers:
      - name: p1
providers:
  - name: p1
    auth-url: {auth}
    username: demo
    password: secret
    project-id: demo
    max-servers: 10
    rate: 0
{concurrency}{pool}    images:
      - name: jammy
        base-image: 'Ubuntu 22.04'
        min-ram: 512
        username: {user}
        private-key: {key}
        connection-port: {port}
targets:
  - name: jenkins
",
            scripts = scripts.display(),
            subnodes = shape.subnodes(),
            auth = sim.auth_url_v3(),
            pool = if floating { "    pool: public\n" } else { "" },
            // One call at a time, so each point's hits come in the order the scenario
            // counts; the burst flow has its creates in flight together.
            concurrency = if flow == Flow::Burst {
                ""
            } else {
                "    max-concurrency: 1\n"
            },
            user = sshd.user,
            key = sshd.private_key.display(),
            port = sshd.port,
        );
        fs::write(&install.config, config).expect("config");
        Fixture {
            shape,
            min_ready,
            parallel: flow == Flow::Burst,
            floating,
            sim,
            sshd,
            install,
            runs: AtomicU32::new(0),
            _proxies: proxies,
        }
    }

    fn client(&self) -> OpenStack {
        OpenStack::connect(&client_settings(&self.sim, "setup"), CallCounter::default())
            .expect("connect to the simulator")
    }

    /// Run `nodepool -c CONFIG ARGS…`, with the failpoint armed or not, bounded in time.
    fn run(&self, args: &[&str], failpoint: Option<&str>) -> Run {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        let out_path = self.install.dir.path().join(format!("run-{n}.out"));
        let err_path = self.install.dir.path().join(format!("run-{n}.err"));
        let mut command = Command::new(support::BIN);
        command
            .arg("-c")
            .arg(&self.install.config)
            .args(args)
            .env_remove("NODEPOOL_CONFIG")
            .env_remove("RUST_LOG")
            .env_remove(failpoint::ENV)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).expect("stdout file"))
            .stderr(fs::File::create(&err_path).expect("stderr file"));
        if let Some(point) = failpoint {
            command.env(failpoint::ENV, point);
        }
        let mut child = command.spawn().expect("run nodepool");
        let deadline = Instant::now() + RUN_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for nodepool") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "nodepool {args:?} still running after {RUN_TIMEOUT:?}; stderr:\n{}",
                    fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            status,
            stdout: fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        }
    }

    /// Reconcile without the failpoint until the pool is converged, at most CONVERGE_RUNS
    /// runs; returns how many it took. No run may count a failed launch.
    fn converge(&self, when: &str) -> usize {
        let mut history = String::new();
        // Creates whose answer the kill lost and that made no server, given up (and counted)
        // once their grace is over: the next run may count that many failures.
        let mut given_up = 0;
        for n in 1..=CONVERGE_RUNS {
            let out = self.run(
                &[
                    "--debug",
                    "--format",
                    "json",
                    "reconcile",
                    "--duration",
                    "30",
                ],
                None,
            );
            assert!(
                out.status.success(),
                "{when}: reconcile run {n} failed ({:?}): {}",
                out.status,
                out.stderr
            );
            let summary: serde_json::Value = serde_json::from_str(&out.stdout)
                .unwrap_or_else(|e| panic!("{when}: summary {e}: {}", out.stdout));
            assert!(
                summary["failed"].as_u64() <= Some(given_up),
                "{when}: run {n} counted failures: {summary}\n{}\n{}",
                out.stderr,
                self.describe()
            );
            history.push_str(&format!("run {n}: {summary}\n"));
            given_up = self.pass_the_create_grace();
            match self.converged() {
                Ok(()) => return n,
                Err(why) if n == CONVERGE_RUNS => panic!(
                    "{when}: not converged after {n} runs: {why}\n{history}{}\nlast stderr:\n{}",
                    self.describe(),
                    out.stderr
                ),
                Err(_) => {}
            }
        }
        unreachable!()
    }

    /// Parallel creates (the burst flow): a create the kill caught between its intent's
    /// "creating" and the request reaching the cloud made nothing, and its row waits out the
    /// grace for an answer (two minutes, longer than these runs). Let that time pass, as the
    /// next timer run would see it; returns how many rows it aged.
    fn pass_the_create_grace(&self) -> u64 {
        if !self.parallel {
            return 0;
        }
        let age = nodepool::plan::policy::CREATE_ANSWER_GRACE_S + 1;
        let db = self.install.db();
        let mut aged = 0;
        for table in ["node", "subnode"] {
            aged += db
                .conn()
                .execute(
                    &format!(
                        "UPDATE {table} SET phase_time = phase_time - ?1 \
                         WHERE launch_phase = 'creating' AND external_id IS NULL"
                    ),
                    [age],
                )
                .expect("age the unanswered creates");
        }
        aged as u64
    }

    /// Rows, leak sightings and the cloud's servers (this installation's), now.
    fn rows(&self) -> Rows {
        let db = self.install.db();
        let installation = pass::installation(db.conn()).expect("installation id");
        let dump = self.sim.dump();
        let servers = dump
            .servers
            .iter()
            .filter(|s| s.metadata.get("nodepool_installation") == Some(&installation))
            .map(|s| Srv {
                id: s.id.clone(),
                status: s.status.clone(),
                metadata: s.metadata.clone(),
            })
            .collect();
        let leaks = db
            .conn()
            .prepare("SELECT server_id FROM leak")
            .and_then(|mut stmt| {
                stmt.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("leak rows");
        let nodes = nodes::list(db.conn()).expect("nodes");
        let subnodes = subnodes::list(db.conn()).expect("subnodes");
        let members = (nodes.iter().map(|n| Member::primary(n.id)))
            .chain(subnodes.iter().map(|s| s.member()));
        let keyed = members
            .filter(|m| {
                nodes::host_keys(db.conn(), *m)
                    .expect("host keys")
                    .is_some()
            })
            .collect();
        Rows {
            nodes,
            subnodes,
            keyed,
            servers,
            leaks,
            dump,
        }
    }

    fn ready_log(&self) -> String {
        fs::read_to_string(self.sshd.node_root.join("ready.log")).unwrap_or_default()
    }

    /// The state of everything, for failure messages.
    fn describe(&self) -> String {
        let rows = self.rows();
        let mut out = String::from("nodes:\n");
        for n in &rows.nodes {
            out.push_str(&format!(
                "  {} {} {:?} phase={:?} server={:?} ip={:?} error={:?}\n",
                n.id, n.hostname, n.state, n.launch_phase, n.external_id, n.ip, n.last_error
            ));
        }
        out.push_str("subnodes:\n");
        for s in &rows.subnodes {
            out.push_str(&format!(
                "  {} of {} {:?} phase={:?} server={:?} ip={:?} error={:?}\n",
                s.id, s.node_id, s.state, s.launch_phase, s.external_id, s.ip, s.last_error
            ));
        }
        out.push_str("servers:\n");
        for s in &rows.servers {
            out.push_str(&format!(
                "  {} {} node={:?} subnode={:?}\n",
                s.id,
                s.status,
                s.meta("nodepool_node_id"),
                s.meta("nodepool_subnode_id")
            ));
        }
        out.push_str(&format!("floating IPs: {:?}\n", rows.dump.floating_ips));
        out.push_str(&format!("leaks: {:?}\n", rows.leaks));
        out.push_str(&format!("ready.log:\n{}", self.ready_log()));
        out
    }

    /// Converged: no leak, no duplicate, min-ready ready sets, bootstrapped.
    fn converged(&self) -> Result<(), String> {
        let rows = self.rows();
        let wanted_subnodes = self.shape.subnodes();
        // Every server of ours belongs to exactly one row, and every row's server exists.
        let mut owners: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for n in &rows.nodes {
            if let Some(id) = &n.external_id {
                owners.entry(id).or_default().push(format!("node {}", n.id));
            }
        }
        for s in &rows.subnodes {
            if let Some(id) = &s.external_id {
                owners
                    .entry(id)
                    .or_default()
                    .push(format!("subnode {}", s.id));
            }
        }
        for (server, rows) in &owners {
            if rows.len() > 1 {
                return Err(format!("server {server} is recorded by {rows:?}"));
            }
        }
        for server in &rows.servers {
            if !owners.contains_key(server.id.as_str()) {
                return Err(format!("leaked server {} ({})", server.id, server.status));
            }
        }
        let live: BTreeSet<&str> = rows.servers.iter().map(|s| s.id.as_str()).collect();
        for server in owners.keys() {
            if !live.contains(server) {
                return Err(format!("a row records server {server}, which is gone"));
            }
        }
        // No two servers claim the same node or subnode.
        let mut claims: BTreeSet<(Option<String>, Option<String>)> = BTreeSet::new();
        for server in &rows.servers {
            let claim = (
                server.meta("nodepool_node_id"),
                server.meta("nodepool_subnode_id"),
            );
            if !claims.insert(claim.clone()) {
                return Err(format!("two servers claim {claim:?}"));
            }
        }
        // Min-ready sets, all ready, each with its subnodes.
        if rows.nodes.len() != self.min_ready {
            return Err(format!(
                "{} nodes, want {}",
                rows.nodes.len(),
                self.min_ready
            ));
        }
        for node in &rows.nodes {
            if node.state != NodeState::Ready {
                return Err(format!("node {} is {:?}", node.id, node.state));
            }
            let subs: Vec<_> = rows
                .subnodes
                .iter()
                .filter(|s| s.node_id == node.id)
                .collect();
            if subs.len() != wanted_subnodes {
                return Err(format!(
                    "node {} has {} subnodes, want {wanted_subnodes}",
                    node.id,
                    subs.len()
                ));
            }
            if let Some(sub) = subs.iter().find(|s| s.state != NodeState::Ready) {
                return Err(format!("subnode {} is {:?}", sub.id, sub.state));
            }
        }
        if rows.subnodes.len() != self.min_ready * wanted_subnodes {
            return Err(format!("orphan subnodes: {}", rows.subnodes.len()));
        }
        if rows.servers.len() != self.min_ready * (1 + wanted_subnodes) {
            return Err(format!("{} servers", rows.servers.len()));
        }
        // Every member got the ready script, and /etc/nodepool is there, for one of them.
        let log = self.ready_log();
        let hostnames = rows
            .nodes
            .iter()
            .map(|n| &n.hostname)
            .chain(rows.subnodes.iter().map(|s| &s.hostname));
        for hostname in hostnames {
            if count(&log, hostname) == 0 {
                return Err(format!("the ready script never ran on {hostname}"));
            }
        }
        let etc = self.sshd.node_root.join("etc/nodepool");
        for file in ETC_FILES {
            if !etc.join(file).is_file() {
                return Err(format!("{} is missing", etc.join(file).display()));
            }
        }
        let uuid = fs::read_to_string(etc.join("uuid")).unwrap_or_default();
        if !owners.contains_key(uuid.trim()) {
            return Err(format!("/etc/nodepool/uuid names {uuid:?}, no member"));
        }
        // Floating IPs: each on a live server, and that server's member uses it.
        for fip in &rows.dump.floating_ips {
            match &fip.instance_id {
                Some(server) if live.contains(server.as_str()) => {}
                other => return Err(format!("floating IP {} is on {other:?}", fip.ip)),
            }
        }
        if self.floating {
            let floating: BTreeSet<&str> = rows
                .dump
                .floating_ips
                .iter()
                .map(|f| f.ip.as_str())
                .collect();
            let ips = rows
                .nodes
                .iter()
                .map(|n| &n.ip)
                .chain(rows.subnodes.iter().map(|s| &s.ip));
            for ip in ips {
                if !ip.as_deref().is_some_and(|ip| floating.contains(ip)) {
                    return Err(format!("a member's address {ip:?} is no floating IP"));
                }
            }
        }
        if !rows.leaks.is_empty() {
            return Err(format!("leak sightings: {:?}", rows.leaks));
        }
        Ok(())
    }

    /// What the crash must have left, proving the run died at the point named.
    fn crashed_where_expected(
        &self,
        point: &str,
        nth: u32,
        rows: &Rows,
        log: &str,
    ) -> Result<(), String> {
        let recorded: BTreeSet<&str> = rows
            .nodes
            .iter()
            .filter_map(|n| n.external_id.as_deref())
            .chain(
                rows.subnodes
                    .iter()
                    .filter_map(|s| s.external_id.as_deref()),
            )
            .collect();
        let unrecorded = rows
            .servers
            .iter()
            .filter(|s| !recorded.contains(s.id.as_str()))
            .count();
        // Launch points: the third hit and later are subnode launches.
        let want_subnode = self.shape == Shape::Subnodes && nth >= 3;
        let ok = match point {
            // Creates go out in parallel: other threads' creates may have been answered (or
            // be on their way) when the process died.
            "after-intent" => {
                // A row with no server, and no server for it.
                let made = |node: i64, sub: Option<i64>| {
                    rows.servers.iter().any(|s| {
                        s.meta("nodepool_node_id") == Some(node.to_string())
                            && s.meta("nodepool_subnode_id") == sub.map(|id| id.to_string())
                    })
                };
                if want_subnode {
                    rows.subnodes
                        .iter()
                        .any(|s| s.external_id.is_none() && !made(s.node_id.0, Some(s.id.0)))
                } else {
                    rows.nodes
                        .iter()
                        .any(|n| n.external_id.is_none() && !made(n.id.0, None))
                }
            }
            "after-create" => {
                unrecorded >= 1
                    && rows
                        .servers
                        .iter()
                        .filter(|s| !recorded.contains(s.id.as_str()))
                        .any(|s| want_subnode == s.meta("nodepool_subnode_id").is_some())
            }
            "after-record" => {
                let recorded_server = |id: &Option<String>| {
                    id.as_ref()
                        .is_some_and(|id| rows.servers.iter().any(|s| &s.id == id))
                };
                if want_subnode {
                    rows.subnodes
                        .iter()
                        .any(|s| recorded_server(&s.external_id))
                } else {
                    rows.nodes.iter().any(|n| recorded_server(&n.external_id))
                }
            }
            // Allocated and recorded, not attached: the next run attaches that one.
            "after-floating-ip-allocate" => rows.dump.floating_ips.iter().any(|fip| {
                let id = Some(fip.id.clone());
                fip.instance_id.is_none()
                    && (rows
                        .nodes
                        .iter()
                        .any(|n| n.floating_ip_id == id && n.ip.is_none())
                        || rows
                            .subnodes
                            .iter()
                            .any(|s| s.floating_ip_id == id && s.ip.is_none()))
            }),
            "after-floating-ip" => rows.dump.floating_ips.iter().any(|fip| {
                let ip = Some(fip.ip.clone());
                fip.instance_id.is_some()
                    && rows.nodes.iter().all(|n| n.ip != ip)
                    && rows.subnodes.iter().all(|s| s.ip != ip)
            }),
            "after-keyscan" => rows
                .nodes
                .iter()
                .map(|n| (n.state, n.launch_phase, Member::primary(n.id)))
                .chain(
                    rows.subnodes
                        .iter()
                        .map(|s| (s.state, s.launch_phase, s.member())),
                )
                .any(|(state, phase, member)| {
                    state == NodeState::Building
                        && phase == Some(LaunchPhase::Reachable)
                        && rows.keyed.contains(&member)
                }),
            "mid-ssh" => rows
                .nodes
                .iter()
                .any(|n| n.state == NodeState::Building && count(log, &n.hostname) > 0),
            "after-delete-call" => rows.nodes.iter().any(|n| {
                n.state == NodeState::Delete
                    && n.launch_phase != Some(LaunchPhase::Deleting)
                    && self.deleting(rows, n.external_id.as_deref())
            }),
            "after-leak-delete" => {
                rows.leaks.len() == 1 && self.deleting(rows, Some(rows.leaks[0].as_str()))
            }
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "state after a crash at {point} is not what it leaves"
            ))
        }
    }

    /// The server is gone or on its way (DELETED).
    fn deleting(&self, rows: &Rows, id: Option<&str>) -> bool {
        let Some(id) = id else { return false };
        rows.dump
            .servers
            .iter()
            .find(|s| s.id == id)
            .is_none_or(|s| s.status == "DELETED")
    }
}

/// One sshd stands for every node of a case, so the bootstraps of different nodes (done in
/// parallel, as for separate machines) would all write the same `etc/nodepool` under one
/// node root, racing on its temporary files. The user's key gets a forced command that runs
/// each session's command under one lock: sessions on this "machine" take turns.
fn serialize_sessions(sshd: &Sshd) {
    let dir = sshd.dir.path();
    let wrapper = dir.join("serial.sh");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec flock {lock} /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
            lock = dir.join("sessions.lock").display()
        ),
    )
    .expect("session wrapper");
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");
    let keys = dir.join("authorized_keys");
    let key = fs::read_to_string(&keys).expect("authorized_keys");
    fs::write(&keys, format!("command=\"{}\" {key}", wrapper.display())).expect("authorized_keys");
}

struct Rows {
    nodes: Vec<Node>,
    subnodes: Vec<Subnode>,
    /// The members whose host keys are recorded.
    keyed: Vec<Member>,
    /// The cloud's servers that carry this installation's metadata.
    servers: Vec<Srv>,
    leaks: Vec<String>,
    dump: Dump,
}

struct Srv {
    id: String,
    status: String,
    metadata: BTreeMap<String, String>,
}

impl Srv {
    fn meta(&self, key: &str) -> Option<String> {
        self.metadata.get(key).cloned()
    }
}

/// A TCP forwarder from a floating address (127.0.2.x, which sshd does not listen on) to
/// sshd on 127.0.0.1; it stops listening when dropped.
struct Proxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(ip: [u8; 4], port: u16) -> Option<Proxy> {
        let addr = SocketAddr::from((ip, port));
        let listener = TcpListener::bind(addr).ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(client) = client {
                    std::thread::spawn(move || forward(client, port));
                }
            }
        });
        Some(Proxy { addr, stop })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread so it sees the flag and closes the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Copy bytes both ways between a proxied client and sshd until both sides close.
fn forward(client: TcpStream, port: u16) {
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let pump = |mut from: TcpStream, mut to: TcpStream| {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    };
    let up = std::thread::spawn(move || pump(client, upstream));
    pump(upstream2, client2);
    let _ = up.join();
}
