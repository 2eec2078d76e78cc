//! `nodepool list`: nodes, with the 2015 columns.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::clock::{age_hours, rfc3339};
use crate::model::node::Node;
use crate::model::{LaunchPhase, NodeId};
use crate::output::{self, cell};
use crate::state::nodes;

const HEADERS: [&str; 11] = [
    "ID",
    "Provider",
    "AZ",
    "Label",
    "Target",
    "Hostname",
    "NodeName",
    "Server ID",
    "IP",
    "State",
    "Age (hours)",
];

/// One node in `--format json`; keys are a stable interface (more may be added).
#[derive(Serialize)]
struct NodeJson<'a> {
    id: NodeId,
    provider: &'a str,
    az: Option<&'a str>,
    label: &'a str,
    target: &'a str,
    hostname: &'a str,
    nodename: Option<&'a str>,
    server_id: Option<&'a str>,
    ip: Option<&'a str>,
    ip_private: Option<&'a str>,
    state: &'a str,
    state_time: String,
    age_hours: f64,
    launch_phase: Option<&'a str>,
    last_error: Option<&'a str>,
    owner: Option<&'a str>,
    comment: Option<&'a str>,
}

pub fn run(ctx: &Context) -> Result<()> {
    let db = ctx.open_db()?;
    let nodes = nodes::list(db.conn())?;
    output::listing(
        ctx.format,
        &HEADERS,
        &nodes,
        |n| to_json(n, ctx.now),
        |n| to_row(n, ctx.now),
    )
}

fn to_json(node: &Node, now: i64) -> NodeJson<'_> {
    NodeJson {
        id: node.id,
        provider: node.provider.as_str(),
        az: node.az.as_deref(),
        label: node.label.as_str(),
        target: node.target.as_str(),
        hostname: &node.hostname,
        nodename: node.nodename.as_deref(),
        server_id: node.external_id.as_deref(),
        ip: node.ip.as_deref(),
        ip_private: node.ip_private.as_deref(),
        state: node.state.as_str(),
        state_time: rfc3339(node.state_time),
        age_hours: age_hours(now, node.state_time),
        launch_phase: node.launch_phase.map(LaunchPhase::as_str),
        last_error: node.last_error.as_deref(),
        owner: node.owner.as_deref(),
        comment: node.comment.as_deref(),
    }
}

fn to_row(node: &Node, now: i64) -> Vec<String> {
    vec![
        node.id.to_string(),
        node.provider.to_string(),
        cell(&node.az),
        node.label.to_string(),
        node.target.to_string(),
        node.hostname.clone(),
        cell(&node.nodename),
        cell(&node.external_id),
        cell(&node.ip),
        node.state.to_string(),
        format!("{:.2}", age_hours(now, node.state_time)),
    ]
}
