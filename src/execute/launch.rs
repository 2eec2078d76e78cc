//! Launching: a primary or a subnode gets its row (the intent, committed) before the create
//! call, both through one request builder; the answer is recorded or sorted into quota, a
//! definite refusal or an ambiguous failure. Also the floating-IP attach of a launch step, and
//! what a create needs (flavor, networks, keypair), found once per run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};

use super::CloudWorker;
use crate::cloud::{self, meta, Cloud, CloudError, CreateServer, ErrorKind};
use crate::config::render_template;
use crate::failpoint;
use crate::model::{ImageName, LabelName, LaunchPhase, Member, NodeId, NodeState, TargetName};
use crate::node::ssh;
use crate::plan::Action;
use crate::state::listings::{self, Kind};
use crate::state::nodes::{self, FloatingIpIntent, NewNode, Progress};
use crate::state::{pass, subnodes};

/// Per provider and image: what a create call needs, found with a few calls once per run.
/// Each entry is found by one thread while the others launching the same image wait for it,
/// so parallel launches neither repeat the lookups nor race to create the keypair.
#[derive(Default)]
pub struct LaunchCache {
    prepared: Mutex<BTreeMap<(crate::model::ProviderName, ImageName), PreparedSlot>>,
}

/// One entry of the cache, filled by the first thread that needs it.
type PreparedSlot = Arc<Mutex<Option<Prepared>>>;

impl LaunchCache {
    /// Find what the provider's creates need again (its flavor was refused).
    fn forget_provider(&self, provider: &crate::model::ProviderName) {
        if let Ok(mut prepared) = self.prepared.lock() {
            prepared.retain(|(name, _), _| name != provider);
        }
    }
}

#[derive(Clone)]
struct Prepared {
    flavor_id: String,
    network_ids: Vec<String>,
    key_name: Option<String>,
}

/// The server a member of a node's set gets.
struct Wanted<'a> {
    member: Member,
    hostname: String,
    label: &'a LabelName,
    image: &'a ImageName,
    image_id: String,
    az: Option<String>,
}

impl<C: Cloud> CloudWorker<'_, C> {
    pub(super) fn launch(
        &mut self,
        action: &Action,
        target: &TargetName,
        image: &ImageName,
        image_id: &str,
        az: Option<&str>,
    ) -> Result<()> {
        let label = action.label.as_ref().context("a launch names its label")?;
        let prepared = match self.prepare(image) {
            Ok(prepared) => prepared,
            Err(error) => {
                self.work.tally.failed += 1;
                let why = format!("{error:#}");
                pass::record_failure(
                    self.work.conn,
                    &self.provider.name,
                    label,
                    &why,
                    self.work.now,
                )?;
                return Err(error);
            }
        };
        let config = self.work.runner.config;
        let target_config = config
            .targets
            .get(target)
            .with_context(|| format!("target {target} is not configured"))?;
        let new = NewNode {
            provider: self.provider.name.clone(),
            label: label.clone(),
            target: target.clone(),
            state: NodeState::Building,
            az: az.map(str::to_string),
            launch_phase: Some(LaunchPhase::Requested),
            image_external_id: Some(image_id.to_string()),
        };
        let now = self.work.now;
        // Intent first: the row exists (and names the server) before the cloud hears of it.
        let (id, hostname) = nodes::insert(self.work.conn, &new, now, |id| {
            render_template(
                &target_config.hostname,
                &[
                    ("label.name", label.as_str()),
                    ("label.image", image.as_str()),
                    ("provider.name", self.provider.name.as_str()),
                    ("node_id", &id.to_string()),
                    ("timestamp", &now.to_string()),
                ],
            )
        })?;
        failpoint::hit("after-intent");
        self.create(
            &prepared,
            Wanted {
                member: Member::primary(id),
                hostname,
                label,
                image,
                image_id: image_id.to_string(),
                az: az.map(str::to_string),
            },
        )
    }

    pub(super) fn launch_subnode(&mut self, node_id: NodeId) -> Result<()> {
        let conn = self.work.conn;
        let Some(node) = nodes::get(conn, node_id)? else {
            return Ok(()); // gone meanwhile
        };
        let config = self.work.runner.config;
        let label = config
            .labels
            .get(&node.label)
            .with_context(|| format!("label {} is not configured", node.label))?;
        let target = config
            .targets
            .get(&node.target)
            .with_context(|| format!("target {} is not configured", node.target))?;
        let image_id = node
            .image_external_id
            .clone()
            .context("the primary records no image")?;
        let prepared = self.prepare(&label.image)?;
        let now = self.work.now;
        let inserted = subnodes::insert(conn, node_id, now, |sub_id| {
            render_template(
                &target.subnode_hostname,
                &[
                    ("label.name", label.name.as_str()),
                    ("label.image", label.image.as_str()),
                    ("provider.name", self.provider.name.as_str()),
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
        self.create(
            &prepared,
            Wanted {
                member: Member::subnode(node_id, sub_id),
                hostname,
                label: &label.name,
                image: &label.image,
                image_id,
                az: node.az.clone(),
            },
        )
    }

    /// The create call for a member whose row is committed, and the recording of its answer.
    /// The row says the call is out before it goes: a row still `requested` later was never
    /// sent and can be forgotten at once; a `creating` one is looked for first.
    fn create(&mut self, prepared: &Prepared, wanted: Wanted<'_>) -> Result<()> {
        let sending = Progress {
            phase: Some(LaunchPhase::Creating),
            ..Progress::default()
        };
        let (conn, now) = (self.work.conn, self.work.now);
        if !nodes::progress(conn, wanted.member, NodeState::Building, &sending, now)? {
            return Ok(()); // held or deleted since its intent was written
        }
        let image_config = self.provider.images.get(wanted.image);
        let mut metadata = image_config.map(|i| i.meta.clone()).unwrap_or_default();
        let mut ours = vec![
            (
                meta::INSTALLATION,
                self.work.runner.installation.to_string(),
            ),
            (meta::NODE_ID, wanted.member.node.to_string()),
            (meta::PROVIDER, self.provider.name.to_string()),
            (meta::IMAGE, wanted.image.to_string()),
            (meta::LABEL, wanted.label.to_string()),
        ];
        if let Some(subnode) = wanted.member.subnode {
            ours.push((meta::SUBNODE_ID, subnode.to_string()));
        }
        for (key, value) in ours {
            metadata.insert(key.to_string(), value);
        }
        let request = CreateServer {
            name: wanted.hostname,
            image_id: wanted.image_id,
            flavor_id: prepared.flavor_id.clone(),
            key_name: prepared.key_name.clone(),
            availability_zone: wanted.az,
            network_ids: prepared.network_ids.clone(),
            metadata,
            config_drive: image_config.is_some_and(|i| i.config_drive),
        };
        let created = self.cloud.create_server(&request);
        self.record_create(wanted.member, wanted.label, created)
    }

    /// After a create call: record the server id, or sort the error into a definite refusal
    /// (the row goes; quota is a state to wait out, not a failure) or a lost answer (the row
    /// stays; the next rounds adopt the server it may have made, or forget the row after a
    /// grace period, counting the failure only then).
    fn record_create(
        &mut self,
        member: Member,
        label: &LabelName,
        created: Result<String, CloudError>,
    ) -> Result<()> {
        let (conn, now) = (self.work.conn, self.work.now);
        match created {
            Ok(server_id) => {
                failpoint::hit("after-create");
                let step = Progress {
                    phase: Some(LaunchPhase::Booting),
                    external_id: Some(&server_id),
                    ..Progress::default()
                };
                if !nodes::progress(conn, member, NodeState::Building, &step, now)? {
                    // Held or deleted while the call was out: the state is the operator's,
                    // but the row still names its server.
                    nodes::record_server(conn, member, &server_id)?;
                }
                failpoint::hit("after-record");
                self.work.tally.launched += 1;
                self.work.tally.progressed = true;
                Ok(())
            }
            Err(error) if !error.is_refusal() => {
                let step = Progress {
                    last_error: Some(&error.message),
                    ..Progress::default()
                };
                nodes::progress(conn, member, NodeState::Building, &step, now)?;
                Err(anyhow!(
                    "create answer lost ({error}); the server it may have made is looked for \
                     before the row is given up"
                ))
            }
            Err(error) => {
                // Refused for its image ("Flavor's disk is too small for requested image",
                // "Image … is not active"): a failed launch of that image, which a bad new
                // image is rolled back from.
                let for_the_image = matches!(error.kind, ErrorKind::Api { status: 400 })
                    && error.message.to_ascii_lowercase().contains("image");
                if for_the_image {
                    crate::state::images::count_launch(conn, member.node, false)?;
                }
                nodes::forget(conn, member)?;
                self.forget_gone_listing(&error)?;
                let provider = &self.provider.name;
                match error.kind {
                    ErrorKind::QuotaExceeded => {
                        pass::record_quota(conn, provider, &error.message, now)?
                    }
                    // Never sent, or the cloud asked to wait: nothing failed.
                    ErrorKind::RateLimited | ErrorKind::NotSent => {}
                    _ => {
                        self.work.tally.failed += 1;
                        pass::record_failure(conn, provider, label, &error.message, now)?;
                    }
                }
                Err(anyhow!("create refused: {error}"))
            }
        }
    }

    /// A create refused because its image or flavor is gone (Nova: "Image … could not be
    /// found.", "… is not active.", "Flavor … could not be found."): the kept listing of
    /// them is stale, so the next round (or launch) lists them again.
    fn forget_gone_listing(&self, error: &CloudError) -> Result<()> {
        if !matches!(
            error.kind,
            ErrorKind::Api { status: 400 } | ErrorKind::NotFound
        ) {
            return Ok(());
        }
        let message = error.message.to_ascii_lowercase();
        let provider = &self.provider.name;
        if message.contains("image") {
            listings::forget(self.work.conn, provider, Kind::Images)?;
        }
        if message.contains("flavor") {
            listings::forget(self.work.conn, provider, Kind::Flavors)?;
            self.work.runner.cache.forget_provider(provider);
        }
        Ok(())
    }

    /// Give a server without a public address a floating IP, and record the address: the
    /// intent first, then the allocation (marked with this installation's description), its
    /// id recorded at once, then the attach. An attach that fails releases the IP at once and
    /// counts as a launch failure; an IP recorded by a run killed before its attach is
    /// attached now (`recorded`).
    pub(super) fn attach(
        &mut self,
        action: &Action,
        member: Member,
        server_id: &str,
        pool: &str,
        recorded: Option<&str>,
    ) -> Result<()> {
        let (conn, now) = (self.work.conn, self.work.now);
        let ip = match recorded {
            Some(id) => match self
                .cloud
                .list_floating_ips()?
                .into_iter()
                .find(|ip| ip.id == id)
            {
                Some(ip) => ip,
                None => {
                    // Released by someone else meanwhile: the next round allocates another.
                    nodes::clear_floating_ip(conn, member)?;
                    bail!("floating IP {id} of {member} is gone; a new one is asked for next");
                }
            },
            None => {
                let intent = nodes::begin_floating_ip(conn, member, now)?;
                if intent == FloatingIpIntent::Gone {
                    return Ok(()); // held or deleted meanwhile
                }
                let description =
                    cloud::floating_ip_description(self.work.runner.installation, member);
                // An earlier run may have died during the allocation: its IP carries our
                // description, attached to nothing. Adopt it rather than leak it.
                let earlier = match intent {
                    FloatingIpIntent::Again => {
                        self.cloud.list_floating_ips()?.into_iter().find(|ip| {
                            ip.server_id.is_none() && ip.description.as_ref() == Some(&description)
                        })
                    }
                    _ => None,
                };
                let ip = match earlier {
                    Some(ip) => ip,
                    None => self.cloud.allocate_floating_ip(pool, &description)?,
                };
                let step = Progress {
                    floating_ip_id: Some(&ip.id),
                    ..Progress::default()
                };
                nodes::progress(conn, member, NodeState::Building, &step, now)?;
                failpoint::hit("after-floating-ip-allocate");
                ip
            }
        };
        if let Err(error) = self.cloud.attach_floating_ip(&ip, server_id) {
            if let Err(release) = self.cloud.delete_floating_ip(&ip.id) {
                log::warn!(
                    "{}: releasing floating IP {}: {release}",
                    self.provider.name,
                    ip.ip
                );
            } else {
                nodes::clear_floating_ip(conn, member)?;
            }
            self.work.tally.failed += 1;
            let why = format!("attaching floating IP {} to {member}: {error}", ip.ip);
            if let Some(label) = &action.label {
                pass::record_failure(conn, &self.provider.name, label, &why, now)?;
            }
            return Err(anyhow!(why));
        }
        failpoint::hit("after-floating-ip");
        let step = Progress {
            phase: Some(LaunchPhase::FloatingIp),
            ip: Some(&ip.ip),
            ..Progress::default()
        };
        nodes::progress(conn, member, NodeState::Building, &step, now)?;
        self.work.tally.progressed = true;
        Ok(())
    }

    /// Flavor, networks and keypair for launching `image` on this provider (cached per run).
    fn prepare(&self, image: &ImageName) -> Result<Prepared> {
        let provider = self.provider;
        let key = (provider.name.clone(), image.clone());
        let slot = {
            let mut cache = self.work.runner.cache.prepared.lock();
            let cache = cache
                .as_mut()
                .map_err(|_| anyhow!("the launch cache is poisoned"))?;
            Arc::clone(cache.entry(key).or_default())
        };
        let mut slot = slot
            .lock()
            .map_err(|_| anyhow!("the launch cache is poisoned"))?;
        if let Some(found) = slot.as_ref() {
            return Ok(found.clone());
        }
        let wanted = provider
            .images
            .get(image)
            .with_context(|| format!("image {image} is not configured on {}", provider.name))?;
        let flavors = self.flavors()?;
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
        let network_ids = cloud::resolve_networks(self.cloud, &provider.networks)?;
        let key_name = match &provider.keypair {
            Some(name) => Some(name.clone()),
            None => self.managed_keypair(image, &wanted.private_key)?,
        };
        let prepared = Prepared {
            flavor_id: flavor.id.clone(),
            network_ids,
            key_name,
        };
        *slot = Some(prepared.clone());
        Ok(prepared)
    }

    /// The cloud's flavors: the kept listing while `cache-ttl` says it is good, else listed
    /// (and kept).
    fn flavors(&self) -> Result<Vec<cloud::Flavor>> {
        let (conn, now) = (self.work.conn, self.work.now);
        let provider = &self.provider.name;
        let ttl = self.provider.cache_ttl.as_secs() as i64;
        if ttl > 0 {
            if let Some((_, flavors)) = listings::get(conn, provider, Kind::Flavors, now - ttl)? {
                return Ok(flavors);
            }
        }
        let flavors = self.cloud.list_flavors()?;
        if ttl > 0 {
            listings::put(conn, provider, Kind::Flavors, now, &flavors)?;
        }
        Ok(flavors)
    }

    /// Without a configured `keypair`, nodepool keeps one per image, holding the public half
    /// of the image's `private-key`, so cloud images accept the SSH login. No private key
    /// file: no keypair (the image must let the user in some other way).
    fn managed_keypair(&self, image: &ImageName, private_key: &Path) -> Result<Option<String>> {
        if !private_key.exists() {
            return Ok(None);
        }
        let name = cloud::managed_keypair_name(self.work.runner.installation, image);
        if self.cloud.list_keypairs()?.iter().any(|k| k.name == name) {
            return Ok(Some(name));
        }
        let public = ssh::public_key_of(private_key)?;
        self.cloud
            .create_keypair(&name, &public)
            .with_context(|| format!("creating keypair {name} on {}", self.provider.name))?;
        Ok(Some(name))
    }
}
