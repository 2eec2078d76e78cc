//! `nodepool image-update PROVIDER|all IMAGE`: build the diskimage that provider image IMAGE
//! names, then upload it, now. `image-update --missing` (the builder timer's command): every
//! provider image a label uses that has no ready or building upload on its provider gets one,
//! built first when there is no ready build with its file; images no label uses are left.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{bail, Result};

use super::Context;
use crate::cli::ImageUpdateArgs;
use crate::config::ImageSource;
use crate::image::build;
use crate::model::{DiskImageName, ImageName, ImageState, ProviderName};
use crate::output;
use crate::state::{images, Db};

pub fn run(ctx: &Context, args: &ImageUpdateArgs) -> Result<()> {
    let _lock = super::take_build_lock(ctx, "image-update", args.lock.wait_lock)?;
    crate::interrupt::install();
    let db = ctx.open_db()?;
    let lines = if args.missing {
        missing(ctx, &db)?
    } else {
        let provider = args.provider.as_deref().unwrap_or("all");
        let image = args.image.as_deref().unwrap_or_default();
        let diskimage = diskimage_of(ctx, provider, image)?;
        let mut lines = vec![super::image_build::build(ctx, &db, diskimage.as_str())?];
        lines.extend(super::image_upload::upload(ctx, &db, provider, image)?);
        lines
    };
    for line in lines {
        output::line(&line)?;
    }
    Ok(())
}

/// The diskimage provider image `image` names on `provider` (or every provider that has it);
/// images nodepool does not build are refused with what they are.
fn diskimage_of(ctx: &Context, provider: &str, image: &str) -> Result<DiskImageName> {
    let mut found = BTreeSet::new();
    for p in ctx.config.providers.values() {
        if provider != "all" && p.name.as_str() != provider {
            continue;
        }
        match p.images.get(image).map(|i| &i.source) {
            None => {}
            Some(ImageSource::DiskImage { diskimage }) => {
                found.insert(diskimage.clone());
            }
            Some(ImageSource::Cloud { base_image }) => bail!(
                "image {image} of provider {} is the cloud's own image `{base_image}`: there is \
                 nothing to update",
                p.name
            ),
            Some(ImageSource::Snapshot { .. }) => bail!(
                "image {image} of provider {} is a snapshot image (setup script): this release \
                 does not make snapshot images yet",
                p.name
            ),
        }
    }
    let mut found = found.into_iter();
    match (found.next(), found.next()) {
        (None, _) => bail!(
            "no image named `{image}` on {} in {}",
            if provider == "all" { "any provider".to_string() } else { format!("provider {provider}") },
            ctx.config.path.display()
        ),
        (Some(diskimage), None) => Ok(diskimage),
        (Some(_), Some(_)) => bail!("image {image} names several diskimages on different providers: update one provider at a time"),
    }
}

/// Uploads (and the builds they need) for every provider image in use without one.
fn missing(ctx: &Context, db: &Db) -> Result<Vec<String>> {
    let config = &ctx.config;
    let uploads = images::list_provider_images(db.conn())?;
    let has_upload = |provider: &ProviderName, image: &ImageName| {
        uploads.iter().any(|u| {
            &u.provider == provider
                && &u.image == image
                // A `building` row under the build lock is a killed upload's: not an upload.
                && u.state == ImageState::Ready
        })
    };
    // Diskimage -> provider image name -> providers lacking an upload.
    let mut wanted: BTreeMap<DiskImageName, BTreeMap<ImageName, BTreeSet<ProviderName>>> =
        BTreeMap::new();
    for label in config.labels.values().filter(|l| l.min_ready.is_some()) {
        for provider in &label.providers {
            let Some(image) = config
                .providers
                .get(provider)
                .and_then(|p| p.images.get(&label.image))
            else {
                continue;
            };
            if let ImageSource::DiskImage { diskimage } = &image.source {
                if !has_upload(provider, &image.name) {
                    wanted
                        .entry(diskimage.clone())
                        .or_default()
                        .entry(image.name.clone())
                        .or_default()
                        .insert(provider.clone());
                }
            }
        }
    }
    let mut lines = Vec::new();
    if wanted.is_empty() {
        lines.push("image-update --missing: nothing is missing".to_string());
    }
    let builds = images::list_dib_images(db.conn())?;
    // One diskimage failing does not keep the others from being made.
    let mut failed = Vec::new();
    for (diskimage, uploads) in wanted {
        let built = builds.iter().any(|b| {
            b.image == diskimage
                && b.state == ImageState::Ready
                && config.diskimages.get(&diskimage).is_some_and(|d| {
                    let base = PathBuf::from(b.filename.clone().unwrap_or_default());
                    build::check_outputs(&base, &build::image_types(config, d)).is_ok()
                })
        });
        if !built {
            match super::image_build::build(ctx, db, diskimage.as_str()) {
                Ok(line) => lines.push(line),
                Err(error) => {
                    failed.push(format!("{error:#}"));
                    continue;
                }
            }
        }
        for (image, providers) in uploads {
            for provider in providers {
                match super::image_upload::upload(ctx, db, provider.as_str(), image.as_str()) {
                    Ok(done) => lines.extend(done),
                    Err(error) => failed.push(format!("{error:#}")),
                }
            }
        }
    }
    if !failed.is_empty() {
        for line in &lines {
            output::line(line)?;
        }
        bail!("image-update --missing: {}", failed.join("; "));
    }
    Ok(lines)
}
