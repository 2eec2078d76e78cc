//! `nodepool delete ID [--now]`: mark a node for deletion; the next pass deletes its server,
//! then its row once the server is gone.

use anyhow::Result;

use super::{mark_node, Context};
use crate::cli::DeleteArgs;
use crate::exit::NotImplemented;
use crate::model::NodeState;

pub fn run(ctx: &Context, args: &DeleteArgs) -> Result<()> {
    if args.now {
        // Needs the cloud client; refuse before changing anything.
        return Err(NotImplemented("delete --now").into());
    }
    mark_node(
        ctx,
        args.id,
        NodeState::Delete,
        |_| true,
        "the next `nodepool reconcile` deletes its server",
        "",
    )
}
