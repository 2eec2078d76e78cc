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

/// Image properties nodepool writes besides [`meta::INSTALLATION`], [`meta::PROVIDER`] and
/// [`meta::IMAGE`], which uploads carry too.
pub mod image_meta {
    /// The diskimage build an upload is of.
    pub const BUILD_ID: &str = "nodepool_build_id";
    /// The upload's row, so a later run tells its uploads from a stranger's.
    pub const UPLOAD_ID: &str = "nodepool_upload_id";
    /// The row a snapshot image is of (its template server carries it too).
    pub use super::meta::SNAPSHOT_IMAGE_ID;
    /// A snapshot's template server. Nova copies a server's image properties into any
    /// snapshot of it, so a snapshot someone takes of a node inherits nodepool's properties;
    /// its `instance_uuid` (the node) then differs from this one (the template).
    pub const TEMPLATE_SERVER: &str = "nodepool_template_server";
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

/// Who made an image, as its properties tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageMaker {
    /// Nodepool's properties naming this installation.
    ThisInstallation,
    /// Nodepool's properties naming another installation: a staging nodepool on the same
    /// project, whose images are its own business.
    OtherInstallation,
    /// Nodepool's properties without an installation: a nodepool that named none.
    Nodepool,
    /// A Nova snapshot (`image_type=snapshot`) without nodepool's properties.
    Snapshot,
    /// Neither: the cloud operator's images and anyone's plain uploads.
    Cloud,
}

impl ImageMaker {
    /// Whether the image carries nodepool's properties, whichever installation's.
    pub fn is_nodepool(self) -> bool {
        matches!(
            self,
            ImageMaker::ThisInstallation | ImageMaker::OtherInstallation | ImageMaker::Nodepool
        )
    }
}

impl Image {
    /// Who made this image, for `installation` (this database's id): the one test of "is this
    /// image nodepool's" for the alien listing and for anything that deletes what no row
    /// records (which must take `ThisInstallation` only).
    pub fn maker(&self, installation: &str) -> ImageMaker {
        let nodepool_keys = [
            meta::PROVIDER,
            meta::IMAGE,
            image_meta::BUILD_ID,
            image_meta::UPLOAD_ID,
            image_meta::SNAPSHOT_IMAGE_ID,
        ];
        // Nova's snapshot of a server nodepool did not snapshot itself (a node someone
        // snapshotted): this installation's properties on it are inherited from the node's
        // image, and it is not nodepool's to delete.
        let inherited = self
            .properties
            .get("instance_uuid")
            .is_some_and(|server| self.properties.get(image_meta::TEMPLATE_SERVER) != Some(server));
        match self.properties.get(meta::INSTALLATION) {
            Some(id) if id == installation && inherited => ImageMaker::Snapshot,
            Some(id) if id == installation => ImageMaker::ThisInstallation,
            Some(_) => ImageMaker::OtherInstallation,
            None if nodepool_keys
                .iter()
                .any(|key| self.properties.contains_key(*key)) =>
            {
                ImageMaker::Nodepool
            }
            // As in 2015: Nova marks the snapshots it makes.
            None if self
                .properties
                .get("image_type")
                .is_some_and(|t| t == "snapshot") =>
            {
                ImageMaker::Snapshot
            }
            None => ImageMaker::Cloud,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Image, ImageMaker};

    fn image(properties: &[(&str, &str)]) -> Image {
        Image {
            id: "i".into(),
            name: "n".into(),
            status: "active".into(),
            properties: properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            size: None,
            md5: None,
            sha512: None,
        }
    }

    #[test]
    fn an_images_maker_is_read_from_nodepools_properties_then_novas_snapshot_mark() {
        let upload = [
            ("nodepool_provider_name", "p1"),
            ("nodepool_image_name", "ubuntu"),
            ("nodepool_build_id", "3"),
            ("nodepool_upload_id", "7"),
        ];
        let with = |installation: &str| {
            let mut properties = upload.to_vec();
            properties.push(("nodepool_installation", installation));
            image(&properties)
        };
        let cases = [
            (with("ours"), ImageMaker::ThisInstallation),
            (with("staging"), ImageMaker::OtherInstallation),
            (image(&upload), ImageMaker::Nodepool),
            (image(&[("nodepool_upload_id", "7")]), ImageMaker::Nodepool),
            (
                image(&[
                    ("nodepool_snapshot_image_id", "2"),
                    ("image_type", "snapshot"),
                ]),
                ImageMaker::Nodepool,
            ),
            (image(&[("image_type", "snapshot")]), ImageMaker::Snapshot),
            // Our snapshot of our template server.
            (
                image(&[
                    ("nodepool_installation", "ours"),
                    ("nodepool_snapshot_image_id", "2"),
                    ("nodepool_template_server", "srv-t"),
                    ("instance_uuid", "srv-t"),
                ]),
                ImageMaker::ThisInstallation,
            ),
            // Someone's snapshot of a node booted from it (or from an upload): inherited
            // properties, another server.
            (
                image(&[
                    ("nodepool_installation", "ours"),
                    ("nodepool_snapshot_image_id", "2"),
                    ("nodepool_template_server", "srv-t"),
                    ("instance_uuid", "srv-node"),
                ]),
                ImageMaker::Snapshot,
            ),
            (
                image(&[
                    ("nodepool_installation", "ours"),
                    ("nodepool_upload_id", "7"),
                    ("instance_uuid", "srv-node"),
                ]),
                ImageMaker::Snapshot,
            ),
            (image(&[("os_distro", "ubuntu")]), ImageMaker::Cloud),
            (image(&[]), ImageMaker::Cloud),
        ];
        for (image, maker) in cases {
            assert_eq!(image.maker("ours"), maker, "{:?}", image.properties);
        }
        assert!(ImageMaker::OtherInstallation.is_nodepool());
        assert!(!ImageMaker::Snapshot.is_nodepool());
    }
}
