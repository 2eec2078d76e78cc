//! One file per subcommand; this module only loads what they share and dispatches.

mod config_validate;
mod delete;
mod dib_image_list;
mod hold;
mod image_list;
mod list;
mod status;

use anyhow::Result;

use crate::cli::{Cli, Command, Format};
use crate::config::{self, Config};
use crate::exit::NotImplemented;
use crate::state::Db;

/// What every command that has a valid configuration gets.
pub struct Context {
    pub config: Config,
    pub format: Format,
    /// Read once per command (see `clock`).
    pub now: i64,
}

impl Context {
    pub fn open_db(&self) -> Result<Db> {
        Db::open(&self.config.database)
    }
}

pub fn run(cli: &Cli) -> Result<()> {
    if let Command::ConfigValidate = cli.command {
        return config_validate::run(&cli.config, cli.format);
    }
    let config = load_config(&cli.config)?;
    let ctx = Context {
        config,
        format: cli.format,
        now: crate::clock::now(),
    };
    match &cli.command {
        Command::ConfigValidate => unreachable!("handled above"),
        Command::List => list::run(&ctx),
        Command::ImageList => image_list::run(&ctx),
        Command::DibImageList => dib_image_list::run(&ctx),
        Command::Hold(args) => hold::run(&ctx, args.id),
        Command::Delete(args) => delete::run(&ctx, args),
        Command::Status => status::run(&ctx),
        // Capabilities of later releases: refuse honestly, change nothing.
        Command::ImageBuild(_) => Err(NotImplemented("image-build").into()),
        Command::ImageUpload(_) => Err(NotImplemented("image-upload").into()),
        Command::ImageUpdate(_) => Err(NotImplemented("image-update").into()),
        Command::ImageDelete(_) => Err(NotImplemented("image-delete").into()),
        Command::DibImageDelete(_) => Err(NotImplemented("dib-image-delete").into()),
        Command::AlienList(_) => Err(NotImplemented("alien-list").into()),
        Command::AlienImageList(_) => Err(NotImplemented("alien-image-list").into()),
        Command::Reconcile(_) => Err(NotImplemented("reconcile").into()),
        Command::Cleanup(_) => Err(NotImplemented("cleanup").into()),
        Command::Check(_) => Err(NotImplemented("check").into()),
        Command::Acquire(_) => Err(NotImplemented("acquire").into()),
        Command::Release(_) => Err(NotImplemented("release").into()),
    }
}

/// Load and validate; warnings go to stderr, an invalid file is an error (exit 78).
pub fn load_config(path: &std::path::Path) -> Result<Config> {
    let config = config::load(path)?;
    for warning in &config.warnings {
        log::warn!("{}: {warning}", path.display());
    }
    Ok(config)
}

/// Result of `hold`/`delete` in `--format json`.
#[derive(serde::Serialize)]
struct MarkJson {
    id: crate::model::NodeId,
    state: crate::model::NodeState,
    previous_state: Option<crate::model::NodeState>,
    changed: bool,
}

/// The operator commands that move one node to a state (`hold`, `delete`): compare-and-set,
/// a clear message for every outcome, an error for an unknown id or a refused state.
fn mark_node(
    ctx: &Context,
    id: crate::model::NodeId,
    to: crate::model::NodeState,
    allowed: impl Fn(crate::model::NodeState) -> bool,
    done: &str,
    refused: &str,
) -> Result<()> {
    use crate::state::nodes::{self, Request};
    let db = ctx.open_db()?;
    let outcome = nodes::request(db.conn(), id, to, allowed, ctx.now)?;
    let (message, previous, changed) = match outcome {
        Request::NoSuchNode => anyhow::bail!("no node with id {id} (see `nodepool list`)"),
        Request::Refused { state } => anyhow::bail!("node {id} is in state {state}: {refused}"),
        Request::Already => (format!("node {id} is already in state {to}"), None, false),
        Request::Moved { from } => (
            format!("node {id}: {from} -> {to}; {done}"),
            Some(from),
            true,
        ),
    };
    match ctx.format {
        Format::Json => crate::output::json(&MarkJson {
            id,
            state: to,
            previous_state: previous,
            changed,
        }),
        Format::Table => crate::output::line(&message),
    }
}
