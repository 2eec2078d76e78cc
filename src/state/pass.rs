//! What one reconcile pass leaves for the next: cooldowns, the last allocation (fairness and
//! `status`), leak sightings, and the run journal. No process lives between passes, so this
//! memory is rows.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

use crate::model::{LabelName, ProviderName};

/// This installation's id, written into every server's metadata.
pub fn installation(conn: &Connection) -> Result<String> {
    conn.query_row("SELECT id FROM installation", [], |r| r.get(0))
        .context("reading the installation id")
}

/// A provider/label that failed repeatedly, or a provider out of quota (`label` empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cooldown {
    pub provider: ProviderName,
    /// None: the whole provider (quota).
    pub label: Option<LabelName>,
    pub reason: String,
    pub failures: u32,
    pub until: i64,
    pub last_error: Option<String>,
}

pub fn cooldowns(conn: &Connection) -> Result<Vec<Cooldown>> {
    let mut stmt = conn.prepare_cached(
        "SELECT provider_name, label_name, reason, failures, until, last_error FROM cooldown \
         ORDER BY provider_name, label_name",
    )?;
    let rows = stmt.query_map([], |row| {
        let label: String = row.get(1)?;
        Ok(Cooldown {
            provider: row.get(0)?,
            label: (!label.is_empty()).then_some(LabelName::from(label)),
            reason: row.get(2)?,
            failures: row.get(3)?,
            until: row.get(4)?,
            last_error: row.get(5)?,
        })
    })?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading cooldowns")
}

/// First cooldown after this many failures in a row; shorter runs of bad luck just retry.
const FAILURES_BEFORE_COOLDOWN: u32 = 2;
const COOLDOWN_FIRST_S: i64 = 10;
const COOLDOWN_MAX_S: i64 = 600;
/// A quota refusal blocks the provider this long before launches are tried again.
pub const QUOTA_WAIT_S: i64 = 60;

/// How long a provider/label waits after `failures` failures in a row: 0 for the first,
/// then 10 s doubling to 10 min.
pub fn cooldown_seconds(failures: u32) -> i64 {
    if failures < FAILURES_BEFORE_COOLDOWN {
        return 0;
    }
    let doublings = (failures - FAILURES_BEFORE_COOLDOWN).min(16);
    (COOLDOWN_FIRST_S << doublings).min(COOLDOWN_MAX_S)
}

/// Count one more launch or ready failure of `label` on `provider`; returns the cooldown.
pub fn record_failure(
    conn: &Connection,
    provider: &ProviderName,
    label: &LabelName,
    error: &str,
    now: i64,
) -> Result<Cooldown> {
    let failures: u32 = conn
        .query_row(
            "SELECT failures FROM cooldown WHERE provider_name = ?1 AND label_name = ?2",
            params![provider.as_str(), label.as_str()],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0)
        + 1;
    let until = now + cooldown_seconds(failures);
    conn.execute(
        "INSERT INTO cooldown (provider_name, label_name, reason, failures, until, last_error) \
         VALUES (?1, ?2, 'failures', ?3, ?4, ?5) \
         ON CONFLICT (provider_name, label_name) DO UPDATE SET \
         failures = excluded.failures, until = excluded.until, last_error = excluded.last_error",
        params![provider.as_str(), label.as_str(), failures, until, error],
    )
    .with_context(|| format!("recording a failure of {label} on {provider}"))?;
    Ok(Cooldown {
        provider: provider.clone(),
        label: Some(label.clone()),
        reason: "failures".into(),
        failures,
        until,
        last_error: Some(error.into()),
    })
}

/// A node of `label` became ready on `provider`: its failure count starts again.
pub fn record_success(conn: &Connection, provider: &ProviderName, label: &LabelName) -> Result<()> {
    conn.execute(
        "DELETE FROM cooldown WHERE provider_name = ?1 AND label_name = ?2",
        params![provider.as_str(), label.as_str()],
    )?;
    Ok(())
}

/// The provider refused a launch for quota: no launches there for a while. Not a failure.
pub fn record_quota(
    conn: &Connection,
    provider: &ProviderName,
    error: &str,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO cooldown (provider_name, label_name, reason, failures, until, last_error) \
         VALUES (?1, '', 'quota', 0, ?2, ?3) \
         ON CONFLICT (provider_name, label_name) DO UPDATE SET \
         until = excluded.until, last_error = excluded.last_error",
        params![provider.as_str(), now + QUOTA_WAIT_S, error],
    )?;
    Ok(())
}

/// One label's share on one provider in the last pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub label: LabelName,
    pub provider: ProviderName,
    pub deficit: u32,
    pub granted: u32,
    /// What kept the label from getting its deficit here (`at max-servers`, `quota`, …).
    pub blocker: Option<String>,
    pub time: i64,
}

pub fn allocations(conn: &Connection) -> Result<Vec<Allocation>> {
    let mut stmt = conn.prepare_cached(
        "SELECT label_name, provider_name, deficit, granted, blocker, time FROM allocation \
         ORDER BY label_name, provider_name",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(Allocation {
            label: row.get(0)?,
            provider: row.get(1)?,
            deficit: row.get(2)?,
            granted: row.get(3)?,
            blocker: row.get(4)?,
            time: row.get(5)?,
        })
    })?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading the last allocation")
}

/// Replace the stored allocation of the providers in `providers` with `rows`.
pub fn store_allocations(
    conn: &Connection,
    providers: &[ProviderName],
    rows: &[Allocation],
) -> Result<()> {
    let tx = conn.unchecked_transaction()?;
    for provider in providers {
        tx.execute(
            "DELETE FROM allocation WHERE provider_name = ?1",
            [provider.as_str()],
        )?;
    }
    for row in rows {
        tx.execute(
            "INSERT OR REPLACE INTO allocation \
             (label_name, provider_name, deficit, granted, blocker, time) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                row.label.as_str(),
                row.provider.as_str(),
                row.deficit,
                row.granted,
                row.blocker,
                row.time
            ],
        )?;
    }
    tx.commit().context("storing the allocation")
}

/// When a leaked server was first and last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    pub first_seen: i64,
    pub last_seen: i64,
}

pub fn leaks(conn: &Connection) -> Result<BTreeMap<(ProviderName, String), Sighting>> {
    let mut stmt =
        conn.prepare_cached("SELECT provider_name, server_id, first_seen, last_seen FROM leak")?;
    let rows = stmt.query_map([], |row| {
        Ok((
            (row.get(0)?, row.get(1)?),
            Sighting {
                first_seen: row.get(2)?,
                last_seen: row.get(3)?,
            },
        ))
    })?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading leak sightings")
}

/// Note that `server_id` was seen leaked now (the first sighting keeps its time).
pub fn sight_leak(
    conn: &Connection,
    provider: &ProviderName,
    server_id: &str,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO leak (provider_name, server_id, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3) \
         ON CONFLICT (provider_name, server_id) DO UPDATE SET last_seen = excluded.last_seen",
        params![provider.as_str(), server_id, now],
    )?;
    Ok(())
}

pub fn forget_leak(conn: &Connection, provider: &ProviderName, server_id: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM leak WHERE provider_name = ?1 AND server_id = ?2",
        params![provider.as_str(), server_id],
    )?;
    Ok(())
}

/// Start a journal entry; returns its id.
pub fn begin_run(conn: &Connection, command: &str, now: i64) -> Result<i64> {
    conn.execute(
        "INSERT INTO run (command, started) VALUES (?1, ?2)",
        params![command, now],
    )
    .context("writing the run journal")?;
    Ok(conn.last_insert_rowid())
}

/// Finish a journal entry with its summary (JSON). Only the last 1000 runs are kept.
pub fn finish_run(conn: &Connection, id: i64, summary: &str, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE run SET finished = ?1, summary = ?2 WHERE id = ?3",
        params![now, summary, id],
    )?;
    conn.execute("DELETE FROM run WHERE id <= ?1 - 1000", [id])?;
    Ok(())
}
