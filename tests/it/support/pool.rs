//! A whole installation for reconcile tests: an in-process simulator cloud, optionally a real
//! sshd on loopback standing in for every server (the simulator gives all servers
//! 127.0.0.1), a script-dir with a ready script, and a config pointing at both. Helpers run
//! the real `nodepool` binary against it and read its database and the simulated cloud.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use nodepool::cloud::openstack::http::CallCounter;
use nodepool::cloud::openstack::OpenStack;
use nodepool::state::Db;
use nodepool_simulator::{DumpServer, Knobs, Simulator};
use serde_json::Value;

use super::simulator::client_settings;
use super::sshd::Sshd;
use super::{stderr, stdout, BIN};

/// The provider's name in every pool config.
pub const PROVIDER: &str = "sim";
/// Set in the environment of every `nodepool` run; the ready script writes it out, which
/// proves `NODEPOOL_*` variables reach it.
pub const MARK: &str = "mark-7f3a";
/// The ready script: one line per run, "HOSTNAME MARK", into `$NODEPOOL_NODE_ROOT/ready-ran`.
const READY_SH: &str =
    "#!/bin/sh\nset -eu\necho \"$1 $NODEPOOL_TEST_MARK\" >> \"$NODEPOOL_NODE_ROOT/ready-ran\"\n";

/// One label of the config: image `ubuntu`, on the one provider.
#[derive(Debug, Clone)]
pub struct Label {
    pub name: String,
    pub min_ready: i64,
    pub subnodes: u32,
}

impl Label {
    pub fn new(name: &str, min_ready: i64) -> Label {
        Label {
            name: name.into(),
            min_ready,
            subnodes: 0,
        }
    }

    pub fn subnodes(mut self, subnodes: u32) -> Label {
        self.subnodes = subnodes;
        self
    }
}

/// How a pool is set up; `Options::default()` is one label `small` with min-ready 2 and no
/// sshd (so `host-key-checking: false`: nodes are ready when ACTIVE with an address).
#[derive(Debug, Clone)]
pub struct Options {
    pub knobs: Knobs,
    /// Start a real sshd and bootstrap nodes over SSH (host-key-checking on).
    pub sshd: bool,
    /// Host-key checking on even without sshd (SSH then goes to `connection_port`).
    pub ssh_without_sshd: bool,
    /// The image's `connection-port` when there is no sshd (or to override it).
    pub connection_port: Option<u16>,
    pub labels: Vec<Label>,
    pub max_servers: u32,
    pub boot_timeout: u32,
    /// More keys of the image `ubuntu` (each line indented by 8), e.g. `setup: prepare.sh`.
    pub image_extra: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            knobs: Knobs {
                boot_delay: Duration::from_millis(200),
                server_ip: "127.0.0.1".into(),
                ..Knobs::default()
            },
            sshd: false,
            ssh_without_sshd: false,
            connection_port: None,
            labels: vec![Label::new("small", 2)],
            max_servers: 10,
            boot_timeout: 30,
            image_extra: String::new(),
        }
    }
}

pub struct Pool {
    pub sim: Simulator,
    pub sshd: Option<Sshd>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub options: Options,
}

impl Pool {
    pub fn start(options: Options) -> Pool {
        let sshd = options.sshd.then(Sshd::start);
        let mut knobs = options.knobs.clone();
        // Servers booted with a keypair let its key in, as cloud-init does.
        knobs.authorized_keys = sshd.as_ref().map(|s| s.dir.path().join("authorized_keys"));
        let sim = Simulator::start(knobs).expect("start the simulator");
        let dir = tempfile::tempdir().expect("tempdir");
        let scripts = dir.path().join("scripts");
        fs::create_dir_all(&scripts).expect("script-dir");
        let ready = scripts.join("ready.sh");
        fs::write(&ready, READY_SH).expect("ready.sh");
        fs::set_permissions(&ready, fs::Permissions::from_mode(0o755)).expect("chmod ready.sh");
        let config = dir.path().join("nodepool.yaml");
        let pool = Pool {
            sim,
            sshd,
            dir,
            config,
            options,
        };
        pool.write_config(&pool.options.labels.clone());
        pool
    }

    /// (Re)write the config with these labels; everything else as the options say.
    pub fn write_config(&self, labels: &[Label]) {
        let o = &self.options;
        let ssh = self.sshd.is_some() || o.ssh_without_sshd;
        let (user, key, port) = match &self.sshd {
            Some(sshd) => (
                sshd.user.clone(),
                sshd.private_key.clone(),
                o.connection_port.unwrap_or(sshd.port),
            ),
            // No key file: nodepool keeps no keypair for the image.
            None => (
                "nobody".to_string(),
                self.dir.path().join("no-such-key"),
                o.connection_port.unwrap_or(22),
            ),
        };
        let mut text = format!(
            "dburi: state/nodepool.db\nscript-dir: {}\nlabels:\n",
            self.dir.path().join("scripts").display()
        );
        for label in labels {
            text.push_str(&format!(
                "  - name: {}\n    image: ubuntu\n    min-ready: {}\n    subnodes: {}\n",
                label.name, label.min_ready, label.subnodes
            ));
            if ssh {
                text.push_str("    ready-script: ready.sh\n");
            }
            text.push_str(&format!("    providers:\n      - name: {PROVIDER}\n"));
        }
        if labels.is_empty() {
            text.push_str("  []\n");
        }
        text.push_str(&format!(
            "providers:\n  - name: {PROVIDER}\n    auth-url: {auth}\n    username: demo\n    \
             password: secret\n    project-id: demo\n    max-servers: {max}\n    rate: 0\n    \
             boot-timeout: {boot}\n    host-key-checking: {ssh}\n    images:\n      \
             - name: ubuntu\n        base-image: 'Ubuntu 22.04'\n        min-ram: 512\n        \
             username: {user}\n        private-key: {key}\n        connection-port: {port}\n\
             {extra}targets:\n  - name: jenkins\n",
            extra = o.image_extra,
            auth = self.sim.auth_url_v3(),
            max = o.max_servers,
            boot = o.boot_timeout,
            key = key.display(),
        ));
        fs::write(&self.config, text).expect("write config");
    }

    pub fn database(&self) -> PathBuf {
        self.dir.path().join("state/nodepool.db")
    }

    /// The database, opened as nodepool opens it (created and migrated on first use).
    pub fn db(&self) -> Db {
        Db::open(&self.database()).expect("open db")
    }

    /// Run `nodepool -c CONFIG ARGS…` with `NODEPOOL_TEST_MARK` set.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env_remove("NODEPOOL_CONFIG")
            .env_remove("RUST_LOG")
            .env_remove("NODEPOOL_NODE_ROOT")
            .env("NODEPOOL_TEST_MARK", MARK)
            .output()
            .expect("run nodepool")
    }

    /// Run and insist on exit status 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "nodepool {args:?} failed\nstdout:\n{}\nstderr:\n{}{}",
            stdout(&out),
            stderr(&out),
            self.sshd_log()
        );
        stdout(&out)
    }

    /// `nodepool reconcile --duration SECONDS ARGS…`; returns the summary line.
    pub fn reconcile(&self, duration: u32, args: &[&str]) -> String {
        let duration = duration.to_string();
        let mut all = vec!["reconcile", "--duration", &duration];
        all.extend_from_slice(args);
        self.ok(&all)
    }

    /// `nodepool list --format json`.
    pub fn list_json(&self) -> Value {
        serde_json::from_str(&self.ok(&["--format", "json", "list"])).expect("list JSON")
    }

    /// Nodes from `list --format json`, as (id, label, state).
    pub fn nodes(&self) -> Vec<(i64, String, String)> {
        self.list_json()
            .as_array()
            .expect("list is an array")
            .iter()
            .map(|n| {
                (
                    n["id"].as_i64().expect("id"),
                    n["label"].as_str().expect("label").to_string(),
                    n["state"].as_str().expect("state").to_string(),
                )
            })
            .collect()
    }

    /// How many nodes of `label` are in `state`.
    pub fn count(&self, label: &str, state: &str) -> usize {
        self.nodes()
            .iter()
            .filter(|(_, l, s)| l == label && s == state)
            .count()
    }

    /// The simulated cloud's servers (deleted ones are gone once the delete delay passed).
    pub fn servers(&self) -> Vec<DumpServer> {
        self.sim.dump().servers
    }

    /// A client of the simulated cloud, for changes behind nodepool's back.
    pub fn client(&self) -> OpenStack {
        OpenStack::connect(&client_settings(&self.sim, "test"), CallCounter::default())
            .expect("connect to the simulator")
    }

    /// One integer from the database.
    pub fn scalar(&self, sql: &str) -> i64 {
        self.db()
            .conn()
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn installation(&self) -> String {
        self.db()
            .conn()
            .query_row("SELECT id FROM installation", [], |r| r.get(0))
            .expect("installation id")
    }

    /// Where the sshd's sessions write (`$NODEPOOL_NODE_ROOT`).
    pub fn node_root(&self) -> &Path {
        &self.sshd.as_ref().expect("a pool with sshd").node_root
    }

    fn sshd_log(&self) -> String {
        match &self.sshd {
            Some(sshd) => format!("\nsshd log:\n{}", sshd.log()),
            None => String::new(),
        }
    }
}
