//! Keystone: password authentication (v3, and v2.0 as 2015 clouds used), version discovery
//! for an `auth-url` without a version, and the service catalog. One token per provider per
//! run.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::http::{Body, Http};
use crate::cloud::{CloudError, CloudResult, ErrorKind};
use crate::model::Secret;

/// Who to log in as; built from nodepool.yaml or clouds.yaml.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub auth_url: String,
    pub username: String,
    pub password: Secret,
    pub project_name: Option<String>,
    pub project_id: Option<String>,
    pub user_domain_name: Option<String>,
    pub project_domain_name: Option<String>,
    pub region_name: Option<String>,
    /// Endpoint interface: public (default), internal or admin.
    pub interface: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Endpoint {
    interface: String,
    region: Option<String>,
    url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Service {
    kind: String,
    name: String,
    endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog(Vec<Service>);

/// A token and the catalog that came with it.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: Secret,
    pub catalog: Catalog,
    /// When Keystone says the token expires (Unix seconds), if it said.
    pub expires_at: Option<i64>,
}

impl Credentials {
    /// A hash of everything that decides which token Keystone issues (the password included),
    /// so a token is only reused for the settings it was issued for.
    pub fn cache_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let fields = [
            self.auth_url.as_str(),
            self.username.as_str(),
            self.password.expose(),
            self.project_name.as_deref().unwrap_or(""),
            self.project_id.as_deref().unwrap_or(""),
            self.user_domain_name.as_deref().unwrap_or(""),
            self.project_domain_name.as_deref().unwrap_or(""),
            self.region_name.as_deref().unwrap_or(""),
            self.interface.as_str(),
        ];
        let mut hash = Sha256::new();
        for field in fields {
            hash.update(field.as_bytes());
            hash.update([0]);
        }
        format!("{:x}", hash.finalize())
    }
}

/// Keystone's `expires_at` (v3) or `expires` (v2.0), as Unix seconds.
fn expiry(document: &Value, pointer: &str) -> Option<i64> {
    let text = document.pointer(pointer)?.as_str()?;
    let at = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()?;
    let seconds = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(seconds).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V2,
    V3,
}

fn version_in_path(url: &str) -> Option<Version> {
    let path = url.trim_end_matches('/');
    if path.ends_with("/v3") {
        Some(Version::V3)
    } else if path.ends_with("/v2.0") {
        Some(Version::V2)
    } else {
        None
    }
}

pub fn authenticate(http: &Http, credentials: &Credentials) -> CloudResult<Session> {
    http.add_secret(credentials.password.expose());
    let (version, base) = match version_in_path(&credentials.auth_url) {
        Some(version) => (
            version,
            credentials.auth_url.trim_end_matches('/').to_string(),
        ),
        None => discover(http, &credentials.auth_url)?,
    };
    let session = match version {
        Version::V3 => authenticate_v3(http, &base, credentials),
        Version::V2 => authenticate_v2(http, &base, credentials),
    }
    .map_err(|error| refused(http, credentials, error))?;
    http.add_secret(session.token.expose());
    Ok(session)
}

/// A refused login says whom Keystone refused, and where: the facts an operator checks.
fn refused(http: &Http, c: &Credentials, error: CloudError) -> CloudError {
    if error.kind != ErrorKind::AuthFailed {
        return error;
    }
    let project = c
        .project_name
        .as_deref()
        .or(c.project_id.as_deref())
        .unwrap_or("(none)");
    let provider = format!("{}: ", http.provider());
    let detail = error
        .message
        .strip_prefix(&provider)
        .unwrap_or(&error.message);
    CloudError::new(
        ErrorKind::AuthFailed,
        format!(
            "{provider}authentication refused by {} for user `{}`, project `{project}` \
             (check the password and project): {detail}",
            c.auth_url, c.username
        ),
    )
}

/// `GET auth-url` lists the API versions; prefer v3, accept v2.0.
fn discover(http: &Http, auth_url: &str) -> CloudResult<(Version, String)> {
    let reply = http.call("GET", auth_url, "GET identity /", &[], Body::None)?;
    // Keystone answers 300 Multiple Choices to this GET on some deployments; both carry the
    // same document, and `call` only returns 2xx, so a 300 arrives as an Api error here.
    let document = reply.json()?;
    let versions: Vec<&Value> = match document
        .pointer("/versions/values")
        .or_else(|| document.get("versions"))
    {
        Some(Value::Array(values)) => values.iter().collect(),
        _ => document.get("version").into_iter().collect(),
    };
    let href = |wanted: &str| {
        versions.iter().find_map(|v| {
            let id = v.get("id")?.as_str()?;
            if !id.starts_with(wanted) {
                return None;
            }
            v.get("links")?.as_array()?.iter().find_map(|link| {
                (link.get("rel")?.as_str()? == "self")
                    .then(|| link.get("href")?.as_str().map(str::to_string))?
            })
        })
    };
    if let Some(url) = href("v3") {
        return Ok((Version::V3, url.trim_end_matches('/').to_string()));
    }
    if let Some(url) = href("v2.0") {
        return Ok((Version::V2, url.trim_end_matches('/').to_string()));
    }
    Err(CloudError::new(
        ErrorKind::Api {
            status: reply.status,
        },
        format!(
            "{}: {auth_url} lists no Keystone v3 or v2.0 API; give auth-url with its version",
            http.provider()
        ),
    ))
}

fn authenticate_v3(http: &Http, base: &str, c: &Credentials) -> CloudResult<Session> {
    let user_domain = c.user_domain_name.as_deref().unwrap_or("Default");
    let project_domain = c.project_domain_name.as_deref().unwrap_or("Default");
    let project = match (&c.project_id, &c.project_name) {
        (Some(id), _) => json!({"id": id}),
        (None, Some(name)) => json!({"name": name, "domain": {"name": project_domain}}),
        (None, None) => Value::Null,
    };
    let mut auth = json!({
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": c.username, "domain": {"name": user_domain}, "password": c.password.expose()}}
        }
    });
    if !project.is_null() {
        auth["scope"] = json!({"project": project});
    }
    let body = json!({"auth": auth});
    let reply = http.call_repeatable(
        "POST",
        &format!("{base}/auth/tokens"),
        "POST identity /v3/auth/tokens",
        &[],
        Body::Json(&body),
    )?;
    let token = reply
        .header("x-subject-token")
        .map(str::to_string)
        .ok_or_else(|| {
            CloudError::new(
                ErrorKind::AuthFailed,
                format!(
                    "{}: Keystone answered without X-Subject-Token",
                    http.provider()
                ),
            )
        })?;
    let document = reply.json()?;
    let catalog = parse_catalog(document.pointer("/token/catalog"), |e| {
        vec![Endpoint {
            interface: text(e, "interface"),
            region: e
                .get("region_id")
                .or_else(|| e.get("region"))
                .and_then(Value::as_str)
                .map(str::to_string),
            url: text(e, "url"),
        }]
    });
    Ok(Session {
        token: Secret(token),
        catalog,
        expires_at: expiry(&document, "/token/expires_at"),
    })
}

fn authenticate_v2(http: &Http, base: &str, c: &Credentials) -> CloudResult<Session> {
    let mut auth =
        json!({"passwordCredentials": {"username": c.username, "password": c.password.expose()}});
    if let Some(id) = &c.project_id {
        auth["tenantId"] = json!(id);
    } else if let Some(name) = &c.project_name {
        auth["tenantName"] = json!(name);
    }
    let body = json!({"auth": auth});
    let reply = http.call_repeatable(
        "POST",
        &format!("{base}/tokens"),
        "POST identity /v2.0/tokens",
        &[],
        Body::Json(&body),
    )?;
    let document = reply.json()?;
    let token = document
        .pointer("/access/token/id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            CloudError::new(
                ErrorKind::AuthFailed,
                format!(
                    "{}: Keystone v2.0 answered without a token",
                    http.provider()
                ),
            )
        })?;
    // v2.0 lists one entry per region with a URL per interface.
    let catalog = parse_catalog(document.pointer("/access/serviceCatalog"), |e| {
        let region = e.get("region").and_then(Value::as_str).map(str::to_string);
        [
            ("public", "publicURL"),
            ("internal", "internalURL"),
            ("admin", "adminURL"),
        ]
        .into_iter()
        .filter_map(|(interface, key)| {
            Some(Endpoint {
                interface: interface.into(),
                region: region.clone(),
                url: e.get(key)?.as_str()?.to_string(),
            })
        })
        .collect()
    });
    Ok(Session {
        token: Secret(token.to_string()),
        catalog,
        expires_at: expiry(&document, "/access/token/expires"),
    })
}

/// Services with their endpoints; `endpoints_of` reads one endpoint entry of the version at
/// hand.
fn parse_catalog(
    services: Option<&Value>,
    endpoints_of: impl Fn(&Value) -> Vec<Endpoint>,
) -> Catalog {
    let services = services
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    Catalog(
        services
            .iter()
            .map(|s| Service {
                kind: text(s, "type"),
                name: text(s, "name"),
                endpoints: s
                    .get("endpoints")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(&endpoints_of)
                    .collect(),
            })
            .collect(),
    )
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Catalog {
    /// The endpoint URL of a service by type (and name, when the provider sets
    /// `service-name`), region and interface.
    pub fn endpoint(
        &self,
        kind: &str,
        name: Option<&str>,
        region: Option<&str>,
        interface: &str,
    ) -> Result<String, String> {
        let found = self
            .0
            .iter()
            .filter(|s| s.kind == kind && name.is_none_or(|n| s.name == n))
            .flat_map(|s| &s.endpoints)
            .find(|e| {
                e.interface == interface && region.is_none_or(|r| e.region.as_deref() == Some(r))
            });
        match found {
            Some(e) => Ok(e.url.trim_end_matches('/').to_string()),
            None => {
                let have: Vec<String> = self
                    .0
                    .iter()
                    .flat_map(|s| {
                        s.endpoints.iter().map(move |e| {
                            format!(
                                "{}/{} ({}, {})",
                                s.kind,
                                s.name,
                                e.region.as_deref().unwrap_or("no region"),
                                e.interface
                            )
                        })
                    })
                    .collect();
                Err(format!(
                    "no {kind}{} endpoint for region {} and interface {interface} in the catalog; it has: {}",
                    name.map(|n| format!(" named {n}")).unwrap_or_default(),
                    region.unwrap_or("(any)"),
                    if have.is_empty() { "nothing".to_string() } else { have.join(", ") }
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_in_auth_urls() {
        assert_eq!(version_in_path("https://k:5000/v3/"), Some(Version::V3));
        assert_eq!(
            version_in_path("https://identity.api.rackspacecloud.com/v2.0/"),
            Some(Version::V2)
        );
        assert_eq!(version_in_path("https://k:5000"), None);
    }

    #[test]
    fn catalog_lookup_by_type_name_region_and_interface() {
        let catalog = Catalog(vec![Service {
            kind: "compute".into(),
            name: "nova".into(),
            endpoints: vec![
                Endpoint {
                    interface: "public".into(),
                    region: Some("DFW".into()),
                    url: "https://dfw/v2/".into(),
                },
                Endpoint {
                    interface: "public".into(),
                    region: Some("ORD".into()),
                    url: "https://ord/v2".into(),
                },
            ],
        }]);
        assert_eq!(
            catalog
                .endpoint("compute", None, Some("ORD"), "public")
                .unwrap(),
            "https://ord/v2"
        );
        assert_eq!(
            catalog
                .endpoint("compute", Some("nova"), Some("DFW"), "public")
                .unwrap(),
            "https://dfw/v2"
        );
        let err = catalog
            .endpoint("compute", Some("cloudServers"), None, "public")
            .unwrap_err();
        assert!(err.contains("compute/nova (DFW, public)"), "{err}");
        assert!(catalog.endpoint("image", None, None, "public").is_err());
    }
}
