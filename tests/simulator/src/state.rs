//! The simulated cloud in memory: servers, images, keypairs, floating IPs, tokens, the call
//! counters and the seeded randomness. Statuses that depend on time (BUILD until the boot
//! delay has passed) are derived from instants stored at creation, so a knob changed later
//! only affects what is created after it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Knobs;

/// Size given to a snapshot once it turns active, and to the seeded base images.
pub(crate) const IMAGE_SIZE: u64 = 1 << 30;

/// Requests received, in total and per route ("GET /compute/servers/detail").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calls {
    pub total: u64,
    pub by_route: BTreeMap<String, u64>,
}

impl Calls {
    /// How many requests the route received (0 when none).
    pub fn route(&self, name: &str) -> u64 {
        self.by_route.get(name).copied().unwrap_or(0)
    }

    pub(crate) fn record(&mut self, name: &str) {
        self.total += 1;
        *self.by_route.entry(name.to_owned()).or_default() += 1;
    }
}

/// What the simulated cloud holds, for tests that prove nothing leaked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dump {
    pub servers: Vec<DumpServer>,
    pub images: Vec<DumpImage>,
    pub keypairs: Vec<String>,
    pub floating_ips: Vec<DumpFloatingIp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DumpServer {
    pub id: String,
    pub name: String,
    pub status: String,
    pub image_id: String,
    pub flavor_id: String,
    pub key_name: Option<String>,
    pub availability_zone: String,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DumpImage {
    pub id: String,
    pub name: String,
    pub status: String,
    pub visibility: String,
    pub size: Option<u64>,
    /// Properties beyond Glance's standard ones.
    pub properties: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DumpFloatingIp {
    pub id: String,
    pub ip: String,
    pub pool: String,
    pub instance_id: Option<String>,
    pub description: String,
}

/// How a server's boot ends, drawn at create time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    Active,
    Error,
    Stuck,
}

pub(crate) struct Server {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub flavor_id: String,
    pub key_name: Option<String>,
    pub availability_zone: String,
    pub network: String,
    pub metadata: BTreeMap<String, String>,
    pub created: SystemTime,
    pub ready_at: Instant,
    pub fate: Fate,
    /// Set by a slow delete: the server disappears at this instant.
    pub gone_at: Option<Instant>,
    /// Set by a failed delete: the server is in ERROR for good.
    pub delete_failed: bool,
}

impl Server {
    pub fn status(&self, now: Instant) -> &'static str {
        if self.delete_failed {
            "ERROR"
        } else if self.gone_at.is_some() {
            "DELETED"
        } else if self.fate == Fate::Stuck || now < self.ready_at {
            "BUILD"
        } else if self.fate == Fate::Error {
            "ERROR"
        } else {
            "ACTIVE"
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ImageStatus {
    Queued,
    Saving,
    Active,
}

impl ImageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Queued => "queued",
            ImageStatus::Saving => "saving",
            ImageStatus::Active => "active",
        }
    }
}

pub(crate) struct Image {
    pub id: String,
    pub name: String,
    pub status: ImageStatus,
    pub visibility: String,
    pub protected: bool,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    pub size: Option<u64>,
    /// Glance's `checksum` (MD5) and `os_hash_value` (SHA-512) of the uploaded data, hex.
    pub hashes: Option<(String, String)>,
    pub tags: Vec<String>,
    pub properties: Map<String, Value>,
    pub created: SystemTime,
    pub updated: SystemTime,
    /// Set for a snapshot: it turns active at this instant.
    pub active_at: Option<Instant>,
}

pub(crate) struct Keypair {
    pub name: String,
    pub public_key: String,
}

pub(crate) struct FloatingIp {
    pub id: String,
    pub ip: String,
    pub instance_id: Option<String>,
    /// Neutron's free-text `description` (empty through Nova's proxy).
    pub description: String,
    pub created: SystemTime,
}

pub(crate) struct State {
    pub rng: fastrand::Rng,
    /// Issued tokens and when each expires.
    pub tokens: HashMap<String, Instant>,
    pub servers: Vec<Server>,
    pub images: Vec<Image>,
    pub keypairs: Vec<Keypair>,
    pub floating_ips: Vec<FloatingIp>,
    pub calls: Calls,
    started: Instant,
    /// (second since start, requests counted in it) for the rate limit.
    rate_window: (u64, u32),
    floating_ips_made: u32,
}

impl State {
    pub fn new(knobs: &Knobs) -> State {
        let mut state = State {
            rng: fastrand::Rng::with_seed(knobs.seed),
            tokens: HashMap::new(),
            servers: Vec::new(),
            images: Vec::new(),
            keypairs: Vec::new(),
            floating_ips: Vec::new(),
            calls: Calls::default(),
            started: Instant::now(),
            rate_window: (0, 0),
            floating_ips_made: 0,
        };
        let now = SystemTime::now();
        for name in &knobs.images {
            let id = state.uuid();
            state.images.push(Image {
                id,
                name: name.clone(),
                status: ImageStatus::Active,
                visibility: "public".into(),
                protected: false,
                disk_format: Some("qcow2".into()),
                container_format: Some("bare".into()),
                min_disk: 0,
                min_ram: 0,
                size: Some(IMAGE_SIZE),
                hashes: None,
                tags: Vec::new(),
                properties: Map::new(),
                created: now,
                updated: now,
                active_at: None,
            });
        }
        state
    }

    /// A random UUID (version 4 layout) from the seeded generator.
    pub fn uuid(&mut self) -> String {
        let n = self.rng.u128(..);
        let hex = format!("{n:032x}");
        format!(
            "{}-{}-4{}-a{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            &hex[17..20],
            &hex[20..32]
        )
    }

    /// A random 32-hex-digit token, as Keystone's UUID tokens were, valid for `lifetime`.
    pub fn new_token(&mut self, lifetime: Duration) -> String {
        let token = format!("{:032x}", self.rng.u128(..));
        self.tokens.insert(token.clone(), Instant::now() + lifetime);
        token
    }

    /// The next address of the floating pool: loopback, so nothing outside this machine is
    /// ever addressed by a test that connects to it.
    pub fn next_floating_address(&mut self) -> String {
        self.floating_ips_made += 1;
        let n = self.floating_ips_made;
        format!("127.0.{}.{}", 2 + n / 250, 1 + n % 250)
    }

    /// Count one request against the limit; true when it is over.
    pub fn over_rate(&mut self, limit: u32) -> bool {
        let second = self.started.elapsed().as_secs();
        if self.rate_window.0 != second {
            self.rate_window = (second, 0);
        }
        self.rate_window.1 += 1;
        self.rate_window.1 > limit
    }

    /// Apply what time has done: finish slow deletes, turn ready snapshots active.
    pub fn sweep(&mut self, now: Instant) {
        let gone: Vec<String> = self
            .servers
            .iter()
            .filter(|s| s.gone_at.is_some_and(|t| now >= t))
            .map(|s| s.id.clone())
            .collect();
        for id in gone {
            self.remove_server(&id);
        }
        for image in &mut self.images {
            if image.status == ImageStatus::Queued && image.active_at.is_some_and(|t| now >= t) {
                image.status = ImageStatus::Active;
                image.size = Some(IMAGE_SIZE);
                image.updated = SystemTime::now();
            }
        }
    }

    /// Remove a server and release its floating IPs.
    pub fn remove_server(&mut self, id: &str) {
        self.servers.retain(|s| s.id != id);
        for fip in &mut self.floating_ips {
            if fip.instance_id.as_deref() == Some(id) {
                fip.instance_id = None;
            }
        }
    }

    pub fn server(&self, id: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.id == id)
    }

    pub fn server_mut(&mut self, id: &str) -> Option<&mut Server> {
        self.servers.iter_mut().find(|s| s.id == id)
    }

    pub fn image_mut(&mut self, id: &str) -> Option<&mut Image> {
        self.images.iter_mut().find(|i| i.id == id)
    }

    pub fn dump(&self, now: Instant) -> Dump {
        Dump {
            servers: self
                .servers
                .iter()
                .map(|s| DumpServer {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    status: s.status(now).into(),
                    image_id: s.image_id.clone(),
                    flavor_id: s.flavor_id.clone(),
                    key_name: s.key_name.clone(),
                    availability_zone: s.availability_zone.clone(),
                    metadata: s.metadata.clone(),
                })
                .collect(),
            images: self
                .images
                .iter()
                .map(|i| DumpImage {
                    id: i.id.clone(),
                    name: i.name.clone(),
                    status: i.status.as_str().into(),
                    visibility: i.visibility.clone(),
                    size: i.size,
                    properties: i.properties.clone(),
                })
                .collect(),
            keypairs: self.keypairs.iter().map(|k| k.name.clone()).collect(),
            floating_ips: self
                .floating_ips
                .iter()
                .map(|f| DumpFloatingIp {
                    id: f.id.clone(),
                    ip: f.ip.clone(),
                    pool: super::network::PUBLIC_NAME.into(),
                    instance_id: f.instance_id.clone(),
                    description: f.description.clone(),
                })
                .collect(),
        }
    }
}

/// A stable 32-hex-digit id for a name (user, project), so ids survive a knob change.
pub(crate) fn stable_id(kind: &str, name: &str) -> String {
    let fnv = |seed: u64| {
        format!("{kind}\0{name}").bytes().fold(seed, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x84222325_cbf29ce4)
    )
}

/// RFC 3339 to the second, as Nova and Glance print times.
pub(crate) fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Find the position after `marker` in a listing; None when the marker is unknown.
pub(crate) fn page_start<'a>(
    mut ids: impl Iterator<Item = &'a str>,
    marker: Option<&str>,
) -> Option<usize> {
    match marker {
        None => Some(0),
        Some(marker) => ids.position(|id| id == marker).map(|i| i + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_seeded_and_shaped() {
        let knobs = Knobs::default();
        let mut a = State::new(&knobs);
        let mut b = State::new(&knobs);
        let id = a.uuid();
        assert_eq!(id, b.uuid());
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }

    #[test]
    fn stable_ids_differ_by_kind() {
        assert_eq!(stable_id("user", "demo").len(), 32);
        assert_ne!(stable_id("user", "demo"), stable_id("project", "demo"));
    }
}
