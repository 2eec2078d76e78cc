//! Execute a plan: database-only steps first (on this thread), then each provider's cloud
//! calls on its own thread and the SSH steps on a small pool, in parallel. Every cloud call
//! is preceded by a committed intent; every state change is compare-and-set, so an
//! operator's `hold` or `delete` typed meanwhile wins. Errors are collected per action, never
//! stop the others, and become data the next plan reads (last_error, cooldowns). No new
//! mutating call starts after the deadline; what was not done waits for the next round.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::cloud::{self, Cloud, CloudError, CreateServer, ErrorKind};
use crate::config::{render_template, Config, Provider};
use crate::failpoint;
use crate::model::{ImageName, LabelName, NodeId, NodeState, ProviderName, TargetName};
use crate::node::{bootstrap, ssh};
use crate::plan::{meta, Action, Kind, Plan};
use crate::state::nodes::{self, NewNode, Progress};
use crate::state::{pass, subnodes, Db};

/// SSH steps of one round run on at most this many threads.
const SSH_WORKERS: usize = 8;
/// A host-key scan waits at most this long for a node that does not answer yet.
const KEYSCAN_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on writing /etc/nodepool and running the ready script on one node.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(600);

/// What a round did, summed over a run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    pub launched: u32,
    pub ready: u32,
    /// Nodes whose servers got a delete call.
    pub deleting: u32,
    /// Rows removed once their servers were gone.
    pub deleted: u32,
    pub failed: u32,
    pub leaks_deleted: u32,
    /// Mutating calls not started because the deadline passed.
    pub deferred: u32,
    /// Something changed (a row moved on): the next round should come soon.
    #[serde(skip)]
    pub progressed: bool,
    #[serde(skip)]
    pub errors: Vec<String>,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.launched += other.launched;
        self.ready += other.ready;
        self.deleting += other.deleting;
        self.deleted += other.deleted;
        self.failed += other.failed;
        self.leaks_deleted += other.leaks_deleted;
        self.deferred += other.deferred;
        self.progressed |= other.progressed;
        self.errors.extend(other.errors);
    }

    fn error(&mut self, action: &Action, error: impl std::fmt::Display) {
        let message = format!("{}: {error:#}", describe(action));
        log::warn!("{message}");
        self.errors.push(message);
    }
}

fn describe(action: &Action) -> String {
    let mut out = format!("{} on {}", action.kind.name(), action.provider);
    if let Some(node) = action.node {
        out.push_str(&format!(" (node {node})"));
    } else if let Some(label) = &action.label {
        out.push_str(&format!(" (label {label})"));
    }
    out
}

/// What the executor needs besides the plan.
pub struct Runner<'a, C: Cloud> {
    pub config: &'a Config,
    pub db_path: &'a Path,
    pub clouds: &'a BTreeMap<ProviderName, C>,
    pub installation: &'a str,
    /// No mutating call starts after this.
    pub deadline: Instant,
    /// Flavors, networks and keypairs, looked up once per run.
    pub cache: &'a LaunchCache,
}

/// Per provider and image: what a create call needs, found with a few calls once per run.
#[derive(Default)]
pub struct LaunchCache {
    prepared: Mutex<BTreeMap<(ProviderName, ImageName), Prepared>>,
}

#[derive(Clone)]
struct Prepared {
    flavor_id: String,
    network_ids: Vec<String>,
    key_name: Option<String>,
}

impl<C: Cloud> Runner<'_, C> {
    pub fn execute(&self, db: &Db, plan: &Plan, now: i64) -> Tally {
        let mut tally = Tally::default();
        let mut cloud_work: BTreeMap<&ProviderName, Vec<&Action>> = BTreeMap::new();
        let mut ssh_work = VecDeque::new();
        for action in &plan.actions {
            if action.kind.is_mutating() {
                cloud_work.entry(&action.provider).or_default().push(action);
            } else if action.kind.is_ssh() {
                ssh_work.push_back(action);
            } else if let Err(error) = self.local(db, action, now, &mut tally) {
                tally.error(action, error);
            }
        }
        let providers: Vec<ProviderName> =
            plan.allocation.iter().map(|a| a.provider.clone()).collect();
        if let Err(error) = pass::store_allocations(db.conn(), &providers, &plan.allocation) {
            log::warn!("storing the allocation: {error:#}");
        }
        let ssh_work = Mutex::new(ssh_work);
        let ssh_threads = SSH_WORKERS.min(ssh_work.lock().map(|q| q.len()).unwrap_or(0));
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for (provider, actions) in cloud_work {
                handles.push(scope.spawn(move || self.provider_worker(provider, &actions, now)));
            }
            for _ in 0..ssh_threads {
                handles.push(scope.spawn(|| self.ssh_worker(&ssh_work, now)));
            }
            for handle in handles {
                match handle.join() {
                    Ok(done) => tally.add(done),
                    Err(_) => tally.errors.push("a worker thread panicked".into()),
                }
            }
        });
        tally
    }

    fn open(&self) -> Result<Db> {
        Db::open(self.db_path)
    }

    /// Database-only steps.
    fn local(&self, db: &Db, action: &Action, now: i64, tally: &mut Tally) -> Result<()> {
        let conn = db.conn();
        let node = action.node.unwrap_or_default();
        let building = NodeState::Building;
        match &action.kind {
            Kind::Adopt { subnode, server_id } => {
                let step = Progress {
                    phase: Some("booting"),
                    external_id: Some(server_id),
                    ..Progress::default()
                };
                tally.progressed |= match subnode {
                    Some(id) => subnodes::progress(conn, *id, building, &step, now)?,
                    None => nodes::progress(conn, node, building, &step, now)?,
                };
            }
            Kind::Forget { subnode } => {
                match subnode {
                    Some(id) => subnodes::remove(conn, *id)?,
                    None => {
                        nodes::remove(conn, node, building)?;
                    }
                }
                tally.progressed = true;
            }
            Kind::RecordAddress {
                subnode,
                ip,
                ip_private,
                next_phase,
            } => {
                let step = Progress {
                    phase: Some(next_phase),
                    ip: Some(ip),
                    ip_private: ip_private.as_deref(),
                    ..Progress::default()
                };
                tally.progressed |= match subnode {
                    Some(id) => subnodes::progress(conn, *id, building, &step, now)?,
                    None => nodes::progress(conn, node, building, &step, now)?,
                };
            }
            Kind::MarkReady => {
                if mark_ready(conn, action, now)? {
                    tally.ready += 1;
                    tally.progressed = true;
                }
            }
            Kind::RemoveRow { from } => {
                if nodes::remove(conn, node, *from)? {
                    tally.deleted += 1;
                    tally.progressed = true;
                }
            }
            Kind::SightLeak { server_id } => {
                pass::sight_leak(conn, &action.provider, server_id, now)?;
            }
            Kind::ForgetLeak { server_id } => {
                pass::forget_leak(conn, &action.provider, server_id)?;
            }
            other => return Err(anyhow!("{} is not a database step", other.name())),
        }
        Ok(())
    }

    /// One provider's mutating calls, in plan order (deletes first), spaced by the HTTP
    /// layer's `rate`.
    fn provider_worker(&self, provider: &ProviderName, actions: &[&Action], now: i64) -> Tally {
        let mut tally = Tally::default();
        let (db, cloud, settings) = match (
            self.open(),
            self.clouds.get(provider),
            self.config.providers.get(provider),
        ) {
            (Ok(db), Some(cloud), Some(settings)) => (db, cloud, settings),
            (Err(error), _, _) => {
                tally.errors.push(format!("{provider}: {error:#}"));
                return tally;
            }
            _ => return tally,
        };
        for action in actions {
            if Instant::now() >= self.deadline {
                tally.deferred += 1;
                continue;
            }
            let outcome = match &action.kind {
                Kind::Launch {
                    target,
                    image,
                    image_id,
                    az,
                } => self.launch(
                    &db,
                    cloud,
                    settings,
                    action,
                    target,
                    image,
                    image_id,
                    az.as_deref(),
                    now,
                    &mut tally,
                ),
                Kind::LaunchSubnode => {
                    self.launch_subnode(&db, cloud, settings, action, now, &mut tally)
                }
                Kind::AttachFloatingIp {
                    subnode,
                    server_id,
                    pool,
                } => self.attach(
                    &db, cloud, action, *subnode, server_id, pool, now, &mut tally,
                ),
                Kind::Delete {
                    from,
                    server_ids,
                    failure,
                } => self.delete(
                    &db, cloud, settings, action, *from, server_ids, *failure, now, &mut tally,
                ),
                Kind::DeleteLeak { server_id } => {
                    self.delete_leak(&db, cloud, action, server_id, &mut tally)
                }
                other => Err(anyhow!("{} is not a cloud step", other.name())),
            };
            if let Err(error) = outcome {
                tally.error(action, error);
            }
        }
        tally
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        &self,
        db: &Db,
        cloud: &C,
        provider: &Provider,
        action: &Action,
        target: &TargetName,
        image: &ImageName,
        image_id: &str,
        az: Option<&str>,
        now: i64,
        tally: &mut Tally,
    ) -> Result<()> {
        let label_name = action.label.as_ref().context("a launch names its label")?;
        let prepared = match self.prepare(cloud, provider, image) {
            Ok(prepared) => prepared,
            Err(error) => {
                tally.failed += 1;
                pass::record_failure(
                    db.conn(),
                    &provider.name,
                    label_name,
                    &error.to_string(),
                    now,
                )?;
                return Err(error);
            }
        };
        let target_config = self
            .config
            .targets
            .get(target)
            .with_context(|| format!("target {target} is not configured"))?;
        let new = NewNode {
            provider: provider.name.clone(),
            label: label_name.clone(),
            target: target.clone(),
            state: NodeState::Building,
            az: az.map(str::to_string),
            launch_phase: Some("requested".into()),
            image_external_id: Some(image_id.to_string()),
        };
        // Intent first: the row exists (and names the server) before the cloud hears of it.
        let (id, hostname) = nodes::insert(db.conn(), &new, now, |id| {
            render_template(
                &target_config.hostname,
                &[
                    ("label.name", label_name.as_str()),
                    ("label.image", image.as_str()),
                    ("provider.name", provider.name.as_str()),
                    ("node_id", &id.to_string()),
                    ("timestamp", &now.to_string()),
                ],
            )
        })?;
        failpoint::hit("after-intent");
        let mut metadata = self.metadata(provider, image, label_name, id);
        metadata.remove(meta::SUBNODE_ID);
        let request = CreateServer {
            name: hostname,
            image_id: image_id.to_string(),
            flavor_id: prepared.flavor_id,
            key_name: prepared.key_name,
            availability_zone: az.map(str::to_string),
            network_ids: prepared.network_ids,
            metadata,
            config_drive: provider.images.get(image).is_some_and(|i| i.config_drive),
        };
        let created = cloud.create_server(&request);
        self.record_create(db, provider, label_name, id, None, created, now, tally)
    }

    fn launch_subnode(
        &self,
        db: &Db,
        cloud: &C,
        provider: &Provider,
        action: &Action,
        now: i64,
        tally: &mut Tally,
    ) -> Result<()> {
        let node_id = action.node.context("a subnode launch names its node")?;
        let Some(node) = nodes::get(db.conn(), node_id)? else {
            return Ok(()); // gone meanwhile
        };
        let label = self
            .config
            .labels
            .get(&node.label)
            .with_context(|| format!("label {} is not configured", node.label))?;
        let target = self
            .config
            .targets
            .get(&node.target)
            .with_context(|| format!("target {} is not configured", node.target))?;
        let image_id = node
            .image_external_id
            .clone()
            .context("the primary records no image")?;
        let prepared = self.prepare(cloud, provider, &label.image)?;
        let inserted = subnodes::insert(db.conn(), node_id, now, |sub_id| {
            render_template(
                &target.subnode_hostname,
                &[
                    ("label.name", label.name.as_str()),
                    ("label.image", label.image.as_str()),
                    ("provider.name", provider.name.as_str()),
                    ("node_id", &node_id.to_string()),
                    ("subnode_id", &sub_id.to_string()),
                    ("timestamp", &now.to_string()),
                ],
            )
        })?;
        let Some((sub_id, hostname)) = inserted else {
            return Ok(()); // the primary is no longer building (held, deleted)
        };
        failpoint::hit("after-intent");
        let mut metadata = self.metadata(provider, &label.image, &label.name, node_id);
        metadata.insert(meta::SUBNODE_ID.into(), sub_id.to_string());
        let request = CreateServer {
            name: hostname,
            image_id,
            flavor_id: prepared.flavor_id,
            key_name: prepared.key_name,
            availability_zone: node.az.clone(),
            network_ids: prepared.network_ids,
            metadata,
            config_drive: provider
                .images
                .get(&label.image)
                .is_some_and(|i| i.config_drive),
        };
        let created = cloud.create_server(&request);
        self.record_create(
            db,
            provider,
            &label.name,
            node_id,
            Some(sub_id),
            created,
            now,
            tally,
        )
    }

    /// After a create call: record the server id, or sort the error into quota (a state,
    /// not a failure), a definite refusal (the row goes) or an ambiguous answer (the row
    /// stays; the next round adopts the server or forgets the row).
    #[allow(clippy::too_many_arguments)]
    fn record_create(
        &self,
        db: &Db,
        provider: &Provider,
        label: &LabelName,
        node_id: NodeId,
        subnode: Option<i64>,
        created: Result<String, CloudError>,
        now: i64,
        tally: &mut Tally,
    ) -> Result<()> {
        let conn = db.conn();
        match created {
            Ok(server_id) => {
                failpoint::hit("after-create");
                let step = Progress {
                    phase: Some("booting"),
                    external_id: Some(&server_id),
                    ..Progress::default()
                };
                let moved_on = match subnode {
                    Some(id) => subnodes::progress(conn, id, NodeState::Building, &step, now)?,
                    None => nodes::progress(conn, node_id, NodeState::Building, &step, now)?,
                };
                if !moved_on {
                    // Held or deleted while the call was out: the state is the operator's,
                    // but the row still names its server, so `list` shows it and nothing
                    // has to find it by metadata.
                    let (table, id) = match subnode {
                        Some(id) => ("subnode", id),
                        None => ("node", node_id),
                    };
                    conn.execute(
                        &format!(
                            "UPDATE {table} SET external_id = ?1 \
                             WHERE id = ?2 AND external_id IS NULL"
                        ),
                        rusqlite::params![server_id, id],
                    )?;
                }
                failpoint::hit("after-record");
                tally.launched += 1;
                tally.progressed = true;
                Ok(())
            }
            Err(error) => {
                let definite = matches!(
                    error.kind,
                    ErrorKind::QuotaExceeded
                        | ErrorKind::RateLimited
                        | ErrorKind::AuthFailed
                        | ErrorKind::NotFound
                ) || matches!(error.kind, ErrorKind::Api { status } if status < 500);
                if definite {
                    match subnode {
                        Some(id) => subnodes::remove(conn, id)?,
                        None => {
                            nodes::remove(conn, node_id, NodeState::Building)?;
                        }
                    }
                } else {
                    let step = Progress {
                        last_error: Some(&error.message),
                        ..Progress::default()
                    };
                    nodes::progress(conn, node_id, NodeState::Building, &step, now)?;
                }
                match error.kind {
                    ErrorKind::QuotaExceeded => {
                        pass::record_quota(conn, &provider.name, &error.message, now)?
                    }
                    ErrorKind::RateLimited => {}
                    _ => {
                        tally.failed += 1;
                        pass::record_failure(conn, &provider.name, label, &error.message, now)?;
                    }
                }
                Err(anyhow!("create failed: {error}"))
            }
        }
    }

    fn metadata(
        &self,
        provider: &Provider,
        image: &ImageName,
        label: &LabelName,
        node_id: NodeId,
    ) -> BTreeMap<String, String> {
        let mut metadata = provider
            .images
            .get(image)
            .map(|i| i.meta.clone())
            .unwrap_or_default();
        for (key, value) in [
            (meta::INSTALLATION, self.installation.to_string()),
            (meta::NODE_ID, node_id.to_string()),
            (meta::PROVIDER, provider.name.to_string()),
            (meta::IMAGE, image.to_string()),
            (meta::LABEL, label.to_string()),
        ] {
            metadata.insert(key.to_string(), value);
        }
        metadata
    }

    /// Flavor, networks and keypair for launching `image` on `provider` (cached per run).
    fn prepare(&self, cloud: &C, provider: &Provider, image: &ImageName) -> Result<Prepared> {
        let key = (provider.name.clone(), image.clone());
        if let Some(found) = self
            .cache
            .prepared
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(found);
        }
        let wanted = provider
            .images
            .get(image)
            .with_context(|| format!("image {image} is not configured on {}", provider.name))?;
        let flavors = cloud.list_flavors()?;
        let flavor = cloud::choose_flavor(&flavors, wanted.min_ram, wanted.name_filter.as_deref())
            .with_context(|| {
                format!(
                    "no flavor with at least {} MB of RAM{} on {}",
                    wanted.min_ram,
                    wanted
                        .name_filter
                        .as_ref()
                        .map(|f| format!(" and `{f}` in its name"))
                        .unwrap_or_default(),
                    provider.name
                )
            })?;
        let network_ids = cloud::resolve_networks(cloud, &provider.networks)?;
        let key_name = match &provider.keypair {
            Some(name) => Some(name.clone()),
            None => self.managed_keypair(cloud, provider, image, &wanted.private_key)?,
        };
        let prepared = Prepared {
            flavor_id: flavor.id.clone(),
            network_ids,
            key_name,
        };
        if let Ok(mut map) = self.cache.prepared.lock() {
            map.insert(key, prepared.clone());
        }
        Ok(prepared)
    }

    /// Without a configured `keypair`, nodepool keeps one per image, holding the public half
    /// of the image's `private-key`, so cloud images accept the SSH login. No private key
    /// file: no keypair (the image must let the user in some other way).
    fn managed_keypair(
        &self,
        cloud: &C,
        provider: &Provider,
        image: &ImageName,
        private_key: &Path,
    ) -> Result<Option<String>> {
        if !private_key.exists() {
            return Ok(None);
        }
        let name = managed_keypair_name(self.installation, image);
        if cloud.list_keypairs()?.iter().any(|k| k.name == name) {
            return Ok(Some(name));
        }
        let public = ssh::public_key_of(private_key)?;
        cloud
            .create_keypair(&name, &public)
            .with_context(|| format!("creating keypair {name} on {}", provider.name))?;
        Ok(Some(name))
    }

    #[allow(clippy::too_many_arguments)]
    fn attach(
        &self,
        db: &Db,
        cloud: &C,
        action: &Action,
        subnode: Option<i64>,
        server_id: &str,
        pool: &str,
        now: i64,
        tally: &mut Tally,
    ) -> Result<()> {
        let node = action.node.unwrap_or_default();
        let attached = cloud.attach_floating_ip(server_id, pool)?;
        failpoint::hit("after-floating-ip");
        let step = Progress {
            phase: Some("floating-ip"),
            ip: Some(&attached.ip),
            ..Progress::default()
        };
        match subnode {
            Some(id) => subnodes::progress(db.conn(), id, NodeState::Building, &step, now)?,
            None => nodes::progress(db.conn(), node, NodeState::Building, &step, now)?,
        };
        tally.progressed = true;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn delete(
        &self,
        db: &Db,
        cloud: &C,
        provider: &Provider,
        action: &Action,
        from: NodeState,
        server_ids: &[String],
        failure: bool,
        now: i64,
        tally: &mut Tally,
    ) -> Result<()> {
        let conn = db.conn();
        let node = action.node.context("a delete names its node")?;
        if from != NodeState::Delete {
            // Compare-and-set: a hold typed since the round observed the node wins.
            if !nodes::mark_delete(conn, node, from, &action.reason, now)? {
                return Ok(());
            }
            tally.progressed = true;
            if failure {
                tally.failed += 1;
                if let Some(label) = &action.label {
                    pass::record_failure(conn, &provider.name, label, &action.reason, now)?;
                }
            }
        }
        if server_ids.is_empty() {
            return Ok(());
        }
        // Floating IPs nodepool attached go with their servers.
        if provider.pool.is_some() {
            cloud::release_floating_ips(cloud, &node_addresses(conn, node)?);
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
            phase: Some("deleting"),
            ..Progress::default()
        };
        nodes::progress(conn, node, NodeState::Delete, &step, now)?;
        tally.deleting += 1;
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Delete a leaked server only if a direct GET still finds it, still ours.
    fn delete_leak(
        &self,
        db: &Db,
        cloud: &C,
        action: &Action,
        server_id: &str,
        tally: &mut Tally,
    ) -> Result<()> {
        match cloud.get_server(server_id)? {
            Some(server) if server.metadata.get(meta::INSTALLATION) == Some(self.installation) => {
                cloud.delete_server(server_id)?;
                failpoint::hit("after-leak-delete");
                log::info!(
                    "{}: deleted leaked server {} ({server_id})",
                    action.provider,
                    server.name
                );
                tally.leaks_deleted += 1;
            }
            _ => pass::forget_leak(db.conn(), &action.provider, server_id)?,
        }
        Ok(())
    }

    fn ssh_worker(&self, queue: &Mutex<VecDeque<&Action>>, now: i64) -> Tally {
        let mut tally = Tally::default();
        let db = match self.open() {
            Ok(db) => db,
            Err(error) => {
                tally.errors.push(format!("{error:#}"));
                return tally;
            }
        };
        loop {
            let Some(action) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                return tally;
            };
            let outcome = match &action.kind {
                Kind::ScanHostKeys { subnode, ip, port } => {
                    self.scan(&db, action, *subnode, ip, *port, now, &mut tally)
                }
                Kind::Bootstrap => self.bootstrap(&db, action, now, &mut tally),
                other => Err(anyhow!("{} is not an SSH step", other.name())),
            };
            if let Err(error) = outcome {
                tally.error(action, error);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn scan(
        &self,
        db: &Db,
        action: &Action,
        subnode: Option<i64>,
        ip: &str,
        port: u16,
        now: i64,
        tally: &mut Tally,
    ) -> Result<()> {
        let Some(keys) = ssh::keyscan(ip, port, KEYSCAN_TIMEOUT)? else {
            return Ok(()); // not answering yet; boot-timeout decides
        };
        let step = Progress {
            phase: Some("reachable"),
            host_keys: Some(&keys),
            ..Progress::default()
        };
        let node = action.node.unwrap_or_default();
        match subnode {
            Some(id) => subnodes::progress(db.conn(), id, NodeState::Building, &step, now)?,
            None => nodes::progress(db.conn(), node, NodeState::Building, &step, now)?,
        };
        failpoint::hit("after-keyscan");
        tally.progressed = true;
        Ok(())
    }

    fn bootstrap(&self, db: &Db, action: &Action, now: i64, tally: &mut Tally) -> Result<()> {
        let conn = db.conn();
        let node_id = action.node.context("a bootstrap names its node")?;
        let Some(node) = nodes::get(conn, node_id)? else {
            return Ok(());
        };
        if node.state != NodeState::Building {
            return Ok(()); // held or deleted since the round observed it
        }
        let set = self.node_set(&node, &subnodes::of_node(conn, node_id)?)?;
        let label = self.config.labels.get(&node.label);
        // Images nodepool builds carry script-dir already (copied at build time, as root);
        // a cloud image gets it now.
        let script_dir = self
            .config
            .providers
            .get(&node.provider)
            .zip(label)
            .and_then(|(p, l)| p.images.get(&l.image))
            .filter(|image| matches!(image.source, crate::config::ImageSource::Cloud { .. }))
            .and(self.config.script_dir.as_deref());
        let done = bootstrap::bootstrap(
            &set,
            script_dir,
            label.and_then(|l| l.ready_script.as_deref()),
            BOOTSTRAP_TIMEOUT,
        );
        if let Err(error) = done {
            let why = format!("bootstrap failed: {error:#}");
            if nodes::mark_delete(conn, node_id, NodeState::Building, &why, now)? {
                tally.failed += 1;
                pass::record_failure(conn, &node.provider, &node.label, &why, now)?;
            }
            return Err(anyhow!(why));
        }
        failpoint::hit("mid-ssh");
        if mark_ready(conn, action, now)? {
            tally.ready += 1;
            tally.progressed = true;
        }
        Ok(())
    }

    fn node_set(
        &self,
        node: &nodes::Node,
        subs: &[subnodes::Subnode],
    ) -> Result<bootstrap::NodeSet> {
        let provider = self
            .config
            .providers
            .get(&node.provider)
            .with_context(|| format!("provider {} is not configured", node.provider))?;
        let label = self
            .config
            .labels
            .get(&node.label)
            .with_context(|| format!("label {} is not configured", node.label))?;
        let image = provider.images.get(&label.image).with_context(|| {
            format!(
                "image {} is not configured on {}",
                label.image, provider.name
            )
        })?;
        let member = |hostname: &str,
                      server_id: Option<&String>,
                      ip: Option<&String>,
                      ip_private: Option<&String>,
                      keys: Option<&String>|
         -> Result<bootstrap::Member> {
            let ip = ip.with_context(|| format!("{hostname} has no address recorded"))?;
            Ok(bootstrap::Member {
                hostname: hostname.to_string(),
                server_id: server_id.cloned().unwrap_or_default(),
                public_ip: ip.clone(),
                private_ip: ip_private.cloned().unwrap_or_default(),
                endpoint: endpoint(image, ip),
                known_hosts: keys.cloned().unwrap_or_default(),
            })
        };
        let primary = member(
            &node.hostname,
            node.external_id.as_ref(),
            node.ip.as_ref(),
            node.ip_private.as_ref(),
            node.host_keys.as_ref(),
        )?;
        let subnodes = subs
            .iter()
            .map(|s| {
                member(
                    &s.hostname,
                    s.external_id.as_ref(),
                    s.ip.as_ref(),
                    s.ip_private.as_ref(),
                    s.host_keys.as_ref(),
                )
            })
            .collect::<Result<_>>()?;
        let cloud = match &provider.auth {
            crate::config::ProviderAuth::CloudsYaml { cloud } => Some(cloud.clone()),
            crate::config::ProviderAuth::Inline { .. } => None,
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

/// Subnodes first, then the primary: building → ready, compare-and-set; a reset failure
/// count for the provider/label. False when the primary was no longer building.
fn mark_ready(conn: &rusqlite::Connection, action: &Action, now: i64) -> Result<bool> {
    let node_id = action.node.context("marking ready names a node")?;
    let tx = conn.unchecked_transaction()?;
    subnodes::transition_all(&tx, node_id, NodeState::Building, NodeState::Ready, now)?;
    let moved = nodes::transition(&tx, node_id, NodeState::Building, NodeState::Ready, now)?;
    if !moved {
        // Held or deleted meanwhile: leave the subnodes as the operator's state implies.
        return Ok(false);
    }
    tx.execute(
        "UPDATE node SET launch_phase = 'ready', phase_time = ?1 WHERE id = ?2",
        rusqlite::params![now, node_id],
    )?;
    if let Some(label) = &action.label {
        pass::record_success(&tx, &action.provider, label)?;
    }
    tx.commit()?;
    Ok(true)
}

/// How nodepool logs into a node booted from `image` at `host`.
pub fn endpoint(image: &crate::config::ProviderImage, host: &str) -> ssh::Endpoint {
    ssh::Endpoint {
        host: host.to_string(),
        port: image.connection_port,
        user: image.username.clone(),
        private_key: image.private_key.clone(),
    }
}

/// The addresses recorded for a node and its subnodes.
pub fn node_addresses(conn: &rusqlite::Connection, node: NodeId) -> Result<Vec<String>> {
    let mut addresses: Vec<String> = nodes::get(conn, node)?
        .and_then(|n| n.ip)
        .into_iter()
        .collect();
    addresses.extend(
        subnodes::of_node(conn, node)?
            .into_iter()
            .filter_map(|s| s.ip),
    );
    Ok(addresses)
}

/// The keypair nodepool keeps for `image` when the provider names none.
pub fn managed_keypair_name(installation: &str, image: &ImageName) -> String {
    let short = installation.get(..8).unwrap_or(installation);
    format!("nodepool-{short}-{image}")
}
