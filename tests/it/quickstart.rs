//! README's first command: examples/quickstart.sh fills a pool on the simulator, passes
//! printing their summaries, then lists the nodes and stops the simulator.

use std::process::Command;

use crate::support;

#[test]
fn the_quickstart_fills_the_pool_and_lists_it() {
    // The script runs both binaries from one directory: cargo's, where both were built.
    let simulator = support::simulator::simulator_bin();
    let bin_dir = simulator.parent().expect("binary directory");
    let scratch = tempfile::tempdir().expect("tempdir");
    let out = Command::new("sh")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/quickstart.sh"
        ))
        .env("NODEPOOL_BIN_DIR", bin_dir)
        .env("TMPDIR", scratch.path())
        .output()
        .expect("run quickstart.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("pass 1: reconcile: 1 round; launched"),
        "{stdout}"
    );
    // 3 `small` nodes and one `pair` (with its subnode), all ready in the listing.
    let ready_rows = stdout
        .lines()
        .filter(|l| l.contains("| simulated ") && l.contains("| ready "))
        .count();
    assert!(ready_rows >= 4, "{stdout}");
    // The script cleaned up after itself: its work directory is gone, the simulator stopped.
    assert_eq!(
        std::fs::read_dir(scratch.path()).expect("scratch").count(),
        0,
        "quickstart left files behind"
    );
}
