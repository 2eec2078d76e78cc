//! Subnode rows: the extra servers of a multi-node label, launched for their primary and
//! ready only together with it. Same compare-and-set rules as nodes.

use anyhow::{Context, Result};
use rusqlite::{params, Connection, Row};

use super::nodes::{progress_in, Progress};
use crate::model::{NodeId, NodeState};

#[derive(Debug, Clone, PartialEq)]
pub struct Subnode {
    pub id: i64,
    pub node_id: NodeId,
    pub hostname: String,
    pub external_id: Option<String>,
    pub ip: Option<String>,
    pub ip_private: Option<String>,
    pub state: NodeState,
    pub state_time: i64,
    pub launch_phase: Option<String>,
    pub phase_time: Option<i64>,
    pub last_error: Option<String>,
    pub host_keys: Option<String>,
}

const COLUMNS: &str = "id, node_id, hostname, external_id, ip, ip_private, state, state_time, \
    launch_phase, phase_time, last_error, host_keys";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Subnode> {
    Ok(Subnode {
        id: row.get(0)?,
        node_id: row.get(1)?,
        hostname: row.get(2)?,
        external_id: row.get(3)?,
        ip: row.get(4)?,
        ip_private: row.get(5)?,
        state: row.get(6)?,
        state_time: row.get(7)?,
        launch_phase: row.get(8)?,
        phase_time: row.get(9)?,
        last_error: row.get(10)?,
        host_keys: row.get(11)?,
    })
}

/// Every subnode, by primary then id.
pub fn list(conn: &Connection) -> Result<Vec<Subnode>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM subnode ORDER BY node_id, id"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading subnodes")
}

/// Insert a subnode of `node_id` (intent before the create call); the hostname may use the
/// subnode's id. Nothing is inserted unless the primary is still building.
pub fn insert(
    conn: &Connection,
    node_id: NodeId,
    now: i64,
    hostname: impl FnOnce(i64) -> String,
) -> Result<Option<(i64, String)>> {
    super::in_savepoint(conn, || {
        let changed = conn.execute(
            "INSERT INTO subnode (node_id, hostname, state, state_time, launch_phase, phase_time) \
             SELECT id, '', 'building', ?2, 'requested', ?2 FROM node \
             WHERE id = ?1 AND state = 'building'",
            params![node_id, now],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        let id = conn.last_insert_rowid();
        let hostname = hostname(id);
        conn.execute(
            "UPDATE subnode SET hostname = ?1 WHERE id = ?2",
            params![hostname, id],
        )?;
        Ok(Some((id, hostname)))
    })
    .with_context(|| format!("inserting a subnode of node {node_id}"))
}

/// Record launch progress on a subnode still in `state`.
pub fn progress(
    conn: &Connection,
    id: i64,
    state: NodeState,
    step: &Progress<'_>,
    now: i64,
) -> Result<bool> {
    progress_in(conn, "subnode", id, state, step, now)
}

/// Remove one subnode row (its server never appeared or is gone).
pub fn remove(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM subnode WHERE id = ?1", [id])
        .with_context(|| format!("removing subnode {id}"))?;
    Ok(())
}

/// Move every subnode of `node_id` in state `from` to `to`.
pub fn transition_all(
    conn: &Connection,
    node_id: NodeId,
    from: NodeState,
    to: NodeState,
    now: i64,
) -> Result<()> {
    conn.execute(
        "UPDATE subnode SET state = ?1, state_time = ?2 WHERE node_id = ?3 AND state = ?4",
        params![to, now, node_id, from],
    )
    .with_context(|| format!("updating the subnodes of node {node_id}"))?;
    Ok(())
}

/// The subnodes of one node.
pub fn of_node(conn: &Connection, node_id: NodeId) -> Result<Vec<Subnode>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM subnode WHERE node_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([node_id], from_row)?;
    rows.collect::<rusqlite::Result<_>>()
        .with_context(|| format!("reading the subnodes of node {node_id}"))
}
