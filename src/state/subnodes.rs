//! Subnode rows: the extra servers of a multi-node label, launched for their primary and
//! ready only together with it. Same compare-and-set rules as nodes.

use anyhow::{Context, Result};
use rusqlite::{params, Connection, Row};

use crate::model::node::Subnode;
use crate::model::{NodeId, SubnodeId};

const COLUMNS: &str = "id, node_id, hostname, external_id, ip, ip_private, state, state_time, \
    launch_phase, phase_time, last_error, floating_ip_id";

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
        floating_ip_id: row.get(11)?,
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
    hostname: impl FnOnce(SubnodeId) -> String,
) -> Result<Option<(SubnodeId, String)>> {
    super::durably(conn, || {
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
            let id = SubnodeId(conn.last_insert_rowid());
            let hostname = hostname(id);
            conn.execute(
                "UPDATE subnode SET hostname = ?1 WHERE id = ?2",
                params![hostname, id],
            )?;
            Ok(Some((id, hostname)))
        })
    })
    .with_context(|| format!("inserting a subnode of node {node_id}"))
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
