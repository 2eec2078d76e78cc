//! `nodepool status`: per label and provider, the image launches use, and nodes by state
//! against min-ready and max-servers.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::cli::Format;
use crate::config::ImageSource;
use crate::model::{LabelName, NodeState, ProviderName};
use crate::output;
use crate::state::nodes;

const HEADERS: [&str; 13] = [
    "Label",
    "Provider",
    "Image",
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
    /// The image launches use: null when there is none (`blocked_by` says why).
    image: Option<LaunchImage>,
    /// Nodes `acquire` handed out that are not released yet (part of `used`), and the one
    /// acquired longest ago.
    acquired: u64,
    oldest_acquired: Option<AcquiredNode>,
}

#[derive(Debug, Serialize)]
struct AcquiredNode {
    id: crate::model::NodeId,
    owner: String,
    /// When it was acquired (RFC 3339), and how long ago.
    since: String,
    age_hours: f64,
}

/// What a label launches from on a provider.
#[derive(Debug, Serialize)]
struct LaunchImage {
    /// The provider image's name.
    name: String,
    /// `cloud` (the cloud's own image, `base-image`), `snapshot` or `upload`.
    kind: &'static str,
    /// Of an image nodepool made: its version, row id and age; of a cloud image, none.
    version: Option<i64>,
    id: Option<i64>,
    age_hours: Option<f64>,
    /// The cloud's image id (nodepool's images), or the `base-image` (cloud images).
    image_id: Option<String>,
}

impl LaunchImage {
    fn cell(&self) -> String {
        match (self.version, self.age_hours) {
            (Some(version), Some(age)) => format!("{} v{version} ({age:.1} h)", self.name),
            _ => format!(
                "{} (cloud: {})",
                self.name,
                self.image_id.as_deref().unwrap_or("-")
            ),
        }
    }
}

/// The image `label`'s launches on `provider` use, by the configuration and the database.
fn launch_image(
    ctx: &Context,
    images: &[crate::model::image::ProviderImage],
    label: &LabelName,
    provider: &ProviderName,
) -> Option<LaunchImage> {
    let config = &ctx.config;
    let name = &config.labels.get(label)?.image;
    let wanted = config.providers.get(provider)?.images.get(name)?;
    let kind = match &wanted.source {
        ImageSource::Cloud { base_image } => {
            return Some(LaunchImage {
                name: name.to_string(),
                kind: "cloud",
                version: None,
                id: None,
                age_hours: None,
                image_id: Some(base_image.clone()),
            })
        }
        ImageSource::Snapshot { .. } => "snapshot",
        ImageSource::DiskImage { .. } => "upload",
    };
    let row = crate::plan::launches_from(config, images, provider, name)?;
    Some(LaunchImage {
        name: name.to_string(),
        kind,
        version: row.version,
        id: Some(row.id),
        age_hours: Some(crate::clock::age_hours(ctx.now, row.state_time)),
        image_id: row.external_id.clone(),
    })
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
    for node in nodes::list(db.conn())? {
        let (NodeState::Used, Some(owner)) = (node.state, &node.owner) else {
            continue;
        };
        let Some(row) = rows.get_mut(&(node.label.clone(), node.provider.clone())) else {
            continue;
        };
        row.acquired += 1;
        if row
            .oldest_acquired
            .as_ref()
            .is_none_or(|o| o.age_hours < crate::clock::age_hours(ctx.now, node.state_time))
        {
            row.oldest_acquired = Some(AcquiredNode {
                id: node.id,
                owner: owner.clone(),
                since: crate::clock::rfc3339(node.state_time),
                age_hours: crate::clock::age_hours(ctx.now, node.state_time),
            });
        }
    }
    let images = crate::state::images::list_provider_images(db.conn())?;
    for ((label, provider), row) in rows.iter_mut() {
        row.image = launch_image(ctx, &images, label, provider);
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
                        r.image
                            .as_ref()
                            .map_or_else(|| "-".into(), LaunchImage::cell),
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
            output::table(&HEADERS, &table)?;
            let limit = config.max_acquired_age.as_secs_f64() / 3600.0;
            for r in rows.iter().filter(|r| r.acquired > 0) {
                if let Some(oldest) = &r.oldest_acquired {
                    output::line(&format!(
                        "{} on {}: {} acquired and not released; the oldest, node {} by {}, \
                         {:.1} h ago (deleted at {limit:.1} h, max-acquired-age)",
                        r.label, r.provider, r.acquired, oldest.id, oldest.owner, oldest.age_hours
                    ))?;
                }
            }
            Ok(())
        }
    }
}
