//! What a round observed, as plain data: `observe.rs` fills it from the store and the clouds,
//! the planner reads it, and tests write it by hand.

use std::collections::BTreeMap;

use crate::model::cloud::{Image, Server};
use crate::model::image::{DibImage, ImageFailures, ProviderImage};
use crate::model::node::{Node, NodeRequest, Subnode};
use crate::model::pass::{Allocation, Cooldown, Sighting};
use crate::model::{DiskImageName, ProviderName};

/// Everything one round knows.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// When the round observed (Unix seconds).
    pub now: i64,
    /// This installation's id (`nodepool_installation` in server metadata).
    pub installation: String,
    pub nodes: Vec<Node>,
    pub subnodes: Vec<Subnode>,
    pub images: Vec<ProviderImage>,
    /// Local builds (diskimage-builder), and the diskimages whose last build failed (log).
    pub builds: Vec<DibImage>,
    pub build_failures: BTreeMap<DiskImageName, String>,
    /// Provider images whose last attempt (a snapshot) failed: the error, and its log.
    pub image_failures: ImageFailures,
    pub cooldowns: Vec<Cooldown>,
    pub allocations: Vec<Allocation>,
    pub leaks: BTreeMap<(ProviderName, String), Sighting>,
    /// Nodes `acquire --wait` asks for: demand above min-ready until they expire.
    pub requests: Vec<NodeRequest>,
    /// The providers this round looked at; one absent here is not touched.
    pub clouds: BTreeMap<ProviderName, CloudView>,
}

/// One provider as the round saw it.
#[derive(Debug, Clone)]
pub enum CloudView {
    Seen {
        servers: Vec<Server>,
        /// The cloud's images, as listed at `images_listed_at` (Unix seconds): this round,
        /// or kept from an earlier one (`cache-ttl`).
        images: Vec<Image>,
        images_listed_at: i64,
    },
    /// The provider could not be listed; nothing is decided about it this round.
    Unreachable {
        error: String,
        /// Keystone refused the credentials (a wrong password, a disabled user), rather
        /// than no answer: the operator has to act.
        auth_refused: bool,
    },
}
