//! `nodepool image-update PROVIDER|all IMAGE`: a new image now: the diskimage that provider
//! image IMAGE names is built and uploaded, or (a `setup` image) a snapshot is made on each
//! provider. `image-update --missing` (the builder timer's command): every provider image a
//! label uses that has no ready image on its provider gets one — an upload, built first when
//! there is no ready build with its file, or a snapshot — and snapshots in flight (an earlier
//! run's) are carried on; images no label uses are left.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use super::Context;
use crate::cli::ImageUpdateArgs;
use crate::config::{Config, ImageSource, Provider, ProviderImage};
use crate::image::build;
use crate::image::retention;
use crate::image::snapshot::{self, Outcome, Snapshotter};
use crate::model::{DiskImageName, ImageName, ImageState, ProviderName};
use crate::output;
use crate::state::{images, Db};

pub fn run(ctx: &Context, args: &ImageUpdateArgs) -> Result<()> {
    let _lock = super::take_build_lock(ctx, "image-update", args.lock.wait_lock)?;
    crate::interrupt::install();
    let db = ctx.open_db()?;
    let provider = args.provider.as_deref().unwrap_or("all");
    let lines = match (args.missing, provider, args.image.as_deref()) {
        (true, _, _) => missing(ctx, &db)?,
        (false, "all", None) => everything(ctx, &db)?,
        (false, _, None) => bail!(
            "image-update {provider}: name the image to update (or `image-update all` for \
             every image a label uses)"
        ),
        (false, provider, Some(image)) => update(ctx, &db, provider, image)?,
    };
    for line in lines {
        output::line(&line)?;
    }
    Ok(())
}

/// A new image of provider image `image` on `provider` (or `all` that have it), now.
fn update(ctx: &Context, db: &Db, provider: &str, image: &str) -> Result<Vec<String>> {
    match source_of(ctx, provider, image)? {
        Made::Built(diskimage) => {
            let mut lines = vec![super::image_build::build(ctx, db, diskimage.as_str())?];
            lines.extend(super::image_upload::upload(ctx, db, provider, image)?);
            Ok(lines)
        }
        Made::Snapshot => {
            let jobs = snapshot_jobs(ctx, |p, i| {
                (provider == "all" || p.name.as_str() == provider) && i.name.as_str() == image
            });
            snapshots(ctx, db, &jobs, Start::Always)
        }
    }
}

/// `image-update all`, the daily update: a new image of every provider image a label uses
/// that nodepool makes; one failing does not keep the others from being made.
fn everything(ctx: &Context, db: &Db) -> Result<Vec<String>> {
    let config = &ctx.config;
    let mut names = BTreeSet::new();
    for label in config.labels.values().filter(|l| l.min_ready.is_some()) {
        for provider in &label.providers {
            let made = config
                .providers
                .get(provider)
                .and_then(|p| p.images.get(&label.image))
                .is_some_and(|i| !matches!(i.source, ImageSource::Cloud { .. }));
            if made {
                names.insert(label.image.clone());
            }
        }
    }
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for name in &names {
        match update(ctx, db, "all", name.as_str()) {
            Ok(done) => lines.extend(done),
            Err(error) => failed.push(format!("{name}: {error:#}")),
        }
    }
    if names.is_empty() {
        lines.push("image-update all: no label uses an image nodepool makes".into());
    }
    if !failed.is_empty() {
        for line in &lines {
            output::line(line)?;
        }
        bail!("image-update all: {}", failed.join("; "));
    }
    Ok(lines)
}

/// How nodepool makes an image.
enum Made {
    /// Built from this diskimage and uploaded.
    Built(DiskImageName),
    Snapshot,
}

/// How provider image `image` on `provider` (or every provider that has it) is made; cloud
/// images, and one name made in different ways, are refused with what they are.
fn source_of(ctx: &Context, provider: &str, image: &str) -> Result<Made> {
    let mut diskimages = BTreeSet::new();
    let mut snapshots = 0;
    for p in ctx.config.providers.values() {
        if provider != "all" && p.name.as_str() != provider {
            continue;
        }
        match p.images.get(image).map(|i| &i.source) {
            None => {}
            Some(ImageSource::DiskImage { diskimage }) => {
                diskimages.insert(diskimage.clone());
            }
            Some(ImageSource::Cloud { base_image }) => bail!(
                "image {image} of provider {} is the cloud's own image `{base_image}`: there is \
                 nothing to update",
                p.name
            ),
            Some(ImageSource::Snapshot { .. }) => snapshots += 1,
        }
    }
    let mut found = diskimages.into_iter();
    match (found.next(), found.next(), snapshots) {
        (None, _, 0) => bail!(
            "no image named `{image}` on {} in {}",
            if provider == "all" { "any provider".to_string() } else { format!("provider {provider}") },
            ctx.config.path.display()
        ),
        (None, _, _) => Ok(Made::Snapshot),
        (Some(diskimage), None, 0) => Ok(Made::Built(diskimage)),
        _ => bail!("image {image} is made in different ways on different providers: update one provider at a time"),
    }
}

/// One provider image to snapshot.
struct SnapshotJob<'a> {
    provider: &'a Provider,
    image: &'a ProviderImage,
    base_image: &'a str,
    setup: &'a str,
}

/// The snapshot images of the configuration that `wanted` picks.
fn snapshot_jobs<'a>(
    ctx: &'a Context,
    wanted: impl Fn(&Provider, &ProviderImage) -> bool,
) -> Vec<SnapshotJob<'a>> {
    let mut jobs = Vec::new();
    for provider in ctx.config.providers.values() {
        for image in provider.images.values() {
            if let ImageSource::Snapshot { base_image, setup } = &image.source {
                if wanted(provider, image) {
                    jobs.push(SnapshotJob {
                        provider,
                        image,
                        base_image,
                        setup,
                    });
                }
            }
        }
    }
    jobs
}

/// Whether a snapshot job starts a new snapshot when none is in flight.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    Always,
    /// Only where the provider has no ready image of it.
    IfMissing,
}

/// Make (or carry on) the snapshots of `jobs`, providers in parallel; the lines to print.
fn snapshots(
    ctx: &Context,
    db: &Db,
    jobs: &[SnapshotJob<'_>],
    start: Start,
) -> Result<Vec<String>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let installation = crate::state::pass::installation(db.conn())?;
    let work_dir = crate::state::reset_builder_work_dir(db.path())?;
    fs::create_dir_all(&ctx.config.build_log_dir)
        .with_context(|| format!("creating {}", ctx.config.build_log_dir.display()))?;
    let outcomes = super::on_providers(
        ctx,
        db,
        jobs,
        |job| job.provider,
        |db, cloud, job| {
            let snapshotter = Snapshotter {
                conn: db.conn(),
                cloud,
                provider: job.provider,
                image: job.image,
                base_image: job.base_image,
                setup: job.setup,
                script_dir: ctx.config.script_dir.as_deref(),
                installation: &installation,
                work_dir: &work_dir,
                log_dir: &ctx.config.build_log_dir,
            };
            snapshot_one(&ctx.config, &snapshotter, start)
        },
    )?;
    super::report_jobs("image-update", outcomes)
}

/// One provider image's snapshot: what earlier runs left is finished first (templates of
/// ready images deleted, removals retried), then the snapshot in flight is carried on or a
/// new one started, and driven until ready, failed or interrupted.
fn snapshot_one(config: &Config, snapshotter: &Snapshotter<'_>, start: Start) -> Result<String> {
    let conn = snapshotter.conn;
    let (provider, image) = (&snapshotter.provider.name, &snapshotter.image.name);
    let rows: Vec<_> = images::list_provider_images(conn)?
        .into_iter()
        .filter(|r| &r.provider == provider && &r.image == image)
        .collect();
    for row in &rows {
        // Leftovers that the cloud refuses to delete now are cleanup's to retry; they do
        // not keep a new image from being made.
        let tidied = match (row.state, row.phase.as_deref()) {
            (ImageState::Delete, _) => {
                retention::remove_provider_image(conn, snapshotter.cloud, row)
            }
            (ImageState::Ready, Some(_)) => snapshot::finish_template(conn, snapshotter.cloud, row),
            _ => Ok(()),
        };
        if let Err(error) = tidied {
            log::warn!("{provider}: provider image {}: {error:#}", row.id);
        }
    }
    let in_flight = rows.iter().find(|r| r.state == ImageState::Building);
    // The newest ready image, unless it was rolled back from: then a new one is made.
    let has_ready = rows
        .iter()
        .filter(|r| r.state == ImageState::Ready)
        .max_by_key(|r| r.id)
        .is_some_and(|newest| !newest.failed());
    let row = match in_flight {
        Some(row) => row.clone(),
        None if start == Start::IfMissing && has_ready => {
            return Ok(format!("image-update: {provider}: {image} is ready"));
        }
        None => {
            let newest = rows.iter().filter_map(|r| r.version).max().unwrap_or(0);
            snapshotter.start(crate::clock::now(), newest)?
        }
    };
    let p = snapshotter.provider;
    // Every phase has its own bound (launch-timeout, boot-timeout), which fails the attempt;
    // this only stops a loop that would outlive them all.
    let until = Instant::now() + 3 * p.launch_timeout + p.boot_timeout;
    let log = row.log.clone().unwrap_or_default();
    match snapshotter.drive(row.id, until)? {
        Outcome::Ready { image_id } => {
            if let Some(done) = images::get_provider_image(conn, row.id)? {
                snapshot::finish_template(conn, snapshotter.cloud, &done)?;
            }
            retention::after_ready(conn, config, snapshotter.cloud, provider);
            let prefix = format!("{provider}-{image}");
            if let Err(error) = build::prune_logs(
                snapshotter.log_dir,
                &prefix,
                config.build_log_retention as usize,
            ) {
                log::warn!("pruning the logs of {prefix}: {error:#}");
            }
            Ok(format!(
                "image-update: {provider}: {image} version {} ready as snapshot {image_id}; log: {log}",
                row.version.unwrap_or_default()
            ))
        }
        Outcome::InFlight(what) => Ok(format!(
            "image-update: {provider}: {image} snapshot {} in flight ({what}); the next \
             image-update carries on",
            row.id
        )),
        Outcome::Failed(why) => bail!("snapshot of {image} failed: {why}; log: {log}"),
    }
}

/// Uploads (and the builds they need) for every provider image in use without one.
fn missing(ctx: &Context, db: &Db) -> Result<Vec<String>> {
    let config = &ctx.config;
    let uploads = images::list_provider_images(db.conn())?;
    // The newest ready image, which must not have been rolled back from (a `building` row
    // is a snapshot in flight, or a killed upload's: not an image).
    let has_upload = |provider: &ProviderName, image: &ImageName| {
        uploads
            .iter()
            .filter(|u| &u.provider == provider && &u.image == image)
            .filter(|u| u.state == ImageState::Ready)
            .max_by_key(|u| u.id)
            .is_some_and(|newest| !newest.failed())
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
    let used = |provider: &Provider, image: &ProviderImage| {
        config.labels.values().any(|l| {
            l.min_ready.is_some() && l.image == image.name && l.providers.contains(&provider.name)
        })
    };
    let in_flight = |provider: &Provider, image: &ProviderImage| {
        uploads.iter().any(|u| {
            u.provider == provider.name && u.image == image.name && u.state == ImageState::Building
        })
    };
    let jobs = snapshot_jobs(ctx, |provider, image| {
        in_flight(provider, image)
            || (used(provider, image) && !has_upload(&provider.name, &image.name))
    });
    if wanted.is_empty() && jobs.is_empty() {
        lines.push("image-update --missing: nothing is missing".to_string());
    }
    let mut failed = Vec::new();
    match snapshots(ctx, db, &jobs, Start::IfMissing) {
        Ok(done) => lines.extend(done),
        Err(error) => failed.push(format!("{error:#}")),
    }
    let builds = images::list_dib_images(db.conn())?;
    // A build whose upload was rolled back from is bad: uploading it again would fail again.
    let rolled_back: BTreeSet<i64> = uploads
        .iter()
        .filter(|u| u.failed())
        .filter_map(|u| u.dib_image_id)
        .collect();
    // One image failing does not keep the others from being made.
    for (diskimage, uploads) in wanted {
        let newest = builds
            .iter()
            .filter(|b| b.image == diskimage && b.state == ImageState::Ready)
            .max_by_key(|b| b.version);
        let built = newest.is_some_and(|b| {
            !rolled_back.contains(&b.id)
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
