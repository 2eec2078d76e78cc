//! Glance v2: images list (paged, filtered), get, create, streamed upload, delete.
//!
//! The upload reads the body in fixed-size chunks and only counts them: a gigabyte upload
//! costs the simulator one buffer, which is what lets a test show the client streams too.

use std::io::{ErrorKind, Read};
use std::time::SystemTime;

use serde_json::{json, Map, Value};

use super::http::{percent_encode, Handled, Reply, Req, Route};
use super::state::{page_start, stable_id, timestamp, Image, ImageStatus};
use super::Core;

pub(crate) const ROUTES: &[Route] = &[
    Route::new("GET", "/images", list_images),
    Route::new("POST", "/images", create_image),
    Route::new("GET", "/images/{id}", get_image),
    Route::new("DELETE", "/images/{id}", delete_image),
    Route::new("PUT", "/images/{id}/file", upload),
];

const DISK_FORMATS: [&str; 11] = [
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
const VISIBILITIES: [&str; 4] = ["public", "private", "shared", "community"];
const CONTAINER_FORMATS: [&str; 7] = ["ami", "ari", "aki", "bare", "ovf", "ova", "docker"];
/// Set by Glance alone; a create that names one is refused.
const READ_ONLY: [&str; 10] = [
    "status",
    "size",
    "virtual_size",
    "checksum",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "direct_url",
];
const UPLOAD_CHUNK: usize = 64 * 1024;
/// Filters the list understands; each is also carried into the `next` link.
const FILTERS: [&str; 3] = ["name", "status", "visibility"];

fn image_json(image: &Image, owner: &str) -> Value {
    let mut body = json!({
        "id": image.id,
        "name": image.name,
        "status": image.status.as_str(),
        "visibility": image.visibility,
        "protected": image.protected,
        "os_hidden": false,
        "checksum": image.hashes.as_ref().map(|h| h.0.clone()),
        "os_hash_algo": image.hashes.as_ref().map(|_| "sha512"),
        "os_hash_value": image.hashes.as_ref().map(|h| h.1.clone()),
        "owner": owner,
        "size": image.size,
        "virtual_size": null,
        "min_disk": image.min_disk,
        "min_ram": image.min_ram,
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "tags": image.tags,
        "created_at": timestamp(image.created),
        "updated_at": timestamp(image.updated),
        "self": format!("/v2/images/{}", image.id),
        "file": format!("/v2/images/{}/file", image.id),
        "schema": "/v2/schemas/image",
    });
    for (key, value) in &image.properties {
        body[key] = value.clone();
    }
    body
}

fn owner(core: &Core) -> String {
    stable_id("project", &core.knobs().project)
}

fn list_images(core: &Core, req: &mut Req) -> Handled {
    let limit = req.limit(core.knobs().page_size)?;
    let owner = owner(core);
    let state = core.state();
    let matching: Vec<&Image> = state
        .images
        .iter()
        .filter(|i| {
            let admits = |key: &str, wanted: &str| match key {
                "name" => i.name == wanted,
                "status" => i.status.as_str() == wanted,
                // `visibility=all` is Glance's way of asking for every visibility.
                _ => wanted == "all" || i.visibility == wanted,
            };
            FILTERS
                .iter()
                .all(|key| req.query(key).is_none_or(|wanted| admits(key, wanted)))
        })
        .collect();
    let marker = req.query("marker");
    let Some(start) = page_start(matching.iter().map(|i| i.id.as_str()), marker) else {
        let marker = marker.unwrap_or_default();
        return Err(req.fail(400, &format!("marker {marker} could not be found")));
    };
    let page = &matching[start.min(matching.len())..][..limit.min(matching.len() - start)];
    let images: Vec<Value> = page.iter().map(|i| image_json(i, &owner)).collect();
    let mut body = json!({
        "images": images,
        "first": "/v2/images",
        "schema": "/v2/schemas/images",
    });
    if let Some(last) = page.last().filter(|_| start + page.len() < matching.len()) {
        let mut next = format!("/v2/images?limit={limit}&marker={}", last.id);
        for key in FILTERS {
            if let Some(value) = req.query(key) {
                next.push_str(&format!("&{key}={}", percent_encode(value)));
            }
        }
        body["next"] = json!(next);
    }
    Ok(Reply::json(200, body))
}

fn not_found(req: &Req) -> Reply {
    let id = &req.params[0];
    req.fail(404, &format!("No image found with ID {id}"))
}

fn get_image(core: &Core, req: &mut Req) -> Handled {
    let owner = owner(core);
    let state = core.state();
    let image = state.images.iter().find(|i| i.id == req.params[0]);
    let image = image.ok_or_else(|| not_found(req))?;
    Ok(Reply::json(200, image_json(image, &owner)))
}

/// `body[key]` as an optional string from a list of allowed values.
fn one_of(
    req: &Req,
    body: &mut Map<String, Value>,
    key: &str,
    allowed: &[&str],
) -> Result<Option<String>, Reply> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) if allowed.contains(&value.as_str()) => Ok(Some(value)),
        Some(other) => Err(req.fail(400, &format!("Invalid value {other} for {key}"))),
    }
}

fn create_image(core: &Core, req: &mut Req) -> Handled {
    let mut body = req.json()?;
    if let Some(key) = READ_ONLY.iter().find(|key| body.contains_key(**key)) {
        return Err(req.fail(403, &format!("Attribute '{key}' is read-only.")));
    }
    let text = |value: Option<Value>| value.and_then(|v| v.as_str().map(str::to_owned));
    let number = |value: Option<Value>| value.and_then(|v| v.as_u64()).unwrap_or(0);
    let disk_format = one_of(req, &mut body, "disk_format", &DISK_FORMATS)?;
    let container_format = one_of(req, &mut body, "container_format", &CONTAINER_FORMATS)?;
    let name = text(body.remove("name")).unwrap_or_default();
    let visibility = one_of(req, &mut body, "visibility", &VISIBILITIES)?;
    let visibility = visibility.unwrap_or_else(|| "shared".into());
    let tags = match body.remove("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        Some(_) => return Err(req.fail(400, "tags must be a list of strings")),
    };
    let requested_id = text(body.remove("id"));
    let min_disk = number(body.remove("min_disk"));
    let min_ram = number(body.remove("min_ram"));
    let protected = body
        .remove("protected")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    body.remove("os_hidden");
    body.remove("owner");
    // Glance's schema types every additional property as a string.
    if let Some((key, _)) = body.iter().find(|(_, value)| !value.is_string()) {
        return Err(req.fail(
            400,
            &format!("Additional property {key:?} must be a string"),
        ));
    }
    let owner = owner(core);
    let mut state = core.state();
    let id = requested_id.unwrap_or_else(|| state.uuid());
    if state.images.iter().any(|i| i.id == id) {
        return Err(req.fail(409, &format!("Image with identifier {id} already exists!")));
    }
    let now = SystemTime::now();
    let image = Image {
        id: id.clone(),
        name,
        status: ImageStatus::Queued,
        visibility,
        protected,
        disk_format,
        container_format,
        min_disk,
        min_ram,
        size: None,
        hashes: None,
        tags,
        properties: body,
        created: now,
        updated: now,
        active_at: None,
    };
    let answer = image_json(&image, &owner);
    state.images.push(image);
    let location = format!("{}/image/v2/images/{id}", req.url);
    Ok(Reply::json(201, answer).header("Location", &location))
}

fn delete_image(core: &Core, req: &mut Req) -> Handled {
    let mut state = core.state();
    let index = state.images.iter().position(|i| i.id == req.params[0]);
    let index = index.ok_or_else(|| not_found(req))?;
    if state.images[index].protected {
        return Err(req.fail(403, "Image is protected, cannot delete."));
    }
    state.images.remove(index);
    Ok(Reply::empty(204))
}

/// Count the body without keeping it; queued -> saving -> active with `size` set.
fn upload(core: &Core, req: &mut Req) -> Handled {
    let id = req.params[0].clone();
    {
        let mut state = core.state();
        let image = state.image_mut(&id).ok_or_else(|| not_found(req))?;
        if image.status != ImageStatus::Queued {
            let status = image.status.as_str();
            let message = format!("Image status transition from {status} to saving is not allowed");
            return Err(req.fail(409, &message));
        }
        if image.disk_format.is_none() || image.container_format.is_none() {
            let message =
                "Properties disk_format, container_format must be set prior to saving data.";
            return Err(req.fail(400, message));
        }
        image.status = ImageStatus::Saving;
    }
    let counted = hash_bytes(&mut req.body);
    let corrupt = core.knobs().corrupt_checksums;
    let mut state = core.state();
    // The image may have been deleted while the data streamed in.
    let image = state.image_mut(&id).ok_or_else(|| not_found(req))?;
    image.updated = SystemTime::now();
    match counted {
        Ok((size, md5, sha512)) => {
            image.status = ImageStatus::Active;
            image.size = Some(size);
            // A store that wrote something else than it was sent.
            image.hashes = Some(if corrupt {
                ("0".repeat(32), "0".repeat(128))
            } else {
                (md5, sha512)
            });
            Ok(Reply::empty(204))
        }
        Err(e) => {
            image.status = ImageStatus::Queued;
            Err(req.fail(400, &format!("reading the image data: {e}")))
        }
    }
}

/// Read the body without keeping it: its size, MD5 and SHA-512 (hex), as Glance stores them.
fn hash_bytes(body: &mut dyn Read) -> std::io::Result<(u64, String, String)> {
    use md5::Digest;
    let mut buffer = vec![0u8; UPLOAD_CHUNK];
    let mut total = 0u64;
    let (mut md5, mut sha512) = (md5::Md5::new(), sha2::Sha512::new());
    loop {
        match body.read(&mut buffer) {
            Ok(0) => {
                return Ok((
                    total,
                    format!("{:x}", md5.finalize()),
                    format!("{:x}", sha512.finalize()),
                ))
            }
            Ok(n) => {
                total += n as u64;
                md5.update(&buffer[..n]);
                sha512.update(&buffer[..n]);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
