//! `Cloud` over the OpenStack APIs: Keystone (`auth`), Nova (`compute`), Glance (`image`) and
//! Neutron (`network`), all through one `Http` per provider.

pub mod auth;
mod compute;
pub mod http;
mod image;
mod network;
mod resolver;

use std::collections::BTreeMap;

use serde_json::Value;

use self::auth::{Credentials, Session};
use self::http::{Body, CallCounter, Http, Reply, RetryPolicy, Timeouts};
use crate::cloud::{
    CloudError, CloudResult, CreateServer, ErrorKind, Flavor, FloatingIp, Image, Keypair, Limits,
    Network, Server,
};

/// Where a provider's services live, from the catalog.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub compute: String,
    pub image: String,
    /// None when the cloud has no Neutron (nova-network floating IPs are used then).
    pub network: Option<String>,
}

/// How to reach one provider.
#[derive(Debug, Clone)]
pub struct Settings {
    pub provider: String,
    pub credentials: Credentials,
    pub service_type: Option<String>,
    pub service_name: Option<String>,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    pub rate: std::time::Duration,
    /// Most mutating calls in flight at once (`max-concurrency`); none: no bound but the
    /// executor's threads.
    pub max_concurrency: Option<u32>,
    /// A token stored by an earlier run for these credentials: used, without a token call,
    /// while it is good for more than `TOKEN_MARGIN_S`.
    pub stored_session: Option<Session>,
    /// The most connecting, or one round's listing, may take.
    pub listing_timeout: std::time::Duration,
    /// Networks the configuration marks `public: true`: a server's address on one of them is
    /// its public address before any other.
    pub public_networks: Vec<String>,
}

pub struct OpenStack {
    http: Http,
    /// The token, replaced when the cloud stops accepting it (401) during the run.
    session: std::sync::RwLock<Session>,
    /// The cloud refused the token and no new one could be had: it is not worth keeping.
    refused: std::sync::atomic::AtomicBool,
    credentials: Credentials,
    endpoints: Endpoints,
    public_networks: Vec<String>,
    listing_timeout: std::time::Duration,
}

/// A stored token is used until this long before Keystone says it expires: longer than a run,
/// so one never expires in the middle of a run that started with it.
const TOKEN_MARGIN_S: i64 = 300;

/// Max pages followed in one list (a bound, not a limit anyone should reach).
const MAX_PAGES: usize = 10_000;

impl OpenStack {
    /// Authenticate and find the endpoints: one token call per provider per run, or none when
    /// `settings` carry a stored token that is good for a while yet.
    pub fn connect(settings: &Settings, counter: CallCounter) -> CloudResult<OpenStack> {
        let http = Http::new(
            &settings.provider,
            &settings.timeouts,
            settings.retry.clone(),
            crate::cloud::gate::Gate::new(
                settings.rate,
                settings.max_concurrency.map(|n| n as usize),
            ),
            counter,
        );
        let stored = settings.stored_session.clone().filter(|s| {
            s.expires_at
                .is_some_and(|at| at - TOKEN_MARGIN_S > crate::clock::now())
        });
        let session = match stored {
            Some(session) => {
                http.add_secret(session.token.expose());
                http.add_secret(settings.credentials.password.expose());
                log::debug!("{}: using the stored token", settings.provider);
                session
            }
            None => {
                // Connecting is the first round's listing: one slow Keystone must not hold up
                // the rest.
                http.set_listing_bound(Some(std::time::Instant::now() + settings.listing_timeout));
                let session = auth::authenticate(&http, &settings.credentials);
                http.set_listing_bound(None);
                session?
            }
        };
        let region = settings.credentials.region_name.as_deref();
        let interface = settings.credentials.interface.as_str();
        let lookup = |kind: &str, name: Option<&str>| {
            session
                .catalog
                .endpoint(kind, name, region, interface)
                .map_err(|message| {
                    CloudError::new(
                        ErrorKind::Api { status: 0 },
                        format!("{}: {message}", settings.provider),
                    )
                })
        };
        let compute_type = settings.service_type.as_deref().unwrap_or("compute");
        let endpoints = Endpoints {
            compute: lookup(compute_type, settings.service_name.as_deref())?,
            image: with_version(&lookup("image", None)?, "v2"),
            network: lookup("network", None)
                .ok()
                .map(|url| with_version(&url, "v2.0")),
        };
        Ok(OpenStack {
            http,
            session: std::sync::RwLock::new(session),
            refused: std::sync::atomic::AtomicBool::new(false),
            credentials: settings.credentials.clone(),
            endpoints,
            public_networks: settings.public_networks.clone(),
            listing_timeout: settings.listing_timeout,
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Bound every call from now on by the run's deadline.
    pub fn set_deadline(&self, deadline: std::time::Instant) {
        self.http.set_deadline(deadline);
    }

    fn call(&self, method: &str, url: &str, route: &str, body: Body<'_>) -> CloudResult<Reply> {
        self.call_with(method, url, route, &[], body)
    }

    fn call_with(
        &self,
        method: &str,
        url: &str,
        route: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> CloudResult<Reply> {
        let token = self.token();
        let mut all = vec![("X-Auth-Token", token.expose())];
        all.extend_from_slice(headers);
        let again = body.again();
        match self.http.call(method, url, route, &all, body) {
            // The token expired or was revoked during the run: authenticate once more and
            // repeat the call once (a streamed body cannot be sent again).
            Err(error) if error.kind == ErrorKind::AuthFailed => {
                let Some(again) = again else {
                    return Err(error);
                };
                log::info!(
                    "{}: {route}: token refused; authenticating again",
                    self.http.provider()
                );
                let fresh = self.reauthenticate(&token)?;
                let mut all = vec![("X-Auth-Token", fresh.expose())];
                all.extend_from_slice(headers);
                self.http.call(method, url, route, &all, again)
            }
            other => other,
        }
    }

    fn token(&self) -> crate::model::Secret {
        self.session
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .token
            .clone()
    }

    /// A new token, unless another thread got one since `refused` was read.
    fn reauthenticate(&self, refused: &crate::model::Secret) -> CloudResult<crate::model::Secret> {
        use std::sync::atomic::Ordering;
        let mut session = self.session.write().unwrap_or_else(|e| e.into_inner());
        if session.token != *refused {
            return Ok(session.token.clone());
        }
        self.refused.store(true, Ordering::SeqCst);
        *session = auth::authenticate(&self.http, &self.credentials)?;
        self.refused.store(false, Ordering::SeqCst);
        Ok(session.token.clone())
    }

    /// The session worth keeping for the next run: the current one, unless the cloud refused
    /// it and no new one could be had.
    pub fn session_to_keep(&self) -> Option<Session> {
        if self.refused.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        Some(
            self.session
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// The hash of this cloud's auth settings, the key its token is stored under.
    pub fn credentials_key(&self) -> String {
        self.credentials.cache_key()
    }

    fn get_json(&self, url: &str, route: &str) -> CloudResult<Value> {
        self.call("GET", url, route, Body::None)?.json()
    }

    /// GET that maps 404 to None.
    fn get_optional(&self, url: &str, route: &str) -> CloudResult<Option<Value>> {
        match self.get_json(url, route) {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// DELETE where "already gone" counts as done.
    fn delete(&self, url: &str, route: &str) -> CloudResult<()> {
        match self.call("DELETE", url, route, Body::None) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn malformed(&self, route: &str, what: &str) -> CloudError {
        CloudError::new(
            ErrorKind::Malformed,
            format!(
                "{}: {route}: malformed answer: {what}",
                self.http.provider()
            ),
        )
    }
}

/// Glance and Neutron catalogs often list the unversioned root; the APIs live under a version.
fn with_version(url: &str, version: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with(&format!("/{version}")) {
        url.to_string()
    } else {
        format!("{url}/{version}")
    }
}

/// A `next` link may be absolute or relative to the service root.
fn absolute(root: &str, href: &str) -> String {
    if href.starts_with("http://") || href.starts_with("https://") {
        return href.to_string();
    }
    // root = scheme://host[:port]/path…; a relative href starting with '/' replaces the path
    // below the service prefix (Glance answers `/v2/images?marker=…`).
    let prefix = root
        .strip_suffix("/v2")
        .or_else(|| root.strip_suffix("/v2.0"))
        .unwrap_or(root);
    format!("{prefix}{href}")
}

impl crate::cloud::Cloud for OpenStack {
    fn begin_listing(&self) {
        let until = std::time::Instant::now() + self.listing_timeout;
        self.http.set_listing_bound(Some(until));
    }

    fn end_listing(&self) {
        self.http.set_listing_bound(None);
    }

    fn list_servers(&self) -> CloudResult<Vec<Server>> {
        compute::list_servers(self)
    }
    fn get_server(&self, id: &str) -> CloudResult<Option<Server>> {
        compute::get_server(self, id)
    }
    fn create_server(&self, request: &CreateServer) -> CloudResult<String> {
        compute::create_server(self, request)
    }
    fn delete_server(&self, id: &str) -> CloudResult<()> {
        compute::delete_server(self, id)
    }
    fn create_snapshot(
        &self,
        server_id: &str,
        name: &str,
        metadata: &BTreeMap<String, String>,
    ) -> CloudResult<String> {
        compute::create_snapshot(self, server_id, name, metadata)
    }
    fn list_flavors(&self) -> CloudResult<Vec<Flavor>> {
        compute::list_flavors(self)
    }
    fn limits(&self) -> CloudResult<Limits> {
        compute::limits(self)
    }
    fn availability_zones(&self) -> CloudResult<Vec<String>> {
        compute::availability_zones(self)
    }
    fn list_keypairs(&self) -> CloudResult<Vec<Keypair>> {
        compute::list_keypairs(self)
    }
    fn create_keypair(&self, name: &str, public_key: &str) -> CloudResult<()> {
        compute::create_keypair(self, name, public_key)
    }
    fn delete_keypair(&self, name: &str) -> CloudResult<()> {
        compute::delete_keypair(self, name)
    }
    fn list_images(&self) -> CloudResult<Vec<Image>> {
        image::list_images(self)
    }
    fn get_image(&self, id: &str) -> CloudResult<Option<Image>> {
        image::get_image(self, id)
    }
    fn create_image(
        &self,
        name: &str,
        disk_format: &str,
        properties: &BTreeMap<String, String>,
    ) -> CloudResult<String> {
        image::create_image(self, name, disk_format, properties)
    }
    fn upload_image(&self, id: &str, data: &mut dyn std::io::Read, length: u64) -> CloudResult<()> {
        image::upload_image(self, id, data, length)
    }
    fn delete_image(&self, id: &str) -> CloudResult<()> {
        image::delete_image(self, id)
    }
    fn list_networks(&self) -> CloudResult<Vec<Network>> {
        network::list_networks(self)
    }
    fn list_floating_ips(&self) -> CloudResult<Vec<FloatingIp>> {
        network::list_floating_ips(self)
    }
    fn allocate_floating_ip(&self, pool: &str, description: &str) -> CloudResult<FloatingIp> {
        network::allocate_floating_ip(self, pool, description)
    }

    fn attach_floating_ip(&self, ip: &FloatingIp, server_id: &str) -> CloudResult<()> {
        network::attach_floating_ip(self, ip, server_id)
    }
    fn delete_floating_ip(&self, id: &str) -> CloudResult<()> {
        network::delete_floating_ip(self, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_appended_once() {
        assert_eq!(with_version("http://h/image/", "v2"), "http://h/image/v2");
        assert_eq!(with_version("http://h:9292/v2", "v2"), "http://h:9292/v2");
        assert_eq!(
            with_version("http://h/network", "v2.0"),
            "http://h/network/v2.0"
        );
    }

    #[test]
    fn next_links_resolve_against_the_service_root() {
        assert_eq!(
            absolute("http://h/image/v2", "/v2/images?marker=x"),
            "http://h/image/v2/images?marker=x"
        );
        assert_eq!(
            absolute("http://h/image/v2", "http://h/other"),
            "http://h/other"
        );
    }
}
