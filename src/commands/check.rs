//! `nodepool check`: log into every ready node over SSH (with its recorded host keys) and
//! mark the ones that fail for deletion; the next pass deletes them and refills the pool.
//! Nodes on providers with `host-key-checking: false` cannot be reached and are skipped.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::reconcile::take_lock;
use super::Context;
use crate::cli::{Format, LockArgs};
use crate::model::node::Node;
use crate::model::Member;
use crate::model::{NodeId, NodeState};
use crate::node::ssh;
use crate::output;
use crate::state::nodes;

/// Checks run on this many threads.
const WORKERS: usize = 8;
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Serialize, Default)]
struct Report {
    checked: usize,
    skipped: usize,
    failed: Vec<Failure>,
}

#[derive(Serialize)]
struct Failure {
    id: NodeId,
    hostname: String,
    error: String,
}

pub fn run(ctx: &Context, args: &LockArgs) -> Result<()> {
    let _lock = take_lock(ctx, "check", args)?;
    let db = ctx.open_db()?;
    let mut report = Report::default();
    let mut work = VecDeque::new();
    for node in nodes::list(db.conn())? {
        if node.state != NodeState::Ready {
            continue;
        }
        let keys = nodes::host_keys(db.conn(), Member::primary(node.id))?;
        match (endpoint(ctx, &node), keys) {
            (Some(endpoint), Some(keys)) => work.push_back((node, endpoint, keys)),
            _ => report.skipped += 1,
        }
    }
    report.checked = work.len();
    let work = Mutex::new(work);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(report.checked) {
            scope.spawn(|| loop {
                let Some((node, endpoint, keys)) = work.lock().ok().and_then(|mut q| q.pop_front())
                else {
                    return;
                };
                if let Err(error) = ssh::check(&endpoint, &keys, CHECK_TIMEOUT) {
                    if let Ok(mut failures) = failures.lock() {
                        failures.push((node, format!("{error:#}")));
                    }
                }
            });
        }
    });
    for (node, error) in failures.into_inner().unwrap_or_default() {
        let why = format!("check failed: {error}");
        // Compare-and-set: a node acquired or held since it was read is left alone.
        if nodes::mark_delete(db.conn(), node.id, NodeState::Ready, &why, ctx.now)? {
            log::warn!("node {} ({}): {why}", node.id, node.hostname);
            report.failed.push(Failure {
                id: node.id,
                hostname: node.hostname,
                error,
            });
        }
    }
    report.failed.sort_by_key(|f| f.id);
    match ctx.format {
        Format::Json => output::json(&report),
        Format::Table => output::line(&format!(
            "check: {} ready node{} checked, {} failed and marked for deletion, {} skipped \
             (host-key-checking off, or no address or host keys recorded)",
            report.checked,
            if report.checked == 1 { "" } else { "s" },
            report.failed.len(),
            report.skipped
        )),
    }
}

/// How to reach a ready node, if its provider allows SSH and its address is known.
fn endpoint(ctx: &Context, node: &Node) -> Option<ssh::Endpoint> {
    let provider = ctx.config.providers.get(&node.provider)?;
    if !provider.host_key_checking {
        return None;
    }
    let label = ctx.config.labels.get(&node.label)?;
    let image = provider.images.get(&label.image)?;
    Some(ssh::Endpoint::for_image(image, node.ip.as_deref()?))
}
