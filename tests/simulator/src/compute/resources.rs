//! Nova's account-level resources: flavors, keypairs, absolute limits, availability zones.

use serde_json::{json, Value};

use super::{link, ZONE};
use crate::http::{Handled, Reply, Req};
use crate::state::{stable_id, Keypair};
use crate::{Core, Knobs};

/// From this microversion on, keypair create answers 201 and delete 204 (200 and 202 before).
const KEYPAIR_CREATED: (u32, u32) = (2, 2);

/// Flavor ids are "1", "2", … in the order of the `flavors` knob.
pub(super) fn flavor_index(knobs: &Knobs, id: &str) -> Option<usize> {
    let index = id.parse::<usize>().ok()?.checked_sub(1)?;
    (index < knobs.flavors.len()).then_some(index)
}

pub(super) fn list_flavors(core: &Core, req: &mut Req) -> Handled {
    let knobs = core.knobs();
    let flavors: Vec<Value> = knobs
        .flavors
        .iter()
        .enumerate()
        .map(|(i, (name, ram, vcpus))| {
            let id = (i + 1).to_string();
            json!({
                "id": id,
                "name": name,
                "ram": ram,
                "vcpus": vcpus,
                "disk": 10 * vcpus,
                "swap": "",
                "rxtx_factor": 1.0,
                "OS-FLV-EXT-DATA:ephemeral": 0,
                "OS-FLV-DISABLED:disabled": false,
                "os-flavor-access:is_public": true,
                "links": link(req.url, "flavors", &id),
            })
        })
        .collect();
    Ok(Reply::json(200, json!({ "flavors": flavors })))
}

/// A fingerprint-shaped digest of a public key (not MD5; nothing checks it).
fn fingerprint(public_key: &str) -> String {
    let hex = stable_id("key", public_key);
    let pairs: Vec<&str> = (0..16).map(|i| &hex[2 * i..2 * i + 2]).collect();
    pairs.join(":")
}

fn keypair_json(keypair: &Keypair) -> Value {
    json!({
        "name": keypair.name,
        "public_key": keypair.public_key,
        "fingerprint": fingerprint(&keypair.public_key),
        "type": "ssh",
    })
}

pub(super) fn list_keypairs(core: &Core, _: &mut Req) -> Handled {
    let state = core.state();
    let keypairs: Vec<Value> = state
        .keypairs
        .iter()
        .map(|k| json!({ "keypair": keypair_json(k) }))
        .collect();
    Ok(Reply::json(200, json!({ "keypairs": keypairs })))
}

pub(super) fn create_keypair(core: &Core, req: &mut Req) -> Handled {
    let body = req.json().and_then(|body| req.member(body, "keypair"))?;
    let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
    let name_ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _-.@".contains(c));
    if !name_ok {
        return Err(req.fail(400, "Keypair data is invalid: invalid keypair name"));
    }
    let username = core.knobs().username;
    let mut state = core.state();
    if state.keypairs.iter().any(|k| k.name == name) {
        return Err(req.fail(409, &format!("Key pair '{name}' already exists.")));
    }
    let given = body.get("public_key").and_then(Value::as_str);
    // Nova generates a pair when no public key is given and returns the private half once.
    let (public_key, private_key) = match given {
        Some(key) => (key.to_owned(), None),
        None => {
            let secret = format!("{:032x}", state.rng.u128(..));
            let public = format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5{secret} Generated-by-Nova");
            let private = format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n-----END OPENSSH PRIVATE KEY-----\n"
            );
            (public, Some(private))
        }
    };
    let keypair = Keypair {
        name: name.to_owned(),
        public_key,
    };
    let mut answer = keypair_json(&keypair);
    answer["user_id"] = json!(stable_id("user", &username));
    if let Some(private_key) = private_key {
        answer["private_key"] = json!(private_key);
    }
    state.keypairs.push(keypair);
    let status = if req.microversion >= KEYPAIR_CREATED {
        201
    } else {
        200
    };
    Ok(Reply::json(status, json!({ "keypair": answer })))
}

pub(super) fn delete_keypair(core: &Core, req: &mut Req) -> Handled {
    let mut state = core.state();
    let name = &req.params[0];
    let before = state.keypairs.len();
    state.keypairs.retain(|k| &k.name != name);
    if state.keypairs.len() == before {
        return Err(req.fail(404, &format!("Keypair {name} not found for user")));
    }
    let status = if req.microversion >= KEYPAIR_CREATED {
        204
    } else {
        202
    };
    Ok(Reply::empty(status))
}

/// Absolute limits; -1 is Nova's "unlimited".
pub(super) fn limits(core: &Core, _: &mut Req) -> Handled {
    let knobs = core.knobs();
    let state = core.state();
    let (mut cores, mut ram) = (0u64, 0u64);
    for server in &state.servers {
        if let Some(i) = flavor_index(&knobs, &server.flavor_id) {
            let (_, flavor_ram, flavor_vcpus) = &knobs.flavors[i];
            cores += u64::from(*flavor_vcpus);
            ram += flavor_ram;
        }
    }
    let max_instances = knobs.instance_quota.map_or(-1, i64::from);
    let absolute = json!({
        "maxTotalInstances": max_instances,
        "totalInstancesUsed": state.servers.len(),
        "maxTotalCores": -1,
        "totalCoresUsed": cores,
        "maxTotalRAMSize": -1,
        "totalRAMUsed": ram,
        "maxTotalKeypairs": 100,
        "maxServerMeta": 128,
        "maxImageMeta": 128,
        "maxPersonality": 5,
        "maxPersonalitySize": 10240,
        "maxServerGroups": 10,
        "maxServerGroupMembers": 10,
        "totalServerGroupsUsed": 0,
        "maxSecurityGroups": 10,
        "maxSecurityGroupRules": 20,
        "totalSecurityGroupsUsed": 1,
        "maxTotalFloatingIps": -1,
        "totalFloatingIpsUsed": state.floating_ips.len(),
    });
    Ok(Reply::json(
        200,
        json!({ "limits": { "rate": [], "absolute": absolute } }),
    ))
}

pub(super) fn availability_zones(_: &Core, _: &mut Req) -> Handled {
    let zones = json!([{ "zoneName": ZONE, "zoneState": { "available": true }, "hosts": null }]);
    Ok(Reply::json(200, json!({ "availabilityZoneInfo": zones })))
}
