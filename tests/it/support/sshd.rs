//! A real OpenSSH server on loopback, for node tests: its own host key, one authorized user key
//! (the current user), and `NODEPOOL_NODE_ROOT` set for sessions so a bootstrap writes under
//! a temporary directory instead of the machine's `/etc` and `/opt`.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodepool::node::ssh::Endpoint;

const SSHD: &str = "/usr/sbin/sshd";
/// How long sshd gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Ports tried when the one picked is taken before sshd binds it.
const PORT_ATTEMPTS: usize = 5;

pub struct Sshd {
    pub port: u16,
    /// The user to log in as: the current user.
    pub user: String,
    /// The user's private key (authorized by this sshd only).
    pub private_key: PathBuf,
    /// `NODEPOOL_NODE_ROOT` of sessions: a bootstrap writes `etc/nodepool` and
    /// `opt/nodepool-scripts` under it.
    pub node_root: PathBuf,
    /// Everything else: config, keys, pid file, log.
    pub dir: tempfile::TempDir,
    child: Child,
    log_path: PathBuf,
}

impl Sshd {
    /// Start sshd on a free loopback port and wait (at most 10 s) until it accepts
    /// connections. Panics with sshd's log when it cannot.
    pub fn start() -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("nodepool-sshd.")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().to_owned();
        keygen(&path.join("host_ed25519"));
        keygen(&path.join("user_ed25519"));
        fs::copy(path.join("user_ed25519.pub"), path.join("authorized_keys"))
            .expect("authorized_keys");
        let node_root = path.join("root");
        fs::create_dir_all(&node_root).expect("node root");
        // sshd will not start without its privilege separation directory.
        if !Path::new("/run/sshd").exists() {
            let _ = fs::create_dir_all("/run/sshd");
        }
        let user = current_user();
        let log_path = path.join("sshd.log");

        let mut failures = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let config = path.join("sshd_config");
            fs::write(&config, sshd_config(&path, port, &node_root)).expect("sshd_config");
            let log = fs::File::create(&log_path).expect("sshd log");
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {SSHD} (install openssh-server): {e}"));
            match wait_until_listening(&mut child, port) {
                Ok(()) => {
                    return Sshd {
                        port,
                        user,
                        private_key: path.join("user_ed25519"),
                        node_root,
                        dir,
                        child,
                        log_path,
                    }
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = fs::read_to_string(&log_path).unwrap_or_default();
                    failures.push_str(&format!("port {port}: {why}\n{log}\n"));
                    // Another process took the port between our probe and sshd's bind: try
                    // another one. Anything else will not get better.
                    if !log.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("sshd did not start:\n{failures}");
    }

    /// How to reach this sshd as its user.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port: self.port,
            user: self.user.clone(),
            private_key: self.private_key.clone(),
        }
    }

    /// sshd's log so far (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Child::kill signals this child's PID only; then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sshd_config(dir: &Path, port: u16, node_root: &Path) -> String {
    format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {dir}/host_ed25519\n\
         PidFile {dir}/sshd.pid\n\
         AuthorizedKeysFile {dir}/authorized_keys\n\
         StrictModes no\n\
         MaxStartups 100\n\
         UsePAM no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         UseDNS no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         SetEnv NODEPOOL_NODE_ROOT={root}\n",
        dir = dir.display(),
        root = node_root.display(),
    )
}

/// An ed25519 key pair at `path` and `path.pub`, without a passphrase.
fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "nodepool-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen (install openssh-client)");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    assert!(out.status.success(), "id -un failed");
    String::from_utf8(out.stdout)
        .expect("user name")
        .trim()
        .to_owned()
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Poll until `port` accepts a TCP connection, sshd exits, or START_TIMEOUT passes.
fn wait_until_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("sshd exited: {status}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("not listening after {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
