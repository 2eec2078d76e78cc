//! The bootstrap every node of a set gets before it is ready, as 2015 Nodepool did it: the
//! files under `/etc/nodepool`, then the label's ready script.
//!
//! A *set* is a primary node and its subnodes (a multi-node label). Each member gets:
//!
//! | file | contents |
//! |---|---|
//! | `role` | `primary` or `sub` |
//! | `node`, `node_private` | this node's public and private IP |
//! | `primary_node`, `primary_node_private` | the primary's public and private IP |
//! | `sub_nodes`, `sub_nodes_private` | the subnodes' IPs, one a line (empty without subnodes) |
//! | `id_rsa`, `id_rsa.pub` | one RSA key pair for the whole set, the same on every member |
//! | `provider` | `NODEPOOL_PROVIDER=`, `NODEPOOL_CLOUD=`, `NODEPOOL_REGION=`, `NODEPOOL_AZ=` lines, for `source` |
//! | `uuid` | this node's cloud server id |
//!
//! Every file ends with a newline. A missing private IP falls back to the public one (as 2015
//! did for devstack-gate). `id_rsa` is mode 0600, the rest 0644.
//!
//! Order, as 2015: the files go to every member (subnodes first, primary last), then the ready
//! script runs on every member in the same order, so each ready script finds the files on
//! every node of its set. The ready script runs as
//! `cd /opt/nodepool-scripts && NODEPOOL_…=… ./READY-SCRIPT HOSTNAME` with every `NODEPOOL_*`
//! variable of nodepool's environment, with its stdin at /dev/null.
//!
//! A ready script may take longer than a run: it runs detached on the node (its own session,
//! so the end of the ssh session does not stop it), and each SSH step only starts it or asks
//! how it is doing, so every step is short and a later run picks up where this one stopped.
//! Its pid, output and exit status are in `/etc/nodepool/ready.d/HOSTNAME/` (`pid`, `log`,
//! `status`) on the node.
//!
//! What travels is one POSIX sh script on ssh's stdin, built by the pure functions
//! `files_for` and `script`, so it can be tested without a node. Both directories are under
//! `${NODEPOOL_NODE_ROOT:-}` on the node: empty on real nodes; tests set it (sshd `SetEnv`)
//! so they never write the machine's `/etc`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::ssh;

/// One node of a set, as bootstrap reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub hostname: String,
    /// The cloud server id (written to `uuid`).
    pub server_id: String,
    pub public_ip: String,
    /// Empty when the cloud gave none; `public_ip` is written instead.
    pub private_ip: String,
    pub endpoint: ssh::Endpoint,
    /// The host keys recorded for it (known_hosts lines, from `ssh::keyscan`).
    pub known_hosts: String,
}

/// A primary node and its subnodes, bootstrapped together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSet {
    /// The provider's name (`NODEPOOL_PROVIDER`).
    pub provider: String,
    /// The provider's `cloud` from clouds.yaml, if it names one (`NODEPOOL_CLOUD`).
    pub cloud: Option<String>,
    /// The provider's `region-name` (`NODEPOOL_REGION`).
    pub region: Option<String>,
    /// The set's availability zone (`NODEPOOL_AZ`).
    pub az: Option<String>,
    pub primary: Member,
    pub subnodes: Vec<Member>,
}

impl NodeSet {
    /// Member `index`: 0 is the primary, 1.. the subnodes.
    ///
    /// # Panics
    /// When there is no such member (a caller's bug).
    pub fn member(&self, index: usize) -> &Member {
        match index {
            0 => &self.primary,
            i => self.subnodes.get(i - 1).unwrap_or_else(|| {
                panic!(
                    "node set has no member {i} (it has {} subnodes)",
                    self.subnodes.len()
                )
            }),
        }
    }

    /// Member indexes in bootstrap order: subnodes first, the primary last (as 2015).
    pub fn bootstrap_order(&self) -> Vec<usize> {
        (1..=self.subnodes.len()).chain([0]).collect()
    }
}

/// The files under `/etc/nodepool` on every node, in the order they are written (2015's set).
pub const ETC_FILES: [&str; 11] = [
    "role",
    "node",
    "node_private",
    "primary_node",
    "primary_node_private",
    "sub_nodes",
    "sub_nodes_private",
    "id_rsa",
    "id_rsa.pub",
    "provider",
    "uuid",
];

/// A file for a node: (name or relative path, contents, mode).
pub type NodeFile = (String, String, u32);
/// A file of the script-dir: (relative path, bytes, mode).
pub type ScriptFile = (String, Vec<u8>, u32);

/// Total size of script-dir copied to every node.
pub const SCRIPT_DIR_LIMIT: u64 = 16 << 20;
/// Files in script-dir.
const SCRIPT_DIR_MAX_FILES: usize = 10_000;
/// The heredoc delimiter for base64 text. It has `_`, which base64 never produces, so no
/// line of encoded content can end the heredoc early.
const HEREDOC_END: &str = "NODEPOOL_B64_END";
/// Width of the base64 lines in the script.
const BASE64_LINE: usize = 76;

/// Pure: the files under `/etc/nodepool` for member `index` (0 = primary, 1.. = subnodes).
///
/// # Panics
/// When `index` is not a member of `set`.
pub fn files_for(set: &NodeSet, index: usize, key: &ssh::KeyPair) -> Vec<NodeFile> {
    let member = set.member(index);
    let role = if index == 0 { "primary" } else { "sub" };
    let line = |s: &str| format!("{s}\n");
    let sub_nodes: String = set.subnodes.iter().map(|n| line(&n.public_ip)).collect();
    let sub_nodes_private: String = set.subnodes.iter().map(|n| line(private_ip(n))).collect();
    let mut private_key = key.private.clone();
    if !private_key.ends_with('\n') {
        private_key.push('\n');
    }
    let file = |name: &str, contents: String, mode: u32| (name.to_owned(), contents, mode);
    vec![
        file("role", line(role), 0o644),
        file("node", line(&member.public_ip), 0o644),
        file("node_private", line(private_ip(member)), 0o644),
        file("primary_node", line(&set.primary.public_ip), 0o644),
        file(
            "primary_node_private",
            line(private_ip(&set.primary)),
            0o644,
        ),
        file("sub_nodes", sub_nodes, 0o644),
        file("sub_nodes_private", sub_nodes_private, 0o644),
        file("id_rsa", private_key, 0o600),
        file("id_rsa.pub", line(key.public.trim_end()), 0o644),
        file("provider", provider_file(set), 0o644),
        file("uuid", line(&member.server_id), 0o644),
    ]
}

/// The private IP, or the public one when the cloud gave none.
fn private_ip(member: &Member) -> &str {
    if member.private_ip.is_empty() {
        &member.public_ip
    } else {
        &member.private_ip
    }
}

/// `/etc/nodepool/provider`: shell assignments, so scripts can `source` it.
fn provider_file(set: &NodeSet) -> String {
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        ("NODEPOOL_PROVIDER", set.provider.clone()),
        ("NODEPOOL_CLOUD", value(&set.cloud)),
        ("NODEPOOL_REGION", value(&set.region)),
        ("NODEPOOL_AZ", value(&set.az)),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}\n", shell_word(v)))
    .collect()
}

/// `s` as one shell word: as it is when that is safe (as 2015 wrote these values), else
/// single-quoted.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.,:/@+%".contains(c);
    if s.chars().all(plain) {
        s.to_owned()
    } else {
        quote(s)
    }
}

/// `s` single-quoted for sh: safe for any content.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A name sh accepts for a variable.
fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The start of every script: strict mode, the root, and two helpers.
const PRELUDE: &str = r#"set -eu
umask 022
root="${NODEPOOL_NODE_ROOT:-}"
# np_dir DIR: make DIR, which the login user must be able to write to.
np_dir() {
    mkdir -p "$1"
    if [ ! -w "$1" ]; then
        echo "nodepool: $1 is not writable by $(id -un)" >&2
        exit 1
    fi
}
# np_write PATH MODE: PATH gets the base64 text on stdin, decoded, with MODE. It is written
# beside PATH under a name of this shell's own (a killed run's session may still be writing),
# readable by nobody else until its mode is set, and renamed over it.
np_write() {
    (umask 077 && base64 -d > "$1.nodepool-new.$$")
    chmod "$2" "$1.nodepool-new.$$"
    mv -f "$1.nodepool-new.$$" "$1"
}
"#;

/// Pure: the POSIX sh script, sent on ssh's stdin, that writes `files` to
/// `$root/etc/nodepool`, copies `scripts` to `$root/opt/nodepool-scripts` (making
/// subdirectories) and clears what an earlier attempt's ready script left in
/// `$root/etc/nodepool/ready.d/HOSTNAME`. Contents travel base64 encoded in quoted heredocs,
/// names single-quoted: safe for any bytes. `set -eu`: the script stops, non-zero, at the
/// first failure.
pub fn script(files: &[NodeFile], scripts: &[ScriptFile], hostname: &str) -> String {
    let mut s = String::from(PRELUDE);
    let _ = writeln!(
        s,
        "rm -rf \"$root/etc/nodepool/ready.d\"/{}",
        quote(hostname)
    );
    if !files.is_empty() {
        s.push_str("np_dir \"$root/etc/nodepool\"\n");
        for (name, contents, mode) in files {
            write_file(
                &mut s,
                "$root/etc/nodepool",
                name,
                contents.as_bytes(),
                *mode,
            );
        }
    }
    if !scripts.is_empty() {
        s.push_str("np_dir \"$root/opt/nodepool-scripts\"\n");
        let subdirs: BTreeSet<&str> = scripts
            .iter()
            .filter_map(|(path, _, _)| path.rsplit_once('/').map(|(dir, _)| dir))
            .collect();
        for dir in subdirs {
            let _ = writeln!(s, "mkdir -p \"$root/opt/nodepool-scripts\"/{}", quote(dir));
        }
        for (path, bytes, mode) in scripts {
            write_file(&mut s, "$root/opt/nodepool-scripts", path, bytes, *mode);
        }
    }
    s
}

/// Pure: the script preparing a snapshot's template server, run as root, as 2015 did it:
/// `script-dir` copied to `$root/opt/nodepool-scripts`, and `$root/etc/nodepool` made,
/// writable by everyone (0777), so the setup script and later the nodes' login user can
/// write there.
pub fn template_script(scripts: &[ScriptFile], hostname: &str) -> String {
    let mut s = script(&[], scripts, hostname);
    s.push_str("mkdir -p \"$root/etc/nodepool\"\nchmod 0777 \"$root/etc/nodepool\"\n");
    s
}

/// Pure: the script printing the whole output of the script `ready_script_step` ran for
/// `hostname` (a snapshot's setup, for its log).
pub fn script_log(hostname: &str) -> String {
    format!(
        "{PRELUDE}cat \"$root/etc/nodepool/ready.d\"/{}/log 2>/dev/null || true\n",
        quote(hostname)
    )
}

/// Pure: the script run on a template server just before its snapshot: what the setup
/// step left (its pid, log and status) is removed so no node booted from the image finds
/// it, and the disks are synced.
pub fn before_snapshot(hostname: &str) -> String {
    format!(
        "{PRELUDE}rm -rf \"$root/etc/nodepool/ready.d\"/{}\nrmdir \"$root/etc/nodepool/ready.d\" \
         2>/dev/null || true\nsync\n",
        quote(hostname)
    )
}

/// How a member's ready script is doing, as one SSH step found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyScript {
    /// Not running before this step: this step started it.
    Started,
    Running,
    /// It ended with `status`; `log` is the end of its output.
    Finished {
        status: i32,
        log: String,
    },
    /// It was started and is gone without an exit status (the node rebooted, or it was
    /// killed): `log` is the end of its output.
    Lost {
        log: String,
    },
}

/// Lines of a ready script's output brought back with its end.
const LOG_TAIL_LINES: usize = 20;

/// Pure: the POSIX sh script of one ready-script step on a member: report the script's end
/// if it has ended, or that it runs, or else start it, detached, from
/// `$root/opt/nodepool-scripts` as `./READY HOSTNAME` with `env` exported and stdin at
/// /dev/null; the first line of its output says which (`finished STATUS`, `running`, `lost`,
/// `started`), the end of the ready script's output follows. `env` entries whose names sh
/// cannot take are left out.
pub fn ready_script_step(ready: &str, hostname: &str, env: &[(String, String)]) -> String {
    let mut s = String::from(PRELUDE);
    let _ = writeln!(
        s,
        "d=\"$root/etc/nodepool/ready.d\"/{}\n\
         if [ -f \"$d/status\" ]; then\n    \
             echo \"finished $(cat \"$d/status\")\"\n    \
             tail -n {LOG_TAIL_LINES} \"$d/log\" 2>/dev/null || true\n    \
             exit 0\n\
         fi\n\
         if [ -e \"$d/started\" ]; then\n    \
             pid=$(cat \"$d/pid\" 2>/dev/null || true)\n    \
             if [ -z \"$pid\" ] && [ -n \"$(find \"$d/started\" -mmin +1 2>/dev/null)\" ]; then\n        \
                 pid=gone\n    \
             fi\n    \
             if [ -z \"$pid\" ] || kill -0 \"$pid\" 2>/dev/null; then\n        \
                 echo running\n    \
             else\n        \
                 echo lost\n        \
                 tail -n {LOG_TAIL_LINES} \"$d/log\" 2>/dev/null || true\n    \
             fi\n    \
             exit 0\n\
         fi\n\
         if ! cd \"$root/opt/nodepool-scripts\"; then\n    \
             echo \"nodepool: no $root/opt/nodepool-scripts for the ready script\" >&2\n    \
             exit 1\n\
         fi\n\
         np_dir \"$root/etc/nodepool/ready.d\"\n\
         mkdir -p \"$d\"\n\
         : > \"$d/started\"",
        quote(hostname)
    );
    for (name, value) in env.iter().filter(|(name, _)| is_shell_name(name)) {
        let _ = writeln!(s, "export {name}={}", quote(value));
    }
    // Its own session (setsid, else nohup): the end of the ssh session must not stop it.
    // The status is written beside and renamed, so a reader never sees half of it.
    let _ = writeln!(
        s,
        "if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=nohup; fi\n\
         $detach sh -c 'echo $$ > \"$1/pid\"; ./\"$2\" \"$3\" </dev/null > \"$1/log\" 2>&1; \
         echo $? > \"$1/status.new\"; mv -f \"$1/status.new\" \"$1/status\"' \
         sh \"$d\" {} {} </dev/null >/dev/null 2>&1 &\n\
         echo started",
        quote(ready),
        quote(hostname)
    );
    s
}

/// What a ready-script step printed (`ready_script_step`).
pub fn parse_ready_step(output: &str) -> Result<ReadyScript> {
    let (first, rest) = output.split_once('\n').unwrap_or((output, ""));
    let log = rest.trim_end().to_string();
    Ok(match first.trim().split_once(' ') {
        Some(("finished", status)) => ReadyScript::Finished {
            status: status
                .trim()
                .parse()
                .with_context(|| format!("the ready script's status file holds {status:?}"))?,
            log,
        },
        _ => match first.trim() {
            "started" => ReadyScript::Started,
            "running" => ReadyScript::Running,
            "lost" => ReadyScript::Lost { log },
            other => bail!("unexpected answer from the node: {other:?}"),
        },
    })
}

/// Append the commands writing `bytes` to `dir/name` with `mode`.
fn write_file(s: &mut String, dir: &str, name: &str, bytes: &[u8], mode: u32) {
    let _ = writeln!(
        s,
        "np_write \"{dir}\"/{} {:o} <<'{HEREDOC_END}'",
        quote(name),
        mode & 0o7777
    );
    let encoded = base64(bytes);
    for chunk in encoded.as_bytes().chunks(BASE64_LINE) {
        // base64 text is ASCII, so every chunk is valid UTF-8.
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(HEREDOC_END);
    s.push('\n');
}

/// Standard base64 with padding (RFC 4648), as `base64 -d` reads it.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Read `dir` recursively, for copying to `/opt/nodepool-scripts`: regular files (and
/// symlinks to them), sorted by relative path (`/`-separated). Directories whose names start
/// with `.` (such as `.git`) are skipped; symlinks to directories are not followed. Modes are
/// the files' permission bits plus `a+rx` (2015 ran `chmod -R a+rx /opt/nodepool-scripts`).
/// At most `SCRIPT_DIR_LIMIT` bytes in all: every node gets a copy over ssh.
pub fn read_script_dir(dir: &Path) -> Result<Vec<ScriptFile>> {
    use std::os::unix::fs::PermissionsExt;

    let mut files = Vec::new();
    let mut total: u64 = 0;
    let mut pending = vec![PathBuf::new()];
    while let Some(relative_dir) = pending.pop() {
        let absolute_dir = dir.join(&relative_dir);
        let entries = fs::read_dir(&absolute_dir)
            .with_context(|| format!("reading script-dir {}", absolute_dir.display()))?;
        for entry in entries {
            let entry =
                entry.with_context(|| format!("reading script-dir {}", absolute_dir.display()))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                bail!(
                    "script-dir: {} has a name that is not UTF-8",
                    path.display()
                );
            };
            let file_type = entry
                .file_type()
                .with_context(|| format!("reading {}", path.display()))?;
            let relative = relative_dir.join(&name);
            if file_type.is_dir() {
                if !name.starts_with('.') {
                    pending.push(relative);
                }
                continue;
            }
            // Follows a symlink; anything but a regular file (or a dangling link) is skipped.
            let metadata = match fs::metadata(&path) {
                Ok(m) if m.is_file() => m,
                _ => continue,
            };
            total += metadata.len();
            if total > SCRIPT_DIR_LIMIT {
                bail!(
                    "script-dir {} holds more than {} MiB of files; every node gets a copy, so keep it small",
                    dir.display(),
                    SCRIPT_DIR_LIMIT >> 20
                );
            }
            if files.len() >= SCRIPT_DIR_MAX_FILES {
                bail!(
                    "script-dir {} holds more than {SCRIPT_DIR_MAX_FILES} files",
                    dir.display()
                );
            }
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let Some(relative) = relative.to_str() else {
                bail!(
                    "script-dir: {} has a name that is not UTF-8",
                    path.display()
                );
            };
            let mode = (metadata.permissions().mode() & 0o777) | 0o555;
            files.push((relative.to_owned(), bytes, mode));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// Every `NODEPOOL_*` variable of this process's environment, sorted (given to the ready
/// script, as 2015 did).
pub fn nodepool_env() -> Vec<(String, String)> {
    nodepool_vars(std::env::vars_os())
}

/// The `NODEPOOL_*` variables of `vars` that sh can take (UTF-8, valid names), sorted.
fn nodepool_vars(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vars
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("NODEPOOL_") && is_shell_name(k))
        // The test-only crash point is nodepool's own, never the node's.
        .filter(|(k, _)| k != crate::failpoint::ENV)
        .collect();
    env.sort();
    env
}

/// Write every member's files: generate the set's key pair, write the `/etc/nodepool` files
/// (and copy `script_dir`, when given, to `/opt/nodepool-scripts`) on every member, subnodes
/// first and the primary last. Each ssh call is bounded by `timeout`; the first failure stops
/// it, its error naming the member's hostname. Doing it again is harmless.
pub fn write_files(
    set: &NodeSet,
    script_dir: Option<&Path>,
    work_dir: &Path,
    timeout: Duration,
) -> Result<()> {
    let scripts = match script_dir {
        Some(dir) => read_script_dir(dir)?,
        None => Vec::new(),
    };
    let key = ssh::generate_keypair(work_dir)?;
    for index in set.bootstrap_order() {
        let member = set.member(index);
        let files = files_for(set, index, &key);
        let text = script(&files, &scripts, &member.hostname);
        ssh::run(&member.endpoint, &member.known_hosts, &text, timeout)
            .with_context(|| format!("writing /etc/nodepool on {}", member.hostname))?;
    }
    Ok(())
}

/// One step of the set's ready scripts, which run one after the other in bootstrap order:
/// each member's is asked how it is doing, until one has not finished, which is started if
/// need be. `Ok(true)` once every member's has finished with status 0; `Ok(false)` while one
/// runs; an error (naming the member and ending with the script's output) when one failed.
pub fn ready_scripts(set: &NodeSet, ready: &str, timeout: Duration) -> Result<bool> {
    let env = nodepool_env();
    for index in set.bootstrap_order() {
        let member = set.member(index);
        let host = &member.hostname;
        let text = ready_script_step(ready, host, &env);
        let output = ssh::run(&member.endpoint, &member.known_hosts, &text, timeout)
            .with_context(|| format!("running ready script {ready} on {host}"))?;
        let with_log = |log: &str| {
            if log.is_empty() {
                String::new()
            } else {
                format!("; its output ends:\n{log}")
            }
        };
        match parse_ready_step(&output)
            .with_context(|| format!("ready script {ready} on {host}"))?
        {
            ReadyScript::Finished { status: 0, log } => {
                log::debug!("ready script {ready} on {host} finished: {log}");
            }
            ReadyScript::Finished { status, log } => bail!(
                "ready script {ready} on {host} exited with status {status}{}",
                with_log(&log)
            ),
            ReadyScript::Lost { log } => bail!(
                "ready script {ready} on {host} stopped without an exit status (was the node \
                 rebooted?){}",
                with_log(&log)
            ),
            ReadyScript::Started => {
                log::debug!("ready script {ready} started on {host}");
                return Ok(false);
            }
            ReadyScript::Running => return Ok(false),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};

    fn member(n: u8) -> Member {
        Member {
            hostname: format!("node-{n}"),
            server_id: format!("server-uuid-{n}"),
            public_ip: format!("203.0.113.{n}"),
            private_ip: format!("10.0.0.{n}"),
            endpoint: ssh::Endpoint {
                host: format!("203.0.113.{n}"),
                port: 22,
                user: "jenkins".into(),
                private_key: "/var/lib/jenkins/.ssh/id_rsa".into(),
            },
            known_hosts: String::new(),
        }
    }

    fn set() -> NodeSet {
        NodeSet {
            provider: "rax-iad".into(),
            cloud: Some("rax".into()),
            region: Some("IAD".into()),
            az: None,
            primary: member(1),
            subnodes: vec![member(2), member(3)],
        }
    }

    fn key() -> ssh::KeyPair {
        ssh::KeyPair {
            private: "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"
                .into(),
            public: "ssh-rsa AAAAB3Nza".into(),
        }
    }

    fn file<'a>(files: &'a [NodeFile], name: &str) -> (&'a str, u32) {
        let (_, contents, mode) = files
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no {name}"));
        (contents.as_str(), *mode)
    }

    #[test]
    fn the_primary_gets_the_2015_files() {
        let files = files_for(&set(), 0, &key());
        let names: Vec<&str> = files.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ETC_FILES);
        assert_eq!(file(&files, "role"), ("primary\n", 0o644));
        assert_eq!(file(&files, "node"), ("203.0.113.1\n", 0o644));
        assert_eq!(file(&files, "node_private"), ("10.0.0.1\n", 0o644));
        assert_eq!(file(&files, "primary_node"), ("203.0.113.1\n", 0o644));
        assert_eq!(file(&files, "primary_node_private"), ("10.0.0.1\n", 0o644));
        assert_eq!(
            file(&files, "sub_nodes"),
            ("203.0.113.2\n203.0.113.3\n", 0o644)
        );
        assert_eq!(
            file(&files, "sub_nodes_private"),
            ("10.0.0.2\n10.0.0.3\n", 0o644)
        );
        assert_eq!(file(&files, "id_rsa"), (key().private.as_str(), 0o600));
        assert_eq!(file(&files, "id_rsa.pub"), ("ssh-rsa AAAAB3Nza\n", 0o644));
        assert_eq!(
            file(&files, "provider").0,
            "NODEPOOL_PROVIDER=rax-iad\nNODEPOOL_CLOUD=rax\nNODEPOOL_REGION=IAD\nNODEPOOL_AZ=\n"
        );
        assert_eq!(file(&files, "uuid"), ("server-uuid-1\n", 0o644));
    }

    #[test]
    fn a_subnode_gets_its_own_addresses_and_the_sets_shared_ones() {
        let primary = files_for(&set(), 0, &key());
        let files = files_for(&set(), 2, &key());
        assert_eq!(file(&files, "role").0, "sub\n");
        assert_eq!(file(&files, "node").0, "203.0.113.3\n");
        assert_eq!(file(&files, "node_private").0, "10.0.0.3\n");
        assert_eq!(file(&files, "uuid").0, "server-uuid-3\n");
        for shared in [
            "primary_node",
            "primary_node_private",
            "sub_nodes",
            "sub_nodes_private",
            "id_rsa",
            "id_rsa.pub",
            "provider",
        ] {
            assert_eq!(file(&files, shared), file(&primary, shared), "{shared}");
        }
    }

    #[test]
    fn a_set_without_subnodes_has_empty_subnode_lists() {
        let mut set = set();
        set.subnodes.clear();
        let files = files_for(&set, 0, &key());
        assert_eq!(file(&files, "sub_nodes").0, "");
        assert_eq!(file(&files, "sub_nodes_private").0, "");
        assert_eq!(set.bootstrap_order(), [0]);
    }

    #[test]
    fn a_missing_private_ip_is_the_public_one() {
        let mut set = set();
        set.primary.private_ip.clear();
        set.subnodes[0].private_ip.clear();
        let files = files_for(&set, 1, &key());
        assert_eq!(file(&files, "node_private").0, "203.0.113.2\n");
        assert_eq!(file(&files, "primary_node_private").0, "203.0.113.1\n");
        assert_eq!(
            file(&files, "sub_nodes_private").0,
            "203.0.113.2\n10.0.0.3\n"
        );
    }

    #[test]
    fn subnodes_are_bootstrapped_before_the_primary() {
        assert_eq!(set().bootstrap_order(), [1, 2, 0]);
    }

    #[test]
    fn provider_values_that_sh_would_split_are_quoted() {
        let mut set = set();
        set.az = Some("zone 1; rm -rf /".into());
        set.cloud = None;
        let files = files_for(&set, 0, &key());
        assert_eq!(
            file(&files, "provider").0,
            "NODEPOOL_PROVIDER=rax-iad\nNODEPOOL_CLOUD=\nNODEPOOL_REGION=IAD\nNODEPOOL_AZ='zone 1; rm -rf /'\n"
        );
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn nodepool_vars_are_the_nodepool_ones_sorted() {
        let vars = [
            ("PATH", "/bin"),
            ("NODEPOOL_Z", "z"),
            ("NODEPOOL_A", "a b"),
            ("NODEPOOL_FAILPOINT", "after-create"),
            ("NODEPOOL-BAD", "x"),
            ("XNODEPOOL_B", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()));
        assert_eq!(
            nodepool_vars(vars),
            [
                ("NODEPOOL_A".to_owned(), "a b".to_owned()),
                ("NODEPOOL_Z".to_owned(), "z".to_owned())
            ]
        );
    }

    /// Run `script` with the local `sh` as ssh would run it on a node (`sh -s`, script on
    /// stdin), with NODEPOOL_NODE_ROOT set to `root`.
    fn run_locally(script: &str, root: &Path) -> std::process::Output {
        run_locally_with(Command::new("sh"), script, root)
    }

    /// `shell` (a `sh`, possibly behind a privilege drop) runs `script` from stdin.
    fn run_locally_with(mut shell: Command, script: &str, root: &Path) -> std::process::Output {
        let mut child = shell
            .arg("-s")
            .env("NODEPOOL_NODE_ROOT", root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh");
        let mut stdin = child.stdin.take().unwrap();
        let text = script.to_owned();
        let feeder = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
        let output = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        output
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Contents that would break naive quoting or a heredoc.
    const NASTY: &str = "it's \"quoted\" $HOME ${X:-y} `id` $(id) \\ \\n\nNODEPOOL_B64_END\nEOF\n'\nno newline at end";

    #[test]
    fn the_script_writes_any_content_byte_for_byte() {
        let root = tempfile::tempdir().unwrap();
        let files: Vec<NodeFile> = vec![
            ("nasty".into(), NASTY.into(), 0o644),
            ("empty".into(), String::new(), 0o644),
            ("id_rsa".into(), key().private, 0o600),
            ("long".into(), "x".repeat(100_000), 0o640),
        ];
        let binary: Vec<u8> = (0..=255u8).chain([0, b'\n', 0xff]).collect();
        let scripts: Vec<ScriptFile> = vec![
            ("bin.dat".into(), binary.clone(), 0o644),
            ("ready.sh".into(), NASTY.as_bytes().to_vec(), 0o755),
            ("sub dir/it's $x.sh".into(), b"#!/bin/sh\n".to_vec(), 0o700),
            ("a/b/c/deep".into(), Vec::new(), 0o600),
        ];
        let output = run_locally(&script(&files, &scripts, "h"), root.path());
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );

        let etc = root.path().join("etc/nodepool");
        for (name, contents, mode) in &files {
            let path = etc.join(name);
            assert_eq!(fs::read(&path).unwrap(), contents.as_bytes(), "{name}");
            assert_eq!(mode_of(&path), *mode, "{name}");
        }
        let opt = root.path().join("opt/nodepool-scripts");
        for (name, bytes, mode) in &scripts {
            let path = opt.join(name);
            assert_eq!(&fs::read(&path).unwrap(), bytes, "{name}");
            assert_eq!(mode_of(&path), *mode, "{name}");
        }
        // Nothing else: no temporary files left behind.
        let mut left: Vec<String> = fs::read_dir(&etc)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["empty", "id_rsa", "long", "nasty"]);
        assert_eq!(mode_of(&etc) & 0o755, 0o755, "readable by everyone");
    }

    /// Run one ready-script step locally and read its answer.
    fn step(root: &Path, ready: &str, hostname: &str, env: &[(String, String)]) -> ReadyScript {
        let output = run_locally(&ready_script_step(ready, hostname, env), root);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        parse_ready_step(&String::from_utf8_lossy(&output.stdout)).unwrap()
    }

    /// Steps until the script has ended (at most 10 s, bounded by count).
    fn step_until_ended(root: &Path, ready: &str, hostname: &str) -> ReadyScript {
        for _ in 0..200 {
            match step(root, ready, hostname, &[]) {
                ReadyScript::Started | ReadyScript::Running => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                ended => return ended,
            }
        }
        panic!("the ready script did not end within 10 s");
    }

    /// A root with `ready.sh` (mode 0755) holding `body` in its scripts dir.
    fn root_with_ready(body: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let scripts: Vec<ScriptFile> = vec![("ready.sh".into(), body.as_bytes().to_vec(), 0o755)];
        let files = files_for(&set(), 0, &key());
        let output = run_locally(&script(&files, &scripts, "h"), root.path());
        assert!(output.status.success());
        root
    }

    #[test]
    fn the_ready_script_runs_from_the_scripts_dir_with_the_hostname_and_env() {
        let ready = "#!/bin/sh\nset -eu\n{\n printf 'arg=%s\\n' \"$1\"\n printf 'args=%s\\n' \"$#\"\n printf 'var=%s\\n' \"$NODEPOOL_TEST_VAR\"\n printf 'other=%s\\n' \"$NODEPOOL_OTHER\"\n printf 'pwd=%s\\n' \"$(pwd)\"\n printf 'stdin=%s\\n' \"$(cat)\"\n} > \"$NODEPOOL_NODE_ROOT/ready.out\"\necho done\n";
        let root = root_with_ready(ready);
        let env = vec![
            ("NODEPOOL_OTHER".to_owned(), "plain".to_owned()),
            ("NODEPOOL_TEST_VAR".to_owned(), NASTY.to_owned()),
            ("NOT A NAME".to_owned(), "ignored".to_owned()),
        ];
        let hostname = "host name's $HOME";
        assert_eq!(
            step(root.path(), "ready.sh", hostname, &env),
            ReadyScript::Started
        );
        assert_eq!(
            step_until_ended(root.path(), "ready.sh", hostname),
            ReadyScript::Finished {
                status: 0,
                log: "done".into()
            }
        );
        let out = fs::read_to_string(root.path().join("ready.out")).unwrap();
        let scripts_dir = root.path().join("opt/nodepool-scripts");
        assert_eq!(
            out,
            format!(
                "arg={hostname}\nargs=1\nvar={NASTY}\nother=plain\npwd={}\nstdin=\n",
                scripts_dir.display()
            )
        );
        // Asked again, it reports the same end and does not run again.
        fs::remove_file(root.path().join("ready.out")).unwrap();
        assert!(matches!(
            step(root.path(), "ready.sh", hostname, &[]),
            ReadyScript::Finished { status: 0, .. }
        ));
        assert!(!root.path().join("ready.out").exists());
    }

    #[test]
    fn a_long_ready_script_runs_detached_and_each_step_returns_at_once() {
        let root = root_with_ready("#!/bin/sh\nsleep 2\necho slept\n");
        let started = std::time::Instant::now();
        assert_eq!(
            step(root.path(), "ready.sh", "h", &[]),
            ReadyScript::Started
        );
        assert_eq!(
            step(root.path(), "ready.sh", "h", &[]),
            ReadyScript::Running
        );
        assert!(
            started.elapsed() < std::time::Duration::from_millis(1500),
            "a step waited for the script: {:?}",
            started.elapsed()
        );
        assert_eq!(
            step_until_ended(root.path(), "ready.sh", "h"),
            ReadyScript::Finished {
                status: 0,
                log: "slept".into()
            }
        );
    }

    #[test]
    fn a_failing_ready_script_ends_with_its_status_and_output() {
        let root = root_with_ready("#!/bin/sh\necho broken >&2\nexit 7\n");
        assert_eq!(
            step(root.path(), "ready.sh", "h", &[]),
            ReadyScript::Started
        );
        assert_eq!(
            step_until_ended(root.path(), "ready.sh", "h"),
            ReadyScript::Finished {
                status: 7,
                log: "broken".into()
            }
        );
    }

    #[test]
    fn a_ready_script_killed_without_a_status_is_lost() {
        let root = root_with_ready("#!/bin/sh\necho going\nsleep 30\n");
        assert_eq!(
            step(root.path(), "ready.sh", "h", &[]),
            ReadyScript::Started
        );
        let pid_file = root.path().join("etc/nodepool/ready.d/h/pid");
        let pid = (0..200)
            .find_map(|_| {
                let pid = fs::read_to_string(&pid_file).ok().filter(|p| !p.is_empty());
                if pid.is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                pid
            })
            .expect("the detached shell writes its pid");
        // Its whole session: the shell and the sleep.
        let killed = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", pid.trim())])
            .status()
            .unwrap();
        assert!(killed.success());
        assert_eq!(
            step_until_ended(root.path(), "ready.sh", "h"),
            ReadyScript::Lost {
                log: "going".into()
            }
        );
    }

    #[test]
    fn writing_the_files_again_clears_an_earlier_attempts_ready_script() {
        let root = root_with_ready("#!/bin/sh\nexit 3\n");
        step(root.path(), "ready.sh", "h", &[]);
        assert!(matches!(
            step_until_ended(root.path(), "ready.sh", "h"),
            ReadyScript::Finished { status: 3, .. }
        ));
        let output = run_locally(&script(&[], &[], "h"), root.path());
        assert!(output.status.success());
        assert_eq!(
            step(root.path(), "ready.sh", "h", &[]),
            ReadyScript::Started
        );
    }

    #[test]
    fn unexpected_step_answers_are_errors() {
        assert!(parse_ready_step("finished x\n").is_err());
        assert!(parse_ready_step("what\n").is_err());
        assert_eq!(parse_ready_step("running\n").unwrap(), ReadyScript::Running);
    }

    #[test]
    fn a_missing_scripts_dir_is_named() {
        let root = tempfile::tempdir().unwrap();
        let output = run_locally(&ready_script_step("ready.sh", "h", &[]), root.path());
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("opt/nodepool-scripts for the ready script"),
            "{stderr}"
        );
    }

    #[test]
    fn a_read_only_etc_nodepool_is_a_clear_failure() {
        let root = tempfile::tempdir().unwrap();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let etc = root.path().join("etc/nodepool");
        fs::create_dir_all(&etc).unwrap();
        fs::set_permissions(root.path().join("etc"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&etc, fs::Permissions::from_mode(0o555)).unwrap();
        // root may write anywhere: as root, the script runs as nobody, as a node's login
        // user would.
        let shell = if running_as_root() {
            let mut drop = Command::new("setpriv");
            drop.args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh"]);
            drop
        } else {
            Command::new("sh")
        };
        let files = files_for(&set(), 0, &key());
        let output = run_locally_with(shell, &script(&files, &[], "h"), root.path());
        assert!(!output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("is not writable by"));
    }

    fn running_as_root() -> bool {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0\n"))
            .unwrap_or(false)
    }

    #[test]
    fn the_script_dir_is_read_recursively_sorted_and_made_readable() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("sub/deeper")).unwrap();
        fs::create_dir_all(d.join(".git/objects")).unwrap();
        fs::write(d.join("ready.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(d.join("ready.sh"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(d.join("sub/deeper/data"), "data").unwrap();
        fs::set_permissions(d.join("sub/deeper/data"), fs::Permissions::from_mode(0o660)).unwrap();
        fs::write(d.join(".git/objects/x"), "git").unwrap();
        fs::write(d.join(".hidden-file"), "kept").unwrap();
        std::os::unix::fs::symlink("ready.sh", d.join("link.sh")).unwrap();
        std::os::unix::fs::symlink("sub", d.join("linked-dir")).unwrap();
        std::os::unix::fs::symlink("missing", d.join("dangling")).unwrap();

        let files = read_script_dir(d).unwrap();
        let summary: Vec<(&str, &[u8], u32)> = files
            .iter()
            .map(|(p, b, m)| (p.as_str(), b.as_slice(), *m))
            .collect();
        assert_eq!(
            summary,
            [
                (".hidden-file", &b"kept"[..], 0o755),
                ("link.sh", &b"#!/bin/sh\n"[..], 0o755),
                ("ready.sh", &b"#!/bin/sh\n"[..], 0o755),
                ("sub/deeper/data", &b"data"[..], 0o775),
            ]
        );
    }

    #[test]
    fn a_script_dir_too_large_to_copy_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = fs::File::create(dir.path().join("big")).unwrap();
        f.set_len(SCRIPT_DIR_LIMIT + 1).unwrap();
        let err = read_script_dir(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("more than 16 MiB"), "{err:#}");
    }

    #[test]
    fn a_missing_script_dir_is_named() {
        let err = read_script_dir(Path::new("/nonexistent/scripts")).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/scripts"),
            "{err:#}"
        );
    }
}
