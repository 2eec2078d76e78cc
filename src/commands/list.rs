//! `nodepool list`: nodes, with the 2015 columns; a node's subnodes follow it as rows of
//! their own (ID `NODE.SUBNODE`), and in JSON as its `subnodes`.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::clock::{age_hours, rfc3339};
use std::collections::BTreeMap;

use crate::cli::Format;
use crate::model::node::{Node, Subnode};
use crate::model::{LaunchPhase, NodeId, SubnodeId};
use crate::output::{self, cell};
use crate::state::{nodes, subnodes};

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
    /// The node's subnodes (multi-node labels); empty for the others.
    subnodes: Vec<SubnodeJson<'a>>,
}

pub fn run(ctx: &Context) -> Result<()> {
    let db = ctx.read_db()?;
    let nodes = nodes::list(db.conn())?;
    let mut subnodes: BTreeMap<NodeId, Vec<Subnode>> = BTreeMap::new();
    for sub in subnodes::list(db.conn())? {
        subnodes.entry(sub.node_id).or_default().push(sub);
    }
    let of = |node: &Node| subnodes.get(&node.id).map(Vec::as_slice).unwrap_or(&[]);
    match ctx.format {
        Format::Json => output::json(
            &nodes
                .iter()
                .map(|n| to_json(n, of(n), ctx.now))
                .collect::<Vec<_>>(),
        ),
        Format::Table => {
            let mut rows = Vec::with_capacity(nodes.len());
            for node in &nodes {
                rows.push(to_row(node, ctx.now));
                // A node's subnodes follow it, their ID as NODE.SUBNODE.
                rows.extend(of(node).iter().map(|s| subnode_row(node, s, ctx.now)));
            }
            output::table(&HEADERS, &rows)
        }
    }
}

/// A subnode in `--format json`, inside its node's `subnodes`.
#[derive(Serialize)]
struct SubnodeJson<'a> {
    id: SubnodeId,
    hostname: &'a str,
    server_id: Option<&'a str>,
    ip: Option<&'a str>,
    ip_private: Option<&'a str>,
    state: &'a str,
    state_time: String,
    age_hours: f64,
    launch_phase: Option<&'a str>,
    last_error: Option<&'a str>,
}

fn subnode_json(sub: &Subnode, now: i64) -> SubnodeJson<'_> {
    SubnodeJson {
        id: sub.id,
        hostname: &sub.hostname,
        server_id: sub.external_id.as_deref(),
        ip: sub.ip.as_deref(),
        ip_private: sub.ip_private.as_deref(),
        state: sub.state.as_str(),
        state_time: rfc3339(sub.state_time),
        age_hours: age_hours(now, sub.state_time),
        launch_phase: sub.launch_phase.map(LaunchPhase::as_str),
        last_error: sub.last_error.as_deref(),
    }
}

fn subnode_row(node: &Node, sub: &Subnode, now: i64) -> Vec<String> {
    vec![
        format!("{}.{}", node.id, sub.id),
        node.provider.to_string(),
        cell(&node.az),
        node.label.to_string(),
        node.target.to_string(),
        sub.hostname.clone(),
        String::new(),
        cell(&sub.external_id),
        cell(&sub.ip),
        sub.state.to_string(),
        format!("{:.2}", age_hours(now, sub.state_time)),
    ]
}

fn to_json<'a>(node: &'a Node, subs: &'a [Subnode], now: i64) -> NodeJson<'a> {
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
        subnodes: subs.iter().map(|s| subnode_json(s, now)).collect(),
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
