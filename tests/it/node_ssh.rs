//! SSH to nodes and the node bootstrap, against real sshd servers on loopback.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nodepool::node::bootstrap::{self, Member, NodeSet};
use nodepool::node::ssh;

use crate::support::sshd::Sshd;

const TIMEOUT: Duration = Duration::from_secs(20);

fn scanned(sshd: &Sshd) -> String {
    ssh::keyscan("127.0.0.1", sshd.port, TIMEOUT)
        .expect("keyscan")
        .unwrap_or_else(|| panic!("no host keys from sshd; its log:\n{}", sshd.log()))
}

#[test]
fn keyscan_returns_the_host_keys_of_a_running_sshd() {
    let sshd = Sshd::start();
    let keys = scanned(&sshd);
    let host_key = fs::read_to_string(sshd.dir.path().join("host_ed25519.pub")).unwrap();
    let base64 = host_key.split_whitespace().nth(1).unwrap();
    assert_eq!(
        keys,
        format!("[127.0.0.1]:{} ssh-ed25519 {base64}\n", sshd.port)
    );
}

#[test]
fn keyscan_of_a_closed_port_is_none_within_its_timeout() {
    // A port nobody listens on: bind, read it, close.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let keys = ssh::keyscan("127.0.0.1", port, Duration::from_secs(3)).unwrap();
    assert_eq!(keys, None);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn run_with_the_scanned_keys_returns_stdout() {
    let sshd = Sshd::start();
    let keys = scanned(&sshd);
    let out = ssh::run(
        &sshd.endpoint(),
        &keys,
        "echo \"hello from $(id -un)\"\necho \"root=$NODEPOOL_NODE_ROOT\"\n",
        TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e:#}\nsshd log:\n{}", sshd.log()));
    assert_eq!(
        out,
        format!(
            "hello from {}\nroot={}\n",
            sshd.user,
            sshd.node_root.display()
        )
    );
    ssh::check(&sshd.endpoint(), &keys, TIMEOUT).expect("check");
}

#[test]
fn run_refuses_a_host_whose_key_is_not_the_recorded_one() {
    let sshd = Sshd::start();
    // Another ed25519 key recorded for the same host and port.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    let other_pub = fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut fields = other_pub.split_whitespace();
    let wrong = format!(
        "[127.0.0.1]:{} {} {}\n",
        sshd.port,
        fields.next().unwrap(),
        fields.next().unwrap()
    );

    let marker = sshd.node_root.join("ran");
    let script = format!("touch '{}'\n", marker.display());
    let err = ssh::run(&sshd.endpoint(), &wrong, &script, TIMEOUT).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!("{}@127.0.0.1:{}", sshd.user, sshd.port)),
        "{msg}"
    );
    assert!(msg.contains("exit status 255"), "{msg}");
    assert!(msg.contains("Host key verification failed"), "{msg}");
    assert!(!marker.exists(), "the script must not have run");
    // The real keys still work: the refusal was about the key alone.
    ssh::run(&sshd.endpoint(), &scanned(&sshd), &script, TIMEOUT).unwrap();
    assert!(marker.exists());
}

#[test]
fn run_with_no_recorded_keys_is_refused_before_connecting() {
    let sshd = Sshd::start();
    let err = ssh::run(&sshd.endpoint(), "\n# nothing\n", "true\n", TIMEOUT).unwrap_err();
    assert!(format!("{err:#}").contains("no host keys"), "{err:#}");
}

#[test]
fn a_failing_script_reports_its_status_and_stderr() {
    let sshd = Sshd::start();
    let keys = scanned(&sshd);
    let err = ssh::run(
        &sshd.endpoint(),
        &keys,
        "echo one >&2\necho boom >&2\nexit 3\n",
        TIMEOUT,
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("exit status 3"), "{msg}");
    assert!(msg.ends_with("one; boom"), "{msg}");
    assert!(ssh::check(&sshd.endpoint(), &keys, TIMEOUT).is_ok());
}

#[test]
fn run_is_killed_at_its_timeout() {
    let sshd = Sshd::start();
    let keys = scanned(&sshd);
    let started = Instant::now();
    let err = ssh::run(
        &sshd.endpoint(),
        &keys,
        "sleep 30\n",
        Duration::from_secs(1),
    )
    .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(format!("{err:#}").contains("timed out after 1s"), "{err:#}");
}

#[test]
fn the_public_key_of_the_test_users_key_is_the_authorized_one() {
    let sshd = Sshd::start();
    let authorized = fs::read_to_string(sshd.dir.path().join("authorized_keys")).unwrap();
    assert_eq!(
        ssh::public_key_of(&sshd.private_key).unwrap(),
        authorized.trim()
    );
}

fn member(sshd: &Sshd, n: u8) -> Member {
    Member {
        hostname: format!("node-{n}.example.org"),
        server_id: format!("0000000{n}-aaaa-bbbb-cccc-dddddddddddd"),
        public_ip: format!("203.0.113.{n}"),
        private_ip: format!("10.0.0.{n}"),
        endpoint: sshd.endpoint(),
        known_hosts: scanned(sshd),
    }
}

fn read(root: &Path, name: &str) -> String {
    fs::read_to_string(root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The whole bootstrap as rounds of SSH steps do it: the files, then ready-script steps
/// until every member's has finished (at most 10 s, bounded by count).
fn bootstrap_fully(set: &NodeSet, scripts: &Path, ready: &str, work: &Path) -> anyhow::Result<()> {
    bootstrap::write_files(set, Some(scripts), work, TIMEOUT)?;
    for _ in 0..200 {
        if bootstrap::ready_scripts(set, ready, TIMEOUT)? {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    anyhow::bail!("the ready scripts did not finish within 10 s")
}

#[test]
fn bootstrap_writes_the_files_and_runs_the_ready_script_on_every_member() {
    // Given to the ready script like every NODEPOOL_* variable. Set before anything in this
    // test starts a process; std serializes environment access with process spawning.
    std::env::set_var("NODEPOOL_TEST_VAR", "it's $value");
    let primary = Sshd::start();
    let sub = Sshd::start();
    let set = NodeSet {
        provider: "fake-provider".into(),
        cloud: None,
        region: Some("RegionOne".into()),
        az: Some("nova".into()),
        primary: member(&primary, 1),
        subnodes: vec![member(&sub, 2)],
    };
    let scripts = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let ready = scripts.path().join("ready.sh");
    fs::write(
        &ready,
        "#!/bin/sh\nset -eu\nprintf '%s\\n%s\\n' \"$1\" \"$NODEPOOL_TEST_VAR\" > \"$NODEPOOL_NODE_ROOT/ready.out\"\n",
    )
    .unwrap();
    fs::set_permissions(&ready, fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(scripts.path().join("lib")).unwrap();
    fs::write(scripts.path().join("lib/common.sh"), "# shared\n").unwrap();

    bootstrap_fully(&set, scripts.path(), "ready.sh", work.path())
        .unwrap_or_else(|e| panic!("{e:#}\nsshd logs:\n{}\n{}", primary.log(), sub.log()));

    let p = primary.node_root.join("etc/nodepool");
    let s = sub.node_root.join("etc/nodepool");
    assert_eq!(read(&p, "role"), "primary\n");
    assert_eq!(read(&s, "role"), "sub\n");
    assert_eq!(read(&p, "node"), "203.0.113.1\n");
    assert_eq!(read(&s, "node"), "203.0.113.2\n");
    assert_eq!(read(&s, "node_private"), "10.0.0.2\n");
    for root in [&p, &s] {
        assert_eq!(read(root, "primary_node"), "203.0.113.1\n");
        assert_eq!(read(root, "primary_node_private"), "10.0.0.1\n");
        assert_eq!(read(root, "sub_nodes"), "203.0.113.2\n");
        assert_eq!(read(root, "sub_nodes_private"), "10.0.0.2\n");
        assert_eq!(
            read(root, "provider"),
            "NODEPOOL_PROVIDER=fake-provider\nNODEPOOL_CLOUD=\nNODEPOOL_REGION=RegionOne\nNODEPOOL_AZ=nova\n"
        );
        let mode = fs::metadata(root.join("id_rsa"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(read(&p, "uuid"), "00000001-aaaa-bbbb-cccc-dddddddddddd\n");
    assert_eq!(read(&s, "uuid"), "00000002-aaaa-bbbb-cccc-dddddddddddd\n");

    // One key pair for the set, the same on both, and its halves match.
    assert_eq!(read(&p, "id_rsa"), read(&s, "id_rsa"));
    assert_eq!(read(&p, "id_rsa.pub"), read(&s, "id_rsa.pub"));
    assert_eq!(
        ssh::public_key_of(&p.join("id_rsa")).unwrap() + "\n",
        read(&p, "id_rsa.pub")
    );

    // The script-dir was copied to both, subdirectories included.
    for sshd in [&primary, &sub] {
        let copied = sshd.node_root.join("opt/nodepool-scripts");
        assert_eq!(read(&copied, "lib/common.sh"), "# shared\n");
        let mode = fs::metadata(copied.join("ready.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    // The ready script ran on both, with each member's hostname and the environment.
    assert_eq!(
        read(&primary.node_root, "ready.out"),
        "node-1.example.org\nit's $value\n"
    );
    assert_eq!(
        read(&sub.node_root, "ready.out"),
        "node-2.example.org\nit's $value\n"
    );
}

#[test]
fn a_failing_ready_script_names_the_member() {
    let sshd = Sshd::start();
    let set = NodeSet {
        provider: "fake-provider".into(),
        cloud: None,
        region: None,
        az: None,
        primary: member(&sshd, 1),
        subnodes: vec![],
    };
    let scripts = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let ready = scripts.path().join("ready.sh");
    fs::write(&ready, "#!/bin/sh\necho 'not ready' >&2\nexit 4\n").unwrap();
    fs::set_permissions(&ready, fs::Permissions::from_mode(0o755)).unwrap();

    let err = bootstrap_fully(&set, scripts.path(), "ready.sh", work.path()).unwrap_err();
    let msg = format!("{err:#}");
    assert_eq!(
        msg,
        "ready script ready.sh on node-1.example.org exited with status 4; its output \
         ends:\nnot ready"
    );
    // The files were written before the ready script ran.
    assert_eq!(
        read(&sshd.node_root.join("etc/nodepool"), "role"),
        "primary\n"
    );
}
