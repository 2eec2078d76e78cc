//! What the benchmarks share.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

#[path = "../it/support/simulator.rs"]
mod simulator;

pub use simulator::client_settings;

/// Start `nodepool-simulator` as its own process (so only nodepool is measured) with `args`;
/// returns the child and its base URL, read from the line it prints when listening. The
/// binary comes from the simulator's crate: `cargo build --release -p nodepool-simulator`
/// before `cargo bench`.
pub fn simulator_process(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(simulator::simulator_bin())
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start simulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let url = line.trim().rsplit(' ').next().expect("url").to_string();
    (child, url)
}
