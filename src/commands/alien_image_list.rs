//! `nodepool alien-image-list [PROVIDER]`: images in the clouds that the database does not
//! know and that nodepool may have made: uploads and snapshots carrying nodepool's properties
//! (this installation's or another's), and Nova snapshots. The cloud's own images and plain
//! uploads are not listed.

use std::collections::BTreeSet;

use anyhow::Result;
use serde::Serialize;

use super::{for_each_provider, Context};
use crate::cloud::{Cloud, ImageMaker};
use crate::output;
use crate::state::{images, pass};

const HEADERS: [&str; 4] = ["Provider", "Name", "Image ID", "Nodepool"];

#[derive(Serialize)]
struct AlienImage {
    provider: String,
    name: String,
    image_id: String,
    /// The image carries nodepool's properties: a nodepool made it and lost track of it.
    nodepool_metadata: bool,
    /// ... but another installation (another database) did: not this one's leak.
    other_installation: bool,
}

pub fn run(ctx: &Context, provider: Option<&str>) -> Result<()> {
    let db = ctx.read_db()?;
    let known: BTreeSet<String> = images::list_provider_images(db.conn())?
        .into_iter()
        .filter_map(|i| i.external_id)
        .collect();
    let installation = pass::installation(db.conn())?;
    let mut aliens = Vec::new();
    let unreachable = for_each_provider(ctx, provider, |name, cloud| {
        for image in cloud.list_images()? {
            let maker = image.maker(&installation);
            if maker == ImageMaker::Cloud || known.contains(&image.id) {
                continue;
            }
            aliens.push(AlienImage {
                provider: name.to_string(),
                name: image.name,
                image_id: image.id,
                nodepool_metadata: maker.is_nodepool(),
                other_installation: maker == ImageMaker::OtherInstallation,
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
                a.name.clone(),
                a.image_id.clone(),
                super::alien_list::made_by(a.nodepool_metadata, a.other_installation),
            ]
        },
    )?;
    unreachable.into_result()
}
