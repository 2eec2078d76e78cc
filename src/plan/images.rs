//! Which image a label launches from on a provider: the newest ready one.

use super::Servers;
use crate::config::{Config, ImageSource};
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
        // Images nodepool made: the newest ready row the cloud still has.
        ImageSource::Snapshot { .. } | ImageSource::DiskImage { .. } => observed
            .images
            .iter()
            .filter(|row| {
                &row.provider == provider && &row.image == image && row.state == ImageState::Ready
            })
            .filter_map(|row| row.external_id.clone())
            .rfind(|id| active(id)),
    }
}
