//! `nodepool image-list`: images in the providers (uploads and snapshots), 2015 columns.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::clock::{age_hours, rfc3339};
use crate::model::image::ProviderImage;
use crate::output::{self, cell};
use crate::state::images;

const HEADERS: [&str; 9] = [
    "ID",
    "Provider",
    "Image",
    "Hostname",
    "Version",
    "Image ID",
    "Server ID",
    "State",
    "Age (hours)",
];

#[derive(Serialize)]
struct ImageJson<'a> {
    id: i64,
    provider: &'a str,
    image: &'a str,
    hostname: Option<&'a str>,
    version: Option<i64>,
    image_id: Option<&'a str>,
    server_id: Option<&'a str>,
    /// `failed` for a ready image rolled back from (`error` says why).
    state: &'a str,
    error: Option<&'a str>,
    state_time: String,
    age_hours: f64,
}

pub fn run(ctx: &Context) -> Result<()> {
    let db = ctx.read_db()?;
    let images = images::list_provider_images(db.conn())?;
    output::listing(
        ctx.format,
        &HEADERS,
        &images,
        |i| to_json(i, ctx.now),
        |i| to_row(i, ctx.now),
    )
}

fn to_json(image: &ProviderImage, now: i64) -> ImageJson<'_> {
    ImageJson {
        id: image.id,
        provider: image.provider.as_str(),
        image: image.image.as_str(),
        hostname: image.hostname.as_deref(),
        version: image.version,
        image_id: image.external_id.as_deref(),
        server_id: image.server_external_id.as_deref(),
        state: state(image),
        error: image.last_error.as_deref(),
        state_time: rfc3339(image.state_time),
        age_hours: age_hours(now, image.state_time),
    }
}

fn to_row(image: &ProviderImage, now: i64) -> Vec<String> {
    vec![
        image.id.to_string(),
        image.provider.to_string(),
        image.image.to_string(),
        cell(&image.hostname),
        image.version.map(|v| v.to_string()).unwrap_or_default(),
        cell(&image.external_id),
        cell(&image.server_external_id),
        state(image).to_string(),
        format!("{:.2}", age_hours(now, image.state_time)),
    ]
}

/// The state shown: a ready image nodepool rolled back from is `failed`.
fn state(image: &ProviderImage) -> &'static str {
    if image.failed() {
        "failed"
    } else {
        image.state.as_str()
    }
}
