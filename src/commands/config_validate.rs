//! `nodepool config-validate`: every problem at once, or a summary of what was checked. Beyond
//! what every command checks when it loads the file, it looks at what it can without the
//! network: the clouds.yaml entries providers name and the private keys.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::cli::Format;
use crate::config::{self, Config, ConfigError, Problem, ProviderAuth};
use crate::output;

#[derive(Serialize)]
struct Report<'a> {
    valid: bool,
    file: &'a Path,
    problems: &'a [Problem],
    warnings: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    checked: Option<Checked>,
}

#[derive(Serialize)]
struct Checked {
    labels: usize,
    providers: usize,
    provider_images: usize,
    diskimages: usize,
    targets: usize,
    database: String,
}

pub fn run(path: &Path, format: Format, file_only: bool) -> Result<()> {
    let loaded = config::load(path).and_then(|mut config| {
        if file_only {
            return Ok(config);
        }
        let (problems, warnings) = environment(&config);
        config.warnings.extend(warnings);
        match problems.is_empty() {
            true => Ok(config),
            false => Err(ConfigError {
                file: path.to_path_buf(),
                problems,
                hint: Some(
                    "the file itself is valid; these are this host's clouds.yaml and keys \
                     (`config-validate --file-only` checks the file alone)"
                        .into(),
                ),
            }),
        }
    });
    match loaded {
        Ok(config) => report_valid(path, &config, format),
        Err(error) => {
            if format == Format::Json {
                output::json(&Report {
                    valid: false,
                    file: path,
                    problems: &error.problems,
                    warnings: &[],
                    checked: None,
                })?;
            }
            Err(error.into())
        }
    }
}

fn report_valid(path: &Path, config: &Config, format: Format) -> Result<()> {
    let checked = Checked {
        labels: config.labels.len(),
        providers: config.providers.len(),
        provider_images: config.providers.values().map(|p| p.images.len()).sum(),
        diskimages: config.diskimages.len(),
        targets: config.targets.len(),
        database: config.database.display().to_string(),
    };
    match format {
        Format::Json => output::json(&Report {
            valid: true,
            file: path,
            problems: &[],
            warnings: &config.warnings,
            checked: Some(checked),
        }),
        Format::Table => {
            for warning in &config.warnings {
                eprintln!("{}: warning: {warning}", path.display());
            }
            output::line(&format!(
                "{}: configuration valid: {}, {} ({}), {}, {}; cross references checked; database {}",
                path.display(),
                counted(checked.labels, "label"),
                counted(checked.providers, "provider"),
                counted(checked.provider_images, "provider image"),
                counted(checked.diskimages, "diskimage"),
                counted(checked.targets, "target"),
                checked.database
            ))
        }
    }
}

fn counted(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// What can be checked without the network beyond the file itself: the clouds.yaml entries
/// providers name, and the private keys nodepool logs in with. Problems make the
/// configuration invalid; warnings are printed.
fn environment(config: &Config) -> (Vec<Problem>, Vec<String>) {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let search = crate::cloud::clouds_yaml::search_path();
    for provider in config.providers.values() {
        if let ProviderAuth::CloudsYaml { cloud } = &provider.auth {
            let at = format!("{}.cloud", provider.path);
            match crate::cloud::clouds_yaml::credentials(cloud, &search) {
                Err(error) => problems.push(config.problem_at(&at, format!("{error:#}"))),
                Ok(credentials) => {
                    if let Err(why) = config::check_url(&credentials.auth_url) {
                        problems.push(config.problem_at(
                            &at,
                            format!(
                                "cloud `{cloud}`: auth_url `{}` is not a Keystone URL: {why}",
                                credentials.auth_url
                            ),
                        ));
                    }
                }
            }
        }
        for image in provider.images.values() {
            let key = &image.private_key;
            let unreadable = match std::fs::File::open(key) {
                Ok(_) if key.is_dir() => Some("is a directory".to_string()),
                Ok(_) => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Some("does not exist".to_string())
                }
                Err(e) => Some(format!("cannot be read: {e}")),
            };
            let Some(why) = unreadable else { continue };
            if !image.private_key_is_default {
                problems.push(config.problem_at(
                    &format!("{}.private-key", image.path),
                    format!("`{}` {why}", key.display()),
                ));
            } else if provider.host_key_checking {
                warnings.push(format!(
                    "{}: private-key is not set and the default `{}` {why}: nodes of this \
                     image cannot be reached over SSH",
                    image.path,
                    key.display()
                ));
            }
        }
    }
    (problems, warnings)
}
