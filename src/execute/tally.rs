//! What a round did, summed over a run: the counts in the summary line and the JSON, and the
//! errors of the actions that failed.

use serde::Serialize;

use crate::plan::Action;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    pub launched: u32,
    pub ready: u32,
    /// Nodes whose servers got a delete call.
    pub deleting: u32,
    /// Rows removed once their servers were gone.
    pub deleted: u32,
    pub failed: u32,
    pub leaks_deleted: u32,
    /// Mutating calls not started because the deadline passed.
    pub deferred: u32,
    /// Something changed (a row moved on): the next round should come soon.
    #[serde(skip)]
    pub progressed: bool,
    #[serde(skip)]
    pub errors: Vec<String>,
    /// Every action done, with its reason and how it ended, for the run journal.
    #[serde(skip)]
    pub results: Vec<ActionResult>,
}

/// One action of a round as the journal keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct ActionResult {
    pub action: String,
    pub reason: String,
    /// None: it went well.
    pub error: Option<String>,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.launched += other.launched;
        self.ready += other.ready;
        self.deleting += other.deleting;
        self.deleted += other.deleted;
        self.failed += other.failed;
        self.leaks_deleted += other.leaks_deleted;
        self.deferred += other.deferred;
        self.progressed |= other.progressed;
        self.errors.extend(other.errors);
        self.results.extend(other.results);
    }

    /// A worker that could not start (no database connection).
    pub fn failed(error: String) -> Tally {
        Tally {
            errors: vec![error],
            ..Tally::default()
        }
    }

    /// Note an action's outcome: an error is logged and kept, never stops the others. At the
    /// default log level each launch and deletion is one line with its reason, so the
    /// system journal holds the story of a run too.
    pub fn outcome(&mut self, action: &Action, outcome: anyhow::Result<()>) {
        let what = describe(action);
        let error = match outcome {
            Ok(()) => {
                if action.step.is_delete()
                    || matches!(action.step.name(), "launch" | "launch-subnode")
                {
                    log::info!("{what}: {}", action.reason);
                } else {
                    log::debug!("{what}: {}", action.reason);
                }
                None
            }
            Err(error) => {
                let message = format!("{what}: {error:#}");
                log::warn!("{message} (it was done because {})", action.reason);
                self.errors.push(message);
                Some(format!("{error:#}"))
            }
        };
        self.results.push(ActionResult {
            action: what,
            reason: action.reason.clone(),
            error,
        });
    }
}

fn describe(action: &Action) -> String {
    let mut out = format!("{} on {}", action.step.name(), action.provider);
    if let Some(node) = action.step.node() {
        out.push_str(&format!(" (node {node})"));
    } else if let Some(label) = &action.label {
        out.push_str(&format!(" (label {label})"));
    }
    out
}
