//! `nodepool cleanup`: one round that only removes things — nodes stuck building or used
//! for over 8 hours, servers of nodes marked for deletion, rows whose servers are gone,
//! leaked servers (seen twice, past the grace period, confirmed by a GET) — and the
//! keypairs nodepool made for images that are no longer configured or for snapshot templates
//! no row records any more, and the unattached
//! floating IPs nodepool allocated that no row records (a run killed between allocating and
//! recording one leaves one); on providers with `clean-floating-ips: true` (as in 2015), every
//! unattached floating IP.

use std::time::Duration;

use anyhow::Result;

use super::reconcile::{connect, rounds, select_providers, take_lock};
use super::Context;
use crate::cli::LockArgs;
use crate::cloud::openstack::OpenStack;
use crate::cloud::{Cloud, CloudError};
use crate::image::retention;
use crate::model::ProviderName;
use crate::plan::Mode;
use crate::state::pass;

pub fn run(ctx: &Context, args: &LockArgs) -> Result<()> {
    let _lock = take_lock(ctx, "cleanup", args)?;
    let providers = select_providers(ctx, None)?;
    let connected = connect(ctx, &providers)?;
    let mut summary = rounds(ctx, &connected, Mode::Cleanup, Duration::ZERO)?;
    let db = ctx.open_db()?;
    let installation = pass::installation(db.conn())?;
    let recorded = crate::state::nodes::all_floating_ip_ids(db.conn())?;
    let prefix = crate::cloud::managed_keypair_name(&installation, &"".into());
    // A snapshot in flight keeps the keypair generated for its template server.
    let templates: std::collections::BTreeSet<String> =
        crate::state::images::list_provider_images(db.conn())?
            .into_iter()
            .filter_map(|row| row.keypair_name)
            .collect();
    let mut deleted = 0;
    let mut floating_ips = 0;
    // The run's connections again: no second token per provider.
    let mut sweep = |name: &ProviderName, cloud: &OpenStack| -> Result<(), CloudError> {
        let Some(provider) = ctx.config.providers.get(name) else {
            return Ok(());
        };
        for keypair in cloud.list_keypairs()? {
            let Some(image) = keypair.name.strip_prefix(&prefix) else {
                continue; // not one of ours
            };
            if provider.images.keys().any(|i| i.as_str() == image)
                || templates.contains(&keypair.name)
            {
                continue;
            }
            cloud.delete_keypair(&keypair.name)?;
            log::info!("{name}: deleted keypair {}", keypair.name);
            deleted += 1;
        }
        // Unattached floating IPs nodepool allocated (its description) that no row records
        // (a run was killed between allocating and recording one); with clean-floating-ips,
        // as in 2015, every unattached one. One a building node records is being attached.
        for ip in cloud.list_floating_ips()? {
            let ours = crate::cloud::is_our_floating_ip(&ip, &installation);
            if ip.server_id.is_some()
                || recorded.contains(&ip.id)
                || !(ours || provider.clean_floating_ips)
            {
                continue;
            }
            cloud.delete_floating_ip(&ip.id)?;
            log::info!("{name}: deleted unattached floating IP {}", ip.ip);
            floating_ips += 1;
        }
        Ok(())
    };
    for (name, cloud) in &connected.clouds {
        if let Err(error) = sweep(name, cloud) {
            log::warn!("{name}: {error}");
            summary.errors += 1;
        }
    }
    summary.keypairs_deleted = Some(deleted);
    summary.floating_ips_deleted = Some(floating_ips);
    let expired = crate::state::requests::forget_expired(db.conn(), ctx.now)?;
    if expired > 0 {
        log::info!("dropped {expired} node requests whose acquire --wait is over");
    }
    let (images, builds) = images(ctx, &db, &connected.clouds, &installation)?;
    summary.images_deleted = Some(images.lines.len() as u32);
    summary.builds_deleted = builds.as_ref().map(|b| b.lines.len() as u32);
    for swept in std::iter::once(&images).chain(builds.as_ref()) {
        swept.log();
        summary.errors += swept.errors.len();
    }
    summary.api_calls = ctx.calls.total();
    summary.print(ctx, "cleanup")?;
    summary.unreachable()
}

/// Image retention: old and unconfigured provider images and leaked ones on every reachable
/// provider; local builds no upload needs, when the builder's lock is free (a build or upload
/// may be reading one).
fn images(
    ctx: &Context,
    db: &crate::state::Db,
    clouds: &std::collections::BTreeMap<ProviderName, OpenStack>,
    installation: &str,
) -> Result<(retention::Swept, Option<retention::Swept>)> {
    let conn = db.conn();
    let reachable = clouds
        .iter()
        .map(|(name, cloud)| (name.clone(), cloud as &dyn Cloud))
        .collect();
    let mut images = retention::provider_images(conn, &ctx.config, &reachable, ctx.now)?;
    for (name, cloud) in clouds {
        match retention::image_leaks(conn, cloud, name, (installation, ctx.now)) {
            Ok(leaks) => {
                images.lines.extend(leaks.lines);
                images.errors.extend(leaks.errors);
            }
            Err(error) => images.errors.push(format!("{name}: {error:#}")),
        }
    }
    let builds = match crate::lock::Lock::try_acquire(
        &ctx.config.database,
        crate::lock::LockKind::Build,
        "cleanup",
    )? {
        Some(_lock) => Some(retention::builds(conn, &ctx.config)?),
        None => {
            log::info!(
                "the builder holds its lock: local builds are looked at by the next cleanup"
            );
            None
        }
    };
    Ok((images, builds))
}
