//! Nova v2.1: the route table and servers (list, get, create, delete). Server actions are in
//! `action`, flavors, keypairs, limits and availability zones in `resources`, and
//! os-floating-ips with Neutron's view of the same pool in `../floating`.

mod action;
mod resources;

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

use super::floating;
use super::http::{Handled, Reply, Req, Route};
use super::network::{self, PRIVATE_NAME};
use super::state::{page_start, stable_id, timestamp, Fate, ImageStatus, Server, State};
use super::{Core, Knobs};

pub(crate) const ROUTES: &[Route] = &[
    Route::new("GET", "/servers/detail", list_servers_detail),
    Route::new("GET", "/servers", list_servers),
    Route::new("POST", "/servers", create_server),
    Route::new("GET", "/servers/{id}", get_server),
    Route::new("DELETE", "/servers/{id}", delete_server),
    Route::new("POST", "/servers/{id}/action", action::server_action),
    Route::new("GET", "/flavors/detail", resources::list_flavors),
    Route::new("GET", "/os-keypairs", resources::list_keypairs),
    Route::new("POST", "/os-keypairs", resources::create_keypair),
    Route::new("DELETE", "/os-keypairs/{name}", resources::delete_keypair),
    Route::new("GET", "/limits", resources::limits),
    Route::new(
        "GET",
        "/os-availability-zone",
        resources::availability_zones,
    ),
    Route::new("GET", "/os-floating-ips", floating::nova_list),
    Route::new("POST", "/os-floating-ips", floating::nova_create),
    Route::new("DELETE", "/os-floating-ips/{id}", floating::nova_delete),
];

/// The only availability zone.
pub(crate) const ZONE: &str = "nova";

pub(crate) fn link(url: &str, kind: &str, id: &str) -> Value {
    json!([
        { "rel": "self", "href": format!("{url}/compute/v2.1/{kind}/{id}") },
        { "rel": "bookmark", "href": format!("{url}/compute/{kind}/{id}") },
    ])
}

fn server_json(server: &Server, state: &State, knobs: &Knobs, url: &str, now: Instant) -> Value {
    let status = server.status(now);
    let mut addresses = vec![json!({
        "addr": knobs.server_ip,
        "version": 4,
        "OS-EXT-IPS:type": "fixed",
        "OS-EXT-IPS-MAC:mac_addr": mac_address(&server.id),
    })];
    for fip in state.floating_ips.iter() {
        if fip.instance_id.as_deref() == Some(&server.id) {
            addresses.push(json!({
                "addr": fip.ip,
                "version": 4,
                "OS-EXT-IPS:type": "floating",
                "OS-EXT-IPS-MAC:mac_addr": mac_address(&server.id),
            }));
        }
    }
    let (vm_state, task_state, power_state) = match status {
        "BUILD" => ("building", json!("spawning"), 0),
        "ACTIVE" => ("active", Value::Null, 1),
        "DELETED" => ("active", json!("deleting"), 1),
        _ => ("error", Value::Null, 0),
    };
    let mut body = json!({
        "id": server.id,
        "name": server.name,
        "status": status,
        "tenant_id": stable_id("project", &knobs.project),
        "user_id": stable_id("user", &knobs.username),
        "metadata": server.metadata,
        "hostId": if status == "BUILD" { "" } else { "5f1e2b1c0d7a3e4f" },
        "image": { "id": server.image_id, "links": link(url, "images", &server.image_id) },
        "flavor": { "id": server.flavor_id, "links": link(url, "flavors", &server.flavor_id) },
        "created": timestamp(server.created),
        "updated": timestamp(SystemTime::now()),
        "addresses": { server.network.clone(): addresses },
        "accessIPv4": "",
        "accessIPv6": "",
        "links": link(url, "servers", &server.id),
        "key_name": server.key_name,
        "config_drive": "",
        "progress": 0,
        "security_groups": [{ "name": "default" }],
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": server.availability_zone,
        "OS-EXT-STS:vm_state": vm_state,
        "OS-EXT-STS:task_state": task_state,
        "OS-EXT-STS:power_state": power_state,
    });
    if status == "ERROR" {
        let message = if server.delete_failed {
            "Failed to delete the instance (injected by the simulator)."
        } else {
            "No valid host was found. (injected by the simulator)"
        };
        body["fault"] =
            json!({ "code": 500, "message": message, "created": timestamp(server.created) });
    }
    body
}

/// A stable locally administered MAC per server, in OpenStack's fa:16:3e prefix.
pub(crate) fn mac_address(server_id: &str) -> String {
    let id = stable_id("mac", server_id);
    format!("fa:16:3e:{}:{}:{}", &id[0..2], &id[2..4], &id[4..6])
}

/// One page of servers after `marker`, with a `servers_links` next link when more remain.
fn server_page(core: &Core, req: &Req, detail: bool) -> Handled {
    let knobs = core.knobs();
    let limit = req.limit(knobs.page_size)?;
    let state = core.state();
    let marker = req.query("marker");
    let Some(start) = page_start(state.servers.iter().map(|s| s.id.as_str()), marker) else {
        let marker = marker.unwrap_or_default();
        return Err(req.fail(400, &format!("marker [{marker}] not found")));
    };
    let now = Instant::now();
    let page: Vec<&Server> = state.servers.iter().skip(start).take(limit).collect();
    let servers: Vec<Value> = page
        .iter()
        .map(|s| match detail {
            true => server_json(s, &state, &knobs, req.url, now),
            false => {
                json!({ "id": s.id, "name": s.name, "links": link(req.url, "servers", &s.id) })
            }
        })
        .collect();
    let mut body = json!({ "servers": servers });
    if let Some(last) = page
        .last()
        .filter(|_| start + page.len() < state.servers.len())
    {
        let path = if detail { "servers/detail" } else { "servers" };
        let href = format!(
            "{}/compute/v2.1/{path}?limit={limit}&marker={}",
            req.url, last.id
        );
        body["servers_links"] = json!([{ "rel": "next", "href": href }]);
    }
    Ok(Reply::json(200, body))
}

fn list_servers_detail(core: &Core, req: &mut Req) -> Handled {
    server_page(core, req, true)
}

fn list_servers(core: &Core, req: &mut Req) -> Handled {
    server_page(core, req, false)
}

fn not_found(req: &Req, id: &str) -> Reply {
    req.fail(404, &format!("Instance {id} could not be found."))
}

fn get_server(core: &Core, req: &mut Req) -> Handled {
    let knobs = core.knobs();
    let state = core.state();
    let id = &req.params[0];
    let server = state.server(id).ok_or_else(|| not_found(req, id))?;
    let body = server_json(server, &state, &knobs, req.url, Instant::now());
    Ok(Reply::json(200, json!({ "server": body })))
}

/// The id at the end of a reference that may also be a full URL (`imageRef`, `flavorRef`).
fn reference_id(reference: Option<&Value>) -> Option<String> {
    let text = reference?.as_str()?;
    Some(text.rsplit('/').next().unwrap_or(text).to_owned())
}

/// The server's network name, from `networks` (a list of `{uuid}`, or "auto"/"none").
fn network_of(req: &Req, networks: Option<&Value>) -> Result<String, Reply> {
    let first = networks.and_then(Value::as_array).and_then(|n| n.first());
    let Some(uuid) = first.map(|n| n.get("uuid").and_then(Value::as_str)) else {
        return Ok(PRIVATE_NAME.into());
    };
    let uuid = uuid.ok_or_else(|| req.fail(400, "each network needs a uuid"))?;
    match network::NETWORKS.iter().find(|n| n.id == uuid) {
        Some(net) => Ok(net.name.into()),
        None => Err(req.fail(400, &format!("Network {uuid} could not be found."))),
    }
}

fn metadata_of(req: &Req, metadata: Option<Value>) -> Result<BTreeMap<String, String>, Reply> {
    let object = match metadata {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(object)) => object,
        Some(_) => return Err(req.fail(400, "metadata must be an object")),
    };
    object
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(value) => Ok((key, value)),
            _ => Err(req.fail(400, &format!("metadata value of {key:?} must be a string"))),
        })
        .collect()
}

fn create_server(core: &Core, req: &mut Req) -> Handled {
    let mut body = req.json().and_then(|body| req.member(body, "server"))?;
    let knobs = core.knobs();
    let name = match body.get("name").and_then(Value::as_str) {
        Some(name) if !name.trim().is_empty() => name.to_owned(),
        _ => return Err(req.fail(400, "Invalid input for field/attribute name.")),
    };
    let image_id =
        reference_id(body.get("imageRef")).ok_or_else(|| req.fail(400, "imageRef is required"))?;
    let flavor_id = reference_id(body.get("flavorRef"))
        .ok_or_else(|| req.fail(400, "flavorRef is required"))?;
    let flavor_known = resources::flavor_index(&knobs, &flavor_id).is_some();
    if !flavor_known {
        return Err(req.fail(400, &format!("Flavor {flavor_id} could not be found.")));
    }
    let key_name = body
        .get("key_name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let zone = match body.get("availability_zone").and_then(Value::as_str) {
        None | Some("") => ZONE.to_owned(),
        Some(ZONE) => ZONE.to_owned(),
        Some(other) => {
            let message = format!("The requested availability zone is not available: {other}");
            return Err(req.fail(400, &message));
        }
    };
    let network = network_of(req, body.get("networks"))?;
    let metadata = metadata_of(req, body.remove("metadata"))?;

    let mut state = core.state();
    match state.images.iter().find(|i| i.id == image_id) {
        None => return Err(req.fail(400, &format!("Image {image_id} could not be found."))),
        Some(image) if image.status != ImageStatus::Active => {
            return Err(req.fail(400, &format!("Image {image_id} is not active.")))
        }
        Some(_) => {}
    }
    if let Some(key) = &key_name {
        let Some(keypair) = state.keypairs.iter().find(|k| &k.name == key) else {
            return Err(req.fail(400, "Invalid key_name provided."));
        };
        if let Some(file) = &knobs.authorized_keys {
            inject_key(file, &keypair.public_key);
        }
    }
    if let Some(quota) = knobs.instance_quota {
        let used = state.servers.len();
        if used >= quota as usize {
            let message = format!(
                "Quota exceeded for instances: Requested 1, but already used {used} of {quota} instances"
            );
            return Err(req.fail(403, &message));
        }
    }
    let draw = state.rng.f64();
    let fate = if draw < knobs.error_ratio || knobs.broken_images.contains(&image_id) {
        Fate::Error
    } else if draw < knobs.error_ratio + knobs.stuck_ratio {
        Fate::Stuck
    } else {
        Fate::Active
    };
    let id = state.uuid();
    let admin_pass = format!("{:012x}", state.rng.u64(..) >> 16);
    state.servers.push(Server {
        id: id.clone(),
        name,
        image_id,
        flavor_id,
        key_name,
        availability_zone: zone,
        network,
        metadata,
        created: SystemTime::now(),
        ready_at: Instant::now() + knobs.boot_delay,
        fate,
        gone_at: None,
        delete_failed: false,
    });
    let reply = json!({
        "server": {
            "id": id,
            "links": link(req.url, "servers", &id),
            "adminPass": admin_pass,
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": [{ "name": "default" }],
        }
    });
    Ok(Reply::json(202, reply))
}

fn delete_server(core: &Core, req: &mut Req) -> Handled {
    let knobs = core.knobs();
    let mut state = core.state();
    let id = req.params[0].clone();
    let server = state.server_mut(&id).ok_or_else(|| not_found(req, &id))?;
    if knobs.delete_fails {
        server.delete_failed = true;
    } else if !knobs.delete_delay.is_zero() {
        server.delete_failed = false;
        server
            .gone_at
            .get_or_insert(Instant::now() + knobs.delete_delay);
    } else {
        state.remove_server(&id);
    }
    Ok(Reply::empty(204))
}

/// What cloud-init does with the server's keypair: its public key joins `authorized_keys`.
fn inject_key(file: &std::path::Path, public_key: &str) {
    use std::io::Write;
    let appended = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .and_then(|mut f| writeln!(f, "{}", public_key.trim()));
    if let Err(error) = appended {
        eprintln!("simulator: adding a key to {}: {error}", file.display());
    }
}
