//! Keystone: version discovery, v3 password tokens and v2.0 tokens, each with a service
//! catalog whose endpoints point back at the simulator.

use std::time::SystemTime;

use serde_json::{json, Map, Value};

use super::http::{Handled, Reply, Req, Route};
use super::state::stable_id;
use super::{Core, Knobs};

pub(crate) const ROUTES: &[Route] = &[
    Route::new("GET", "", discovery),
    Route::new("GET", "/v3", version_v3),
    Route::new("GET", "/v2.0", version_v2),
    Route::new("POST", "/v3/auth/tokens", token_v3),
    Route::new("POST", "/v2.0/tokens", token_v2),
];

const DOMAIN_ID: &str = "default";
const DOMAIN_NAME: &str = "Default";
const REGION: &str = "RegionOne";
const UNAUTHORIZED: &str = "The request you have made requires authentication.";

fn version(url: &str, id: &str, path: &str, status: &str) -> Value {
    let media = format!("application/vnd.openstack.identity-{}+json", &id[..2]);
    json!({
        "id": id,
        "status": status,
        "updated": "2019-01-22T00:00:00Z",
        "links": [{ "rel": "self", "href": format!("{url}/identity/{path}/") }],
        "media-types": [{ "base": "application/json", "type": media }],
    })
}

/// Keystone answers 300 Multiple Choices with every version, and a Location header naming
/// the preferred one.
fn discovery(_: &Core, req: &mut Req) -> Handled {
    let values = [
        version(req.url, "v3.14", "v3", "stable"),
        version(req.url, "v2.0", "v2.0", "deprecated"),
    ];
    Ok(
        Reply::json(300, json!({ "versions": { "values": values } }))
            .header("Location", &format!("{}/identity/v3/", req.url)),
    )
}

fn version_v3(_: &Core, req: &mut Req) -> Handled {
    let version = version(req.url, "v3.14", "v3", "stable");
    Ok(Reply::json(200, json!({ "version": version })))
}

fn version_v2(_: &Core, req: &mut Req) -> Handled {
    let version = version(req.url, "v2.0", "v2.0", "deprecated");
    Ok(Reply::json(200, json!({ "version": version })))
}

/// The services in the catalog: (type, name, path under the simulator's URL).
const SERVICES: [(&str, &str, &str); 4] = [
    ("identity", "keystone", "/identity"),
    ("compute", "nova", "/compute/v2.1"),
    ("image", "glance", "/image"),
    ("network", "neutron", "/network"),
];

/// A v3 catalog; every interface points at the same URL, as on a single-host cloud.
fn catalog_v3(url: &str) -> Value {
    let services: Vec<Value> = SERVICES
        .iter()
        .map(|(kind, name, path)| {
            let endpoints: Vec<Value> = ["public", "internal", "admin"]
                .iter()
                .map(|interface| {
                    json!({
                        "id": stable_id(interface, name),
                        "interface": interface,
                        "region": REGION,
                        "region_id": REGION,
                        "url": format!("{url}{path}"),
                    })
                })
                .collect();
            json!({ "id": stable_id("service", name), "type": kind, "name": name, "endpoints": endpoints })
        })
        .collect();
    Value::Array(services)
}

fn catalog_v2(url: &str) -> Value {
    let services: Vec<Value> = SERVICES
        .iter()
        .map(|(kind, name, path)| {
            let address = format!("{url}{path}");
            json!({
                "type": kind,
                "name": name,
                "endpoints": [{
                    "id": stable_id("endpoint", name),
                    "region": REGION,
                    "publicURL": address,
                    "internalURL": address,
                    "adminURL": address,
                }],
                "endpoints_links": [],
            })
        })
        .collect();
    Value::Array(services)
}

/// A user or project reference: by id, or by name within the default domain.
fn names(reference: &Map<String, Value>, kind: &str, name: &str) -> Result<bool, String> {
    if let Some(id) = reference.get("id") {
        return Ok(id.as_str() == Some(&stable_id(kind, name)));
    }
    let Some(given) = reference.get("name").and_then(Value::as_str) else {
        return Err(format!("Expecting to find id or name in {kind}."));
    };
    let domain = reference.get("domain").and_then(Value::as_object);
    let Some(domain) = domain else {
        return Err(format!("Expecting to find domain in {kind}."));
    };
    let in_default = domain.get("id").and_then(Value::as_str) == Some(DOMAIN_ID)
        || domain.get("name").and_then(Value::as_str) == Some(DOMAIN_NAME);
    Ok(in_default && given == name)
}

fn token_v3(core: &Core, req: &mut Req) -> Handled {
    let mut auth = req.json().and_then(|body| req.member(body, "auth"))?;
    let identity = req.member(auth.clone(), "identity")?;
    let methods = identity.get("methods").and_then(Value::as_array);
    if !methods.is_some_and(|m| m.iter().any(|m| m == "password")) {
        return Err(req.fail(401, "only the password method is supported"));
    }
    let user = req
        .member(identity, "password")
        .and_then(|password| req.member(password, "user"))?;
    let knobs = core.knobs();
    let bad = |message: String| req.fail(400, &message);
    let user_ok = names(&user, "user", &knobs.username).map_err(bad)?;
    let password_ok = user.get("password").and_then(Value::as_str) == Some(&knobs.password);
    if !(user_ok && password_ok) {
        return Err(req.fail(401, UNAUTHORIZED));
    }
    let scope = auth.remove("scope").unwrap_or(Value::Null);
    let project = match scope.get("project").and_then(Value::as_object) {
        Some(project) => {
            if !names(project, "project", &knobs.project).map_err(bad)? {
                let message = format!("User {} has no access to that project.", knobs.username);
                return Err(req.fail(401, &message));
            }
            Some(project_json(&knobs))
        }
        None => None,
    };
    let lifetime = core.knobs().token_lifetime;
    let token = core.state().new_token(lifetime);
    let now = SystemTime::now();
    let mut body = json!({
        "methods": ["password"],
        "user": {
            "id": stable_id("user", &knobs.username),
            "name": knobs.username,
            "domain": { "id": DOMAIN_ID, "name": DOMAIN_NAME },
            "password_expires_at": null,
        },
        "audit_ids": [stable_id("audit", &token)[..22]],
        "issued_at": humantime::format_rfc3339_micros(now).to_string(),
        "expires_at": humantime::format_rfc3339_micros(now + lifetime).to_string(),
    });
    if let Some(project) = project {
        body["project"] = project;
        body["is_domain"] = json!(false);
        body["roles"] = json!([{ "id": stable_id("role", "member"), "name": "member" }]);
        body["catalog"] = catalog_v3(req.url);
    }
    Ok(Reply::json(201, json!({ "token": body })).header("X-Subject-Token", &token))
}

fn project_json(knobs: &Knobs) -> Value {
    json!({
        "id": stable_id("project", &knobs.project),
        "name": knobs.project,
        "domain": { "id": DOMAIN_ID, "name": DOMAIN_NAME },
    })
}

fn token_v2(core: &Core, req: &mut Req) -> Handled {
    let mut auth = req.json().and_then(|body| req.member(body, "auth"))?;
    let credentials = req.member(auth.clone(), "passwordCredentials")?;
    let knobs = core.knobs();
    let text = |key: &str| credentials.get(key).and_then(Value::as_str);
    if text("username") != Some(&knobs.username) || text("password") != Some(&knobs.password) {
        return Err(req.fail(401, UNAUTHORIZED));
    }
    let tenant_ok = match (auth.remove("tenantName"), auth.remove("tenantId")) {
        (Some(name), _) => name.as_str() == Some(&knobs.project),
        (None, Some(id)) => id.as_str() == Some(&stable_id("project", &knobs.project)),
        (None, None) => false,
    };
    if !tenant_ok {
        return Err(req.fail(401, UNAUTHORIZED));
    }
    let lifetime = core.knobs().token_lifetime;
    let token = core.state().new_token(lifetime);
    let now = SystemTime::now();
    let tenant = json!({
        "id": stable_id("project", &knobs.project),
        "name": knobs.project,
        "description": null,
        "enabled": true,
    });
    let body = json!({
        "access": {
            "token": {
                "id": token,
                "issued_at": humantime::format_rfc3339_micros(now).to_string(),
                "expires": humantime::format_rfc3339_seconds(now + lifetime).to_string(),
                "tenant": tenant,
                "audit_ids": [stable_id("audit", &token)[..22]],
            },
            "serviceCatalog": catalog_v2(req.url),
            "user": {
                "id": stable_id("user", &knobs.username),
                "name": knobs.username,
                "username": knobs.username,
                "roles": [{ "name": "member" }],
                "roles_links": [],
            },
            "metadata": { "is_admin": 0, "roles": [stable_id("role", "member")] },
        }
    });
    Ok(Reply::json(200, body))
}
