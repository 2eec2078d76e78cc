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
