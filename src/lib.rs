//! nodepool: keeps pools of ready CI nodes on OpenStack clouds, as a one-shot reconciler.
//!
//! `run` dispatches to `commands/` (one file per subcommand); the binary maps its result to
//! an exit status (`exit`). Pure parts (config validation, planning) take `now` as an
//! argument; side effects (database, clouds, SSH) stay at the edges.

pub mod cli;
pub mod clock;
pub mod cloud;
mod commands;
pub mod config;
pub mod execute;
pub mod exit;
pub mod failpoint;
pub mod image;
pub mod interrupt;
pub mod lock;
pub mod logging;
pub mod manual;
pub mod metrics;
pub mod model;
pub mod node;
pub mod observe;
pub mod output;
pub mod parallel;
pub mod plan;
pub mod schedule;
pub mod state;

/// Run one command line.
pub fn run(cli: &cli::Cli) -> anyhow::Result<()> {
    commands::run(cli)
}
