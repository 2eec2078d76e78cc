//! `nodepool hold ID`: keep a node indefinitely; no pass touches a held node.

use anyhow::Result;

use super::{mark_node, Context};
use crate::model::{NodeId, NodeState};

pub fn run(ctx: &Context, id: NodeId) -> Result<()> {
    mark_node(
        ctx,
        id,
        NodeState::Hold,
        // A node whose deletion has begun may already have lost its server.
        |state| state != NodeState::Delete,
        "no pass will touch it; `nodepool delete ID` releases it",
        "its deletion has begun, so it cannot be held",
    )
}
