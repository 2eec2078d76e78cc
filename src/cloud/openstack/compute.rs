//! Nova v2.1: servers, snapshots (`createImage`), flavors, keypairs, limits, availability
//! zones.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{json, Value};

use super::http::Body;
use super::{absolute, OpenStack, MAX_PAGES};
use crate::cloud::{CloudResult, CreateServer, Flavor, Keypair, Limits, Server, ServerStatus};

pub(super) fn list_servers(os: &OpenStack) -> CloudResult<Vec<Server>> {
    let route = "GET compute /servers/detail";
    let mut servers = Vec::new();
    let mut url = format!("{}/servers/detail", os.endpoints.compute);
    for _ in 0..MAX_PAGES {
        // Typed, not a `Value` tree: a listing of thousands of servers is parsed in one pass
        // with a fraction of the allocations.
        let page: ServerPage = os.call("GET", &url, route, Body::None)?.parse()?;
        let items = page
            .servers
            .ok_or_else(|| os.malformed(route, "no `servers` list"))?;
        let empty = items.is_empty();
        servers.extend(items.into_iter().filter_map(WireServer::into_server));
        let next = page
            .servers_links
            .into_iter()
            .flatten()
            .find(|link| link.rel == "next")
            .map(|link| link.href);
        match next {
            Some(next) if !empty => url = absolute(&os.endpoints.compute, &next),
            _ => return Ok(servers),
        }
    }
    Err(os.malformed(route, "more than 10000 pages"))
}

pub(super) fn get_server(os: &OpenStack, id: &str) -> CloudResult<Option<Server>> {
    let route = "GET compute /servers/{id}";
    let url = format!("{}/servers/{id}", os.endpoints.compute);
    let reply = match os.call("GET", &url, route, Body::None) {
        Ok(reply) => reply,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let document: OneServer = reply.parse()?;
    document
        .server
        .and_then(WireServer::into_server)
        .map(Some)
        .ok_or_else(|| os.malformed(route, "no `server` with an id"))
}

pub(super) fn create_server(os: &OpenStack, request: &CreateServer) -> CloudResult<String> {
    let route = "POST compute /servers";
    let mut server = json!({
        "name": request.name,
        "imageRef": request.image_id,
        "flavorRef": request.flavor_id,
        "metadata": request.metadata,
    });
    if let Some(key) = &request.key_name {
        server["key_name"] = json!(key);
    }
    if let Some(az) = &request.availability_zone {
        server["availability_zone"] = json!(az);
    }
    if !request.network_ids.is_empty() {
        server["networks"] = json!(request
            .network_ids
            .iter()
            .map(|id| json!({"uuid": id}))
            .collect::<Vec<_>>());
    }
    if request.config_drive {
        server["config_drive"] = json!(true);
    }
    let reply = os.call(
        "POST",
        &format!("{}/servers", os.endpoints.compute),
        route,
        Body::Json(&json!({"server": server})),
    )?;
    let document = reply.json()?;
    document
        .pointer("/server/id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| os.malformed(route, "no server id"))
}

pub(super) fn delete_server(os: &OpenStack, id: &str) -> CloudResult<()> {
    os.delete(
        &format!("{}/servers/{id}", os.endpoints.compute),
        "DELETE compute /servers/{id}",
    )
}

/// Nova answers `createImage` with the image id in the body (microversion 2.45 and later) or
/// in the `Location` header (earlier); both are accepted.
pub(super) fn create_snapshot(
    os: &OpenStack,
    server_id: &str,
    name: &str,
    metadata: &BTreeMap<String, String>,
) -> CloudResult<String> {
    let route = "POST compute /servers/{id}/action createImage";
    let body = json!({"createImage": {"name": name, "metadata": metadata}});
    let url = format!("{}/servers/{server_id}/action", os.endpoints.compute);
    let reply = os.call("POST", &url, route, Body::Json(&body))?;
    snapshot_image_id(&reply.json()?, reply.header("location"))
        .ok_or_else(|| os.malformed(route, "neither an image_id nor a Location header"))
}

/// `{"image_id": …}` (2.45 and later) or the last segment of the `Location` header.
fn snapshot_image_id(body: &Value, location: Option<&str>) -> Option<String> {
    if let Some(id) = body.get("image_id").and_then(Value::as_str) {
        return Some(id.to_string());
    }
    location
        .and_then(|location| location.trim_end_matches('/').rsplit('/').next())
        .filter(|id| !id.is_empty())
        .map(str::to_string)
}

pub(super) fn list_flavors(os: &OpenStack) -> CloudResult<Vec<Flavor>> {
    let route = "GET compute /flavors/detail";
    let document = os.get_json(&format!("{}/flavors/detail", os.endpoints.compute), route)?;
    let flavors = document
        .get("flavors")
        .and_then(Value::as_array)
        .ok_or_else(|| os.malformed(route, "no `flavors`"))?;
    Ok(flavors
        .iter()
        .filter_map(|f| {
            Some(Flavor {
                id: id_of(f.get("id")?)?,
                name: f.get("name")?.as_str()?.to_string(),
                ram_mb: f.get("ram")?.as_u64()?,
                vcpus: f.get("vcpus").and_then(Value::as_u64).unwrap_or(0),
            })
        })
        .collect())
}

pub(super) fn limits(os: &OpenStack) -> CloudResult<Limits> {
    let route = "GET compute /limits";
    let document = os.get_json(&format!("{}/limits", os.endpoints.compute), route)?;
    let absolute = document
        .pointer("/limits/absolute")
        .ok_or_else(|| os.malformed(route, "no limits.absolute"))?;
    // Nova uses -1 for "unlimited".
    let max = |key: &str| {
        absolute
            .get(key)
            .and_then(Value::as_i64)
            .filter(|n| *n >= 0)
            .map(|n| n as u64)
    };
    let used = |key: &str| absolute.get(key).and_then(Value::as_u64).unwrap_or(0);
    Ok(Limits {
        max_instances: max("maxTotalInstances"),
        used_instances: used("totalInstancesUsed"),
        max_cores: max("maxTotalCores"),
        used_cores: used("totalCoresUsed"),
        max_ram_mb: max("maxTotalRAMSize"),
        used_ram_mb: used("totalRAMUsed"),
    })
}

pub(super) fn availability_zones(os: &OpenStack) -> CloudResult<Vec<String>> {
    let route = "GET compute /os-availability-zone";
    let document = os.get_json(
        &format!("{}/os-availability-zone", os.endpoints.compute),
        route,
    )?;
    let zones = document
        .get("availabilityZoneInfo")
        .and_then(Value::as_array)
        .ok_or_else(|| os.malformed(route, "no availabilityZoneInfo"))?;
    Ok(zones
        .iter()
        .filter(|z| {
            z.pointer("/zoneState/available")
                .and_then(Value::as_bool)
                .unwrap_or(true)
        })
        .filter_map(|z| Some(z.get("zoneName")?.as_str()?.to_string()))
        .collect())
}

pub(super) fn list_keypairs(os: &OpenStack) -> CloudResult<Vec<Keypair>> {
    let route = "GET compute /os-keypairs";
    let document = os.get_json(&format!("{}/os-keypairs", os.endpoints.compute), route)?;
    let pairs = document
        .get("keypairs")
        .and_then(Value::as_array)
        .ok_or_else(|| os.malformed(route, "no `keypairs`"))?;
    Ok(pairs
        .iter()
        .filter_map(|p| {
            let pair = p.get("keypair")?;
            Some(Keypair {
                name: pair.get("name")?.as_str()?.to_string(),
                public_key: pair
                    .get("public_key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            })
        })
        .collect())
}

pub(super) fn create_keypair(os: &OpenStack, name: &str, public_key: &str) -> CloudResult<()> {
    let body = json!({"keypair": {"name": name, "public_key": public_key}});
    os.call(
        "POST",
        &format!("{}/os-keypairs", os.endpoints.compute),
        "POST compute /os-keypairs",
        Body::Json(&body),
    )?;
    Ok(())
}

pub(super) fn delete_keypair(os: &OpenStack, name: &str) -> CloudResult<()> {
    os.delete(
        &format!("{}/os-keypairs/{name}", os.endpoints.compute),
        "DELETE compute /os-keypairs/{name}",
    )
}

fn id_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[derive(Deserialize)]
struct ServerPage {
    servers: Option<Vec<WireServer>>,
    #[serde(default)]
    servers_links: Option<Vec<WireLink>>,
}

#[derive(Deserialize)]
struct OneServer {
    server: Option<WireServer>,
}

#[derive(Deserialize)]
struct WireLink {
    #[serde(default)]
    rel: String,
    #[serde(default)]
    href: String,
}

/// A server as Nova sends it: only the fields nodepool reads; the rest is skipped unparsed.
#[derive(Deserialize)]
struct WireServer {
    #[serde(default, deserialize_with = "text_or_number")]
    id: Option<String>,
    name: Option<String>,
    status: Option<String>,
    #[serde(default, deserialize_with = "scalar_map")]
    metadata: BTreeMap<String, String>,
    addresses: Option<BTreeMap<String, Vec<WireAddress>>>,
    #[serde(rename = "OS-EXT-AZ:availability_zone")]
    az: Option<String>,
    /// `{"id": …}`, or `""` for a server booted from a volume.
    #[serde(default, deserialize_with = "image_ref")]
    image: Option<String>,
    created: Option<String>,
    #[serde(rename = "accessIPv4")]
    access_v4: Option<String>,
    #[serde(rename = "accessIPv6")]
    access_v6: Option<String>,
}

/// An id Nova may send as a string or a number (old clouds).
fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Id;
    impl serde::de::Visitor<'_> for Id {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or a number")
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Id)
}

/// Server metadata: values are strings in Nova, but old clouds sent numbers; anything else
/// is kept as its JSON text.
fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map: Option<BTreeMap<String, Scalar>> = Deserialize::deserialize(d)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .map(|(key, Scalar(value))| (key, value))
        .collect())
}

struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a metadata value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar("null".into()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Scalar, A::Error> {
                let value = Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Scalar(value.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Scalar, A::Error> {
                let value = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Scalar(value.to_string()))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// The id of a server's `image`: `{"id": …, "links": …}`, or a string (`""` when the server
/// boots from a volume) — read without building a tree.
fn image_ref<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Image;
    impl<'de> serde::de::Visitor<'de> for Image {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an image reference")
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut id = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == "id" {
                    id = map.next_value::<Option<String>>()?;
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(id)
        }
    }
    d.deserialize_any(Image)
}

#[derive(Deserialize)]
struct WireAddress {
    addr: Option<String>,
    #[serde(rename = "OS-EXT-IPS:type")]
    kind: Option<String>,
}

impl WireServer {
    /// None when the server has no id (nothing could be done with it).
    fn into_server(self) -> Option<Server> {
        let mut server = Server {
            id: self.id?,
            name: self.name.unwrap_or_default(),
            status: ServerStatus::parse(self.status.as_deref().unwrap_or_default()),
            metadata: self.metadata,
            public_v4: None,
            public_v6: None,
            private_v4: None,
            az: self.az.filter(|s| !s.is_empty()),
            image_id: self.image,
            created: self.created,
        };
        for entry in self
            .addresses
            .into_iter()
            .flat_map(|a| a.into_values())
            .flatten()
        {
            let Some(ip) = entry.addr.and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            let floating = entry.kind.as_deref() == Some("floating");
            match ip {
                IpAddr::V4(v4) if !floating && is_private(v4) => {
                    server.private_v4.get_or_insert_with(|| v4.to_string());
                }
                IpAddr::V4(v4) => {
                    server.public_v4.get_or_insert_with(|| v4.to_string());
                }
                IpAddr::V6(v6) => {
                    server.public_v6.get_or_insert_with(|| v6.to_string());
                }
            }
        }
        for (access, slot) in [
            (self.access_v4, &mut server.public_v4),
            (self.access_v6, &mut server.public_v6),
        ] {
            if let Some(ip) = access.filter(|s| !s.is_empty()) {
                slot.get_or_insert(ip);
            }
        }
        Some(server)
    }
}

/// RFC 1918 and shared (RFC 6598) space: reachable only inside the cloud. Loopback counts as
/// public, so a simulator handing out 127.0.0.1 gives nodes an address nodepool can reach.
fn is_private(ip: std::net::Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private() || (a == 100 && (64..128).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_server(value: &Value) -> Option<Server> {
        serde_json::from_value::<WireServer>(value.clone())
            .ok()?
            .into_server()
    }

    #[test]
    fn servers_parse_addresses_metadata_and_status() {
        let value = json!({
            "id": "s1", "name": "small-p1-1", "status": "ACTIVE",
            "metadata": {"nodepool_node_id": "7", "groups": 3},
            "addresses": {"private": [
                {"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed"},
                {"addr": "198.51.100.7", "version": 4, "OS-EXT-IPS:type": "floating"},
                {"addr": "2001:db8::5", "version": 6}
            ]},
            "OS-EXT-AZ:availability_zone": "az1",
            "image": {"id": "img"},
            "created": "2026-11-21T10:00:00Z"
        });
        let server = parse_server(&value).unwrap();
        assert_eq!(server.status, ServerStatus::Active);
        assert_eq!(server.private_v4.as_deref(), Some("10.0.0.5"));
        assert_eq!(server.public_v4.as_deref(), Some("198.51.100.7"));
        assert_eq!(server.public_v6.as_deref(), Some("2001:db8::5"));
        assert_eq!(server.metadata["nodepool_node_id"], "7");
        assert_eq!(server.metadata["groups"], "3");
        assert_eq!(
            (server.az.as_deref(), server.image_id.as_deref()),
            (Some("az1"), Some("img"))
        );
    }

    #[test]
    fn snapshot_ids_come_from_the_body_or_the_location_header() {
        assert_eq!(
            snapshot_image_id(&json!({"image_id": "abc"}), None).as_deref(),
            Some("abc")
        );
        let location = Some("http://glance/v2/images/def");
        assert_eq!(
            snapshot_image_id(&Value::Null, location).as_deref(),
            Some("def")
        );
        assert_eq!(snapshot_image_id(&Value::Null, None), None);
    }

    #[test]
    fn odd_servers_do_not_panic() {
        assert!(parse_server(&json!({"name": "no id"})).is_none());
        let server =
            parse_server(&json!({"id": 5, "image": "", "addresses": {"x": [{"addr": "garbage"}]}}))
                .unwrap();
        assert_eq!(
            (server.id.as_str(), server.status, server.image_id),
            ("5", ServerStatus::Other, None)
        );
    }
}
