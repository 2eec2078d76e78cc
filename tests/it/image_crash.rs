//! Kill -9 of the image work: for every point of `nodepool::failpoint::IMAGE_POINTS`, an
//! `image-update` is killed there with SIGKILL, and the next `image-update --missing` runs must
//! converge to one ready image with nothing left behind: every cloud image carrying this
//! installation's properties is a ready row's, no template server, no generated keypair, no
//! file but the ready build's, and a setup script that ran once.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use nodepool::failpoint;
use nodepool::model::ImageState;
use nodepool::state::images;
use nodepool::state::Db;
use nodepool_simulator::{Dump, Knobs, Simulator};

use crate::images::{simulated, Builds};
use crate::snapshots::{our_snapshots, snapshot_pool, templates};
use crate::support::pool::{MARK, PROVIDER};
use crate::support::{stderr, stdout, BIN};

/// Runs of `image-update --missing` allowed to converge after the kill.
const CONVERGE_RUNS: usize = 3;

macro_rules! image_point_tests {
    ($($test:ident => $point:literal,)*) => {
        /// The points that have tests here.
        const TESTED: &[&str] = &[$($point),*];
        $(
            #[test]
            fn $test() {
                case($point);
            }
        )*
    };
}

image_point_tests! {
    build_running => "build-running",
    upload_after_create => "upload-after-create",
    upload_streaming => "upload-streaming",
    snapshot_before_create => "snapshot-before-create",
    snapshot_after_create => "snapshot-after-create",
    snapshot_after_login => "snapshot-after-login",
    snapshot_setup_started => "snapshot-setup-started",
    snapshot_after_create_image => "snapshot-after-create-image",
}

/// An image point added to `failpoint::IMAGE_POINTS` fails here until it has its test above.
#[test]
fn every_image_failpoint_has_its_test() {
    let points: BTreeSet<&str> = failpoint::IMAGE_POINTS.iter().copied().collect();
    let tested: BTreeSet<&str> = TESTED.iter().copied().collect();
    assert_eq!(
        tested, points,
        "add a line to image_point_tests! for each new image point"
    );
}

/// `nodepool -c CONFIG ARGS…`, with `point` armed when given.
fn run(config: &Path, args: &[&str], point: Option<&str>) -> Output {
    let mut command = Command::new(BIN);
    command
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("NODEPOOL_CONFIG")
        .env_remove("NODEPOOL_FAILPOINT")
        .env_remove("NODEPOOL_NODE_ROOT")
        .env("NODEPOOL_TEST_MARK", MARK);
    if let Some(point) = point {
        command.env(failpoint::ENV, point);
    }
    command.output().expect("run nodepool")
}

fn case(point: &str) {
    if point.starts_with("snapshot-") {
        snapshot_case(point);
    } else {
        build_case(point);
    }
}

/// The run killed at `point` died there, by SIGKILL.
fn assert_killed(point: &str, out: &Output) {
    assert_eq!(
        out.status.signal(),
        Some(9),
        "NODEPOOL_FAILPOINT={point} did not kill image-update ({:?})\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
    assert!(
        stderr(out).contains(&format!("failpoint {point}: killing")),
        "{}",
        stderr(out)
    );
}

/// `image-update --missing` until it succeeds; the outputs of every run, for messages.
fn converge(config: &Path) -> String {
    let mut seen = String::new();
    for _ in 0..CONVERGE_RUNS {
        let out = run(config, &["image-update", "--missing"], None);
        seen.push_str(&format!("{}{}", stdout(&out), stderr(&out)));
        if out.status.success() {
            return seen;
        }
    }
    panic!("image-update --missing did not converge in {CONVERGE_RUNS} runs:\n{seen}");
}

/// One ready image, no other row; every cloud image with this installation's properties is
/// that row's (or the build's uploads of rows); the installation's id for further checks.
fn assert_one_ready_image(db: &Db, dump: &Dump, seen: &str) {
    let rows = images::list_provider_images(db.conn()).unwrap();
    assert_eq!(rows.len(), 1, "{rows:#?}\n{seen}");
    assert_eq!(rows[0].state, ImageState::Ready, "{rows:#?}\n{seen}");
    let installation: String = db
        .conn()
        .query_row("SELECT id FROM installation", [], |r| r.get(0))
        .unwrap();
    let ours: Vec<&str> = dump
        .images
        .iter()
        .filter(|i| {
            i.properties
                .get("nodepool_installation")
                .and_then(|v| v.as_str())
                == Some(installation.as_str())
        })
        .map(|i| i.id.as_str())
        .collect();
    assert_eq!(
        ours,
        [rows[0].external_id.as_deref().unwrap()],
        "no orphan image\n{seen}"
    );
}

/// The builder work directory holds nothing once the builder is done.
fn assert_no_keys_left(database: &Path) {
    let dir = nodepool::state::builder_work_dir(database);
    let left: Vec<_> = fs::read_dir(&dir)
        .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{}: {left:?}", dir.display());
}

fn build_case(point: &str) {
    let sim = Simulator::start(Knobs::default()).unwrap();
    // The builder of `build-running` outlives the kill unless nodepool stops it.
    let mode = if point == "build-running" {
        "slow"
    } else {
        "ok"
    };
    let b = Builds::on(&simulated(&sim), mode, "");
    if point != "build-running" {
        b.install.run(&["image-build", "ubuntu-dib"]);
        assert_eq!(b.files("images").len(), 1);
    }
    let crashed = run(
        &b.install.config,
        &["image-update", "p1", "ubuntu"],
        Some(point),
    );
    assert_killed(point, &crashed);
    let seen = converge(&b.install.config);
    // An orphan builder would write its file by now.
    std::thread::sleep(Duration::from_secs(3));
    let db = b.install.db();
    assert_one_ready_image(&db, &sim.dump(), &seen);
    let builds = images::list_dib_images(db.conn()).unwrap();
    let ready: Vec<_> = builds
        .iter()
        .filter(|b| b.state == ImageState::Ready)
        .collect();
    assert_eq!(ready.len(), builds.len(), "{builds:#?}\n{seen}");
    // Only the ready builds' files.
    let expected: BTreeSet<String> = ready
        .iter()
        .map(|b| {
            let base = b.filename.as_deref().unwrap();
            format!(
                "{}.qcow2",
                Path::new(base).file_name().unwrap().to_str().unwrap()
            )
        })
        .collect();
    let files: BTreeSet<String> = b.files("images").into_iter().collect();
    assert_eq!(files, expected, "{seen}");
    assert_eq!(
        images::list_provider_images(db.conn()).unwrap()[0].dib_image_id,
        ready.last().map(|b| b.id),
        "the upload is of the newest build"
    );
    let _ = b.root();
}

fn snapshot_case(point: &str) {
    let pool = snapshot_pool(1);
    let crashed = run(
        &pool.config,
        &["image-update", PROVIDER, "ubuntu"],
        Some(point),
    );
    assert_killed(point, &crashed);
    let seen = converge(&pool.config);
    let dump = pool.sim.dump();
    assert_one_ready_image(&pool.db(), &dump, &seen);
    assert_eq!(our_snapshots(&dump).len(), 1, "{seen}");
    assert_eq!(
        templates(&dump),
        0,
        "no template server left: {:#?}\n{seen}",
        dump.servers
    );
    assert!(
        !dump.keypairs.iter().any(|k| k.contains("-template-")),
        "no generated keypair left: {:?}\n{seen}",
        dump.keypairs
    );
    let ran = fs::read_to_string(pool.node_root().join("setup-ran")).unwrap_or_default();
    assert_eq!(
        ran.lines().count(),
        1,
        "the setup script ran once: {ran}\n{seen}"
    );
    assert_no_keys_left(&pool.database());
}
