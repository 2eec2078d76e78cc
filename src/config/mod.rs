//! The configuration: read (`source`), deserialized into raw serde types (`raw`), then checked
//! and turned into the domain types below (`validate`), collecting every problem at once.
//!
//! All YAML parsing stays in this module, so a move away from the archived `serde_yaml` is a
//! change here only.

mod raw;
mod source;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::{DiskImageName, ImageName, LabelName, ProviderName, Secret, TargetName};

pub use source::{Lines, MAX_CONFIG_BYTES};
pub use validate::check_url;

/// A validated configuration. Maps are sorted by name so every consumer iterates in the same
/// order (the planner depends on it for repeatable plans).
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub script_dir: Option<PathBuf>,
    pub elements_dir: Option<PathBuf>,
    pub images_dir: Option<PathBuf>,
    /// Each build's log (`<image>-<version>.log`); by default `build-logs` beside the database.
    pub build_log_dir: PathBuf,
    /// Logs kept per diskimage (`build-log-retention`, default 7, as the newer Nodepool).
    pub build_log_retention: u32,
    /// A node `acquire` handed out and nobody released is deleted this long after
    /// (`max-acquired-age`, default 8 hours, as any node used that long).
    pub max_acquired_age: Duration,
    /// Runs older than this leave the journal (`history-max-age`, default 30 days).
    pub history_max_age: Duration,
    /// Written after every run that changes something, for node_exporter's textfile
    /// collector (`prometheus-textfile`; none by default).
    pub prometheus_textfile: Option<PathBuf>,
    /// The SQLite database file.
    pub database: PathBuf,
    /// Schedules of 2015's internal cron; timers run the work now, these only seed them.
    pub cron: Cron,
    pub gearman_servers: Vec<GearmanServer>,
    pub labels: BTreeMap<LabelName, Label>,
    pub diskimages: BTreeMap<DiskImageName, DiskImage>,
    pub providers: BTreeMap<ProviderName, Provider>,
    pub targets: BTreeMap<TargetName, Target>,
    /// Things accepted but worth telling the operator (ignored keys).
    pub warnings: Vec<String>,
    /// Where each key path stands in the file, for problems found after validation
    /// (`config-validate`'s checks of files and clouds.yaml).
    pub locations: Lines,
}

impl Config {
    /// A problem at `path` (a key path such as `providers[0].cloud`), located in the file.
    pub fn problem_at(&self, path: &str, message: impl Into<String>) -> Problem {
        Problem {
            line: self.locations.find(path),
            path: path.to_string(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    pub cleanup: String,
    pub check: String,
    pub image_update: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GearmanServer {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct Label {
    pub name: LabelName,
    pub image: ImageName,
    /// Nodes to keep ready; `None` when the label is disabled (min-ready -1).
    pub min_ready: Option<u32>,
    pub subnodes: u32,
    pub ready_script: Option<String>,
    pub providers: Vec<ProviderName>,
}

#[derive(Debug, Clone)]
pub struct DiskImage {
    pub name: DiskImageName,
    pub elements: Vec<String>,
    pub release: Option<String>,
    pub qemu_img_options: Option<String>,
    pub env_vars: BTreeMap<String, String>,
    pub pause: bool,
    pub rebuild_age: Duration,
    /// The builder program and its own leading arguments (`dib-cmd`, split at white space;
    /// default `disk-image-create`); nodepool appends the 2015 arguments.
    pub dib_cmd: Vec<String>,
    /// A build running longer is killed, its whole process group (`build-timeout`, default
    /// 8 hours).
    pub build_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Provider {
    /// Its key path in the file (`providers[0]`).
    pub path: String,
    pub name: ProviderName,
    pub auth: ProviderAuth,
    pub region_name: Option<String>,
    pub service_type: Option<String>,
    pub service_name: Option<String>,
    pub max_servers: u32,
    /// Spacing between mutating API calls.
    pub rate: Duration,
    pub availability_zones: Vec<String>,
    /// From ACTIVE to reachable over SSH.
    pub boot_timeout: Duration,
    /// From the create call to ACTIVE.
    pub launch_timeout: Duration,
    pub keypair: Option<String>,
    pub networks: Vec<Network>,
    pub ipv6_preferred: bool,
    /// Floating IP pool for servers without a public address.
    pub pool: Option<String>,
    pub api_timeout: Option<Duration>,
    /// The most one round's listing (or the connect) of this provider may take, every page,
    /// retry and token call included; past it the provider is unreachable for that round, so
    /// one slow cloud cannot hold up the others.
    pub listing_timeout: Duration,
    /// Most mutating calls in flight at once (`max-concurrency`, newer Nodepool's key); none:
    /// `rate` and the executor's threads per provider bound them.
    pub max_concurrency: Option<u32>,
    /// Keep the Keystone token in the database between runs (`token-cache`, default true), so
    /// a steady run needs no token call.
    pub token_cache: bool,
    /// How long a listing of the cloud's images or flavors is reused (`cache-ttl`, default
    /// 10 minutes; zero lists them every round).
    pub cache_ttl: Duration,
    /// A new image nodepool made whose first this many launches in a row failed, none ready,
    /// is marked failed and launches fall back to the previous one (`rollback-after`,
    /// default 3).
    pub rollback_after: u32,
    pub template_hostname: String,
    pub image_type: Option<String>,
    pub clean_floating_ips: bool,
    /// False: a node is ready once ACTIVE with an address, without SSH.
    pub host_key_checking: bool,
    /// Mutating cloud calls one reconcile round may make here (`max-actions-per-pass`).
    pub max_actions_per_pass: u32,
    pub images: BTreeMap<ImageName, ProviderImage>,
}

/// How to log into a provider's cloud.
#[derive(Debug, Clone)]
pub enum ProviderAuth {
    /// `cloud: NAME` from clouds.yaml.
    CloudsYaml { cloud: String },
    /// The 2015 inline keys.
    Inline {
        auth_url: String,
        username: String,
        password: Secret,
        project: Project,
        user_domain_name: Option<String>,
        project_domain_name: Option<String>,
    },
}

/// The project to scope the token to. The 2015 key `project-id` held the project's *name*
/// (novaclient's meaning then), as does `project-name`; `project-uuid` gives the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Project {
    Name(String),
    Id(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Id(String),
    Label(String),
    Name { name: String, public: bool },
}

#[derive(Debug, Clone)]
pub struct ProviderImage {
    /// Its key path in the file (`providers[0].images[1]`).
    pub path: String,
    pub name: ImageName,
    pub source: ImageSource,
    pub min_ram: u64,
    pub name_filter: Option<String>,
    pub reset: Option<String>,
    pub username: String,
    pub user_home: String,
    pub private_key: PathBuf,
    /// `private-key` was left out: the 2015 default is used.
    pub private_key_is_default: bool,
    pub meta: BTreeMap<String, String>,
    pub config_drive: bool,
    pub pause: bool,
    pub connection_port: u16,
}

/// Where a provider image comes from; nodes always boot from the newest ready one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// The cloud's own image (by UUID or name), used as it is.
    Cloud { base_image: String },
    /// Boot `base_image`, run `setup` from script-dir, snapshot the server.
    Snapshot { base_image: String, setup: String },
    /// Built locally by diskimage-builder and uploaded.
    DiskImage { diskimage: DiskImageName },
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: TargetName,
    pub hostname: String,
    pub subnode_hostname: String,
    pub rate: Duration,
    pub jenkins: Option<Jenkins>,
}

#[derive(Debug, Clone)]
pub struct Jenkins {
    pub url: String,
    pub user: Option<String>,
    pub apikey: Option<Secret>,
    pub credentials_id: Option<String>,
    pub test_job: Option<String>,
}

/// One thing wrong with a configuration, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub line: Option<usize>,
    /// Key path such as `providers[0].images[1].min-ram`; empty for the whole file.
    pub path: String,
    pub message: String,
}

/// Every problem found in one file. `Display` prints one per line as `file:line: path: message`.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
    /// A last line that says what to do about them, if there is more to say.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.problems {
            write!(f, "{}", self.file.display())?;
            if let Some(line) = problem.line {
                write!(f, ":{line}")?;
            }
            if problem.path.is_empty() {
                writeln!(f, ": {}", problem.message)?;
            } else {
                writeln!(f, ": {}: {}", problem.path, problem.message)?;
            }
        }
        let n = self.problems.len();
        writeln!(
            f,
            "{}: configuration invalid: {n} problem{}",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        if let Some(hint) = &self.hint {
            writeln!(f, "{}: {hint}", self.file.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Read, parse and validate the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let fail = |line, message: String| ConfigError {
        file: path.to_path_buf(),
        problems: vec![Problem {
            line,
            path: String::new(),
            message,
        }],
        hint: None,
    };
    let document = source::read(path).map_err(|e| fail(e.line, e.message))?;
    validate::validate(path, document).map_err(|problems| ConfigError {
        file: path.to_path_buf(),
        problems,
        hint: None,
    })
}

#[cfg(test)]
mod tests;

/// Fill a hostname template (Python `str.format` style, as validated: `{label.name}`,
/// `{node_id}`, `{{`/`}}`, and a zero-padded width such as `{node_id:05d}`). A field without
/// a value is left empty; validation has already refused unknown ones.
pub fn render_template(template: &str, fields: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let field: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let (name, spec) = field.split_once(':').unwrap_or((&field, ""));
                let value = fields
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map_or("", |(_, value)| *value);
                let width: usize = spec
                    .trim_start_matches('0')
                    .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                    .parse()
                    .unwrap_or(0);
                let fill = if spec.starts_with('0') { '0' } else { ' ' };
                for _ in value.chars().count()..width {
                    out.push(fill);
                }
                out.push_str(value);
            }
            c => out.push(c),
        }
    }
    out
}
