//! `nodepool status`: per label and provider, nodes by state against min-ready and
//! max-servers.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::cli::Format;
use crate::model::{LabelName, NodeState, ProviderName};
use crate::output;
use crate::state::nodes;

const HEADERS: [&str; 12] = [
    "Label",
    "Provider",
    "Ready",
    "Building",
    "Test",
    "Used",
    "Held",
    "Deleting",
    "Min Ready",
    "Max Servers",
    "Deficit",
    "Blocked By",
];

#[derive(Debug, Default, Serialize)]
struct Row {
    label: String,
    provider: String,
    ready: u64,
    building: u64,
    test: u64,
    used: u64,
    held: u64,
    deleting: u64,
    /// Of the label; null when disabled (-1) or when the label left the configuration.
    min_ready: Option<u32>,
    /// Of the provider; null when the provider left the configuration.
    max_servers: Option<u32>,
    /// False for nodes whose label or provider is no longer configured.
    configured: bool,
    /// The label's shortfall against min-ready at the last reconcile pass.
    deficit: Option<u32>,
    /// What kept the last pass from launching this label here: at max-servers, quota,
    /// no ready image, cooldown, per-pass bound, unreachable.
    blocked_by: Option<String>,
    /// The same as a stable code for scripts: at-max-servers, quota, no-ready-image,
    /// cooldown, cooldown-starting, per-pass-bound, unreachable, auth-refused.
    blocked_by_code: Option<&'static str>,
    /// When the last pass looked (RFC 3339).
    last_pass: Option<String>,
}

pub fn run(ctx: &Context) -> Result<()> {
    let db = ctx.read_db()?;
    let mut rows: BTreeMap<(LabelName, ProviderName), Row> = BTreeMap::new();
    let config = &ctx.config;
    for label in config.labels.values() {
        for provider in &label.providers {
            rows.insert(
                (label.name.clone(), provider.clone()),
                Row {
                    label: label.name.to_string(),
                    provider: provider.to_string(),
                    min_ready: label.min_ready,
                    max_servers: config.providers.get(provider).map(|p| p.max_servers),
                    configured: true,
                    ..Row::default()
                },
            );
        }
    }
    for (label, provider, state, count) in nodes::counts(db.conn())? {
        let row = rows
            .entry((label.clone(), provider.clone()))
            .or_insert_with(|| Row {
                label: label.to_string(),
                provider: provider.to_string(),
                min_ready: config.labels.get(&label).and_then(|l| l.min_ready),
                max_servers: config.providers.get(&provider).map(|p| p.max_servers),
                configured: false,
                ..Row::default()
            });
        *match state {
            NodeState::Ready => &mut row.ready,
            NodeState::Building => &mut row.building,
            NodeState::Test => &mut row.test,
            NodeState::Used => &mut row.used,
            NodeState::Hold => &mut row.held,
            NodeState::Delete => &mut row.deleting,
        } += count;
    }
    for allocation in crate::state::pass::allocations(db.conn())? {
        if let Some(row) = rows.get_mut(&(allocation.label.clone(), allocation.provider.clone())) {
            row.deficit = Some(allocation.deficit);
            row.blocked_by = allocation.blocker.as_ref().map(ToString::to_string);
            row.blocked_by_code = allocation.blocker.as_ref().map(|b| b.code());
            row.last_pass = Some(crate::clock::rfc3339(allocation.time));
        }
    }
    let rows: Vec<Row> = rows.into_values().collect();
    match ctx.format {
        Format::Json => output::json(&rows),
        Format::Table => {
            let opt = |v: Option<u32>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let label = if r.configured {
                        r.label.clone()
                    } else {
                        format!("{} (not configured)", r.label)
                    };
                    vec![
                        label,
                        r.provider.clone(),
                        r.ready.to_string(),
                        r.building.to_string(),
                        r.test.to_string(),
                        r.used.to_string(),
                        r.held.to_string(),
                        r.deleting.to_string(),
                        opt(r.min_ready),
                        opt(r.max_servers),
                        opt(r.deficit),
                        r.blocked_by.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            output::table(&HEADERS, &table)
        }
    }
}
