//! A wire-compatible OpenStack subset (Keystone, Nova, Glance, Neutron) served on loopback.
//!
//! nodepool's tests drive the real HTTP client against it in-process, and the quickstart and
//! the benchmarks run it as the `nodepool-simulator` binary (`src/main.rs`) so a new user sees
//! the whole cycle without a cloud. It is a crate of its own in the workspace, a
//! dev-dependency of `nodepool`, so the product never links a server (nor `tiny_http`); it
//! knows nothing of nodepool either, only the OpenStack wire format.
//!
//! Layout: this file holds the public handle ([`Simulator`]), its [`Knobs`] and the request
//! loop (accounting, latency, token check, injected faults); `http` the request/reply types and
//! the route table; `identity`, `compute`, `floating`, `image` and `network` one service each;
//! `state` the in-memory cloud; `control` the `/_sim/` endpoints for people and scripts.
//!
//! One accept thread hands each request to a thread of its own, so a slow upload or an
//! injected latency never holds up other calls.

mod compute;
mod control;
mod floating;
mod http;
mod identity;
mod image;
mod network;
mod state;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};

pub use state::{Calls, Dump, DumpFloatingIp, DumpImage, DumpServer};

use http::{Reply, Req, Service};
use state::State;

/// Behaviour of the simulated cloud; set at start and changeable while it runs
/// ([`Simulator::set_knobs`], or `POST /_sim/knobs` with durations in seconds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knobs {
    pub username: String,
    pub password: String,
    pub project: String,
    /// Time a new server spends in BUILD (and a new snapshot in `queued`).
    #[serde(with = "secs")]
    pub boot_delay: Duration,
    /// Share of new servers that end in ERROR instead of ACTIVE.
    pub error_ratio: f64,
    /// Share of new servers that stay in BUILD forever.
    pub stuck_ratio: f64,
    /// Image ids whose servers all end in ERROR: an image that does not boot.
    pub broken_images: Vec<String>,
    /// Share of requests (identity excluded) answered 500.
    pub server_error_ratio: f64,
    /// The next this many requests (identity excluded) are answered 500, then none: a
    /// deterministic "fails, then recovers" for retry tests.
    pub fail_next: u32,
    /// The next this many Keystone requests are answered 500: a token service that hiccups.
    pub identity_fail_next: u32,
    /// Past this many requests (identity excluded) in one second, answer 429 with `Retry-After: 1`.
    pub rate_limit_per_second: Option<u32>,
    /// Most servers that may exist at once; creating one more is answered 403.
    pub instance_quota: Option<u32>,
    /// Sleep before answering each request.
    #[serde(with = "secs")]
    pub latency: Duration,
    /// Extra sleep before answering one route, by its name in the call counts
    /// (`POST /compute/servers`): a Nova whose creates are slow while its listings are not.
    #[serde(with = "secs_map")]
    pub route_latency: BTreeMap<String, Duration>,
    /// How long a token is valid (Keystone's default: an hour); an expired one gets 401.
    #[serde(with = "secs")]
    pub token_lifetime: Duration,
    /// A deleted server stays listed, in status DELETED, for this long.
    #[serde(with = "secs")]
    pub delete_delay: Duration,
    /// Uploads are stored with a wrong `checksum` and `os_hash_value`: a store that corrupted
    /// the data.
    pub corrupt_checksums: bool,
    /// A deleted server goes to ERROR and stays.
    pub delete_fails: bool,
    /// Seed of the randomness (ids, tokens, fates, injected errors); read at start only.
    pub seed: u64,
    /// The fixed address of every server; loopback so tests can SSH to a local sshd.
    pub server_ip: String,
    /// A server created with a `key_name` gets that keypair's public key appended to this
    /// file, as cloud-init would put it in the image user's `authorized_keys`: point it at
    /// the test sshd's file so a keypair nodepool generates lets it in.
    pub authorized_keys: Option<std::path::PathBuf>,
    /// Most items in one page of a list.
    pub page_size: usize,
    /// Names of the active public images present at start (read at start only).
    pub images: Vec<String>,
    /// `(name, ram MB, vcpus)`; flavor ids are "1", "2", … in this order.
    pub flavors: Vec<(String, u64, u32)>,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            username: "demo".into(),
            password: "secret".into(),
            project: "demo".into(),
            boot_delay: Duration::ZERO,
            error_ratio: 0.0,
            stuck_ratio: 0.0,
            broken_images: Vec::new(),
            server_error_ratio: 0.0,
            fail_next: 0,
            identity_fail_next: 0,
            rate_limit_per_second: None,
            instance_quota: None,
            latency: Duration::ZERO,
            route_latency: BTreeMap::new(),
            token_lifetime: Duration::from_secs(3600),
            delete_delay: Duration::ZERO,
            delete_fails: false,
            corrupt_checksums: false,
            seed: 1,
            server_ip: "127.0.0.1".into(),
            authorized_keys: None,
            page_size: 1000,
            images: vec!["Ubuntu 22.04".into(), "CentOS 7".into()],
            flavors: vec![
                ("m1.tiny".into(), 512, 1),
                ("m1.small".into(), 2048, 1),
                ("m1.medium".into(), 4096, 2),
                ("m1.large".into(), 8192, 4),
            ],
        }
    }
}

/// A map of names to durations, each as (fractional) seconds on the wire.
mod secs_map {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<String, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, d)| (k, d.as_secs_f64())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        BTreeMap::<String, f64>::deserialize(d)?
            .into_iter()
            .map(|(k, secs)| {
                Duration::try_from_secs_f64(secs)
                    .map(|d| (k, d))
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

/// Durations as (fractional) seconds on the wire, which is what a person types.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// What the request threads share: the base URL, the knobs and the cloud.
pub(crate) struct Core {
    url: String,
    knobs: Mutex<Knobs>,
    state: Mutex<State>,
}

impl Core {
    fn knobs(&self) -> Knobs {
        self.knobs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A handler that panicked must not take the whole simulator down with a poisoned lock.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running simulator; stops on [`Simulator::stop`] or when dropped.
pub struct Simulator {
    core: Arc<Core>,
    server: Arc<tiny_http::Server>,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// A loopback listener whose connections have Nagle's algorithm off (Linux hands the flag to
/// accepted sockets). tiny_http writes a reply's head and body separately; with Nagle on,
/// the body waited for the client's delayed ACK, 40 ms per small answer.
fn listener(port: u16) -> anyhow::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket
        .bind(&address.into())
        .with_context(|| format!("binding {address}"))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

impl Simulator {
    /// Start on a free loopback port.
    pub fn start(knobs: Knobs) -> anyhow::Result<Simulator> {
        Simulator::start_on(0, knobs)
    }

    /// Start on `127.0.0.1:port` (0 picks a free one).
    pub fn start_on(port: u16, knobs: Knobs) -> anyhow::Result<Simulator> {
        let server = tiny_http::Server::from_listener(listener(port)?, None)
            .map_err(|e| anyhow!("serving on 127.0.0.1:{port}: {e}"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow!("the simulator's listener has no IP address"))?;
        let url = format!("http://127.0.0.1:{}", addr.port());
        let state = State::new(&knobs);
        let core = Arc::new(Core {
            url,
            knobs: Mutex::new(knobs),
            state: Mutex::new(state),
        });
        let server = Arc::new(server);
        let stopping = Arc::new(AtomicBool::new(false));
        let accept = {
            let (core, server, stopping) = (core.clone(), server.clone(), stopping.clone());
            std::thread::Builder::new()
                .name("simulator-accept".into())
                .spawn(move || accept_loop(&core, &server, &stopping))?
        };
        Ok(Simulator {
            core,
            server,
            stopping,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.core.url.clone()
    }

    pub fn auth_url_v3(&self) -> String {
        format!("{}/identity/v3", self.core.url)
    }

    pub fn auth_url_v2(&self) -> String {
        format!("{}/identity/v2.0", self.core.url)
    }

    /// Answers GET with Keystone's version discovery document.
    pub fn auth_url_unversioned(&self) -> String {
        format!("{}/identity", self.core.url)
    }

    pub fn set_knobs(&self, change: impl FnOnce(&mut Knobs)) {
        change(&mut self.core.knobs.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn knobs(&self) -> Knobs {
        self.core.knobs()
    }

    /// Forget every token issued so far, as Keystone does when tokens expire or are revoked:
    /// the next call with one is answered 401.
    pub fn revoke_tokens(&self) {
        self.core.state().tokens.clear();
    }

    /// Requests received so far (control endpoints excluded), in total and per route.
    pub fn calls(&self) -> Calls {
        self.core.state().calls.clone()
    }

    /// Servers, images, keypairs and floating IPs as they are now.
    pub fn dump(&self) -> Dump {
        let mut state = self.core.state();
        state.sweep(Instant::now());
        state.dump(Instant::now())
    }

    /// Stop serving and close the port; dropping the handle does the same.
    pub fn stop(self) {}
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(core: &Arc<Core>, server: &tiny_http::Server, stopping: &AtomicBool) {
    while !stopping.load(Ordering::SeqCst) {
        let request = match server.recv() {
            Ok(request) => request,
            Err(_) if stopping.load(Ordering::SeqCst) => break,
            Err(e) => {
                log::warn!("simulator: accepting a request: {e}");
                continue;
            }
        };
        let core = core.clone();
        let spawned = std::thread::Builder::new()
            .name("simulator-request".into())
            .spawn(move || serve(&core, request));
        if let Err(e) = spawned {
            log::warn!("simulator: starting a request thread: {e}");
        }
    }
}

fn serve(core: &Core, mut request: tiny_http::Request) {
    let method = request.method().as_str().to_ascii_uppercase();
    let target = request.url().to_owned();
    let reply = handle(core, &method, &target, &mut request);
    log::debug!("simulator: {method} {target} -> {}", reply.status);
    if let Err(e) = request.respond(reply.into_response()) {
        log::debug!("simulator: answering {method} {target}: {e}");
    }
}

fn handle(core: &Core, method: &str, target: &str, request: &mut tiny_http::Request) -> Reply {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if let Some(rest) = path.strip_prefix("/_sim/") {
        return control::handle(core, method, rest, request.as_reader());
    }
    let header = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_owned())
    };
    let token = header("X-Auth-Token");
    let microversion = http::microversion(
        header("X-OpenStack-Nova-API-Version"),
        header("OpenStack-API-Version"),
    );
    let resolved = http::resolve(method, path);
    let knobs = core.knobs();
    {
        let mut state = core.state();
        state.calls.record(&resolved.name);
        state.sweep(Instant::now());
    }
    let latency = knobs.latency
        + knobs
            .route_latency
            .get(&resolved.name)
            .copied()
            .unwrap_or_default();
    if !latency.is_zero() {
        std::thread::sleep(latency);
    }
    let service = resolved.service;
    let reply = if let Some(refusal) = gate(core, &knobs, service, token.as_deref()) {
        refusal
    } else if let Some(route) = resolved.route {
        let mut req = Req {
            service,
            params: resolved.params,
            query: http::parse_query(query),
            microversion,
            body: request.as_reader(),
            url: &core.url,
        };
        (route.handler)(core, &mut req).unwrap_or_else(|refusal| refusal)
    } else {
        service.error(404, &format!("no route for {method} {path}"))
    };
    if service != Service::Compute {
        return reply;
    }
    // Nova names the microversion it answered with; clients may read it back.
    let (major, minor) = microversion;
    reply
        .header("X-OpenStack-Nova-API-Version", &format!("{major}.{minor}"))
        .header("OpenStack-API-Version", &format!("compute {major}.{minor}"))
        .header(
            "Vary",
            "OpenStack-API-Version, X-OpenStack-Nova-API-Version",
        )
}

/// What stands between a request and its handler: the token, then the rate limit, then
/// injected server errors. Keystone is refused only by `identity_fail_next`.
fn gate(core: &Core, knobs: &Knobs, service: Service, token: Option<&str>) -> Option<Reply> {
    if service == Service::Identity {
        let mut current = core.knobs.lock().unwrap_or_else(|e| e.into_inner());
        if current.identity_fail_next > 0 {
            current.identity_fail_next -= 1;
            return Some(service.error(500, "Unexpected error (injected by the simulator)."));
        }
        return None;
    }
    let mut state = core.state();
    let valid = token
        .and_then(|t| state.tokens.get(t))
        .is_some_and(|expires| *expires > Instant::now());
    if !valid {
        let message = "The request you have made requires authentication.";
        let keystone = format!("Keystone uri=\"{}/identity\"", core.url);
        let refusal = Service::Identity.error(401, message);
        return Some(refusal.header("WWW-Authenticate", &keystone));
    }
    if let Some(limit) = knobs.rate_limit_per_second {
        if state.over_rate(limit) {
            let refusal = service.error(429, "This request was rate-limited.");
            return Some(refusal.header("Retry-After", "1"));
        }
    }
    if knobs.fail_next > 0 {
        let mut current = core.knobs.lock().unwrap_or_else(|e| e.into_inner());
        if current.fail_next > 0 {
            current.fail_next -= 1;
            return Some(service.error(500, "Unexpected API Error (injected by the simulator)."));
        }
    }
    if knobs.server_error_ratio > 0.0 && state.rng.f64() < knobs.server_error_ratio {
        return Some(service.error(500, "Unexpected API Error (injected by the simulator)."));
    }
    None
}
