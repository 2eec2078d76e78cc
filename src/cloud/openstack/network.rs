//! Networks and floating IPs: Neutron when the catalog has it, else Nova's os-floating-ips.

use serde_json::{json, Value};

use super::http::Body;
use super::OpenStack;
use crate::cloud::{CloudError, CloudResult, ErrorKind, FloatingIp, Network};

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
        description: value
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Allocate from `pool`: a Neutron floating IP on the external network of that name (or id),
/// with `description`; or, on a cloud without Neutron, one from Nova's pool.
pub(super) fn allocate_floating_ip(
    os: &OpenStack,
    pool: &str,
    description: &str,
) -> CloudResult<FloatingIp> {
    match &os.endpoints.network {
        Some(neutron) => {
            let route = "POST network /v2.0/floatingips";
            let networks = list_networks(os)?;
            let network = networks
                .iter()
                .find(|n| n.name == pool || n.id == pool)
                .ok_or_else(|| {
                    let have: Vec<&str> = networks.iter().map(|n| n.name.as_str()).collect();
                    CloudError::new(
                        ErrorKind::NotFound,
                        format!(
                            "{}: no network named `{pool}` to allocate floating IPs from; the \
                             cloud has: {}",
                            os.http.provider(),
                            have.join(", ")
                        ),
                    )
                })?;
            let body = json!({"floatingip": {
                "floating_network_id": network.id,
                "description": description,
            }});
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
                .ok_or_else(|| os.malformed(route, "no floatingip"))
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
                .ok_or_else(|| os.malformed(route, "no floating_ip"))
        }
    }
}

/// Attach `ip` to the server: through Neutron, to the server's port (`ports?device_id=`),
/// as current clouds require (Nova's `addFloatingIp` is gone from microversion 2.44); only a
/// cloud without a network service gets Nova's action.
pub(super) fn attach_floating_ip(
    os: &OpenStack,
    ip: &FloatingIp,
    server_id: &str,
) -> CloudResult<()> {
    let Some(neutron) = &os.endpoints.network else {
        let body = json!({"addFloatingIp": {"address": ip.ip}});
        let url = format!("{}/servers/{server_id}/action", os.endpoints.compute);
        let route = "POST compute /servers/{id}/action addFloatingIp";
        return os.call("POST", &url, route, Body::Json(&body)).map(|_| ());
    };
    let route = "GET network /v2.0/ports";
    let document = os.get_json(&format!("{neutron}/ports?device_id={server_id}"), route)?;
    let port = document
        .get("ports")
        .and_then(Value::as_array)
        .ok_or_else(|| os.malformed(route, "no `ports`"))?
        .iter()
        .find_map(|port| port.get("id").and_then(Value::as_str))
        .ok_or_else(|| {
            CloudError::new(
                ErrorKind::NotFound,
                format!(
                    "{}: {route}: server {server_id} has no port to attach a floating IP to",
                    os.http.provider()
                ),
            )
        })?
        .to_string();
    let body = json!({"floatingip": {"port_id": port}});
    os.call(
        "PUT",
        &format!("{neutron}/floatingips/{}", ip.id),
        "PUT network /v2.0/floatingips/{id}",
        Body::Json(&body),
    )
    .map(|_| ())
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
