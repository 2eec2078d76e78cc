//! Serde types that mirror the file: the 2015 Nodepool schema plus this project's additions.
//! Every field is optional here so that a missing key is reported by `validate` with its
//! location instead of stopping deserialization; unknown keys are refused.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    pub script_dir: Option<Text>,
    pub elements_dir: Option<Text>,
    pub images_dir: Option<Text>,
    /// Newer Nodepool's: where each build's log goes, and how many per image are kept.
    pub build_log_dir: Option<Text>,
    pub build_log_retention: Option<i64>,
    /// Ours: seconds a node `acquire` handed out may stay unreleased before it is deleted.
    pub max_acquired_age: Option<f64>,
    /// Ours: seconds the run journal (`history`) keeps a run.
    pub history_max_age: Option<f64>,
    /// Ours: a Prometheus text file written after every run (node_exporter's textfile
    /// collector).
    pub prometheus_textfile: Option<Text>,
    pub dburi: Option<Text>,
    pub cron: Option<RawCron>,
    pub zmq_publishers: Option<Vec<Text>>,
    pub gearman_servers: Option<Vec<RawGearmanServer>>,
    pub labels: Option<Vec<RawLabel>>,
    pub diskimages: Option<Vec<RawDiskImage>>,
    pub providers: Option<Vec<RawProvider>>,
    pub targets: Option<Vec<RawTarget>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCron {
    pub cleanup: Option<Text>,
    pub check: Option<Text>,
    pub image_update: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawGearmanServer {
    pub host: Option<Text>,
    pub port: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLabel {
    pub name: Option<Text>,
    pub image: Option<Text>,
    pub min_ready: Option<i64>,
    pub subnodes: Option<i64>,
    pub ready_script: Option<Text>,
    pub providers: Option<Vec<RawLabelProvider>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLabelProvider {
    pub name: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDiskImage {
    pub name: Option<Text>,
    pub elements: Option<Vec<Text>>,
    pub release: Option<Text>,
    pub qemu_img_options: Option<Text>,
    pub env_vars: Option<BTreeMap<String, Text>>,
    pub pause: Option<Flag>,
    pub rebuild_age: Option<i64>,
    /// Newer Nodepool's: the builder command instead of `disk-image-create`.
    pub dib_cmd: Option<Text>,
    /// Newer Nodepool's: seconds a build may take before it is killed.
    pub build_timeout: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProvider {
    pub name: Option<Text>,
    /// A cloud named in clouds.yaml, instead of the inline credentials below.
    pub cloud: Option<Text>,
    pub username: Option<Text>,
    pub password: Option<Text>,
    pub auth_url: Option<Text>,
    /// 2015 meaning (novaclient's): the project's *name*.
    pub project_id: Option<Text>,
    pub project_name: Option<Text>,
    /// The project's Keystone id, for clouds where the name is ambiguous.
    pub project_uuid: Option<Text>,
    pub user_domain_name: Option<Text>,
    pub project_domain_name: Option<Text>,
    pub service_type: Option<Text>,
    pub service_name: Option<Text>,
    pub region_name: Option<Text>,
    pub max_servers: Option<i64>,
    pub rate: Option<f64>,
    pub availability_zones: Option<Vec<Text>>,
    pub boot_timeout: Option<f64>,
    pub launch_timeout: Option<f64>,
    pub keypair: Option<Text>,
    pub networks: Option<Vec<RawNetwork>>,
    pub ipv6_preferred: Option<Flag>,
    pub pool: Option<Text>,
    pub api_timeout: Option<f64>,
    /// Ours: the most one round's listing of this provider may take, every call included.
    pub listing_timeout: Option<f64>,
    /// Newer Nodepool's: most mutating calls in flight at once on this provider.
    pub max_concurrency: Option<i64>,
    /// Ours: keep the provider's Keystone token in the database between runs (default on).
    pub token_cache: Option<Flag>,
    /// Ours: seconds a listing of the cloud's images or flavors is reused (0: never).
    pub cache_ttl: Option<f64>,
    /// Ours: failed launches in a row from a new image, none ready, before launches fall back
    /// to the previous image.
    pub rollback_after: Option<i64>,
    pub template_hostname: Option<Text>,
    pub image_type: Option<Text>,
    pub clean_floating_ips: Option<Flag>,
    /// Newer Nodepool's switch: false skips SSH for clouds nodepool cannot reach.
    pub host_key_checking: Option<Flag>,
    /// Ours: how many mutating cloud calls one reconcile round may make on this provider.
    pub max_actions_per_pass: Option<i64>,
    pub images: Option<Vec<RawProviderImage>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNetwork {
    pub net_id: Option<Text>,
    pub net_label: Option<Text>,
    pub name: Option<Text>,
    pub public: Option<Flag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProviderImage {
    pub name: Option<Text>,
    pub base_image: Option<Text>,
    pub min_ram: Option<i64>,
    pub name_filter: Option<Text>,
    pub setup: Option<Text>,
    pub reset: Option<Text>,
    pub diskimage: Option<Text>,
    pub username: Option<Text>,
    pub user_home: Option<Text>,
    pub private_key: Option<Text>,
    pub meta: Option<BTreeMap<String, Text>>,
    pub config_drive: Option<Flag>,
    pub pause: Option<Flag>,
    pub connection_port: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTarget {
    pub name: Option<Text>,
    pub hostname: Option<Text>,
    pub subnode_hostname: Option<Text>,
    pub rate: Option<f64>,
    pub jenkins: Option<RawJenkins>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawJenkins {
    pub url: Option<Text>,
    pub user: Option<Text>,
    pub apikey: Option<Text>,
    pub credentials_id: Option<Text>,
    pub test_job: Option<Text>,
}

/// A string value. 2015 configurations were read by PyYAML, where `release: 7` or a numeric
/// `project-id` ended up as a string where one was needed; accept any scalar as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// A boolean, also spelled the YAML 1.1 way PyYAML read it (`yes`, `no`, `on`, `off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FlagVisitor;
        impl Visitor<'_> for FlagVisitor {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                match v.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "on" | "y" => Ok(Flag(true)),
                    "false" | "no" | "off" | "n" => Ok(Flag(false)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(FlagVisitor)
    }
}
