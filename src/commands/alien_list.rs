//! `nodepool alien-list [PROVIDER]`: servers in the clouds that the database does not know.
//! Those carrying nodepool's metadata were leaked by nodepool itself; the others belong to
//! someone else and are never touched.

use std::collections::BTreeSet;

use anyhow::Result;
use serde::Serialize;

use super::{for_each_provider, Context};
use crate::cloud::meta;
use crate::cloud::Cloud;
use crate::output;
use crate::state::{images, nodes, pass};

const HEADERS: [&str; 5] = ["Provider", "Hostname", "Server ID", "IP", "Nodepool"];

#[derive(Serialize)]
struct Alien {
    provider: String,
    hostname: String,
    server_id: String,
    ip: Option<String>,
    /// The server carries nodepool's metadata: a nodepool created it.
    nodepool_metadata: bool,
    /// ... but another installation (another database) did: not this one's leak.
    other_installation: bool,
    /// The node id its metadata names, when it has one.
    node_id: Option<String>,
}

pub fn run(ctx: &Context, provider: Option<&str>) -> Result<()> {
    let db = ctx.read_db()?;
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
    let installation = pass::installation(db.conn())?;
    let mut aliens = Vec::new();
    let unreachable = for_each_provider(ctx, provider, |name, cloud| {
        for server in cloud.list_servers()? {
            if known.contains(&server.id) {
                continue;
            }
            let made_by = server.metadata.get(meta::INSTALLATION);
            aliens.push(Alien {
                provider: name.to_string(),
                nodepool_metadata: made_by.is_some()
                    || server.metadata.contains_key(meta::PROVIDER)
                    || server.metadata.contains_key(meta::NODE_ID),
                other_installation: made_by.is_some_and(|id| id != installation),
                node_id: server.metadata.get(meta::NODE_ID).map(str::to_string),
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
                made_by(a.nodepool_metadata, a.other_installation),
            ]
        },
    )?;
    unreachable.into_result()
}

/// The `Nodepool` column: `leaked` for resources this installation made and lost track of,
/// `other installation` for another nodepool's (a staging one on the same project), empty
/// for everyone else's.
pub(super) fn made_by(nodepool_metadata: bool, other_installation: bool) -> String {
    match (nodepool_metadata, other_installation) {
        (_, true) => "other installation",
        (true, false) => "leaked",
        (false, false) => "",
    }
    .to_string()
}
