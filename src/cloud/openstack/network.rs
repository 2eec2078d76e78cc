//! Networks and floating IPs: Neutron when the catalog has it, else Nova's os-floating-ips.

use serde_json::{json, Value};

use super::http::Body;
use super::OpenStack;
use crate::cloud::{CloudResult, FloatingIp, Network};

pub(super) fn list_networks(os: &OpenStack) -> CloudResult<Vec<Network>> {
    let Some(neutron) = &os.endpoints.network else {
        return Ok(Vec::new());
    };
    let route = "GET network /v2.0/networks";
    let document = os.get_json(&format!("{neutron}/networks"), route)?;
    let networks = document
        .get("networks")
        .and_then(Value::as_array)
        .ok_or_else(|| os.malformed(route, "no `networks`"))?;
    Ok(networks
        .iter()
        .filter_map(|n| {
            Some(Network {
                id: n.get("id")?.as_str()?.to_string(),
                name: n
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                external: n
                    .get("router:external")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        })
        .collect())
}

pub(super) fn list_floating_ips(os: &OpenStack) -> CloudResult<Vec<FloatingIp>> {
    match &os.endpoints.network {
        Some(neutron) => {
            let route = "GET network /v2.0/floatingips";
            let document = os.get_json(&format!("{neutron}/floatingips"), route)?;
            let ips = document
                .get("floatingips")
                .and_then(Value::as_array)
                .ok_or_else(|| os.malformed(route, "no `floatingips`"))?;
            // Neutron names the port, not the server; the server is found through the
            // port's device, which the reconciler does not need for cleanup.
            Ok(ips
                .iter()
                .filter_map(|ip| parse_ip(ip, "floating_ip_address", "port_id"))
                .collect())
        }
        None => {
            let route = "GET compute /os-floating-ips";
            let document =
                os.get_json(&format!("{}/os-floating-ips", os.endpoints.compute), route)?;
            let ips = document
                .get("floating_ips")
                .and_then(Value::as_array)
                .ok_or_else(|| os.malformed(route, "no `floating_ips`"))?;
            Ok(ips
                .iter()
                .filter_map(|ip| parse_ip(ip, "ip", "instance_id"))
                .collect())
        }
    }
}

fn parse_ip(value: &Value, address: &str, attached: &str) -> Option<FloatingIp> {
    Some(FloatingIp {
        id: value
            .get("id")?
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| value["id"].to_string()),
        ip: value.get(address)?.as_str()?.to_string(),
        server_id: value
            .get(attached)
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Allocate from `pool` and attach through Nova's `addFloatingIp` action, which both Nova
/// networking and Neutron-backed clouds accept.
pub(super) fn attach_floating_ip(
    os: &OpenStack,
    server_id: &str,
    pool: &str,
) -> CloudResult<FloatingIp> {
    let ip = match &os.endpoints.network {
        Some(neutron) => {
            let route = "POST network /v2.0/floatingips";
            let networks = list_networks(os)?;
            let network = networks
                .iter()
                .find(|n| n.name == pool || n.id == pool)
                .ok_or_else(|| {
                    os.malformed(route, &format!("no network named {pool} for floating IPs"))
                })?;
            let body = json!({"floatingip": {"floating_network_id": network.id}});
            let reply = os
                .call(
                    "POST",
                    &format!("{neutron}/floatingips"),
                    route,
                    Body::Json(&body),
                )?
                .json()?;
            reply
                .get("floatingip")
                .and_then(|ip| parse_ip(ip, "floating_ip_address", "port_id"))
                .ok_or_else(|| os.malformed(route, "no floatingip"))?
        }
        None => {
            let route = "POST compute /os-floating-ips";
            let body = json!({"pool": pool});
            let reply = os
                .call(
                    "POST",
                    &format!("{}/os-floating-ips", os.endpoints.compute),
                    route,
                    Body::Json(&body),
                )?
                .json()?;
            reply
                .get("floating_ip")
                .and_then(|ip| parse_ip(ip, "ip", "instance_id"))
                .ok_or_else(|| os.malformed(route, "no floating_ip"))?
        }
    };
    let body = json!({"addFloatingIp": {"address": ip.ip}});
    let url = format!("{}/servers/{server_id}/action", os.endpoints.compute);
    os.call(
        "POST",
        &url,
        "POST compute /servers/{id}/action addFloatingIp",
        Body::Json(&body),
    )?;
    Ok(FloatingIp {
        server_id: Some(server_id.to_string()),
        ..ip
    })
}

pub(super) fn delete_floating_ip(os: &OpenStack, id: &str) -> CloudResult<()> {
    match &os.endpoints.network {
        Some(neutron) => os.delete(
            &format!("{neutron}/floatingips/{id}"),
            "DELETE network /v2.0/floatingips/{id}",
        ),
        None => os.delete(
            &format!("{}/os-floating-ips/{id}", os.endpoints.compute),
            "DELETE compute /os-floating-ips/{id}",
        ),
    }
}
