//! Which image a label launches from on a provider: the newest ready one.

use super::Servers;
use crate::config::{Config, ImageSource};
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
        // on the row's word (nodepool saw it active).
        ImageSource::Snapshot { .. } | ImageSource::DiskImage { .. } => observed
            .images
            .iter()
            .filter(|row| {
                &row.provider == provider && &row.image == image && row.state == ImageState::Ready
            })
            .filter_map(|row| Some((row.external_id.as_deref()?, row.state_time)))
            .rfind(|&(id, ready_at)| active(id) || ready_at > servers.images_listed_at)
            .map(|(id, _)| id.to_string()),
    }
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
