//! Shared by the integration tests: a temporary installation (config + database) and a way
//! to run the real binary against it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nodepool::cloud::{Cloud, CreateServer};
use nodepool::model::{NodeId, NodeState, ProviderName};
use nodepool::state::nodes::{self, NewNode};
use nodepool::state::Db;

pub const BIN: &str = env!("CARGO_BIN_EXE_nodepool");

/// A config with two labels on two providers, its database beside it.
pub const CONFIG: &str = "\
dburi: state/nodepool.db
labels:
  - name: small
    image: trusty
    min-ready: 3
    providers:
      - name: p1
      - name: p2
  - name: large
    image: trusty
    min-ready: 1
    providers:
      - name: p1
providers:
  - name: p1
    cloud: one
    max-servers: 10
    images:
      - name: trusty
        base-image: Ubuntu 14.04
        min-ram: 2048
  - name: p2
    cloud: two
    max-servers: 5
    images:
      - name: trusty
        base-image: Ubuntu 14.04
        min-ram: 2048
targets:
  - name: jenkins
";

pub struct Install {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Install {
    pub fn new() -> Install {
        Install::with_config(CONFIG)
    }

    pub fn with_config(text: &str) -> Install {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("nodepool.yaml");
        std::fs::write(&config, text).expect("write config");
        Install { dir, config }
    }

    pub fn database(&self) -> PathBuf {
        self.dir.path().join("state/nodepool.db")
    }

    pub fn db(&self) -> Db {
        Db::open(&self.database()).expect("open db")
    }

    /// Run `nodepool -c CONFIG ARGS…`.
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_config(&self.config, args)
    }

    /// Insert a node as a launch would have left it, `age_s` seconds in its state.
    pub fn seed_node(
        &self,
        db: &Db,
        label: &str,
        provider: &str,
        state: NodeState,
        age_s: i64,
    ) -> NodeId {
        let now = nodepool::clock::now();
        let (id, _) = nodes::insert(
            db.conn(),
            &NewNode {
                provider: ProviderName::from(provider),
                label: label.into(),
                target: "jenkins".into(),
                state,
                az: Some("nova".into()),
                launch_phase: None,
                image_external_id: None,
            },
            now - age_s,
            |id| format!("{label}-{provider}-{id}"),
        )
        .expect("insert node");
        db.conn()
            .execute(
                "UPDATE node SET hostname = ?2, nodename = ?2, external_id = ?3, ip = ?4, ip_private = ?5 WHERE id = ?1",
                rusqlite::params![
                    id,
                    format!("{label}-{provider}-{id}"),
                    format!("server-{id}"),
                    format!("203.0.113.{}", id.0 % 250),
                    format!("10.0.0.{}", id.0 % 250)
                ],
            )
            .expect("update node");
        id
    }
}

pub fn run_with_config(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("NODEPOOL_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run nodepool")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn status(output: &Output) -> i32 {
    output.status.code().expect("exited with a status")
}

/// Create a server on a simulator cloud from its "Ubuntu 22.04" image and first flavor, with
/// `metadata`; returns its id.
pub fn create_server(cloud: &dyn Cloud, name: &str, metadata: &[(&str, &str)]) -> String {
    let flavor = cloud
        .list_flavors()
        .expect("flavors")
        .into_iter()
        .next()
        .expect("a flavor")
        .id;
    let image = cloud
        .list_images()
        .expect("images")
        .into_iter()
        .find(|i| i.name == "Ubuntu 22.04")
        .expect("the simulator's Ubuntu 22.04 image")
        .id;
    let metadata = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    cloud
        .create_server(&CreateServer {
            name: name.into(),
            image_id: image,
            flavor_id: flavor,
            metadata,
            ..Default::default()
        })
        .expect("create server")
}

pub mod pool;
pub mod simulator;
pub mod sshd;
