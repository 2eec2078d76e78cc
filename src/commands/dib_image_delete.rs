//! `nodepool dib-image-delete ID`: delete a local build, its files and its row, under the
//! build lock. Its uploads stay (they are provider images: `image-delete`).

use anyhow::{bail, Result};

use super::Context;
use crate::cli::IdArg;
use crate::output;
use crate::state::images;

pub fn run(ctx: &Context, args: &IdArg) -> Result<()> {
    let _lock = super::take_build_lock(ctx, "dib-image-delete", None)?;
    let db = ctx.open_db()?;
    let conn = db.conn();
    let Some(found) = images::list_dib_images(conn)?
        .into_iter()
        .find(|b| b.id == args.id)
    else {
        bail!(
            "no disk image with id {} (see `nodepool dib-image-list`)",
            args.id
        );
    };
    crate::image::retention::remove_build(conn, &ctx.config, &found)?;
    output::line(&format!(
        "dib-image-delete: disk image {} ({} version {}) deleted with its files and log",
        found.id, found.image, found.version
    ))
}
