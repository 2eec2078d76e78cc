//! Nova v2.1: servers, snapshots (`createImage`), flavors, keypairs, limits, availability
//! zones.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{json, Value};

use super::http::Body;
use super::{absolute, OpenStack, MAX_PAGES};
use crate::cloud::{
    CloudResult, CreateServer, Flavor, Keypair, Limits, Metadata, Server, ServerStatus,
};

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
        let public = &os.public_networks;
        servers.extend(items.into_iter().filter_map(|s| s.into_server(public)));
        let next = page
            .servers_links
            .into_iter()
            .flatten()
            .find(|link| link.rel == "next")
            .map(|link| link.href);
        match next {
            Some(next) if !empty => url = absolute(&os.endpoints.compute, &next),
            _ => {
                // Kept for the whole round, next to every other provider's list.
                servers.shrink_to_fit();
                return Ok(servers);
            }
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
        .and_then(|s| s.into_server(&os.public_networks))
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

/// A server as Nova sends it, read straight into what nodepool keeps: a listing of thousands
/// of servers is parsed in one pass, and every field nodepool does not read is skipped
/// unparsed.
#[derive(Deserialize)]
struct WireServer {
    #[serde(default, deserialize_with = "text_or_number")]
    id: Option<String>,
    name: Option<String>,
    #[serde(default, deserialize_with = "status")]
    status: Option<ServerStatus>,
    #[serde(default, deserialize_with = "metadata")]
    metadata: Metadata,
    #[serde(default)]
    addresses: Addresses,
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

/// Reads a string (or null) through a function without keeping the text.
struct ReadStr<F>(F);

impl<'de, T, F: FnOnce(&str) -> T> serde::de::DeserializeSeed<'de> for ReadStr<F> {
    type Value = Option<T>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<T, F: FnOnce(&str) -> T> serde::de::Visitor<'_> for ReadStr<F> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<T>, E> {
        Ok(Some((self.0)(v)))
    }
    fn visit_unit<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
}

fn status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ServerStatus>, D::Error> {
    serde::de::DeserializeSeed::deserialize(ReadStr(ServerStatus::parse), d)
}

/// Server metadata: values are strings in Nova, but old clouds sent numbers; anything else
/// is kept as its JSON text.
fn metadata<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Metadata, D::Error> {
    struct Pairs;
    impl<'de> serde::de::Visitor<'de> for Pairs {
        type Value = Metadata;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a metadata object")
        }
        fn visit_unit<E>(self) -> Result<Metadata, E> {
            Ok(Metadata::default())
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
            let mut metadata = Metadata::default();
            let mut key = String::new();
            // Keys are read into one reused buffer: nodepool's own are never copied.
            while map
                .next_key_seed(ReadStr(|k: &str| k.clone_into(&mut key)))?
                .is_some()
            {
                let Scalar(value) = map.next_value()?;
                metadata.insert(&key, value);
            }
            metadata.shrink_to_fit();
            Ok(metadata)
        }
    }
    d.deserialize_any(Pairs)
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

/// What a server's `addresses` (`{network: [{addr, OS-EXT-IPS:type}, …]}`) offer, read in
/// one pass: the first private IPv4 (RFC 1918, not floating), the first IPv6, and the IPv4
/// candidates for the public address with the network each is on.
#[derive(Default)]
struct Addresses {
    public_v6: Option<String>,
    private_v4: Option<String>,
    /// (network, address, floating), in reply order.
    v4: Vec<(String, std::net::Ipv4Addr, bool)>,
}

impl Addresses {
    fn add(&mut self, network: &str, ip: IpAddr, floating: bool) {
        match ip {
            IpAddr::V4(v4) => {
                if !floating && is_private(v4) && self.private_v4.is_none() {
                    self.private_v4 = Some(v4.to_string());
                }
                self.v4.push((network.to_string(), v4, floating));
            }
            IpAddr::V6(_) => {
                self.public_v6.get_or_insert_with(|| ip.to_string());
            }
        }
    }

    /// The public IPv4 as 2015 Nodepool chose it: the first on a network the configuration
    /// marks `public: true`; else the first on the network named `public`; else a floating
    /// one; else `accessIPv4`; else the first that is not RFC 1918 on `private`; else the
    /// first that is not RFC 1918 on any other network.
    fn public_v4(&self, public_networks: &[String], access: Option<String>) -> Option<String> {
        let first = |wanted: &dyn Fn(&(String, std::net::Ipv4Addr, bool)) -> bool| {
            self.v4
                .iter()
                .find(|a| wanted(a))
                .map(|(_, ip, _)| ip.to_string())
        };
        first(&|(net, _, _)| public_networks.contains(net))
            .or_else(|| first(&|(net, _, _)| net == "public"))
            .or_else(|| first(&|(_, _, floating)| *floating))
            .or(access)
            .or_else(|| first(&|(net, ip, _)| net == "private" && !is_private(*ip)))
            .or_else(|| first(&|(_, ip, _)| !is_private(*ip)))
    }
}

impl<'de> Deserialize<'de> for Addresses {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Addresses, D::Error> {
        /// Every network's list, folded into one `Addresses`.
        struct Networks;
        impl<'de> serde::de::Visitor<'de> for Networks {
            type Value = Addresses;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an addresses object")
            }
            fn visit_unit<E>(self) -> Result<Addresses, E> {
                Ok(Addresses::default())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Addresses, A::Error> {
                let mut found = Addresses::default();
                let mut network = String::new();
                while map
                    .next_key_seed(ReadStr(|k: &str| k.clone_into(&mut network)))?
                    .is_some()
                {
                    map.next_value_seed(Network(&mut found, &network))?;
                }
                Ok(found)
            }
        }
        d.deserialize_any(Networks)
    }
}

/// One network's list of addresses, added to the `Addresses` being built.
struct Network<'a>(&'a mut Addresses, &'a str);

impl<'de> serde::de::DeserializeSeed<'de> for Network<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Network<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of addresses")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(entry) = seq.next_element::<WireAddress>()? {
            if let Some(ip) = entry.addr {
                self.0.add(self.1, ip, entry.floating);
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct WireAddress {
    /// Unparseable addresses are skipped, not fatal.
    #[serde(default, deserialize_with = "ip_address")]
    addr: Option<IpAddr>,
    #[serde(default, rename = "OS-EXT-IPS:type", deserialize_with = "is_floating")]
    floating: bool,
}

fn ip_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    let ip = serde::de::DeserializeSeed::deserialize(ReadStr(|s: &str| s.parse().ok()), d)?;
    Ok(ip.flatten())
}

fn is_floating<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let floating = serde::de::DeserializeSeed::deserialize(ReadStr(|s: &str| s == "floating"), d)?;
    Ok(floating == Some(true))
}

impl WireServer {
    /// None when the server has no id (nothing could be done with it). `public_networks`:
    /// the provider's networks marked `public: true`, whose address comes first.
    fn into_server(self, public_networks: &[String]) -> Option<Server> {
        let access_v4 = self.access_v4.filter(|s| !s.is_empty());
        let public_v4 = self.addresses.public_v4(public_networks, access_v4);
        let public_v6 = self
            .addresses
            .public_v6
            .or(self.access_v6.filter(|s| !s.is_empty()));
        Some(Server {
            id: self.id?,
            name: self.name.unwrap_or_default(),
            status: self.status.unwrap_or(ServerStatus::Other),
            metadata: self.metadata,
            public_v4,
            public_v6,
            private_v4: self.addresses.private_v4,
        })
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

    /// Through text, as a reply is parsed.
    fn parse_server(value: &Value) -> Option<Server> {
        serde_json::from_str::<WireServer>(&value.to_string())
            .ok()?
            .into_server(&[])
    }

    #[test]
    fn servers_parse_addresses_metadata_and_status() {
        let value = json!({
            "id": "s1", "name": "small-p1-1", "status": "ACTIVE",
            "metadata": {"nodepool_node_id": "7", "groups": 3, "b": "2", "a": "1"},
            "addresses": {"private": [
                {"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed"},
                {"addr": "198.51.100.7", "version": 4, "OS-EXT-IPS:type": "floating"},
                {"addr": "2001:db8::5", "version": 6}
            ]},
            "OS-EXT-AZ:availability_zone": "az1",
            "image": {"id": "img", "links": [{"rel": "bookmark", "href": "http://x"}]},
            "created": "2026-11-21T10:00:00Z"
        });
        let server = parse_server(&value).unwrap();
        assert_eq!(server.status, ServerStatus::Active);
        assert_eq!(server.private_v4.as_deref(), Some("10.0.0.5"));
        assert_eq!(server.public_v4.as_deref(), Some("198.51.100.7"));
        assert_eq!(server.public_v6.as_deref(), Some("2001:db8::5"));
        assert_eq!(server.metadata.get("nodepool_node_id"), Some("7"));
        assert_eq!(server.metadata.get("groups"), Some("3"));
        let keys: Vec<&str> = server.metadata.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b", "groups", "nodepool_node_id"]);
    }

    /// The public IPv4 nodepool picks from `addresses` (networks in the order written).
    fn public_of(
        addresses: &str,
        access: Option<&str>,
        public_networks: &[&str],
    ) -> Option<String> {
        let access = access.map_or("null".to_string(), |a| format!("\"{a}\""));
        let text = format!(r#"{{"id": "s1", "addresses": {addresses}, "accessIPv4": {access}}}"#);
        let public: Vec<String> = public_networks.iter().map(|n| n.to_string()).collect();
        serde_json::from_str::<WireServer>(&text)
            .unwrap()
            .into_server(&public)
            .unwrap()
            .public_v4
    }

    #[test]
    fn the_public_address_is_chosen_as_2015_nodepool_did() {
        // A tenant network in non-RFC 1918 space listed before `public`: `public` wins.
        let tenant_first = r#"{"tenant": [{"addr": "100.200.0.5"}],
                               "public": [{"addr": "203.0.113.9"}]}"#;
        assert_eq!(
            public_of(tenant_first, None, &[]).as_deref(),
            Some("203.0.113.9")
        );
        // A network the configuration marks public comes before even `public`.
        assert_eq!(
            public_of(tenant_first, None, &["tenant"]).as_deref(),
            Some("100.200.0.5")
        );
        // The network named `public` counts even in private space.
        let private_public = r#"{"public": [{"addr": "10.1.0.4"}],
                                 "private": [{"addr": "198.51.100.3"}]}"#;
        assert_eq!(
            public_of(private_public, None, &[]).as_deref(),
            Some("10.1.0.4")
        );
        // Then a floating IP, then accessIPv4, then a non-RFC 1918 one on `private`, then on
        // any other network.
        let floating = r#"{"private": [{"addr": "198.51.100.3"},
                                       {"addr": "192.0.2.7", "OS-EXT-IPS:type": "floating"}]}"#;
        assert_eq!(public_of(floating, None, &[]).as_deref(), Some("192.0.2.7"));
        let fixed_only = r#"{"other": [{"addr": "203.0.113.50"}],
                             "private": [{"addr": "10.0.0.3"}, {"addr": "198.51.100.3"}]}"#;
        assert_eq!(
            public_of(fixed_only, Some("192.0.2.1"), &[]).as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(
            public_of(fixed_only, None, &[]).as_deref(),
            Some("198.51.100.3")
        );
        let elsewhere =
            r#"{"private": [{"addr": "10.0.0.3"}], "other": [{"addr": "203.0.113.50"}]}"#;
        assert_eq!(
            public_of(elsewhere, None, &[]).as_deref(),
            Some("203.0.113.50")
        );
        assert_eq!(
            public_of(r#"{"private": [{"addr": "10.0.0.3"}]}"#, None, &[]),
            None
        );
    }

    #[test]
    fn the_first_address_of_each_kind_wins_across_networks() {
        // As text: the order of the networks is the reply's, which `json!` would sort.
        let text = r#"{
            "id": "s1",
            "addresses": {
                "internal": [{"addr": "10.0.0.5"}, {"addr": "10.0.0.6"}],
                "public": [{"addr": "203.0.113.9", "OS-EXT-IPS:type": "fixed"}],
                "other": [{"addr": "203.0.113.10"}]
            },
            "accessIPv4": "192.0.2.1",
            "accessIPv6": "2001:db8::1"
        }"#;
        let server = serde_json::from_str::<WireServer>(text)
            .unwrap()
            .into_server(&[])
            .unwrap();
        assert_eq!(server.private_v4.as_deref(), Some("10.0.0.5"));
        assert_eq!(server.public_v4.as_deref(), Some("203.0.113.9"));
        // accessIPv6 fills the slot the addresses left empty.
        assert_eq!(server.public_v6.as_deref(), Some("2001:db8::1"));
    }

    #[test]
    fn access_ips_name_the_public_address_of_a_server_with_only_private_ones() {
        let server = parse_server(&json!({
            "id": "s1",
            "addresses": {"internal": [{"addr": "10.0.0.5"}]},
            "accessIPv4": "192.0.2.1", "accessIPv6": ""
        }))
        .unwrap();
        assert_eq!(
            (server.private_v4.as_deref(), server.public_v4.as_deref()),
            (Some("10.0.0.5"), Some("192.0.2.1"))
        );
        assert_eq!(server.public_v6, None);
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
            (server.id.as_str(), server.status, server.public_v4),
            ("5", ServerStatus::Other, None)
        );
        let server = parse_server(&json!({
            "id": "s2", "status": null, "metadata": null, "addresses": null,
            "accessIPv4": null, "name": null
        }))
        .unwrap();
        assert_eq!(
            (
                server.status,
                server.metadata.iter().count(),
                server.name.as_str()
            ),
            (ServerStatus::Other, 0, "")
        );
    }
}
