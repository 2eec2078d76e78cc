//! One pool of floating IPs seen two ways: Nova's os-floating-ips (`ip`, `pool`,
//! `instance_id`) and Neutron's floatingips (`floating_ip_address`, `port_id`). The
//! addresses are loopback ones, so a test that connects to one stays on this machine.

use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

use super::http::{Handled, Reply, Req};
use super::network::{port_id, public_network_id, PUBLIC_NAME};
use super::state::{stable_id, timestamp, FloatingIp, State};
use super::{Core, Knobs};

fn allocate(state: &mut State, description: String) -> usize {
    let id = state.uuid();
    let ip = state.next_floating_address();
    state.floating_ips.push(FloatingIp {
        id,
        ip,
        instance_id: None,
        description,
        created: SystemTime::now(),
    });
    state.floating_ips.len() - 1
}

fn position(state: &State, req: &Req) -> Result<usize, Reply> {
    let id = &req.params[0];
    let found = state.floating_ips.iter().position(|f| &f.id == id);
    found.ok_or_else(|| req.fail(404, &format!("Floating IP {id} could not be found.")))
}

fn nova_json(fip: &FloatingIp, knobs: &Knobs) -> Value {
    let fixed = fip.instance_id.as_ref().map(|_| &knobs.server_ip);
    json!({
        "id": fip.id,
        "ip": fip.ip,
        "pool": PUBLIC_NAME,
        "fixed_ip": fixed,
        "instance_id": fip.instance_id,
    })
}

/// Nova's floating-IP proxy to Neutron answers 404 from microversion 2.36 on, as the API
/// reference says: clients must use Neutron.
const NOVA_PROXY_GONE: (u32, u32) = (2, 36);

fn nova_proxy(req: &Req) -> Result<(), Reply> {
    if req.microversion >= NOVA_PROXY_GONE {
        let (major, minor) = req.microversion;
        let message = format!(
            "os-floating-ips is gone at microversion {major}.{minor} (from 2.36): use Neutron"
        );
        return Err(req.fail(404, &message));
    }
    Ok(())
}

pub(crate) fn nova_list(core: &Core, req: &mut Req) -> Handled {
    nova_proxy(req)?;
    let knobs = core.knobs();
    let state = core.state();
    let fips: Vec<Value> = state
        .floating_ips
        .iter()
        .map(|f| nova_json(f, &knobs))
        .collect();
    Ok(Reply::json(200, json!({ "floating_ips": fips })))
}

pub(crate) fn nova_create(core: &Core, req: &mut Req) -> Handled {
    nova_proxy(req)?;
    let body = req.json()?;
    match body.get("pool") {
        None | Some(Value::Null) => {}
        Some(pool) if pool == PUBLIC_NAME => {}
        Some(pool) => {
            return Err(req.fail(404, &format!("Floating IP pool not found: {pool}")));
        }
    }
    let knobs = core.knobs();
    let mut state = core.state();
    let index = allocate(&mut state, String::new());
    let fip = nova_json(&state.floating_ips[index], &knobs);
    Ok(Reply::json(200, json!({ "floating_ip": fip })))
}

pub(crate) fn nova_delete(core: &Core, req: &mut Req) -> Handled {
    nova_proxy(req)?;
    let mut state = core.state();
    let index = position(&state, req)?;
    state.floating_ips.remove(index);
    Ok(Reply::empty(202))
}

fn neutron_json(fip: &FloatingIp, knobs: &Knobs) -> Value {
    let project = stable_id("project", &knobs.project);
    let port = fip.instance_id.as_deref().map(port_id);
    let fixed = fip.instance_id.as_ref().map(|_| &knobs.server_ip);
    json!({
        "id": fip.id,
        "floating_ip_address": fip.ip,
        "floating_network_id": public_network_id(),
        "router_id": port.as_ref().map(|_| stable_id("router", "router1")),
        "port_id": port,
        "fixed_ip_address": fixed,
        "status": if port.is_some() { "ACTIVE" } else { "DOWN" },
        "description": fip.description,
        "tags": [],
        "tenant_id": project,
        "project_id": project,
        "created_at": timestamp(fip.created),
        "updated_at": timestamp(fip.created),
        "revision_number": 0,
    })
}

pub(crate) fn neutron_list(core: &Core, req: &mut Req) -> Handled {
    let knobs = core.knobs();
    let state = core.state();
    let fips: Vec<Value> = state
        .floating_ips
        .iter()
        .map(|f| neutron_json(f, &knobs))
        .filter(|f| {
            ["floating_ip_address", "port_id", "description"]
                .iter()
                .all(|key| req.query(key).is_none_or(|wanted| f[key] == wanted))
        })
        .collect();
    Ok(Reply::json(200, json!({ "floatingips": fips })))
}

/// The server behind a `port_id` given by a client; `null` detaches.
fn server_of_port(state: &State, req: &Req, port: &Value) -> Result<Option<String>, Reply> {
    let Some(port) = port.as_str() else {
        return Ok(None);
    };
    let now = Instant::now();
    let server = state
        .servers
        .iter()
        .find(|s| port_id(&s.id) == port && s.status(now) != "DELETED");
    match server {
        Some(server) => Ok(Some(server.id.clone())),
        None => Err(req.fail(404, &format!("Port {port} could not be found."))),
    }
}

pub(crate) fn neutron_create(core: &Core, req: &mut Req) -> Handled {
    let body = req.json().and_then(|body| req.member(body, "floatingip"))?;
    let network = body.get("floating_network_id").and_then(Value::as_str);
    if network != Some(public_network_id()) {
        let message = "floating_network_id must name the external network";
        return Err(req.fail(400, message));
    }
    let knobs = core.knobs();
    let mut state = core.state();
    let instance = server_of_port(&state, req, body.get("port_id").unwrap_or(&Value::Null))?;
    let description = match body.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) if text.chars().count() <= 255 => text.clone(),
        Some(_) => {
            return Err(req.fail(
                400,
                "description must be a string of 255 characters at most",
            ))
        }
    };
    let index = allocate(&mut state, description);
    state.floating_ips[index].instance_id = instance;
    let fip = neutron_json(&state.floating_ips[index], &knobs);
    Ok(Reply::json(201, json!({ "floatingip": fip })))
}

/// Attach to a port (`{"floatingip": {"port_id": ...}}`) or detach (`port_id: null`).
pub(crate) fn neutron_update(core: &Core, req: &mut Req) -> Handled {
    let body = req.json().and_then(|body| req.member(body, "floatingip"))?;
    let knobs = core.knobs();
    let mut state = core.state();
    let index = position(&state, req)?;
    if let Some(port) = body.get("port_id") {
        state.floating_ips[index].instance_id = server_of_port(&state, req, port)?;
    }
    let fip = neutron_json(&state.floating_ips[index], &knobs);
    Ok(Reply::json(200, json!({ "floatingip": fip })))
}

pub(crate) fn neutron_delete(core: &Core, req: &mut Req) -> Handled {
    let mut state = core.state();
    let index = position(&state, req)?;
    state.floating_ips.remove(index);
    Ok(Reply::empty(204))
}
