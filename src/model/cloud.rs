//! A cloud's servers and images as nodepool reads them: `cloud/` parses its answers into these
//! and the planner reads them, so neither depends on the other.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A server as nodepool sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub status: ServerStatus,
    /// The server's `metadata`; nodepool's own keys start with `nodepool_`.
    pub metadata: Metadata,
    pub public_v4: Option<String>,
    pub public_v6: Option<String>,
    pub private_v4: Option<String>,
}

/// Server metadata keys nodepool writes on every server it creates.
pub mod meta {
    pub const INSTALLATION: &str = "nodepool_installation";
    pub const NODE_ID: &str = "nodepool_node_id";
    pub const SUBNODE_ID: &str = "nodepool_subnode_id";
    pub const PROVIDER: &str = "nodepool_provider_name";
    pub const IMAGE: &str = "nodepool_image_name";
    pub const LABEL: &str = "nodepool_label_name";
    /// On a snapshot's template server and on the snapshot: the `snapshot_image` row.
    pub const SNAPSHOT_IMAGE_ID: &str = "nodepool_snapshot_image_id";

    pub(crate) const ALL: [&str; 7] = [
        INSTALLATION,
        NODE_ID,
        SUBNODE_ID,
        PROVIDER,
        IMAGE,
        LABEL,
        SNAPSHOT_IMAGE_ID,
    ];
}

/// A server's metadata: a handful of pairs, sorted by key in a vector. A round lists every
/// server of every provider, and a map node per server would weigh more than the server;
/// nodepool's own keys are not even copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(Vec<(Cow<'static, str>, String)>);

impl Metadata {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).ok().map(|i| self.0[i].1.as_str())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Sets `key`, replacing an earlier value as a map would.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        match self.position(key) {
            Ok(i) => self.0[i].1 = value.into(),
            Err(i) => self.0.insert(i, (Metadata::key(key), value.into())),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.position(key).ok()?;
        Some(self.0.remove(i).1)
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    fn key(key: &str) -> Cow<'static, str> {
        match meta::ALL.iter().find(|known| **known == key) {
            Some(known) => Cow::Borrowed(known),
            None => Cow::Owned(key.to_string()),
        }
    }

    /// Gives back the vector's slack once the listing is parsed.
    pub fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_ref().cmp(key))
    }
}

impl<K: AsRef<str>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut metadata = Metadata::default();
        for (key, value) in pairs {
            metadata.insert(key.as_ref(), value);
        }
        metadata
    }
}

impl Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ServerStatus {
    Build,
    Active,
    Error,
    Deleted,
    /// Any other Nova status (SHUTOFF, REBUILD, …).
    Other,
}

impl ServerStatus {
    pub fn parse(status: &str) -> ServerStatus {
        match status {
            "BUILD" => ServerStatus::Build,
            "ACTIVE" => ServerStatus::Active,
            "ERROR" => ServerStatus::Error,
            "DELETED" | "SOFT_DELETED" => ServerStatus::Deleted,
            _ => ServerStatus::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    /// Glance status: queued, saving, active, killed, deleted, …
    pub status: String,
    pub properties: BTreeMap<String, String>,
    pub size: Option<u64>,
    /// What Glance computed of the data it stored: `checksum` (MD5) and `os_hash_value`
    /// (SHA-512, when `os_hash_algo` says so), hex; None before an upload.
    #[serde(default)]
    pub md5: Option<String>,
    #[serde(default)]
    pub sha512: Option<String>,
}
