//! `nodepool history [--limit N] [--since TIME]`: the run journal, newest first: every run of
//! a command that changed something, with what it saw, planned and did, its API calls, how
//! long it waited for the lock and ran, and how it ended (exit status, the signal that stopped
//! it, or `unfinished` for a row that is still running or was killed). `--format json` exports
//! the rows whole.

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::Value;

use super::Context;
use crate::cli::HistoryArgs;
use crate::clock::rfc3339;
use crate::output;
use crate::state::journal::{self, Run};

const HEADERS: [&str; 7] = [
    "ID",
    "Started",
    "Command",
    "Exit",
    "Seconds",
    "Lock Wait",
    "Result",
];

#[derive(Serialize)]
struct RunJson {
    id: i64,
    command: String,
    argv: Option<String>,
    config_hash: Option<String>,
    started: String,
    finished: Option<String>,
    /// Null for a run that never finished (killed).
    exit_status: Option<i32>,
    interrupted: Option<String>,
    seconds: Option<f64>,
    lock_wait: Option<f64>,
    api_calls: Value,
    summary: Value,
    actions: Value,
}

pub fn run(ctx: &Context, args: &HistoryArgs) -> Result<()> {
    let since = match &args.since {
        None => 0,
        Some(text) => since(text, ctx.now)?,
    };
    let db = ctx.read_db()?;
    let runs = journal::list(db.conn(), since, args.limit)?;
    output::listing(ctx.format, &HEADERS, &runs, to_json, to_row)
}

/// `--since`: an RFC 3339 time, or a time ago.
fn since(text: &str, now: i64) -> Result<i64> {
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(now.saturating_sub(i64::try_from(ago.as_secs()).unwrap_or(i64::MAX)));
    }
    match humantime::parse_rfc3339_weak(text) {
        Ok(time) => Ok(time
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)),
        Err(_) => bail!(
            "--since {text:?}: expected an RFC 3339 time (2026-12-01T03:00:00Z) or a time ago \
             (2h, 30min)"
        ),
    }
}

fn parsed(text: &Option<String>) -> Value {
    text.as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

fn to_json(run: &Run) -> RunJson {
    RunJson {
        id: run.id,
        command: run.command.clone(),
        argv: run.argv.clone(),
        config_hash: run.config_hash.clone(),
        started: rfc3339(run.started),
        finished: run.finished.map(rfc3339),
        exit_status: run.exit_status,
        interrupted: run.interrupted.clone(),
        seconds: run.seconds,
        lock_wait: run.lock_wait,
        api_calls: parsed(&run.api_calls),
        summary: parsed(&run.summary),
        actions: parsed(&run.actions),
    }
}

fn to_row(run: &Run) -> Vec<String> {
    let exit = match (run.finished, run.exit_status) {
        // Still running, or killed (kill -9, a crash): it never finished.
        (None, _) => "unfinished".to_string(),
        (Some(_), Some(code)) => code.to_string(),
        (Some(_), None) => "-".to_string(),
    };
    let mut result = result(run);
    if let Some(signal) = &run.interrupted {
        result = format!("interrupted by {signal}; {result}");
    }
    vec![
        run.id.to_string(),
        rfc3339(run.started),
        run.argv.clone().unwrap_or_else(|| run.command.clone()),
        exit,
        run.seconds.map(|s| format!("{s:.1}")).unwrap_or_default(),
        run.lock_wait.map(|s| format!("{s:.1}")).unwrap_or_default(),
        result,
    ]
}

/// One line of what the run did: a reconcile's counts, else its actions and errors.
fn result(run: &Run) -> String {
    let summary = parsed(&run.summary);
    let actions = parsed(&run.actions);
    let count = |key: &str| summary.get(key).and_then(Value::as_u64).unwrap_or(0);
    let failed_actions = actions
        .as_array()
        .map(|a| a.iter().filter(|x| !x["error"].is_null()).count())
        .unwrap_or(0);
    if summary.is_object() {
        format!(
            "launched {}, ready {}, deleted {}, failed {}; {} actions ({} failed), {} API calls",
            count("launched"),
            count("ready"),
            count("deleted"),
            count("failed"),
            actions.as_array().map_or(0, Vec::len),
            failed_actions,
            count("api_calls")
        )
    } else {
        let calls: u64 = parsed(&run.api_calls)
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        format!("{calls} API calls")
    }
}
