//! `nodepool image-delete ID`: delete a provider image (an upload or a snapshot) from its
//! cloud and its row, under the build lock. The row is marked `delete` first, so launches
//! fall back to the previous ready image at once, and a delete the cloud refused is finished
//! by running the command again.

use anyhow::{bail, Context as _, Result};

use super::Context;
use crate::cli::IdArg;
use crate::model::image::ProviderImage;
use crate::model::ImageState;
use crate::output;
use crate::state::images;

pub fn run(ctx: &Context, args: &IdArg) -> Result<()> {
    let config = &ctx.config;
    let _lock = super::take_build_lock(ctx, "image-delete", None)?;
    let db = ctx.open_db()?;
    let conn = db.conn();
    let Some(image) = images::get_provider_image(conn, args.id)? else {
        bail!(
            "no provider image with id {} (see `nodepool image-list`)",
            args.id
        );
    };
    if image.state != ImageState::Delete {
        images::transition_provider_image(
            conn,
            image.id,
            image.state,
            ImageState::Delete,
            ctx.now,
        )?;
    }
    let provider = config.providers.get(&image.provider).with_context(|| {
        format!(
            "provider image {} is on provider `{}`, which is no longer configured, so its \
             cloud image {} cannot be deleted from here; it stays in state delete",
            image.id,
            image.provider,
            image.external_id.as_deref().unwrap_or("-")
        )
    })?;
    let cloud = crate::cloud::connect(provider, ctx.calls.clone(), None).with_context(|| {
        format!(
            "provider image {}: connecting to {}",
            image.id, image.provider
        )
    })?;
    let marked = ProviderImage {
        state: ImageState::Delete,
        ..image.clone()
    };
    crate::image::retention::remove_provider_image(conn, &cloud, &marked).with_context(|| {
        format!(
            "provider image {} on {}; it stays in state delete, run the command again",
            image.id, image.provider
        )
    })?;
    output::line(&format!(
        "image-delete: provider image {} ({} version {} on {}) deleted{}",
        image.id,
        image.image,
        image
            .version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into()),
        image.provider,
        image
            .external_id
            .map(|id| format!(", with its cloud image {id}"))
            .unwrap_or_default()
    ))
}
