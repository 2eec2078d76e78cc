//! `nodepool delete ID [--now]`: mark a node for deletion; the next pass deletes its servers,
//! then its row once they are gone. `--now` does all of that in the foreground: it deletes
//! the servers through the same path a pass uses, waits (bounded) until the cloud no longer
//! has them, and removes the row.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::{mark_node, Context};
use crate::cli::{DeleteArgs, Format};
use crate::cloud::Cloud;
use crate::execute::{delete_node_servers, servers_of_node};
use crate::model::{NodeId, NodeState};
use crate::output;
use crate::state::{nodes, pass, subnodes};

/// `--now` waits this long for the cloud to forget the servers.
const WAIT_GONE: Duration = Duration::from_secs(120);
const POLL_MIN: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(3);

pub fn run(ctx: &Context, args: &DeleteArgs) -> Result<()> {
    if !args.now {
        return mark_node(
            ctx,
            args.id,
            NodeState::Delete,
            |_| true,
            "the next `nodepool reconcile` deletes its server",
            "",
        );
    }
    delete_now(ctx, args.id)
}

#[derive(serde::Serialize)]
struct Deleted {
    id: NodeId,
    servers_deleted: Vec<String>,
    seconds: f64,
}

fn delete_now(ctx: &Context, id: NodeId) -> Result<()> {
    let started = Instant::now();
    let db = ctx.open_db()?;
    let conn = db.conn();
    let outcome = nodes::request(conn, id, NodeState::Delete, |_| true, ctx.now)?;
    if outcome == nodes::Request::NoSuchNode {
        bail!("no node with id {id} (see `nodepool list`)");
    }
    let node = nodes::get(conn, id)?.with_context(|| format!("node {id} vanished"))?;
    let provider = ctx.config.providers.get(&node.provider).with_context(|| {
        format!(
            "node {id} is on provider `{}`, which is no longer configured, so its servers \
             cannot be deleted from here; it stays in state delete",
            node.provider
        )
    })?;
    let cloud = crate::cloud::connect(provider, ctx.calls.clone(), None)
        .with_context(|| format!("node {id}: connecting to {}", node.provider))?;
    let mut servers: Vec<String> = node.external_id.iter().cloned().collect();
    servers.extend(
        subnodes::of_node(conn, id)?
            .into_iter()
            .filter_map(|s| s.external_id),
    );
    if node.external_id.is_none() {
        // A launch that never recorded its server: find it by this installation's metadata.
        let installation = pass::installation(conn)?;
        let listed = cloud.list_servers()?;
        let made = servers_of_node(&listed, &installation, provider.name.as_str(), id);
        servers.extend(made.into_iter().map(|s| s.id.clone()));
        servers.sort();
        servers.dedup();
    }
    delete_node_servers(&cloud, conn, provider, id, &servers, ctx.now)
        .with_context(|| format!("node {id}"))?;
    let mut left = servers.clone();
    let mut poll = POLL_MIN;
    while !left.is_empty() {
        let mut still = Vec::new();
        for server in left {
            if cloud.get_server(&server)?.is_some() {
                still.push(server);
            }
        }
        left = still;
        if left.is_empty() {
            break;
        }
        if started.elapsed() >= WAIT_GONE {
            bail!(
                "node {id}: server {} still exists after {} s; the node stays in state \
                 delete and the next `nodepool reconcile` removes it once the cloud has",
                left.join(", "),
                WAIT_GONE.as_secs()
            );
        }
        std::thread::sleep(poll);
        poll = (poll * 2).min(POLL_MAX);
    }
    nodes::remove(conn, id, NodeState::Delete)?;
    let done = Deleted {
        id,
        servers_deleted: servers,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    };
    match ctx.format {
        Format::Json => output::json(&done),
        Format::Table => output::line(&format!(
            "node {id} deleted ({} server{} gone, {:.1} s)",
            done.servers_deleted.len(),
            if done.servers_deleted.len() == 1 {
                ""
            } else {
                "s"
            },
            done.seconds
        )),
    }
}
