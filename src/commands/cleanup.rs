//! `nodepool cleanup`: one round that only removes things — nodes stuck building or used
//! for over 8 hours, servers of nodes marked for deletion, rows whose servers are gone,
//! leaked servers (seen twice, past the grace period, confirmed by a GET) — and the
//! keypairs nodepool made for images that are no longer configured.

use std::time::Duration;

use anyhow::Result;

use super::reconcile::{rounds, select_providers, take_lock};
use super::{for_each_provider, Context};
use crate::cli::LockArgs;
use crate::cloud::Cloud;
use crate::execute::managed_keypair_name;
use crate::plan::Mode;
use crate::state::pass;

pub fn run(ctx: &Context, args: &LockArgs) -> Result<()> {
    let _lock = take_lock(ctx, "cleanup", args)?;
    let providers = select_providers(ctx, None)?;
    let mut summary = rounds(ctx, &providers, Mode::Cleanup, Duration::ZERO)?;
    let installation = pass::installation(ctx.open_db()?.conn())?;
    let prefix = managed_keypair_name(&installation, &"".into());
    let mut deleted = 0;
    for_each_provider(ctx, None, |name, cloud| {
        let provider = &ctx.config.providers[name];
        for keypair in cloud.list_keypairs()? {
            let Some(image) = keypair.name.strip_prefix(&prefix) else {
                continue; // not one of ours
            };
            if provider.images.keys().any(|i| i.as_str() == image) {
                continue;
            }
            cloud.delete_keypair(&keypair.name)?;
            log::info!("{name}: deleted keypair {}", keypair.name);
            deleted += 1;
        }
        Ok(())
    })?;
    summary.keypairs_deleted = Some(deleted);
    summary.api_calls = ctx.calls.total();
    summary.print(ctx.format, "cleanup")
}
