//! What a plan asks for: typed steps with their ids inside, each with the provider and label
//! it concerns and the reason it was chosen, so `--dry-run` and the journal can say why. The
//! kind of a step decides where it runs — the store alone, the provider's cloud, or SSH to
//! the node — so the executor routes each one in a single match.

use std::fmt;

use serde::Serialize;

use crate::model::{
    ImageName, LabelName, LaunchPhase, Member, NodeId, NodeState, ProviderName, TargetName,
};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub provider: ProviderName,
    pub label: Option<LabelName>,
    #[serde(flatten)]
    pub step: Step,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Step {
    /// Bookkeeping in the store only.
    Local(LocalStep),
    /// A call to the provider's cloud, on the provider's worker: bounded per pass (the
    /// mutating ones are spaced by `rate`).
    Cloud(CloudStep),
    /// Talks to the node over SSH.
    Ssh(SshStep),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum LocalStep {
    /// A server carrying the member's id exists but the row never recorded it: record it.
    Adopt {
        #[serde(flatten)]
        member: Member,
        server_id: String,
    },
    /// The member's create call left no server: drop its row.
    Forget {
        #[serde(flatten)]
        member: Member,
        /// The create was sent and no server appeared: a launch failure.
        failure: bool,
    },
    /// The server is ACTIVE with an address: record it and move on to `next_phase`.
    RecordAddress {
        #[serde(flatten)]
        member: Member,
        ip: String,
        ip_private: Option<String>,
        /// `ssh` (scan host keys next) or `reachable` (no SSH on this provider).
        next_phase: LaunchPhase,
    },
    /// Every server of the set is up and SSH is off for this provider: mark ready.
    MarkReady { node: NodeId },
    /// Every server of the node is gone: remove the row.
    RemoveRow { node: NodeId, from: NodeState },
    /// A server with our metadata and no row, seen for the first time (or again).
    SightLeak { server_id: String },
    /// A sighted leak is gone.
    ForgetLeak { server_id: String },
    /// The newest image nodepool made of a provider image failed its first launches: mark
    /// it failed (the action's reason says why), so launches fall back to the previous one.
    MarkImageFailed { image: i64 },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum CloudStep {
    /// Insert a node (intent), then create its server.
    Launch {
        target: TargetName,
        image: ImageName,
        image_id: String,
        az: Option<String>,
    },
    /// Insert one more subnode of a building primary, then create its server.
    LaunchSubnode { node: NodeId },
    /// Give a server without a public address a floating IP from `pool`: a new one, or the
    /// one already allocated and recorded for it (a run was killed before attaching it).
    AttachFloatingIp {
        #[serde(flatten)]
        member: Member,
        server_id: String,
        pool: String,
        floating_ip_id: Option<String>,
    },
    /// Move the node to `delete` (when it is not there yet) and delete its servers.
    Delete {
        node: NodeId,
        from: NodeState,
        server_ids: Vec<String>,
        /// A launch or ready failure: counts towards the provider/label cooldown.
        failure: bool,
    },
    /// A leak seen on two passes and older than the grace period: delete it after a GET.
    DeleteLeak { server_id: String },
    /// A recorded server is missing from the listing: a GET decides. A listing can miss a
    /// server, so only a server the cloud says is gone retires its node.
    CheckVanished {
        node: NodeId,
        from: NodeState,
        server_id: String,
        /// A building node's launch failed: counts towards the cooldown.
        failure: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum SshStep {
    /// Scan the server's SSH host keys; they are recorded once it answers.
    ScanHostKeys {
        #[serde(flatten)]
        member: Member,
        ip: String,
        port: u16,
    },
    /// Write /etc/nodepool on every node of the set, run the ready script, mark ready.
    Bootstrap { node: NodeId },
}

impl Step {
    /// The node the step concerns, if any.
    pub fn node(&self) -> Option<NodeId> {
        match self {
            Step::Local(
                LocalStep::Adopt { member, .. }
                | LocalStep::Forget { member, .. }
                | LocalStep::RecordAddress { member, .. },
            )
            | Step::Cloud(CloudStep::AttachFloatingIp { member, .. })
            | Step::Ssh(SshStep::ScanHostKeys { member, .. }) => Some(member.node),
            Step::Local(LocalStep::MarkReady { node } | LocalStep::RemoveRow { node, .. })
            | Step::Cloud(
                CloudStep::LaunchSubnode { node }
                | CloudStep::Delete { node, .. }
                | CloudStep::CheckVanished { node, .. },
            )
            | Step::Ssh(SshStep::Bootstrap { node }) => Some(*node),
            Step::Local(
                LocalStep::SightLeak { .. }
                | LocalStep::ForgetLeak { .. }
                | LocalStep::MarkImageFailed { .. },
            )
            | Step::Cloud(CloudStep::Launch { .. } | CloudStep::DeleteLeak { .. }) => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Step::Local(step) => match step {
                LocalStep::Adopt { .. } => "adopt",
                LocalStep::Forget { .. } => "forget",
                LocalStep::RecordAddress { .. } => "record-address",
                LocalStep::MarkReady { .. } => "mark-ready",
                LocalStep::RemoveRow { .. } => "remove-row",
                LocalStep::SightLeak { .. } => "sight-leak",
                LocalStep::ForgetLeak { .. } => "forget-leak",
                LocalStep::MarkImageFailed { .. } => "mark-image-failed",
            },
            Step::Cloud(step) => match step {
                CloudStep::Launch { .. } => "launch",
                CloudStep::LaunchSubnode { .. } => "launch-subnode",
                CloudStep::AttachFloatingIp { .. } => "attach-floating-ip",
                CloudStep::Delete { .. } => "delete",
                CloudStep::DeleteLeak { .. } => "delete-leak",
                CloudStep::CheckVanished { .. } => "check-vanished",
            },
            Step::Ssh(step) => match step {
                SshStep::ScanHostKeys { .. } => "scan-host-keys",
                SshStep::Bootstrap { .. } => "bootstrap",
            },
        }
    }

    /// Calls to the cloud: bounded per provider per pass.
    pub fn is_cloud_call(&self) -> bool {
        matches!(self, Step::Cloud(_))
    }

    /// Steps that delete servers: done before anything else of a provider's pass.
    pub fn is_delete(&self) -> bool {
        matches!(
            self,
            Step::Cloud(CloudStep::Delete { .. } | CloudStep::DeleteLeak { .. })
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.step.name(), self.provider)?;
        if let Some(label) = &self.label {
            write!(f, ", label {label}")?;
        }
        if let Some(node) = self.step.node() {
            write!(f, ", node {node}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_serialize_flat_with_their_name_and_ids() {
        let action = Action {
            provider: "p1".into(),
            label: Some("small".into()),
            step: Step::Ssh(SshStep::ScanHostKeys {
                member: Member::subnode(NodeId(4), crate::model::SubnodeId(9)),
                ip: "203.0.113.4".into(),
                port: 22,
            }),
            reason: "server is ACTIVE".into(),
        };
        let json = serde_json::to_value(&action).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "provider": "p1", "label": "small", "action": "scan-host-keys",
                "node": 4, "subnode": 9, "ip": "203.0.113.4", "port": 22,
                "reason": "server is ACTIVE"
            })
        );
        assert_eq!(
            action.to_string(),
            "scan-host-keys on p1, label small, node 4: server is ACTIVE"
        );
    }
}
