//! The OpenStack client against the simulator: every call, and each fault the client must
//! survive or report by kind.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nodepool::cloud::openstack::http::CallCounter;
use nodepool::cloud::openstack::{OpenStack, Settings};
use nodepool::cloud::{Cloud, CreateServer, ErrorKind, ServerStatus};
use nodepool::model::Secret;
use nodepool_simulator::{Knobs, Simulator};

use crate::support;
use crate::support::simulator::client_settings;

/// The simulator's client settings, with another Keystone URL and password.
fn settings_for(sim: &Simulator, auth_url: String, password: &str) -> Settings {
    let mut settings = client_settings(sim, "sim");
    settings.credentials.auth_url = auth_url;
    settings.credentials.password = Secret(password.into());
    settings
}

fn connect(sim: &Simulator) -> OpenStack {
    OpenStack::connect(
        &settings_for(sim, sim.auth_url_v3(), "secret"),
        CallCounter::default(),
    )
    .expect("connect")
}

#[test]
fn keystone_v3_v2_and_discovery_all_lead_to_the_same_cloud() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    for url in [
        sim.auth_url_v3(),
        sim.auth_url_v2(),
        sim.auth_url_unversioned(),
    ] {
        let cloud = OpenStack::connect(
            &settings_for(&sim, url.clone(), "secret"),
            CallCounter::default(),
        )
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(
            cloud.endpoints().compute.ends_with("/compute/v2.1"),
            "{url}: {:?}",
            cloud.endpoints()
        );
        assert!(cloud.endpoints().image.ends_with("/image/v2"));
        assert!(cloud.list_servers().unwrap().is_empty());
    }
}

#[test]
fn servers_are_created_listed_fetched_and_deleted() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let cloud = connect(&sim);
    let id = support::create_server(&cloud, "small-sim-1", &[("nodepool_node_id", "1")]);
    let server = cloud.get_server(&id).unwrap().expect("server");
    assert_eq!(
        (
            server.name.as_str(),
            server.metadata.get("nodepool_node_id").unwrap_or_default()
        ),
        ("small-sim-1", "1")
    );
    assert_eq!(
        server.public_v4.as_deref(),
        Some("127.0.0.1"),
        "loopback counts as reachable"
    );
    assert_eq!(cloud.list_servers().unwrap().len(), 1);
    cloud.delete_server(&id).unwrap();
    cloud
        .delete_server(&id)
        .expect("deleting a gone server succeeds");
    assert_eq!(cloud.get_server(&id).unwrap(), None);
    assert!(sim.dump().servers.is_empty());
}

#[test]
fn a_server_becomes_active_after_the_boot_delay() {
    let sim = Simulator::start(Knobs {
        boot_delay: Duration::from_millis(300),
        ..Knobs::default()
    })
    .unwrap();
    let cloud = connect(&sim);
    let id = support::create_server(&cloud, "n", &[("nodepool_node_id", "1")]);
    assert_eq!(
        cloud.get_server(&id).unwrap().unwrap().status,
        ServerStatus::Build
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while cloud.get_server(&id).unwrap().unwrap().status != ServerStatus::Active {
        assert!(Instant::now() < deadline, "never became ACTIVE");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn flavors_limits_zones_and_keypairs() {
    let sim = Simulator::start(Knobs {
        instance_quota: Some(7),
        ..Knobs::default()
    })
    .unwrap();
    let cloud = connect(&sim);
    assert!(!cloud.list_flavors().unwrap().is_empty());
    assert_eq!(cloud.limits().unwrap().max_instances, Some(7));
    assert!(!cloud.availability_zones().unwrap().is_empty());
    cloud
        .create_keypair("nodepool", "ssh-ed25519 AAAA test")
        .unwrap();
    assert_eq!(cloud.list_keypairs().unwrap()[0].name, "nodepool");
    cloud.delete_keypair("nodepool").unwrap();
    assert!(cloud.list_keypairs().unwrap().is_empty());
}

#[test]
fn lists_follow_pagination() {
    let sim = Simulator::start(Knobs {
        page_size: 2,
        ..Knobs::default()
    })
    .unwrap();
    let cloud = connect(&sim);
    for i in 0..5 {
        support::create_server(&cloud, &format!("n{i}"), &[("nodepool_node_id", "1")]);
    }
    let before = sim.calls().route("GET /compute/servers/detail");
    assert_eq!(cloud.list_servers().unwrap().len(), 5);
    assert_eq!(
        sim.calls().route("GET /compute/servers/detail") - before,
        3,
        "pages of 2, 2 and 1"
    );
}

#[test]
fn a_wrong_password_is_auth_failed_and_never_printed() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let error = OpenStack::connect(
        &settings_for(&sim, sim.auth_url_v3(), "hunter2-wrong"),
        CallCounter::default(),
    )
    .err()
    .expect("must fail");
    assert_eq!(error.kind, ErrorKind::AuthFailed, "{error}");
    assert!(!error.message.contains("hunter2-wrong"), "{error}");
    assert!(error.message.contains("HTTP 401"), "{error}");
    assert!(
        error.message.starts_with(&format!(
            "sim: authentication refused by {} for user `demo`, project `demo`",
            sim.auth_url_v3()
        )),
        "names the provider once, the URL, user and project: {error}"
    );
    assert_eq!(
        sim.calls().route(TOKENS),
        1,
        "a wrong password is not retried"
    );
}

const TOKENS: &str = "POST /identity/v3/auth/tokens";

#[test]
fn a_keystone_500_on_the_token_call_is_retried_like_a_get() {
    let sim = Simulator::start(Knobs {
        identity_fail_next: 1,
        ..Knobs::default()
    })
    .unwrap();
    let cloud = connect(&sim);
    assert!(cloud.list_servers().unwrap().is_empty());
    assert_eq!(sim.calls().route(TOKENS), 2, "{:?}", sim.calls());
}

#[test]
fn a_token_refused_during_the_run_is_replaced_once_and_the_call_repeated() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let cloud = connect(&sim);
    assert!(cloud.list_servers().unwrap().is_empty());
    sim.revoke_tokens();
    assert!(
        cloud.list_servers().unwrap().is_empty(),
        "repeated with a new token"
    );
    assert_eq!(sim.calls().route(TOKENS), 2);
    // Refused again right after a new token: not a loop of logins.
    sim.set_knobs(|k| k.password = "changed".into());
    sim.revoke_tokens();
    let error = cloud.list_servers().unwrap_err();
    assert_eq!(error.kind, ErrorKind::AuthFailed, "{error}");
    assert_eq!(
        sim.calls().route(TOKENS),
        3,
        "one more login, then the error"
    );
}

#[test]
fn quota_refusals_are_their_own_kind() {
    let sim = Simulator::start(Knobs {
        instance_quota: Some(1),
        ..Knobs::default()
    })
    .unwrap();
    let cloud = connect(&sim);
    support::create_server(&cloud, "first", &[("nodepool_node_id", "1")]);
    let flavor = cloud.list_flavors().unwrap()[0].id.clone();
    let image = cloud.list_images().unwrap()[0].id.clone();
    let error = cloud
        .create_server(&CreateServer {
            name: "second".into(),
            image_id: image,
            flavor_id: flavor,
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::QuotaExceeded, "{error}");
}

#[test]
fn errors_that_persist_end_after_a_bounded_number_of_attempts() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let cloud = connect(&sim);
    sim.set_knobs(|k| k.server_error_ratio = 1.0);
    let before = sim.calls().route("GET /compute/servers/detail");
    let started = Instant::now();
    let error = cloud.list_servers().unwrap_err();
    assert_eq!(error.kind, ErrorKind::Api { status: 500 }, "{error}");
    assert!(error.message.contains("after 3 attempts"), "{error}");
    assert_eq!(sim.calls().route("GET /compute/servers/detail") - before, 3);
    assert!(started.elapsed() < Duration::from_secs(2));
    // A POST is not repeated: it may have taken effect.
    let before = sim.calls().route("POST /compute/servers");
    let error = cloud
        .create_server(&CreateServer {
            name: "x".into(),
            image_id: "i".into(),
            flavor_id: "f".into(),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Api { status: 500 });
    assert_eq!(sim.calls().route("POST /compute/servers") - before, 1);
}

#[test]
fn rate_limits_are_waited_out_as_retry_after_says() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let cloud = connect(&sim);
    sim.set_knobs(|k| k.rate_limit_per_second = Some(2));
    let started = Instant::now();
    for _ in 0..4 {
        cloud
            .list_flavors()
            .expect("429 is retried after Retry-After");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 was honoured"
    );
}

#[test]
fn a_silent_cloud_times_out_within_the_bound() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let mut slow = settings_for(&sim, sim.auth_url_v3(), "secret");
    slow.timeouts.call = Duration::from_millis(200);
    let cloud = OpenStack::connect(&slow, CallCounter::default()).unwrap();
    sim.set_knobs(|k| k.latency = Duration::from_secs(2));
    let started = Instant::now();
    let error = cloud.list_servers().unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transport, "{error}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "3 attempts of 200 ms plus backoff: {:?}",
        started.elapsed()
    );
}

#[test]
fn images_are_created_uploaded_as_a_stream_and_deleted() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let cloud = connect(&sim);
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(64 * 1024 * 1024).unwrap();
    let mut properties = BTreeMap::new();
    properties.insert("nodepool_provider_name".to_string(), "sim".to_string());
    let id = cloud
        .create_image("devstack-1", "qcow2", &properties)
        .unwrap();
    cloud
        .upload_image(
            &id,
            &mut std::fs::File::open(file.path()).unwrap(),
            std::fs::metadata(file.path()).unwrap().len(),
        )
        .unwrap();
    let image = cloud.get_image(&id).unwrap().expect("image");
    assert_eq!(
        (image.status.as_str(), image.size),
        ("active", Some(64 * 1024 * 1024))
    );
    assert_eq!(image.properties["nodepool_provider_name"], "sim");
    cloud.delete_image(&id).unwrap();
    assert_eq!(cloud.get_image(&id).unwrap(), None);
}

#[test]
fn snapshots_return_the_new_image_id() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let cloud = connect(&sim);
    let server = support::create_server(&cloud, "template", &[("nodepool_node_id", "1")]);
    let image = cloud
        .create_snapshot(&server, "trusty-1", &BTreeMap::new())
        .unwrap();
    assert!(cloud.get_image(&image).unwrap().is_some());
}

#[test]
fn calls_are_counted_per_provider_and_route() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let counter = CallCounter::default();
    let cloud = OpenStack::connect(
        &settings_for(&sim, sim.auth_url_v3(), "secret"),
        counter.clone(),
    )
    .unwrap();
    cloud.list_servers().unwrap();
    cloud.list_servers().unwrap();
    let counts = counter.snapshot();
    assert_eq!(
        counts[&(
            "sim".to_string(),
            "POST identity /v3/auth/tokens".to_string()
        )],
        1
    );
    assert_eq!(
        counts[&("sim".to_string(), "GET compute /servers/detail".to_string())],
        2
    );
    assert_eq!(counter.total(), sim.calls().total);
}

#[test]
fn a_server_error_then_success_is_retried_and_succeeds() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let cloud = connect(&sim);
    sim.set_knobs(|k| k.fail_next = 2);
    let before = sim.calls().route("GET /compute/servers/detail");
    assert!(cloud
        .list_servers()
        .expect("retried past two 500s")
        .is_empty());
    assert_eq!(
        sim.calls().route("GET /compute/servers/detail") - before,
        3,
        "two 500s, then the answer"
    );
    // A delete (idempotent) is retried too.
    let id = support::create_server(&cloud, "n", &[("nodepool_node_id", "1")]);
    sim.set_knobs(|k| k.fail_next = 1);
    cloud.delete_server(&id).expect("retried delete");
    assert!(sim.dump().servers.is_empty());
}

#[test]
fn network_labels_resolve_to_ids_and_floating_ips_attach() {
    use nodepool::config::Network;
    let sim = Simulator::start(Knobs::default()).unwrap();
    let cloud = connect(&sim);
    let networks = cloud.list_networks().unwrap();
    let public = networks
        .iter()
        .find(|n| n.external)
        .expect("an external network");
    let ids = nodepool::cloud::resolve_networks(
        &cloud,
        &[
            Network::Id("given-id".into()),
            Network::Label("private".into()),
        ],
    )
    .unwrap();
    assert_eq!(ids[0], "given-id");
    assert_eq!(
        ids[1],
        networks.iter().find(|n| n.name == "private").unwrap().id
    );
    let missing =
        nodepool::cloud::resolve_networks(&cloud, &[Network::Label("nope".into())]).unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound);
    assert!(
        missing.message.contains("no network named `nope`"),
        "{missing}"
    );

    let server =
        support::create_server(&cloud, "needs-a-floating-ip", &[("nodepool_node_id", "1")]);
    let ip = cloud
        .allocate_floating_ip(&public.name, "nodepool test node 1")
        .unwrap();
    assert_eq!(ip.server_id, None);
    assert_eq!(ip.description.as_deref(), Some("nodepool test node 1"));
    cloud.attach_floating_ip(&ip, &server).unwrap();
    let listed = cloud.list_floating_ips().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].server_id.is_some(),
        "attached to the server's port"
    );
    let calls = sim.calls();
    assert_eq!(calls.route("GET /network/ports"), 1, "{calls:?}");
    assert_eq!(calls.route("PUT /network/floatingips/{id}"), 1, "{calls:?}");
    cloud.delete_floating_ip(&ip.id).unwrap();
    assert!(cloud.list_floating_ips().unwrap().is_empty());
}

#[test]
fn image_lists_follow_pagination() {
    let images: Vec<String> = (0..5).map(|i| format!("base-{i}")).collect();
    let sim = Simulator::start(Knobs {
        page_size: 2,
        images,
        ..Knobs::default()
    })
    .unwrap();
    let cloud = connect(&sim);
    let before = sim.calls().route("GET /image/images");
    assert_eq!(cloud.list_images().unwrap().len(), 5);
    assert_eq!(sim.calls().route("GET /image/images") - before, 3);
}

#[test]
fn rate_spaces_mutating_calls() {
    let sim = Simulator::start(Knobs::default()).unwrap();
    let mut spaced = settings_for(&sim, sim.auth_url_v3(), "secret");
    spaced.rate = Duration::from_millis(200);
    let cloud = OpenStack::connect(&spaced, CallCounter::default()).unwrap();
    let started = Instant::now();
    for i in 0..3 {
        cloud
            .create_keypair(&format!("k{i}"), "ssh-ed25519 AAAA")
            .unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "3 mutations need 2 gaps of 200 ms"
    );
}
