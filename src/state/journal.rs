//! The run journal (`run` table): one row per invocation of a command that changes
//! something, begun before the command does anything and finished with how it ended, so
//! `nodepool history` answers "why did it create 20 machines at 03:00" and a row left
//! unfinished is a run that was killed.

use anyhow::{Context, Result};
use rusqlite::{params, Connection};
use serde::Serialize;

/// How a run ended, written when it finishes.
#[derive(Debug, Default)]
pub struct Ending {
    pub exit_status: i32,
    pub interrupted: Option<&'static str>,
    pub seconds: f64,
    pub lock_wait: Option<f64>,
    /// JSON: API calls per provider and route.
    pub api_calls: String,
    /// JSON: the command's own summary (reconcile's counts, observed and done), or null.
    pub summary: Option<String>,
    /// JSON: every action planned, with its reason and result.
    pub actions: Option<String>,
}

/// Start a journal row; returns its id.
pub fn begin(
    conn: &Connection,
    (command, argv): (&str, &str),
    config_hash: &str,
    now: i64,
) -> Result<i64> {
    conn.execute(
        "INSERT INTO run (command, argv, config_hash, started) VALUES (?1, ?2, ?3, ?4)",
        params![command, argv, config_hash, now],
    )
    .context("writing the run journal")?;
    Ok(conn.last_insert_rowid())
}

/// Finish row `id`, and prune rows that started more than `keep_s` seconds ago.
pub fn finish(
    conn: &Connection,
    id: i64,
    ending: &Ending,
    (now, keep_s): (i64, i64),
) -> Result<()> {
    conn.execute(
        "UPDATE run SET finished = ?1, exit_status = ?2, interrupted = ?3, seconds = ?4, \
         lock_wait = ?5, api_calls = ?6, summary = ?7, actions = ?8 WHERE id = ?9",
        params![
            now,
            ending.exit_status,
            ending.interrupted,
            ending.seconds,
            ending.lock_wait,
            ending.api_calls,
            ending.summary,
            ending.actions,
            id
        ],
    )
    .context("finishing the run journal")?;
    // By when they finished: a long run still going keeps its row.
    conn.execute(
        "DELETE FROM run WHERE finished IS NOT NULL AND finished < ?1",
        [now - keep_s.max(1)],
    )
    .context("pruning the run journal")?;
    Ok(())
}

/// One row as `history` shows it.
#[derive(Debug, Serialize)]
pub struct Run {
    pub id: i64,
    pub command: String,
    pub argv: Option<String>,
    pub config_hash: Option<String>,
    pub started: i64,
    pub finished: Option<i64>,
    pub exit_status: Option<i32>,
    pub interrupted: Option<String>,
    pub seconds: Option<f64>,
    pub lock_wait: Option<f64>,
    pub api_calls: Option<String>,
    pub summary: Option<String>,
    pub actions: Option<String>,
}

/// The newest `limit` rows that started at `since` or later, newest first.
pub fn list(conn: &Connection, since: i64, limit: u32) -> Result<Vec<Run>> {
    let mut stmt = conn.prepare(
        "SELECT id, command, argv, config_hash, started, finished, exit_status, interrupted, \
         seconds, lock_wait, api_calls, summary, actions FROM run WHERE started >= ?1 \
         ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![since, limit], |row| {
        Ok(Run {
            id: row.get(0)?,
            command: row.get(1)?,
            argv: row.get(2)?,
            config_hash: row.get(3)?,
            started: row.get(4)?,
            finished: row.get(5)?,
            exit_status: row.get(6)?,
            interrupted: row.get(7)?,
            seconds: row.get(8)?,
            lock_wait: row.get(9)?,
            api_calls: row.get(10)?,
            summary: row.get(11)?,
            actions: row.get(12)?,
        })
    })?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading the run journal")
}

/// The newest finished run of each command: what the metrics' `last_run` families say.
pub fn last_of_each(conn: &Connection) -> Result<Vec<Run>> {
    let all = list(conn, 0, u32::MAX)?;
    let mut seen = std::collections::BTreeSet::new();
    Ok(all
        .into_iter()
        .filter(|r| r.finished.is_some())
        .filter(|r| seen.insert(r.command.clone()))
        .collect())
}
