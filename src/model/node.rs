//! Nodes and subnodes as every layer sees them: ids, the 2015 states, how far a launch got,
//! and the facts of a row the planner reads. Host keys are not here: only the SSH steps and
//! `check` read them, straight from the store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{LabelName, ProviderName, TargetName};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize,
            Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

id_type!(
    /// Row id of a node (what `hold`, `delete` and `release` take).
    NodeId
);
id_type!(
    /// Row id of a subnode: one of the extra servers of a multi-node label.
    SubnodeId
);

/// One member of a node's set: the primary or one of its subnodes. Launch steps concern one
/// member; the store picks the table from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Member {
    pub node: NodeId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnode: Option<SubnodeId>,
}

impl Member {
    pub fn primary(node: NodeId) -> Member {
        Member {
            node,
            subnode: None,
        }
    }

    pub fn subnode(node: NodeId, subnode: SubnodeId) -> Member {
        Member {
            node,
            subnode: Some(subnode),
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.subnode {
            None => write!(f, "node {}", self.node),
            Some(subnode) => write!(f, "node {} subnode {subnode}", self.node),
        }
    }
}

/// The 2015 node states, with their 2015 spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Being launched; the launch phase says how far.
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

    /// Counted against min-ready: ready, or on its way to it.
    pub fn counts_as_supply(self) -> bool {
        matches!(
            self,
            NodeState::Ready | NodeState::Building | NodeState::Test
        )
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

/// How far a building node (or subnode) got; stored beside its state. `Deleting` marks a
/// node in state delete whose servers got their delete call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LaunchPhase {
    /// The row is written; the create call is not sent yet.
    Requested,
    /// The create call is sent (or being sent) and its answer is not recorded: it may have
    /// made a server, which is looked for a while before the row is given up.
    Creating,
    /// The create call answered with the server id; waiting for ACTIVE.
    Booting,
    /// A floating IP was attached; waiting for the server to show it.
    FloatingIp,
    /// The address is recorded; waiting for SSH to answer a host-key scan.
    Ssh,
    /// Host keys are recorded (or the provider has no SSH): ready to bootstrap.
    Reachable,
    /// The set's files are written; its ready scripts run (on the primary's row).
    Bootstrapping,
    /// Bootstrapped and ready.
    Ready,
    /// Its servers got a delete call.
    Deleting,
}

impl LaunchPhase {
    pub const ALL: [LaunchPhase; 9] = [
        LaunchPhase::Requested,
        LaunchPhase::Creating,
        LaunchPhase::Booting,
        LaunchPhase::FloatingIp,
        LaunchPhase::Ssh,
        LaunchPhase::Reachable,
        LaunchPhase::Bootstrapping,
        LaunchPhase::Ready,
        LaunchPhase::Deleting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LaunchPhase::Requested => "requested",
            LaunchPhase::Creating => "creating",
            LaunchPhase::Booting => "booting",
            LaunchPhase::FloatingIp => "floating-ip",
            LaunchPhase::Ssh => "ssh",
            LaunchPhase::Reachable => "reachable",
            LaunchPhase::Bootstrapping => "bootstrapping",
            LaunchPhase::Ready => "ready",
            LaunchPhase::Deleting => "deleting",
        }
    }

    pub fn parse(s: &str) -> Option<LaunchPhase> {
        LaunchPhase::ALL
            .into_iter()
            .find(|phase| phase.as_str() == s)
    }
}

impl fmt::Display for LaunchPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node: one primary server (and its subnodes) of a label on a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: NodeId,
    pub provider: ProviderName,
    pub label: LabelName,
    pub target: TargetName,
    pub manager: Option<String>,
    pub hostname: String,
    pub nodename: Option<String>,
    /// The cloud's server id, once the create call answered.
    pub external_id: Option<String>,
    pub az: Option<String>,
    pub ip: Option<String>,
    pub ip_private: Option<String>,
    pub state: NodeState,
    pub state_time: i64,
    pub comment: Option<String>,
    /// How far a building node got.
    pub launch_phase: Option<LaunchPhase>,
    pub launch_time: Option<i64>,
    pub last_error: Option<String>,
    pub snapshot_image_id: Option<i64>,
    /// The cloud image the server boots from.
    pub image_external_id: Option<String>,
    /// Who acquired the node (`acquire --owner`).
    pub owner: Option<String>,
    /// When `launch_phase` last changed.
    pub phase_time: Option<i64>,
    /// The floating IP nodepool allocated for it, once allocated.
    pub floating_ip_id: Option<String>,
}

impl Node {
    /// When the current phase began (the state's time for rows without one).
    pub fn phase_since(&self) -> i64 {
        self.phase_time.unwrap_or(self.state_time)
    }
}

/// A subnode: an extra server of a multi-node label, launched for its primary and ready only
/// together with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Subnode {
    pub id: SubnodeId,
    pub node_id: NodeId,
    pub hostname: String,
    pub external_id: Option<String>,
    pub ip: Option<String>,
    pub ip_private: Option<String>,
    pub state: NodeState,
    pub state_time: i64,
    pub launch_phase: Option<LaunchPhase>,
    pub phase_time: Option<i64>,
    pub last_error: Option<String>,
    /// The floating IP nodepool allocated for it, once allocated.
    pub floating_ip_id: Option<String>,
}

impl Subnode {
    pub fn member(&self) -> Member {
        Member::subnode(self.node_id, self.id)
    }

    pub fn phase_since(&self) -> i64 {
        self.phase_time.unwrap_or(self.state_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_phases_round_trip_through_their_stored_names() {
        for state in NodeState::ALL {
            assert_eq!(NodeState::parse(state.as_str()), Some(state));
        }
        for phase in LaunchPhase::ALL {
            assert_eq!(LaunchPhase::parse(&phase.to_string()), Some(phase));
        }
        assert_eq!(NodeState::parse("READY"), None);
        assert_eq!(LaunchPhase::parse("floating_ip"), None);
    }

    #[test]
    fn ids_parse_and_print_as_numbers() {
        assert_eq!("42".parse::<NodeId>(), Ok(NodeId(42)));
        assert!("x".parse::<NodeId>().is_err());
        assert_eq!(
            Member::subnode(NodeId(3), SubnodeId(7)).to_string(),
            "node 3 subnode 7"
        );
        assert_eq!(Member::primary(NodeId(3)).to_string(), "node 3");
    }
}

/// Nodes asked for by `acquire --wait`: demand above min-ready until `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRequest {
    pub id: i64,
    pub label: LabelName,
    pub count: u32,
    pub owner: String,
    pub created: i64,
    pub expires: i64,
}
