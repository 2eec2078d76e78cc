//! Deleting: the one path by which nodepool deletes a node's servers — used by the pass, by
//! `cleanup` (which runs a pass) and by `delete --now` — and the deletion of leaked servers.

use anyhow::{anyhow, Result};
use rusqlite::Connection;

use super::CloudWorker;
use crate::cloud::{meta, Cloud, Server};
use crate::config::Provider;
use crate::failpoint;
use crate::model::{LaunchPhase, Member, NodeId, NodeState};
use crate::plan::Action;
use crate::state::nodes::{self, Progress};
use crate::state::pass;

impl<C: Cloud> CloudWorker<'_, C> {
    pub(super) fn delete(
        &mut self,
        action: &Action,
        node: NodeId,
        from: NodeState,
        server_ids: &[String],
        failure: bool,
    ) -> Result<()> {
        let (conn, now) = (self.work.conn, self.work.now);
        if from != NodeState::Delete {
            // Compare-and-set: a hold typed since the round observed the node wins.
            if !nodes::mark_delete(conn, node, from, &action.reason, now)? {
                return Ok(());
            }
            self.work.tally.progressed = true;
            if failure {
                self.work.tally.failed += 1;
                if let Some(label) = &action.label {
                    let at = (&self.provider.name, label);
                    nodes::record_launch_failure(conn, node, at, &action.reason, now)?;
                }
            }
        }
        if server_ids.is_empty() {
            return Ok(());
        }
        self.work.tally.deleting += 1;
        delete_node_servers(self.cloud, conn, self.provider, node, server_ids, now)
    }

    /// Delete a leaked server only if a direct GET still finds it, still ours.
    pub(super) fn delete_leak(&mut self, server_id: &str) -> Result<()> {
        let installation = self.work.runner.installation;
        match self.cloud.get_server(server_id)? {
            Some(server) if server.metadata.get(meta::INSTALLATION) == Some(installation) => {
                self.cloud.delete_server(server_id)?;
                failpoint::hit("after-leak-delete");
                log::info!(
                    "{}: deleted leaked server {} ({server_id})",
                    self.provider.name,
                    server.name
                );
                self.work.tally.leaks_deleted += 1;
            }
            _ => pass::forget_leak(self.work.conn, &self.provider.name, server_id)?,
        }
        Ok(())
    }
}

impl<C: Cloud> CloudWorker<'_, C> {
    /// A recorded server the listing did not show: retire its node only if a GET says the
    /// cloud no longer has it.
    pub(super) fn check_vanished(
        &mut self,
        action: &Action,
        node: NodeId,
        from: NodeState,
        server_id: &str,
        failure: bool,
    ) -> Result<()> {
        if self.cloud.get_server(server_id)?.is_some() {
            log::info!(
                "{}: server {server_id} of node {node} was missing from the listing but is \
                 there",
                self.provider.name
            );
            return Ok(());
        }
        let (conn, now) = (self.work.conn, self.work.now);
        let why = format!("server {server_id} vanished");
        if !nodes::mark_delete(conn, node, from, &why, now)? {
            return Ok(()); // held or deleted meanwhile
        }
        log::warn!("{}: node {node}: {why}", self.provider.name);
        self.work.tally.progressed = true;
        if failure {
            self.work.tally.failed += 1;
            if let Some(label) = &action.label {
                pass::record_failure(conn, &self.provider.name, label, &why, now)?;
            }
        }
        Ok(())
    }
}

/// Delete the servers of `node` (in state delete): the floating IPs nodepool attached go
/// first, then every server gets its delete call, and the node notes when (a lost delete is
/// sent again after a while). Every delete call is tried; the first error is returned.
pub fn delete_node_servers(
    cloud: &dyn Cloud,
    conn: &Connection,
    provider: &Provider,
    node: NodeId,
    server_ids: &[String],
    now: i64,
) -> Result<()> {
    // The floating IPs nodepool allocated for the set, by their recorded ids: an address
    // may since have been handed to another server.
    for id in nodes::floating_ip_ids(conn, node)? {
        if let Err(error) = cloud.delete_floating_ip(&id) {
            log::warn!(
                "{}: releasing floating IP {id} of node {node}: {error}",
                provider.name
            );
        }
    }
    let mut first_error = None;
    for server_id in server_ids {
        match cloud.delete_server(server_id) {
            Ok(()) => failpoint::hit("after-delete-call"),
            Err(error) => {
                first_error.get_or_insert(anyhow!("deleting server {server_id}: {error}"));
            }
        }
    }
    let step = Progress {
        phase: Some(LaunchPhase::Deleting),
        ..Progress::default()
    };
    nodes::progress(conn, Member::primary(node), NodeState::Delete, &step, now)?;
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The servers in a listing that carry `node`'s id (the primary's or a subnode's) and were
/// made by this installation on this provider: node ids start at 1 in every installation, so
/// the id alone could name another nodepool's server.
pub fn servers_of_node<'a>(
    listed: &'a [Server],
    installation: &str,
    provider: &str,
    node: NodeId,
) -> Vec<&'a Server> {
    let node = node.to_string();
    listed
        .iter()
        .filter(|server| {
            let metadata = &server.metadata;
            metadata.get(meta::INSTALLATION) == Some(installation)
                && metadata.get(meta::PROVIDER) == Some(provider)
                && metadata.get(meta::NODE_ID) == Some(node.as_str())
        })
        .collect()
}
