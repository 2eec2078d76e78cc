//! Snapshot images (a provider image with `setup` and no `diskimage`), the 2015 flow as a
//! state machine whose every step is recorded in the image's row, so a run killed at any
//! instant is picked up by the next `image-update` where it stopped:
//!
//! | phase | what happens | bound |
//! |---|---|---|
//! | `requested` | the row exists (intent); a keypair is generated if the provider names none | |
//! | `creating` | the template server's create is out (its metadata names the row) | |
//! | `booting` | waiting for ACTIVE and an address | `launch-timeout` |
//! | `ssh` | waiting for SSH as root, or as a distro user who lets root in | `boot-timeout` |
//! | `reachable` | script-dir goes to `/opt/nodepool-scripts`, `/etc/nodepool` is made 0777 | |
//! | `setup` | the setup script runs detached (`./SETUP HOSTNAME`, `NODEPOOL_*` set) | `launch-timeout` |
//! | `prepared` | its output is in the log; what it left is removed, disks synced | |
//! | `snapshotting` | createImage is out, with `meta` and nodepool's properties | |
//! | `saving` | waiting for Glance to say active | `launch-timeout` |
//! | `template-delete` | the image is ready; its template server and keypair go | |
//!
//! A failure at any step removes what the attempt made (`remove`), and records why
//! (`image_failure`, for `status`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rusqlite::Connection;

use crate::cloud::{self, image_meta, meta, Cloud, CreateServer, ServerStatus};
use crate::config::{Provider, ProviderImage as ImageConfig};
use crate::model::image::ProviderImage;
use crate::model::ImageState;
use crate::node::{bootstrap, ssh};
use crate::state::images::{self, SnapshotStep};

/// The phases of a snapshot, as stored in `snapshot_image.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Requested,
    Creating,
    Booting,
    Ssh,
    Reachable,
    Setup,
    Prepared,
    Snapshotting,
    Saving,
    TemplateDelete,
}

impl Phase {
    const ALL: [Phase; 10] = [
        Phase::Requested,
        Phase::Creating,
        Phase::Booting,
        Phase::Ssh,
        Phase::Reachable,
        Phase::Setup,
        Phase::Prepared,
        Phase::Snapshotting,
        Phase::Saving,
        Phase::TemplateDelete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Requested => "requested",
            Phase::Creating => "creating",
            Phase::Booting => "booting",
            Phase::Ssh => "ssh",
            Phase::Reachable => "reachable",
            Phase::Setup => "setup",
            Phase::Prepared => "prepared",
            Phase::Snapshotting => "snapshotting",
            Phase::Saving => "saving",
            Phase::TemplateDelete => "template-delete",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Logins tried on a template server, in order (2015's list): root, then the users cloud
/// images of the distributions let in.
pub const LOGIN_USERS: [&str; 6] = ["root", "ubuntu", "fedora", "cloud-user", "centos", "debian"];
/// A create or createImage whose answer was lost is looked for this long before it is sent
/// again (the cloud may still be acting on it).
const LOST_CALL_GRACE_S: i64 = 120;
/// Bound on one SSH call of the flow (the setup script runs detached, so calls are short).
const SSH_CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on one login attempt while waiting for SSH.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);
/// What a login probe prints, so a shell that answers with a banner is not taken for one.
const LOGIN_MARK: &str = "nodepool-login-ok";

/// How one step left the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not finished: what it waits for.
    InFlight(String),
    /// The image is ready (its template may still be deleted by a later step).
    Ready { image_id: String },
    /// The attempt failed and what it made was removed; why.
    Failed(String),
}

/// Everything a snapshot of one provider image needs.
pub struct Snapshotter<'a> {
    pub conn: &'a Connection,
    pub cloud: &'a dyn Cloud,
    pub provider: &'a Provider,
    pub image: &'a ImageConfig,
    pub base_image: &'a str,
    pub setup: &'a str,
    pub script_dir: Option<&'a Path>,
    pub installation: &'a str,
    /// The run's private directory (generated keys, key files for ssh).
    pub work_dir: &'a Path,
    pub log_dir: &'a Path,
}

impl Snapshotter<'_> {
    /// Write a new snapshot's row (the intent) and return it.
    pub fn start(&self, now: i64, newest_version: i64) -> Result<ProviderImage> {
        let version = now.max(newest_version + 1);
        let hostname = crate::config::render_template(
            &self.provider.template_hostname,
            &[
                ("image.name", self.image.name.as_str()),
                ("provider.name", self.provider.name.as_str()),
                ("timestamp", &version.to_string()),
            ],
        );
        let log = self.log_path(version);
        let id = images::insert_snapshot(
            self.conn,
            (&self.provider.name, &self.image.name, version),
            (&hostname, &log.display().to_string()),
            now,
        )?;
        self.log(
            &log,
            &format!("snapshot {id} of {} requested", self.image.name),
        );
        self.row(id)?
            .context("the snapshot's row vanished as it was written")
    }

    fn log_path(&self, version: i64) -> PathBuf {
        self.log_dir.join(format!(
            "{}-{}-{version}.log",
            self.provider.name, self.image.name
        ))
    }

    fn row(&self, id: i64) -> Result<Option<ProviderImage>> {
        images::get_provider_image(self.conn, id)
    }

    /// Append a line to the snapshot's log; a log that cannot be written is a warning only.
    fn log(&self, path: &Path, line: &str) {
        log::info!("{}: {line}", self.provider.name);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{} {line}", crate::clock::now()));
        if let Err(error) = written {
            log::warn!("writing {}: {error}", path.display());
        }
    }

    fn log_of(&self, row: &ProviderImage, line: &str) {
        match &row.log {
            Some(path) => self.log(Path::new(path), line),
            None => log::info!("{}: {line}", self.provider.name),
        }
    }

    /// Steps of snapshot `id` until it is ready or failed, `until` passes or the run is
    /// interrupted. A step that moved the phase on is followed at once; polls of a phase
    /// back off from 0.25 s to 5 s while the cloud or the setup script works.
    pub fn drive(&self, id: i64, until: Instant) -> Result<Outcome> {
        const FIRST_PAUSE: Duration = Duration::from_millis(250);
        let mut pause = FIRST_PAUSE;
        let mut phase = None;
        loop {
            let Some(row) = self.row(id)? else {
                return Ok(Outcome::Failed("its row was removed meanwhile".into()));
            };
            if row.phase != phase {
                phase = row.phase.clone();
                pause = FIRST_PAUSE;
            }
            let outcome = self.step(&row)?;
            match &outcome {
                Outcome::InFlight(_) => {}
                Outcome::Ready { .. } | Outcome::Failed(_) => return Ok(outcome),
            }
            if crate::interrupt::requested() || Instant::now() + pause >= until {
                return Ok(outcome);
            }
            let moved = self.row(id)?.is_some_and(|now| now.phase != phase);
            if !moved {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }

    /// One step of the snapshot in `row`; a step that fails the attempt removes it.
    pub fn step(&self, row: &ProviderImage) -> Result<Outcome> {
        if row.state != ImageState::Building {
            bail!("snapshot image {} is {}, not building", row.id, row.state);
        }
        let phase = row.phase.as_deref().and_then(Phase::parse);
        let now = crate::clock::now();
        let in_phase = now - row.phase_time.unwrap_or(row.state_time);
        let stepped = match phase {
            None | Some(Phase::Requested) => self.create(row),
            Some(Phase::Creating) => self.find_template(row, in_phase),
            Some(Phase::Booting) => self.booting(row, in_phase),
            Some(Phase::Ssh) => self.login(row, in_phase),
            Some(Phase::Reachable) => self.prepare(row),
            Some(Phase::Setup) => self.setup(row, in_phase),
            Some(Phase::Prepared) => self.snapshot(row),
            Some(Phase::Snapshotting) => self.find_snapshot(row, in_phase),
            Some(Phase::Saving) => self.saving(row, in_phase),
            Some(Phase::TemplateDelete) => bail!("snapshot image {} is not building", row.id),
        };
        // The whole attempt's bound, also for a cloud that only ever answers with errors.
        let provider = self.provider;
        let limit = (provider.launch_timeout + provider.boot_timeout).as_secs() as i64;
        match stepped {
            Ok(Step::Wait(why)) => Ok(Outcome::InFlight(why)),
            Ok(Step::Ready(image_id)) => Ok(Outcome::Ready { image_id }),
            // A cloud that did not answer, or a stop asked for, costs a step, not the attempt.
            Err(error) if in_phase <= limit && transient(&error) => {
                log::warn!(
                    "{}: snapshot {}: {error:#}; tried again",
                    provider.name,
                    row.id
                );
                Ok(Outcome::InFlight(format!("{error:#}")))
            }
            Err(error) => {
                let why = format!("{error:#}");
                self.log_of(row, &format!("failed: {why}"));
                images::record_image_failure(
                    self.conn,
                    &row.provider,
                    &row.image,
                    (&why, row.log.as_deref()),
                    crate::clock::now(),
                )?;
                let current = self.row(row.id)?.unwrap_or_else(|| row.clone());
                super::retention::remove_provider_image(self.conn, self.cloud, &current)
                    .with_context(|| format!("removing the failed snapshot {}", row.id))?;
                Ok(Outcome::Failed(why))
            }
        }
    }

    fn progress(&self, row: &ProviderImage, step: &SnapshotStep<'_>) -> Result<bool> {
        images::snapshot_progress(
            self.conn,
            row.id,
            ImageState::Building,
            step,
            crate::clock::now(),
        )
    }

    /// Record a step and log what it did.
    fn record(&self, row: &ProviderImage, step: SnapshotStep<'_>, line: &str) -> Result<()> {
        self.progress(row, &step)?;
        self.log_of(row, line);
        Ok(())
    }

    fn to_phase(&self, row: &ProviderImage, phase: Phase) -> Result<bool> {
        self.progress(
            row,
            &SnapshotStep {
                phase: Some(phase.as_str()),
                ..SnapshotStep::default()
            },
        )
    }

    /// The keypair (generated and recorded first when the provider names none) and the
    /// template server's create, sent after its intent.
    fn create(&self, row: &ProviderImage) -> Result<Step> {
        let key_name = match &self.provider.keypair {
            Some(name) => name.clone(),
            None => self.generated_keypair(row)?,
        };
        let images = self.cloud.list_images()?;
        let base = images
            .iter()
            .find(|i| {
                i.status == "active" && (i.id == self.base_image || i.name == self.base_image)
            })
            .with_context(|| {
                format!(
                    "base-image `{}` is not an active image of the cloud",
                    self.base_image
                )
            })?;
        let flavors = self.cloud.list_flavors()?;
        let flavor = cloud::choose_flavor(
            &flavors,
            self.image.min_ram,
            self.image.name_filter.as_deref(),
        )
        .with_context(|| format!("no flavor with at least {} MB of RAM", self.image.min_ram))?;
        let network_ids = cloud::resolve_networks(self.cloud, &self.provider.networks)?;
        let mut metadata = self.image.meta.clone();
        metadata.extend(self.ours(row));
        let request = CreateServer {
            name: row
                .hostname
                .clone()
                .unwrap_or_else(|| format!("template-{}", row.id)),
            image_id: base.id.clone(),
            flavor_id: flavor.id.clone(),
            key_name: Some(key_name),
            availability_zone: None,
            network_ids,
            metadata,
            config_drive: self.image.config_drive,
        };
        crate::failpoint::hit("snapshot-before-create");
        if !self.to_phase(row, Phase::Creating)? {
            return Ok(Step::Wait("its row changed".into()));
        }
        let server_id = match self.cloud.create_server(&request) {
            Ok(id) => id,
            // Never sent (the run's time was up): the next step sends it.
            Err(error) if error.kind == cloud::ErrorKind::NotSent => {
                self.to_phase(row, Phase::Requested)?;
                return Ok(Step::Wait(format!("the create was not sent: {error}")));
            }
            Err(error) if error.is_refusal() => {
                return Err(error).context("creating the template server")
            }
            // It may exist: `creating` looks for it by its metadata.
            Err(error) => return Ok(Step::Wait(format!("the create's answer was lost: {error}"))),
        };
        crate::failpoint::hit("snapshot-after-create");
        self.record(
            row,
            SnapshotStep {
                phase: Some(Phase::Booting.as_str()),
                server_external_id: Some(&server_id),
                ..SnapshotStep::default()
            },
            &format!("template server {server_id} created from {}", base.id),
        )?;
        Ok(Step::Wait("the template server boots".into()))
    }

    /// Nodepool's own properties of the template server and the snapshot.
    fn ours(&self, row: &ProviderImage) -> BTreeMap<String, String> {
        [
            (meta::INSTALLATION, self.installation.to_string()),
            (meta::PROVIDER, self.provider.name.to_string()),
            (meta::IMAGE, self.image.name.to_string()),
            (meta::SNAPSHOT_IMAGE_ID, row.id.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// A keypair of the template's own: its private half recorded before the cloud hears of
    /// it; one a killed run created is replaced.
    fn generated_keypair(&self, row: &ProviderImage) -> Result<String> {
        let name = template_keypair_name(self.installation, row.id);
        let (_, private) = images::template_secrets(self.conn, row.id)?;
        let public = match private {
            Some(private) => public_of(self.work_dir, &private)?,
            None => {
                let pair = ssh::generate_keypair(self.work_dir)?;
                self.progress(
                    row,
                    &SnapshotStep {
                        keypair_name: Some(&name),
                        private_key: Some(&pair.private),
                        ..SnapshotStep::default()
                    },
                )?;
                pair.public
            }
        };
        if let Some(existing) = self.cloud.list_keypairs()?.iter().find(|k| k.name == name) {
            if existing.public_key.trim() == public.trim() {
                return Ok(name);
            }
            self.cloud.delete_keypair(&name)?;
        }
        self.cloud
            .create_keypair(&name, &public)
            .with_context(|| format!("creating keypair {name}"))?;
        Ok(name)
    }

    /// A create whose answer was lost: the server is found by its metadata, or the create is
    /// sent again once the cloud has had time to act on the first.
    fn find_template(&self, row: &ProviderImage, in_phase: i64) -> Result<Step> {
        let id = row.id.to_string();
        let found = self.cloud.list_servers()?.into_iter().find(|s| {
            s.metadata.get(meta::INSTALLATION) == Some(self.installation)
                && s.metadata.get(meta::SNAPSHOT_IMAGE_ID) == Some(id.as_str())
        });
        if let Some(server) = found {
            self.record(
                row,
                SnapshotStep {
                    phase: Some(Phase::Booting.as_str()),
                    server_external_id: Some(&server.id),
                    ..SnapshotStep::default()
                },
                &format!("template server {} adopted", server.id),
            )?;
            return Ok(Step::Wait("the template server boots".into()));
        }
        if in_phase < LOST_CALL_GRACE_S {
            return Ok(Step::Wait(
                "looking for a template server whose create was lost".into(),
            ));
        }
        self.to_phase(row, Phase::Requested)?;
        Ok(Step::Wait(
            "the template server's create is sent again".into(),
        ))
    }

    fn server_id<'r>(&self, row: &'r ProviderImage) -> Result<&'r str> {
        row.server_external_id
            .as_deref()
            .context("no template server is recorded")
    }

    fn booting(&self, row: &ProviderImage, in_phase: i64) -> Result<Step> {
        let server_id = self.server_id(row)?;
        let Some(server) = self.cloud.get_server(server_id)? else {
            bail!("template server {server_id} vanished");
        };
        let limit = self.provider.launch_timeout.as_secs() as i64;
        match server.status {
            ServerStatus::Error => bail!("template server {server_id} went to ERROR"),
            ServerStatus::Deleted => bail!("template server {server_id} was deleted"),
            ServerStatus::Active => {
                let public = if self.provider.ipv6_preferred {
                    server.public_v6.or(server.public_v4)
                } else {
                    server.public_v4.or(server.public_v6)
                };
                let Some(ip) = public.or(server.private_v4) else {
                    if in_phase > limit {
                        bail!("template server {server_id} has no address after {limit} s");
                    }
                    return Ok(Step::Wait("the template server has no address yet".into()));
                };
                self.record(
                    row,
                    SnapshotStep {
                        phase: Some(Phase::Ssh.as_str()),
                        ip: Some(&ip),
                        ..SnapshotStep::default()
                    },
                    &format!("template server {server_id} is ACTIVE at {ip}"),
                )?;
                Ok(Step::Wait("waiting for SSH".into()))
            }
            _ if in_phase > limit => {
                bail!("template server {server_id} is not ACTIVE after {limit} s (launch-timeout)")
            }
            _ => Ok(Step::Wait("the template server boots".into())),
        }
    }

    /// The private key to log in with: the generated one (in a private file while `use_key`
    /// runs) or the image's `private-key`.
    fn with_key<T>(
        &self,
        row: &ProviderImage,
        use_key: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<T> {
        let (_, private) = images::template_secrets(self.conn, row.id)?;
        match private {
            Some(private) => {
                let file = key_file(self.work_dir, &private)?;
                use_key(file.path())
            }
            None => use_key(&self.image.private_key),
        }
    }

    fn endpoint(&self, row: &ProviderImage, user: &str, key: &Path) -> Result<ssh::Endpoint> {
        Ok(ssh::Endpoint {
            host: row.ip.clone().context("no address is recorded")?,
            port: self.image.connection_port,
            user: user.to_string(),
            private_key: key.to_path_buf(),
        })
    }

    /// Wait for SSH: the host keys first, then a login as root, or as the first distro user
    /// who answers (root is then let in with that user's keys, as 2015 did).
    fn login(&self, row: &ProviderImage, in_phase: i64) -> Result<Step> {
        let limit = self.provider.boot_timeout.as_secs() as i64;
        let ip = row.ip.clone().context("no address is recorded")?;
        let keys = ssh::keyscan(&ip, self.image.connection_port, Duration::from_secs(5))?;
        let Some(keys) = keys else {
            if in_phase > limit {
                bail!("no SSH on {ip} within {limit} s (boot-timeout)");
            }
            return Ok(Step::Wait("waiting for SSH".into()));
        };
        let logged_in = self.with_key(row, |key| {
            let mut refused = Vec::new();
            for user in LOGIN_USERS {
                let endpoint = self.endpoint(row, user, key)?;
                let probe = format!("echo {LOGIN_MARK}\n");
                match ssh::run(&endpoint, &keys, &probe, LOGIN_TIMEOUT) {
                    Ok(out) if out.contains(LOGIN_MARK) => {
                        if user != "root" {
                            let root = self.endpoint(row, "root", key)?;
                            ssh::run(&endpoint, &keys, LET_ROOT_IN, SSH_CALL_TIMEOUT)
                                .with_context(|| format!("letting root in as {user}"))?;
                            ssh::check(&root, &keys, LOGIN_TIMEOUT).with_context(|| {
                                format!("logging in as root after {user} let it in")
                            })?;
                        }
                        return Ok(Some(user));
                    }
                    Ok(_) => refused.push(format!("{user}: no answer")),
                    Err(error) => refused.push(format!("{user}: {error:#}")),
                }
            }
            log::debug!("no login on {ip} yet: {}", refused.join("; "));
            Ok(None)
        })?;
        let Some(user) = logged_in else {
            if in_phase > limit {
                bail!(
                    "no login on {ip} as any of {} within {limit} s (boot-timeout)",
                    LOGIN_USERS.join(", ")
                );
            }
            return Ok(Step::Wait("waiting for a login".into()));
        };
        crate::failpoint::hit("snapshot-after-login");
        self.record(
            row,
            SnapshotStep {
                phase: Some(Phase::Reachable.as_str()),
                host_keys: Some(&keys),
                ..SnapshotStep::default()
            },
            &format!("logged in to {ip} as {user}"),
        )?;
        Ok(Step::Wait("the setup script is started".into()))
    }

    fn root_run(&self, row: &ProviderImage, script: &str) -> Result<String> {
        let (keys, _) = images::template_secrets(self.conn, row.id)?;
        let keys = keys.context("no host keys are recorded")?;
        self.with_key(row, |key| {
            let endpoint = self.endpoint(row, "root", key)?;
            ssh::run(&endpoint, &keys, script, SSH_CALL_TIMEOUT)
        })
    }

    fn hostname<'r>(&self, row: &'r ProviderImage) -> Result<&'r str> {
        row.hostname
            .as_deref()
            .context("the snapshot has no hostname")
    }

    /// script-dir and `/etc/nodepool` on the template server.
    fn prepare(&self, row: &ProviderImage) -> Result<Step> {
        let scripts = match self.script_dir {
            Some(dir) => bootstrap::read_script_dir(dir)?,
            None => Vec::new(),
        };
        let hostname = self.hostname(row)?;
        self.root_run(row, &bootstrap::template_script(&scripts, hostname))
            .context("copying script-dir to the template server")?;
        self.to_phase(row, Phase::Setup)?;
        self.log_of(
            row,
            &format!("{} files of script-dir copied", scripts.len()),
        );
        Ok(Step::Wait("the setup script is started".into()))
    }

    /// One look at the setup script, which runs detached: started, running, or ended (its
    /// whole output then goes to the log).
    fn setup(&self, row: &ProviderImage, in_phase: i64) -> Result<Step> {
        let hostname = self.hostname(row)?;
        let env = bootstrap::nodepool_env();
        let step = bootstrap::ready_script_step(self.setup, hostname, &env);
        let answer = self.root_run(row, &step)?;
        let limit = self.provider.launch_timeout.as_secs() as i64;
        match bootstrap::parse_ready_step(&answer)? {
            bootstrap::ReadyScript::Started => {
                self.log_of(row, &format!("setup script {} started", self.setup));
                crate::failpoint::hit("snapshot-setup-started");
                Ok(Step::Wait("the setup script runs".into()))
            }
            bootstrap::ReadyScript::Running if in_phase > limit => {
                bail!("the setup script ran past {limit} s (launch-timeout)")
            }
            bootstrap::ReadyScript::Running => Ok(Step::Wait("the setup script runs".into())),
            bootstrap::ReadyScript::Finished { status, log } => {
                let whole = self
                    .root_run(row, &bootstrap::script_log(hostname))
                    .unwrap_or(log);
                self.log_of(row, &format!("setup script output:\n{}", whole.trim_end()));
                if status != 0 {
                    bail!(
                        "the setup script {} exited with status {status}; its output ends:\n{}",
                        self.setup,
                        tail(&whole, 20)
                    );
                }
                self.to_phase(row, Phase::Prepared)?;
                Ok(Step::Wait("the snapshot is taken".into()))
            }
            bootstrap::ReadyScript::Lost { log } => bail!(
                "the setup script {} vanished without an exit status (the server rebooted?); \
                 its output ends:\n{log}",
                self.setup
            ),
        }
    }

    /// The template's leftovers removed, then createImage, sent after its intent.
    fn snapshot(&self, row: &ProviderImage) -> Result<Step> {
        let hostname = self.hostname(row)?;
        self.root_run(row, &bootstrap::before_snapshot(hostname))
            .context("tidying the template server before its snapshot")?;
        if !self.to_phase(row, Phase::Snapshotting)? {
            return Ok(Step::Wait("its row changed".into()));
        }
        self.create_image(row)
    }

    fn create_image(&self, row: &ProviderImage) -> Result<Step> {
        let server_id = self.server_id(row)?;
        let mut properties = self.image.meta.clone();
        properties.extend(self.ours(row));
        properties.insert(image_meta::TEMPLATE_SERVER.into(), server_id.to_string());
        let name = format!("{}-{}", self.image.name, row.version.unwrap_or(row.id));
        let image_id = match self.cloud.create_snapshot(server_id, &name, &properties) {
            Ok(id) => id,
            // 409: the server is still busy with an earlier (lost) createImage.
            Err(error) if matches!(error.kind, cloud::ErrorKind::Api { status: 409 }) => {
                return Ok(Step::Wait(format!("the server is busy: {error}")))
            }
            Err(error) if error.is_refusal() => return Err(error).context("creating the snapshot"),
            Err(error) => {
                return Ok(Step::Wait(format!(
                    "createImage's answer was lost: {error}"
                )))
            }
        };
        crate::failpoint::hit("snapshot-after-create-image");
        self.record(
            row,
            SnapshotStep {
                phase: Some(Phase::Saving.as_str()),
                external_id: Some(&image_id),
                ..SnapshotStep::default()
            },
            &format!("snapshot {image_id} of template server {server_id} started"),
        )?;
        Ok(Step::Wait("Glance saves the snapshot".into()))
    }

    /// A createImage whose answer was lost: the image is found by its properties, or asked
    /// for again once the cloud has had time to act on the first.
    fn find_snapshot(&self, row: &ProviderImage, in_phase: i64) -> Result<Step> {
        let id = row.id.to_string();
        let found = self.cloud.list_images()?.into_iter().find(|i| {
            i.properties.get(meta::INSTALLATION).map(String::as_str) == Some(self.installation)
                && i.properties.get(meta::SNAPSHOT_IMAGE_ID) == Some(&id)
        });
        if let Some(image) = found {
            self.progress(
                row,
                &SnapshotStep {
                    phase: Some(Phase::Saving.as_str()),
                    external_id: Some(&image.id),
                    ..SnapshotStep::default()
                },
            )?;
            return Ok(Step::Wait("Glance saves the snapshot".into()));
        }
        if in_phase < LOST_CALL_GRACE_S {
            return Ok(Step::Wait(
                "looking for a snapshot whose createImage was lost".into(),
            ));
        }
        // Never asked twice: a second createImage could make a second image. The attempt is
        // given up (what it made is removed; an image that still turns up later has no row
        // and goes as a leak).
        bail!("no snapshot appeared within {LOST_CALL_GRACE_S} s of its createImage")
    }

    fn saving(&self, row: &ProviderImage, in_phase: i64) -> Result<Step> {
        let image_id = row
            .external_id
            .as_deref()
            .context("no snapshot is recorded")?;
        let limit = self.provider.launch_timeout.as_secs() as i64;
        let Some(image) = self.cloud.get_image(image_id)? else {
            bail!("snapshot {image_id} vanished while Glance saved it");
        };
        match image.status.as_str() {
            "active" => {
                let now = crate::clock::now();
                let at = (&row.provider, &row.image);
                if !images::provider_image_ready(self.conn, row.id, at, now)? {
                    return Ok(Step::Wait("its row changed".into()));
                }
                images::snapshot_progress(
                    self.conn,
                    row.id,
                    ImageState::Ready,
                    &SnapshotStep {
                        phase: Some(Phase::TemplateDelete.as_str()),
                        ..SnapshotStep::default()
                    },
                    now,
                )?;
                self.log_of(row, &format!("snapshot {image_id} is active: ready"));
                Ok(Step::Ready(image_id.to_string()))
            }
            "killed" | "deleted" | "pending_delete" => {
                bail!("Glance put snapshot {image_id} in status {}", image.status)
            }
            status if in_phase > limit => {
                bail!("snapshot {image_id} is still {status} after {limit} s (launch-timeout)")
            }
            _ => Ok(Step::Wait("Glance saves the snapshot".into())),
        }
    }
}

/// An error that says nothing about the attempt: no answer or a 5xx from the cloud (the
/// call is asked again by the next step), or the run being stopped (ssh killed with it).
fn transient(error: &anyhow::Error) -> bool {
    crate::interrupt::requested()
        || error
            .chain()
            .filter_map(|cause| cause.downcast_ref::<cloud::CloudError>())
            .any(|e| !e.is_refusal())
}

/// What a step did, short of failing.
enum Step {
    Wait(String),
    Ready(String),
}

/// Run as the distro user who answered: root gets that user's authorized keys, so every
/// later step logs in as root (a cloud image's root is usually told to use the other user).
const LET_ROOT_IN: &str = "set -eu\n\
    sudo -n mkdir -p /root/.ssh\n\
    sudo -n cp \"$HOME/.ssh/authorized_keys\" /root/.ssh/authorized_keys\n\
    sudo -n chmod 700 /root/.ssh\n\
    sudo -n chmod 600 /root/.ssh/authorized_keys\n";

/// The keypair generated for snapshot `id`'s template server: under the prefix of the
/// keypairs nodepool keeps, which `cleanup` sweeps.
pub fn template_keypair_name(installation: &str, id: i64) -> String {
    cloud::managed_keypair_name(installation, &format!("template-{id}").as_str().into())
}

/// A private file holding `private` for ssh, removed when dropped.
fn key_file(work_dir: &Path, private: &str) -> Result<tempfile::NamedTempFile> {
    let mut file = tempfile::Builder::new()
        .prefix("nodepool-template-key.")
        .tempfile_in(work_dir)
        .with_context(|| format!("creating a key file in {}", work_dir.display()))?;
    file.write_all(private.as_bytes())
        .and_then(|()| file.flush())
        .context("writing the template's key file")?;
    Ok(file)
}

fn public_of(work_dir: &Path, private: &str) -> Result<String> {
    let file = key_file(work_dir, private)?;
    ssh::public_key_of(file.path())
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    let mut out = String::new();
    for line in &all[all.len().saturating_sub(lines)..] {
        let _ = writeln!(out, "{line}");
    }
    out.trim_end().to_string()
}

/// Delete what a snapshot's template left: its server while the row says it is not yet
/// gone (any phase), and its generated keypair.
pub fn delete_template(cloud: &dyn Cloud, row: &ProviderImage) -> Result<()> {
    if row.phase.is_some() {
        if let Some(server_id) = &row.server_external_id {
            cloud
                .delete_server(server_id)
                .with_context(|| format!("deleting template server {server_id}"))?;
        }
    }
    if let Some(name) = &row.keypair_name {
        match cloud.delete_keypair(name) {
            Err(error) if !error.is_not_found() => {
                return Err(error).with_context(|| format!("deleting keypair {name}"))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A ready snapshot's template goes: server and keypair deleted, the phase ends.
pub fn finish_template(conn: &Connection, cloud: &dyn Cloud, row: &ProviderImage) -> Result<()> {
    delete_template(cloud, row)?;
    images::template_gone(conn, row.id, crate::clock::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip_through_their_names() {
        for phase in Phase::ALL {
            assert_eq!(Phase::parse(phase.as_str()), Some(phase));
        }
        assert_eq!(Phase::parse("server-active"), None);
    }

    #[test]
    fn root_is_tried_first_then_the_distro_users_in_2015_order() {
        assert_eq!(LOGIN_USERS[0], "root");
        assert_eq!(
            &LOGIN_USERS[1..],
            ["ubuntu", "fedora", "cloud-user", "centos", "debian"]
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
