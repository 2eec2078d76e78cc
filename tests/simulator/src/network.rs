//! Neutron v2.0: two fixed networks ("private" for servers, "public" external, the floating
//! pool), one port per server, and the floatingips routes (in `floating`).

use serde_json::{json, Value};

use super::floating;
use super::http::{Handled, Reply, Req, Route};
use super::state::{stable_id, timestamp, Server};
use super::{Core, Knobs};

pub(crate) const ROUTES: &[Route] = &[
    Route::new("GET", "/networks", list_networks),
    Route::new("GET", "/ports", list_ports),
    Route::new("GET", "/floatingips", floating::neutron_list),
    Route::new("POST", "/floatingips", floating::neutron_create),
    Route::new("PUT", "/floatingips/{id}", floating::neutron_update),
    Route::new("DELETE", "/floatingips/{id}", floating::neutron_delete),
];

pub(crate) struct Network {
    pub id: &'static str,
    pub name: &'static str,
    pub external: bool,
    subnet: &'static str,
}

pub(crate) const PRIVATE_NAME: &str = "private";
pub(crate) const PUBLIC_NAME: &str = "public";

pub(crate) const NETWORKS: [Network; 2] = [
    Network {
        id: "6a1f1c9e-2d54-4b0a-9d3c-7e5f0b8a1c01",
        name: PRIVATE_NAME,
        external: false,
        subnet: "0c1e5d9a-8f3b-4c27-a6d4-2b9e7f1a3c02",
    },
    Network {
        id: "b7e2d4f1-5a63-4c8e-8f1b-3d9c6a2e5f03",
        name: PUBLIC_NAME,
        external: true,
        subnet: "e3a9c7b5-1d2f-4e68-b0a4-5c7d9e1f2a04",
    },
];

pub(crate) fn public_network_id() -> &'static str {
    NETWORKS[1].id
}

/// Whether a query filter (`?name=private`) admits this value; absent filters admit all.
fn admits(req: &Req, key: &str, value: &str) -> bool {
    req.query(key).is_none_or(|wanted| wanted == value)
}

fn list_networks(core: &Core, req: &mut Req) -> Handled {
    let project = stable_id("project", &core.knobs().project);
    let networks: Vec<Value> = NETWORKS
        .iter()
        .filter(|n| admits(req, "id", n.id) && admits(req, "name", n.name))
        .filter(|n| admits(req, "router:external", &n.external.to_string()))
        .map(|n| {
            json!({
                "id": n.id,
                "name": n.name,
                "status": "ACTIVE",
                "admin_state_up": true,
                "shared": n.external,
                "router:external": n.external,
                "subnets": [n.subnet],
                "mtu": 1450,
                "description": "",
                "tenant_id": project,
                "project_id": project,
            })
        })
        .collect();
    Ok(Reply::json(200, json!({ "networks": networks })))
}

/// The id of the one port each server has on its network.
pub(crate) fn port_id(server_id: &str) -> String {
    let hex = stable_id("port", server_id);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn port_json(server: &Server, knobs: &Knobs) -> Value {
    let network = NETWORKS.iter().find(|n| n.name == server.network);
    let network = network.unwrap_or(&NETWORKS[0]);
    let project = stable_id("project", &knobs.project);
    json!({
        "id": port_id(&server.id),
        "name": "",
        "network_id": network.id,
        "device_id": server.id,
        "device_owner": format!("compute:{}", server.availability_zone),
        "mac_address": super::compute::mac_address(&server.id),
        "fixed_ips": [{ "subnet_id": network.subnet, "ip_address": knobs.server_ip }],
        "status": "ACTIVE",
        "admin_state_up": true,
        "tenant_id": project,
        "project_id": project,
        "created_at": timestamp(server.created),
    })
}

fn list_ports(core: &Core, req: &mut Req) -> Handled {
    let knobs = core.knobs();
    let state = core.state();
    let ports: Vec<Value> = state
        .servers
        .iter()
        .filter(|s| admits(req, "device_id", &s.id) && admits(req, "id", &port_id(&s.id)))
        .map(|s| port_json(s, &knobs))
        .collect();
    Ok(Reply::json(200, json!({ "ports": ports })))
}
