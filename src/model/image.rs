//! Images nodepool makes: provider images (uploads of local builds, and snapshots; the 2015
//! `snapshot_image` table) and local diskimage-builder builds (`dib_image`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{DiskImageName, ImageName, ProviderName};

/// States of provider images and local builds (2015: building, ready, delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageState {
    Building,
    Ready,
    Delete,
}

impl ImageState {
    pub const ALL: [ImageState; 3] = [ImageState::Building, ImageState::Ready, ImageState::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            ImageState::Building => "building",
            ImageState::Ready => "ready",
            ImageState::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<ImageState> {
        ImageState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

impl fmt::Display for ImageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One image in one provider: an upload of a local build, or a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderImage {
    pub id: i64,
    pub provider: ProviderName,
    pub image: ImageName,
    pub hostname: Option<String>,
    pub version: Option<i64>,
    /// The cloud's image id.
    pub external_id: Option<String>,
    /// The server a snapshot was taken from.
    pub server_external_id: Option<String>,
    pub dib_image_id: Option<i64>,
    pub state: ImageState,
    pub state_time: i64,
    /// Where a snapshot's state machine is (`image::snapshot::Phase`); None for uploads.
    pub phase: Option<String>,
    /// When `phase` last changed.
    pub phase_time: Option<i64>,
    /// A failed image's reason (it stays `ready`, but nothing launches from it).
    pub last_error: Option<String>,
    /// The template server's address (snapshots; nodepool logs into it as root).
    pub ip: Option<String>,
    /// The keypair generated for the template server, deleted with it.
    pub keypair_name: Option<String>,
    /// The snapshot's log (what the setup script printed).
    pub log: Option<String>,
    /// Launches from it that failed since the last one that became ready.
    pub failed_launches: i64,
    /// A node booted from it became ready: it works.
    pub launched_ok: bool,
}

impl ProviderImage {
    /// Marked failed (rolled back from): nothing launches from it.
    pub fn failed(&self) -> bool {
        self.last_error.is_some()
    }
}

/// Provider images whose last attempt (a snapshot) failed: the error and the log of each.
pub type ImageFailures =
    std::collections::BTreeMap<(ProviderName, ImageName), (String, Option<String>)>;

/// One local diskimage-builder build.
#[derive(Debug, Clone, PartialEq)]
pub struct DibImage {
    pub id: i64,
    pub image: DiskImageName,
    pub filename: Option<String>,
    pub version: i64,
    pub state: ImageState,
    pub state_time: i64,
    pub last_error: Option<String>,
    /// The builder's process group while it builds.
    pub builder_pid: Option<u32>,
}
