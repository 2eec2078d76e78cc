//! Acquiring nodes for a pipeline (`acquire`): taking ready nodes in one transaction, and the
//! requests of `acquire --wait` that `reconcile` counts as demand.

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

use crate::model::node::NodeRequest;
use crate::model::{LabelName, NodeId};

/// Take `count` ready nodes of `label` (a primary with its subnodes counts as one), oldest
/// ready first, for `owner`: all of them move ready → used, compare-and-set, in one
/// transaction that holds the write lock from its start, so concurrent acquirers never get
/// the same node and none gets part of what it asked for. `None` when fewer are ready.
pub fn take_ready(
    conn: &Connection,
    label: &LabelName,
    count: u32,
    owner: &str,
    now: i64,
) -> Result<Option<Vec<NodeId>>> {
    super::in_savepoint(conn, || {
        let ids: Vec<NodeId> = {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM node WHERE label_name = ?1 AND state = 'ready' \
                 ORDER BY state_time, id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![label.as_str(), count], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        if ids.len() < count as usize {
            return Ok(None);
        }
        for id in &ids {
            let moved = conn.execute(
                "UPDATE node SET state = 'used', state_time = ?1, owner = ?2 \
                 WHERE id = ?3 AND state = 'ready'",
                params![now, owner, id],
            )?;
            if moved != 1 {
                // Another writer won it (the write lock makes this a bug, not a race): undo.
                anyhow::bail!("node {id} left ready while it was being acquired");
            }
            conn.execute(
                "UPDATE subnode SET state = 'used', state_time = ?1 \
                 WHERE node_id = ?2 AND state = 'ready'",
                params![now, id],
            )?;
        }
        Ok(Some(ids))
    })
    .with_context(|| format!("acquiring {count} nodes of {label}"))
}

/// Register the demand of an `acquire --wait` until `expires`; returns its id.
pub fn insert(
    conn: &Connection,
    (label, count, owner): (&LabelName, u32, &str),
    now: i64,
    expires: i64,
) -> Result<i64> {
    conn.execute(
        "INSERT INTO node_request (label_name, count, owner, created, expires) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![label.as_str(), count, owner, now, expires],
    )
    .with_context(|| format!("requesting {count} nodes of {label}"))?;
    Ok(conn.last_insert_rowid())
}

/// Withdraw a request (met, timed out, or interrupted).
pub fn remove(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM node_request WHERE id = ?1", [id])
        .with_context(|| format!("withdrawing node request {id}"))?;
    Ok(())
}

/// Take the nodes of request `id` if they are ready, and withdraw it in the same
/// transaction.
pub fn take_for(
    conn: &Connection,
    id: i64,
    (label, count, owner): (&LabelName, u32, &str),
    now: i64,
) -> Result<Option<Vec<NodeId>>> {
    super::in_savepoint(conn, || {
        let taken = take_ready(conn, label, count, owner, now)?;
        if taken.is_some() {
            remove(conn, id)?;
        }
        Ok(taken)
    })
}

/// Every request, expired ones included (the planner ignores those, `cleanup` drops them).
pub fn all(conn: &Connection) -> Result<Vec<NodeRequest>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, label_name, count, owner, created, expires FROM node_request ORDER BY id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(NodeRequest {
            id: row.get(0)?,
            label: LabelName::from(row.get::<_, String>(1)?),
            count: row.get(2)?,
            owner: row.get(3)?,
            created: row.get(4)?,
            expires: row.get(5)?,
        })
    })?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading node requests")
}

/// Drop requests whose `acquire --wait` is over (its process died before withdrawing them).
pub fn forget_expired(conn: &Connection, now: i64) -> Result<usize> {
    conn.execute("DELETE FROM node_request WHERE expires < ?1", [now])
        .context("dropping expired node requests")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeState;
    use crate::state::nodes::{self, NewNode};
    use crate::state::Db;

    fn ready_node(db: &Db, label: &str) -> NodeId {
        let new = NewNode {
            provider: "p1".into(),
            label: label.into(),
            target: "t".into(),
            state: NodeState::Ready,
            az: None,
            launch_phase: None,
            image_external_id: None,
        };
        nodes::insert(db.conn(), &new, 10, |id| format!("n{id}"))
            .unwrap()
            .0
    }

    #[test]
    fn all_or_nothing_and_never_a_node_twice() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("n.db")).unwrap();
        let label = LabelName::from("small");
        let a = ready_node(&db, "small");
        let b = ready_node(&db, "small");
        ready_node(&db, "large");
        assert_eq!(take_ready(db.conn(), &label, 3, "ci", 20).unwrap(), None);
        assert_eq!(
            take_ready(db.conn(), &label, 1, "ci", 20).unwrap(),
            Some(vec![a])
        );
        assert_eq!(
            take_ready(db.conn(), &label, 1, "ci", 20).unwrap(),
            Some(vec![b])
        );
        assert_eq!(take_ready(db.conn(), &label, 1, "ci", 20).unwrap(), None);
        let node = nodes::get(db.conn(), a).unwrap().unwrap();
        assert_eq!(
            (node.state, node.owner.as_deref()),
            (NodeState::Used, Some("ci"))
        );
    }

    #[test]
    fn a_request_met_is_withdrawn_with_the_taking() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("n.db")).unwrap();
        let label = LabelName::from("small");
        let id = insert(db.conn(), (&label, 1, "ci"), 10, 70).unwrap();
        assert_eq!(
            take_for(db.conn(), id, (&label, 1, "ci"), 20).unwrap(),
            None
        );
        assert_eq!(all(db.conn()).unwrap().len(), 1);
        let node = ready_node(&db, "small");
        assert_eq!(
            take_for(db.conn(), id, (&label, 1, "ci"), 30).unwrap(),
            Some(vec![node])
        );
        assert!(all(db.conn()).unwrap().is_empty());
        insert(db.conn(), (&label, 1, "ci"), 10, 70).unwrap();
        assert_eq!(forget_expired(db.conn(), 71).unwrap(), 1);
    }
}
