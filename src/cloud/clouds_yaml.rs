//! The standard OpenStack client file: `cloud: NAME` in nodepool.yaml names an entry of
//! clouds.yaml, found on the usual search path, with secure.yaml beside it merged in (it
//! usually holds the passwords).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::Value;

use crate::cloud::openstack::auth::Credentials;
use crate::model::Secret;

/// Where clouds.yaml is looked for, first found wins: `$OS_CLIENT_CONFIG_FILE`, the current
/// directory, `~/.config/openstack`, `/etc/openstack`.
pub fn search_path() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(file) = std::env::var_os("OS_CLIENT_CONFIG_FILE") {
        paths.push(PathBuf::from(file));
    }
    paths.push(PathBuf::from("clouds.yaml"));
    if let Some(home) = std::env::var_os("HOME") {
        paths.push(Path::new(&home).join(".config/openstack/clouds.yaml"));
    }
    paths.push(PathBuf::from("/etc/openstack/clouds.yaml"));
    paths
}

/// The credentials of cloud `name`, from the first clouds.yaml on `paths`.
pub fn credentials(name: &str, paths: &[PathBuf]) -> Result<Credentials> {
    let file = paths.iter().find(|p| p.is_file()).ok_or_else(|| {
        anyhow!(
            "cloud `{name}`: no clouds.yaml found (looked in {})",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let mut document = read(file)?;
    let secure = file.with_file_name("secure.yaml");
    if secure.is_file() {
        merge(&mut document, read(&secure)?);
    }
    let cloud = document
        .get("clouds")
        .and_then(|c| c.get(name))
        .ok_or_else(|| {
            let known: Vec<&str> = document
                .get("clouds")
                .and_then(Value::as_mapping)
                .map(|clouds| clouds.keys().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let skipped: Vec<String> = paths
                .iter()
                .take_while(|p| *p != file)
                .map(|p| p.display().to_string())
                .collect();
            anyhow!(
                "cloud `{name}` is not in {}, which defines {}{}",
                file.display(),
                if known.is_empty() {
                    "no clouds".to_string()
                } else {
                    format!("only: {}", known.join(", "))
                },
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!(" (not found before it: {})", skipped.join(", "))
                }
            )
        })?;
    let auth = cloud.get("auth").cloned().unwrap_or(Value::Null);
    let text = |v: &Value, key: &str| {
        v.get(key).and_then(|x| {
            x.as_str()
                .map(str::to_string)
                .or_else(|| x.as_i64().map(|n| n.to_string()))
        })
    };
    let required = |key: &str| {
        text(&auth, key).ok_or_else(|| {
            anyhow!(
                "cloud `{name}` in {}: auth.{key} is missing",
                file.display()
            )
        })
    };
    let credentials = Credentials {
        auth_url: required("auth_url")?,
        username: required("username")?,
        password: Secret(required("password")?),
        project_name: text(&auth, "project_name").or_else(|| text(&auth, "tenant_name")),
        project_id: text(&auth, "project_id").or_else(|| text(&auth, "tenant_id")),
        user_domain_name: text(&auth, "user_domain_name").or_else(|| text(&auth, "domain_name")),
        project_domain_name: text(&auth, "project_domain_name")
            .or_else(|| text(&auth, "domain_name")),
        region_name: text(cloud, "region_name"),
        interface: text(cloud, "interface").unwrap_or_else(|| "public".into()),
    };
    if credentials.project_name.is_none() && credentials.project_id.is_none() {
        bail!(
            "cloud `{name}` in {}: auth.project_name or auth.project_id is missing",
            file.display()
        );
    }
    Ok(credentials)
}

fn read(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// secure.yaml's values win, mappings merged key by key.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloud_is_read_with_its_secure_yaml_merged() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("clouds.yaml"),
            "clouds:\n  mycloud:\n    region_name: RegionOne\n    auth:\n      auth_url: http://k/v3\n      username: np\n      project_name: ci\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("secure.yaml"),
            "clouds:\n  mycloud:\n    auth:\n      password: s3cret\n",
        )
        .unwrap();
        let paths = vec![
            dir.path().join("missing.yaml"),
            dir.path().join("clouds.yaml"),
        ];
        let c = credentials("mycloud", &paths).unwrap();
        assert_eq!(
            (
                c.auth_url.as_str(),
                c.username.as_str(),
                c.password.expose()
            ),
            ("http://k/v3", "np", "s3cret")
        );
        assert_eq!(
            (
                c.project_name.as_deref(),
                c.region_name.as_deref(),
                c.interface.as_str()
            ),
            (Some("ci"), Some("RegionOne"), "public")
        );
        let missing = credentials("other", &paths).unwrap_err().to_string();
        assert!(missing.contains("cloud `other` is not in"), "{missing}");
    }

    #[test]
    fn the_example_clouds_yaml_is_readable() {
        let example = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/clouds.yaml"));
        let c = credentials("mycloud", &[example]).unwrap();
        assert_eq!(c.project_domain_name.as_deref(), Some("Default"));
    }
}
