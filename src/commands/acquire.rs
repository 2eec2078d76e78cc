//! `nodepool acquire LABEL [--count N] [--owner TEXT] [--wait SECONDS]`: hand ready nodes to
//! a CI job that is not Jenkins. N ready nodes (a primary with its subnodes counts as one)
//! move to `used` in one transaction, compare-and-set, with their owner and time, and are
//! printed as one JSON document with what the job needs to log in. With `--wait`, a request
//! that `reconcile` counts as demand above min-ready is registered until the nodes are ready
//! and taken, or the time is up (exit 124; the request is withdrawn).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use super::Context;
use crate::cli::AcquireArgs;
use crate::exit::TimedOut;
use crate::model::node::{Node, Subnode};
use crate::model::{LabelName, NodeId};
use crate::output;
use crate::state::{nodes, requests, subnodes, Db};

/// The longest `--wait`.
const MAX_WAIT_S: u64 = 86_400;
/// How often a waiting acquire looks for its nodes.
const POLL: Duration = Duration::from_secs(1);

/// What a job needs to reach one node.
#[derive(Debug, Serialize)]
struct Login {
    id: String,
    hostname: String,
    ip: Option<String>,
    ip_private: Option<String>,
    username: Option<String>,
    port: Option<u16>,
    /// The node's host keys as known_hosts lines, as nodepool recorded them on first contact.
    host_keys: Option<String>,
}

#[derive(Debug, Serialize)]
struct Acquired {
    #[serde(flatten)]
    login: Login,
    provider: String,
    az: Option<String>,
    label: String,
    owner: Option<String>,
    subnodes: Vec<Login>,
}

pub fn run(ctx: &Context, args: &AcquireArgs) -> Result<()> {
    let config = &ctx.config;
    let label = LabelName::from(args.label.as_str());
    if !config.labels.contains_key(&label) {
        let known: Vec<&str> = config.labels.keys().map(|l| l.as_str()).collect();
        bail!(
            "no label named `{label}` in {}; labels: {}",
            config.path.display(),
            known.join(", ")
        );
    }
    let owner = args
        .owner
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_string());
    let db = ctx.open_db()?;
    let conn = db.conn();
    let wanted = (&label, args.count, owner.as_str());
    let taken = match args.wait {
        None => {
            requests::take_ready(conn, &label, args.count, &owner, ctx.now)?.with_context(|| {
                format!(
                    "fewer than {} nodes of {label} are ready (see `nodepool status`; \
                     --wait SECONDS asks reconcile for them)",
                    args.count
                )
            })?
        }
        // A day at most: a request is demand, and a forgotten one should not hold it long.
        Some(seconds) => wait_for(&db, wanted, Duration::from_secs(seconds.min(MAX_WAIT_S)))?,
    };
    let acquired = taken
        .into_iter()
        .map(|id| describe(ctx, &db, id))
        .collect::<Result<Vec<_>>>()?;
    output::json(&acquired)
}

/// Take the nodes at once if they are ready; else register the request and look every second
/// until they are, the time is up or a signal comes. The request goes in every case.
fn wait_for(
    db: &Db,
    (label, count, owner): (&LabelName, u32, &str),
    wait: Duration,
) -> Result<Vec<NodeId>> {
    let conn = db.conn();
    let now = crate::clock::now();
    if let Some(taken) = requests::take_ready(conn, label, count, owner, now)? {
        return Ok(taken);
    }
    crate::interrupt::install();
    let expires = now + wait.as_secs() as i64;
    let id = requests::insert(conn, (label, count, owner), now, expires)?;
    log::info!(
        "waiting up to {} s for {count} nodes of {label} (request {id})",
        wait.as_secs()
    );
    let until = Instant::now() + wait;
    let outcome = loop {
        // Before taking: nodes taken by a process dying of its signal would never be released.
        if crate::interrupt::requested() {
            break Err(anyhow::anyhow!(
                "interrupted while waiting for {count} nodes of {label}"
            ));
        }
        let now = crate::clock::now();
        match requests::take_for(conn, id, (label, count, owner), now) {
            Ok(Some(taken)) => break Ok(taken),
            Ok(None) => {}
            Err(error) => break Err(error),
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(TimedOut(format!(
                "{count} nodes of {label} were not ready within {} s; the request was withdrawn",
                wait.as_secs()
            ))
            .into());
        }
        std::thread::sleep(POLL.min(left));
    };
    if outcome.is_err() {
        // The wait's own error is the one to report; a request left behind expires.
        if let Err(error) = requests::remove(conn, id) {
            log::warn!("{error:#}");
        }
    }
    outcome
}

/// The JSON of an acquired node and its subnodes.
fn describe(ctx: &Context, db: &Db, id: NodeId) -> Result<Acquired> {
    let conn = db.conn();
    let node: Node = nodes::get(conn, id)?.with_context(|| format!("node {id} vanished"))?;
    let image = ctx.config.labels.get(&node.label).and_then(|l| {
        ctx.config
            .providers
            .get(&node.provider)?
            .images
            .get(&l.image)
    });
    let login =
        |id: String, hostname: &str, ip: &Option<String>, private: &Option<String>, keys| Login {
            id,
            hostname: hostname.to_string(),
            ip: ip.clone(),
            ip_private: private.clone().or_else(|| ip.clone()),
            username: image.map(|i| i.username.clone()),
            port: image.map(|i| i.connection_port),
            host_keys: keys,
        };
    let subs = subnodes::of_node(conn, id)?
        .iter()
        .map(|s: &Subnode| {
            let keys = nodes::host_keys(conn, s.member())?;
            Ok(login(
                format!("{id}.{}", s.id.0),
                &s.hostname,
                &s.ip,
                &s.ip_private,
                keys,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let keys = nodes::host_keys(conn, crate::model::Member::primary(id))?;
    Ok(Acquired {
        login: login(
            id.to_string(),
            &node.hostname,
            &node.ip,
            &node.ip_private,
            keys,
        ),
        provider: node.provider.to_string(),
        az: node.az.clone(),
        label: node.label.to_string(),
        owner: node.owner.clone(),
        subnodes: subs,
    })
}
