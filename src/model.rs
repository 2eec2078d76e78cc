//! Small types for the domain's words, shared by config, state, planner and commands, so
//! that a label name is never passed where a provider name was meant.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Shared, not copied: a round holds one per node row, and clones are free.
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(Arc::from(s))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(Arc::from(s))
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map($name::from)
            }
        }
    };
}

name_type!(
    /// A label: the kind of node jobs ask for.
    LabelName
);
name_type!(
    /// A provider: one cloud account (and region) with its own max-servers.
    ProviderName
);
name_type!(
    /// An image name as provider images and labels use it.
    ImageName
);
name_type!(
    /// A target: the system nodes are handed to (a Jenkins master, or a CI pipeline).
    TargetName
);
name_type!(
    /// A diskimage-builder image definition.
    DiskImageName
);

/// Row id of a node (also what `hold`, `delete` and `release` take).
pub type NodeId = i64;

/// The 2015 node states, with their 2015 spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Being launched; `launch_phase` says how far.
    Building,
    /// Launched and waiting for its Jenkins test job.
    Test,
    /// Ready for a job.
    Ready,
    /// Taken by a job; deleted when released.
    Used,
    /// Kept by an operator; no pass touches it.
    Hold,
    /// To be deleted: the server goes first, then the row.
    Delete,
}

impl NodeState {
    pub const ALL: [NodeState; 6] = [
        NodeState::Building,
        NodeState::Test,
        NodeState::Ready,
        NodeState::Used,
        NodeState::Hold,
        NodeState::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Building => "building",
            NodeState::Test => "test",
            NodeState::Ready => "ready",
            NodeState::Used => "used",
            NodeState::Hold => "hold",
            NodeState::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<NodeState> {
        NodeState::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// A password or API key: printed as `***` by `Debug` so it cannot leak into logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_2015_names() {
        for state in NodeState::ALL {
            assert_eq!(NodeState::parse(state.as_str()), Some(state));
        }
        for state in ImageState::ALL {
            assert_eq!(ImageState::parse(&state.to_string()), Some(state));
        }
        assert_eq!(NodeState::parse("READY"), None);
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "***");
    }
}
