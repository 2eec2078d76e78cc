//! `nodepool image-build IMAGE`: build a diskimage now, under the build lock (one build at a
//! time per host, never inside `reconcile`). The row is written `building` before the builder
//! starts and turns `ready` with its file once the builder has written every image type the
//! providers want; a failed, timed-out or interrupted build leaves neither row nor file, and
//! its error names the log.

use std::fs;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use super::Context;
use crate::cli::ImageBuildArgs;
use crate::config::DiskImage;
use crate::image::build::{self, Stopped};
use crate::model::ImageState;
use crate::output;
use crate::state::{images, Db};

pub fn run(ctx: &Context, args: &ImageBuildArgs) -> Result<()> {
    let _lock = super::take_build_lock(ctx, "image-build", args.lock.wait_lock)?;
    crate::interrupt::install();
    let db = ctx.open_db()?;
    let built = build(ctx, &db, &args.image)?;
    output::line(&built)
}

/// Build diskimage `name` (the build lock is the caller's); the line to print.
pub(super) fn build(ctx: &Context, db: &Db, name: &str) -> Result<String> {
    let config = &ctx.config;
    let Some(image) = config.diskimages.get(name) else {
        let known: Vec<&str> = config.diskimages.keys().map(|d| d.as_str()).collect();
        bail!(
            "no diskimage named `{}` in {}; diskimages: {}",
            name,
            config.path.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let Some(images_dir) = &config.images_dir else {
        bail!(
            "{}: images-dir is not set, and a build needs a directory to write to",
            config.path.display()
        );
    };
    // Versions only grow, even past builds `tidy` removes (their logs keep the version).
    let newest = images::list_dib_images(db.conn())?
        .iter()
        .filter(|b| b.image == image.name)
        .map(|b| b.version)
        .max()
        .unwrap_or(0);
    tidy(ctx, db)?;
    for dir in [images_dir, &config.build_log_dir] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    build_one(ctx, db, image, images_dir, newest)
}

/// Build `image` into `images_dir`; the line to print, or the error naming the log.
fn build_one(
    ctx: &Context,
    db: &Db,
    image: &DiskImage,
    images_dir: &std::path::Path,
    newest: i64,
) -> Result<String> {
    let config = &ctx.config;
    let conn = db.conn();
    // The 2015 version: the build's start in Unix seconds (one later than the newest).
    let version = crate::clock::now().max(newest + 1);
    let base = build::output_base(images_dir, image, version);
    let types = build::image_types(config, image);
    let log = config
        .build_log_dir
        .join(format!("{}-{version}.log", image.name));
    let now = crate::clock::now();
    let id = images::insert_dib_image(
        conn,
        &image.name,
        &base.display().to_string(),
        version,
        ImageState::Building,
        now,
    )?;
    let command = build::command(config, image, &base, &types);
    log::info!(
        "building {} version {version} with `{}`; log: {}",
        image.name,
        command.program,
        log.display()
    );
    let started = Instant::now();
    let ran = build::run(
        &command,
        &log,
        image.build_timeout,
        crate::interrupt::requested,
        |pid| {
            images::record_builder(conn, id, pid)?;
            crate::failpoint::hit("build-running");
            Ok(())
        },
    );
    let outcome = match ran {
        Ok(Ok(())) => build::check_outputs(&base, &types).map_err(|e| format!("{e:#}")),
        Ok(Err(Stopped::Failed(Some(code)))) => {
            Err(format!("the builder exited with status {code}"))
        }
        Ok(Err(Stopped::Failed(None))) => Err("the builder was killed by a signal".to_string()),
        Ok(Err(Stopped::TimedOut(limit))) => Err(format!(
            "it ran past build-timeout ({} s) and was killed with its children",
            limit.as_secs()
        )),
        Ok(Err(Stopped::Interrupted)) => Err("interrupted; the builder was stopped".to_string()),
        Err(error) => Err(format!("{error:#}")),
    };
    let pruned = build::prune_logs(
        &config.build_log_dir,
        image.name.as_str(),
        config.build_log_retention as usize,
    );
    if let Err(error) = pruned {
        log::warn!("pruning the build logs of {}: {error:#}", image.name);
    }
    let status = if outcome.is_ok() { "ok" } else { "failed" };
    let key = format!("nodepool.dib_image_build.{}", image.name);
    ctx.note(|n| {
        n.statsd.push(format!("{key}.status.{status}:1|c"));
        n.statsd.push(format!(
            "{key}.duration:{}|ms",
            started.elapsed().as_millis()
        ));
    });
    match outcome {
        Ok(files) => {
            images::transition_dib_image(
                conn,
                id,
                ImageState::Building,
                ImageState::Ready,
                crate::clock::now(),
            )?;
            images::clear_build_failure(conn, &image.name)?;
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            Ok(format!(
                "image-build: {} version {version} ready in {:.0} s: {}",
                image.name,
                started.elapsed().as_secs_f64(),
                names.join(", ")
            ))
        }
        Err(why) => {
            build::remove_outputs(&base)?;
            images::remove_dib_image(conn, id)?;
            let log_path = log.display().to_string();
            images::record_build_failure(conn, &image.name, &log_path, crate::clock::now())?;
            bail!(
                "building {} version {version} failed: {why}; its files and row were removed; \
                 the build's log: {}",
                image.name,
                log.display()
            )
        }
    }
}

/// What earlier builds left that is no longer true, put right before a new one (the build
/// lock is held, so no builder runs): a `building` row is a killed build's, so it and its
/// files go; a `ready` row whose file vanished goes, so the image is built again.
fn tidy(ctx: &Context, db: &Db) -> Result<()> {
    let conn = db.conn();
    for stale in images::list_dib_images(conn)? {
        let Some(base) = stale.filename.as_deref().map(std::path::PathBuf::from) else {
            continue;
        };
        let gone = match stale.state {
            ImageState::Building => {
                if let (Some(pid), Some(image)) =
                    (stale.builder_pid, ctx.config.diskimages.get(&stale.image))
                {
                    let types = build::image_types(&ctx.config, image);
                    let program = build::command(&ctx.config, image, &base, &types).program;
                    build::stop_orphan(pid, &program);
                }
                build::remove_outputs(&base)?;
                Some("an interrupted build")
            }
            ImageState::Ready => {
                let types = ctx
                    .config
                    .diskimages
                    .get(&stale.image)
                    .map(|image| build::image_types(&ctx.config, image))
                    .unwrap_or_else(|| vec!["qcow2".to_string()]);
                let gone = build::check_outputs(&base, &types).is_err();
                if gone {
                    // What is left of it (another image type's file) goes with the row.
                    build::remove_outputs(&base)?;
                }
                gone.then_some("a ready build whose file is gone")
            }
            ImageState::Delete => None,
        };
        if let Some(why) = gone {
            log::warn!(
                "removing {why}: {} version {} ({})",
                stale.image,
                stale.version,
                base.display()
            );
            images::remove_dib_image(conn, stale.id)?;
        }
    }
    Ok(())
}
