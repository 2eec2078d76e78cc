//! What nodepool needs from a cloud, as a trait, so the planner and executor can be tested
//! without a network; `openstack/` implements it over HTTP.

pub mod clouds_yaml;
pub mod gate;
#[cfg(test)]
pub mod memory;
pub mod openstack;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

pub use crate::model::cloud::{
    image_meta, meta, Image, ImageMaker, Metadata, Server, ServerStatus,
};

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Flavor {
    pub id: String,
    pub name: String,
    pub ram_mb: u64,
    pub vcpus: u64,
}

/// The smallest flavor with at least `min_ram` MB whose name contains `name_filter`
/// (ties broken by name, so the choice is stable).
pub fn choose_flavor<'a>(
    flavors: &'a [Flavor],
    min_ram: u64,
    name_filter: Option<&str>,
) -> Option<&'a Flavor> {
    flavors
        .iter()
        .filter(|f| f.ram_mb >= min_ram && name_filter.is_none_or(|n| f.name.contains(n)))
        .min_by(|a, b| (a.ram_mb, a.vcpus, &a.name).cmp(&(b.ram_mb, b.vcpus, &b.name)))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Keypair {
    pub name: String,
    pub public_key: String,
}

/// Absolute compute limits (`GET /limits`); None where the cloud says unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub max_instances: Option<u64>,
    pub used_instances: u64,
    pub max_cores: Option<u64>,
    pub used_cores: u64,
    pub max_ram_mb: Option<u64>,
    pub used_ram_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FloatingIp {
    pub id: String,
    pub ip: String,
    /// What it is attached to: the server (Nova) or the port (Neutron); None when free.
    pub server_id: Option<String>,
    /// Neutron's description, where nodepool marks the IPs it allocates
    /// (`floating_ip_description`); None through Nova's proxy, which keeps none.
    pub description: Option<String>,
}

/// The description nodepool gives a floating IP it allocates for `member`, so `cleanup` can
/// tell this installation's unattached IPs from everyone else's.
pub fn floating_ip_description(installation: &str, member: crate::model::Member) -> String {
    format!("nodepool {installation} {member}")
}

/// Whether a floating IP's description marks it as this installation's.
pub fn is_our_floating_ip(ip: &FloatingIp, installation: &str) -> bool {
    ip.description
        .as_deref()
        .is_some_and(|d| d.starts_with(&format!("nodepool {installation} ")))
}

/// What a create call sends.
#[derive(Debug, Clone, Default)]
pub struct CreateServer {
    pub name: String,
    pub image_id: String,
    pub flavor_id: String,
    pub key_name: Option<String>,
    pub availability_zone: Option<String>,
    /// Network UUIDs (labels are resolved to ids by the caller through `networks`).
    pub network_ids: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub config_drive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub external: bool,
}

/// Errors a caller can act on, by kind; `message` never holds a password or token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    /// The project's quota is used up: a state to wait out, not a failed launch.
    QuotaExceeded,
    /// Still rate limited (429/413) after honouring Retry-After within the bound.
    RateLimited,
    AuthFailed,
    /// Any other error answer; the status and the cloud's own message are in `message`.
    Api {
        status: u16,
    },
    /// No answer: connection refused, timeout, broken body.
    Transport,
    /// The call was never sent: the run's (or the round's listing) time was up first, or its
    /// turn at the provider's gate would have come after that.
    NotSent,
    /// A success answer nodepool could not read (not JSON, or without what it must hold,
    /// such as a create's server id): the request may well have taken effect.
    Malformed,
}

impl CloudError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> CloudError {
        CloudError {
            kind,
            message: message.into(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// The cloud definitely did not do what was asked: a 4xx answer (refused, quota, rate
    /// limited, unauthorised, not found). Anything else — no answer, a 5xx, a success answer
    /// that could not be read — may have taken effect, so a create that ends so must be
    /// looked for before it is given up.
    pub fn is_refusal(&self) -> bool {
        match self.kind {
            ErrorKind::NotFound
            | ErrorKind::QuotaExceeded
            | ErrorKind::RateLimited
            | ErrorKind::NotSent
            | ErrorKind::AuthFailed => true,
            ErrorKind::Api { status } => (400..500).contains(&status),
            ErrorKind::Transport | ErrorKind::Malformed => false,
        }
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CloudError {}

pub type CloudResult<T> = Result<T, CloudError>;

/// The operations the reconciler and the image code need from one provider.
pub trait Cloud: Send + Sync {
    /// A round's listing starts: until `end_listing`, calls end within the provider's
    /// `listing-timeout` of now, so a slow provider is unreachable for the round instead of
    /// holding up the others.
    fn begin_listing(&self) {}
    fn end_listing(&self) {}
    fn list_servers(&self) -> CloudResult<Vec<Server>>;
    /// `Ok(None)` when the server does not exist.
    fn get_server(&self, id: &str) -> CloudResult<Option<Server>>;
    /// Returns the new server's id.
    fn create_server(&self, request: &CreateServer) -> CloudResult<String>;
    /// Deleting a server that is already gone succeeds.
    fn delete_server(&self, id: &str) -> CloudResult<()>;
    /// Start a snapshot of a server; returns the new image's id.
    fn create_snapshot(
        &self,
        server_id: &str,
        name: &str,
        metadata: &BTreeMap<String, String>,
    ) -> CloudResult<String>;
    fn list_flavors(&self) -> CloudResult<Vec<Flavor>>;
    fn limits(&self) -> CloudResult<Limits>;
    fn availability_zones(&self) -> CloudResult<Vec<String>>;
    fn list_keypairs(&self) -> CloudResult<Vec<Keypair>>;
    fn create_keypair(&self, name: &str, public_key: &str) -> CloudResult<()>;
    fn delete_keypair(&self, name: &str) -> CloudResult<()>;
    fn list_images(&self) -> CloudResult<Vec<Image>>;
    fn get_image(&self, id: &str) -> CloudResult<Option<Image>>;
    /// Create an image record (queued) with properties; returns its id.
    fn create_image(
        &self,
        name: &str,
        disk_format: &str,
        properties: &BTreeMap<String, String>,
    ) -> CloudResult<String>;
    /// Stream `length` bytes of `data` into the image; it is never held in memory whole.
    fn upload_image(&self, id: &str, data: &mut dyn std::io::Read, length: u64) -> CloudResult<()>;
    fn delete_image(&self, id: &str) -> CloudResult<()>;
    fn list_networks(&self) -> CloudResult<Vec<Network>>;
    fn list_floating_ips(&self) -> CloudResult<Vec<FloatingIp>>;
    /// Allocate a floating IP from `pool` (an external network's name or id; Nova's pool
    /// without Neutron), marked with `description` where the cloud keeps one.
    fn allocate_floating_ip(&self, pool: &str, description: &str) -> CloudResult<FloatingIp>;
    /// Attach an allocated floating IP to a server: to the server's port through Neutron
    /// where there is a network service, else with Nova's `addFloatingIp`.
    fn attach_floating_ip(&self, ip: &FloatingIp, server_id: &str) -> CloudResult<()>;
    fn delete_floating_ip(&self, id: &str) -> CloudResult<()>;
}

/// Connect to every provider of `providers` in parallel (one token call each). A provider
/// that fails is returned with its error so the caller can go on with the others.
pub fn connect_all<'a>(
    providers: impl IntoIterator<Item = &'a crate::config::Provider>,
    counter: &openstack::http::CallCounter,
    stored: &BTreeMap<crate::model::ProviderName, StoredSession>,
) -> Vec<(
    &'a crate::config::Provider,
    CloudResult<openstack::OpenStack>,
)> {
    let providers: Vec<_> = providers.into_iter().collect();
    let connected = crate::parallel::map(
        &providers,
        crate::parallel::PROVIDER_THREADS,
        |provider| {
            connect(
                provider,
                counter.clone(),
                stored.get(&provider.name).cloned(),
            )
        },
        |provider| {
            Err(CloudError::new(
                ErrorKind::Transport,
                format!("{}: connecting panicked", provider.name),
            ))
        },
    );
    providers.into_iter().zip(connected).collect()
}

/// A token an earlier run stored for a provider: the hash of the auth settings it was issued
/// for (`Credentials::cache_key`), and the session.
pub type StoredSession = (String, openstack::auth::Session);

/// Credentials from nodepool.yaml or clouds.yaml, then authenticate (or use `stored`, when it
/// was issued for these credentials and is good for a while yet).
pub fn connect(
    provider: &crate::config::Provider,
    counter: openstack::http::CallCounter,
    stored: Option<StoredSession>,
) -> CloudResult<openstack::OpenStack> {
    use crate::config::ProviderAuth;
    let mut credentials = match &provider.auth {
        ProviderAuth::Inline {
            auth_url,
            username,
            password,
            project,
            user_domain_name,
            project_domain_name,
        } => openstack::auth::Credentials {
            auth_url: auth_url.clone(),
            username: username.clone(),
            password: password.clone(),
            project_name: match project {
                crate::config::Project::Name(name) => Some(name.clone()),
                crate::config::Project::Id(_) => None,
            },
            project_id: match project {
                crate::config::Project::Id(id) => Some(id.clone()),
                crate::config::Project::Name(_) => None,
            },
            user_domain_name: user_domain_name.clone(),
            project_domain_name: project_domain_name.clone(),
            region_name: None,
            interface: "public".into(),
        },
        ProviderAuth::CloudsYaml { cloud } => {
            clouds_yaml::credentials(cloud, &clouds_yaml::search_path()).map_err(|e| {
                CloudError::new(ErrorKind::AuthFailed, format!("{}: {e:#}", provider.name))
            })?
        }
    };
    if provider.region_name.is_some() {
        credentials.region_name = provider.region_name.clone();
    }
    let mut timeouts = openstack::http::Timeouts::default();
    if let Some(api_timeout) = provider.api_timeout {
        timeouts.call = api_timeout;
    }
    let stored_session = stored
        .filter(|(key, _)| *key == credentials.cache_key())
        .map(|(_, session)| session);
    let settings = openstack::Settings {
        stored_session,
        provider: provider.name.to_string(),
        credentials,
        service_type: provider.service_type.clone(),
        service_name: provider.service_name.clone(),
        timeouts,
        retry: openstack::http::RetryPolicy::default(),
        rate: provider.rate,
        listing_timeout: provider.listing_timeout,
        max_concurrency: provider.max_concurrency,
        public_networks: provider
            .networks
            .iter()
            .filter_map(|n| match n {
                crate::config::Network::Name { name, public: true } => Some(name.clone()),
                _ => None,
            })
            .collect(),
    };
    openstack::OpenStack::connect(&settings, counter)
}

/// The keypair nodepool keeps for `image` when the provider names none.
pub fn managed_keypair_name(installation: &str, image: &crate::model::ImageName) -> String {
    let short = installation.get(..8).unwrap_or(installation);
    format!("nodepool-{short}-{image}")
}

/// The network ids a server is created on: `net-id` as it is, `net-label` and `name`
/// resolved through the cloud's network list (one call, only when a label needs it).
pub fn resolve_networks(
    cloud: &dyn Cloud,
    networks: &[crate::config::Network],
) -> CloudResult<Vec<String>> {
    use crate::config::Network as Wanted;
    let needs_lookup = networks.iter().any(|n| !matches!(n, Wanted::Id(_)));
    let known = if needs_lookup {
        cloud.list_networks()?
    } else {
        Vec::new()
    };
    networks
        .iter()
        .map(|wanted| match wanted {
            Wanted::Id(id) => Ok(id.clone()),
            Wanted::Label(name) | Wanted::Name { name, .. } => known
                .iter()
                .find(|n| &n.name == name)
                .map(|n| n.id.clone())
                .ok_or_else(|| {
                    let have: Vec<&str> = known.iter().map(|n| n.name.as_str()).collect();
                    CloudError::new(
                        ErrorKind::NotFound,
                        format!(
                            "no network named `{name}`; the cloud has: {}",
                            have.join(", ")
                        ),
                    )
                }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flavor(name: &str, ram: u64) -> Flavor {
        Flavor {
            id: name.into(),
            name: name.into(),
            ram_mb: ram,
            vcpus: 1,
        }
    }

    #[test]
    fn the_smallest_flavor_with_enough_ram_and_a_matching_name_wins() {
        let flavors = [
            flavor("m1.large", 8192),
            flavor("perf.small", 2048),
            flavor("m1.small", 2048),
            flavor("m1.tiny", 512),
        ];
        assert_eq!(
            choose_flavor(&flavors, 1024, None).unwrap().name,
            "m1.small"
        );
        assert_eq!(
            choose_flavor(&flavors, 1024, Some("perf")).unwrap().name,
            "perf.small"
        );
        assert_eq!(
            choose_flavor(&flavors, 4096, None).unwrap().name,
            "m1.large"
        );
        assert!(choose_flavor(&flavors, 16384, None).is_none());
    }
}
