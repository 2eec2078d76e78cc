//! Steps that only change the store: adopting a server a create call made, forgetting a row
//! whose create made none, recording an address, marking a node ready, removing the row of a
//! deleted node, and leak sightings.

use anyhow::Result;

use super::Worker;
use crate::cloud::Cloud;
use crate::model::{LaunchPhase, NodeState};
use crate::plan::{Action, LocalStep};
use crate::state::nodes::{self, Progress};
use crate::state::pass;

impl<C: Cloud> Worker<'_, C> {
    pub(super) fn local(&mut self, action: &Action, step: &LocalStep) -> Result<()> {
        let (conn, now) = (self.conn, self.now);
        let tally = &mut self.tally;
        match step {
            LocalStep::Adopt { member, server_id } => {
                let step = Progress {
                    phase: Some(LaunchPhase::Booting),
                    external_id: Some(server_id),
                    ..Progress::default()
                };
                tally.progressed |=
                    nodes::progress(conn, *member, NodeState::Building, &step, now)?;
            }
            LocalStep::Forget { member, failure } => {
                if nodes::forget(conn, *member)? && *failure {
                    tally.failed += 1;
                    if let Some(label) = &action.label {
                        pass::record_failure(conn, &action.provider, label, &action.reason, now)?;
                    }
                }
                tally.progressed = true;
            }
            LocalStep::RecordAddress {
                member,
                ip,
                ip_private,
                next_phase,
            } => {
                let step = Progress {
                    phase: Some(*next_phase),
                    ip: Some(ip),
                    ip_private: ip_private.as_deref(),
                    ..Progress::default()
                };
                tally.progressed |=
                    nodes::progress(conn, *member, NodeState::Building, &step, now)?;
            }
            LocalStep::MarkReady { node } => {
                let Some(node) = nodes::get(conn, *node)? else {
                    return Ok(()); // removed meanwhile
                };
                if nodes::mark_ready(conn, &node, now)? {
                    tally.ready += 1;
                    tally.progressed = true;
                }
            }
            LocalStep::RemoveRow { node, from } => {
                if nodes::remove(conn, *node, *from)? {
                    tally.deleted += 1;
                    tally.progressed = true;
                }
            }
            LocalStep::SightLeak { server_id } => {
                pass::sight_leak(conn, &action.provider, server_id, now)?;
            }
            LocalStep::ForgetLeak { server_id } => {
                pass::forget_leak(conn, &action.provider, server_id)?;
            }
            LocalStep::MarkImageFailed { image } => {
                if crate::state::images::mark_image_failed(conn, *image, &action.reason)? {
                    log::warn!(
                        "{}: image {image} failed: {}",
                        action.provider,
                        action.reason
                    );
                    tally.progressed = true;
                    // Its labels' failures were the image's: launches from the previous one
                    // start at once, not after their back-off.
                    let row = crate::state::images::get_provider_image(conn, *image)?;
                    let name = row.as_ref().map(|r| &r.image);
                    for label in self.runner.config.labels.values() {
                        if Some(&label.image) == name {
                            pass::record_success(conn, &action.provider, &label.name)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
