//! Which image a label launches from on a provider: the newest ready one.

use super::Servers;
use crate::config::{Config, ImageSource};
use crate::model::image::ProviderImage;
use crate::model::pass::ImageMissing;
use crate::model::{ImageName, ImageState, ProviderName};

use super::Observed;

/// The newest ready image of `image` on a provider, as the cloud id to boot from.
pub(super) fn ready_image(
    config: &Config,
    observed: &Observed,
    provider: &ProviderName,
    image: &ImageName,
    servers: &Servers<'_>,
) -> Option<String> {
    let wanted = config.providers.get(provider)?.images.get(image)?;
    let active = |id: &str| {
        servers
            .images
            .iter()
            .any(|i| i.id == id && i.status == "active")
    };
    match &wanted.source {
        // The cloud's own image, by UUID or by name (the first listed: Glance lists newest
        // first).
        ImageSource::Cloud { base_image } => servers
            .images
            .iter()
            .find(|i| i.status == "active" && (&i.id == base_image || &i.name == base_image))
            .map(|i| i.id.clone()),
        // Images nodepool made: the newest ready row the cloud still has, by the listing; one
        // that became ready after the listing was made (kept from an earlier round) is taken
        // on the row's word (nodepool saw it active). One being rolled back from is not.
        ImageSource::Snapshot { .. } | ImageSource::DiskImage { .. } => {
            let failing = failing(config, &observed.images, provider, image).map(|(bad, _)| bad.id);
            ready_rows(&observed.images, provider, image)
                .filter(|row| Some(row.id) != failing)
                .filter_map(|row| Some((row.external_id.as_deref()?, row.state_time)))
                .rfind(|&(id, ready_at)| active(id) || ready_at > servers.images_listed_at)
                .map(|(id, _)| id.to_string())
        }
    }
}

/// Step 3b: the newest image nodepool made of a provider image whose first launches all
/// failed is marked failed (the planner already launches from the previous one).
pub(super) fn rollbacks(
    config: &Config,
    observed: &Observed,
    reachable: impl Iterator<Item = ProviderName>,
    plan: &mut super::Plan,
) {
    for name in reachable {
        let Some(provider) = config.providers.get(&name) else {
            continue;
        };
        for image in provider.images.values() {
            let Some((bad, previous)) =
                failing(config, &observed.images, &provider.name, &image.name)
            else {
                continue;
            };
            let version = |row: &ProviderImage| row.version.unwrap_or(row.id);
            plan.actions.push(super::Action {
                provider: provider.name.clone(),
                label: None,
                step: super::Step::Local(super::LocalStep::MarkImageFailed { image: bad.id }),
                reason: format!(
                    "its {} launches in a row failed and none became ready: launches fall back \
                     to version {} (image {})",
                    bad.failed_launches,
                    version(previous),
                    previous.id
                ),
            });
        }
    }
}

/// The image nodepool made that launches of `image` on `provider` use, as the database
/// tells it (for `status`; a round also checks the cloud still lists it): the newest ready
/// one that is not failed or being rolled back from.
pub fn launches_from<'o>(
    config: &Config,
    images: &'o [ProviderImage],
    provider: &'o ProviderName,
    image: &'o ImageName,
) -> Option<&'o ProviderImage> {
    let failing = failing(config, images, provider, image).map(|(bad, _)| bad.id);
    ready_rows(images, provider, image).rfind(|row| Some(row.id) != failing)
}

/// The ready images nodepool made of `image` on `provider` that are not marked failed,
/// oldest first.
fn ready_rows<'o>(
    images: &'o [ProviderImage],
    provider: &'o ProviderName,
    image: &'o ImageName,
) -> impl DoubleEndedIterator<Item = &'o ProviderImage> {
    images.iter().filter(move |row| {
        &row.provider == provider
            && &row.image == image
            && row.state == ImageState::Ready
            && !row.failed()
    })
}

/// The newest ready image of `image` on `provider` when it is to be rolled back from — its
/// launches failed `rollback-after` times in a row and none became ready — with the image
/// launches fall back to (there must be one: a bad image is better than none).
pub(super) fn failing<'o>(
    config: &Config,
    images: &'o [ProviderImage],
    provider: &'o ProviderName,
    image: &'o ImageName,
) -> Option<(&'o ProviderImage, &'o ProviderImage)> {
    let limit = i64::from(config.providers.get(provider)?.rollback_after);
    let mut newest_first = ready_rows(images, provider, image).rev();
    let newest = newest_first.next()?;
    let previous = newest_first.next()?;
    (newest.failed_launches >= limit && !newest.launched_ok).then_some((newest, previous))
}

/// Why `image` has no ready image on a provider (`ready_image` found none): what `status`
/// tells the operator.
pub(super) fn why_missing(
    config: &Config,
    observed: &Observed,
    provider: &ProviderName,
    image: &ImageName,
) -> ImageMissing {
    let Some(wanted) = config
        .providers
        .get(provider)
        .and_then(|p| p.images.get(image))
    else {
        return ImageMissing::Unknown;
    };
    let building_here = observed
        .images
        .iter()
        .filter(|row| &row.provider == provider && &row.image == image)
        .filter(|row| row.state == ImageState::Building)
        .map(|row| row.state_time)
        .min();
    match &wanted.source {
        ImageSource::Cloud { base_image } => ImageMissing::CloudImageNotFound {
            base_image: base_image.clone(),
        },
        ImageSource::Snapshot { .. } => {
            let failed = observed
                .image_failures
                .get(&(provider.clone(), image.clone()));
            match (building_here, failed) {
                (Some(since), _) => ImageMissing::Building { since },
                (None, Some((error, log))) => ImageMissing::LastBuildFailed {
                    log: log.clone().unwrap_or_else(|| error.clone()),
                },
                (None, None) => ImageMissing::NeverBuilt,
            }
        }
        ImageSource::DiskImage { diskimage } => {
            let builds = || observed.builds.iter().filter(|b| &b.image == diskimage);
            let building = builds()
                .filter(|b| b.state == ImageState::Building)
                .map(|b| b.state_time)
                .chain(building_here)
                .min();
            let ready = builds()
                .filter(|b| b.state == ImageState::Ready)
                .map(|b| b.version)
                .max();
            match (building, ready, observed.build_failures.get(diskimage)) {
                (Some(since), _, _) => ImageMissing::Building { since },
                (None, Some(version), _) => ImageMissing::NotUploaded { version },
                (None, None, Some(log)) => ImageMissing::LastBuildFailed { log: log.clone() },
                (None, None, None) => ImageMissing::NeverBuilt,
            }
        }
    }
}
