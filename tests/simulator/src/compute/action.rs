//! Nova server actions: `createImage` (a snapshot that appears in Glance as queued, then
//! active after the boot delay) and `addFloatingIp` / `removeFloatingIp`.

use std::time::{Instant, SystemTime};

use serde_json::{json, Map, Value};

use super::not_found;
use crate::http::{Handled, Reply, Req};
use crate::state::{Image, ImageStatus};
use crate::Core;

/// From this microversion on, createImage answers `{"image_id"}` instead of a Location header.
const IMAGE_ID_IN_BODY: (u32, u32) = (2, 45);

pub(super) fn server_action(core: &Core, req: &mut Req) -> Handled {
    let body = req.json()?;
    let id = req.params[0].clone();
    if core.state().server(&id).is_none() {
        return Err(not_found(req, &id));
    }
    let Some((action, _)) = body.iter().next() else {
        return Err(req.fail(400, "the request body names no action"));
    };
    let action = action.clone();
    let args = req.member(body, &action)?;
    match action.as_str() {
        "createImage" => create_image(core, req, &id, args),
        "addFloatingIp" => add_floating_ip(core, req, &id, args),
        "removeFloatingIp" => remove_floating_ip(core, req, &id, args),
        _ => Err(req.fail(400, &format!("There is no such action: {action}"))),
    }
}

fn create_image(core: &Core, req: &Req, server_id: &str, args: Map<String, Value>) -> Handled {
    let name = match args.get("name").and_then(Value::as_str) {
        Some(name) if !name.trim().is_empty() => name.to_owned(),
        _ => return Err(req.fail(400, "Invalid input for field/attribute name.")),
    };
    let properties = match args.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(metadata)) => metadata.clone(),
        Some(_) => return Err(req.fail(400, "metadata must be an object")),
    };
    let knobs = core.knobs();
    let mut state = core.state();
    let now = Instant::now();
    let Some(server) = state.server(server_id) else {
        return Err(not_found(req, server_id));
    };
    let status = server.status(now);
    if status != "ACTIVE" {
        let message =
            format!("Cannot 'createImage' instance {server_id} while it is in status {status}");
        return Err(req.fail(409, &message));
    }
    // As Nova does: the snapshot inherits its server's image's own properties, then gets
    // the request's metadata and Nova's marks.
    let mut inherited = state
        .images
        .iter()
        .find(|i| i.id == server.image_id)
        .map(|i| i.properties.clone())
        .unwrap_or_default();
    inherited.extend(properties);
    let mut properties = inherited;
    properties.insert("image_type".into(), json!("snapshot"));
    properties.insert("instance_uuid".into(), json!(server_id));
    properties.insert("base_image_ref".into(), json!(server.image_id));
    properties.insert("owner_user_name".into(), json!(knobs.username));
    properties.insert("owner_project_name".into(), json!(knobs.project));
    let id = state.uuid();
    let created = SystemTime::now();
    state.images.push(Image {
        id: id.clone(),
        name,
        status: ImageStatus::Queued,
        visibility: "private".into(),
        protected: false,
        disk_format: Some("qcow2".into()),
        container_format: Some("bare".into()),
        min_disk: 0,
        min_ram: 0,
        size: None,
        hashes: None,
        tags: Vec::new(),
        properties,
        created,
        updated: created,
        active_at: Some(now + knobs.boot_delay),
    });
    if req.microversion >= IMAGE_ID_IN_BODY {
        Ok(Reply::json(202, json!({ "image_id": id })))
    } else {
        let location = format!("{}/image/v2/images/{id}", req.url);
        Ok(Reply::empty(202).header("Location", &location))
    }
}

fn address_arg(req: &Req, args: &Map<String, Value>) -> Result<String, Reply> {
    match args.get("address").and_then(Value::as_str) {
        Some(address) => Ok(address.to_owned()),
        None => Err(req.fail(400, "address is required")),
    }
}

/// `addFloatingIp` and `removeFloatingIp` are gone from microversion 2.44 on (404), as the
/// API reference says: clients must attach through Neutron.
const FLOATING_ACTIONS_GONE: (u32, u32) = (2, 44);

fn floating_actions(req: &Req) -> Result<(), Reply> {
    if req.microversion >= FLOATING_ACTIONS_GONE {
        let (major, minor) = req.microversion;
        let message = format!(
            "addFloatingIp and removeFloatingIp are gone at microversion {major}.{minor} \
             (from 2.44): attach through Neutron"
        );
        return Err(req.fail(404, &message));
    }
    Ok(())
}

fn add_floating_ip(core: &Core, req: &Req, server_id: &str, args: Map<String, Value>) -> Handled {
    floating_actions(req)?;
    let address = address_arg(req, &args)?;
    let mut state = core.state();
    let Some(fip) = state.floating_ips.iter_mut().find(|f| f.ip == address) else {
        let message = format!("floating IP not found for address {address}.");
        return Err(req.fail(404, &message));
    };
    match &fip.instance_id {
        Some(other) if other != server_id => {
            let message = format!("Floating IP {address} is associated with instance {other}.");
            Err(req.fail(400, &message))
        }
        _ => {
            fip.instance_id = Some(server_id.to_owned());
            Ok(Reply::empty(202))
        }
    }
}

fn remove_floating_ip(
    core: &Core,
    req: &Req,
    server_id: &str,
    args: Map<String, Value>,
) -> Handled {
    floating_actions(req)?;
    let address = address_arg(req, &args)?;
    let mut state = core.state();
    let fip = state
        .floating_ips
        .iter_mut()
        .find(|f| f.ip == address && f.instance_id.as_deref() == Some(server_id));
    let Some(fip) = fip else {
        let message = format!("Floating IP {address} is not associated with instance {server_id}.");
        return Err(req.fail(409, &message));
    };
    fip.instance_id = None;
    Ok(Reply::empty(202))
}
