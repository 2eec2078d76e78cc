//! The `nodepool-simulator` binary: its command line reaches the knobs, it says where it
//! listens, and it serves until killed.
//!
//! Being an integration test of this package, it is also what makes `cargo test` and
//! `cargo nextest run` over the workspace build the binary, which nodepool's quickstart test
//! runs from the target directory.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

#[test]
fn binary_prints_its_url_and_serves_until_killed() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodepool-simulator"))
        .args(["--boot-delay", "0.5", "--instance-quota", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("nodepool-simulator listening on ")
        .map(str::to_owned);
    let knobs = url.as_ref().map(|url| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut answer = agent.get(format!("{url}/_sim/knobs")).call().unwrap();
        let text = answer.body_mut().read_to_string().unwrap();
        serde_json::from_str::<Value>(&text).unwrap()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        url.is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "{line:?}"
    );
    let knobs = knobs.unwrap();
    assert_eq!(knobs["boot_delay"], 0.5);
    assert_eq!(knobs["instance_quota"], 2);
}
