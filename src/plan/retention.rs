//! Which images retention removes, decided from the rows alone (pure): the 2015 rule, "keep
//! the current and the previous ready image; delete the others once older than 8 hours",
//! per provider image, and the local builds no upload needs.

use std::collections::{BTreeMap, BTreeSet};

use super::policy::{IMAGE_RETENTION_S, LEAK_GRACE_S};
use crate::config::{Config, ImageSource};
use crate::model::cloud::{Image, ImageMaker};
use crate::model::image::{DibImage, ProviderImage};
use crate::model::node::Node;
use crate::model::pass::Sighting;
use crate::model::{ImageName, ImageState, NodeState, ProviderName};

/// A row retention removes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doomed {
    pub id: i64,
    pub why: String,
}

/// Provider images to remove (cloud image and row) on the providers `reachable` names:
/// rows already in `delete` (a removal to finish); per provider image the ready ones that
/// are neither the current (newest not failed) nor the previous one and are older than 8
/// hours; every image of a provider image no longer configured. An image a ready or held node
/// was booted from waits for it.
pub fn provider_images(
    config: &Config,
    images: &[ProviderImage],
    nodes: &[Node],
    reachable: &BTreeSet<ProviderName>,
    now: i64,
) -> Vec<Doomed> {
    let in_use: BTreeSet<(&ProviderName, &str)> = nodes
        .iter()
        .filter(|n| matches!(n.state, NodeState::Ready | NodeState::Hold))
        .filter_map(|n| Some((&n.provider, n.image_external_id.as_deref()?)))
        .collect();
    let mut groups: BTreeMap<(&ProviderName, &ImageName), Vec<&ProviderImage>> = BTreeMap::new();
    for row in images.iter().filter(|r| reachable.contains(&r.provider)) {
        groups
            .entry((&row.provider, &row.image))
            .or_default()
            .push(row);
    }
    let mut doomed = Vec::new();
    for ((provider, image), mut rows) in groups {
        rows.sort_by_key(|r| r.id);
        let configured = config
            .providers
            .get(provider)
            .and_then(|p| p.images.get(image))
            .is_some_and(|i| !matches!(i.source, ImageSource::Cloud { .. }));
        let kept: Vec<i64> = rows
            .iter()
            .rev()
            .filter(|r| r.state == ImageState::Ready && !r.failed())
            .take(2)
            .map(|r| r.id)
            .collect();
        for row in rows {
            let why = match row.state {
                ImageState::Delete => "its removal is finished".to_string(),
                ImageState::Building => continue, // the builder's
                ImageState::Ready if !configured => {
                    format!("image {image} is no longer configured on {provider}")
                }
                ImageState::Ready if kept.contains(&row.id) => continue,
                ImageState::Ready if now - row.state_time < IMAGE_RETENTION_S => continue,
                ImageState::Ready => format!(
                    "neither the current nor the previous image of {image} and {} hours old",
                    (now - row.state_time) / 3600
                ),
            };
            let used = row
                .external_id
                .as_deref()
                .is_some_and(|id| in_use.contains(&(provider, id)));
            if used && row.state == ImageState::Ready {
                continue; // a ready or held node was booted from it
            }
            doomed.push(Doomed { id: row.id, why });
        }
    }
    doomed
}

/// Local builds to remove (files, log and row): per diskimage the ready builds that are not
/// among the two newest (any build of a diskimage no longer configured), once no upload
/// (ready or in flight) is of them.
pub fn builds(config: &Config, images: &[ProviderImage], builds: &[DibImage]) -> Vec<Doomed> {
    let needed: BTreeSet<i64> = images
        .iter()
        .filter(|r| r.state != ImageState::Delete)
        .filter_map(|r| r.dib_image_id)
        .collect();
    let mut by_image: BTreeMap<_, Vec<&DibImage>> = BTreeMap::new();
    for build in builds.iter().filter(|b| b.state == ImageState::Ready) {
        by_image.entry(&build.image).or_default().push(build);
    }
    let mut doomed = Vec::new();
    for (diskimage, mut ready) in by_image {
        ready.sort_by_key(|b| b.version);
        let configured = config.diskimages.contains_key(diskimage);
        let keep = if configured { 2 } else { 0 };
        let surplus = ready.len().saturating_sub(keep);
        for build in ready.into_iter().take(surplus) {
            if needed.contains(&build.id) {
                continue;
            }
            let why = if configured {
                format!("an older build of {diskimage} that no upload needs")
            } else {
                format!("diskimage {diskimage} is no longer configured")
            };
            doomed.push(Doomed { id: build.id, why });
        }
    }
    doomed
}

/// What to do about one provider's images that carry this installation's properties and
/// no row: see them (first sighting, or again), delete them (seen before, first past the
/// grace period), forget sightings of images that are gone or have a row again.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImageLeaks {
    pub sight: Vec<String>,
    pub delete: Vec<String>,
    pub forget: Vec<String>,
}

/// `provider`'s listing (`listed`) against every row of every provider (`rows`): two
/// providers may share one Glance, and each only judges the images made for it.
pub fn image_leaks(
    (installation, provider): (&str, &ProviderName),
    listed: &[Image],
    rows: &[ProviderImage],
    sightings: &BTreeMap<String, Sighting>,
    now: i64,
) -> ImageLeaks {
    use crate::model::cloud::{image_meta, meta};
    let recorded: BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r.external_id.as_deref())
        .collect();
    // Rows whose create is out (or answered) but whose image id is not written yet.
    let unrecorded: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.external_id.is_none())
        .map(|r| r.id.to_string())
        .collect();
    let mut leaks = ImageLeaks::default();
    let mut leaked = BTreeSet::new();
    for image in listed {
        let for_here =
            image.properties.get(meta::PROVIDER).map(String::as_str) == Some(provider.as_str());
        if image.maker(installation) != ImageMaker::ThisInstallation
            || !for_here
            || recorded.contains(image.id.as_str())
        {
            continue;
        }
        // A row being made (its create answered, its id not yet written) names the image.
        let of_a_row = [image_meta::UPLOAD_ID, meta::SNAPSHOT_IMAGE_ID]
            .iter()
            .any(|key| {
                image
                    .properties
                    .get(*key)
                    .is_some_and(|id| unrecorded.contains(id))
            });
        if of_a_row {
            continue;
        }
        leaked.insert(image.id.as_str());
        match sightings.get(&image.id) {
            Some(seen) if seen.first_seen + LEAK_GRACE_S <= now && seen.last_seen < now => {
                leaks.delete.push(image.id.clone());
            }
            _ => leaks.sight.push(image.id.clone()),
        }
    }
    leaks.forget = sightings
        .keys()
        .filter(|id| !leaked.contains(id.as_str()))
        .cloned()
        .collect();
    leaks
}
