//! The domain types every layer shares: config, state, cloud, planner, executor and commands
//! speak in these, so the planner depends on neither the store nor the cloud client.
//!
//! - `names`: names of configured things (`LabelName`, `ProviderName`, …) and `Secret`;
//! - `node`: node and subnode as the planner sees them, their ids, states and launch phases;
//! - `cloud`: a cloud's servers and images as nodepool reads them;
//! - `image`: images nodepool makes (provider uploads and snapshots, local builds);
//! - `pass`: what one pass leaves for the next (cooldown facts, allocation, leak sightings)
//!   and what blocks a label.

pub mod cloud;
pub mod image;
mod names;
pub mod node;
pub mod pass;

pub use image::ImageState;
pub use names::{DiskImageName, ImageName, LabelName, ProviderName, Secret, TargetName};
pub use node::{LaunchPhase, Member, NodeId, NodeState, SubnodeId};
