//! `nodepool alien-list [PROVIDER]`: servers in the clouds that the database does not know.
//! Those carrying nodepool's metadata were leaked by nodepool itself; the others belong to
//! someone else and are never touched.

use std::collections::BTreeSet;

use anyhow::Result;
use serde::Serialize;

use super::{for_each_provider, Context};
use crate::cloud::Cloud;
use crate::output;
use crate::state::{images, nodes};

const HEADERS: [&str; 5] = ["Provider", "Hostname", "Server ID", "IP", "Nodepool"];

#[derive(Serialize)]
struct Alien {
    provider: String,
    hostname: String,
    server_id: String,
    ip: Option<String>,
    /// The server carries nodepool's metadata: nodepool created it and lost track of it.
    nodepool_metadata: bool,
    /// The node id its metadata names, when it has one.
    node_id: Option<String>,
}

pub fn run(ctx: &Context, provider: Option<&str>) -> Result<()> {
    let db = ctx.open_db()?;
    let mut known: BTreeSet<String> = nodes::list(db.conn())?
        .into_iter()
        .filter_map(|n| n.external_id)
        .collect();
    known.extend(nodes::subnode_server_ids(db.conn())?);
    // Servers booted to make snapshot images belong to their image row.
    known.extend(
        images::list_provider_images(db.conn())?
            .into_iter()
            .filter_map(|i| i.server_external_id),
    );
    let mut aliens = Vec::new();
    let unreachable = for_each_provider(ctx, provider, |name, cloud| {
        for server in cloud.list_servers()? {
            if known.contains(&server.id) {
                continue;
            }
            aliens.push(Alien {
                provider: name.to_string(),
                nodepool_metadata: server.metadata.contains_key("nodepool_provider_name")
                    || server.metadata.contains_key("nodepool_node_id"),
                node_id: server.metadata.get("nodepool_node_id").map(str::to_string),
                ip: server.public_v4.or(server.public_v6).or(server.private_v4),
                hostname: server.name,
                server_id: server.id,
            });
        }
        Ok(())
    })?;
    output::listing(
        ctx.format,
        &HEADERS,
        &aliens,
        |a| a,
        |a| {
            vec![
                a.provider.clone(),
                a.hostname.clone(),
                a.server_id.clone(),
                a.ip.clone().unwrap_or_default(),
                leaked(a.nodepool_metadata),
            ]
        },
    )?;
    unreachable.into_result()
}

/// The `Nodepool` column: `leaked` for resources carrying nodepool's metadata.
pub(super) fn leaked(nodepool_metadata: bool) -> String {
    if nodepool_metadata { "leaked" } else { "" }.to_string()
}
