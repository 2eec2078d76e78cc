//! nodepool's integration tests, one binary: each module below used to be a test binary of
//! its own, linking the library and every dependency again. They run the real `nodepool`
//! binary (`support::BIN`) against in-process simulators (`nodepool_simulator`) and real sshd
//! servers on loopback; `support` is what they share.
//!
//! Test names are `MODULE::TEST`, so a filter picks one file:
//! `cargo nextest run --workspace -E 'test(/^crash::/)'`.

mod support;

mod acquire;
mod aliens;
mod cli;
mod cloud_client;
mod config_validate;
mod crash;
mod history;
mod image_crash;
mod images;
mod listing;
mod metrics;
mod node_ssh;
mod operations;
mod quickstart;
mod reconcile;
mod simulator;
mod snapshots;
mod systemd;
