//! The exit-status catalogue, in one place. The README and nodepool(1) repeat this table; a
//! test keeps them in step.

use std::fmt;

/// What a `nodepool` process tells its caller (systemd, a script, a person) by its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did its job. A reconcile pass whose cloud actions partly failed still did
    /// its job: the failures are in its summary and are retried by the next pass.
    Ok = 0,
    /// The command could not do its job: database unusable, every provider unreachable, a
    /// foreground action that failed, an unknown node id, a command not implemented yet.
    Failure = 1,
    /// The command line was wrong (clap prints the usage).
    Usage = 2,
    /// Another run holds the lock (EX_TEMPFAIL); timers set `SuccessExitStatus=75`.
    Locked = 75,
    /// The configuration is invalid (EX_CONFIG); every problem was printed.
    ConfigInvalid = 78,
}

impl Exit {
    /// Every status with a one-line meaning, for `--help`, the README and the man page.
    pub const CATALOGUE: [(Exit, &'static str); 5] = [
        (Exit::Ok, "the command did its job"),
        (Exit::Failure, "the command could not do its job"),
        (Exit::Usage, "usage error on the command line"),
        (Exit::Locked, "another run holds the lock"),
        (Exit::ConfigInvalid, "the configuration is invalid"),
    ];

    /// The status an error maps to: typed errors where the status differs, 1 otherwise.
    pub fn of(error: &anyhow::Error) -> Exit {
        for cause in error.chain() {
            if cause.is::<crate::config::ConfigError>() {
                return Exit::ConfigInvalid;
            }
            if cause.is::<crate::lock::LockHeld>() {
                return Exit::Locked;
            }
        }
        Exit::Failure
    }

    /// The catalogue as `--help` prints it.
    pub fn help_text() -> String {
        let mut text = String::from("Exit status:");
        for (exit, meaning) in Exit::CATALOGUE {
            text.push_str(&format!("\n  {:<3} {meaning}", exit.code()));
        }
        text
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// Raised by commands whose capability arrives in a later release; never a fake success.
#[derive(Debug)]
pub struct NotImplemented(pub &'static str);

impl fmt::Display for NotImplemented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not implemented yet: {}", self.0)
    }
}

impl std::error::Error for NotImplemented {}

/// Print an error on stderr: configuration problems one per line, anything else on one line
/// (`{:#}` joins the context chain) so journald keeps it whole.
pub fn report(error: &anyhow::Error) {
    if let Some(config) = error.downcast_ref::<crate::config::ConfigError>() {
        eprint!("{config}");
        return;
    }
    eprintln!("nodepool: error: {error:#}");
}
