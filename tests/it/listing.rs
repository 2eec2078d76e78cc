//! Listing and state commands on a seeded database: 2015 columns, stable JSON keys, and the
//! compare-and-set `hold`/`delete` transitions with their races.

use nodepool::model::{ImageState, NodeId, NodeState};
use nodepool::state::{images, nodes};
use serde_json::Value;

use crate::support::{status, stderr, stdout, Install};

fn json(out: &std::process::Output) -> Value {
    assert_eq!(status(out), 0, "{}", stderr(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document: {e}\n{}", stdout(out)))
}

/// The object's keys, sorted (serde_json's map does not keep the printed order).
fn keys(object: &Value) -> Vec<&str> {
    object
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn sorted<const N: usize>(mut keys: [&str; N]) -> Vec<&str> {
    keys.sort_unstable();
    keys.to_vec()
}

#[test]
fn list_prints_the_2015_columns_for_every_node() {
    let install = Install::new();
    let db = install.db();
    let ready = install.seed_node(&db, "small", "p1", NodeState::Ready, 7200);
    let building = install.seed_node(&db, "large", "p2", NodeState::Building, 60);
    let out = install.run(&["list"]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1]
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>(),
        [
            "ID",
            "Provider",
            "AZ",
            "Label",
            "Target",
            "Hostname",
            "NodeName",
            "Server ID",
            "IP",
            "State",
            "Age (hours)"
        ]
    );
    let row = |id: NodeId| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("| {id} ")))
            .unwrap_or_else(|| panic!("no row for {id}:\n{text}"))
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
    };
    let r = row(ready);
    assert_eq!(
        r[1..10],
        [
            "p1",
            "nova",
            "small",
            "jenkins",
            &format!("small-p1-{ready}"),
            &format!("small-p1-{ready}"),
            &format!("server-{ready}"),
            &format!("203.0.113.{ready}"),
            "ready"
        ]
    );
    assert_eq!(r[10], "2.00");
    assert_eq!(row(building)[9], "building");
    assert_eq!(
        lines.len(),
        3 + 2 + 1,
        "borders, header and two nodes:\n{text}"
    );
}

#[test]
fn list_json_is_one_array_with_stable_keys() {
    let install = Install::new();
    let db = install.db();
    let id = install.seed_node(&db, "small", "p2", NodeState::Used, 1800);
    let doc = json(&install.run(&["--format", "json", "list"]));
    let nodes = doc.as_array().expect("array");
    assert_eq!(nodes.len(), 1);
    let node = &nodes[0];
    let expected = [
        "id",
        "provider",
        "az",
        "label",
        "target",
        "hostname",
        "nodename",
        "server_id",
        "ip",
        "ip_private",
        "state",
        "state_time",
        "age_hours",
    ];
    for key in expected {
        assert!(keys(node).contains(&key), "missing {key} in {node}");
    }
    assert_eq!(node["id"], id.0);
    assert_eq!(node["provider"], "p2");
    assert_eq!(node["state"], "used");
    assert_eq!(node["server_id"], format!("server-{id}"));
    assert_eq!(node["ip_private"], format!("10.0.0.{id}"));
    assert_eq!(node["age_hours"], 0.5);
    assert!(
        node["state_time"].as_str().unwrap().ends_with('Z'),
        "RFC 3339 UTC: {}",
        node["state_time"]
    );
}

#[test]
fn empty_listings_are_a_header_or_an_empty_array() {
    let install = Install::new();
    for command in ["list", "image-list", "dib-image-list"] {
        assert_eq!(
            json(&install.run(&["--format", "json", command])),
            Value::Array(vec![]),
            "{command}"
        );
        let out = install.run(&[command]);
        // top border, header, rule, bottom border
        assert_eq!(
            (status(&out), stdout(&out).lines().count()),
            (0, 4),
            "{command}: {}",
            stdout(&out)
        );
    }
}

#[test]
fn image_lists_show_provider_images_and_local_builds() {
    let install = Install::new();
    let db = install.db();
    let now = nodepool::clock::now();
    let id = images::insert_provider_image(
        db.conn(),
        &"p1".into(),
        &"trusty".into(),
        1700000000,
        ImageState::Ready,
        now - 3600,
    )
    .unwrap();
    db.conn()
        .execute(
            "UPDATE snapshot_image SET hostname = 'trusty-1700000000.template.openstack.org', external_id = 'img-1', \
             server_external_id = 'srv-9' WHERE id = ?1",
            [id],
        )
        .unwrap();
    images::insert_dib_image(
        db.conn(),
        &"devstack".into(),
        "/opt/dib/devstack-1",
        3,
        ImageState::Building,
        now,
    )
    .unwrap();

    let doc = json(&install.run(&["--format", "json", "image-list"]));
    let image = &doc[0];
    assert_eq!(
        keys(image),
        sorted([
            "id",
            "provider",
            "image",
            "hostname",
            "version",
            "image_id",
            "server_id",
            "state",
            "error",
            "state_time",
            "age_hours"
        ])
    );
    assert_eq!(
        (image["image_id"].as_str(), image["server_id"].as_str()),
        (Some("img-1"), Some("srv-9"))
    );
    assert_eq!(
        (image["version"].as_i64(), image["age_hours"].as_f64()),
        (Some(1700000000), Some(1.0))
    );

    let table = stdout(&install.run(&["image-list"]));
    assert!(
        table.contains("| ID | Provider | Image  | Hostname"),
        "{table}"
    );
    assert!(
        table.contains("| img-1    | srv-9     | ready | 1.00"),
        "{table}"
    );

    let doc = json(&install.run(&["--format", "json", "dib-image-list"]));
    assert_eq!(
        keys(&doc[0]),
        sorted([
            "id",
            "image",
            "filename",
            "version",
            "state",
            "state_time",
            "age_hours"
        ])
    );
    assert_eq!(
        (doc[0]["filename"].as_str(), doc[0]["state"].as_str()),
        (Some("/opt/dib/devstack-1"), Some("building"))
    );
    let table = stdout(&install.run(&["dib-image-list"]));
    assert!(
        table
            .contains("| ID | Image    | Filename            | Version | State    | Age (hours) |"),
        "{table}"
    );
}

#[test]
fn hold_moves_a_node_to_hold_and_says_from_where() {
    let install = Install::new();
    let db = install.db();
    let id = install.seed_node(&db, "small", "p1", NodeState::Ready, 10);
    let out = install.run(&["hold", &id.to_string()]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("node {id}: ready -> hold")),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        nodes::get(db.conn(), id).unwrap().unwrap().state,
        NodeState::Hold
    );
    // Holding again is not an error.
    let again = json(&install.run(&["--format", "json", "hold", &id.to_string()]));
    assert_eq!(
        (again["state"].as_str(), again["changed"].as_bool()),
        (Some("hold"), Some(false))
    );
}

#[test]
fn hold_loses_to_a_deletion_that_already_began() {
    let install = Install::new();
    let db = install.db();
    let id = install.seed_node(&db, "small", "p1", NodeState::Delete, 10);
    let out = install.run(&["hold", &id.to_string()]);
    assert_eq!(status(&out), 1);
    assert!(
        stderr(&out).contains(&format!("node {id} is in state delete")),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        nodes::get(db.conn(), id).unwrap().unwrap().state,
        NodeState::Delete
    );
}

#[test]
fn delete_marks_any_node_including_a_held_one() {
    let install = Install::new();
    let db = install.db();
    let held = install.seed_node(&db, "small", "p1", NodeState::Hold, 10);
    let out = json(&install.run(&["--format", "json", "delete", &held.to_string()]));
    assert_eq!(
        (
            out["state"].as_str(),
            out["previous_state"].as_str(),
            out["changed"].as_bool()
        ),
        (Some("delete"), Some("hold"), Some(true))
    );
    let node = nodes::get(db.conn(), held).unwrap().unwrap();
    assert_eq!(node.state, NodeState::Delete);
    assert!(
        node.state_time >= nodepool::clock::now() - 5,
        "state_time is updated on every change"
    );
    let again = install.run(&["delete", &held.to_string()]);
    assert_eq!(status(&again), 0);
    assert!(stdout(&again).contains("already in state delete"));
}

#[test]
fn unknown_node_ids_are_named_in_the_error() {
    let install = Install::new();
    for command in ["hold", "delete"] {
        let out = install.run(&[command, "4242"]);
        assert_eq!(status(&out), 1, "{command}");
        assert!(
            stderr(&out).contains("no node with id 4242"),
            "{command}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_pass_that_read_the_node_before_hold_loses_its_write() {
    // The race the CLI cannot stage by itself: a pass reads the node, `nodepool hold` runs,
    // then the pass tries its compare-and-set.
    let install = Install::new();
    let db = install.db();
    let id = install.seed_node(&db, "small", "p1", NodeState::Ready, 10);
    let seen_by_pass = nodes::get(db.conn(), id).unwrap().unwrap();
    assert_eq!(status(&install.run(&["hold", &id.to_string()])), 0);
    let won = nodes::transition(
        db.conn(),
        id,
        seen_by_pass.state,
        NodeState::Used,
        nodepool::clock::now(),
    )
    .unwrap();
    assert!(!won, "the pass must lose");
    assert_eq!(
        nodes::get(db.conn(), id).unwrap().unwrap().state,
        NodeState::Hold
    );
}

#[test]
fn status_counts_nodes_per_label_and_provider_against_the_config() {
    let install = Install::new();
    let db = install.db();
    for state in [
        NodeState::Ready,
        NodeState::Ready,
        NodeState::Building,
        NodeState::Hold,
    ] {
        install.seed_node(&db, "small", "p1", state, 10);
    }
    install.seed_node(&db, "small", "p2", NodeState::Used, 10);
    install.seed_node(&db, "gone", "p1", NodeState::Ready, 10);
    let doc = json(&install.run(&["--format", "json", "status"]));
    let row = |label: &str, provider: &str| {
        doc.as_array()
            .unwrap()
            .iter()
            .find(|r| r["label"] == label && r["provider"] == provider)
            .unwrap_or_else(|| panic!("no row {label}/{provider}: {doc}"))
            .clone()
    };
    let small_p1 = row("small", "p1");
    assert_eq!(
        [
            &small_p1["ready"],
            &small_p1["building"],
            &small_p1["held"],
            &small_p1["min_ready"],
            &small_p1["max_servers"]
        ],
        [2, 1, 1, 3, 10]
    );
    assert_eq!(row("small", "p2")["used"], 1);
    assert_eq!(
        row("large", "p1")["ready"],
        0,
        "configured pairs appear with no nodes"
    );
    assert_eq!(row("gone", "p1")["configured"], false);
    let table = stdout(&install.run(&["status"]));
    assert!(table.contains("gone (not configured)"), "{table}");
}

#[test]
fn listing_a_missing_database_creates_nothing_and_names_the_path() {
    let install = Install::new();
    for command in ["list", "image-list", "dib-image-list", "status"] {
        let out = install.run(&[command]);
        assert_eq!(status(&out), 0, "{command}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "note: no database at {} yet",
                install.database().display()
            )),
            "{command}: {}",
            stderr(&out)
        );
    }
    let json = stdout(&install.run(&["--format", "json", "list"]));
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        serde_json::json!([])
    );
    assert!(
        !install.database().parent().unwrap().exists(),
        "a listing created the state directory or the database"
    );
}

#[test]
fn a_user_who_cannot_write_the_database_can_still_list_it() {
    use std::os::unix::fs::PermissionsExt;
    let install = Install::new();
    let db = install.db();
    let id = install.seed_node(&db, "small", "p1", NodeState::Ready, 60);
    drop(db); // the last connection: -wal and -shm go, as after a run
    let state = install.database().parent().unwrap().to_path_buf();
    let root = nix_is_root();
    // A monitoring account: may read the files, may not write the directory or the file.
    let dir = install.dir.path();
    for (path, mode) in [
        (dir, 0o755),
        (state.as_path(), 0o755),
        (install.config.as_path(), 0o644),
        (install.database().as_path(), 0o644),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let out = if root {
        // Root ignores permissions: list as nobody, with a copy of the binary it can run.
        let bin = dir.join("nodepool");
        std::fs::copy(crate::support::BIN, &bin).unwrap();
        std::process::Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(&bin)
            .args(["-c".as_ref(), install.config.as_os_str(), "list".as_ref()])
            .env_remove("RUST_LOG")
            .output()
            .expect("setpriv")
    } else {
        for path in [state.as_path(), install.database().as_path()] {
            let mode = if path.is_dir() { 0o555 } else { 0o444 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        install.run(&["list"])
    };
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("| {id} ")),
        "{}",
        stdout(&out)
    );
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        ["nodepool.db"],
        "the listing wrote beside the database"
    );
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn list_shows_a_nodes_subnodes_after_it_in_the_table_and_inside_it_in_json() {
    let install = Install::new();
    let db = install.db();
    let id = install.seed_node(&db, "large", "p1", NodeState::Building, 60);
    let (sub, _) =
        nodepool::state::subnodes::insert(db.conn(), id, 1, |s| format!("large-sub-{s}"))
            .unwrap()
            .expect("a subnode of a building node");
    db.conn()
        .execute(
            "UPDATE subnode SET external_id = 'server-sub', ip = '203.0.113.99' WHERE id = ?1",
            [sub.0],
        )
        .unwrap();
    let other = install.seed_node(&db, "small", "p1", NodeState::Ready, 60);

    let text = stdout(&install.run(&["list"]));
    let lines: Vec<&str> = text.lines().collect();
    let at = |prefix: String| lines.iter().position(|l| l.starts_with(&prefix));
    let primary = at(format!("| {id} ")).expect("the primary's row");
    let subnode = at(format!("| {id}.{} ", sub.0)).unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        subnode,
        primary + 1,
        "the subnode follows its node:\n{text}"
    );
    let row = lines[subnode];
    assert!(row.contains(&format!("large-sub-{}", sub.0)), "{row}");
    assert!(
        row.contains("server-sub") && row.contains("203.0.113.99"),
        "{row}"
    );
    assert!(row.contains("building"), "{row}");

    let json: Value =
        serde_json::from_str(&stdout(&install.run(&["--format", "json", "list"]))).unwrap();
    let node = |id: NodeId| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id.0)
            .cloned()
            .unwrap()
    };
    let subnodes = node(id)["subnodes"].as_array().cloned().unwrap();
    assert_eq!(subnodes.len(), 1, "{json:#}");
    assert_eq!(subnodes[0]["id"], sub.0);
    assert_eq!(subnodes[0]["server_id"], "server-sub");
    assert_eq!(subnodes[0]["state"], "building");
    assert_eq!(node(other)["subnodes"], serde_json::json!([]));
}
