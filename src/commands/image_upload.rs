//! `nodepool image-upload [PROVIDER|all] IMAGE`: upload the newest ready build of the
//! diskimage that provider image `IMAGE` names, to each provider that has it (or the one
//! named), providers in parallel, under the build lock.
//!
//! For each provider: what an earlier, killed upload left (a `building` row, its queued
//! Glance image) is deleted first; then the row (the intent) is written, the Glance image
//! created with nodepool's properties and its id recorded, the file streamed once and hashed
//! on the way, and the row turns `ready` once Glance says the image is active with the same
//! MD5 and SHA-512. A failed upload deletes its image and its row.
//!
//! Progress: on a terminal a bar per provider (bytes, rate, ETA) on stderr, cleared when its
//! upload ends; otherwise a log line every tenth, for the journal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::Context;
use crate::cli::{Format, ImageUploadArgs};
use crate::cloud::image_meta::{BUILD_ID, UPLOAD_ID};
use crate::cloud::openstack::OpenStack;
use crate::cloud::{meta, Cloud};
use crate::config::{ImageSource, Provider, ProviderImage};
use crate::image::{build, retention, upload};
use crate::model::image::DibImage;
use crate::model::{ImageState, ProviderName};
use crate::output;
use crate::state::{images, Db};

/// How long Glance may take to turn an uploaded image active.
const ACTIVE_WAIT: Duration = Duration::from_secs(3600);

/// One provider's upload: where, what, from which build.
struct Job<'a> {
    provider: &'a Provider,
    image: &'a ProviderImage,
    build: DibImage,
    file: PathBuf,
}

pub fn run(ctx: &Context, args: &ImageUploadArgs) -> Result<()> {
    let (only, name) = args.provider_and_image();
    let _lock = super::take_build_lock(ctx, "image-upload", args.lock.wait_lock)?;
    let db = ctx.open_db()?;
    for line in upload(ctx, &db, only, name)? {
        output::line(&line)?;
    }
    Ok(())
}

/// Upload provider image `name` to `only` (or `all`): the build lock is the caller's; the
/// lines to print, or the error naming the providers where it failed.
pub(super) fn upload(ctx: &Context, db: &Db, only: &str, name: &str) -> Result<Vec<String>> {
    let jobs = jobs(ctx, db, only, name)?;
    let installation = crate::state::pass::installation(db.conn())?;
    let bars = match shown_as(std::io::stderr().is_terminal(), ctx.format) {
        Shown::Bars => Some(MultiProgress::new()),
        Shown::Lines => None,
    };
    let drawing = bars.as_ref().map(crate::logging::drawing);
    let outcomes = super::on_providers(
        ctx,
        db,
        &jobs,
        |job| job.provider,
        |db, cloud, job| {
            let started = Instant::now();
            let done = upload_one(db, (cloud, &ctx.config), job, &installation, bars.as_ref());
            // 2015's key for the time an image took to reach a provider.
            let key = format!(
                "nodepool.image_update.{}.{}",
                job.image.name, job.provider.name
            );
            let status = if done.is_ok() { "ok" } else { "failed" };
            ctx.note(|n| {
                n.statsd
                    .push(format!("{key}:{}|ms", started.elapsed().as_millis()));
                n.statsd.push(format!("{key}.status.{status}:1|c"));
            });
            done
        },
    );
    drop(drawing);
    // Builds older than the two newest that no upload needs now go.
    retention::builds(db.conn(), &ctx.config)?.log();
    super::report_jobs(&format!("image-upload of {name}"), outcomes?)
}

/// The uploads asked for: each provider (all, or `only`) whose image `name` is a diskimage,
/// with the newest ready build of it.
fn jobs<'a>(ctx: &'a Context, db: &Db, only: &str, name: &str) -> Result<Vec<Job<'a>>> {
    let config = &ctx.config;
    let builds = images::list_dib_images(db.conn())?;
    let mut jobs = Vec::new();
    for provider in config.providers.values() {
        if only != "all" && provider.name.as_str() != only {
            continue;
        }
        let Some(image) = provider.images.get(name) else {
            continue;
        };
        let ImageSource::DiskImage { diskimage } = &image.source else {
            bail!(
                "image {name} of provider {} is not a diskimage-builder image; only those are \
                 uploaded",
                provider.name
            );
        };
        let Some(build) = builds
            .iter()
            .filter(|b| &b.image == diskimage && b.state == ImageState::Ready)
            .max_by_key(|b| b.version)
        else {
            bail!("no ready build of diskimage {diskimage}: run `nodepool image-build {diskimage}` first");
        };
        let base = PathBuf::from(build.filename.clone().unwrap_or_default());
        let image_type = provider.image_type.as_deref().unwrap_or("qcow2");
        let file = build::output_file(&base, image_type);
        if !file.is_file() {
            bail!(
                "build {} of {diskimage} has no {}: it is rebuilt by the next `image-build`",
                build.version,
                file.display()
            );
        }
        jobs.push(Job {
            provider,
            image,
            build: build.clone(),
            file,
        });
    }
    if jobs.is_empty() {
        let which = if only == "all" {
            "any provider".to_string()
        } else {
            format!("provider {only}")
        };
        bail!(
            "no image named `{name}` on {which} in {}",
            config.path.display()
        );
    }
    Ok(jobs)
}

/// How uploads show their progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    /// A bar per upload on stderr.
    Bars,
    /// A log line every tenth.
    Lines,
}

/// Bars for a person at a terminal; lines for the journal, a pipe, or a program reading
/// `--format json` (whose stderr may still be a terminal, but it asked for no decoration).
fn shown_as(stderr_is_terminal: bool, format: Format) -> Shown {
    match (stderr_is_terminal, format) {
        (true, Format::Table) => Shown::Bars,
        (false, _) | (_, Format::Json) => Shown::Lines,
    }
}

/// The bar's look: which upload, how far, how fast, how long still.
const BAR: &str = "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}";

fn bar_style() -> ProgressStyle {
    // A bad template is caught by a test; here it would mean indicatif's plain bar.
    ProgressStyle::with_template(BAR)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Where one upload's progress goes: its bar, or a log line every tenth.
enum Meter<'a> {
    Bar(ProgressBar),
    Lines {
        provider: &'a ProviderName,
        image_name: &'a str,
        started: Instant,
        tenths: upload::Tenths,
    },
}

impl<'a> Meter<'a> {
    /// `started`: when the upload began, for the lines' rate.
    fn new(
        bars: Option<&MultiProgress>,
        provider: &'a ProviderName,
        image_name: &'a str,
        started: Instant,
    ) -> Self {
        match bars {
            Some(bars) => Meter::Bar(
                bars.add(ProgressBar::new(0))
                    .with_style(bar_style())
                    .with_prefix(format!("{provider}: {image_name}")),
            ),
            None => Meter::Lines {
                provider,
                image_name,
                started,
                tenths: upload::Tenths::default(),
            },
        }
    }

    fn update(&mut self, read: u64, total: u64) {
        match self {
            Meter::Bar(bar) => {
                bar.set_length(total);
                bar.set_position(read);
                // Drawn now, or the last bytes (within the bar's redraw interval) would not
                // show while Glance checks them; the bar stays until the upload ends.
                if read >= total {
                    bar.finish();
                }
            }
            Meter::Lines {
                provider,
                image_name,
                started,
                tenths,
            } => {
                if !tenths.passed(read, total) {
                    return;
                }
                let rate =
                    read as f64 / started.elapsed().as_secs_f64().max(0.001) / f64::from(1 << 20);
                log::info!(
                    "{provider}: uploading {image_name}: {}% ({} of {} MiB, {rate:.0} MiB/s)",
                    read * 100 / total.max(1),
                    read >> 20,
                    total >> 20
                );
            }
        }
    }
}

/// The bar goes when its upload ends, however it ends, before anything reports how.
impl Drop for Meter<'_> {
    fn drop(&mut self) {
        if let Meter::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// One provider's upload, on its own database connection, its progress on a bar of `bars`
/// (or in log lines without); the line to print.
fn upload_one(
    db: &Db,
    (cloud, config): (&OpenStack, &crate::config::Config),
    job: &Job<'_>,
    installation: &str,
    bars: Option<&MultiProgress>,
) -> Result<String> {
    let conn = db.conn();
    let provider = &job.provider.name;
    tidy(conn, cloud, job, installation)?;
    let now = crate::clock::now();
    let id = images::insert_provider_image(
        conn,
        provider,
        &job.image.name,
        job.build.version,
        ImageState::Building,
        now,
    )?;
    images::record_upload_build(conn, id, job.build.id)?;
    let mut properties = job.image.meta.clone();
    for (key, value) in [
        (meta::INSTALLATION, installation.to_string()),
        (meta::PROVIDER, provider.to_string()),
        (meta::IMAGE, job.image.name.to_string()),
        (BUILD_ID, job.build.id.to_string()),
        (UPLOAD_ID, id.to_string()),
    ] {
        properties.insert(key.to_string(), value);
    }
    let image_name = format!("{}-{}", job.image.name, job.build.version);
    let disk_format = job.provider.image_type.as_deref().unwrap_or("qcow2");
    let created = cloud.create_image(&image_name, disk_format, &properties);
    let image_id = match created {
        Ok(image_id) => image_id,
        Err(error) => {
            // A create that may have happened keeps its row: the next upload's `tidy` finds
            // the image by its upload id and deletes it.
            if error.is_refusal() {
                images::remove_provider_image(conn, id)?;
            }
            return Err(error).context("creating the Glance image");
        }
    };
    crate::failpoint::hit("upload-after-create");
    images::record_external_id(conn, id, &image_id)?;
    let started = Instant::now();
    let until = Instant::now() + ACTIVE_WAIT;
    let mut meter = Meter::new(bars, provider, &image_name, started);
    let outcome = upload::upload_and_verify(cloud, &image_id, &job.file, until, |read, total| {
        if read * 2 >= total {
            crate::failpoint::hit("upload-streaming");
        }
        meter.update(read, total)
    });
    drop(meter);
    match outcome {
        Ok(sent) => {
            let at = (provider, &job.image.name);
            images::provider_image_ready(conn, id, at, crate::clock::now())?;
            retention::after_ready(conn, config, cloud, provider);
            Ok(format!(
                "image-upload: {provider}: {image_name} ready as image {image_id} ({} MiB in \
                 {:.1} s, MD5 {})",
                sent.bytes >> 20,
                started.elapsed().as_secs_f64(),
                sent.md5
            ))
        }
        Err(error) => {
            if let Err(delete) = cloud.delete_image(&image_id) {
                log::warn!("{provider}: deleting the failed upload {image_id}: {delete}");
            } else {
                images::remove_provider_image(conn, id)?;
            }
            Err(error)
        }
    }
}

/// Put right what a killed upload of this provider image left: its `building` rows go, with
/// the Glance images they recorded or that carry their upload id (a create whose answer was
/// lost).
fn tidy(
    conn: &rusqlite::Connection,
    cloud: &OpenStack,
    job: &Job<'_>,
    installation: &str,
) -> Result<()> {
    let stale: Vec<_> = images::list_provider_images(conn)?
        .into_iter()
        .filter(|row| {
            row.provider == job.provider.name
                && row.image == job.image.name
                && row.state == ImageState::Building
        })
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    let listed = cloud.list_images()?;
    for row in stale {
        let ours = |image: &crate::cloud::Image| {
            Some(&image.id) == row.external_id.as_ref()
                || (image.properties.get(meta::INSTALLATION).map(String::as_str)
                    == Some(installation)
                    && image.properties.get(UPLOAD_ID) == Some(&row.id.to_string()))
        };
        for image in listed.iter().filter(|i| ours(i)) {
            log::warn!(
                "{}: deleting image {} of an interrupted upload ({})",
                job.provider.name,
                image.id,
                image.status
            );
            cloud.delete_image(&image.id)?;
        }
        images::remove_provider_image(conn, row.id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{shown_as, Format, Shown, BAR};

    #[test]
    fn bars_only_on_a_terminal_and_never_for_json() {
        assert_eq!(shown_as(true, Format::Table), Shown::Bars);
        assert_eq!(shown_as(false, Format::Table), Shown::Lines);
        assert_eq!(shown_as(true, Format::Json), Shown::Lines);
        assert_eq!(shown_as(false, Format::Json), Shown::Lines);
    }

    #[test]
    fn the_bar_template_is_valid() {
        assert!(indicatif::ProgressStyle::with_template(BAR).is_ok());
    }
}
