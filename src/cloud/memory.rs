//! `MemoryCloud`: the `Cloud` trait over plain data behind one mutex, for unit tests of the
//! executor and of anything else that calls a cloud, in milliseconds and without HTTP.
//!
//! A test seeds it (`add_flavor`, `add_image`, `add_network`, …), moves servers on by hand
//! (`set_status`, `activate_all`: no timers, no sleeping), reads what was called (`calls`,
//! `log`) and scripts faults per operation (`script`), including those the HTTP simulator
//! can hardly reach: a create whose answer is lost after the server was made, a 2xx create
//! without an id, a listing that misses a server, an attach that fails after allocating, a
//! delete that is accepted and not done. Otherwise it answers as the OpenStack API reference
//! says, with the error kinds and messages `openstack::OpenStack` gives. Its addresses are
//! loopback ones, as the simulator's, so a test that connects to one stays on this machine.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{
    Cloud, CloudError, CloudResult, CreateServer, ErrorKind, Flavor, FloatingIp, Image, Keypair,
    Limits, Network, Server, ServerStatus,
};

/// The provider name in messages, where the HTTP client puts its provider's.
const PROVIDER: &str = "memory";
const CREATE: &str = "POST compute /servers";

/// One variant per `Cloud` method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    ListServers,
    GetServer,
    CreateServer,
    DeleteServer,
    CreateSnapshot,
    ListFlavors,
    Limits,
    AvailabilityZones,
    ListKeypairs,
    CreateKeypair,
    DeleteKeypair,
    ListImages,
    GetImage,
    CreateImage,
    UploadImage,
    DeleteImage,
    ListNetworks,
    ListFloatingIps,
    AllocateFloatingIp,
    AttachFloatingIp,
    DeleteFloatingIp,
}

/// What one call of an operation does instead of answering normally.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Any operation: answer this error and do nothing.
    Error(CloudError),
    /// Any operation: answer normally (a script reaches the Nth call with these).
    Pass,
    /// `CreateServer`: the server is made, then the answer is lost (a `Transport` timeout).
    TimeoutAfterCreate,
    /// `CreateServer`: the server is made and the 2xx answer has no `server.id`.
    CreatedWithoutId,
    /// `ListServers`: this server is missing from the listing.
    Omit(String),
    /// `DeleteServer`: the delete is accepted and the server stays.
    IgnoreDelete,
}

impl Fault {
    /// The one operation a fault belongs to; None when it fits any.
    fn only_for(&self) -> Option<Op> {
        match self {
            Fault::Error(_) | Fault::Pass => None,
            Fault::TimeoutAfterCreate | Fault::CreatedWithoutId => Some(Op::CreateServer),
            Fault::Omit(_) => Some(Op::ListServers),
            Fault::IgnoreDelete => Some(Op::DeleteServer),
        }
    }
}

struct Stored {
    server: Server,
    request: CreateServer,
    /// From the id; numbers the server's addresses.
    number: u64,
}

#[derive(Default)]
struct State {
    servers: Vec<Stored>,
    images: Vec<Image>,
    /// Image id -> Glance's `checksum` of its upload.
    checksums: BTreeMap<String, String>,
    flavors: Vec<Flavor>,
    keypairs: Vec<Keypair>,
    networks: Vec<Network>,
    floating_ips: Vec<FloatingIp>,
    zones: Vec<String>,
    limits: Limits,
    private_only: bool,
    /// Ids made so far, by kind (`server`, `image`, …).
    made: BTreeMap<&'static str, u64>,
    log: Vec<Op>,
    faults: BTreeMap<Op, VecDeque<Fault>>,
}

/// An in-memory cloud; see the module doc.
pub struct MemoryCloud {
    state: Mutex<State>,
    /// How long a create call takes (outside the lock, so creates overlap as on a cloud).
    create_latency: Mutex<Duration>,
    creates_in_flight: AtomicUsize,
    /// The most create calls that were in flight at once.
    peak_creates: AtomicUsize,
}

impl Default for MemoryCloud {
    fn default() -> Self {
        MemoryCloud::new()
    }
}

impl MemoryCloud {
    /// An empty cloud with one availability zone, `nova`, and unlimited quota.
    pub fn new() -> MemoryCloud {
        let zones = vec!["nova".into()];
        let state = Mutex::new(State {
            zones,
            ..State::default()
        });
        MemoryCloud {
            state,
            create_latency: Mutex::new(Duration::ZERO),
            creates_in_flight: AtomicUsize::new(0),
            peak_creates: AtomicUsize::new(0),
        }
    }

    /// Every create call takes this long from now on.
    pub fn set_create_latency(&self, latency: Duration) {
        *self
            .create_latency
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = latency;
    }

    /// The most create calls that were in flight at once so far.
    pub fn peak_creates_in_flight(&self) -> usize {
        self.peak_creates.load(Ordering::SeqCst)
    }

    pub fn add_flavor(&self, name: &str, ram_mb: u64, vcpus: u64) -> String {
        let mut state = self.lock();
        let (id, _) = state.new_id("flavor");
        let (name, flavor_id) = (name.into(), id.clone());
        state.flavors.push(Flavor {
            id: flavor_id,
            name,
            ram_mb,
            vcpus,
        });
        id
    }

    /// An active image, as one uploaded earlier.
    pub fn add_image(&self, name: &str) -> String {
        self.lock().new_image(name, "active", &BTreeMap::new())
    }

    pub fn add_network(&self, name: &str, external: bool) -> String {
        let mut state = self.lock();
        let (id, _) = state.new_id("network");
        let (name, network_id) = (name.into(), id.clone());
        state.networks.push(Network {
            id: network_id,
            name,
            external,
        });
        id
    }

    pub fn add_keypair(&self, name: &str, public_key: &str) {
        let (name, public_key) = (name.into(), public_key.into());
        self.lock().keypairs.push(Keypair { name, public_key });
    }

    /// A server in BUILD that this cloud was not asked for (an earlier run's, a leak): not
    /// checked against what the cloud has, not logged.
    pub fn add_server(&self, request: &CreateServer) -> String {
        self.lock().new_server(request)
    }

    pub fn set_availability_zones(&self, zones: &[&str]) {
        self.lock().zones = zones.iter().map(|z| z.to_string()).collect();
    }

    /// What `limits` answers.
    pub fn set_limits(&self, limits: Limits) {
        self.lock().limits = limits;
    }

    /// Servers get only a private address when ACTIVE: nodepool must attach a floating IP.
    pub fn set_private_only(&self, private_only: bool) {
        self.lock().private_only = private_only;
    }

    /// Move a server on; ACTIVE gives it its addresses. Panics on an unknown id.
    pub fn set_status(&self, id: &str, status: ServerStatus) {
        let mut state = self.lock();
        let private_only = state.private_only;
        let stored = state.server(id).unwrap_or_else(|| panic!("no server {id}"));
        let server = &mut stored.server;
        server.status = status;
        if status == ServerStatus::Active && server.private_v4.is_none() {
            server.private_v4 = Some(loopback(1, stored.number));
            server.public_v4 = (!private_only).then(|| loopback(2, stored.number));
        }
    }

    /// Every server in BUILD becomes ACTIVE.
    pub fn activate_all(&self) {
        let building: Vec<String> = (self.servers().into_iter())
            .filter(|s| s.status == ServerStatus::Build)
            .map(|s| s.id)
            .collect();
        for id in building {
            self.set_status(&id, ServerStatus::Active);
        }
    }

    /// Glance moves an image on (a snapshot to `active`, a broken upload to `killed`).
    pub fn set_image_status(&self, id: &str, status: &str) {
        let mut state = self.lock();
        let image = state.images.iter_mut().find(|i| i.id == id);
        image.unwrap_or_else(|| panic!("no image {id}")).status = status.into();
    }

    /// The server disappears, as one deleted by someone else.
    pub fn remove_server(&self, id: &str) {
        self.lock().servers.retain(|s| s.server.id != id);
    }

    /// Queue `fault` for the calls of `op`, which take one each, in order (a create the
    /// cloud refuses takes its fault too). Panics when the fault belongs to another operation.
    pub fn script(&self, op: Op, fault: Fault) {
        if let Some(only) = fault.only_for() {
            assert_eq!(op, only, "{fault:?} is a fault of {only:?}, not {op:?}");
        }
        self.lock().faults.entry(op).or_default().push_back(fault);
    }

    /// The `n`th call of `op` from now (1: the next) answers `error`; those before pass.
    pub fn fail_nth(&self, op: Op, n: usize, error: CloudError) {
        for _ in 1..n {
            self.script(op, Fault::Pass);
        }
        self.script(op, Fault::Error(error));
    }

    pub fn calls(&self, op: Op) -> usize {
        self.lock().log.iter().filter(|o| **o == op).count()
    }

    /// Every call so far, in order.
    pub fn log(&self) -> Vec<Op> {
        self.lock().log.clone()
    }

    /// Every server, omitted from listings or not, in creation order.
    pub fn servers(&self) -> Vec<Server> {
        let state = self.lock();
        state.servers.iter().map(|s| s.server.clone()).collect()
    }

    /// The create request a server was made from, as sent.
    pub fn request(&self, server_id: &str) -> Option<CreateServer> {
        self.lock().server(server_id).map(|s| s.request.clone())
    }

    pub fn images(&self) -> Vec<Image> {
        self.lock().images.clone()
    }

    /// Glance's `checksum` of an image's upload: the MD5 of the data, in hex.
    pub fn checksum(&self, image_id: &str) -> Option<String> {
        self.lock().checksums.get(image_id).cloned()
    }

    pub fn floating_ips(&self) -> Vec<FloatingIp> {
        self.lock().floating_ips.clone()
    }

    pub fn keypairs(&self) -> Vec<Keypair> {
        self.lock().keypairs.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Log the call and take its next fault; an `Error` is answered here, before any effect.
    fn enter(&self, op: Op) -> CloudResult<(MutexGuard<'_, State>, Option<Fault>)> {
        let mut state = self.lock();
        state.log.push(op);
        match state.faults.get_mut(&op).and_then(VecDeque::pop_front) {
            Some(Fault::Error(error)) => Err(error),
            Some(Fault::Pass) | None => Ok((state, None)),
            Some(fault) => Ok((state, Some(fault))),
        }
    }
}

impl State {
    fn new_id(&mut self, kind: &'static str) -> (String, u64) {
        let n = self.made.entry(kind).or_default();
        *n += 1;
        (format!("{kind}-{n}"), *n)
    }

    fn new_server(&mut self, request: &CreateServer) -> String {
        let (id, number) = self.new_id("server");
        let server = Server {
            id: id.clone(),
            name: request.name.clone(),
            status: ServerStatus::Build,
            metadata: request.metadata.iter().collect(),
            public_v4: None,
            public_v6: None,
            private_v4: None,
        };
        let request = request.clone();
        self.servers.push(Stored {
            server,
            request,
            number,
        });
        id
    }

    fn new_image(&mut self, name: &str, status: &str, props: &BTreeMap<String, String>) -> String {
        let (id, _) = self.new_id("image");
        self.images.push(Image {
            id: id.clone(),
            name: name.into(),
            status: status.into(),
            properties: props.clone(),
            size: None,
            md5: None,
            sha512: None,
        });
        id
    }

    fn server(&mut self, id: &str) -> Option<&mut Stored> {
        self.servers.iter_mut().find(|s| s.server.id == id)
    }

    /// Nova's 400 answer to a request naming what the project does not have, if it would.
    fn refusal(&self, r: &CreateServer) -> Option<CloudError> {
        let image = self.images.iter().find(|i| i.id == r.image_id);
        let no_key = |k: &String| !self.keypairs.iter().any(|p| &p.name == k);
        let no_network = |id: &String| !self.networks.iter().any(|n| &n.id == id);
        let message = if image.is_none() {
            "Can not find requested image"
        } else if image.is_some_and(|i| i.status != "active") {
            "Image is not active."
        } else if !self.flavors.iter().any(|f| f.id == r.flavor_id) {
            "Flavor could not be found."
        } else if r.key_name.as_ref().is_some_and(no_key) {
            "Invalid key_name provided."
        } else if r.network_ids.iter().any(no_network) {
            "Network could not be found."
        } else if (r.availability_zone.as_ref()).is_some_and(|az| !self.zones.contains(az)) {
            "The requested availability zone is not available"
        } else {
            return None;
        };
        Some(answer(400, CREATE, message))
    }
}

/// An error answer, worded and sorted as `openstack::http` does.
fn answer(status: u16, route: &str, message: &str) -> CloudError {
    let kind = match status {
        404 => ErrorKind::NotFound,
        status => ErrorKind::Api { status },
    };
    let message = format!("{PROVIDER}: {route}: HTTP {status}: {message}");
    CloudError::new(kind, message)
}

/// What `openstack` says of a 2xx answer without what it needs.
fn malformed(route: &str, what: &str) -> CloudError {
    let message = format!("{PROVIDER}: {route}: malformed answer: {what}");
    CloudError::new(ErrorKind::Malformed, message)
}

/// `127.<net>.x.y`, numbered from `n`.
fn loopback(net: u8, n: u64) -> String {
    format!("127.{net}.{}.{}", n / 250, 1 + n % 250)
}

impl Cloud for MemoryCloud {
    fn list_servers(&self) -> CloudResult<Vec<Server>> {
        let (state, fault) = self.enter(Op::ListServers)?;
        let omit = match fault {
            Some(Fault::Omit(id)) => Some(id),
            _ => None,
        };
        let listed = state.servers.iter().map(|s| &s.server);
        let kept = listed.filter(|s| omit.as_ref() != Some(&s.id));
        Ok(kept.cloned().collect())
    }

    fn get_server(&self, id: &str) -> CloudResult<Option<Server>> {
        let (mut state, _) = self.enter(Op::GetServer)?;
        Ok(state.server(id).map(|s| s.server.clone()))
    }

    fn create_server(&self, request: &CreateServer) -> CloudResult<String> {
        let now = self.creates_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_creates.fetch_max(now, Ordering::SeqCst);
        let latency = *self
            .create_latency
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        std::thread::sleep(latency);
        self.creates_in_flight.fetch_sub(1, Ordering::SeqCst);
        let (mut state, fault) = self.enter(Op::CreateServer)?;
        if let Some(refused) = state.refusal(request) {
            return Err(refused);
        }
        let id = state.new_server(request);
        match fault {
            // What `openstack::http` says when ureq gives up waiting for the answer.
            Some(Fault::TimeoutAfterCreate) => Err(CloudError::new(
                ErrorKind::Transport,
                format!("{PROVIDER}: {CREATE}: no answer: timeout: global"),
            )),
            Some(Fault::CreatedWithoutId) => Err(malformed(CREATE, "no server id")),
            _ => Ok(id),
        }
    }

    fn delete_server(&self, id: &str) -> CloudResult<()> {
        let (mut state, fault) = self.enter(Op::DeleteServer)?;
        if fault == Some(Fault::IgnoreDelete) {
            return Ok(());
        }
        state.servers.retain(|s| s.server.id != id);
        // Its port goes with it; its floating IP stays allocated, attached to nothing.
        for ip in state.floating_ips.iter_mut() {
            if ip.server_id.as_deref() == Some(id) {
                ip.server_id = None;
            }
        }
        Ok(())
    }

    fn create_snapshot(
        &self,
        server_id: &str,
        name: &str,
        metadata: &BTreeMap<String, String>,
    ) -> CloudResult<String> {
        let (mut state, _) = self.enter(Op::CreateSnapshot)?;
        if state.server(server_id).is_none() {
            let route = "POST compute /servers/{id}/action createImage";
            return Err(answer(404, route, "Instance could not be found."));
        }
        Ok(state.new_image(name, "queued", metadata))
    }

    fn list_flavors(&self) -> CloudResult<Vec<Flavor>> {
        Ok(self.enter(Op::ListFlavors)?.0.flavors.clone())
    }

    fn limits(&self) -> CloudResult<Limits> {
        Ok(self.enter(Op::Limits)?.0.limits.clone())
    }

    fn availability_zones(&self) -> CloudResult<Vec<String>> {
        Ok(self.enter(Op::AvailabilityZones)?.0.zones.clone())
    }

    fn list_keypairs(&self) -> CloudResult<Vec<Keypair>> {
        Ok(self.enter(Op::ListKeypairs)?.0.keypairs.clone())
    }

    fn create_keypair(&self, name: &str, public_key: &str) -> CloudResult<()> {
        let (mut state, _) = self.enter(Op::CreateKeypair)?;
        if state.keypairs.iter().any(|k| k.name == name) {
            let message = format!("Key pair '{name}' already exists.");
            return Err(answer(409, "POST compute /os-keypairs", &message));
        }
        let (name, public_key) = (name.into(), public_key.into());
        state.keypairs.push(Keypair { name, public_key });
        Ok(())
    }

    fn delete_keypair(&self, name: &str) -> CloudResult<()> {
        let (mut state, _) = self.enter(Op::DeleteKeypair)?;
        state.keypairs.retain(|k| k.name != name);
        Ok(())
    }

    fn list_images(&self) -> CloudResult<Vec<Image>> {
        Ok(self.enter(Op::ListImages)?.0.images.clone())
    }

    fn get_image(&self, id: &str) -> CloudResult<Option<Image>> {
        let (state, _) = self.enter(Op::GetImage)?;
        Ok(state.images.iter().find(|i| i.id == id).cloned())
    }

    fn create_image(
        &self,
        name: &str,
        _disk_format: &str,
        properties: &BTreeMap<String, String>,
    ) -> CloudResult<String> {
        let (mut state, _) = self.enter(Op::CreateImage)?;
        Ok(state.new_image(name, "queued", properties))
    }

    fn upload_image(
        &self,
        id: &str,
        data: &mut dyn std::io::Read,
        _length: u64,
    ) -> CloudResult<()> {
        let route = "PUT image /v2/images/{id}/file";
        let (mut state, _) = self.enter(Op::UploadImage)?;
        let Some(image) = state.images.iter_mut().find(|i| i.id == id) else {
            return Err(answer(404, route, "No image found"));
        };
        if image.status != "queued" {
            let from = &image.status;
            let message = format!("Image status transition from {from} to saving is not allowed");
            return Err(answer(409, route, &message));
        }
        // Streamed, as the HTTP client sends it, through Glance's checksums.
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).map_err(|e| {
            CloudError::new(ErrorKind::Transport, format!("reading the upload: {e}"))
        })?;
        let checksum = {
            use md5::Digest;
            format!("{:x}", md5::Md5::digest(&bytes))
        };
        image.size = Some(bytes.len() as u64);
        image.status = "active".into();
        image.md5 = Some(checksum.clone());
        image.sha512 = Some({
            use sha2::Digest;
            format!("{:x}", sha2::Sha512::digest(&bytes))
        });
        state.checksums.insert(id.into(), checksum);
        Ok(())
    }

    fn delete_image(&self, id: &str) -> CloudResult<()> {
        self.enter(Op::DeleteImage)?.0.images.retain(|i| i.id != id);
        Ok(())
    }

    fn list_networks(&self) -> CloudResult<Vec<Network>> {
        Ok(self.enter(Op::ListNetworks)?.0.networks.clone())
    }

    fn list_floating_ips(&self) -> CloudResult<Vec<FloatingIp>> {
        Ok(self.enter(Op::ListFloatingIps)?.0.floating_ips.clone())
    }

    /// As the HTTP client over Neutron: the pool is an external network's name or id.
    fn allocate_floating_ip(&self, pool: &str, description: &str) -> CloudResult<FloatingIp> {
        let (mut state, _) = self.enter(Op::AllocateFloatingIp)?;
        let known = state
            .networks
            .iter()
            .any(|n| n.name == pool || n.id == pool);
        if !known {
            let route = "POST network /v2.0/floatingips";
            return Err(answer(404, route, &format!("no network named {pool}")));
        }
        let (id, n) = state.new_id("fip");
        let fip = FloatingIp {
            id,
            ip: loopback(3, n),
            server_id: None,
            description: Some(description.to_string()),
        };
        state.floating_ips.push(fip.clone());
        Ok(fip)
    }

    fn attach_floating_ip(&self, ip: &FloatingIp, server_id: &str) -> CloudResult<()> {
        let (mut state, _) = self.enter(Op::AttachFloatingIp)?;
        let route = "PUT network /v2.0/floatingips/{id}";
        if state.server(server_id).is_none() {
            return Err(answer(404, route, "the server has no port"));
        }
        let Some(fip) = state.floating_ips.iter_mut().find(|f| f.id == ip.id) else {
            return Err(answer(404, route, "Floating IP could not be found"));
        };
        fip.server_id = Some(server_id.to_string());
        let address = fip.ip.clone();
        if let Some(stored) = state.server(server_id) {
            // Nova lists a floating address after the fixed ones: a public fixed one stays
            // the server's public address.
            stored.server.public_v4.get_or_insert(address);
        }
        Ok(())
    }

    fn delete_floating_ip(&self, id: &str) -> CloudResult<()> {
        let (mut state, _) = self.enter(Op::DeleteFloatingIp)?;
        let Some(at) = state.floating_ips.iter().position(|f| f.id == id) else {
            return Ok(());
        };
        let fip = state.floating_ips.remove(at);
        if let Some(stored) = fip.server_id.and_then(|s| state.server(&s)) {
            if stored.server.public_v4.as_ref() == Some(&fip.ip) {
                stored.server.public_v4 = None;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cloud with one of each thing a create names, and a request naming them.
    fn seeded() -> (MemoryCloud, CreateServer) {
        let cloud = MemoryCloud::new();
        cloud.add_keypair("nodepool", "ssh-ed25519 AAAA");
        cloud.add_network("public", true);
        let request = CreateServer {
            name: "small-p1-1".into(),
            image_id: cloud.add_image("ubuntu"),
            flavor_id: cloud.add_flavor("m1.small", 2048, 2),
            key_name: Some("nodepool".into()),
            availability_zone: Some("nova".into()),
            network_ids: vec![cloud.add_network("private", false)],
            metadata: [("nodepool_node_id".into(), "7".into())].into(),
            config_drive: false,
        };
        (cloud, request)
    }

    fn error(kind: ErrorKind) -> CloudError {
        CloudError::new(kind, "scripted")
    }

    fn ids(servers: Vec<Server>) -> Vec<String> {
        servers.into_iter().map(|s| s.id).collect()
    }

    #[test]
    fn new_servers_are_building_with_readable_ids_and_what_the_request_asked() {
        let (cloud, request) = seeded();
        assert_eq!(cloud.create_server(&request).unwrap(), "server-1");
        assert_eq!(cloud.create_server(&request).unwrap(), "server-2");
        let server = cloud.get_server("server-1").unwrap().unwrap();
        assert_eq!(server.status, ServerStatus::Build);
        assert_eq!(server.metadata.get("nodepool_node_id"), Some("7"));
        assert_eq!((server.public_v4, server.private_v4), (None, None));
        let sent = cloud.request("server-1").unwrap();
        assert_eq!(sent.availability_zone.as_deref(), Some("nova"));
        assert_eq!(sent.key_name.as_deref(), Some("nodepool"));
        assert_eq!(sent.network_ids, ["network-2"]);
    }

    #[test]
    fn active_servers_get_loopback_addresses_public_unless_private_only() {
        let (cloud, request) = seeded();
        let first = cloud.create_server(&request).unwrap();
        cloud.set_status(&first, ServerStatus::Active);
        cloud.set_private_only(true);
        cloud.create_server(&request).unwrap();
        cloud.activate_all();
        let servers = cloud.list_servers().unwrap();
        let addresses = |s: &Server| (s.status, s.public_v4.clone(), s.private_v4.clone());
        let active = ServerStatus::Active;
        let (public, private) = (Some("127.2.0.2".into()), Some("127.1.0.2".into()));
        assert_eq!(addresses(&servers[0]), (active, public, private));
        let private = Some("127.1.0.3".into());
        assert_eq!(addresses(&servers[1]), (active, None, private));
    }

    #[test]
    fn every_call_is_counted_by_operation_and_logged_in_order() {
        let (cloud, request) = seeded();
        cloud.list_flavors().unwrap();
        cloud.create_server(&request).unwrap();
        cloud.create_server(&request).unwrap();
        cloud.delete_server("server-1").unwrap();
        assert_eq!(cloud.calls(Op::CreateServer), 2);
        assert_eq!(cloud.calls(Op::ListServers), 0);
        use Op::*;
        assert_eq!(
            cloud.log(),
            [ListFlavors, CreateServer, CreateServer, DeleteServer]
        );
    }

    #[test]
    fn scripted_errors_are_answered_in_order_without_the_effect() {
        let (cloud, request) = seeded();
        let (quota, api) = (ErrorKind::QuotaExceeded, ErrorKind::Api { status: 500 });
        cloud.script(Op::CreateServer, Fault::Error(error(quota)));
        cloud.script(Op::CreateServer, Fault::Error(error(api)));
        let create = || cloud.create_server(&request).map_err(|e| e.kind);
        let answers: Vec<_> = (0..3).map(|_| create()).collect();
        assert_eq!(answers, [Err(quota), Err(api), Ok("server-1".into())]);
        cloud.script(Op::DeleteServer, Fault::Error(error(ErrorKind::Transport)));
        assert!(cloud.delete_server("server-1").is_err());
        assert_eq!(ids(cloud.servers()), ["server-1"]);
    }

    #[test]
    fn the_nth_call_fails_and_the_ones_before_it_pass() {
        let cloud = MemoryCloud::new();
        cloud.fail_nth(Op::ListServers, 3, error(ErrorKind::RateLimited));
        let answers: Vec<bool> = (0..4).map(|_| cloud.list_servers().is_ok()).collect();
        assert_eq!(answers, [true, true, false, true]);
    }

    #[test]
    fn a_create_that_times_out_still_makes_the_server() {
        let (cloud, request) = seeded();
        cloud.script(Op::CreateServer, Fault::TimeoutAfterCreate);
        let error = cloud.create_server(&request).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Transport);
        assert!(error.message.contains("no answer: timeout"), "{error}");
        let servers = cloud.list_servers().unwrap();
        assert_eq!(servers[0].metadata.get("nodepool_node_id"), Some("7"));
    }

    #[test]
    fn a_create_answered_without_an_id_fails_as_the_http_client_does_and_makes_the_server() {
        let (cloud, request) = seeded();
        cloud.script(Op::CreateServer, Fault::CreatedWithoutId);
        let error = cloud.create_server(&request).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Malformed);
        let message = "memory: POST compute /servers: malformed answer: no server id";
        assert_eq!(error.message, message);
        assert_eq!(ids(cloud.list_servers().unwrap()), ["server-1"]);
    }

    #[test]
    fn a_listing_can_omit_a_server_once() {
        let (cloud, request) = seeded();
        cloud.create_server(&request).unwrap();
        cloud.create_server(&request).unwrap();
        cloud.script(Op::ListServers, Fault::Omit("server-1".into()));
        assert_eq!(ids(cloud.list_servers().unwrap()), ["server-2"]);
        assert_eq!(ids(cloud.list_servers().unwrap()), ["server-1", "server-2"]);
    }

    #[test]
    fn a_floating_ip_is_allocated_with_its_description_then_attached() {
        let (cloud, request) = seeded();
        cloud.set_private_only(true);
        let id = cloud.create_server(&request).unwrap();
        cloud.activate_all();
        let fip = cloud
            .allocate_floating_ip("public", "nodepool x node 1")
            .unwrap();
        assert_eq!(fip.description.as_deref(), Some("nodepool x node 1"));
        assert_eq!(cloud.list_floating_ips().unwrap()[0].server_id, None);
        let failure = error(ErrorKind::Api { status: 500 });
        cloud.script(Op::AttachFloatingIp, Fault::Error(failure.clone()));
        assert_eq!(cloud.attach_floating_ip(&fip, &id), Err(failure));
        assert_eq!(cloud.get_server(&id).unwrap().unwrap().public_v4, None);
        cloud.attach_floating_ip(&fip, &id).unwrap();
        assert_eq!(
            cloud.get_server(&id).unwrap().unwrap().public_v4.as_deref(),
            Some(fip.ip.as_str())
        );
        assert_eq!(cloud.list_floating_ips().unwrap()[0].server_id, Some(id));
    }

    #[test]
    fn a_delete_can_be_accepted_and_not_done() {
        let (cloud, request) = seeded();
        let id = cloud.create_server(&request).unwrap();
        cloud.script(Op::DeleteServer, Fault::IgnoreDelete);
        assert_eq!(cloud.delete_server(&id), Ok(()));
        assert_eq!(ids(cloud.list_servers().unwrap()), [id.as_str()]);
        cloud.delete_server(&id).unwrap();
        assert!(cloud.list_servers().unwrap().is_empty());
    }

    #[test]
    #[should_panic(expected = "is a fault of CreateServer, not DeleteServer")]
    fn a_fault_scripted_on_another_operation_is_refused() {
        MemoryCloud::new().script(Op::DeleteServer, Fault::TimeoutAfterCreate);
    }

    #[test]
    fn what_is_missing_is_none_and_deleting_it_succeeds() {
        let cloud = MemoryCloud::new();
        assert_eq!(cloud.get_server("server-9"), Ok(None));
        assert_eq!(cloud.get_image("image-9"), Ok(None));
        assert_eq!(cloud.delete_server("server-9"), Ok(()));
        assert_eq!(cloud.delete_image("image-9"), Ok(()));
        assert_eq!(cloud.delete_keypair("nobody"), Ok(()));
        assert_eq!(cloud.delete_floating_ip("fip-9"), Ok(()));
    }

    #[test]
    fn creates_naming_what_the_cloud_lacks_are_refused_with_400_and_make_nothing() {
        let (cloud, request) = seeded();
        let none = BTreeMap::new();
        let snapshot = cloud.create_image("queued", "raw", &none).unwrap();
        let changes: [&dyn Fn(&mut CreateServer); 6] = [
            &|r| r.image_id = "image-9".into(),
            &|r| r.image_id = snapshot.clone(),
            &|r| r.flavor_id = "flavor-9".into(),
            &|r| r.key_name = Some("other".into()),
            &|r| r.network_ids.push("network-9".into()),
            &|r| r.availability_zone = Some("az9".into()),
        ];
        for change in changes {
            let mut bad = request.clone();
            change(&mut bad);
            let error = cloud.create_server(&bad).unwrap_err();
            assert_eq!(error.kind, ErrorKind::Api { status: 400 }, "{error}");
        }
        assert!(cloud.servers().is_empty());
    }

    #[test]
    fn a_snapshot_is_a_queued_image_with_the_metadata_as_properties() {
        let (cloud, request) = seeded();
        let server = cloud.create_server(&request).unwrap();
        let meta = [("nodepool_build_id".into(), "3".into())].into();
        let id = cloud.create_snapshot(&server, "snap", &meta).unwrap();
        let image = cloud.get_image(&id).unwrap().unwrap();
        assert_eq!((&*image.name, &*image.status), ("snap", "queued"));
        assert_eq!(image.properties, meta);
        let missing = cloud.create_snapshot("server-9", "x", &meta);
        assert!(missing.unwrap_err().is_not_found());
    }

    #[test]
    fn an_upload_records_the_size_and_glances_md5_checksum() {
        let cloud = MemoryCloud::new();
        let properties = [("nodepool_build_id".into(), "3".into())].into();
        let id = cloud.create_image("ubuntu", "qcow2", &properties).unwrap();
        cloud.upload_image(&id, &mut &b"hello"[..], 5).unwrap();
        let image = cloud.get_image(&id).unwrap().unwrap();
        assert_eq!((image.status.as_str(), image.size), ("active", Some(5)));
        assert_eq!(image.properties, properties);
        let md5_of_hello = "5d41402abc4b2a76b9719d911017c592";
        assert_eq!(cloud.checksum(&id).as_deref(), Some(md5_of_hello));
        assert_eq!(image.md5.as_deref(), Some(md5_of_hello));
        let again = cloud.upload_image(&id, &mut &b"hello"[..], 5).unwrap_err();
        assert_eq!(again.kind, ErrorKind::Api { status: 409 });
        let missing = cloud.upload_image("image-9", &mut &b"hello"[..], 5);
        assert!(missing.unwrap_err().is_not_found());
    }

    #[test]
    fn a_floating_ip_gives_its_server_a_public_address_until_it_or_the_server_goes() {
        let (cloud, request) = seeded();
        cloud.set_private_only(true);
        let id = cloud.create_server(&request).unwrap();
        cloud.activate_all();
        let fip = cloud.allocate_floating_ip("public", "d").unwrap();
        cloud.attach_floating_ip(&fip, &id).unwrap();
        let listed = cloud.list_floating_ips().unwrap();
        assert_eq!(listed[0].server_id.as_deref(), Some(id.as_str()));
        let public = || cloud.get_server(&id).unwrap().unwrap().public_v4;
        assert_eq!(public(), Some(fip.ip.clone()));
        cloud.delete_floating_ip(&fip.id).unwrap();
        assert_eq!((cloud.floating_ips(), public()), (vec![], None));
        let again = cloud.allocate_floating_ip("public", "d").unwrap();
        cloud.attach_floating_ip(&again, &id).unwrap();
        cloud.delete_server(&id).unwrap();
        let left = cloud.floating_ips();
        assert_eq!(left[0].server_id, None, "allocated, attached to nothing");
        let unknown_pool = cloud.allocate_floating_ip("nowhere", "d").unwrap_err();
        assert!(unknown_pool.is_not_found(), "{unknown_pool}");
    }

    #[test]
    fn keypairs_are_unique_by_name() {
        let cloud = MemoryCloud::new();
        cloud.create_keypair("nodepool", "key A").unwrap();
        let duplicate = cloud.create_keypair("nodepool", "key B");
        assert_eq!(duplicate.unwrap_err().kind, ErrorKind::Api { status: 409 });
        assert_eq!(cloud.list_keypairs().unwrap()[0].public_key, "key A");
        cloud.delete_keypair("nodepool").unwrap();
        assert!(cloud.keypairs().is_empty());
    }

    #[test]
    fn creates_from_several_threads_get_distinct_ids() {
        let (cloud, request) = seeded();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| (0..5).for_each(|_| drop(cloud.create_server(&request))));
            }
        });
        let mut made = ids(cloud.servers());
        made.sort();
        made.dedup();
        assert_eq!((made.len(), cloud.calls(Op::CreateServer)), (20, 20));
    }
}
