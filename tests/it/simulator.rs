//! The OpenStack simulator over raw HTTP: shapes, status codes and headers the cloud client
//! relies on, and each fault knob. Every wait is a bounded poll.

use std::io::Read;
use std::time::{Duration, Instant};

use nodepool_simulator::{Knobs, Simulator};
use serde_json::{json, Value};
use ureq::http::{HeaderMap, Method};

/// Longest any test waits for a state change.
const PATIENCE: Duration = Duration::from_secs(5);

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A raw HTTP client holding a token once it has one.
struct Client {
    agent: ureq::Agent,
    url: String,
    token: Option<String>,
}

impl Client {
    fn new(sim: &Simulator) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Client {
            agent,
            url: sim.url(),
            token: None,
        }
    }

    /// A client already holding a v3 token for the default user and project.
    fn logged_in(sim: &Simulator) -> Client {
        let mut client = Client::new(sim);
        let answer = client.call("POST", "/identity/v3/auth/tokens", Some(v3_auth("secret")));
        assert_eq!(answer.status, 201, "{}", answer.body);
        client.token = answer.header("x-subject-token").map(str::to_owned);
        client
    }

    fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.url)
        };
        let mut request = ureq::http::Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(url);
        if let Some(token) = &self.token {
            request = request.header("X-Auth-Token", token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = match body {
            Some(body) => {
                let request = request.header("Content-Type", "application/json");
                self.agent.run(request.body(body.to_string()).unwrap())
            }
            None => self.agent.run(request.body(()).unwrap()),
        };
        let response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.into_body().read_to_string().unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call_with(method, path, body, &[])
    }

    fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None)
    }

    fn create_server(&self, name: &str) -> Answer {
        let image = self.image_id("Ubuntu 22.04");
        let body = json!({ "server": {
            "name": name,
            "imageRef": image,
            "flavorRef": "2",
            "metadata": { "nodepool_provider": "sim" },
        }});
        self.call("POST", "/compute/v2.1/servers", Some(body))
    }

    fn image_id(&self, name: &str) -> String {
        let answer = self.get(&format!(
            "/image/v2/images?name={}",
            name.replace(' ', "%20")
        ));
        answer.body["images"][0]["id"].as_str().unwrap().to_owned()
    }

    fn server_status(&self, id: &str) -> (u16, String) {
        let answer = self.get(&format!("/compute/v2.1/servers/{id}"));
        let status = answer.body["server"]["status"].as_str().unwrap_or_default();
        (answer.status, status.to_owned())
    }
}

fn v3_auth(password: &str) -> Value {
    json!({ "auth": {
        "identity": { "methods": ["password"], "password": { "user": {
            "name": "demo", "domain": { "id": "default" }, "password": password,
        }}},
        "scope": { "project": { "name": "demo", "domain": { "name": "Default" } } },
    }})
}

fn start(knobs: Knobs) -> Simulator {
    Simulator::start(knobs).expect("simulator starts")
}

/// Poll `check` until it returns Some, at most PATIENCE.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn catalog_url(catalog: &Value, kind: &str, url_key: Option<&str>) -> String {
    let service = catalog
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {catalog}"));
    let endpoint = match url_key {
        Some(key) => &service["endpoints"][0][key],
        None => {
            let endpoints = service["endpoints"].as_array().unwrap();
            let public = endpoints.iter().find(|e| e["interface"] == "public");
            &public.unwrap()["url"]
        }
    };
    endpoint.as_str().unwrap().to_owned()
}

#[test]
fn version_discovery_lists_v3_and_v2() {
    let sim = start(Knobs::default());
    let answer = Client::new(&sim).get("/identity");
    assert_eq!(answer.status, 300);
    let values = answer.body["versions"]["values"].as_array().unwrap();
    let hrefs: Vec<&str> = values
        .iter()
        .map(|v| v["links"][0]["href"].as_str().unwrap())
        .collect();
    assert_eq!(
        hrefs,
        [
            format!("{}/", sim.auth_url_v3()),
            format!("{}/", sim.auth_url_v2())
        ]
    );
    assert_eq!(
        sim.auth_url_unversioned(),
        format!("{}/identity", sim.url())
    );
}

#[test]
fn v3_token_carries_subject_token_header_and_catalog() {
    let sim = start(Knobs::default());
    let client = Client::new(&sim);
    let answer = client.call("POST", "/identity/v3/auth/tokens", Some(v3_auth("secret")));
    assert_eq!(answer.status, 201);
    assert!(answer.header("x-subject-token").is_some());
    let token = &answer.body["token"];
    assert_eq!(token["project"]["name"], "demo");
    let catalog = &token["catalog"];
    let url = sim.url();
    assert_eq!(
        catalog_url(catalog, "compute", None),
        format!("{url}/compute/v2.1")
    );
    assert_eq!(catalog_url(catalog, "image", None), format!("{url}/image"));
    assert_eq!(
        catalog_url(catalog, "network", None),
        format!("{url}/network")
    );
    let nova = catalog
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "nova");
    assert_eq!(nova.unwrap()["endpoints"][0]["region"], "RegionOne");

    // The same user and project named by id.
    let user_id = token["user"]["id"].as_str().unwrap();
    let project_id = token["project"]["id"].as_str().unwrap();
    let by_id = json!({ "auth": {
        "identity": { "methods": ["password"], "password": { "user": {
            "id": user_id, "password": "secret" }}},
        "scope": { "project": { "id": project_id } },
    }});
    let answer = client.call("POST", "/identity/v3/auth/tokens", Some(by_id));
    assert_eq!(answer.status, 201, "{}", answer.body);
}

#[test]
fn v2_token_by_tenant_name_or_id_carries_service_catalog() {
    let sim = start(Knobs::default());
    let client = Client::new(&sim);
    let credentials = json!({ "username": "demo", "password": "secret" });
    let by_name = json!({ "auth": { "passwordCredentials": credentials, "tenantName": "demo" } });
    let answer = client.call("POST", "/identity/v2.0/tokens", Some(by_name));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let access = &answer.body["access"];
    let token = access["token"]["id"].as_str().unwrap().to_owned();
    let catalog = &access["serviceCatalog"];
    let compute = catalog_url(catalog, "compute", Some("publicURL"));
    assert_eq!(compute, format!("{}/compute/v2.1", sim.url()));

    let tenant_id = access["token"]["tenant"]["id"].as_str().unwrap();
    let by_id = json!({ "auth": { "passwordCredentials": credentials, "tenantId": tenant_id } });
    assert_eq!(
        client
            .call("POST", "/identity/v2.0/tokens", Some(by_id))
            .status,
        200
    );

    // A v2.0 token is as good as a v3 one for the other services.
    let client = Client {
        token: Some(token),
        ..Client::new(&sim)
    };
    assert_eq!(client.get("/compute/v2.1/flavors/detail").status, 200);
}

#[test]
fn bad_password_or_missing_token_is_401_with_json_error() {
    let sim = start(Knobs::default());
    let client = Client::new(&sim);
    let answer = client.call("POST", "/identity/v3/auth/tokens", Some(v3_auth("wrong")));
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["error"]["code"], 401);
    assert!(answer.header("x-subject-token").is_none());

    let v2 = json!({ "auth": {
        "passwordCredentials": { "username": "demo", "password": "wrong" },
        "tenantName": "demo",
    }});
    assert_eq!(
        client
            .call("POST", "/identity/v2.0/tokens", Some(v2))
            .status,
        401
    );

    assert_eq!(client.get("/compute/v2.1/servers/detail").status, 401);
    let forged = Client {
        token: Some("forged".into()),
        ..Client::new(&sim)
    };
    assert_eq!(forged.get("/image/v2/images").status, 401);
}

#[test]
fn malformed_requests_get_json_errors_not_a_crash() {
    let sim = start(Knobs::default());
    let client = Client::logged_in(&sim);
    for (method, path, body) in [
        ("POST", "/compute/v2.1/servers", json!("not an object")),
        (
            "POST",
            "/compute/v2.1/servers",
            json!({ "server": { "name": 7 } }),
        ),
        ("POST", "/identity/v3/auth/tokens", json!({ "auth": [] })),
        (
            "POST",
            "/image/v2/images",
            json!({ "disk_format": "floppy" }),
        ),
        (
            "POST",
            "/compute/v2.1/os-keypairs",
            json!({ "keypair": {} }),
        ),
    ] {
        let answer = client.call(method, path, Some(body));
        assert_eq!(answer.status, 400, "{method} {path}: {}", answer.body);
        assert!(answer.body.is_object());
    }
    let answer = client.get("/compute/v2.1/no-such-thing");
    assert_eq!(answer.status, 404);
    assert_eq!(answer.body["itemNotFound"]["code"], 404);
    assert_eq!(client.get("/nowhere").status, 404);
    assert_eq!(
        client.get("/compute/v2.1/servers/detail?limit=x").status,
        400
    );
    // Still serving.
    assert_eq!(client.get("/compute/v2.1/servers/detail").status, 200);
}

#[test]
fn server_builds_then_turns_active_after_the_boot_delay() {
    let sim = start(Knobs {
        boot_delay: Duration::from_millis(300),
        ..Knobs::default()
    });
    let client = Client::logged_in(&sim);
    let answer = client.create_server("node-1");
    assert_eq!(answer.status, 202, "{}", answer.body);
    let id = answer.body["server"]["id"].as_str().unwrap().to_owned();
    assert!(answer.body["server"]["adminPass"].is_string());
    assert_eq!(client.server_status(&id), (200, "BUILD".into()));

    wait_for("ACTIVE", || {
        (client.server_status(&id).1 == "ACTIVE").then_some(())
    });
    let server = &client.get(&format!("/compute/v2.1/servers/{id}")).body["server"];
    assert_eq!(server["addresses"]["private"][0]["addr"], "127.0.0.1");
    assert_eq!(server["addresses"]["private"][0]["version"], 4);
    assert_eq!(
        server["addresses"]["private"][0]["OS-EXT-IPS:type"],
        "fixed"
    );
    assert_eq!(server["metadata"]["nodepool_provider"], "sim");
    assert_eq!(server["OS-EXT-AZ:availability_zone"], "nova");
    assert_eq!(server["flavor"]["id"], "2");
    assert!(server["created"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn error_ratio_one_sends_every_server_to_error() {
    let sim = start(Knobs {
        error_ratio: 1.0,
        ..Knobs::default()
    });
    let client = Client::logged_in(&sim);
    let id = client.create_server("doomed").body["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(client.server_status(&id), (200, "ERROR".into()));
    let server = &client.get(&format!("/compute/v2.1/servers/{id}")).body["server"];
    assert!(server["fault"]["message"].is_string());
}

#[test]
fn stuck_ratio_one_keeps_servers_in_build() {
    let sim = start(Knobs {
        stuck_ratio: 1.0,
        ..Knobs::default()
    });
    let client = Client::logged_in(&sim);
    let id = client.create_server("stuck").body["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(client.server_status(&id).1, "BUILD");
}

#[test]
fn instance_quota_refuses_the_next_create_with_403() {
    let sim = start(Knobs {
        instance_quota: Some(1),
        ..Knobs::default()
    });
    let client = Client::logged_in(&sim);
    assert_eq!(client.create_server("one").status, 202);
    let answer = client.create_server("two");
    assert_eq!(answer.status, 403);
    assert_eq!(answer.body["forbidden"]["code"], 403);
    let message = answer.body["forbidden"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Quota exceeded for instances"),
        "{message}"
    );
    let limits = &client.get("/compute/v2.1/limits").body["limits"]["absolute"];
    assert_eq!(limits["maxTotalInstances"], 1);
    assert_eq!(limits["totalInstancesUsed"], 1);
}

#[test]
fn unknown_image_or_flavor_is_400() {
    let sim = start(Knobs::default());
    let client = Client::logged_in(&sim);
    let image = client.image_id("CentOS 7");
    for (image, flavor) in [("no-such-image", "1"), (image.as_str(), "99")] {
        let body = json!({ "server": { "name": "x", "imageRef": image, "flavorRef": flavor } });
        let answer = client.call("POST", "/compute/v2.1/servers", Some(body));
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_eq!(answer.body["badRequest"]["code"], 400);
    }
    assert!(sim.dump().servers.is_empty());
}

#[test]
fn server_error_ratio_answers_500_but_spares_identity() {
    let sim = start(Knobs {
        server_error_ratio: 1.0,
        ..Knobs::default()
    });
    let client = Client::logged_in(&sim);
    let answer = client.get("/compute/v2.1/servers/detail");
    assert_eq!(answer.status, 500);
    assert_eq!(answer.body["computeFault"]["code"], 500);
    assert_eq!(client.get("/image/v2/images").status, 500);

    sim.set_knobs(|k| k.server_error_ratio = 0.0);
    assert_eq!(client.get("/compute/v2.1/servers/detail").status, 200);
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let sim = start(Knobs {
        rate_limit_per_second: Some(3),
        ..Knobs::default()
    });
    let client = Client::logged_in(&sim);
    let answers: Vec<Answer> = (0..10)
        .map(|_| client.get("/compute/v2.1/flavors/detail"))
        .collect();
    let limited: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    // Ten calls can straddle two one-second windows: at most six get through.
    assert!(limited.len() >= 4, "only {} of 10 limited", limited.len());
    assert!(limited.iter().all(|a| a.header("retry-after") == Some("1")));
    assert_eq!(limited[0].body["overLimit"]["code"], 429);
}

#[test]
fn server_list_pages_with_next_links() {
    let sim = start(Knobs {
        page_size: 2,
        ..Knobs::default()
    });
    let client = Client::logged_in(&sim);
    for i in 0..5 {
        assert_eq!(client.create_server(&format!("node-{i}")).status, 202);
    }
    let mut seen = Vec::new();
    let mut next = Some("/compute/v2.1/servers/detail".to_owned());
    let mut pages = 0;
    while let Some(path) = next.take() {
        pages += 1;
        assert!(pages <= 5, "pagination does not end");
        let answer = client.get(&path);
        assert_eq!(answer.status, 200);
        for server in answer.body["servers"].as_array().unwrap() {
            seen.push(server["name"].as_str().unwrap().to_owned());
        }
        next = answer.body["servers_links"]
            .as_array()
            .and_then(|links| links.iter().find(|l| l["rel"] == "next"))
            .map(|l| l["href"].as_str().unwrap().to_owned());
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["node-0", "node-1", "node-2", "node-3", "node-4"]);
    let answer = client.get("/compute/v2.1/servers/detail?marker=nope");
    assert_eq!(answer.status, 400);
}

#[test]
fn image_list_pages_with_next_and_filters_by_name() {
    let sim = start(Knobs {
        page_size: 2,
        images: (0..5).map(|i| format!("base {i}")).collect(),
        ..Knobs::default()
    });
    let client = Client::logged_in(&sim);
    let mut names = Vec::new();
    let mut next = Some("/v2/images".to_owned());
    let mut pages = 0;
    while let Some(path) = next.take() {
        pages += 1;
        assert!(pages <= 5, "pagination does not end");
        let answer = client.get(&format!("/image{path}"));
        assert_eq!(answer.status, 200, "{}", answer.body);
        for image in answer.body["images"].as_array().unwrap() {
            names.push(image["name"].as_str().unwrap().to_owned());
        }
        next = answer.body["next"].as_str().map(str::to_owned);
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["base 0", "base 1", "base 2", "base 3", "base 4"]);

    let answer = client.get("/image/v2/images?name=base%203");
    let images = answer.body["images"].as_array().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["status"], "active");
    assert!(answer.body.get("next").is_none());
}

#[test]
fn create_image_answers_in_both_microversion_styles() {
    let sim = start(Knobs::default());
    let client = Client::logged_in(&sim);
    let id = client.create_server("snap-source").body["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.set_knobs(|k| k.boot_delay = Duration::from_millis(300));
    let action = format!("/compute/v2.1/servers/{id}/action");
    let create = |name: &str| json!({ "createImage": { "name": name, "metadata": { "k": "v" } } });

    let old = client.call("POST", &action, Some(create("old-style")));
    assert_eq!(old.status, 202);
    assert_eq!(old.body, Value::Null);
    let location = old.header("location").unwrap();
    let old_id = location.rsplit('/').next().unwrap().to_owned();
    assert_eq!(location, format!("{}/image/v2/images/{old_id}", sim.url()));

    let header = [("X-OpenStack-Nova-API-Version", "2.45")];
    let new = client.call_with("POST", &action, Some(create("new-style")), &header);
    assert_eq!(new.status, 202);
    assert!(new.header("location").is_none());
    let new_id = new.body["image_id"].as_str().unwrap().to_owned();

    let image = client.get(&format!("/image/v2/images/{new_id}")).body;
    assert_eq!(image["status"], "queued");
    assert_eq!(image["k"], "v");
    assert_eq!(image["instance_uuid"], id.as_str());
    for image_id in [old_id, new_id] {
        wait_for("snapshot active", || {
            let image = client.get(&format!("/image/v2/images/{image_id}")).body;
            (image["status"] == "active").then_some(())
        });
    }

    let missing = client.call(
        "POST",
        &action,
        Some(json!({ "reboot": { "type": "SOFT" } })),
    );
    assert_eq!(missing.status, 400);
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn upload_is_streamed_and_sets_size() {
    const SIZE: u64 = 64 << 20;
    let sim = start(Knobs::default());
    let client = Client::logged_in(&sim);
    let created = client.call(
        "POST",
        "/image/v2/images",
        Some(json!({
            "name": "dib-image",
            "disk_format": "qcow2",
            "container_format": "bare",
            "visibility": "private",
            "nodepool_build": "0000000001",
        })),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["status"], "queued");
    assert_eq!(created.body["nodepool_build"], "0000000001");
    let id = created.body["id"].as_str().unwrap().to_owned();

    let before = rss_bytes();
    let mut data = std::io::repeat(7).take(SIZE);
    let response = client
        .agent
        .put(format!("{}/image/v2/images/{id}/file", sim.url()))
        .header("X-Auth-Token", client.token.as_deref().unwrap())
        .header("Content-Type", "application/octet-stream")
        // Delimited, as nodepool sends it: the simulator's HTTP library can leave the end of a
        // chunked body unread on the connection, which makes the next request on it a 400.
        .header("Content-Length", SIZE.to_string())
        .send(ureq::SendBody::from_reader(&mut data))
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let after = rss_bytes();

    let image = client.get(&format!("/image/v2/images/{id}")).body;
    assert_eq!(image["status"], "active");
    assert_eq!(image["size"], SIZE);
    // Glance's checksums of what it stored: MD5, and SHA-512 as os_hash_value.
    let sevens = vec![7u8; SIZE as usize];
    let md5 = {
        use md5::Digest;
        format!("{:x}", md5::Md5::digest(&sevens))
    };
    assert_eq!(image["checksum"], md5);
    assert_eq!(image["os_hash_algo"], "sha512");
    let sha512 = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha512::digest(&sevens))
    };
    assert_eq!(image["os_hash_value"], sha512);
    drop(sevens);
    if let (Some(before), Some(after)) = (before, after) {
        let grown = after.saturating_sub(before);
        eprintln!(
            "RSS grew {} KiB over a {} MiB upload",
            grown >> 10,
            SIZE >> 20
        );
        assert!(
            grown < SIZE / 2,
            "RSS grew {grown} bytes for a {SIZE}-byte upload"
        );
    }
    // A second upload to an active image is a conflict.
    let again = client.call("PUT", &format!("/image/v2/images/{id}/file"), None);
    assert_eq!(again.status, 409);
    let deleted = client.call("DELETE", &format!("/image/v2/images/{id}"), None);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(client.get(&format!("/image/v2/images/{id}")).status, 404);
}

#[test]
fn slow_delete_lists_the_server_as_deleted_until_the_delay_passed() {
    let sim = start(Knobs {
        delete_delay: Duration::from_millis(300),
        ..Knobs::default()
    });
    let client = Client::logged_in(&sim);
    let id = client.create_server("short-lived").body["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/compute/v2.1/servers/{id}");
    assert_eq!(client.call("DELETE", &path, None).status, 204);
    assert_eq!(client.server_status(&id), (200, "DELETED".into()));
    let listed = client.get("/compute/v2.1/servers/detail").body["servers"].clone();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    wait_for("server gone", || {
        (client.get(&path).status == 404).then_some(())
    });
    assert!(sim.dump().servers.is_empty());
    assert_eq!(client.call("DELETE", &path, None).status, 404);
}

#[test]
fn failing_delete_leaves_the_server_in_error() {
    let sim = start(Knobs {
        delete_fails: true,
        ..Knobs::default()
    });
    let client = Client::logged_in(&sim);
    let id = client.create_server("sticky").body["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/compute/v2.1/servers/{id}");
    assert_eq!(client.call("DELETE", &path, None).status, 204);
    assert_eq!(client.server_status(&id), (200, "ERROR".into()));

    sim.set_knobs(|k| k.delete_fails = false);
    assert_eq!(client.call("DELETE", &path, None).status, 204);
    assert_eq!(client.get(&path).status, 404);
}

#[test]
fn calls_are_counted_per_route() {
    let sim = start(Knobs::default());
    let client = Client::logged_in(&sim);
    let id = client.create_server("counted").body["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    client.get("/compute/v2.1/servers/detail");
    client.get("/compute/v2.1/servers/detail");
    client.get(&format!("/compute/v2.1/servers/{id}"));
    client.call("DELETE", &format!("/compute/v2.1/servers/{id}"), None);
    client.get("/_sim/calls");

    let calls = sim.calls();
    assert_eq!(calls.route("POST /identity/v3/auth/tokens"), 1);
    assert_eq!(calls.route("GET /image/images"), 1);
    assert_eq!(calls.route("POST /compute/servers"), 1);
    assert_eq!(calls.route("GET /compute/servers/detail"), 2);
    assert_eq!(calls.route("GET /compute/servers/{id}"), 1);
    assert_eq!(calls.route("DELETE /compute/servers/{id}"), 1);
    assert_eq!(calls.total, 7, "{calls:?}");
    let over_http: nodepool_simulator::Calls =
        serde_json::from_value(client.get("/_sim/calls").body).unwrap();
    assert_eq!(over_http, calls);
}

#[test]
fn dump_and_control_endpoints_show_what_the_cloud_holds() {
    let sim = start(Knobs::default());
    let client = Client::logged_in(&sim);
    let id = client.create_server("dumped").body["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let keypair =
        json!({ "keypair": { "name": "nodepool", "public_key": "ssh-ed25519 AAAA test" } });
    assert_eq!(
        client
            .call("POST", "/compute/v2.1/os-keypairs", Some(keypair.clone()))
            .status,
        200
    );
    let duplicate = client.call("POST", "/compute/v2.1/os-keypairs", Some(keypair));
    assert_eq!(duplicate.status, 409);
    let fip = client.call(
        "POST",
        "/compute/v2.1/os-floating-ips",
        Some(json!({ "pool": "public" })),
    );
    assert_eq!(fip.status, 200, "{}", fip.body);
    let address = fip.body["floating_ip"]["ip"].as_str().unwrap().to_owned();
    let attach = json!({ "addFloatingIp": { "address": address } });
    let action = format!("/compute/v2.1/servers/{id}/action");
    assert_eq!(client.call("POST", &action, Some(attach)).status, 202);

    let dump = sim.dump();
    assert_eq!(dump.servers.len(), 1);
    assert_eq!(dump.servers[0].name, "dumped");
    assert_eq!(dump.servers[0].metadata["nodepool_provider"], "sim");
    assert_eq!(dump.images.len(), 2);
    assert_eq!(dump.keypairs, ["nodepool"]);
    assert_eq!(
        dump.floating_ips[0].instance_id.as_deref(),
        Some(id.as_str())
    );
    let over_http: nodepool_simulator::Dump =
        serde_json::from_value(Client::new(&sim).get("/_sim/state").body).unwrap();
    assert_eq!(over_http, dump);

    // Neutron sees the same floating IP, attached to the server's port.
    let fips = client.get("/network/v2.0/floatingips").body;
    assert_eq!(
        fips["floatingips"][0]["floating_ip_address"],
        address.as_str()
    );
    let ports = client
        .get(&format!("/network/v2.0/ports?device_id={id}"))
        .body;
    assert_eq!(fips["floatingips"][0]["port_id"], ports["ports"][0]["id"]);

    let anonymous = Client::new(&sim);
    let changed = anonymous.call("POST", "/_sim/knobs", Some(json!({ "boot_delay": 2.5 })));
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(sim.knobs().boot_delay, Duration::from_millis(2500));
    let refused = anonymous.call("POST", "/_sim/knobs", Some(json!({ "boot_daley": 1 })));
    assert_eq!(refused.status, 400);
}

#[test]
fn account_resources_answer_in_nova_and_neutron_shapes() {
    let sim = start(Knobs::default());
    let client = Client::logged_in(&sim);
    let flavors = client.get("/compute/v2.1/flavors/detail").body;
    assert_eq!(flavors["flavors"][0]["name"], "m1.tiny");
    assert_eq!(flavors["flavors"][0]["ram"], 512);
    let zones = client.get("/compute/v2.1/os-availability-zone").body;
    assert_eq!(zones["availabilityZoneInfo"][0]["zoneName"], "nova");
    let networks = client.get("/network/v2.0/networks").body;
    let public = networks["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["router:external"] == true)
        .unwrap()
        .clone();
    assert_eq!(public["name"], "public");

    let body = json!({ "floatingip": { "floating_network_id": public["id"] } });
    let created = client.call("POST", "/network/v2.0/floatingips", Some(body));
    assert_eq!(created.status, 201, "{}", created.body);
    let fip_id = created.body["floatingip"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(created.body["floatingip"]["floating_ip_address"]
        .as_str()
        .unwrap()
        .starts_with("127."));
    let nova_view = client.get("/compute/v2.1/os-floating-ips").body;
    assert_eq!(nova_view["floating_ips"][0]["id"], fip_id.as_str());
    let path = format!("/network/v2.0/floatingips/{fip_id}");
    assert_eq!(client.call("DELETE", &path, None).status, 204);
    assert!(sim.dump().floating_ips.is_empty());

    let generated = json!({ "keypair": { "name": "made-here" } });
    let header = [("X-OpenStack-Nova-API-Version", "2.2")];
    let answer = client.call_with(
        "POST",
        "/compute/v2.1/os-keypairs",
        Some(generated),
        &header,
    );
    assert_eq!(answer.status, 201);
    assert!(answer.body["keypair"]["private_key"].is_string());
    let keypairs = client.get("/compute/v2.1/os-keypairs").body;
    assert_eq!(keypairs["keypairs"][0]["keypair"]["name"], "made-here");
    let path = "/compute/v2.1/os-keypairs/made-here";
    assert_eq!(client.call("DELETE", path, None).status, 202);
    assert_eq!(client.call("DELETE", path, None).status, 404);
}

#[test]
fn latency_delays_each_answer() {
    let sim = start(Knobs {
        latency: Duration::from_millis(200),
        ..Knobs::default()
    });
    let client = Client::logged_in(&sim);
    let started = Instant::now();
    client.get("/compute/v2.1/flavors/detail");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[test]
fn an_expired_token_is_refused_with_401() {
    let sim = start(Knobs {
        token_lifetime: Duration::from_millis(500),
        ..Knobs::default()
    });
    let client = Client::logged_in(&sim);
    assert_eq!(
        client
            .call("GET", "/compute/v2.1/flavors/detail", None)
            .status,
        200
    );
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        client
            .call("GET", "/compute/v2.1/flavors/detail", None)
            .status,
        401
    );
}

#[test]
fn route_latency_delays_only_its_route() {
    let sim = start(Knobs {
        route_latency: [(
            "GET /compute/flavors/detail".to_string(),
            Duration::from_millis(1000),
        )]
        .into(),
        ..Knobs::default()
    });
    let client = Client::logged_in(&sim);
    let started = Instant::now();
    client.get("/compute/v2.1/servers/detail");
    let unlisted = started.elapsed();
    let started = Instant::now();
    client.get("/compute/v2.1/flavors/detail");
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert!(unlisted < Duration::from_millis(1000), "{unlisted:?}");
}

#[test]
fn stop_closes_the_port() {
    let sim = start(Knobs::default());
    let url = sim.url();
    sim.stop();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    assert!(agent.get(format!("{url}/identity")).call().is_err());
}

#[test]
fn nova_floating_ip_proxies_are_gone_at_the_microversions_the_api_reference_says() {
    let sim = start(Knobs::default());
    let client = Client::logged_in(&sim);
    let id = client.create_server("fip").body["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pool = Some(json!({ "pool": "public" }));
    let at = |version: &'static str| [("X-OpenStack-Nova-API-Version", version)];
    let gone = client.call_with(
        "POST",
        "/compute/v2.1/os-floating-ips",
        pool.clone(),
        &at("2.36"),
    );
    assert_eq!(gone.status, 404, "{}", gone.body);
    let fip = client.call_with("POST", "/compute/v2.1/os-floating-ips", pool, &at("2.35"));
    assert_eq!(fip.status, 200, "{}", fip.body);
    let address = fip.body["floating_ip"]["ip"].as_str().unwrap().to_owned();
    let action = format!("/compute/v2.1/servers/{id}/action");
    let attach = || Some(json!({ "addFloatingIp": { "address": address } }));
    let refused = client.call_with("POST", &action, attach(), &at("2.44"));
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert_eq!(
        client
            .call_with("POST", &action, attach(), &at("2.43"))
            .status,
        202
    );
}

#[test]
fn neutron_floating_ips_keep_their_description_and_filter_by_it() {
    let sim = start(Knobs::default());
    let client = Client::logged_in(&sim);
    let network = client.get("/network/v2.0/networks").body["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["router:external"] == true)
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .unwrap();
    let create = |description: &str| {
        client.call(
            "POST",
            "/network/v2.0/floatingips",
            Some(json!({ "floatingip": {
                "floating_network_id": network, "description": description } })),
        )
    };
    assert_eq!(create("nodepool abc node 1").status, 201);
    assert_eq!(create("someone else's").status, 201);
    let ours = client.get("/network/v2.0/floatingips?description=nodepool%20abc%20node%201");
    let listed = ours.body["floatingips"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{}", ours.body);
    assert_eq!(listed[0]["description"], "nodepool abc node 1");
}
