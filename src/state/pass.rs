//! What one reconcile pass leaves for the next, as facts (`model::pass`): cooldowns, the last allocation (fairness and
//! `status`), leak sightings, and the run journal. No process lives between passes, so this
//! memory is rows.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

use crate::model::pass::{Allocation, Cooldown, Sighting};
use crate::model::{LabelName, ProviderName};

/// This installation's id, written into every server's metadata.
pub fn installation(conn: &Connection) -> Result<String> {
    conn.query_row("SELECT id FROM installation", [], |r| r.get(0))
        .context("reading the installation id")
}

pub fn cooldowns(conn: &Connection) -> Result<Vec<Cooldown>> {
    let mut stmt = conn.prepare_cached(
        "SELECT provider_name, label_name, failures, last_time, last_error FROM cooldown \
         ORDER BY provider_name, label_name",
    )?;
    let rows = stmt.query_map([], |row| {
        let label: String = row.get(1)?;
        Ok(Cooldown {
            provider: row.get(0)?,
            label: (!label.is_empty()).then_some(LabelName::from(label)),
            failures: row.get(2)?,
            last_time: row.get(3)?,
            last_error: row.get(4)?,
        })
    })?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading cooldowns")
}

/// Count one more launch or ready failure of `label` on `provider`, in one statement so two
/// workers failing at once count two.
pub fn record_failure(
    conn: &Connection,
    provider: &ProviderName,
    label: &LabelName,
    error: &str,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO cooldown (provider_name, label_name, reason, failures, last_time, last_error) \
         VALUES (?1, ?2, 'failures', 1, ?3, ?4) \
         ON CONFLICT (provider_name, label_name) DO UPDATE SET \
         failures = failures + 1, last_time = excluded.last_time, \
         last_error = excluded.last_error",
        params![provider.as_str(), label.as_str(), now, error],
    )
    .with_context(|| format!("recording a failure of {label} on {provider}"))?;
    Ok(())
}

/// A node of `label` became ready on `provider`: its failure count starts again.
pub fn record_success(conn: &Connection, provider: &ProviderName, label: &LabelName) -> Result<()> {
    conn.execute(
        "DELETE FROM cooldown WHERE provider_name = ?1 AND label_name = ?2",
        params![provider.as_str(), label.as_str()],
    )?;
    Ok(())
}

/// The provider refused a launch for quota (a state to wait out, not a failure).
pub fn record_quota(
    conn: &Connection,
    provider: &ProviderName,
    error: &str,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO cooldown (provider_name, label_name, reason, failures, last_time, last_error) \
         VALUES (?1, '', 'quota', 0, ?2, ?3) \
         ON CONFLICT (provider_name, label_name) DO UPDATE SET \
         last_time = excluded.last_time, last_error = excluded.last_error",
        params![provider.as_str(), now, error],
    )?;
    Ok(())
}

pub fn allocations(conn: &Connection) -> Result<Vec<Allocation>> {
    let mut stmt = conn.prepare_cached(
        "SELECT label_name, provider_name, deficit, granted, blocker, time FROM allocation \
         ORDER BY label_name, provider_name",
    )?;
    let rows = stmt.query_map([], |row| {
        let blocker: Option<String> = row.get(4)?;
        Ok(Allocation {
            label: row.get(0)?,
            provider: row.get(1)?,
            deficit: row.get(2)?,
            granted: row.get(3)?,
            blocker: blocker
                .map(|json| serde_json::from_str(&json))
                .transpose()
                .map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        4,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
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
                row.blocker
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()?,
                row.time
            ],
        )?;
    }
    tx.commit().context("storing the allocation")
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
