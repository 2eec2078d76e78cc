//! `alien-list` and `alien-image-list` against the simulator: servers, snapshots and uploads
//! the database does not know, with nodepool's own leaks marked.

use std::collections::BTreeMap;

use nodepool::cloud::openstack::http::CallCounter;
use nodepool::cloud::openstack::OpenStack;
use nodepool::cloud::Cloud;
use nodepool::model::{ImageState, NodeState};
use nodepool::state::images;
use nodepool_simulator::{Knobs, Simulator};

use crate::support;
use crate::support::simulator::client_settings;
use crate::support::{status, stderr, stdout, Install};

fn config(sims: &[&Simulator]) -> String {
    let providers: String = sims
        .iter()
        .enumerate()
        .map(|(i, sim)| {
            format!(
                "  - name: p{}\n    auth-url: {}\n    username: demo\n    password: secret\n    project-id: demo\n    max-servers: 5\n    images:\n      - name: trusty\n        base-image: Ubuntu 22.04\n        min-ram: 512\n",
                i + 1,
                sim.auth_url_v3()
            )
        })
        .collect();
    format!("dburi: state/nodepool.db\nproviders:\n{providers}targets:\n  - name: jenkins\n")
}

fn client(sim: &Simulator) -> OpenStack {
    OpenStack::connect(&client_settings(sim, "setup"), CallCounter::default()).unwrap()
}

#[test]
fn alien_list_shows_unknown_servers_and_marks_nodepools_own() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let install = Install::with_config(&config(&[&sim]));
    let cloud = client(&sim);
    let known = support::create_server(
        &cloud,
        "small-p1-1",
        &[("nodepool_node_id", "1"), ("nodepool_provider_name", "p1")],
    );
    let leaked = support::create_server(
        &cloud,
        "small-p1-2",
        &[("nodepool_node_id", "2"), ("nodepool_provider_name", "p1")],
    );
    let stranger = support::create_server(&cloud, "someones-vm", &[]);
    let staging = support::create_server(
        &cloud,
        "small-p1-1",
        &[
            ("nodepool_installation", "0123456789abcdef"),
            ("nodepool_node_id", "1"),
            ("nodepool_provider_name", "p1"),
        ],
    );
    let db = install.db();
    let id = install.seed_node(&db, "small", "p1", NodeState::Ready, 10);
    db.conn()
        .execute(
            "UPDATE node SET external_id = ?1 WHERE id = ?2",
            rusqlite::params![known, id],
        )
        .unwrap();

    let out = install.run(&["--format", "json", "alien-list"]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let aliens: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_id = |id: &str| {
        aliens
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["server_id"] == id)
            .cloned()
    };
    assert!(
        by_id(&known).is_none(),
        "a known server is no alien: {aliens}"
    );
    let leaked = by_id(&leaked).expect("leaked server listed");
    assert_eq!(
        (
            leaked["nodepool_metadata"].as_bool(),
            leaked["node_id"].as_str()
        ),
        (Some(true), Some("2"))
    );
    let stranger = by_id(&stranger).expect("stranger listed");
    assert_eq!(
        (
            stranger["nodepool_metadata"].as_bool(),
            stranger["hostname"].as_str()
        ),
        (Some(false), Some("someones-vm"))
    );
    assert_eq!(stranger["ip"], "127.0.0.1");
    let staging = by_id(&staging).expect("another installation's server listed");
    assert_eq!(
        (
            staging["nodepool_metadata"].as_bool(),
            staging["other_installation"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert_eq!(leaked["other_installation"], false);

    let table = stdout(&install.run(&["alien-list", "p1"]));
    assert!(
        table.contains("| Provider | Hostname    | Server ID"),
        "{table}"
    );
    assert!(table.contains("leaked"), "{table}");
    assert!(table.contains("other installation"), "{table}");
}

#[test]
fn alien_image_list_shows_unknown_snapshots_only() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let install = Install::with_config(&config(&[&sim]));
    let cloud = client(&sim);
    let template = support::create_server(&cloud, "template", &[]);
    let mut metadata = BTreeMap::new();
    metadata.insert("nodepool_provider_name".to_string(), "p1".to_string());
    let snapshot = cloud
        .create_snapshot(&template, "trusty-1700000000", &metadata)
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(
        &install
            .run(&["--format", "json", "alien-image-list"])
            .stdout,
    )
    .unwrap();
    let images = doc.as_array().expect("array");
    assert_eq!(images.len(), 1, "base images are not aliens: {doc}");
    assert_eq!(
        (
            images[0]["image_id"].as_str(),
            images[0]["nodepool_metadata"].as_bool()
        ),
        (Some(snapshot.as_str()), Some(true))
    );
}

/// An image made as `image-upload` makes one: created with `properties`, then its data sent.
fn upload(cloud: &OpenStack, name: &str, properties: &[(&str, &str)]) -> String {
    let properties = properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let id = cloud.create_image(name, "qcow2", &properties).unwrap();
    cloud.upload_image(&id, &mut &b"disk"[..], 4).unwrap();
    id
}

#[test]
fn alien_image_list_shows_unrecorded_uploads_with_nodepools_properties_not_cloud_images() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let install = Install::with_config(&config(&[&sim]));
    let cloud = client(&sim);
    let db = install.db();
    let installation = nodepool::state::pass::installation(db.conn()).unwrap();
    // An upload carrying what image-upload writes for row `row`.
    let nodepool_upload = |installation: &str, name: &str, row: i64| {
        let row = row.to_string();
        let properties = [
            ("nodepool_installation", installation),
            ("nodepool_provider_name", "p1"),
            ("nodepool_image_name", "trusty"),
            ("nodepool_build_id", "1"),
            ("nodepool_upload_id", &row),
        ];
        upload(&cloud, name, &properties)
    };
    let row = || {
        images::insert_provider_image(
            db.conn(),
            &"p1".into(),
            &"trusty".into(),
            1,
            ImageState::Ready,
            nodepool::clock::now(),
        )
        .unwrap()
    };
    let recorded_row = row();
    let recorded = nodepool_upload(&installation, "trusty-1", recorded_row);
    images::record_external_id(db.conn(), recorded_row, &recorded).unwrap();
    // Its row deleted by hand: nodepool's upload, recorded nowhere.
    let lost_row = row();
    let lost = nodepool_upload(&installation, "trusty-2", lost_row);
    images::remove_provider_image(db.conn(), lost_row).unwrap();
    let staging = nodepool_upload("0123456789abcdef", "trusty-1", 1);
    let plain = upload(&cloud, "Debian 12", &[("os_distro", "debian")]);

    let out = install.run(&["--format", "json", "alien-image-list"]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: BTreeMap<&str, (bool, bool)> = doc
        .as_array()
        .expect("array")
        .iter()
        .map(|i| {
            (
                i["image_id"].as_str().unwrap(),
                (
                    i["nodepool_metadata"].as_bool().unwrap(),
                    i["other_installation"].as_bool().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(
        listed,
        BTreeMap::from([
            (lost.as_str(), (true, false)),
            (staging.as_str(), (true, true))
        ]),
        "neither the recorded upload {recorded}, the plain cloud image {plain} nor the base \
         images: {doc}"
    );

    let table = stdout(&install.run(&["alien-image-list"]));
    let line = |id: &str| table.lines().find(|l| l.contains(id)).unwrap_or_default();
    assert!(line(&lost).contains("leaked"), "{table}");
    assert!(line(&staging).contains("other installation"), "{table}");
}

#[test]
fn alien_list_over_many_providers_costs_one_token_and_one_list_each() {
    let sims: Vec<Simulator> = (0..3)
        .map(|_| Simulator::start(Knobs::default()).unwrap())
        .collect();
    let install = Install::with_config(&config(&sims.iter().collect::<Vec<_>>()));
    let out = install.run(&["--debug", "alien-list"]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    for sim in &sims {
        let calls = sim.calls();
        assert_eq!(calls.total, 2, "{:?}", calls.by_route);
        assert_eq!(calls.route("POST /identity/v3/auth/tokens"), 1);
        assert_eq!(calls.route("GET /compute/servers/detail"), 1);
    }
    assert!(
        stderr(&out).contains("API calls: 6 in all"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn one_unreachable_provider_does_not_hide_the_others() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let text = config(&[&sim]).replace("providers:\n", "providers:\n  - name: p0\n    auth-url: http://127.0.0.1:9/v3\n    username: u\n    password: secretpw\n    project-id: x\n    max-servers: 1\n");
    let install = Install::with_config(&text);
    let out = install.run(&["--debug", "alien-list"]);
    assert_eq!(status(&out), 69, "done, but degraded: {}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "warning: done, but 1 provider could not be reached; p0: POST identity \
             /v3/auth/tokens to http://127.0.0.1:9: no answer after"
        ),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("Provider"), "the listing is printed");
    assert!(
        stderr(&out).contains("API calls"),
        "--debug reports calls: {}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("secretpw"),
        "the password leaked: {}",
        stderr(&out)
    );
    let unknown = install.run(&["alien-list", "nope"]);
    assert_eq!(status(&unknown), 1);
    assert!(
        stderr(&unknown).contains("no provider named `nope`"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn rust_log_trace_never_prints_the_password_or_a_token() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let install = Install::with_config(&config(&[&sim]));
    let out = std::process::Command::new(support::BIN)
        .arg("-c")
        .arg(&install.config)
        .arg("alien-list")
        .env("RUST_LOG", "trace")
        .output()
        .expect("run nodepool");
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let log = stderr(&out).to_lowercase();
    assert!(
        log.contains("call<sendrequest>"),
        "the HTTP library logs at debug: {log}"
    );
    assert!(!log.contains("secret"), "the password leaked: {log}");
    // At trace the HTTP library dumps every byte sent and received, 16 to a row in hex and
    // text: tokens and the password with them.
    let dump = log.lines().find(|line| {
        let words: Vec<&str> = line.split(' ').skip(1).take(8).collect();
        words.len() == 8
            && words
                .iter()
                .all(|w| w.len() == 4 && w.chars().all(|c| c.is_ascii_hexdigit()))
    });
    assert_eq!(dump, None, "raw HTTP bytes in the log");
}
