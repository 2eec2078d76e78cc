//! Glance v2: images listed page by page, created, uploaded as a stream from disk, deleted.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{json, Value};

use super::http::Body;
use super::{absolute, OpenStack, MAX_PAGES};
use crate::cloud::{CloudResult, Image};

/// Glance's own image fields; everything else is a property.
const STANDARD_FIELDS: &[&str] = &[
    "id",
    "name",
    "status",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "container_format",
    "disk_format",
    "visibility",
    "protected",
    "owner",
    "min_ram",
    "min_disk",
    "created_at",
    "updated_at",
    "tags",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
    "os_hidden",
];

pub(super) fn list_images(os: &OpenStack) -> CloudResult<Vec<Image>> {
    let route = "GET image /v2/images";
    let mut images = Vec::new();
    let mut url = format!("{}/images?limit=1000", os.endpoints.image);
    for _ in 0..MAX_PAGES {
        let page = os.get_json(&url, route)?;
        let items = page
            .get("images")
            .and_then(Value::as_array)
            .ok_or_else(|| os.malformed(route, "no `images`"))?;
        images.extend(items.iter().filter_map(parse_image));
        match page.get("next").and_then(Value::as_str) {
            Some(next) if !items.is_empty() => url = absolute(&os.endpoints.image, next),
            _ => return Ok(images),
        }
    }
    Err(os.malformed(route, "more than 10000 pages"))
}

pub(super) fn get_image(os: &OpenStack, id: &str) -> CloudResult<Option<Image>> {
    let route = "GET image /v2/images/{id}";
    match os.get_optional(&format!("{}/images/{id}", os.endpoints.image), route)? {
        None => Ok(None),
        Some(value) => parse_image(&value)
            .map(Some)
            .ok_or_else(|| os.malformed(route, "image without id")),
    }
}

pub(super) fn create_image(
    os: &OpenStack,
    name: &str,
    disk_format: &str,
    properties: &BTreeMap<String, String>,
) -> CloudResult<String> {
    let route = "POST image /v2/images";
    let mut body = json!({"name": name, "disk_format": disk_format, "container_format": "bare", "visibility": "private"});
    for (key, value) in properties {
        body[key] = json!(value);
    }
    let reply = os.call(
        "POST",
        &format!("{}/images", os.endpoints.image),
        route,
        Body::Json(&body),
    )?;
    reply
        .json()?
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| os.malformed(route, "no image id"))
}

pub(super) fn upload_image(
    os: &OpenStack,
    id: &str,
    data: &mut dyn Read,
    length: u64,
) -> CloudResult<()> {
    let route = "PUT image /v2/images/{id}/file";
    os.call(
        "PUT",
        &format!("{}/images/{id}/file", os.endpoints.image),
        route,
        Body::Stream(data, length),
    )?;
    Ok(())
}

pub(super) fn delete_image(os: &OpenStack, id: &str) -> CloudResult<()> {
    os.delete(
        &format!("{}/images/{id}", os.endpoints.image),
        "DELETE image /v2/images/{id}",
    )
}

fn parse_image(value: &Value) -> Option<Image> {
    let object = value.as_object()?;
    Some(Image {
        id: object.get("id")?.as_str()?.to_string(),
        name: object
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        status: object
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        size: object.get("size").and_then(Value::as_u64),
        md5: object
            .get("checksum")
            .and_then(Value::as_str)
            .map(str::to_string),
        sha512: object
            .get("os_hash_value")
            .and_then(Value::as_str)
            .filter(|_| object.get("os_hash_algo").and_then(Value::as_str) == Some("sha512"))
            .map(str::to_string),
        properties: object
            .iter()
            .filter(|(k, _)| !STANDARD_FIELDS.contains(&k.as_str()))
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
    })
}
