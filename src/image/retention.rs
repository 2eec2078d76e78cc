//! Retention applied: what `plan::retention` decides is removed here, one path per effect
//! (`remove_provider_image`, `remove_build`). Run by `cleanup` and whenever an image becomes
//! ready; each removal that fails is reported and retried by the next run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result};
use rusqlite::Connection;

use super::build;
use crate::cloud::{Cloud, ImageMaker};
use crate::config::Config;
use crate::model::image::{DibImage, ProviderImage};
use crate::model::{ImageState, ProviderName};
use crate::plan::retention;
use crate::state::{images, nodes};

/// What one retention pass did: a line per removal, and the errors (the rest went on).
#[derive(Debug, Default)]
pub struct Swept {
    pub lines: Vec<String>,
    pub errors: Vec<String>,
}

/// Remove the provider images retention dooms on the providers of `clouds`.
pub fn provider_images(
    conn: &Connection,
    config: &Config,
    clouds: &BTreeMap<ProviderName, &dyn Cloud>,
    now: i64,
) -> Result<Swept> {
    let rows = images::list_provider_images(conn)?;
    let reachable: BTreeSet<ProviderName> = clouds.keys().cloned().collect();
    let doomed = retention::provider_images(config, &rows, &nodes::list(conn)?, &reachable, now);
    let mut swept = Swept::default();
    for retention::Doomed { id, why } in doomed {
        let Some(row) = rows.iter().find(|r| r.id == id) else {
            continue;
        };
        let Some(cloud) = clouds.get(&row.provider) else {
            continue;
        };
        let what = describe(row);
        match remove_provider_image(conn, *cloud, row) {
            Ok(()) => swept.lines.push(format!("deleted {what}: {why}")),
            Err(error) => swept.errors.push(format!("deleting {what}: {error:#}")),
        }
    }
    Ok(swept)
}

fn describe(row: &ProviderImage) -> String {
    format!(
        "provider image {} ({} version {} on {}{})",
        row.id,
        row.image,
        row.version.map_or("-".to_string(), |v| v.to_string()),
        row.provider,
        row.external_id
            .as_deref()
            .map(|id| format!(", image {id}"))
            .unwrap_or_default()
    )
}

/// An image of `provider` became ready: retention on that provider at once (the image before
/// the previous one may go), its removals logged; a removal that fails waits for `cleanup`.
pub fn after_ready(conn: &Connection, config: &Config, cloud: &dyn Cloud, provider: &ProviderName) {
    let clouds = BTreeMap::from([(provider.clone(), cloud)]);
    match provider_images(conn, config, &clouds, crate::clock::now()) {
        Ok(swept) => swept.log(),
        Err(error) => log::warn!("{provider}: image retention: {error:#}"),
    }
}

impl Swept {
    /// Each removal at info, each failure as a warning.
    pub fn log(&self) {
        for line in &self.lines {
            log::info!("{line}");
        }
        for error in &self.errors {
            log::warn!("{error}");
        }
    }
}

/// Remove the local builds retention dooms (the build lock is the caller's).
pub fn builds(conn: &Connection, config: &Config) -> Result<Swept> {
    let builds = images::list_dib_images(conn)?;
    let doomed = retention::builds(config, &images::list_provider_images(conn)?, &builds);
    let mut swept = Swept::default();
    for retention::Doomed { id, why } in doomed {
        let Some(build) = builds.iter().find(|b| b.id == id) else {
            continue;
        };
        let what = format!(
            "build {} ({} version {})",
            build.id, build.image, build.version
        );
        match remove_build(conn, config, build) {
            Ok(()) => swept
                .lines
                .push(format!("deleted {what} with its files and log: {why}")),
            Err(error) => swept.errors.push(format!("deleting {what}: {error:#}")),
        }
    }
    Ok(swept)
}

/// Images of `provider` with this installation's properties and no row: sighted, and deleted
/// when seen again past the grace period and still there, still ours and still without a
/// row on a last GET.
pub fn image_leaks(
    conn: &Connection,
    cloud: &dyn Cloud,
    provider: &ProviderName,
    (installation, now): (&str, i64),
) -> Result<Swept> {
    let listed = cloud.list_images()?;
    let rows = || images::list_provider_images(conn);
    let sightings = images::image_leaks(conn, provider)?;
    let found =
        retention::image_leaks((installation, provider), &listed, &rows()?, &sightings, now);
    for id in &found.sight {
        images::sight_image_leak(conn, provider, id, now)?;
    }
    for id in &found.forget {
        images::forget_image_leak(conn, provider, id)?;
    }
    let mut swept = Swept::default();
    for id in found.delete {
        let again = cloud.get_image(&id)?;
        let still = again.filter(|i| i.maker(installation) == ImageMaker::ThisInstallation);
        // The last look: a row may have been written since the listing.
        let recorded = rows()?
            .iter()
            .any(|r| r.external_id.as_deref() == Some(id.as_str()));
        match still {
            Some(image) if !recorded => match cloud.delete_image(&image.id) {
                Ok(()) => {
                    images::forget_image_leak(conn, provider, &id)?;
                    swept.lines.push(format!(
                        "deleted leaked image {id} (`{}`) on {provider}: this installation's, \
                         no row records it",
                        image.name
                    ));
                }
                Err(error) => swept
                    .errors
                    .push(format!("deleting leaked image {id}: {error}")),
            },
            _ => images::forget_image_leak(conn, provider, &id)?,
        }
    }
    Ok(swept)
}

/// Remove a provider image and everything it made: the row is marked `delete` first (so
/// nothing launches from it), then its template server (while one is recorded and not yet
/// deleted), its generated keypair and its cloud image are deleted, and the row goes. A
/// delete the cloud refuses leaves the row in `delete` for the next attempt.
pub fn remove_provider_image(
    conn: &Connection,
    cloud: &dyn Cloud,
    row: &ProviderImage,
) -> Result<()> {
    if row.state != ImageState::Delete {
        images::transition_provider_image(
            conn,
            row.id,
            row.state,
            ImageState::Delete,
            crate::clock::now(),
        )?;
    }
    super::snapshot::delete_template(cloud, row)?;
    if let Some(image_id) = &row.external_id {
        match cloud.delete_image(image_id) {
            Err(error) if !error.is_not_found() => {
                return Err(error).with_context(|| format!("deleting image {image_id}"))
            }
            _ => {}
        }
    }
    images::remove_provider_image(conn, row.id)
}

/// Remove a local build: its files, its log and its row.
pub fn remove_build(conn: &Connection, config: &Config, build: &DibImage) -> Result<()> {
    if let Some(base) = &build.filename {
        build::remove_outputs(&PathBuf::from(base))?;
    }
    let log = config
        .build_log_dir
        .join(format!("{}-{}.log", build.image, build.version));
    match std::fs::remove_file(&log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", log.display()))
        }
        _ => {}
    }
    images::remove_dib_image(conn, build.id)
}
