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

const HEADERS: [&str; 10] = [
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
}

pub fn run(ctx: &Context) -> Result<()> {
    let db = ctx.open_db()?;
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
                    ]
                })
                .collect();
            output::table(&HEADERS, &table)
        }
    }
}
