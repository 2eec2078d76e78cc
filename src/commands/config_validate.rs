//! `nodepool config-validate`: every problem at once, or a summary of what was checked.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::cli::Format;
use crate::config::{self, Config, ConfigError, Problem};
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

pub fn run(path: &Path, format: Format) -> Result<()> {
    match config::load(path) {
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
            Err(ConfigError {
                file: error.file,
                problems: error.problems,
            }
            .into())
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
