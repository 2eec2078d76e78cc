//! `nodepool release ID`: give back a node `acquire` handed out. Nodes are single use, so it
//! is marked for deletion (used → delete, compare-and-set); the next reconcile deletes it.

use anyhow::{bail, Result};

use super::Context;
use crate::model::{NodeId, NodeState};
use crate::output;
use crate::state::nodes::{self, Request};

pub fn run(ctx: &Context, id: NodeId) -> Result<()> {
    let db = ctx.open_db()?;
    let conn = db.conn();
    let Some(node) = nodes::get(conn, id)? else {
        bail!("no node with id {id} (see `nodepool list`)");
    };
    let Some(owner) = node.owner.clone() else {
        bail!(
            "node {id} was not acquired (it is {}): only nodes `nodepool acquire` handed out \
             are released; `nodepool delete {id}` deletes any node",
            node.state
        );
    };
    let acquired = |state| state == NodeState::Used;
    match nodes::request(conn, id, NodeState::Delete, acquired, ctx.now)? {
        Request::NoSuchNode => bail!("no node with id {id} (see `nodepool list`)"),
        Request::Already => output::line(&format!(
            "node {id} was released already: it is being deleted"
        )),
        Request::Refused { state } => bail!(
            "node {id} (acquired by {owner}) is in state {state}, not used: it cannot be released"
        ),
        Request::Moved { .. } => output::line(&format!(
            "node {id}: released by {owner}; it will be deleted"
        )),
    }
}
