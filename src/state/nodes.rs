//! Node rows and their transitions. Every state change is compare-and-set
//! (`UPDATE … WHERE id = ? AND state = ?`) and says whether it won, so an operator's `hold`
//! or `delete` typed while a pass runs is never overwritten by that pass.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::Hash;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::model::node::Node;
use crate::model::{LabelName, LaunchPhase, Member, NodeId, NodeState, ProviderName, TargetName};

/// What the launcher knows before the cloud call: enough to find the server again.
#[derive(Debug, Clone)]
pub struct NewNode {
    pub provider: ProviderName,
    pub label: LabelName,
    pub target: TargetName,
    pub state: NodeState,
    pub az: Option<String>,
    pub launch_phase: Option<LaunchPhase>,
    /// The cloud image the server boots from.
    pub image_external_id: Option<String>,
}

const COLUMNS: &str = "id, provider_name, label_name, target_name, manager_name, hostname, \
    nodename, external_id, az, ip, ip_private, state, state_time, comment, launch_phase, \
    launch_time, last_error, snapshot_image_id, image_external_id, owner, phase_time, \
    floating_ip_id";

fn from_row(row: &Row<'_>, names: &mut Names) -> rusqlite::Result<Node> {
    Ok(Node {
        id: row.get(0)?,
        provider: intern(&mut names.providers, row, 1)?,
        label: intern(&mut names.labels, row, 2)?,
        target: intern(&mut names.targets, row, 3)?,
        manager: row.get(4)?,
        hostname: row.get(5)?,
        nodename: row.get(6)?,
        external_id: row.get(7)?,
        az: row.get(8)?,
        ip: row.get(9)?,
        ip_private: row.get(10)?,
        state: row.get(11)?,
        state_time: row.get(12)?,
        comment: row.get(13)?,
        launch_phase: row.get(14)?,
        launch_time: row.get(15)?,
        last_error: row.get(16)?,
        snapshot_image_id: row.get(17)?,
        image_external_id: row.get(18)?,
        owner: row.get(19)?,
        phase_time: row.get(20)?,
        floating_ip_id: row.get(21)?,
    })
}

/// The provider, label and target names met so far in one query: ten thousand rows share a
/// few dozen names instead of holding a copy each.
#[derive(Default)]
struct Names {
    providers: HashSet<ProviderName>,
    labels: HashSet<LabelName>,
    targets: HashSet<TargetName>,
}

fn intern<T>(known: &mut HashSet<T>, row: &Row<'_>, column: usize) -> rusqlite::Result<T>
where
    T: Clone + Eq + Hash + Borrow<str> + for<'a> From<&'a str>,
{
    let text = row.get_ref(column)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
    })?;
    if let Some(name) = known.get(text) {
        return Ok(name.clone());
    }
    let name = T::from(text);
    known.insert(name.clone());
    Ok(name)
}

/// Every node, by id.
pub fn list(conn: &Connection) -> Result<Vec<Node>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM node ORDER BY id"))?;
    let mut names = Names::default();
    let rows = stmt.query_map([], |row| from_row(row, &mut names))?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading nodes")
}

/// The SSH host keys recorded for one member of a node's set (`known_hosts` lines).
pub fn host_keys(conn: &Connection, member: Member) -> Result<Option<String>> {
    let (table, id) = table_of(member);
    conn.query_row(
        &format!("SELECT host_keys FROM {table} WHERE id = ?1"),
        [id],
        |row| row.get(0),
    )
    .optional()
    .map(Option::flatten)
    .with_context(|| format!("reading the host keys of {member}"))
}

/// The table and row id of a member: the primary's node row or its subnode row.
fn table_of(member: Member) -> (&'static str, i64) {
    match member.subnode {
        None => ("node", member.node.0),
        Some(subnode) => ("subnode", subnode.0),
    }
}

pub fn get(conn: &Connection, id: NodeId) -> Result<Option<Node>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM node WHERE id = ?1"),
        [id],
        |row| from_row(row, &mut Names::default()),
    )
    .optional()
    .with_context(|| format!("reading node {id}"))
}

/// Insert a node row (the intent, committed before any cloud call) and return its id. The
/// hostname may depend on the id (`{node_id}`), so it is set in the same transaction.
pub fn insert(
    conn: &Connection,
    node: &NewNode,
    now: i64,
    hostname: impl FnOnce(NodeId) -> String,
) -> Result<(NodeId, String)> {
    super::durably(conn, || {
        super::in_savepoint(conn, || {
            conn.execute(
                "INSERT INTO node (provider_name, label_name, target_name, hostname, state, \
             state_time, az, launch_phase, launch_time, phase_time, image_external_id) \
             VALUES (?1, ?2, ?3, '', ?4, ?5, ?6, ?7, ?5, ?5, ?8)",
                params![
                    node.provider.as_str(),
                    node.label.as_str(),
                    node.target.as_str(),
                    node.state,
                    now,
                    node.az,
                    node.launch_phase,
                    node.image_external_id,
                ],
            )?;
            let id = NodeId(conn.last_insert_rowid());
            let hostname = hostname(id);
            conn.execute(
                "UPDATE node SET hostname = ?1 WHERE id = ?2",
                params![hostname, id],
            )?;
            Ok((id, hostname))
        })
    })
    .context("inserting node")
}

/// What a launch step learned about a node; None leaves a column as it is.
#[derive(Debug, Default, Clone)]
pub struct Progress<'a> {
    pub phase: Option<LaunchPhase>,
    pub external_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub ip_private: Option<&'a str>,
    pub host_keys: Option<&'a str>,
    pub last_error: Option<&'a str>,
    pub floating_ip_id: Option<&'a str>,
}

/// Record launch progress on a member still in `state` (compare-and-set: a node held or
/// deleted meanwhile is left alone). A new phase restarts `phase_time`.
pub fn progress(
    conn: &Connection,
    member: Member,
    state: NodeState,
    step: &Progress<'_>,
    now: i64,
) -> Result<bool> {
    let (table, id) = table_of(member);
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE {table} SET \
               launch_phase = COALESCE(?1, launch_phase), \
               phase_time = CASE WHEN ?1 IS NULL THEN phase_time ELSE ?2 END, \
               external_id = COALESCE(?3, external_id), \
               ip = COALESCE(?4, ip), ip_private = COALESCE(?5, ip_private), \
               host_keys = COALESCE(?6, host_keys), last_error = COALESCE(?7, last_error), \
               floating_ip_id = COALESCE(?10, floating_ip_id) \
             WHERE id = ?8 AND state = ?9"
        ))?
        .execute(params![
            step.phase,
            now,
            step.external_id,
            step.ip,
            step.ip_private,
            step.host_keys,
            step.last_error,
            id,
            state,
            step.floating_ip_id,
        ])
        .with_context(|| format!("updating {member}"))?;
    Ok(changed == 1)
}

/// How `begin_floating_ip` found a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatingIpIntent {
    /// Not building any more (held or deleted meanwhile): nothing to do.
    Gone,
    /// The intent is new.
    New,
    /// An earlier attempt's intent was there: an IP may have been allocated for the member
    /// and its id never recorded (the run died during the call).
    Again,
}

/// The intent before a floating IP is allocated for a building member: its phase says an IP
/// may exist for it. The phase's time is kept when it is there already, so retries do not
/// push boot-timeout back.
pub fn begin_floating_ip(conn: &Connection, member: Member, now: i64) -> Result<FloatingIpIntent> {
    let (table, id) = table_of(member);
    super::in_savepoint(conn, || {
        let phase: Option<Option<String>> = conn
            .query_row(
                &format!("SELECT launch_phase FROM {table} WHERE id = ?1 AND state = 'building'"),
                [id],
                |row| row.get(0),
            )
            .optional()?;
        let Some(phase) = phase else {
            return Ok(FloatingIpIntent::Gone);
        };
        if phase.as_deref() == Some(LaunchPhase::FloatingIp.as_str()) {
            return Ok(FloatingIpIntent::Again);
        }
        conn.execute(
            &format!(
                "UPDATE {table} SET launch_phase = 'floating-ip', phase_time = ?1 WHERE id = ?2"
            ),
            params![now, id],
        )?;
        Ok(FloatingIpIntent::New)
    })
    .with_context(|| format!("recording the floating IP intent of {member}"))
}

/// Forget a member's floating IP (released after a failed attach).
pub fn clear_floating_ip(conn: &Connection, member: Member) -> Result<()> {
    let (table, id) = table_of(member);
    conn.execute(
        &format!("UPDATE {table} SET floating_ip_id = NULL WHERE id = ?1"),
        [id],
    )
    .with_context(|| format!("forgetting the floating IP of {member}"))?;
    Ok(())
}

/// The floating IPs recorded for a node and its subnodes.
pub fn floating_ip_ids(conn: &Connection, id: NodeId) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT floating_ip_id FROM node WHERE id = ?1 AND floating_ip_id IS NOT NULL \
         UNION ALL SELECT floating_ip_id FROM subnode \
         WHERE node_id = ?1 AND floating_ip_id IS NOT NULL",
    )?;
    let rows = stmt.query_map([id], |row| row.get(0))?;
    rows.collect::<rusqlite::Result<_>>()
        .with_context(|| format!("reading the floating IPs of node {id}"))
}

/// Every floating IP any row records (a building node's may be being attached).
pub fn all_floating_ip_ids(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT floating_ip_id FROM node WHERE floating_ip_id IS NOT NULL \
         UNION ALL SELECT floating_ip_id FROM subnode WHERE floating_ip_id IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |row| row.get(0))?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading recorded floating IPs")
}

/// Record the server a create call made for a member whatever its state: a node held or
/// deleted while the call was out still names its server, so `list` shows it and nothing
/// has to find it by metadata.
pub fn record_server(conn: &Connection, member: Member, server_id: &str) -> Result<()> {
    let (table, id) = table_of(member);
    conn.execute(
        &format!("UPDATE {table} SET external_id = ?1 WHERE id = ?2 AND external_id IS NULL"),
        params![server_id, id],
    )
    .with_context(|| format!("recording the server of {member}"))?;
    Ok(())
}

/// Remove a member's row when its create call made no server: the node row if it is still
/// building, or the subnode row.
pub fn forget(conn: &Connection, member: Member) -> Result<bool> {
    let removed = match member.subnode {
        None => conn.execute(
            "DELETE FROM node WHERE id = ?1 AND state = 'building'",
            [member.node],
        ),
        Some(subnode) => conn.execute("DELETE FROM subnode WHERE id = ?1", [subnode]),
    }
    .with_context(|| format!("removing {member}"))?;
    Ok(removed == 1)
}

/// Move a node and its subnodes to `delete` from `from` (compare-and-set, one savepoint so
/// the set moves together), noting why.
pub fn mark_delete(
    conn: &Connection,
    id: NodeId,
    from: NodeState,
    why: &str,
    now: i64,
) -> Result<bool> {
    super::in_savepoint(conn, || {
        let changed = conn.execute(
            "UPDATE node SET state = 'delete', state_time = ?1, launch_phase = NULL, \
             phase_time = ?1, last_error = ?2 WHERE id = ?3 AND state = ?4",
            params![now, why, id, from],
        )?;
        if changed == 1 {
            conn.execute(
                "UPDATE subnode SET state = 'delete', state_time = ?1 WHERE node_id = ?2",
                params![now, id],
            )?;
        }
        Ok(changed == 1)
    })
    .with_context(|| format!("marking node {id} for deletion"))
}

/// Node `node` failed after its server was made (ERROR, a timeout, a failed ready script):
/// the provider/label cooldown counts it, and so does the image it booted from (a bad new
/// image is rolled back from).
pub fn record_launch_failure(
    conn: &Connection,
    node: NodeId,
    (provider, label): (&ProviderName, &LabelName),
    why: &str,
    now: i64,
) -> Result<()> {
    super::pass::record_failure(conn, provider, label, why, now)?;
    super::images::count_launch(conn, node, false)
}

/// Subnodes first, then the primary: building -> ready in one savepoint, and the
/// provider/label's failure count starts again. False when the primary was no longer
/// building (held or deleted meanwhile: its subnodes stay as the operator's state implies).
pub fn mark_ready(conn: &Connection, node: &Node, now: i64) -> Result<bool> {
    super::in_savepoint(conn, || {
        let moved = conn.execute(
            "UPDATE node SET state = 'ready', state_time = ?1, launch_phase = 'ready', \
             phase_time = ?1 WHERE id = ?2 AND state = 'building'",
            params![now, node.id],
        )?;
        if moved == 0 {
            return Ok(false);
        }
        conn.execute(
            "UPDATE subnode SET state = 'ready', state_time = ?1 \
             WHERE node_id = ?2 AND state = 'building'",
            params![now, node.id],
        )?;
        super::pass::record_success(conn, &node.provider, &node.label)?;
        super::images::count_launch(conn, node.id, true)?;
        Ok(true)
    })
    .with_context(|| format!("marking node {} ready", node.id))
}

/// Remove a node row (and its subnodes) if it is still in `state`; true when removed.
pub fn remove(conn: &Connection, id: NodeId, state: NodeState) -> Result<bool> {
    let removed = conn
        .execute(
            "DELETE FROM node WHERE id = ?1 AND state = ?2",
            params![id, state],
        )
        .with_context(|| format!("removing node {id}"))?;
    Ok(removed == 1)
}

/// Compare-and-set: move node `id` and its subnodes from `from` to `to`, together. False when
/// the node is gone or its state is no longer `from` (someone else won).
pub fn transition(
    conn: &Connection,
    id: NodeId,
    from: NodeState,
    to: NodeState,
    now: i64,
) -> Result<bool> {
    super::in_savepoint(conn, || {
        let changed = conn.execute(
            "UPDATE node SET state = ?1, state_time = ?2 WHERE id = ?3 AND state = ?4",
            params![to, now, id, from],
        )?;
        if changed == 1 {
            // The set moves together: a held or deleted node's subnodes are held or deleted.
            conn.execute(
                "UPDATE subnode SET state = ?1, state_time = ?2 WHERE node_id = ?3",
                params![to, now, id],
            )?;
        }
        Ok(changed == 1)
    })
    .with_context(|| format!("updating node {id} from {from} to {to}"))
}

/// Outcome of an operator's request to move a node to a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Done; the node was in `from`.
    Moved { from: NodeState },
    /// The node was in that state already.
    Already,
    /// The node's state does not allow it.
    Refused { state: NodeState },
    /// No node has that id.
    NoSuchNode,
}

/// How many times an operator request re-reads a node whose state changed under it.
const REQUEST_ATTEMPTS: usize = 5;

/// Move node `id` to `to` if `allowed(current state)`, re-reading when a concurrent writer
/// changes the state between the read and the compare-and-set.
pub fn request(
    conn: &Connection,
    id: NodeId,
    to: NodeState,
    allowed: impl Fn(NodeState) -> bool,
    now: i64,
) -> Result<Request> {
    for _ in 0..REQUEST_ATTEMPTS {
        let Some(node) = get(conn, id)? else {
            return Ok(Request::NoSuchNode);
        };
        if node.state == to {
            return Ok(Request::Already);
        }
        if !allowed(node.state) {
            return Ok(Request::Refused { state: node.state });
        }
        if transition(conn, id, node.state, to, now)? {
            return Ok(Request::Moved { from: node.state });
        }
    }
    anyhow::bail!("node {id} kept changing state; try again")
}

/// Server ids of every subnode that has one.
pub fn subnode_server_ids(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT external_id FROM subnode WHERE external_id IS NOT NULL")?;
    let rows = stmt.query_map([], |row| row.get(0))?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading subnodes")
}

/// Counts of nodes per (label, provider, state), for `status`.
pub fn counts(conn: &Connection) -> Result<Vec<(LabelName, ProviderName, NodeState, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT label_name, provider_name, state, COUNT(*) FROM node \
         GROUP BY label_name, provider_name, state ORDER BY label_name, provider_name",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
    })?;
    rows.collect::<rusqlite::Result<_>>()
        .context("counting nodes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Db;

    fn new_node(state: NodeState) -> NewNode {
        NewNode {
            provider: "p1".into(),
            label: "small".into(),
            target: "jenkins".into(),
            state,
            az: None,
            launch_phase: None,
            image_external_id: None,
        }
    }

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("n.db")).unwrap();
        (dir, db)
    }

    #[test]
    fn listed_rows_share_their_names() {
        let (_dir, db) = db();
        for _ in 0..3 {
            insert(db.conn(), &new_node(NodeState::Ready), 100, |_| "n".into()).unwrap();
        }
        let mut other = new_node(NodeState::Ready);
        other.provider = "p2".into();
        insert(db.conn(), &other, 100, |_| "n".into()).unwrap();
        let nodes = list(db.conn()).unwrap();
        let same = |a: &str, b: &str| std::ptr::eq(a.as_ptr(), b.as_ptr());
        assert!(same(nodes[0].provider.as_str(), nodes[2].provider.as_str()));
        assert!(same(nodes[0].label.as_str(), nodes[3].label.as_str()));
        assert!(same(nodes[1].target.as_str(), nodes[3].target.as_str()));
        assert_eq!(nodes[3].provider.as_str(), "p2");
        assert!(!same(
            nodes[0].provider.as_str(),
            nodes[3].provider.as_str()
        ));
    }

    #[test]
    fn compare_and_set_reports_whether_it_won() {
        let (_dir, db) = db();
        let id = insert(db.conn(), &new_node(NodeState::Ready), 100, |_| "n".into())
            .unwrap()
            .0;
        assert!(transition(db.conn(), id, NodeState::Ready, NodeState::Used, 200).unwrap());
        // The second writer expected `ready` and loses.
        assert!(!transition(db.conn(), id, NodeState::Ready, NodeState::Delete, 300).unwrap());
        let node = get(db.conn(), id).unwrap().unwrap();
        assert_eq!((node.state, node.state_time), (NodeState::Used, 200));
    }

    #[test]
    fn hold_typed_during_a_pass_wins() {
        let (_dir, db) = db();
        let id = insert(db.conn(), &new_node(NodeState::Ready), 100, |_| "n".into())
            .unwrap()
            .0;
        // The pass read the node as ready; the operator holds it before the pass writes.
        let seen_by_pass = get(db.conn(), id).unwrap().unwrap();
        let held = request(
            db.conn(),
            id,
            NodeState::Hold,
            |s| s != NodeState::Delete,
            150,
        )
        .unwrap();
        assert_eq!(
            held,
            Request::Moved {
                from: NodeState::Ready
            }
        );
        let pass_won =
            transition(db.conn(), id, seen_by_pass.state, NodeState::Delete, 160).unwrap();
        assert!(!pass_won);
        assert_eq!(get(db.conn(), id).unwrap().unwrap().state, NodeState::Hold);
    }

    #[test]
    fn requests_report_already_refused_and_missing() {
        let (_dir, db) = db();
        let id = insert(db.conn(), &new_node(NodeState::Delete), 100, |_| "n".into())
            .unwrap()
            .0;
        let not_delete = |s| s != NodeState::Delete;
        assert_eq!(
            request(db.conn(), id, NodeState::Hold, not_delete, 1).unwrap(),
            Request::Refused {
                state: NodeState::Delete
            }
        );
        assert_eq!(
            request(db.conn(), id, NodeState::Delete, not_delete, 1).unwrap(),
            Request::Already
        );
        assert_eq!(
            request(db.conn(), NodeId(999), NodeState::Delete, not_delete, 1).unwrap(),
            Request::NoSuchNode
        );
    }

    #[test]
    fn an_operators_hold_or_delete_moves_the_subnodes_with_their_node() {
        let (_dir, db) = db();
        let (id, _) = insert(db.conn(), &new_node(NodeState::Building), 1, |_| "n".into()).unwrap();
        crate::state::subnodes::insert(db.conn(), id, 1, |_| "s".into()).unwrap();
        let held = request(db.conn(), id, NodeState::Hold, |_| true, 2).unwrap();
        assert_eq!(
            held,
            Request::Moved {
                from: NodeState::Building
            }
        );
        let states = |db: &Db| -> Vec<NodeState> {
            crate::state::subnodes::of_node(db.conn(), id)
                .unwrap()
                .into_iter()
                .map(|s| s.state)
                .collect()
        };
        assert_eq!(states(&db), [NodeState::Hold]);
        request(db.conn(), id, NodeState::Delete, |_| true, 3).unwrap();
        assert_eq!(states(&db), [NodeState::Delete]);
    }

    #[test]
    fn counts_group_by_label_provider_state() {
        let (_dir, db) = db();
        for state in [NodeState::Ready, NodeState::Ready, NodeState::Building] {
            insert(db.conn(), &new_node(state), 1, |_| "n".into()).unwrap();
        }
        let counts = counts(db.conn()).unwrap();
        assert!(counts.contains(&("small".into(), "p1".into(), NodeState::Ready, 2)));
        assert!(counts.contains(&("small".into(), "p1".into(), NodeState::Building, 1)));
    }
}
