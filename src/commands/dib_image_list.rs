//! `nodepool dib-image-list`: disk images built locally, 2015 columns.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::clock::{age_hours, rfc3339};
use crate::model::image::DibImage;
use crate::output::{self, cell};
use crate::state::images;

const HEADERS: [&str; 6] = ["ID", "Image", "Filename", "Version", "State", "Age (hours)"];

#[derive(Serialize)]
struct DibImageJson<'a> {
    id: i64,
    image: &'a str,
    filename: Option<&'a str>,
    version: i64,
    state: &'a str,
    state_time: String,
    age_hours: f64,
}

pub fn run(ctx: &Context) -> Result<()> {
    let db = ctx.read_db()?;
    let images = images::list_dib_images(db.conn())?;
    output::listing(
        ctx.format,
        &HEADERS,
        &images,
        |i| to_json(i, ctx.now),
        |i| to_row(i, ctx.now),
    )
}

fn to_json(image: &DibImage, now: i64) -> DibImageJson<'_> {
    DibImageJson {
        id: image.id,
        image: image.image.as_str(),
        filename: image.filename.as_deref(),
        version: image.version,
        state: image.state.as_str(),
        state_time: rfc3339(image.state_time),
        age_hours: age_hours(now, image.state_time),
    }
}

fn to_row(image: &DibImage, now: i64) -> Vec<String> {
    vec![
        image.id.to_string(),
        image.image.to_string(),
        cell(&image.filename),
        image.version.to_string(),
        image.state.to_string(),
        format!("{:.2}", age_hours(now, image.state_time)),
    ]
}
