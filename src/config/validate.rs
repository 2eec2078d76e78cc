//! Raw document -> `Config`, collecting every problem with its location.
//!
//! Step 1 deserializes the raw types. Serde stops at the first error, so on each error we
//! record it, remove the offending key (or blank the offending list item) from the tree and
//! try again: one run reports every type error and every unknown key.
//! Step 2 turns the raw types into domain types: defaults, ranges, cross references.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

use super::raw::*;
use super::source::{Document, Lines};
use super::*;

/// Enough for any real file; a bound so a pathological document cannot loop for long.
const MAX_SERDE_RETRIES: usize = 500;

pub const DEFAULT_DATABASE: &str = "/var/lib/nodepool/nodepool.db";
/// Mutating calls per provider per reconcile round: enough to fill a large pool in a few
/// rounds, small enough that one round never hogs a cloud's API.
const DEFAULT_MAX_ACTIONS_PER_PASS: i64 = 100;
/// A healthy Nova lists ten thousand servers in ten pages well within this; a provider
/// that takes longer is reported unreachable for the round rather than holding up the rest.
const DEFAULT_LISTING_TIMEOUT_S: f64 = 30.0;
/// Cloud images and flavors change seldom, and a create that names a gone one says so (and
/// makes the next round list again): ten minutes of reuse costs a new image that long at most.
const DEFAULT_CACHE_TTL_S: f64 = 600.0;
/// Failed launches in a row from a new image before it is rolled back from.
const DEFAULT_ROLLBACK_AFTER: u32 = 3;
pub const DEFAULT_TEMPLATE_HOSTNAME: &str = "{image.name}-{timestamp}.template.openstack.org";
pub const DEFAULT_TARGET_HOSTNAME: &str = "{label.name}-{provider.name}-{node_id}";
pub const DEFAULT_SUBNODE_HOSTNAME: &str = "{label.name}-{provider.name}-{node_id}-{subnode_id}";
/// The target nodes belong to when the configuration names none (pipelines using `acquire`).
pub const IMPLICIT_TARGET: &str = "default";

const TEMPLATE_FIELDS_IMAGE: &[&str] = &["image.name", "provider.name", "timestamp"];
const TEMPLATE_FIELDS_NODE: &[&str] = &[
    "label.name",
    "label.image",
    "provider.name",
    "node_id",
    "timestamp",
];
const TEMPLATE_FIELDS_SUBNODE: &[&str] = &[
    "label.name",
    "label.image",
    "provider.name",
    "node_id",
    "subnode_id",
    "timestamp",
];

pub fn validate(file: &Path, document: Document) -> Result<Config, Vec<Problem>> {
    let Document { mut value, lines } = document;
    if !value.is_mapping() {
        return Err(vec![Problem {
            line: Some(1),
            path: String::new(),
            message: format!(
                "expected a mapping of sections (labels, providers, targets, ...), found {}",
                kind_of(&value)
            ),
        }]);
    }
    let (raw, problems, removed) = deserialize_collecting(&mut value, &lines);
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let dirs = Dirs {
        script: raw.script_dir.is_some(),
        images: raw.images_dir.is_some(),
        elements: raw.elements_dir.is_some(),
    };
    let mut checker = Checker {
        lines: &lines,
        dirs,
        declared: BTreeMap::new(),
        removed,
        problems,
        warnings: Vec::new(),
        base_dir,
    };
    let config = checker.config(file, raw);
    let mut problems = checker.problems;
    if problems.is_empty() {
        Ok(config)
    } else {
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Err(problems)
    }
}

fn deserialize_collecting(
    value: &mut Value,
    lines: &Lines,
) -> (RawConfig, Vec<Problem>, BTreeSet<String>) {
    let mut problems = Vec::new();
    let mut removed = BTreeSet::new();
    // How many replacements a list item has had, so each gets the next candidate.
    let mut blanked: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..MAX_SERDE_RETRIES {
        let error = match serde_path_to_error::deserialize::<_, RawConfig>(value.clone()) {
            Ok(raw) => return (raw, problems, removed),
            Err(error) => error,
        };
        let segments = segments_of(error.path());
        let message = error.inner().to_string();
        if let Some((unknown, expected)) = parse_unknown_field(&message) {
            // serde_path_to_error's path ends at the unknown key itself.
            let mut key_path = segments.clone();
            if !matches!(key_path.last(), Some(Segment::Key(k)) if *k == unknown) {
                key_path.push(Segment::Key(unknown.clone()));
            }
            let path = path_string(&key_path);
            problems.push(Problem {
                line: lines.find(&path),
                message: format!(
                    "unknown key `{unknown}`{}",
                    did_you_mean(&unknown, &expected)
                ),
                path: path.clone(),
            });
            removed.insert(path);
            if !remove(value, &key_path) {
                break;
            }
            continue;
        }
        let path = path_string(&segments);
        if !blanked.contains_key(&path) {
            problems.push(Problem {
                line: lines.find(&path),
                path: path.clone(),
                message: friendly_serde_message(&message),
            });
            removed.insert(path.clone());
        }
        let attempt = blanked.entry(path).or_insert(0);
        *attempt += 1;
        if segments.is_empty() || !replace_or_remove(value, &segments, *attempt) {
            break;
        }
    }
    (RawConfig::default(), problems, removed)
}

#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

fn segments_of(path: &serde_path_to_error::Path) -> Vec<Segment> {
    use serde_path_to_error::Segment as S;
    path.iter()
        .filter_map(|segment| match segment {
            S::Seq { index } => Some(Segment::Index(*index)),
            S::Map { key } => Some(Segment::Key(key.clone())),
            S::Enum { variant } => Some(Segment::Key(variant.clone())),
            S::Unknown => None,
        })
        .collect()
}

fn path_string(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Key(key) if out.is_empty() => out.push_str(key),
            Segment::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn navigate<'v>(value: &'v mut Value, segments: &[Segment]) -> Option<&'v mut Value> {
    let mut current = value;
    for segment in segments {
        current = match segment {
            Segment::Key(key) => current.as_mapping_mut()?.get_mut(key.as_str())?,
            Segment::Index(i) => current.as_sequence_mut()?.get_mut(*i)?,
        };
    }
    Some(current)
}

fn remove(value: &mut Value, segments: &[Segment]) -> bool {
    let Some((last, parent)) = segments.split_last() else {
        return false;
    };
    let Some(parent) = navigate(value, parent) else {
        return false;
    };
    match (last, parent) {
        (Segment::Key(key), Value::Mapping(map)) => map.remove(key.as_str()).is_some(),
        (Segment::Index(i), Value::Sequence(items)) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

/// A bad value under a key is removed (every raw field is optional). A bad list item is
/// replaced in place so later items keep their index (and line): first by an empty mapping
/// (fits a list of sections), then by an empty string (fits a list of names), then removed.
fn replace_or_remove(value: &mut Value, segments: &[Segment], attempt: usize) -> bool {
    match segments.last() {
        Some(Segment::Index(_)) if attempt <= 2 => match navigate(value, segments) {
            Some(item) => {
                *item = if attempt == 1 {
                    Value::Mapping(Default::default())
                } else {
                    Value::String(String::new())
                };
                true
            }
            None => false,
        },
        _ => remove(value, segments),
    }
}

/// serde: "unknown field `nme`, expected one of `name`, `image`" -> ("nme", [name, image]).
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let mut ticks = rest.split('`');
    let unknown = ticks.next()?.to_string();
    let expected = ticks.skip(1).step_by(2).map(str::to_string).collect();
    Some((unknown, expected))
}

/// ", did you mean `x`?" when a candidate is close enough, else a list of what is allowed.
pub(super) fn did_you_mean(word: &str, candidates: &[String]) -> String {
    let best = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, c)| *distance <= (c.len() / 3).max(2))
        .min();
    match best {
        Some((_, c)) => format!("; did you mean `{c}`?"),
        None if candidates.is_empty() => String::new(),
        None => format!("; expected one of: {}", candidates.join(", ")),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// serde's "invalid type: map, expected i64" -> "expected a whole number, found a mapping".
fn friendly_serde_message(message: &str) -> String {
    let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    else {
        return message.to_string();
    };
    let Some((found, expected)) = rest.rsplit_once(", expected ") else {
        return message.to_string();
    };
    let expected = match expected {
        "i64" | "u64" | "i32" | "u32" | "u16" => "a whole number",
        "f64" | "f32" => "a number",
        "a sequence" => "a list",
        "a map" => "a mapping (key: value)",
        e if e.starts_with("struct ") => "a mapping (key: value)",
        e => e,
    };
    let found = match found {
        "map" => "a mapping".to_string(),
        "sequence" => "a list".to_string(),
        "unit value" => "nothing (null)".to_string(),
        f => f.to_string(),
    };
    format!("expected {expected}, found {found}")
}

/// Which directories the file sets; images and labels that need a missing one say so.
struct Dirs {
    script: bool,
    images: bool,
    elements: bool,
}

struct Checker<'a> {
    lines: &'a Lines,
    dirs: Dirs,
    /// Provider -> image names as written, valid or not, so a label naming an invalid
    /// provider or image is not told it does not exist (its own problem is reported).
    declared: BTreeMap<String, BTreeSet<String>>,
    /// Paths already reported by step 1; no second "missing" report for them.
    removed: BTreeSet<String>,
    problems: Vec<Problem>,
    /// Accepted but worth telling the operator, located like problems.
    warnings: Vec<String>,
    base_dir: PathBuf,
}

/// An http(s) URL with a host, as Keystone and Jenkins need; why not, otherwise.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(
            "expected http:// or https:// and a host, such as https://keystone.example.com:5000/v3",
        )?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || host.contains(char::is_whitespace) {
        return Err("no host after the scheme");
    }
    Ok(())
}

fn key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn text(value: &Option<Text>) -> Option<String> {
    value.as_ref().map(|t| t.0.clone())
}

impl Checker<'_> {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            line: self.lines.find(path),
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: &str, message: impl Into<String>) {
        let message = message.into();
        self.warnings.push(match self.lines.find(path) {
            Some(line) => format!("line {line}: {path}: {message}"),
            None => format!("{path}: {message}"),
        });
    }

    fn already_reported(&self, path: &str) -> bool {
        self.removed
            .iter()
            .any(|r| path == r || path.starts_with(&format!("{r}.")))
    }

    fn required(&mut self, value: &Option<Text>, parent: &str, name: &str) -> Option<String> {
        match value {
            Some(Text(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(_) => {
                self.problem(&key(parent, name), format!("`{name}` must not be empty"));
                None
            }
            None => {
                let path = key(parent, name);
                if !self.already_reported(&path) {
                    self.problem(parent, format!("missing required key `{name}`"));
                }
                None
            }
        }
    }

    fn path(&self, value: &Option<Text>) -> Option<PathBuf> {
        value.as_ref().map(|t| self.base_dir.join(&t.0))
    }

    fn seconds(
        &mut self,
        value: Option<f64>,
        path: &str,
        default: f64,
        positive: bool,
    ) -> Duration {
        let seconds = value.unwrap_or(default);
        let valid = seconds.is_finite()
            && if positive {
                seconds > 0.0
            } else {
                seconds >= 0.0
            };
        if !valid {
            let need = if positive { "more than 0" } else { "0 or more" };
            self.problem(
                path,
                format!("must be a number of seconds, {need}; found {seconds}"),
            );
            return Duration::from_secs_f64(default);
        }
        Duration::from_secs_f64(seconds.min(1e9))
    }

    fn integer<T: TryFrom<i64> + Copy>(
        &mut self,
        value: Option<i64>,
        path: &str,
        default: T,
        range: &str,
        ok: impl Fn(i64) -> bool,
    ) -> T {
        match value {
            None => default,
            Some(n) => match T::try_from(n) {
                Ok(v) if ok(n) => v,
                _ => {
                    self.problem(path, format!("must be {range}; found {n}"));
                    default
                }
            },
        }
    }

    fn template(&mut self, template: &str, path: &str, allowed: &[&str]) {
        match template_fields(template) {
            Err(message) => self.problem(path, message),
            Ok(fields) => {
                for field in fields {
                    if !allowed.contains(&field.as_str()) {
                        let allowed: Vec<String> =
                            allowed.iter().map(|f| format!("{{{f}}}")).collect();
                        self.problem(
                            path,
                            format!(
                                "unknown field `{{{field}}}` in template; known fields: {}",
                                allowed.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Names must be unique within their list; returns false for a duplicate.
    fn unique(&mut self, seen: &mut BTreeSet<String>, name: &str, path: &str, what: &str) -> bool {
        if seen.insert(name.to_string()) {
            true
        } else {
            self.problem(
                &key(path, "name"),
                format!("duplicate {what} name `{name}`"),
            );
            false
        }
    }

    fn config(&mut self, file: &Path, raw: RawConfig) -> Config {
        let database = match raw.dburi.as_ref() {
            None => PathBuf::from(DEFAULT_DATABASE),
            Some(Text(uri)) => match database_path(uri, &self.base_dir) {
                Ok(path) => path,
                Err(message) => {
                    self.problem("dburi", message);
                    PathBuf::from(DEFAULT_DATABASE)
                }
            },
        };
        let cron = self.cron(raw.cron.unwrap_or_default());
        if raw.zmq_publishers.as_ref().is_some_and(|z| !z.is_empty()) {
            self.warnings.push(
                "zmq-publishers is ignored: there is no daemon to listen; nodes are released \
                 with `nodepool release` or deleted once used"
                    .to_string(),
            );
        }
        let gearman_servers = self.gearman(raw.gearman_servers.unwrap_or_default());
        let diskimages = self.diskimages(raw.diskimages.unwrap_or_default());
        let providers = self.providers(raw.providers.unwrap_or_default(), &diskimages);
        let labels = self.labels(raw.labels.unwrap_or_default(), &providers);
        let targets = self.targets(raw.targets.unwrap_or_default());
        Config {
            path: file.to_path_buf(),
            script_dir: self.path(&raw.script_dir),
            elements_dir: self.path(&raw.elements_dir),
            images_dir: self.path(&raw.images_dir),
            build_log_dir: self.path(&raw.build_log_dir).unwrap_or_else(|| {
                database
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join("build-logs")
            }),
            build_log_retention: self.integer(
                raw.build_log_retention,
                "build-log-retention",
                7u32,
                "1 or more",
                |n| n >= 1,
            ),
            max_acquired_age: self.seconds(
                raw.max_acquired_age,
                "max-acquired-age",
                8.0 * 3600.0,
                true,
            ),
            prometheus_textfile: self.path(&raw.prometheus_textfile),
            history_max_age: self.seconds(
                raw.history_max_age,
                "history-max-age",
                30.0 * 86400.0,
                true,
            ),
            database,
            cron,
            gearman_servers,
            labels,
            diskimages,
            providers,
            targets,
            warnings: std::mem::take(&mut self.warnings),
            locations: self.lines.clone(),
        }
    }

    fn cron(&mut self, raw: RawCron) -> Cron {
        let mut field = |value: Option<Text>, name: &str, default: &str| -> String {
            let schedule = value.map(|t| t.0).unwrap_or_else(|| default.to_string());
            if schedule.split_whitespace().count() != 5 {
                self.problem(
                    &key("cron", name),
                    format!("expected a cron schedule of 5 fields (minute hour day month weekday), found `{schedule}`"),
                );
            }
            schedule
        };
        Cron {
            cleanup: field(raw.cleanup, "cleanup", "27 */6 * * *"),
            check: field(raw.check, "check", "*/15 * * * *"),
            image_update: field(raw.image_update, "image-update", "14 2 * * *"),
        }
    }

    fn gearman(&mut self, raw: Vec<RawGearmanServer>) -> Vec<GearmanServer> {
        let mut servers = Vec::new();
        for (i, server) in raw.into_iter().enumerate() {
            let path = format!("gearman-servers[{i}]");
            let host = self.required(&server.host, &path, "host");
            let port = self.integer(
                server.port,
                &key(&path, "port"),
                4730u16,
                "a port from 1 to 65535",
                |n| n >= 1,
            );
            if let Some(host) = host {
                servers.push(GearmanServer { host, port });
            }
        }
        servers
    }

    fn diskimages(&mut self, raw: Vec<RawDiskImage>) -> BTreeMap<DiskImageName, DiskImage> {
        let mut out = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for (i, image) in raw.into_iter().enumerate() {
            let path = format!("diskimages[{i}]");
            let Some(name) = self.required(&image.name, &path, "name") else {
                continue;
            };
            if !self.unique(&mut seen, &name, &path, "diskimage") {
                continue;
            }
            let rebuild_age = self.integer(
                image.rebuild_age,
                &key(&path, "rebuild-age"),
                86400u64,
                "0 or more seconds",
                |n| n >= 0,
            );
            let build_timeout = self.seconds(
                image.build_timeout,
                &key(&path, "build-timeout"),
                8.0 * 3600.0,
                true,
            );
            let dib_cmd: Vec<String> = text(&image.dib_cmd)
                .map(|cmd| cmd.split_whitespace().map(str::to_string).collect())
                .filter(|words: &Vec<String>| !words.is_empty())
                .unwrap_or_else(|| vec!["disk-image-create".to_string()]);
            let name = DiskImageName::from(name);
            out.insert(
                name.clone(),
                DiskImage {
                    name,
                    elements: image
                        .elements
                        .unwrap_or_default()
                        .into_iter()
                        .map(|t| t.0)
                        .collect(),
                    release: text(&image.release),
                    qemu_img_options: text(&image.qemu_img_options),
                    env_vars: image
                        .env_vars
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect(),
                    pause: image.pause.is_some_and(|f| f.0),
                    rebuild_age: Duration::from_secs(rebuild_age),
                    dib_cmd,
                    build_timeout,
                },
            );
        }
        out
    }

    fn providers(
        &mut self,
        raw: Vec<RawProvider>,
        diskimages: &BTreeMap<DiskImageName, DiskImage>,
    ) -> BTreeMap<ProviderName, Provider> {
        let mut out = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for (i, provider) in raw.into_iter().enumerate() {
            let path = format!("providers[{i}]");
            let Some(name) = self.required(&provider.name, &path, "name") else {
                continue;
            };
            if !self.unique(&mut seen, &name, &path, "provider") {
                continue;
            }
            if let Some(parsed) =
                self.provider(provider, &path, ProviderName::from(name), diskimages)
            {
                out.insert(parsed.name.clone(), parsed);
            }
        }
        out
    }

    fn provider(
        &mut self,
        raw: RawProvider,
        path: &str,
        name: ProviderName,
        diskimages: &BTreeMap<DiskImageName, DiskImage>,
    ) -> Option<Provider> {
        let auth = self.auth(&raw, path);
        let max_servers = match raw.max_servers {
            None if !self.already_reported(&key(path, "max-servers")) => {
                self.problem(path, "missing required key `max-servers`");
                0
            }
            value => self.integer(value, &key(path, "max-servers"), 0u32, "0 or more", |n| {
                n >= 0
            }),
        };
        let template_hostname =
            text(&raw.template_hostname).unwrap_or_else(|| DEFAULT_TEMPLATE_HOSTNAME.to_string());
        self.template(
            &template_hostname,
            &key(path, "template-hostname"),
            TEMPLATE_FIELDS_IMAGE,
        );
        let networks = self.networks(raw.networks.unwrap_or_default(), path);
        self.declared.entry(name.to_string()).or_default();
        let images = self.provider_images(raw.images.unwrap_or_default(), path, &name, diskimages);
        let rate = self.seconds(raw.rate, &key(path, "rate"), 1.0, false);
        let boot_timeout = self.seconds(raw.boot_timeout, &key(path, "boot-timeout"), 60.0, true);
        let launch_timeout = self.seconds(
            raw.launch_timeout,
            &key(path, "launch-timeout"),
            3600.0,
            true,
        );
        let max_actions_per_pass = self.integer(
            raw.max_actions_per_pass,
            &key(path, "max-actions-per-pass"),
            DEFAULT_MAX_ACTIONS_PER_PASS as u32,
            "1 or more",
            |n| n >= 1,
        );
        let api_timeout = raw
            .api_timeout
            .map(|t| self.seconds(Some(t), &key(path, "api-timeout"), 60.0, true));
        let max_concurrency = raw.max_concurrency.map(|n| {
            self.integer(
                Some(n),
                &key(path, "max-concurrency"),
                1u32,
                "1 or more",
                |n| n >= 1,
            )
        });
        let cache_ttl = self.seconds(
            raw.cache_ttl,
            &key(path, "cache-ttl"),
            DEFAULT_CACHE_TTL_S,
            false,
        );
        let rollback_after = self.integer(
            raw.rollback_after,
            &key(path, "rollback-after"),
            DEFAULT_ROLLBACK_AFTER,
            "1 or more",
            |n| n >= 1,
        );
        let listing_timeout = self.seconds(
            raw.listing_timeout,
            &key(path, "listing-timeout"),
            DEFAULT_LISTING_TIMEOUT_S,
            true,
        );
        Some(Provider {
            path: path.to_string(),
            name,
            auth: auth?,
            region_name: text(&raw.region_name),
            service_type: text(&raw.service_type),
            service_name: text(&raw.service_name),
            max_servers,
            rate,
            availability_zones: raw
                .availability_zones
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.0)
                .collect(),
            boot_timeout,
            launch_timeout,
            keypair: text(&raw.keypair),
            networks,
            ipv6_preferred: raw.ipv6_preferred.is_some_and(|f| f.0),
            pool: text(&raw.pool),
            api_timeout,
            listing_timeout,
            max_concurrency,
            token_cache: raw.token_cache.is_none_or(|f| f.0),
            cache_ttl,
            rollback_after,
            template_hostname,
            image_type: text(&raw.image_type),
            clean_floating_ips: raw.clean_floating_ips.is_some_and(|f| f.0),
            host_key_checking: raw.host_key_checking.is_none_or(|f| f.0),
            max_actions_per_pass,
            images,
        })
    }

    fn auth(&mut self, raw: &RawProvider, path: &str) -> Option<ProviderAuth> {
        let inline_keys = [
            ("username", &raw.username),
            ("password", &raw.password),
            ("auth-url", &raw.auth_url),
            ("project-id", &raw.project_id),
            ("project-name", &raw.project_name),
            ("project-uuid", &raw.project_uuid),
        ];
        if let Some(cloud) = &raw.cloud {
            let inline: Vec<&str> = inline_keys
                .iter()
                .filter(|(_, v)| v.is_some())
                .map(|(k, _)| *k)
                .collect();
            if !inline.is_empty() {
                self.problem(
                    &key(path, "cloud"),
                    format!(
                        "set either `cloud` (clouds.yaml) or inline credentials, not both; also set: {}",
                        inline.join(", ")
                    ),
                );
                return None;
            }
            return Some(ProviderAuth::CloudsYaml {
                cloud: cloud.0.clone(),
            });
        }
        let missing: Vec<&str> = inline_keys[..3]
            .iter()
            .filter(|(k, v)| v.is_none() && !self.already_reported(&key(path, k)))
            .map(|(k, _)| *k)
            .collect();
        let projects: Vec<(&str, Project)> = [
            (
                "project-id",
                raw.project_id.as_ref().map(|t| Project::Name(t.0.clone())),
            ),
            (
                "project-name",
                raw.project_name
                    .as_ref()
                    .map(|t| Project::Name(t.0.clone())),
            ),
            (
                "project-uuid",
                raw.project_uuid.as_ref().map(|t| Project::Id(t.0.clone())),
            ),
        ]
        .into_iter()
        .filter_map(|(k, p)| Some((k, p?)))
        .collect();
        let project = match projects.as_slice() {
            [(_, project)] => Some(project.clone()),
            [] => None,
            [(first, _), (second, _), ..] => {
                self.problem(
                    &key(path, second),
                    format!("set one of `project-id`, `project-name` or `project-uuid`; `{first}` is set too"),
                );
                return None;
            }
        };
        let mut need = missing;
        if project.is_none() {
            need.push("project-id (or project-name, project-uuid)");
        }
        if !need.is_empty() {
            self.problem(
                path,
                format!(
                    "no credentials: set `cloud: NAME` (from clouds.yaml) or the inline keys; missing: {}",
                    need.join(", ")
                ),
            );
            return None;
        }
        let auth_url = text(&raw.auth_url)?;
        if let Err(why) = check_url(&auth_url) {
            self.problem(
                &key(path, "auth-url"),
                format!("`{auth_url}` is not a Keystone URL: {why}"),
            );
            return None;
        }
        Some(ProviderAuth::Inline {
            auth_url,
            username: text(&raw.username)?,
            password: Secret(text(&raw.password)?),
            project: project?,
            user_domain_name: text(&raw.user_domain_name),
            project_domain_name: text(&raw.project_domain_name),
        })
    }

    fn networks(&mut self, raw: Vec<RawNetwork>, provider: &str) -> Vec<Network> {
        let mut out = Vec::new();
        for (i, network) in raw.into_iter().enumerate() {
            let path = format!("{provider}.networks[{i}]");
            let public = network.public.is_some_and(|f| f.0);
            match (network.net_id, network.net_label, network.name) {
                (Some(id), None, None) => out.push(Network::Id(id.0)),
                (None, Some(label), None) => out.push(Network::Label(label.0)),
                (None, None, Some(name)) => out.push(Network::Name {
                    name: name.0,
                    public,
                }),
                _ => self.problem(&path, "set exactly one of `net-id`, `net-label` or `name`"),
            }
        }
        out
    }

    fn provider_images(
        &mut self,
        raw: Vec<RawProviderImage>,
        provider: &str,
        provider_name: &ProviderName,
        diskimages: &BTreeMap<DiskImageName, DiskImage>,
    ) -> BTreeMap<ImageName, ProviderImage> {
        let mut out = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for (i, image) in raw.into_iter().enumerate() {
            let path = format!("{provider}.images[{i}]");
            let Some(name) = self.required(&image.name, &path, "name") else {
                continue;
            };
            if !self.unique(&mut seen, &name, &path, "image") {
                continue;
            }
            let min_ram = match image.min_ram {
                None if !self.already_reported(&key(&path, "min-ram")) => {
                    self.problem(&path, "missing required key `min-ram` (MB of RAM; the smallest flavor with at least that much is used)");
                    0
                }
                value => self.integer(value, &key(&path, "min-ram"), 0u64, "0 or more (MB)", |n| {
                    n >= 0
                }),
            };
            self.declared
                .entry(provider_name.to_string())
                .or_default()
                .insert(name.clone());
            let source = self.image_source(&image, &path, diskimages);
            match &source {
                Some(ImageSource::Snapshot { .. }) => self.needs_dir(
                    &path,
                    "a snapshot image (setup script)",
                    "script-dir",
                    self.dirs.script,
                ),
                Some(ImageSource::DiskImage { .. }) => {
                    self.needs_dir(
                        &path,
                        "a diskimage-builder image",
                        "images-dir",
                        self.dirs.images,
                    );
                    self.needs_dir(
                        &path,
                        "a diskimage-builder image",
                        "elements-dir",
                        self.dirs.elements,
                    );
                }
                _ => {}
            }
            let meta = self.meta(image.meta.unwrap_or_default(), &key(&path, "meta"));
            let connection_port = self.integer(
                image.connection_port,
                &key(&path, "connection-port"),
                22u16,
                "a port from 1 to 65535",
                |n| n >= 1,
            );
            let Some(source) = source else { continue };
            let name = ImageName::from(name);
            out.insert(
                name.clone(),
                ProviderImage {
                    path: path.clone(),
                    name,
                    source,
                    min_ram,
                    name_filter: text(&image.name_filter),
                    reset: text(&image.reset),
                    username: text(&image.username).unwrap_or_else(|| "jenkins".into()),
                    user_home: text(&image.user_home).unwrap_or_else(|| "/home/jenkins".into()),
                    private_key: text(&image.private_key)
                        .map(PathBuf::from)
                        .unwrap_or_else(|| PathBuf::from("/var/lib/jenkins/.ssh/id_rsa")),
                    private_key_is_default: image.private_key.is_none(),
                    meta,
                    config_drive: image.config_drive.is_some_and(|f| f.0),
                    pause: image.pause.is_some_and(|f| f.0),
                    connection_port,
                },
            );
        }
        out
    }

    fn image_source(
        &mut self,
        image: &RawProviderImage,
        path: &str,
        diskimages: &BTreeMap<DiskImageName, DiskImage>,
    ) -> Option<ImageSource> {
        match (
            text(&image.diskimage),
            text(&image.base_image),
            text(&image.setup),
        ) {
            (Some(diskimage), base_image, setup) => {
                if base_image.is_some() || setup.is_some() {
                    // 2015 Nodepool accepted both and built the diskimage.
                    self.warn(
                        &key(path, "diskimage"),
                        format!(
                            "both `diskimage` and `{}` are set; as in 2015, the diskimage \
                             `{diskimage}` is used and `{}` is ignored",
                            if base_image.is_some() {
                                "base-image"
                            } else {
                                "setup"
                            },
                            match (&base_image, &setup) {
                                (Some(_), Some(_)) => "base-image`/`setup",
                                (Some(_), None) => "base-image",
                                _ => "setup",
                            }
                        ),
                    );
                }
                if !diskimages.contains_key(diskimage.as_str()) {
                    let known: Vec<String> = diskimages.keys().map(|k| k.to_string()).collect();
                    self.problem(
                        &key(path, "diskimage"),
                        format!(
                            "no diskimage named `{diskimage}` in `diskimages`{}",
                            did_you_mean(&diskimage, &known)
                        ),
                    );
                    return None;
                }
                Some(ImageSource::DiskImage {
                    diskimage: DiskImageName::from(diskimage),
                })
            }
            (None, Some(base_image), None) => Some(ImageSource::Cloud { base_image }),
            (None, Some(base_image), Some(setup)) => {
                Some(ImageSource::Snapshot { base_image, setup })
            }
            (None, None, Some(_)) => {
                self.problem(path, "`setup` needs `base-image`: the image the setup script runs on before the snapshot");
                None
            }
            (None, None, None) => {
                self.problem(
                    path,
                    "missing image source: set `base-image` (a cloud image, with `setup` for a snapshot) or `diskimage`",
                );
                None
            }
        }
    }

    fn meta(&mut self, raw: BTreeMap<String, Text>, path: &str) -> BTreeMap<String, String> {
        if raw.len() > 5 {
            self.problem(
                path,
                format!(
                    "at most 5 entries are allowed (Nova's limit); found {}",
                    raw.len()
                ),
            );
        }
        for (k, v) in &raw {
            if k.chars().count() > 255 || v.0.chars().count() > 255 {
                self.problem(
                    &key(path, k),
                    "keys and values must be at most 255 characters",
                );
            }
        }
        raw.into_iter().map(|(k, v)| (k, v.0)).collect()
    }

    fn labels(
        &mut self,
        raw: Vec<RawLabel>,
        providers: &BTreeMap<ProviderName, Provider>,
    ) -> BTreeMap<LabelName, Label> {
        let mut out = BTreeMap::new();
        let mut seen = BTreeSet::new();
        let provider_names: Vec<String> = providers.keys().map(|p| p.to_string()).collect();
        for (i, label) in raw.into_iter().enumerate() {
            let path = format!("labels[{i}]");
            let name = self.required(&label.name, &path, "name");
            let image = self.required(&label.image, &path, "image");
            let (Some(name), Some(image)) = (name, image) else {
                continue;
            };
            if !self.unique(&mut seen, &name, &path, "label") {
                continue;
            }
            let min_ready = self.integer(
                label.min_ready,
                &key(&path, "min-ready"),
                2i64,
                "-1 (disabled) or more",
                |n| n >= -1,
            );
            let subnodes = self.integer(
                label.subnodes,
                &key(&path, "subnodes"),
                0u32,
                "0 or more",
                |n| n >= 0,
            );
            let mut label_providers = Vec::new();
            for (j, provider) in label.providers.iter().flatten().enumerate() {
                let ppath = format!("{path}.providers[{j}]");
                let Some(pname) = self.required(&provider.name, &ppath, "name") else {
                    continue;
                };
                let declared = self.declared.get(&pname);
                match providers.get(pname.as_str()) {
                    // Declared but invalid: its own problem is reported already.
                    None if declared.is_some() => {}
                    Some(p)
                        if !p.images.contains_key(image.as_str())
                            && declared.is_some_and(|images| images.contains(&image)) => {}
                    None => self.problem(
                        &key(&ppath, "name"),
                        format!(
                            "no provider named `{pname}`{}",
                            did_you_mean(&pname, &provider_names)
                        ),
                    ),
                    Some(p) if !p.images.contains_key(image.as_str()) => {
                        let known: Vec<String> = p.images.keys().map(|k| k.to_string()).collect();
                        self.problem(
                            &key(&ppath, "name"),
                            format!(
                                "provider `{pname}` has no image `{image}` (the image of label `{name}`){}",
                                did_you_mean(&image, &known)
                            ),
                        );
                    }
                    Some(_) => label_providers.push(ProviderName::from(pname)),
                }
            }
            if label.ready_script.is_some() {
                self.needs_dir(
                    &key(&path, "ready-script"),
                    "a ready-script",
                    "script-dir",
                    self.dirs.script,
                );
            }
            let min_ready_valid = label.min_ready.is_none_or(|n| n >= -1);
            if min_ready_valid
                && min_ready > 0
                && label.providers.as_ref().is_none_or(|p| p.is_empty())
            {
                self.problem(
                    &path,
                    format!(
                        "label `{name}` has min-ready {min_ready} but no `providers` to launch on"
                    ),
                );
            }
            let name = LabelName::from(name);
            out.insert(
                name.clone(),
                Label {
                    name,
                    image: ImageName::from(image),
                    min_ready: u32::try_from(min_ready).ok(),
                    subnodes,
                    ready_script: text(&label.ready_script),
                    providers: label_providers,
                },
            );
        }
        out
    }

    fn targets(&mut self, raw: Vec<RawTarget>) -> BTreeMap<TargetName, Target> {
        let mut out = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for (i, target) in raw.into_iter().enumerate() {
            let path = format!("targets[{i}]");
            let Some(name) = self.required(&target.name, &path, "name") else {
                continue;
            };
            if !self.unique(&mut seen, &name, &path, "target") {
                continue;
            }
            let hostname = text(&target.hostname).unwrap_or_else(|| DEFAULT_TARGET_HOSTNAME.into());
            self.template(&hostname, &key(&path, "hostname"), TEMPLATE_FIELDS_NODE);
            let subnode_hostname =
                text(&target.subnode_hostname).unwrap_or_else(|| DEFAULT_SUBNODE_HOSTNAME.into());
            self.template(
                &subnode_hostname,
                &key(&path, "subnode-hostname"),
                TEMPLATE_FIELDS_SUBNODE,
            );
            let rate = self.seconds(target.rate, &key(&path, "rate"), 1.0, false);
            let jenkins = match target.jenkins {
                None => None,
                Some(j) => {
                    let jpath = key(&path, "jenkins");
                    let url = self.required(&j.url, &jpath, "url");
                    if let Some(Err(why)) = url.as_deref().map(check_url) {
                        self.problem(
                            &key(&jpath, "url"),
                            format!(
                                "`{}` is not a Jenkins URL: {why}",
                                url.as_deref().unwrap_or("")
                            ),
                        );
                    }
                    url.map(|url| Jenkins {
                        url,
                        user: text(&j.user),
                        apikey: text(&j.apikey).map(Secret),
                        credentials_id: text(&j.credentials_id),
                        test_job: text(&j.test_job),
                    })
                }
            };
            let name = TargetName::from(name);
            out.insert(
                name.clone(),
                Target {
                    name,
                    hostname,
                    subnode_hostname,
                    rate,
                    jenkins,
                },
            );
        }
        if out.is_empty() {
            let name = TargetName::from(IMPLICIT_TARGET);
            out.insert(
                name.clone(),
                Target {
                    name,
                    hostname: DEFAULT_TARGET_HOSTNAME.into(),
                    subnode_hostname: DEFAULT_SUBNODE_HOSTNAME.into(),
                    rate: Duration::from_secs(1),
                    jenkins: None,
                },
            );
        }
        out
    }

    /// A directory a provider image or a label needs, reported where it is needed.
    fn needs_dir(&mut self, path: &str, what: &str, dir: &str, present: bool) {
        if !present {
            self.problem(path, format!("{what} needs `{dir}`, which is not set"));
        }
    }
}

/// `dburi` -> the SQLite file. Accepts `sqlite:///abs/path.db`, `sqlite:////abs/path.db` and a
/// plain path (relative to the configuration file's directory).
pub(super) fn database_path(uri: &str, base_dir: &Path) -> Result<PathBuf, String> {
    let uri = uri.trim();
    let path = if let Some(rest) = uri.strip_prefix("sqlite://") {
        rest
    } else if let Some((scheme, _)) = uri.split_once("://") {
        return Err(format!(
            "`{scheme}://` databases are not supported: nodepool keeps its state in one SQLite file; \
             set `dburi: sqlite:///var/lib/nodepool/nodepool.db` or a plain path"
        ));
    } else {
        uri
    };
    if path.is_empty() || path.contains(":memory:") {
        return Err("needs a database file path; an in-memory database would forget everything between runs".into());
    }
    if path.starts_with('/') {
        Ok(PathBuf::from(format!("/{}", path.trim_start_matches('/'))))
    } else {
        Ok(base_dir.join(path))
    }
}

/// The replacement fields of a Python `str.format` template (`{a.b}`), `{{`/`}}` escapes.
pub(super) fn template_fields(template: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
            }
            '{' => {
                let mut field = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') | None => {
                            return Err(format!("unbalanced `{{` in template `{template}`"))
                        }
                        Some(c) => field.push(c),
                    }
                }
                // `{node_id:05d}`: the format spec is not part of the name.
                let name = field
                    .split([':', '!'])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                fields.push(name);
            }
            '}' => {
                return Err(format!(
                    "unbalanced `}}` in template `{template}` (write `}}}}` for a brace)"
                ))
            }
            _ => {}
        }
    }
    Ok(fields)
}
