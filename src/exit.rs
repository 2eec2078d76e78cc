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
    /// foreground action that failed, an unknown node id.
    Failure = 1,
    /// The command line was wrong (clap prints the usage).
    Usage = 2,
    /// The command did its job, but some provider could not be reached at all (wrong
    /// password, refused, too slow), so that provider's part was not done (EX_UNAVAILABLE):
    /// a monitor or `OnFailure=` can tell it from a run where all is well.
    Unavailable = 69,
    /// Another run holds the lock (EX_TEMPFAIL); timers set `SuccessExitStatus=75`.
    Locked = 75,
    /// `acquire --wait`: the nodes were not ready in time (the request was withdrawn); 124
    /// as timeout(1) says it.
    TimedOut = 124,
    /// The configuration is invalid (EX_CONFIG); every problem was printed.
    ConfigInvalid = 78,
}

impl Exit {
    /// Every status with a one-line meaning, for `--help`, the README and the man page.
    pub const CATALOGUE: [(Exit, &'static str); 7] = [
        (Exit::Ok, "the command did its job"),
        (Exit::Failure, "the command could not do its job"),
        (Exit::Usage, "usage error on the command line"),
        (
            Exit::Unavailable,
            "the command did its job, but some provider could not be reached",
        ),
        (Exit::Locked, "another run holds the lock"),
        (
            Exit::TimedOut,
            "acquire --wait: the nodes were not ready in time",
        ),
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
            if cause.is::<Unreachable>() {
                return Exit::Unavailable;
            }
            if cause.is::<TimedOut>() {
                return Exit::TimedOut;
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

/// Returned by a command that did its job on every provider but these, which it could not
/// reach at all; its output was printed. Exit status 69.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable(pub Vec<(String, String)>);

impl Unreachable {
    /// Ok when every provider was reached.
    pub fn into_result(self) -> anyhow::Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.into())
        }
    }
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "done, but {n} provider{} could not be reached",
            if n == 1 { "" } else { "s" }
        )?;
        for (provider, error) in &self.0 {
            write!(f, "; {}", named(provider, error))?;
        }
        Ok(())
    }
}

impl std::error::Error for Unreachable {}

/// `provider: error`, once, also when the error names its provider already.
pub fn named(provider: &str, error: &str) -> String {
    if error.starts_with(&format!("{provider}: ")) {
        error.to_string()
    } else {
        format!("{provider}: {error}")
    }
}

/// `acquire --wait` ran out of time: what it waited for.
#[derive(Debug)]
pub struct TimedOut(pub String);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimedOut {}

/// Print an error on stderr: configuration problems one per line, anything else on one line
/// (`{:#}` joins the context chain) so journald keeps it whole.
pub fn report(error: &anyhow::Error) {
    if let Some(config) = error.downcast_ref::<crate::config::ConfigError>() {
        eprint!("{config}");
        return;
    }
    if let Some(unreachable) = error.downcast_ref::<Unreachable>() {
        eprintln!("nodepool: warning: {unreachable}");
        return;
    }
    eprintln!("nodepool: error: {error:#}");
}
