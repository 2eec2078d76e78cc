//! `nodepool alien-image-list [PROVIDER]`: snapshot images in the clouds that the database
//! does not know. Base images are the cloud's own and are not listed.

use std::collections::BTreeSet;

use anyhow::Result;
use serde::Serialize;

use super::{for_each_provider, Context};
use crate::cloud::Cloud;
use crate::output;
use crate::state::images;

const HEADERS: [&str; 4] = ["Provider", "Name", "Image ID", "Nodepool"];

#[derive(Serialize)]
struct AlienImage {
    provider: String,
    name: String,
    image_id: String,
    /// The image carries nodepool's metadata: nodepool made it and lost track of it.
    nodepool_metadata: bool,
}

pub fn run(ctx: &Context, provider: Option<&str>) -> Result<()> {
    let db = ctx.read_db()?;
    let known: BTreeSet<String> = images::list_provider_images(db.conn())?
        .into_iter()
        .filter_map(|i| i.external_id)
        .collect();
    let mut aliens = Vec::new();
    let unreachable = for_each_provider(ctx, provider, |name, cloud| {
        for image in cloud.list_images()? {
            let ours = image.properties.contains_key("nodepool_provider_name")
                || image.properties.contains_key("nodepool_snapshot_image_id");
            // As in 2015: snapshots only (Nova marks them image_type=snapshot).
            let snapshot = ours
                || image
                    .properties
                    .get("image_type")
                    .is_some_and(|t| t == "snapshot");
            if snapshot && !known.contains(&image.id) {
                aliens.push(AlienImage {
                    provider: name.to_string(),
                    name: image.name,
                    image_id: image.id,
                    nodepool_metadata: ours,
                });
            }
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
                a.name.clone(),
                a.image_id.clone(),
                super::alien_list::made_by(a.nodepool_metadata, false),
            ]
        },
    )?;
    unreachable.into_result()
}
