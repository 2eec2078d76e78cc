//! `nodepool -c FILE config-validate` run as a program, on broken, hostile and example
//! configurations: the exit status (78 for an invalid file), each problem's message and its
//! location (`file:LINE: key.path: message`), and that hostile files are refused quickly.
//!
//! Configurations are written inline; a `# line N` comment marks the line a problem is expected
//! at (line 1 is the first line of the literal).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// EX_CONFIG: the configuration is invalid.
const CONFIG_INVALID: i32 = 78;

/// A run longer than this is a hang: the process is killed and the test fails.
const TIME_LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Helpers: running the binary, writing configurations, reading its report.
// ---------------------------------------------------------------------------------------------

/// What one run of the binary did.
struct Outcome {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Run `nodepool ARGS` with a bounded wait: poll for up to `TIME_LIMIT`, then kill and fail.
fn nodepool<S: AsRef<OsStr>>(args: &[S]) -> Outcome {
    let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodepool"))
        .args(&args)
        .env_remove("NODEPOOL_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nodepool");
    // Drained while we wait, so a chatty child never blocks on a full pipe.
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for nodepool") {
            break status;
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nodepool {args:?} still running after {TIME_LIMIT:?}: killed");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Outcome {
        status: status
            .code()
            .unwrap_or_else(|| panic!("nodepool {args:?} ended by a signal: {status}")),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// `nodepool -c PATH [EXTRA...] COMMAND`.
fn run_on(path: &Path, command: &[&str]) -> Outcome {
    let mut args: Vec<&OsStr> = vec![OsStr::new("-c"), path.as_os_str()];
    args.extend(command.iter().map(OsStr::new));
    nodepool(&args)
}

/// `config-validate --file-only`: the file's own problems, whatever this host has.
fn validate(path: &Path) -> Outcome {
    run_on(path, &["config-validate", "--file-only"])
}

/// `config-validate --format json`, parsed.
fn validate_json(path: &Path) -> (i32, serde_json::Value) {
    let outcome = run_on(
        path,
        &["--format", "json", "config-validate", "--file-only"],
    );
    let report = serde_json::from_str(&outcome.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            outcome.stdout, outcome.stderr
        )
    });
    (outcome.status, report)
}

/// A configuration file alone in a temporary directory (removed when dropped).
struct ConfigFile {
    _dir: TempDir,
    path: PathBuf,
}

impl ConfigFile {
    /// `name` in a new temporary directory, holding exactly `bytes`.
    fn raw(name: &str, bytes: impl AsRef<[u8]>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(name);
        fs::write(&path, bytes).expect("write the configuration");
        ConfigFile { _dir: dir, path }
    }

    /// A `nodepool.yaml` from an indented literal (see `dedent`).
    fn yaml(text: &str) -> Self {
        Self::raw("nodepool.yaml", dedent(text))
    }

    fn validate(&self) -> Outcome {
        validate(&self.path)
    }

    /// How a problem at `line` and `path` starts: `file:LINE: key.path: `.
    fn at(&self, line: usize, path: &str) -> String {
        format!("{}:{line}: {path}: ", self.path.display())
    }
}

/// An indented raw string as file text: the first newline dropped and the indentation common
/// to all non-blank lines removed, so the literal's first line is line 1 of the file.
fn dedent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

impl Outcome {
    /// Exit 78, nothing on stdout, and stderr of problem lines closed by the summary line
    /// `file: configuration invalid: N problem(s)` matching their count. Returns the problems.
    fn assert_invalid(&self, file: &Path) -> Vec<String> {
        assert_eq!(
            self.status, CONFIG_INVALID,
            "expected exit 78; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert_eq!(self.stdout, "", "nothing on stdout for an invalid file");
        let mut lines: Vec<&str> = self.stderr.lines().collect();
        let summary = lines.pop().expect("stderr is empty");
        let n = lines.len();
        let expected = format!(
            "{}: configuration invalid: {n} problem{}",
            file.display(),
            if n == 1 { "" } else { "s" }
        );
        assert_eq!(summary, expected, "stderr:\n{}", self.stderr);
        lines.into_iter().map(str::to_owned).collect()
    }
}

/// `problems` has a line starting with `location` and containing every one of `parts`.
fn assert_reported(problems: &[String], location: &str, parts: &[&str]) {
    let found = problems
        .iter()
        .any(|p| p.starts_with(location) && parts.iter().all(|part| p.contains(part)));
    assert!(
        found,
        "no problem at `{location}` mentioning {parts:?}; reported:\n{}",
        problems.join("\n")
    );
}

/// Validating `yaml` fails with exactly one problem, at `line` and key `path`, whose message
/// contains each of `parts`.
fn assert_one_problem(yaml: &str, line: usize, path: &str, parts: &[&str]) {
    let config = ConfigFile::yaml(yaml);
    let problems = config.validate().assert_invalid(&config.path);
    assert_reported(&problems, &config.at(line, path), parts);
    assert_eq!(
        problems.len(),
        1,
        "one problem only:\n{}",
        problems.join("\n")
    );
}

/// A hostile or unreadable file is refused (exit 78, in time) with one problem mentioning
/// `parts`, located at `line` when given.
fn assert_refused(path: &Path, line: Option<usize>, parts: &[&str]) {
    let problems = validate(path).assert_invalid(path);
    let location = match line {
        Some(line) => format!("{}:{line}: ", path.display()),
        None => format!("{}: ", path.display()),
    };
    assert_reported(&problems, &location, parts);
    assert_eq!(
        problems.len(),
        1,
        "one problem only:\n{}",
        problems.join("\n")
    );
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// The `config-validate --format json` report of a valid file, without its `file` key.
fn valid_report_without_file(path: &Path) -> serde_json::Value {
    let (status, mut report) = validate_json(path);
    assert_eq!(status, 0, "{}: {report:#}", path.display());
    assert_eq!(report["valid"], true, "{report:#}");
    report
        .as_object_mut()
        .expect("the report is a JSON object")
        .remove("file");
    report
}

// ---------------------------------------------------------------------------------------------
// Keys and types.
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_top_level_key_suggests_the_closest_name() {
    assert_one_problem(
        r#"
        lables:                        # line 1
          - name: ubuntu
            image: ubuntu-jammy
        "#,
        1,
        "lables",
        &["unknown key `lables`", "did you mean `labels`?"],
    );
}

#[test]
fn unknown_nested_key_suggests_the_closest_name() {
    assert_one_problem(
        r#"
        labels:
          - name: ubuntu
            image: ubuntu-jammy
            min_ready: 1               # line 4
            providers:
              - name: mycloud
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            images:
              - name: ubuntu-jammy
                base-image: 'Ubuntu 22.04'
                min-ram: 2048
        "#,
        4,
        "labels[0].min_ready",
        &["unknown key `min_ready`", "did you mean `min-ready`?"],
    );
}

#[test]
fn a_string_where_an_integer_belongs_is_a_type_error() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: ten           # line 4
        "#,
        4,
        "providers[0].max-servers",
        &["expected a whole number", "\"ten\""],
    );
}

#[test]
fn a_list_where_a_mapping_belongs_is_a_type_error() {
    assert_one_problem(
        r#"
        dburi: /var/lib/nodepool/nodepool.db
        cron:                          # line 2
          - '*/5 * * * *'
        "#,
        2,
        "cron",
        &["expected a mapping", "found a list"],
    );
}

#[test]
fn a_mapping_where_a_list_belongs_is_a_type_error() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            networks:                  # line 5
              net-id: 0e5c4f3a
        "#,
        5,
        "providers[0].networks",
        &["expected a list", "found a mapping"],
    );
}

// ---------------------------------------------------------------------------------------------
// Values and required keys.
// ---------------------------------------------------------------------------------------------

#[test]
fn min_ready_below_minus_one_is_refused() {
    assert_one_problem(
        r#"
        labels:
          - name: ubuntu
            image: ubuntu-jammy
            min-ready: -2              # line 4
            providers:
              - name: mycloud
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            images:
              - name: ubuntu-jammy
                base-image: 'Ubuntu 22.04'
                min-ram: 2048
        "#,
        4,
        "labels[0].min-ready",
        &["must be -1 (disabled) or more", "found -2"],
    );
}

#[test]
fn an_invalid_min_ready_is_not_replaced_by_the_default_in_other_messages() {
    // A disabled-looking label without providers: the one problem is the value -2. Checking
    // the label further with the default min-ready 2 would report a "min-ready 2" the file
    // does not contain.
    assert_one_problem(
        r#"
        labels:
          - name: ubuntu
            image: ubuntu-jammy
            min-ready: -2              # line 4
        "#,
        4,
        "labels[0].min-ready",
        &["found -2"],
    );
}

#[test]
fn negative_max_servers_is_refused() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: -1            # line 4
        "#,
        4,
        "providers[0].max-servers",
        &["must be 0 or more", "found -1"],
    );
}

#[test]
fn a_listing_timeout_of_zero_is_refused() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 1
            listing-timeout: 0         # line 5
        "#,
        5,
        "providers[0].listing-timeout",
        &["must be a number of seconds, more than 0", "found 0"],
    );
}

#[test]
fn a_rollback_after_of_zero_is_refused() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 1
            rollback-after: 0          # line 5
        "#,
        5,
        "providers[0].rollback-after",
        &["must be 1 or more", "found 0"],
    );
}

#[test]
fn a_max_concurrency_of_zero_is_refused() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 1
            max-concurrency: 0         # line 5
        "#,
        5,
        "providers[0].max-concurrency",
        &["must be 1 or more", "found 0"],
    );
}

#[test]
fn a_build_timeout_of_zero_is_refused() {
    assert_one_problem(
        r#"
        diskimages:
          - name: ubuntu-dib
            elements: [ubuntu]
            build-timeout: 0           # line 4
        "#,
        4,
        "diskimages[0].build-timeout",
        &["must be a number of seconds, more than 0", "found 0"],
    );
}

#[test]
fn a_build_log_retention_of_zero_is_refused() {
    assert_one_problem(
        r#"
        build-log-retention: 0         # line 1
        "#,
        1,
        "build-log-retention",
        &["must be 1 or more", "found 0"],
    );
}

#[test]
fn a_max_acquired_age_of_zero_is_refused() {
    assert_one_problem(
        r#"
        max-acquired-age: 0            # line 1
        "#,
        1,
        "max-acquired-age",
        &["must be a number of seconds, more than 0", "found 0"],
    );
}

#[test]
fn a_history_max_age_of_zero_is_refused() {
    assert_one_problem(
        r#"
        history-max-age: 0             # line 1
        "#,
        1,
        "history-max-age",
        &["must be a number of seconds, more than 0", "found 0"],
    );
}

#[test]
fn a_provider_without_max_servers_is_refused() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud              # line 2
            cloud: mycloud
        "#,
        2,
        "providers[0]",
        &["missing required key `max-servers`"],
    );
}

#[test]
fn a_label_without_a_name_is_refused() {
    assert_one_problem(
        r#"
        labels:
          - image: ubuntu-jammy        # line 2
            min-ready: -1
        "#,
        2,
        "labels[0]",
        &["missing required key `name`"],
    );
}

#[test]
fn connection_port_zero_is_refused() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            images:
              - name: ubuntu-jammy
                base-image: 'Ubuntu 22.04'
                min-ram: 2048
                connection-port: 0     # line 9
        "#,
        9,
        "providers[0].images[0].connection-port",
        &["must be a port from 1 to 65535", "found 0"],
    );
}

#[test]
fn a_cron_schedule_needs_five_fields() {
    assert_one_problem(
        r#"
        cron:
          cleanup: '*/1 * * * *'
          check: 'every 15 minutes'    # line 3
        "#,
        3,
        "cron.check",
        &["cron schedule of 5 fields", "`every 15 minutes`"],
    );
}

#[test]
fn a_mysql_dburi_is_refused_in_favour_of_sqlite() {
    assert_one_problem(
        r#"
        script-dir: /etc/nodepool/scripts
        dburi: 'mysql://nodepool:secret@localhost/nodepool'  # line 2
        "#,
        2,
        "dburi",
        &["`mysql://` databases are not supported", "SQLite"],
    );
}

// ---------------------------------------------------------------------------------------------
// Provider images.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_provider_image_needs_a_source() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            images:
              - name: ubuntu-jammy     # line 6
                min-ram: 2048
        "#,
        6,
        "providers[0].images[0]",
        &["missing image source", "`base-image`", "`diskimage`"],
    );
}

#[test]
fn setup_without_base_image_is_refused() {
    assert_one_problem(
        r#"
        script-dir: /etc/nodepool/scripts
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            images:
              - name: ubuntu-jammy     # line 7
                min-ram: 2048
                setup: prepare_node.sh
        "#,
        7,
        "providers[0].images[0]",
        &["`setup` needs `base-image`"],
    );
}

#[test]
fn diskimage_and_base_image_together_load_as_in_2015_with_a_warning() {
    let config = ConfigFile::yaml(
        r#"
        elements-dir: /etc/nodepool/elements
        images-dir: /opt/nodepool_dib
        diskimages:
          - name: ubuntu-jammy
            elements: [ubuntu, vm]
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            images:
              - name: ubuntu-jammy
                base-image: 'Ubuntu 22.04'
                diskimage: ubuntu-jammy  # line 13
                min-ram: 2048
        "#,
    );
    let outcome = config.validate();
    assert_eq!(outcome.status, 0, "stderr:\n{}", outcome.stderr);
    assert!(
        outcome.stderr.contains(&format!(
            "{}: warning: line 13: providers[0].images[0].diskimage: both `diskimage` and \
             `base-image` are set; as in 2015, the diskimage `ubuntu-jammy` is used",
            config.path.display()
        )),
        "stderr:\n{}",
        outcome.stderr
    );
    let loaded = nodepool::config::load(&config.path).expect("loads");
    let image = &loaded.providers["mycloud"].images["ubuntu-jammy"];
    assert!(
        matches!(&image.source, nodepool::config::ImageSource::DiskImage { diskimage } if diskimage.as_str() == "ubuntu-jammy"),
        "{:?}",
        image.source
    );
}

#[test]
fn a_provider_image_naming_an_unknown_diskimage_suggests_the_closest() {
    assert_one_problem(
        r#"
        elements-dir: /etc/nodepool/elements
        images-dir: /opt/nodepool_dib
        diskimages:
          - name: devstack-trusty
            elements: [ubuntu, vm]
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            images:
              - name: devstack-trusty
                diskimage: devstack-trusy  # line 12
                min-ram: 8192
        "#,
        12,
        "providers[0].images[0].diskimage",
        &[
            "no diskimage named `devstack-trusy`",
            "did you mean `devstack-trusty`?",
        ],
    );
}

#[test]
fn a_snapshot_image_needs_script_dir_reported_at_the_image() {
    // The setup script is copied from script-dir; the image that needs it is where to look.
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            images:
              - name: ubuntu-jammy     # line 6
                base-image: 'Ubuntu 22.04'
                min-ram: 2048
                setup: prepare_node.sh
        "#,
        6,
        "providers[0].images[0]",
        &["needs `script-dir`"],
    );
}

#[test]
fn meta_with_six_entries_is_refused() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            images:
              - name: ubuntu-jammy
                base-image: 'Ubuntu 22.04'
                min-ram: 2048
                meta:                  # line 9
                  a: '1'
                  b: '2'
                  c: '3'
                  d: '4'
                  e: '5'
                  f: '6'
        "#,
        9,
        "providers[0].images[0].meta",
        &["at most 5 entries", "found 6"],
    );
}

#[test]
fn a_meta_value_over_255_characters_is_refused() {
    let yaml = format!(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            images:
              - name: ubuntu-jammy
                base-image: 'Ubuntu 22.04'
                min-ram: 2048
                meta:
                  purpose: {}          # line 10
        "#,
        "x".repeat(256)
    );
    assert_one_problem(
        &yaml,
        10,
        "providers[0].images[0].meta.purpose",
        &["at most 255 characters"],
    );
}

// ---------------------------------------------------------------------------------------------
// Providers: networks, credentials, hostname templates.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_network_naming_two_of_net_id_net_label_and_name_is_refused() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            networks:
              - net-id: 0e5c4f3a       # line 6
                net-label: private
        "#,
        6,
        "providers[0].networks[0]",
        &["exactly one of `net-id`, `net-label` or `name`"],
    );
}

#[test]
fn cloud_and_inline_credentials_together_are_refused() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud             # line 3
            username: nodepool
            password: secret
            max-servers: 10
        "#,
        3,
        "providers[0].cloud",
        &[
            "either `cloud` (clouds.yaml) or inline credentials, not both",
            "username, password",
        ],
    );
}

#[test]
fn a_provider_without_any_credentials_is_refused() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud              # line 2
            region-name: RegionOne
            max-servers: 10
        "#,
        2,
        "providers[0]",
        &[
            "no credentials",
            "`cloud: NAME`",
            "missing: username, password, auth-url, project-id",
        ],
    );
}

#[test]
fn template_hostname_with_an_unknown_field_is_refused() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            template-hostname: '{label.name}-{timestamp}.template.example.org'  # line 5
        "#,
        5,
        "providers[0].template-hostname",
        &[
            "unknown field `{label.name}` in template",
            "{image.name}, {provider.name}, {timestamp}",
        ],
    );
}

#[test]
fn target_hostname_with_an_unknown_field_is_refused() {
    assert_one_problem(
        r#"
        targets:
          - name: jenkins01
            hostname: '{label.name}-{node.id}.slave.example.org'  # line 3
        "#,
        3,
        "targets[0].hostname",
        &["unknown field `{node.id}` in template", "{node_id}"],
    );
}

#[test]
fn an_unbalanced_brace_in_a_template_is_refused() {
    assert_one_problem(
        r#"
        targets:
          - name: jenkins01
            hostname: '{label.name}-{node_id}'
            subnode-hostname: '{label.name-{node_id}-{subnode_id}'  # line 4
        "#,
        4,
        "targets[0].subnode-hostname",
        &["unbalanced `{` in template"],
    );
}

// ---------------------------------------------------------------------------------------------
// Names and cross references.
// ---------------------------------------------------------------------------------------------

#[test]
fn duplicate_label_names_are_refused() {
    assert_one_problem(
        r#"
        labels:
          - name: ubuntu
            image: ubuntu-jammy
            min-ready: -1
          - name: ubuntu               # line 5
            image: ubuntu-noble
            min-ready: -1
        "#,
        5,
        "labels[1].name",
        &["duplicate label name `ubuntu`"],
    );
}

#[test]
fn duplicate_provider_names_are_refused() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
          - name: mycloud              # line 5
            cloud: othercloud
            max-servers: 5
        "#,
        5,
        "providers[1].name",
        &["duplicate provider name `mycloud`"],
    );
}

#[test]
fn duplicate_image_names_in_a_provider_are_refused() {
    assert_one_problem(
        r#"
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            images:
              - name: ubuntu-jammy
                base-image: 'Ubuntu 22.04'
                min-ram: 2048
              - name: ubuntu-jammy     # line 9
                base-image: 'Ubuntu 22.04 minimal'
                min-ram: 1024
        "#,
        9,
        "providers[0].images[1].name",
        &["duplicate image name `ubuntu-jammy`"],
    );
}

#[test]
fn a_label_naming_an_unknown_provider_suggests_the_closest() {
    assert_one_problem(
        r#"
        labels:
          - name: ubuntu
            image: ubuntu-jammy
            providers:
              - name: mycloud-eats     # line 5
        providers:
          - name: mycloud-east
            cloud: mycloud
            max-servers: 10
            images:
              - name: ubuntu-jammy
                base-image: 'Ubuntu 22.04'
                min-ram: 2048
          - name: mycloud-west
            cloud: mycloud
            max-servers: 10
            images:
              - name: ubuntu-jammy
                base-image: 'Ubuntu 22.04'
                min-ram: 2048
        "#,
        5,
        "labels[0].providers[0].name",
        &[
            "no provider named `mycloud-eats`",
            "did you mean `mycloud-east`?",
        ],
    );
}

#[test]
fn a_label_image_missing_in_one_of_its_providers_is_refused() {
    assert_one_problem(
        r#"
        labels:
          - name: ubuntu
            image: ubuntu-jammy
            providers:
              - name: east
              - name: west             # line 6
        providers:
          - name: east
            cloud: mycloud
            max-servers: 10
            images:
              - name: ubuntu-jammy
                base-image: 'Ubuntu 22.04'
                min-ram: 2048
          - name: west
            cloud: mycloud
            max-servers: 10
            images:
              - name: centos-9
                base-image: 'CentOS Stream 9'
                min-ram: 2048
        "#,
        6,
        "labels[0].providers[1].name",
        &[
            "provider `west` has no image `ubuntu-jammy`",
            "(the image of label `ubuntu`)",
        ],
    );
}

#[test]
fn a_label_on_a_provider_without_credentials_does_not_call_that_provider_unknown() {
    // The provider exists; its one problem is the credentials. "no provider named `mycloud`"
    // would send the operator looking for a typo that is not there.
    assert_one_problem(
        r#"
        labels:
          - name: ubuntu
            image: ubuntu-jammy
            providers:
              - name: mycloud
        providers:
          - name: mycloud              # line 7
            max-servers: 10
            images:
              - name: ubuntu-jammy
                base-image: 'Ubuntu 22.04'
                min-ram: 2048
        "#,
        7,
        "providers[0]",
        &["no credentials"],
    );
}

#[test]
fn a_label_whose_provider_image_is_invalid_does_not_call_that_image_missing() {
    // The image is there; its one problem is the missing source.
    assert_one_problem(
        r#"
        labels:
          - name: ubuntu
            image: ubuntu-jammy
            providers:
              - name: mycloud
        providers:
          - name: mycloud
            cloud: mycloud
            max-servers: 10
            images:
              - name: ubuntu-jammy     # line 11
                min-ram: 2048
        "#,
        11,
        "providers[0].images[0]",
        &["missing image source"],
    );
}

// ---------------------------------------------------------------------------------------------
// Many problems, JSON, other commands.
// ---------------------------------------------------------------------------------------------

/// Nine independent problems, one per marked line.
const MANY_PROBLEMS: &str = r#"
    dburi: 'mysql://nodepool@localhost/nodepool'   # line 1
    colour: blue                                   # line 2
    cron:
      check: 'hourly'                              # line 4
    labels:
      - name: ubuntu
        image: ubuntu-jammy
        min-ready: -5                              # line 8
        providers:
          - name: mycloud
          - name: nocloud                          # line 11
    providers:
      - name: mycloud
        cloud: mycloud
        max-servers: -3                            # line 15
        networks:
          - net-id: 0e5c4f3a                       # line 17
            name: private
        images:
          - name: ubuntu-jammy
            base-image: 'Ubuntu 22.04'
            min-ram: 2048
            connection-port: 70000                 # line 23
    targets:
      - name: jenkins01
        hostname: '{label.name}-{uuid}'            # line 26
"#;

#[test]
fn every_problem_is_reported_in_one_run_in_file_order() {
    let config = ConfigFile::yaml(MANY_PROBLEMS);
    let outcome = config.validate();
    let problems = outcome.assert_invalid(&config.path);
    let expected = [
        (1, "dburi", "SQLite"),
        (2, "colour", "unknown key `colour`"),
        (4, "cron.check", "cron schedule of 5 fields"),
        (8, "labels[0].min-ready", "found -5"),
        (
            11,
            "labels[0].providers[1].name",
            "no provider named `nocloud`",
        ),
        (15, "providers[0].max-servers", "found -3"),
        (17, "providers[0].networks[0]", "exactly one of"),
        (23, "providers[0].images[0].connection-port", "found 70000"),
        (26, "targets[0].hostname", "unknown field `{uuid}`"),
    ];
    assert_eq!(
        problems.len(),
        expected.len(),
        "reported:\n{}",
        problems.join("\n")
    );
    for (problem, (line, path, part)) in problems.iter().zip(expected) {
        let location = config.at(line, path);
        assert!(
            problem.starts_with(&location) && problem.contains(part),
            "expected `{location}...{part}...`, got `{problem}`"
        );
    }
    assert_eq!(
        outcome.stderr.lines().last(),
        Some(
            format!(
                "{}: configuration invalid: 9 problems",
                config.path.display()
            )
            .as_str()
        )
    );
}

#[test]
fn json_format_reports_problems_as_one_document() {
    let config = ConfigFile::yaml(MANY_PROBLEMS);
    let (status, report) = validate_json(&config.path);
    assert_eq!(status, CONFIG_INVALID, "{report:#}");
    assert_eq!(report["valid"], false, "{report:#}");
    let problems = report["problems"].as_array().expect("a `problems` array");
    assert_eq!(problems.len(), 9, "{report:#}");
    for problem in problems {
        assert!(problem["line"].is_u64(), "{problem}");
        assert!(problem["path"].is_string(), "{problem}");
        assert!(problem["message"].is_string(), "{problem}");
    }
    assert_eq!(problems[0]["line"], 1);
    assert_eq!(problems[0]["path"], "dburi");
    assert_eq!(problems[1]["path"], "colour");
    assert!(problems[1]["message"]
        .as_str()
        .is_some_and(|m| m.contains("unknown key `colour`")));
}

#[test]
fn other_commands_refuse_an_invalid_configuration_the_same_way() {
    let config = ConfigFile::yaml(MANY_PROBLEMS);
    let validated = config.validate();
    let listed = run_on(&config.path, &["list"]);
    assert_eq!(listed.status, CONFIG_INVALID, "stderr:\n{}", listed.stderr);
    assert_eq!(listed.stdout, "");
    assert_eq!(listed.stderr, validated.stderr);
}

// ---------------------------------------------------------------------------------------------
// Hostile and unreadable files: refused with a clear message, quickly (see `nodepool`).
// ---------------------------------------------------------------------------------------------

#[test]
fn an_empty_file_is_refused() {
    let config = ConfigFile::raw("nodepool.yaml", "");
    assert_refused(&config.path, None, &["the file is empty"]);
}

#[test]
fn a_whitespace_only_file_is_refused_as_empty() {
    let config = ConfigFile::raw("nodepool.yaml", " \n\t\n   \n");
    assert_refused(&config.path, None, &["the file is empty"]);
}

#[test]
fn non_utf8_bytes_are_refused_with_their_line() {
    let config = ConfigFile::raw("nodepool.yaml", b"labels:\n  - name: \xff\xfe\n".as_slice());
    assert_refused(&config.path, Some(2), &["not valid UTF-8", "byte 18"]);
}

#[test]
fn a_directory_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("nodepool.yaml");
    fs::create_dir(&path).expect("create the directory");
    assert_refused(&path, None, &["is a directory"]);
}

#[test]
fn a_missing_file_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("nodepool.yaml");
    assert_refused(&path, None, &["no such file", "-c CONFIG"]);
}

#[test]
fn a_yaml_alias_bomb_is_refused() {
    // Billion laughs: ten levels of nine aliases each, 9^9 strings once expanded.
    let mut yaml = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in b'b'..=b'j' {
        let (name, prev) = (level as char, (level - 1) as char);
        let aliases = vec![format!("*{prev}"); 9].join(", ");
        yaml.push_str(&format!("{name}: &{name} [{aliases}]\n"));
    }
    let config = ConfigFile::raw("nodepool.yaml", yaml);
    assert_refused(&config.path, None, &["invalid YAML", "repetition limit"]);
}

#[test]
fn deep_nesting_is_refused() {
    let config = ConfigFile::raw("nodepool.yaml", "[".repeat(100_000));
    assert_refused(&config.path, Some(1), &["invalid YAML", "recursion limit"]);
}

#[test]
fn a_file_over_the_size_limit_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("nodepool.yaml");
    // Sparse: 50 MB long, nothing written.
    File::create(&path)
        .and_then(|f| f.set_len(50 * 1024 * 1024))
        .expect("create a sparse file");
    assert_refused(
        &path,
        None,
        &["52428800 bytes", "a configuration is at most 4194304 bytes"],
    );
}

#[test]
fn invalid_toml_is_refused_with_its_line() {
    let config = ConfigFile::raw(
        "nodepool.toml",
        "dburi = \"/var/lib/nodepool/nodepool.db\"\n\n[[labels]]\nname = ubuntu\n",
    );
    assert_refused(&config.path, Some(4), &["invalid TOML"]);
}

#[test]
fn a_top_level_list_is_refused() {
    let config = ConfigFile::raw("nodepool.yaml", "- labels\n- providers\n");
    assert_refused(
        &config.path,
        Some(1),
        &["expected a mapping of sections", "found a list"],
    );
}

// ---------------------------------------------------------------------------------------------
// The shipped examples.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_example_configuration_is_valid() {
    let dir = fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")).expect("examples/");
    let mut validated = Vec::new();
    for entry in dir {
        let path = entry.expect("examples/ entry").path();
        let is_config = path
            .extension()
            .and_then(OsStr::to_str)
            .is_some_and(|ext| matches!(ext, "yaml" | "yml" | "toml"));
        if !is_config || path.file_name() == Some(OsStr::new("clouds.yaml")) {
            continue;
        }
        let outcome = validate(&path);
        assert_eq!(
            outcome.status,
            0,
            "{} is invalid:\n{}",
            path.display(),
            outcome.stderr
        );
        validated.push(path);
    }
    assert!(
        validated.len() >= 4,
        "too few examples validated: {validated:?}"
    );
}

#[test]
fn the_example_clouds_yaml_has_a_clouds_mapping() {
    let text = fs::read_to_string(example("clouds.yaml")).expect("read examples/clouds.yaml");
    let document: serde_yaml::Value = serde_yaml::from_str(&text).expect("clouds.yaml is YAML");
    let clouds = document
        .get("clouds")
        .and_then(serde_yaml::Value::as_mapping)
        .expect("a top-level `clouds` mapping");
    assert!(clouds.contains_key("mycloud"), "{clouds:?}");
}

#[test]
fn the_minimal_example_means_the_same_in_yaml_and_toml() {
    assert_eq!(
        valid_report_without_file(&example("minimal.yaml")),
        valid_report_without_file(&example("minimal.toml"))
    );
}

#[test]
fn the_2015_example_means_the_same_in_yaml_and_toml() {
    assert_eq!(
        valid_report_without_file(&example("nodepool-2015.yaml")),
        valid_report_without_file(&example("nodepool-2015.toml"))
    );
}

#[test]
fn the_2015_example_is_valid_with_a_warning_that_zmq_publishers_is_ignored() {
    let path = example("nodepool-2015.yaml");
    let outcome = validate(&path);
    assert_eq!(outcome.status, 0, "stderr:\n{}", outcome.stderr);
    assert!(
        outcome.stdout.contains("configuration valid"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome.stderr.contains(&format!(
            "{}: warning: zmq-publishers is ignored",
            path.display()
        )),
        "stderr:\n{}",
        outcome.stderr
    );
}

#[test]
fn yaml_merge_keys_are_applied_as_pyyaml_did() {
    // 2015 files were read by PyYAML, which applies `<<: *anchor`; a shared block of
    // provider settings must load, and an error inside it still names its place.
    let file = ConfigFile::yaml(
        "
        defaults: &defaults
          cloud: mycloud
          max-servers: 10
        ",
    );
    // `defaults` is not a nodepool section: refused with its line.
    let problems = file.validate().assert_invalid(&file.path);
    assert_reported(
        &problems,
        &file.at(1, "defaults"),
        &["unknown key `defaults`"],
    );

    let file = ConfigFile::yaml(
        "
        providers:
          - &base
            name: one
            cloud: mycloud
            max-servers: 10
            images:
              - name: jammy
                base-image: Ubuntu 22.04
                min-ram: 2048
          - <<: *base
            name: two
            max-servers: 4
        labels:
          - name: ubuntu
            image: jammy
            providers:
              - name: one
              - name: two
        ",
    );
    let (status, report) = validate_json(&file.path);
    assert_eq!(status, 0, "{report}");
    assert_eq!(report["checked"]["providers"], 2);
    assert_eq!(report["checked"]["provider_images"], 2);
}

#[test]
fn a_project_is_named_by_exactly_one_of_project_id_name_or_uuid() {
    let provider = |project: &str| {
        format!(
            "providers:\n  - name: p\n    auth-url: http://keystone/v3\n    username: u\n    password: pw\n{project}    max-servers: 1\n"
        )
    };
    let file = ConfigFile::raw(
        "nodepool.yaml",
        provider("    project-uuid: 0123456789abcdef\n"),
    );
    assert_eq!(validate_json(&file.path).0, 0);
    let file = ConfigFile::raw(
        "nodepool.yaml",
        provider("    project-id: ci\n    project-uuid: 0123\n"),
    );
    let problems = file.validate().assert_invalid(&file.path);
    assert_reported(
        &problems,
        &file.at(7, "providers[0].project-uuid"),
        &["set one of", "`project-id` is set too"],
    );
}

// ---------------------------------------------------------------------------------------------
// What config-validate checks beyond the file: this host's clouds.yaml and private keys.
// ---------------------------------------------------------------------------------------------

/// `config-validate` with `OS_CLIENT_CONFIG_FILE` set to `clouds` (a path, maybe missing).
fn validate_here(config: &ConfigFile, clouds: &Path) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_nodepool"))
        .arg("-c")
        .arg(&config.path)
        .arg("config-validate")
        .env("OS_CLIENT_CONFIG_FILE", clouds)
        .env("HOME", config.path.parent().unwrap())
        .current_dir(config.path.parent().unwrap())
        .env_remove("RUST_LOG")
        .output()
        .expect("run nodepool");
    Outcome {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A clouds.yaml beside the config: `name` with complete credentials, then `extra` clouds.
fn write_clouds(config: &ConfigFile, name: &str, extra: &str) -> PathBuf {
    let clouds = config.path.with_file_name("clouds.yaml");
    let text = format!(
        "clouds:\n  {name}:\n    auth:\n      auth_url: https://k.example.com/v3\n      \
         username: u\n      password: p\n      project_name: x\n{extra}"
    );
    std::fs::write(&clouds, text).unwrap();
    clouds
}

const ON_A_CLOUD: &str = r#"
        providers:
          - name: p1
            cloud: staging   # line 3
            max-servers: 2
            images:
              - name: trusty
                base-image: Ubuntu
                min-ram: 512
                private-key: KEY   # line 9
        targets:
          - name: jenkins
        "#;

#[test]
fn a_cloud_that_no_clouds_yaml_defines_is_a_problem_naming_the_file_and_its_clouds() {
    let config = ConfigFile::yaml(&ON_A_CLOUD.replace("KEY", "/dev/null"));
    let clouds = write_clouds(&config, "production", "  lab: {}\n");
    let outcome = validate_here(&config, &clouds);
    assert_eq!(outcome.status, 78, "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains(&format!(
            "{}cloud `staging` is not in {}, which defines only: production, lab",
            config.at(3, "providers[0].cloud"),
            clouds.display()
        )),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stderr.contains("--file-only"), "{}", outcome.stderr);
    // The file alone is fine.
    assert_eq!(config.validate().status, 0);
}

#[test]
fn no_clouds_yaml_at_all_names_every_place_looked() {
    let config = ConfigFile::yaml(&ON_A_CLOUD.replace("KEY", "/dev/null"));
    let missing = config.path.with_file_name("nowhere/clouds.yaml");
    let outcome = validate_here(&config, &missing);
    assert_eq!(outcome.status, 78, "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains(&format!(
            "{}cloud `staging`: no clouds.yaml found (looked in {}",
            config.at(3, "providers[0].cloud"),
            missing.display()
        )),
        "{}",
        outcome.stderr
    );
}

#[test]
fn a_private_key_that_does_not_exist_is_a_problem_at_its_line() {
    let config = ConfigFile::yaml(&ON_A_CLOUD.replace("KEY", "/nonexistent/id_rsa"));
    let clouds = write_clouds(&config, "staging", "");
    let outcome = validate_here(&config, &clouds);
    assert_eq!(outcome.status, 78, "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains(&format!(
            "{}`/nonexistent/id_rsa` does not exist",
            config.at(9, "providers[0].images[0].private-key")
        )),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stderr.contains("1 problem"), "{}", outcome.stderr);

    // The same cloud and an existing key: valid.
    let key = config.path.with_file_name("id_rsa");
    std::fs::write(&key, "key").unwrap();
    let good = ConfigFile::yaml(&ON_A_CLOUD.replace("KEY", &key.display().to_string()));
    std::fs::copy(&clouds, good.path.with_file_name("clouds.yaml")).unwrap();
    let outcome = validate_here(&good, &good.path.with_file_name("clouds.yaml"));
    assert_eq!(outcome.status, 0, "{}", outcome.stderr);
}

#[test]
fn a_missing_default_private_key_is_only_a_warning() {
    let config =
        ConfigFile::yaml(&ON_A_CLOUD.replace("                private-key: KEY   # line 9\n", ""));
    let clouds = write_clouds(&config, "staging", "");
    let outcome = validate_here(&config, &clouds);
    if Path::new("/var/lib/jenkins/.ssh/id_rsa").exists() {
        return; // a host with the default key has nothing to warn about
    }
    assert_eq!(outcome.status, 0, "{}", outcome.stderr);
    assert!(
        outcome
            .stderr
            .contains("private-key is not set and the default `/var/lib/jenkins/.ssh/id_rsa`"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn urls_without_a_scheme_or_host_are_refused_for_keystone_and_jenkins() {
    assert_one_problem(
        r#"
        providers:
          - name: p1
            username: u
            password: p
            auth-url: keystone.example.com:5000/v3   # line 5
            project-id: x
            max-servers: 1
            images:
              - name: trusty
                base-image: Ubuntu
                min-ram: 512
        targets:
          - name: jenkins
        "#,
        5,
        "providers[0].auth-url",
        &[
            "`keystone.example.com:5000/v3` is not a Keystone URL",
            "https://",
        ],
    );
    assert_one_problem(
        r#"
        targets:
          - name: jenkins
            jenkins:
              url: https:///jenkins   # line 4
        "#,
        4,
        "targets[0].jenkins.url",
        &["is not a Jenkins URL", "no host"],
    );
}
