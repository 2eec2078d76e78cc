//! nodepool: keeps pools of ready CI nodes on OpenStack clouds, as a one-shot reconciler.
//!
//! `run` loads what a command needs and dispatches to `commands/`; the binary maps its result
//! to an exit status (`exit`).

pub mod cli;
pub mod config;
pub mod exit;
pub mod logging;
pub mod model;
pub mod state;

pub fn run(_cli: &cli::Cli) -> anyhow::Result<()> {
    Ok(())
}

pub mod lock {
    #[derive(Debug)]
    pub struct LockHeld;
    impl std::fmt::Display for LockHeld {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("held")
        }
    }
    impl std::error::Error for LockHeld {}
}
