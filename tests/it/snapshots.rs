//! Snapshot images (`setup` and no `diskimage`) against the simulator and a real sshd standing
//! in for the template server: `image-update` boots the base image with a keypair it
//! generates (the simulator hands its key to sshd, as cloud-init would), copies script-dir,
//! runs the setup script, snapshots, and deletes the template; `reconcile` then launches
//! from the snapshot.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nodepool_simulator::Dump;
use serde_json::Value;

use crate::support::pool::{Options, Pool, MARK, PROVIDER};
use crate::support::{status, stderr, stdout};

/// The setup script: records its argument and the mark (so `NODEPOOL_*` reached it), where it
/// ran and the mode of /etc/nodepool, and prints a line for the log. `SETUP_FAIL` in the
/// node root makes it fail.
const SETUP_SH: &str = r#"#!/bin/sh
set -eu
r="$NODEPOOL_NODE_ROOT"
echo "$1 $NODEPOOL_TEST_MARK" >> "$r/setup-ran"
pwd > "$r/setup-cwd"
stat -c %a "$r/etc/nodepool" > "$r/setup-etc-mode"
echo "setup: installing the world"
if [ -e "$r/SETUP_FAIL" ]; then
    echo "setup: the world would not install" >&2
    exit 4
fi
"#;

pub(crate) fn snapshot_pool(min_ready: i64) -> Pool {
    let mut options = Options {
        sshd: true,
        image_extra: "        setup: prepare.sh\n".into(),
        ..Options::default()
    };
    options.labels[0].min_ready = min_ready;
    let pool = Pool::start(options);
    let setup = pool.dir.path().join("scripts/prepare.sh");
    fs::write(&setup, SETUP_SH).unwrap();
    fs::set_permissions(&setup, fs::Permissions::from_mode(0o755)).unwrap();
    pool
}

fn image_list(pool: &Pool) -> Vec<Value> {
    let out = pool.ok(&["--format", "json", "image-list"]);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The simulator's snapshots that carry nodepool's properties.
pub(crate) fn our_snapshots(dump: &Dump) -> Vec<&nodepool_simulator::DumpImage> {
    dump.images
        .iter()
        .filter(|i| i.properties.contains_key("nodepool_snapshot_image_id"))
        .collect()
}

pub(crate) fn templates(dump: &Dump) -> usize {
    dump.servers
        .iter()
        .filter(|s| s.metadata.contains_key("nodepool_snapshot_image_id"))
        .count()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn image_update_snapshots_a_setup_image_and_reconcile_launches_from_it() {
    let pool = snapshot_pool(1);
    let out = pool.ok(&["image-update", PROVIDER, "ubuntu"]);
    assert!(out.contains("ready as snapshot"), "{out}");

    // The setup script ran once, as the template's hostname, in /opt/nodepool-scripts, with
    // /etc/nodepool writable by all and NODEPOOL_* set.
    let root = pool.node_root();
    let ran = read(&root.join("setup-ran"));
    assert_eq!(ran.lines().count(), 1, "{ran}");
    let (hostname, mark) = ran.trim().split_once(' ').unwrap();
    assert!(
        hostname.starts_with("ubuntu-") && hostname.ends_with(".template.openstack.org"),
        "{hostname}"
    );
    assert_eq!(mark, MARK);
    assert!(read(&root.join("setup-cwd"))
        .trim()
        .ends_with("opt/nodepool-scripts"));
    assert_eq!(read(&root.join("setup-etc-mode")).trim(), "777");
    // What the setup step kept on the server is not in the image.
    assert!(!root.join("etc/nodepool/ready.d").exists());

    let images = image_list(&pool);
    assert_eq!(images.len(), 1, "{images:?}");
    let image = &images[0];
    assert_eq!(image["state"], "ready");
    assert_eq!(image["hostname"], hostname);
    let snapshot_id = image["image_id"].as_str().unwrap().to_string();

    // In the cloud: the snapshot, active, with nodepool's properties; no template server,
    // no generated keypair.
    let dump = pool.sim.dump();
    let snapshots = our_snapshots(&dump);
    assert_eq!(snapshots.len(), 1, "{dump:#?}");
    assert_eq!(snapshots[0].id, snapshot_id);
    assert_eq!(snapshots[0].status, "active");
    assert_eq!(snapshots[0].properties["nodepool_provider_name"], PROVIDER);
    assert_eq!(
        snapshots[0].properties["nodepool_installation"],
        pool.installation().as_str()
    );
    assert_eq!(templates(&dump), 0, "{:#?}", dump.servers);
    assert!(
        !dump.keypairs.iter().any(|k| k.contains("-template-")),
        "{:?}",
        dump.keypairs
    );

    // The setup's output is in the snapshot's log.
    let logs: Vec<_> = fs::read_dir(pool.dir.path().join("state/build-logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(read(&logs[0]).contains("setup: installing the world"));

    // A second update with nothing missing changes nothing.
    let out = pool.ok(&["image-update", "--missing"]);
    assert!(out.contains("nothing is missing"), "{out}");
    assert_eq!(image_list(&pool).len(), 1);

    // Nodes boot from the snapshot.
    pool.reconcile(60, &[]);
    assert_eq!(pool.count("small", "ready"), 1, "{:?}", pool.nodes());
    let booted: Vec<_> = pool
        .servers()
        .into_iter()
        .filter(|s| s.metadata.contains_key("nodepool_node_id"))
        .map(|s| s.image_id)
        .collect();
    assert_eq!(booted, std::slice::from_ref(&snapshot_id));
    // status says which image the label launches from.
    let status: Value = serde_json::from_str(&pool.ok(&["--format", "json", "status"])).unwrap();
    let from = &status[0]["image"];
    assert_eq!(from["kind"], "snapshot", "{status:#}");
    assert_eq!(from["version"], image["version"], "{status:#}");
    assert_eq!(from["image_id"], snapshot_id.as_str(), "{status:#}");
    let table = pool.ok(&["status"]);
    let version = image["version"].as_i64().unwrap();
    assert!(
        table.contains(&format!("ubuntu v{version} (0.0 h)")),
        "{table}"
    );
}

#[test]
fn a_failing_setup_script_removes_the_attempt_and_status_names_its_log() {
    let pool = snapshot_pool(1);
    fs::write(pool.node_root().join("SETUP_FAIL"), "").unwrap();
    let out = pool.run(&["image-update", PROVIDER, "ubuntu"]);
    assert_eq!(status(&out), 1, "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("exited with status 4"), "{err}");
    assert!(err.contains("the world would not install"), "{err}");
    assert!(err.contains("build-logs/"), "{err}");

    assert!(image_list(&pool).is_empty());
    let dump = pool.sim.dump();
    assert_eq!(templates(&dump), 0, "{:#?}", dump.servers);
    assert!(our_snapshots(&dump).is_empty());
    assert!(!dump.keypairs.iter().any(|k| k.contains("-template-")));

    pool.reconcile(0, &[]);
    let status_out = pool.ok(&["status"]);
    assert!(status_out.contains("last build failed"), "{status_out}");
    assert!(status_out.contains("build-logs/"), "{status_out}");
}
