//! SSH to nodes with the system OpenSSH client: `ssh`, `ssh-keyscan` and `ssh-keygen`.
//!
//! The system client, not a Rust SSH library, because it honours the operator's ssh config
//! (proxies, algorithms, keys) exactly as their own `ssh` does.
//!
//! Host keys are trusted on first contact and then checked strictly: `keyscan` reads a node's
//! keys once, when it first answers (the caller records them), and every later `run` checks
//! the node against a private temporary known_hosts holding exactly those keys. The operator's
//! own known_hosts files are neither read nor written, and nothing ever prompts (BatchMode).
//!
//! Every child process is bounded by a timeout: it is polled, and killed by its PID when the
//! timeout expires.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How to reach a node over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub private_key: PathBuf,
}

impl Endpoint {
    /// How nodepool logs into a node booted from `image` at `host`.
    pub fn for_image(image: &crate::config::ProviderImage, host: &str) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            port: image.connection_port,
            user: image.username.clone(),
            private_key: image.private_key.clone(),
        }
    }
}

impl fmt::Display for Endpoint {
    /// `user@host:port` (`user@[v6]:port`), as errors name a node.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, host_port(&self.host, self.port))
    }
}

/// A fresh key pair: the private key in PEM form, the public key as one
/// `ssh-rsa BASE64` line without a newline.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub private: String,
    pub public: String,
}

impl fmt::Debug for KeyPair {
    /// Never prints the private key (it could end up in a log).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("private", &"<redacted>")
            .field("public", &self.public)
            .finish()
    }
}

/// Lines of a failed command's stderr quoted in its error.
const STDERR_TAIL_LINES: usize = 5;
/// At most this much of each output stream is kept (the last bytes).
const OUTPUT_LIMIT: usize = 16 << 20;
/// How long to wait for the output pipes to close once the child is gone (a ProxyCommand
/// started by ssh may hold them open).
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// Bound on local `ssh-keygen` calls.
const KEYGEN_TIMEOUT: Duration = Duration::from_secs(60);

/// Host keys of `host:port` as known_hosts lines (`[host]:port keytype base64`, or
/// `host keytype base64` for port 22), sorted, newline-terminated.
///
/// `Ok(None)` when nothing answers yet (a server still booting): that is not an error.
/// The whole scan is bounded by `timeout`; keys read before it expired are kept.
pub fn keyscan(host: &str, port: u16, timeout: Duration) -> Result<Option<String>> {
    let args: Vec<OsString> = vec![
        "-T".into(),
        whole_seconds(timeout).to_string().into(),
        "-p".into(),
        port.to_string().into(),
        "--".into(),
        host.into(),
    ];
    let out = run_program("ssh-keyscan", &args, None, timeout)
        .with_context(|| format!("ssh-keyscan {}", host_port(host, port)))?;
    let mut keys: Vec<&str> = Vec::new();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.split_whitespace().count() < 3 {
            continue;
        }
        keys.push(line);
    }
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        log::debug!(
            "ssh-keyscan {}: no host keys yet ({}{})",
            host_port(host, port),
            out.describe_status(),
            out.stderr_suffix()
        );
        return Ok(None);
    }
    let mut text = keys.join("\n");
    text.push('\n');
    Ok(Some(text))
}

/// Run `sh -s` on the node with `script` on its stdin; returns its stdout.
///
/// The node's host key must be one of `known_hosts` (lines as `keyscan` returns them):
/// `StrictHostKeyChecking=yes` against a private temporary file holding exactly those lines,
/// in BatchMode (never a prompt). Only `endpoint.private_key` is offered (IdentitiesOnly).
/// The whole call is bounded by `timeout`: on expiry ssh is killed and this is an error.
/// Errors name `user@host:port` and carry the exit status and the end of stderr.
pub fn run(
    endpoint: &Endpoint,
    known_hosts: &str,
    script: &str,
    timeout: Duration,
) -> Result<String> {
    let has_keys = known_hosts.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#')
    });
    if !has_keys {
        bail!("ssh to {endpoint}: no host keys are recorded for it (scan them first)");
    }
    let dir = tempfile::Builder::new()
        .prefix("nodepool-ssh.")
        .tempdir()
        .context("creating a temporary directory for known_hosts")?;
    let file = dir.path().join("known_hosts");
    let mut text = known_hosts.to_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    let args = ssh_args(endpoint, &file, timeout)?;
    log::debug!("ssh {endpoint}: sh -s with a {}-byte script", script.len());
    let out = run_program("ssh", &args, Some(script.as_bytes().to_vec()), timeout)
        .with_context(|| format!("ssh to {endpoint}"))?;
    match out.status {
        Some(status) if status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        _ => bail!(
            "ssh to {endpoint}: {}{}",
            out.describe_status(),
            out.stderr_suffix()
        ),
    }
}

/// Run `true` on the node: can we log in, and is it the node whose keys we recorded?
pub fn check(endpoint: &Endpoint, known_hosts: &str, timeout: Duration) -> Result<()> {
    run(endpoint, known_hosts, "true\n", timeout).map(|_| ())
}

/// The public key of a private key file (`ssh-keygen -y`), as one line without a newline.
///
/// ssh-keygen refuses key files readable by others, and keys with a passphrase (it is never
/// asked for).
pub fn public_key_of(private_key: &Path) -> Result<String> {
    let what = || format!("reading the public key of {}", private_key.display());
    let args: Vec<OsString> = vec![
        "-y".into(),
        "-P".into(),
        "".into(),
        "-f".into(),
        private_key.into(),
    ];
    let out = run_program("ssh-keygen", &args, None, KEYGEN_TIMEOUT).with_context(what)?;
    if !out.succeeded() {
        bail!(
            "{}: {}{}",
            what(),
            out.describe_status(),
            out.stderr_suffix()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => Ok(line.to_owned()),
        None => bail!("{}: ssh-keygen printed nothing", what()),
    }
}

/// A fresh RSA 2048 key pair, as 2015 Nodepool generated for each node set: private key in
/// PEM (`BEGIN RSA PRIVATE KEY`, which every OpenSSH and paramiko reads), public key
/// `ssh-rsa BASE64` without a comment. Made by ssh-keygen in a temporary directory inside
/// `work_dir` (the run's private directory, never /tmp), removed afterwards; one a killed
/// run left behind goes with the next run's `state::reset_work_dir`.
pub fn generate_keypair(work_dir: &Path) -> Result<KeyPair> {
    let dir = tempfile::Builder::new()
        .prefix("nodepool-key.")
        .tempdir_in(work_dir)
        .with_context(|| {
            format!(
                "creating a temporary directory for a key pair in {}",
                work_dir.display()
            )
        })?;
    let path = dir.path().join("id_rsa");
    let args: Vec<OsString> = vec![
        "-q".into(),
        "-t".into(),
        "rsa".into(),
        "-b".into(),
        "2048".into(),
        "-m".into(),
        "PEM".into(),
        "-N".into(),
        "".into(),
        "-C".into(),
        "".into(),
        "-f".into(),
        path.clone().into(),
    ];
    let out = run_program("ssh-keygen", &args, None, KEYGEN_TIMEOUT)
        .context("generating an RSA key pair")?;
    if !out.succeeded() {
        bail!(
            "generating an RSA key pair: ssh-keygen {}{}",
            out.describe_status(),
            out.stderr_suffix()
        );
    }
    let private =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let public_path = dir.path().join("id_rsa.pub");
    let public = std::fs::read_to_string(&public_path)
        .with_context(|| format!("reading {}", public_path.display()))?;
    // With an empty comment ssh-keygen still writes the separating space.
    let public = public.trim().to_owned();
    Ok(KeyPair { private, public })
}

/// The arguments of `ssh` for `run` (everything but the program name).
fn ssh_args(
    endpoint: &Endpoint,
    known_hosts_file: &Path,
    timeout: Duration,
) -> Result<Vec<OsString>> {
    let known_hosts = known_hosts_file.to_str().unwrap_or_default();
    // ssh splits UserKnownHostsFile on whitespace and expands %-tokens in it.
    if known_hosts.is_empty() || known_hosts.contains(|c: char| c.is_whitespace() || c == '%') {
        bail!(
            "the temporary directory {} cannot be passed to ssh (spaces or '%' in its path); set TMPDIR to a plainer path",
            known_hosts_file.display()
        );
    }
    let options = [
        "BatchMode=yes".to_owned(),
        format!("ConnectTimeout={}", whole_seconds(timeout)),
        "StrictHostKeyChecking=yes".to_owned(),
        format!("UserKnownHostsFile={known_hosts}"),
        "GlobalKnownHostsFile=/dev/null".to_owned(),
        "UpdateHostKeys=no".to_owned(),
        "CheckHostIP=no".to_owned(),
        "IdentitiesOnly=yes".to_owned(),
        // A shared master connection would skip our host key check; nodes are untrusted, so
        // nothing of the operator's is forwarded to them.
        "ControlMaster=no".to_owned(),
        "ControlPath=none".to_owned(),
        "ForwardAgent=no".to_owned(),
        "ClearAllForwardings=yes".to_owned(),
        "LogLevel=ERROR".to_owned(),
    ];
    let mut args: Vec<OsString> = vec!["-T".into()];
    for option in options {
        args.push("-o".into());
        args.push(option.into());
    }
    args.push("-i".into());
    args.push(endpoint.private_key.clone().into());
    args.push("-p".into());
    args.push(endpoint.port.to_string().into());
    args.push("-l".into());
    args.push(endpoint.user.clone().into());
    args.push("--".into());
    args.push(endpoint.host.clone().into());
    args.push("sh -s".into());
    Ok(args)
}

/// `host:port`, or `[host]:port` for an IPv6 address.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A duration as whole seconds for ssh's options: rounded up, at least 1.
fn whole_seconds(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// What a bounded child process left behind.
struct Output {
    /// `None` when it was killed at the timeout.
    status: Option<ExitStatus>,
    timeout: Duration,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Output {
    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    fn describe_status(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match self.status {
            None => format!(
                "timed out after {} (killed)",
                humantime::format_duration(self.timeout)
            ),
            Some(s) => match (s.code(), s.signal()) {
                (Some(255), _) => "exit status 255 (ssh could not connect or log in)".to_owned(),
                (Some(code), _) => format!("exit status {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                (None, None) => s.to_string(),
            },
        }
    }

    /// `": line; line"` with the last lines of stderr, or nothing when it was empty.
    fn stderr_suffix(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            return String::new();
        }
        let tail = &lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..];
        format!(": {}", tail.join("; "))
    }
}

/// Run `program` with `args`, `stdin` fed to it (or /dev/null), stdout and stderr captured,
/// for at most `timeout`: polled with a bounded back-off and killed by its PID on expiry.
fn run_program(
    program: &str,
    args: &[OsString],
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Output> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("{program} not found: install openssh-client")
        }
        Err(e) => return Err(e).with_context(|| format!("starting {program}")),
    };
    let started = Instant::now();

    // Feed stdin from a thread so a large script cannot deadlock against full output pipes.
    // A write error (the child exited or was killed) ends the thread; nothing waits for it.
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let fed = thread::Builder::new()
            .name(format!("{program} stdin"))
            .spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        if let Err(e) = fed {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e).context("starting a thread");
        }
    }
    let stdout = child.stdout.take().map(|p| drain(p, program));
    let stderr = child.stderr.take().map(|p| drain(p, program));

    let deadline = started + timeout;
    let mut pause = Duration::from_millis(5);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e).with_context(|| format!("waiting for {program}"));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            // Child::kill sends SIGKILL to this child's PID only.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    };

    let grace_end = Instant::now() + PIPE_GRACE;
    let take = |drained: Option<Drained>| -> Vec<u8> {
        let Some(drained) = drained else {
            return Vec::new();
        };
        let _ = drained
            .done
            .recv_timeout(grace_end.saturating_duration_since(Instant::now()));
        let mut buf = drained
            .buf
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default();
        if buf.len() > OUTPUT_LIMIT {
            buf.drain(..buf.len() - OUTPUT_LIMIT);
        }
        buf
    };
    let stdout = take(stdout);
    let stderr = take(stderr);
    Ok(Output {
        status,
        timeout,
        stdout,
        stderr,
    })
}

/// An output pipe being read by a thread into `buf`; `done` fires at end of file.
struct Drained {
    buf: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

fn drain(mut pipe: impl Read + Send + 'static, program: &str) -> Drained {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let (tx, done) = mpsc::channel();
    let shared = Arc::clone(&buf);
    let reader = move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    let Ok(mut b) = shared.lock() else { break };
                    b.extend_from_slice(&chunk[..n]);
                    // Keep the tail; trim in large steps so this stays linear.
                    if b.len() > 2 * OUTPUT_LIMIT {
                        let excess = b.len() - OUTPUT_LIMIT;
                        b.drain(..excess);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    };
    // If no thread can be started the pipe is dropped (the child sees EPIPE) and the output is
    // empty; the sender is dropped with the closure, so nothing waits for it.
    let _ = thread::Builder::new()
        .name(format!("{program} output"))
        .spawn(reader);
    Drained { buf, done }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint {
            host: "203.0.113.7".into(),
            port: 2222,
            user: "jenkins".into(),
            private_key: "/var/lib/jenkins/.ssh/id_rsa".into(),
        }
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn ssh_checks_host_keys_strictly_against_only_the_given_file_and_never_prompts() {
        let args = strings(
            &ssh_args(
                &endpoint(),
                Path::new("/tmp/x/known_hosts"),
                Duration::from_millis(1500),
            )
            .unwrap(),
        );
        let options: Vec<&str> = args
            .windows(2)
            .filter(|w| w[0] == "-o")
            .map(|w| w[1].as_str())
            .collect();
        for expected in [
            "BatchMode=yes",
            "ConnectTimeout=2",
            "StrictHostKeyChecking=yes",
            "UserKnownHostsFile=/tmp/x/known_hosts",
            "GlobalKnownHostsFile=/dev/null",
            "IdentitiesOnly=yes",
            "ControlPath=none",
            "LogLevel=ERROR",
        ] {
            assert!(
                options.contains(&expected),
                "{expected} missing from {args:?}"
            );
        }
        // The operator's config is honoured: no -F.
        assert!(!args.iter().any(|a| a == "-F"), "{args:?}");
        let tail = &args[args.len() - 9..];
        assert_eq!(
            tail,
            [
                "-i",
                "/var/lib/jenkins/.ssh/id_rsa",
                "-p",
                "2222",
                "-l",
                "jenkins",
                "--",
                "203.0.113.7",
                "sh -s"
            ]
        );
    }

    #[test]
    fn a_known_hosts_path_ssh_would_split_is_refused() {
        let err = ssh_args(
            &endpoint(),
            Path::new("/tmp/my dir/known_hosts"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("TMPDIR"), "{err:#}");
    }

    #[test]
    fn endpoints_are_named_user_at_host_port() {
        assert_eq!(endpoint().to_string(), "jenkins@203.0.113.7:2222");
        let v6 = Endpoint {
            host: "2001:db8::1".into(),
            ..endpoint()
        };
        assert_eq!(v6.to_string(), "jenkins@[2001:db8::1]:2222");
    }

    #[test]
    fn whole_seconds_round_up_and_are_at_least_one() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(10)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(10)), 10);
        assert_eq!(whole_seconds(Duration::from_millis(10_001)), 11);
    }

    #[test]
    fn a_missing_program_is_a_clear_error_not_a_panic() {
        let err = run_program(
            "nodepool-test-no-such-ssh",
            &[],
            None,
            Duration::from_secs(1),
        )
        .err()
        .expect("an error");
        assert_eq!(
            err.to_string(),
            "nodepool-test-no-such-ssh not found: install openssh-client"
        );
    }

    #[test]
    fn a_program_past_its_timeout_is_killed() {
        let started = Instant::now();
        let out = run_program("sleep", &["30".into()], None, Duration::from_millis(200)).unwrap();
        assert!(out.status.is_none());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(out.describe_status(), "timed out after 200ms (killed)");
    }

    #[test]
    fn large_stdin_and_stdout_do_not_deadlock() {
        let input: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        let out = run_program("cat", &[], Some(input.clone()), Duration::from_secs(30)).unwrap();
        assert!(out.succeeded());
        assert_eq!(out.stdout.len(), input.len());
        assert!(out.stdout == input);
    }

    #[test]
    fn errors_quote_the_last_lines_of_stderr() {
        let out = run_program(
            "sh",
            &[
                "-c".into(),
                "for i in 1 2 3 4 5 6 7; do echo line$i >&2; done; exit 3".into(),
            ],
            None,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.describe_status(), "exit status 3");
        assert_eq!(out.stderr_suffix(), ": line3; line4; line5; line6; line7");
    }

    #[test]
    fn generated_key_pairs_are_pem_rsa_and_their_public_half_matches() {
        let work = tempfile::tempdir().unwrap();
        let pair = generate_keypair(work.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(work.path()).unwrap().count(),
            0,
            "nothing is left in the work directory"
        );
        assert!(pair
            .private
            .starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(pair.private.ends_with("-----END RSA PRIVATE KEY-----\n"));
        assert!(pair.public.starts_with("ssh-rsa "), "{}", pair.public);
        assert_eq!(
            pair.public.split(' ').count(),
            2,
            "no comment: {}",
            pair.public
        );
        assert!(!format!("{pair:?}").contains("PRIVATE KEY"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_rsa");
        std::fs::write(&path, &pair.private).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(public_key_of(&path).unwrap(), pair.public);
        assert_ne!(generate_keypair(work.path()).unwrap().public, pair.public);
    }

    #[test]
    fn public_key_of_a_missing_file_names_it() {
        let err = public_key_of(Path::new("/nonexistent/nodepool/id_rsa")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("/nonexistent/nodepool/id_rsa"), "{msg}");
    }
}
