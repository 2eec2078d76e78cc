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
    }

    /// A worker that could not start (no database connection).
    pub fn failed(error: String) -> Tally {
        Tally {
            errors: vec![error],
            ..Tally::default()
        }
    }

    /// Note an action's outcome: an error is logged and kept, never stops the others.
    pub fn outcome(&mut self, action: &Action, outcome: anyhow::Result<()>) {
        if let Err(error) = outcome {
            let message = format!("{}: {error:#}", describe(action));
            log::warn!("{message}");
            self.errors.push(message);
        }
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
