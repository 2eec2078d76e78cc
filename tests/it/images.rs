//! Images nodepool builds: `image-build` with a builder stand-in (`dib-cmd`) that makes a real
//! qcow2 with `qemu-img`, fails, or hangs with a child of its own.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use nodepool_simulator::{Knobs, Simulator};

use crate::support::{status, stderr, stdout, Install};

/// The builder stand-in: records its arguments and environment, then does what
/// `FAKE_DIB_MODE` (a diskimage env-var) says: `ok` writes `<base>.qcow2` with qemu-img,
/// `fail` leaves a partial file and exits 3, `slow` writes it after 1 s, `hang` starts a child
/// and both sleep.
const FAKE_DIB: &str = r#"#!/bin/sh
set -eu
out=""
prev=""
for arg in "$@"; do
    if [ "$prev" = "-o" ]; then out="$arg"; fi
    prev="$arg"
done
here=$(dirname "$0")
printf '%s\n' "$@" > "$here/args"
env | grep -E '^(DIB_|ELEMENTS_PATH|NODEPOOL_SCRIPTDIR|FAKE_DIB)' | sort > "$here/env"
echo "fake-dib: building $DIB_IMAGE_NAME into $out"
case "$FAKE_DIB_MODE" in
    ok)
        qemu-img create -q -f qcow2 "$out.qcow2" 16M
        echo "fake-dib: done"
        ;;
    fail)
        echo partial > "$out.qcow2"
        echo "fake-dib: element vm failed" >&2
        exit 3
        ;;
    slow)
        sleep 1
        qemu-img create -q -f qcow2 "$out.qcow2" 16M
        ;;
    hang)
        sleep 600 &
        echo $! > "$here/child"
        sleep 600
        ;;
esac
"#;

pub(crate) struct Builds {
    pub(crate) install: Install,
    /// Where the stand-in writes what it was given.
    bin: PathBuf,
}

impl Builds {
    fn new(mode: &str, extra: &str) -> Builds {
        Builds::on("    cloud: nowhere\n", mode, extra)
    }

    /// With `credentials` (indented provider keys) for provider p1.
    pub(crate) fn on(credentials: &str, mode: &str, extra: &str) -> Builds {
        let install = Install::with_config("");
        let root = install.dir.path();
        let bin = root.join("bin");
        for dir in ["bin", "elements", "scripts", "images"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        let dib = bin.join("fake-dib");
        fs::write(&dib, FAKE_DIB).unwrap();
        fs::set_permissions(&dib, fs::Permissions::from_mode(0o755)).unwrap();
        let config = format!(
            "dburi: state/nodepool.db
images-dir: {root}/images
elements-dir: {root}/elements
script-dir: {root}/scripts
build-log-dir: {root}/logs
{extra}labels:
  - name: small
    image: ubuntu
    min-ready: 0
    providers:
      - name: p1
diskimages:
  - name: ubuntu-dib
    elements: [ubuntu, vm]
    release: trusty
    dib-cmd: {dib}
    build-timeout: 2
    env-vars:
      FAKE_DIB_MODE: {mode}
providers:
  - name: p1
{credentials}    max-servers: 1
    images:
      - name: ubuntu
        diskimage: ubuntu-dib
        min-ram: 1024
targets:
  - name: jenkins
",
            root = root.display(),
            dib = dib.display(),
        );
        fs::write(&install.config, config).unwrap();
        Builds { install, bin }
    }

    /// The label's min-ready (the fixture writes 0).
    fn min_ready(&self, n: i64) {
        let text = fs::read_to_string(&self.install.config).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for line in lines
            .iter_mut()
            .filter(|l| l.trim_start().starts_with("min-ready:"))
        {
            *line = format!("    min-ready: {n}");
        }
        fs::write(&self.install.config, lines.join("\n") + "\n").unwrap();
    }

    /// Run, insisting on exit status 0.
    fn ok(&self, args: &[&str]) -> std::process::Output {
        let out = self.install.run(args);
        assert_eq!(status(&out), 0, "{args:?}: {}", stderr(&out));
        out
    }

    pub(crate) fn root(&self) -> &Path {
        self.install.dir.path()
    }

    fn builds(&self) -> Vec<Value> {
        let out = self.ok(&["--format", "json", "dib-image-list"]);
        serde_json::from_str::<Value>(&stdout(&out))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    pub(crate) fn files(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root().join(dir))
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

#[test]
fn a_build_runs_the_2015_command_and_leaves_a_ready_row_with_a_real_qcow2() {
    let b = Builds::new("ok", "");
    let out = b.ok(&["image-build", "ubuntu-dib"]);
    let builds = b.builds();
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert_eq!(builds[0]["state"], "ready");
    let version = builds[0]["version"].as_i64().unwrap();
    let base = b.root().join(format!("images/ubuntu-dib-{version}"));
    assert!(
        stdout(&out).contains(&format!("{}.qcow2", base.display())),
        "{}",
        stdout(&out)
    );
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(format!("{}.qcow2", base.display()))
        .output()
        .expect("qemu-img");
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2");

    let args = fs::read_to_string(b.bin.join("args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    let base = base.display().to_string();
    assert_eq!(
        args,
        ["-x", "--no-tmpfs", "-o", base.as_str(), "ubuntu", "vm"]
    );
    let env = fs::read_to_string(b.bin.join("env")).unwrap();
    let root = b.root().display();
    for line in [
        "DIB_IMAGE_NAME=ubuntu-dib".to_string(),
        format!("DIB_IMAGE_FILENAME={base}"),
        "DIB_RELEASE=trusty".to_string(),
        format!("ELEMENTS_PATH={root}/elements"),
        format!("NODEPOOL_SCRIPTDIR={root}/scripts"),
        "FAKE_DIB_MODE=ok".to_string(),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in:\n{env}");
    }
    let log = fs::read_to_string(b.root().join(format!("logs/ubuntu-dib-{version}.log"))).unwrap();
    assert!(log.contains("fake-dib: building ubuntu-dib"), "{log}");
    assert!(log.contains("fake-dib: done"), "{log}");
}

#[test]
fn a_failed_build_leaves_no_row_and_no_file_and_names_its_log() {
    let b = Builds::new("fail", "");
    let out = b.install.run(&["image-build", "ubuntu-dib"]);
    assert_eq!(status(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("the builder exited with status 3"), "{err}");
    let log = b.files("logs").pop().expect("a log");
    assert!(err.contains(&log), "{err}");
    let text = fs::read_to_string(b.root().join("logs").join(&log)).unwrap();
    assert!(
        text.contains("element vm failed"),
        "stderr goes to the log too: {text}"
    );
    assert!(b.builds().is_empty());
    assert!(b.files("images").is_empty(), "{:?}", b.files("images"));
}

#[test]
fn a_build_past_its_timeout_is_killed_with_its_children() {
    let b = Builds::new("hang", "");
    let started = Instant::now();
    let out = b.install.run(&["image-build", "ubuntu-dib"]);
    assert_eq!(status(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ran past build-timeout (2 s)"),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let child = fs::read_to_string(b.bin.join("child")).unwrap();
    let child = child.trim();
    // The group was killed: the builder's own child is gone too (bounded wait for the reaper).
    let gone = (0..50).any(|_| {
        let alive = Path::new(&format!("/proc/{child}")).exists()
            && !fs::read_to_string(format!("/proc/{child}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        if alive {
            std::thread::sleep(Duration::from_millis(100));
        }
        !alive
    });
    assert!(gone, "the builder's child {child} survived");
    assert!(b.builds().is_empty());
    assert!(b.files("images").is_empty());
}

#[test]
fn a_ready_build_whose_file_vanished_is_removed_and_built_again_and_old_logs_go() {
    let b = Builds::new("ok", "build-log-retention: 2\n");
    let build = || b.ok(&["image-build", "ubuntu-dib"]);
    build();
    let first = b.builds()[0]["version"].as_i64().unwrap();
    for file in b.files("images") {
        fs::remove_file(b.root().join("images").join(file)).unwrap();
    }
    let out = build();
    assert!(
        stderr(&out).contains("removing a ready build whose file is gone"),
        "{}",
        stderr(&out)
    );
    let builds = b.builds();
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert!(builds[0]["version"].as_i64().unwrap() > first);
    build();
    assert_eq!(b.builds().len(), 2);
    assert_eq!(b.files("logs").len(), 2, "{:?}", b.files("logs"));
}

#[test]
fn building_an_unknown_diskimage_names_the_known_ones() {
    let b = Builds::new("ok", "");
    let out = b.install.run(&["image-build", "ubuntu-dbi"]);
    assert_eq!(status(&out), 1);
    assert!(
        stderr(&out).contains("no diskimage named `ubuntu-dbi`")
            && stderr(&out).contains("diskimages: ubuntu-dib"),
        "{}",
        stderr(&out)
    );
}

pub(crate) fn simulated(sim: &Simulator) -> String {
    format!(
        "    auth-url: {}\n    username: demo\n    password: secret\n    project-id: demo\n",
        sim.auth_url_v3()
    )
}

#[test]
fn an_upload_streams_the_build_to_glance_and_checks_its_checksums() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let b = Builds::on(&simulated(&sim), "ok", "");
    let ok = |args: &[&str]| b.ok(args);
    ok(&["image-build", "ubuntu-dib"]);
    let out = ok(&["image-upload", "ubuntu"]);
    assert!(
        stdout(&out).contains("image-upload: p1: ubuntu-"),
        "{}",
        stdout(&out)
    );
    let rows = b.install.run(&["--format", "json", "image-list"]);
    let rows: Value = serde_json::from_str(&stdout(&rows)).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows:#}");
    assert_eq!(rows[0]["state"], "ready", "{rows:#}");
    let glance_id = rows[0]["image_id"]
        .as_str()
        .expect("the image id")
        .to_string();
    let dump = sim.dump();
    let uploaded = dump
        .images
        .iter()
        .find(|i| i.id == glance_id)
        .expect("in Glance");
    assert_eq!(uploaded.status, "active");
    let installation = nodepool::state::pass::installation(b.install.db().conn()).unwrap();
    for (key, value) in [
        ("nodepool_installation", installation.as_str()),
        ("nodepool_provider_name", "p1"),
        ("nodepool_image_name", "ubuntu"),
        ("nodepool_upload_id", &rows[0]["id"].to_string()),
    ] {
        assert_eq!(
            uploaded.properties[key], value,
            "{key}: {:?}",
            uploaded.properties
        );
    }
    assert!(uploaded.properties.contains_key("nodepool_build_id"));

    // The store damages the next upload: it is deleted and fails, the first one stays.
    sim.set_knobs(|k| k.corrupt_checksums = true);
    let out = b.install.run(&["image-upload", "p1", "ubuntu"]);
    assert_eq!(status(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("damaged on the way"),
        "{}",
        stderr(&out)
    );
    let images: Vec<String> = sim.dump().images.into_iter().map(|i| i.id).collect();
    assert!(images.contains(&glance_id));
    assert_eq!(
        images.len(),
        dump.images.len(),
        "the damaged upload was deleted: {images:?}"
    );
    sim.set_knobs(|k| k.corrupt_checksums = false);

    // What a killed upload leaves: its row, and a queued image carrying its upload id.
    let db = b.install.db();
    let row = nodepool::state::images::insert_provider_image(
        db.conn(),
        &"p1".into(),
        &"ubuntu".into(),
        1,
        nodepool::model::ImageState::Building,
        nodepool::clock::now(),
    )
    .unwrap();
    let client = nodepool::cloud::openstack::OpenStack::connect(
        &crate::support::simulator::client_settings(&sim, "p1"),
        Default::default(),
    )
    .unwrap();
    let properties = [
        ("nodepool_installation".to_string(), installation.clone()),
        ("nodepool_upload_id".to_string(), row.to_string()),
    ]
    .into();
    let orphan =
        nodepool::cloud::Cloud::create_image(&client, "ubuntu-1", "qcow2", &properties).unwrap();
    ok(&["image-upload", "ubuntu"]);
    let after: Vec<String> = sim.dump().images.into_iter().map(|i| i.id).collect();
    assert!(
        !after.contains(&orphan),
        "the interrupted upload's image is gone"
    );
    let rows = nodepool::state::images::list_provider_images(db.conn()).unwrap();
    assert!(rows.iter().all(|r| r.id != row), "its row too");
    assert_eq!(rows.len(), 2, "two ready uploads: {rows:?}");
}

#[test]
fn launches_use_the_newest_upload_and_fall_back_when_it_is_deleted() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let b = Builds::on(&simulated(&sim), "ok", "");
    let ok = |args: &[&str]| stdout(&b.ok(args));
    b.min_ready(1);
    let uploads = || -> Vec<(i64, String)> {
        let rows: Value = serde_json::from_str(&ok(&["--format", "json", "image-list"])).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_i64().unwrap(),
                    r["image_id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let booted_from = || {
        let plan: Value =
            serde_json::from_str(&ok(&["--format", "json", "reconcile", "--dry-run"])).unwrap();
        plan["actions"][0]["image_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    for _ in 0..2 {
        ok(&["image-build", "ubuntu-dib"]);
        ok(&["image-upload", "ubuntu"]);
    }
    let made = uploads();
    assert_eq!(made.len(), 2, "{made:?}");
    assert_eq!(booted_from(), made[1].1, "the newest");
    let out = ok(&["image-delete", &made[1].0.to_string()]);
    assert!(out.contains("deleted, with its cloud image"), "{out}");
    assert!(
        sim.dump().images.iter().all(|i| i.id != made[1].1),
        "gone from Glance"
    );
    assert_eq!(booted_from(), made[0].1, "back to the previous one");

    // A local build goes with its files; unknown ids are named.
    let builds: Value = serde_json::from_str(&ok(&["--format", "json", "dib-image-list"])).unwrap();
    let first = builds[0]["id"].to_string();
    ok(&["dib-image-delete", &first]);
    assert_eq!(b.files("images").len(), 1, "{:?}", b.files("images"));
    for (command, id) in [("image-delete", "999"), ("dib-image-delete", "999")] {
        let out = b.install.run(&[command, id]);
        assert_eq!(status(&out), 1);
        assert!(stderr(&out).contains("with id 999"), "{}", stderr(&out));
    }
}

#[test]
fn image_update_missing_builds_and_uploads_only_what_a_label_lacks() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let b = Builds::on(&simulated(&sim), "ok", "");
    let ok = |args: &[&str]| stdout(&b.ok(args));
    // The label is disabled (min-ready 0 counts as in use; -1 does not).
    b.min_ready(-1);
    let out = ok(&["image-update", "--missing"]);
    assert!(out.contains("nothing is missing"), "{out}");
    assert!(
        b.files("images").is_empty(),
        "an image no label uses is not built"
    );

    b.min_ready(0);
    let out = ok(&["image-update", "--missing"]);
    assert!(out.contains("image-build: ubuntu-dib version"), "{out}");
    assert!(out.contains("image-upload: p1: ubuntu-"), "{out}");
    let out = ok(&["image-update", "--missing"]);
    assert!(out.contains("nothing is missing"), "{out}");

    // A forced update builds and uploads again; a cloud image has nothing to update.
    let out = ok(&["image-update", "all", "ubuntu"]);
    assert!(
        out.contains("image-build") && out.contains("image-upload"),
        "{out}"
    );
    let rows: Value = serde_json::from_str(&ok(&["--format", "json", "image-list"])).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows:#}");
    // The daily update: every image a label uses, without naming it.
    let out = ok(&["image-update", "all"]);
    assert!(
        out.contains("image-build") && out.contains("image-upload: p1: ubuntu-"),
        "{out}"
    );
    let rows: Value = serde_json::from_str(&ok(&["--format", "json", "image-list"])).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3, "{rows:#}");
    let out = b.install.run(&["image-update", "p1"]);
    assert_eq!(status(&out), 1);
    assert!(stderr(&out).contains("name the image"), "{}", stderr(&out));
    let out = b.install.run(&["image-update", "all", "nosuch"]);
    assert_eq!(status(&out), 1);
    assert!(
        stderr(&out).contains("no image named `nosuch`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn status_says_a_label_waits_on_a_failed_build_and_names_its_log() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let b = Builds::on(&simulated(&sim), "fail", "");
    b.min_ready(1);
    let status_line = || {
        let out = b.install.run(&["reconcile"]);
        assert_eq!(status(&out), 0, "{}", stderr(&out));
        stdout(&b.install.run(&["status"]))
    };
    assert!(
        status_line().contains("no ready image `ubuntu`: never built"),
        "{}",
        status_line()
    );
    let out = b.install.run(&["image-build", "ubuntu-dib"]);
    assert_eq!(status(&out), 1);
    let log = b.root().join("logs").join(b.files("logs").pop().unwrap());
    let shown = status_line();
    assert!(
        shown.contains(&format!("last build failed: {}", log.display())),
        "{shown}"
    );
}

#[test]
fn a_new_image_whose_first_launches_fail_is_rolled_back_from_and_rebuilt_by_missing() {
    let sim = Simulator::start(Knobs {
        boot_delay: Duration::from_millis(100),
        ..Knobs::default()
    })
    .unwrap();
    let provider = format!(
        "{}    host-key-checking: false\n    rate: 0\n",
        simulated(&sim)
    );
    let b = Builds::on(&provider, "ok", "");
    let with = |min_ready: i64, max_servers: u32| {
        b.min_ready(min_ready);
        let text = fs::read_to_string(&b.install.config).unwrap();
        let config = text.replace("max-servers: 1", &format!("max-servers: {max_servers}"));
        fs::write(&b.install.config, config).unwrap();
    };
    let images = || -> Vec<Value> {
        let out = b.ok(&["--format", "json", "image-list"]);
        serde_json::from_str::<Value>(&stdout(&out))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let ready_nodes = || {
        let out = b.ok(&["--format", "json", "list"]);
        let nodes: Value = serde_json::from_str(&stdout(&out)).unwrap();
        nodes
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "ready")
            .count()
    };
    // Version 1 works: a node from it becomes ready.
    with(1, 5);
    b.ok(&["image-update", "p1", "ubuntu"]);
    b.ok(&["reconcile", "--duration", "20"]);
    assert_eq!(ready_nodes(), 1);
    // Version 2 does not boot.
    b.ok(&["image-update", "p1", "ubuntu"]);
    let made = images();
    assert_eq!(made.len(), 2, "{made:#?}");
    let (good, bad) = (
        made[0]["image_id"].as_str().unwrap().to_string(),
        made[1]["image_id"].as_str().unwrap().to_string(),
    );
    sim.set_knobs(|k| k.broken_images = vec![bad.clone()]);
    with(2, 5);
    // Three launches from it fail (the back-off between them is at most 10 s), then it is
    // marked failed and the pool is filled from version 1.
    let deadline = Instant::now() + Duration::from_secs(90);
    while ready_nodes() < 2 && Instant::now() < deadline {
        b.ok(&["reconcile", "--duration", "20"]);
    }
    assert_eq!(ready_nodes(), 2);
    let rows = images();
    assert_eq!(rows[1]["state"], "failed", "{rows:#?}");
    let why = rows[1]["error"].as_str().unwrap();
    assert!(why.contains("3 launches in a row failed"), "{why}");
    let booted: Vec<String> = sim
        .dump()
        .servers
        .iter()
        .map(|s| s.image_id.clone())
        .collect();
    assert!(
        booted.iter().all(|id| *id == good),
        "{booted:?} (bad: {bad})"
    );
    let status: Value =
        serde_json::from_str(&stdout(&b.ok(&["--format", "json", "status"]))).unwrap();
    assert_eq!(status[0]["image"]["image_id"], good.as_str(), "{status:#}");
    assert_eq!(
        sim.calls().route("POST /compute/servers"),
        5,
        "one good launch, three bad, one good"
    );
    // The builder timer's command makes a new one, from a new build: the bad one is not
    // uploaded again.
    let out = stdout(&b.ok(&["image-update", "--missing"]));
    assert!(out.contains("image-build: ubuntu-dib version"), "{out}");
    assert!(out.contains("image-upload: p1: ubuntu-"), "{out}");
    let rows = images();
    assert_eq!(rows.len(), 3);
    assert_ne!(rows[2]["version"], rows[1]["version"], "{rows:#?}");
}

/// A simulator and builds fixture on it after `updates` image-updates of `ubuntu`.
fn updated(updates: usize) -> (Simulator, Builds) {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let b = Builds::on(&simulated(&sim), "ok", "");
    for _ in 0..updates {
        b.ok(&["image-update", "p1", "ubuntu"]);
    }
    (sim, b)
}

#[test]
fn cleanup_keeps_the_current_and_previous_images_and_removes_old_builds_and_leaked_uploads() {
    let (sim, b) = updated(4);
    let db = b.install.db();
    let conn = db.conn();
    let glance = || -> Vec<String> { sim.dump().images.into_iter().map(|i| i.id).collect() };
    let rows = nodepool::state::images::list_provider_images(conn).unwrap();
    assert_eq!(rows.len(), 4, "none is 8 hours old yet: {rows:?}");
    assert_eq!(b.files("images").len(), 4, "every build has an upload");
    // Nine hours later (the clock the rows are judged by is their state_time).
    conn.execute_batch(
        "UPDATE snapshot_image SET state_time = state_time - 9 * 3600; \
         UPDATE dib_image SET state_time = state_time - 9 * 3600;",
    )
    .unwrap();
    // An upload of this installation's that no row records (a run killed after its create).
    let installation: String = conn
        .query_row("SELECT id FROM installation", [], |r| r.get(0))
        .unwrap();
    let client = nodepool::cloud::openstack::OpenStack::connect(
        &crate::support::simulator::client_settings(&sim, "p1"),
        Default::default(),
    )
    .unwrap();
    let properties = [
        ("nodepool_installation".to_string(), installation),
        ("nodepool_provider_name".to_string(), "p1".to_string()),
    ]
    .into();
    let leaked =
        nodepool::cloud::Cloud::create_image(&client, "ubuntu-0", "qcow2", &properties).unwrap();

    let out = stdout(&b.ok(&["--format", "json", "cleanup"]));
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["images_deleted"], 2, "{summary:#}");
    assert_eq!(summary["builds_deleted"], 2, "{summary:#}");
    let kept = nodepool::state::images::list_provider_images(conn).unwrap();
    let kept_ids: Vec<i64> = kept.iter().map(|r| r.id).collect();
    assert_eq!(kept_ids, [3, 4], "the current and the previous");
    for row in &rows[..2] {
        let id = row.external_id.as_ref().unwrap();
        assert!(!glance().contains(id), "{id} is gone from Glance");
    }
    // Builds 1 and 2 went with their files and logs; 3 and 4 stay for their uploads.
    assert_eq!(b.files("images").len(), 2, "{:?}", b.files("images"));
    assert_eq!(b.files("logs").len(), 2, "{:?}", b.files("logs"));
    // The leaked upload is seen first, and deleted by a later cleanup past the grace period.
    assert!(glance().contains(&leaked));
    conn.execute(
        "UPDATE image_leak SET first_seen = first_seen - 600, last_seen = last_seen - 1",
        [],
    )
    .unwrap();
    let out = stdout(&b.ok(&["--format", "json", "cleanup"]));
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["images_deleted"], 1, "{summary:#}");
    assert!(!glance().contains(&leaked), "the leaked upload is gone");
    assert_eq!(
        glance().len(),
        2 + 2,
        "two uploads kept, and the cloud's own two images"
    );
}

#[test]
fn a_new_upload_removes_images_older_than_the_previous_one_at_once() {
    let (_sim, b) = updated(3);
    let db = b.install.db();
    let conn = db.conn();
    conn.execute(
        "UPDATE snapshot_image SET state_time = state_time - 9 * 3600",
        [],
    )
    .unwrap();
    b.ok(&["image-update", "p1", "ubuntu"]);
    let kept: Vec<i64> = nodepool::state::images::list_provider_images(conn)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(kept, [3, 4], "the new one and the previous");
}
