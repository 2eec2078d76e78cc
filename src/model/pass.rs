//! What one pass leaves for the next, as facts: launch failures and quota refusals per
//! provider (when a cooldown ends is the planner's policy, not stored), the last allocation
//! (fairness, and what blocked each label for `status`), and sightings of leaked servers.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ImageName, LabelName, ProviderName};

/// Launch failures of a label on a provider in a row, or (label None) the provider's last
/// quota refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cooldown {
    pub provider: ProviderName,
    /// None: the whole provider refused for quota.
    pub label: Option<LabelName>,
    /// Failures in a row (0 for a quota refusal, which is not a failure).
    pub failures: u32,
    /// When the last failure or refusal happened.
    pub last_time: i64,
    pub last_error: Option<String>,
}

/// One label's share on one provider in a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub label: LabelName,
    pub provider: ProviderName,
    pub deficit: u32,
    pub granted: u32,
    /// What kept the label from getting its deficit here.
    pub blocker: Option<Blocker>,
    pub time: i64,
}

/// When a leaked server was first and last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    pub first_seen: i64,
    pub last_seen: i64,
}

/// Why a provider image has no ready image to boot from, as far as nodepool can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum ImageMissing {
    /// Stored by an older release, which did not say.
    #[default]
    Unknown,
    /// A cloud image (`base-image`) that Glance does not list as active.
    CloudImageNotFound { base_image: String },
    /// Nodepool makes it, and has never made one.
    NeverBuilt,
    /// A build, upload or snapshot of it is under way.
    Building { since: i64 },
    /// Its diskimage is built (this version) and not uploaded here yet.
    NotUploaded { version: i64 },
    /// Its diskimage's last build failed; the build's log.
    LastBuildFailed { log: String },
}

impl fmt::Display for ImageMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageMissing::Unknown => Ok(()),
            ImageMissing::CloudImageNotFound { base_image } => {
                write!(f, ": cloud image `{base_image}` not found in Glance")
            }
            ImageMissing::NeverBuilt => write!(f, ": never built"),
            ImageMissing::Building { since } => {
                write!(f, ": building since {}", crate::clock::rfc3339(*since))
            }
            ImageMissing::NotUploaded { version } => {
                write!(f, ": built (version {version}), not uploaded here yet")
            }
            ImageMissing::LastBuildFailed { log } => write!(f, ": last build failed: {log}"),
        }
    }
}

/// Why a label short of min-ready got no (or not all) launches on a provider. `code` is
/// stable for scripts (`status --format json`); the text is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "kebab-case")]
pub enum Blocker {
    /// The provider could not be listed this pass.
    Unreachable { error: String },
    /// Keystone refused the provider's credentials.
    AuthRefused { error: String },
    /// No image to boot the label's image from, and why.
    NoReadyImage {
        image: ImageName,
        #[serde(default)]
        why: ImageMissing,
    },
    /// The provider refused a launch for quota a short while ago.
    Quota { seconds_left: i64, error: String },
    /// Launches of the label failed repeatedly here.
    Cooldown {
        seconds_left: i64,
        failures: u32,
        error: String,
    },
    /// Failures this pass records will start a cooldown.
    CooldownStarting { failures: u32 },
    /// max-servers is reached.
    AtMaxServers,
    /// max-actions-per-pass is used up.
    PerPassBound,
}

impl Blocker {
    pub fn code(&self) -> &'static str {
        match self {
            Blocker::Unreachable { .. } => "unreachable",
            Blocker::AuthRefused { .. } => "auth-refused",
            Blocker::NoReadyImage { .. } => "no-ready-image",
            Blocker::Quota { .. } => "quota",
            Blocker::Cooldown { .. } => "cooldown",
            Blocker::CooldownStarting { .. } => "cooldown-starting",
            Blocker::AtMaxServers => "at-max-servers",
            Blocker::PerPassBound => "per-pass-bound",
        }
    }
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::Unreachable { error } => write!(f, "unreachable: {error}"),
            Blocker::AuthRefused { error } => write!(f, "authentication refused: {error}"),
            Blocker::NoReadyImage { image, why } => write!(f, "no ready image `{image}`{why}"),
            Blocker::Quota {
                seconds_left,
                error,
            } => write!(f, "quota, {seconds_left} s left: {error}"),
            Blocker::Cooldown {
                seconds_left,
                failures,
                error,
            } => write!(
                f,
                "cooldown, {seconds_left} s left after {failures} failures: {error}"
            ),
            Blocker::CooldownStarting { failures } => {
                write!(f, "cooldown starting after {failures} failures")
            }
            Blocker::AtMaxServers => f.write_str("at max-servers"),
            Blocker::PerPassBound => f.write_str("per-pass bound"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocker_round_trips_through_json_with_its_code() {
        let blocker = Blocker::Cooldown {
            seconds_left: 20,
            failures: 3,
            error: "No valid host".into(),
        };
        let json = serde_json::to_value(&blocker).unwrap();
        assert_eq!(json["code"], blocker.code());
        assert_eq!(serde_json::from_value::<Blocker>(json).unwrap(), blocker);
        assert_eq!(
            blocker.to_string(),
            "cooldown, 20 s left after 3 failures: No valid host"
        );
        let json = serde_json::to_value(Blocker::AtMaxServers).unwrap();
        assert_eq!(json, serde_json::json!({"code": "at-max-servers"}));
    }
}
