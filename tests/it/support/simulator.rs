//! nodepool's side of the OpenStack simulator (the `nodepool-simulator` crate, which knows
//! nothing of nodepool): client settings that log into one, and where its binary is.
//! The benchmarks include this file too (`#[path]`).

use std::path::PathBuf;
use std::time::Duration;

use nodepool::cloud::openstack::auth::Credentials;
use nodepool::cloud::openstack::http::{RetryPolicy, Timeouts};
use nodepool::cloud::openstack::Settings;
use nodepool::model::Secret;
use nodepool_simulator::Simulator;

/// Client settings that log into `sim` through Keystone v3 as its knobs' user, with short
/// retry waits.
pub fn client_settings(sim: &Simulator, provider: &str) -> Settings {
    let knobs = sim.knobs();
    Settings {
        provider: provider.to_string(),
        credentials: Credentials {
            auth_url: sim.auth_url_v3(),
            username: knobs.username,
            password: Secret(knobs.password),
            project_name: Some(knobs.project),
            interface: "public".into(),
            ..Default::default()
        },
        service_type: None,
        service_name: None,
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            call: Duration::from_secs(5),
            upload: Duration::from_secs(60),
        },
        retry: RetryPolicy {
            attempts: 3,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(3),
        },
        rate: Duration::ZERO,
        listing_timeout: Duration::from_secs(30),
        max_concurrency: None,
        stored_session: None,
        public_networks: Vec::new(),
    }
}

/// The `nodepool-simulator` binary, for the few callers that need the simulator as a process
/// of its own (the quickstart script; benchmarks that measure nodepool alone); everything else
/// starts it in-process with [`Simulator::start`].
///
/// `CARGO_BIN_EXE_*` names only this package's binaries, so the simulator's is looked for
/// where cargo puts it: beside `nodepool`, in the same profile's directory. Building or testing
/// the workspace builds it (`cargo nextest run --workspace`, `cargo build --workspace`), and so
/// does `cargo build -p nodepool-simulator` (with `--release` for benchmarks).
pub fn simulator_bin() -> PathBuf {
    let nodepool = PathBuf::from(env!("CARGO_BIN_EXE_nodepool"));
    let bin = nodepool.with_file_name(format!(
        "nodepool-simulator{}",
        std::env::consts::EXE_SUFFIX
    ));
    assert!(
        bin.is_file(),
        "{} is missing: the simulator is a crate of its own; build it in this profile with \
         `cargo build -p nodepool-simulator` (add --release for benchmarks), or test the whole \
         workspace (`cargo nextest run --workspace`)",
        bin.display()
    );
    bin
}
