//! What a plan asks for: actions, each with the provider, label and node it concerns and the
//! reason it was chosen, so `--dry-run` and the journal can say why.

use std::fmt;

use serde::Serialize;

use crate::model::{ImageName, LabelName, NodeId, NodeState, ProviderName, TargetName};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub provider: ProviderName,
    pub label: Option<LabelName>,
    pub node: Option<NodeId>,
    #[serde(flatten)]
    pub kind: Kind,
    pub reason: String,
}

/// A subnode, when the step concerns one rather than its primary.
pub type SubnodeId = i64;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Kind {
    /// Insert a node (intent), then create its server.
    Launch {
        target: TargetName,
        image: ImageName,
        image_id: String,
        az: Option<String>,
    },
    /// Insert one more subnode of a building primary, then create its server.
    LaunchSubnode,
    /// A server carrying the row's id exists but the row never recorded it: record it.
    Adopt {
        subnode: Option<SubnodeId>,
        server_id: String,
    },
    /// The row's create call left no server: drop the row.
    Forget { subnode: Option<SubnodeId> },
    /// The server is ACTIVE with an address: record it and move on.
    RecordAddress {
        subnode: Option<SubnodeId>,
        ip: String,
        ip_private: Option<String>,
        /// `ssh` (scan host keys next) or `reachable` (no SSH on this provider).
        next_phase: String,
    },
    AttachFloatingIp {
        subnode: Option<SubnodeId>,
        server_id: String,
        pool: String,
    },
    /// Scan the server's SSH host keys; they are recorded once it answers.
    ScanHostKeys {
        subnode: Option<SubnodeId>,
        ip: String,
        port: u16,
    },
    /// Write /etc/nodepool on every node of the set, run the ready script, mark ready.
    Bootstrap,
    /// Every server of the set is up and SSH is off for this provider: mark ready.
    MarkReady,
    /// Move the node to `delete` (when it is not there yet) and delete its servers.
    Delete {
        from: NodeState,
        server_ids: Vec<String>,
        /// A launch or ready failure: counts towards the provider/label cooldown.
        failure: bool,
    },
    /// Every server of the node is gone: remove the row.
    RemoveRow { from: NodeState },
    /// A server with our metadata and no row, seen for the first time (or again).
    SightLeak { server_id: String },
    /// A leak seen on two passes and older than the grace period: delete it after a GET.
    DeleteLeak { server_id: String },
    /// A sighted leak is gone.
    ForgetLeak { server_id: String },
}

impl Kind {
    /// Calls that change the cloud: bounded per provider per pass and spaced by `rate`.
    pub fn is_mutating(&self) -> bool {
        matches!(
            self,
            Kind::Launch { .. }
                | Kind::LaunchSubnode
                | Kind::AttachFloatingIp { .. }
                | Kind::Delete { .. }
                | Kind::DeleteLeak { .. }
        )
    }

    /// Steps that talk to the node over SSH.
    pub fn is_ssh(&self) -> bool {
        matches!(self, Kind::ScanHostKeys { .. } | Kind::Bootstrap)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Kind::Launch { .. } => "launch",
            Kind::LaunchSubnode => "launch-subnode",
            Kind::Adopt { .. } => "adopt",
            Kind::Forget { .. } => "forget",
            Kind::RecordAddress { .. } => "record-address",
            Kind::AttachFloatingIp { .. } => "attach-floating-ip",
            Kind::ScanHostKeys { .. } => "scan-host-keys",
            Kind::Bootstrap => "bootstrap",
            Kind::MarkReady => "mark-ready",
            Kind::Delete { .. } => "delete",
            Kind::RemoveRow { .. } => "remove-row",
            Kind::SightLeak { .. } => "sight-leak",
            Kind::DeleteLeak { .. } => "delete-leak",
            Kind::ForgetLeak { .. } => "forget-leak",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.kind.name(), self.provider)?;
        if let Some(label) = &self.label {
            write!(f, ", label {label}")?;
        }
        if let Some(node) = self.node {
            write!(f, ", node {node}")?;
        }
        write!(f, ": {}", self.reason)
    }
}
