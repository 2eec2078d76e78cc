//! SSH steps: scanning a member's host keys, and the bootstrap of a node's whole set (the
//! /etc/nodepool files, script-dir and the ready script), which makes the node ready.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::Worker;
use crate::cloud::Cloud;
use crate::config::{ImageSource, ProviderAuth};
use crate::failpoint;
use crate::model::node::{Node, Subnode};
use crate::model::{LaunchPhase, Member, NodeId, NodeState};
use crate::node::{bootstrap, ssh};
use crate::plan::SshStep;
use crate::state::nodes::{self, Progress};
use crate::state::subnodes;

/// A host-key scan waits at most this long for a node that does not answer yet.
const KEYSCAN_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one ssh call of the bootstrap (writing one node's files, or one look at its ready
/// script, which runs detached), and the run's time left if that is shorter.
const BOOTSTRAP_CALL_TIMEOUT: Duration = Duration::from_secs(120);

impl<C: Cloud> Worker<'_, C> {
    pub(super) fn ssh(&mut self, step: &SshStep) -> Result<()> {
        match step {
            SshStep::ScanHostKeys { member, ip, port } => self.scan(*member, ip, *port),
            SshStep::Bootstrap { node } => self.bootstrap(*node),
        }
    }

    fn scan(&mut self, member: Member, ip: &str, port: u16) -> Result<()> {
        // Within the run's time left: a scan that cannot finish in time waits for the next run.
        let timeout = KEYSCAN_TIMEOUT.min(self.time_left().max(Duration::from_secs(1)));
        let Some(keys) = ssh::keyscan(ip, port, timeout)? else {
            return Ok(()); // not answering yet; boot-timeout decides
        };
        let step = Progress {
            phase: Some(LaunchPhase::Reachable),
            host_keys: Some(&keys),
            ..Progress::default()
        };
        nodes::progress(self.conn, member, NodeState::Building, &step, self.now)?;
        failpoint::hit("after-keyscan");
        self.tally.progressed = true;
        Ok(())
    }

    fn time_left(&self) -> Duration {
        self.runner
            .deadline
            .saturating_duration_since(std::time::Instant::now())
    }

    /// One step of a set's bootstrap, resumable across rounds and runs: write every member's
    /// files (phase reachable → bootstrapping), then start or look at the ready scripts; the
    /// node is ready once every one has finished well.
    fn bootstrap(&mut self, node_id: NodeId) -> Result<()> {
        let (conn, now) = (self.conn, self.now);
        let Some(node) = nodes::get(conn, node_id)? else {
            return Ok(());
        };
        if node.state != NodeState::Building {
            return Ok(()); // held or deleted since the round observed it
        }
        let set = self.node_set(&node, &subnodes::of_node(conn, node_id)?)?;
        let config = self.runner.config;
        let label = config.labels.get(&node.label);
        let ready_script = label.and_then(|l| l.ready_script.as_deref());
        let timeout = BOOTSTRAP_CALL_TIMEOUT.min(self.time_left());
        let mut done = Ok(true);
        if node.launch_phase != Some(LaunchPhase::Bootstrapping) {
            // Images nodepool builds carry script-dir already (copied at build time, as
            // root); a cloud image gets it now.
            let script_dir = config
                .providers
                .get(&node.provider)
                .zip(label)
                .and_then(|(p, l)| p.images.get(&l.image))
                .filter(|image| matches!(image.source, ImageSource::Cloud { .. }))
                .and(config.script_dir.as_deref());
            let work_dir = crate::state::work_dir(self.runner.db_path);
            done = bootstrap::write_files(&set, script_dir, &work_dir, timeout).map(|()| true);
            if done.is_ok() && ready_script.is_some() {
                let step = Progress {
                    phase: Some(LaunchPhase::Bootstrapping),
                    ..Progress::default()
                };
                nodes::progress(
                    conn,
                    Member::primary(node_id),
                    NodeState::Building,
                    &step,
                    now,
                )?;
                self.tally.progressed = true;
            }
        }
        if let (Ok(true), Some(ready)) = (&done, ready_script) {
            done = bootstrap::ready_scripts(&set, ready, timeout);
        }
        match done {
            Ok(true) => {}
            Ok(false) => return Ok(()), // a ready script runs: in flight
            // Cut short by the run's end, not the node's fault: the next run goes on.
            Err(_) if self.time_left().is_zero() => return Ok(()),
            Err(error) => {
                let why = format!("bootstrap failed: {error:#}");
                if nodes::mark_delete(conn, node_id, NodeState::Building, &why, now)? {
                    self.tally.failed += 1;
                    let at = (&node.provider, &node.label);
                    nodes::record_launch_failure(conn, node_id, at, &why, now)?;
                }
                return Err(anyhow!(why));
            }
        }
        failpoint::hit("mid-ssh");
        if nodes::mark_ready(conn, &node, now)? {
            self.tally.ready += 1;
            self.tally.progressed = true;
        }
        Ok(())
    }

    /// The set as the bootstrap sees it: every member's address, login and host keys.
    fn node_set(&self, node: &Node, subs: &[Subnode]) -> Result<bootstrap::NodeSet> {
        let config = self.runner.config;
        let provider = config
            .providers
            .get(&node.provider)
            .with_context(|| format!("provider {} is not configured", node.provider))?;
        let label = config
            .labels
            .get(&node.label)
            .with_context(|| format!("label {} is not configured", node.label))?;
        let image = provider.images.get(&label.image).with_context(|| {
            format!(
                "image {} is not configured on {}",
                label.image, provider.name
            )
        })?;
        let member = |member: Member,
                      hostname: &str,
                      server_id: Option<&String>,
                      ip: Option<&String>,
                      ip_private: Option<&String>|
         -> Result<bootstrap::Member> {
            let ip = ip.with_context(|| format!("{hostname} has no address recorded"))?;
            Ok(bootstrap::Member {
                hostname: hostname.to_string(),
                server_id: server_id.cloned().unwrap_or_default(),
                public_ip: ip.clone(),
                private_ip: ip_private.cloned().unwrap_or_default(),
                endpoint: ssh::Endpoint::for_image(image, ip),
                known_hosts: nodes::host_keys(self.conn, member)?.unwrap_or_default(),
            })
        };
        let primary = member(
            Member::primary(node.id),
            &node.hostname,
            node.external_id.as_ref(),
            node.ip.as_ref(),
            node.ip_private.as_ref(),
        )?;
        let subnodes = subs
            .iter()
            .map(|s| {
                member(
                    s.member(),
                    &s.hostname,
                    s.external_id.as_ref(),
                    s.ip.as_ref(),
                    s.ip_private.as_ref(),
                )
            })
            .collect::<Result<_>>()?;
        let cloud = match &provider.auth {
            ProviderAuth::CloudsYaml { cloud } => Some(cloud.clone()),
            ProviderAuth::Inline { .. } => None,
        };
        Ok(bootstrap::NodeSet {
            provider: provider.name.to_string(),
            cloud,
            region: provider.region_name.clone(),
            az: node.az.clone(),
            primary,
            subnodes,
        })
    }
}
