//! One file per subcommand; this module only loads what they share and dispatches.

mod alien_image_list;
mod alien_list;
mod check;
mod cleanup;
mod config_validate;
mod delete;
mod dib_image_list;
mod hold;
mod image_list;
mod list;
mod reconcile;
mod status;

use anyhow::Result;

use crate::cli::{Cli, Command, Format};
use crate::cloud::openstack::http::CallCounter;
use crate::cloud::openstack::OpenStack;
use crate::config::{self, Config};
use crate::exit::{NotImplemented, Unreachable};
use crate::state::Db;

/// What every command that has a valid configuration gets.
pub struct Context {
    pub config: Config,
    pub format: Format,
    /// Read once per command (see `clock`).
    pub now: i64,
    /// Every cloud API call of this command, printed by `--debug`.
    pub calls: CallCounter,
}

impl Context {
    pub fn open_db(&self) -> Result<Db> {
        Db::open(&self.config.database)
    }

    /// The database for a command that only reads it: never created, migrated or written,
    /// readable by a user who may not write it. A missing one reads as empty, with a note,
    /// so a mistyped `dburi` shows up instead of creating a second database.
    pub fn read_db(&self) -> Result<Db> {
        let path = &self.config.database;
        if !path.exists() {
            eprintln!(
                "nodepool: note: no database at {} yet (the first `nodepool reconcile` creates \
                 it): nothing is recorded",
                path.display()
            );
        }
        Db::open_read_only(path)
    }
}

pub fn run(cli: &Cli) -> Result<()> {
    if let Command::ConfigValidate(args) = &cli.command {
        return config_validate::run(&cli.config, cli.format, args.file_only);
    }
    let config = load_config(&cli.config)?;
    let ctx = Context {
        config,
        format: cli.format,
        now: crate::clock::now(),
        calls: CallCounter::default(),
    };
    let result = dispatch(cli, &ctx);
    if cli.debug {
        report_calls(&ctx.calls);
    }
    result
}

fn dispatch(cli: &Cli, ctx: &Context) -> Result<()> {
    match &cli.command {
        Command::ConfigValidate(_) => unreachable!("handled above"),
        Command::List => list::run(ctx),
        Command::ImageList => image_list::run(ctx),
        Command::DibImageList => dib_image_list::run(ctx),
        Command::Hold(args) => hold::run(ctx, crate::model::NodeId(args.id)),
        Command::Delete(args) => delete::run(ctx, args),
        Command::Status => status::run(ctx),
        // Capabilities of later releases: refuse honestly, change nothing.
        Command::ImageBuild(_) => Err(NotImplemented("image-build").into()),
        Command::ImageUpload(_) => Err(NotImplemented("image-upload").into()),
        Command::ImageUpdate(_) => Err(NotImplemented("image-update").into()),
        Command::ImageDelete(_) => Err(NotImplemented("image-delete").into()),
        Command::DibImageDelete(_) => Err(NotImplemented("dib-image-delete").into()),
        Command::AlienList(args) => alien_list::run(ctx, args.provider.as_deref()),
        Command::AlienImageList(args) => alien_image_list::run(ctx, args.provider.as_deref()),
        Command::Reconcile(args) => reconcile::run(ctx, args),
        Command::Cleanup(args) => cleanup::run(ctx, args),
        Command::Check(args) => check::run(ctx, args),
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

/// `--debug`: API calls per provider and route, on stderr.
fn report_calls(calls: &CallCounter) {
    let counts = calls.snapshot();
    if counts.is_empty() {
        return;
    }
    eprintln!("nodepool: API calls: {} in all", calls.total());
    for ((provider, route), n) in counts {
        eprintln!("nodepool:   {provider}: {route}: {n}");
    }
}

/// Run `work` on each selected provider's cloud, providers connected in parallel. A provider
/// that fails is left out and the others go on; the command fails only when every provider
/// failed (or the named provider does not exist). The ones left out are returned, for the
/// command to print its output and then exit 69 (`Unreachable::into_result`).
fn for_each_provider(
    ctx: &Context,
    only: Option<&str>,
    mut work: impl FnMut(
        &crate::model::ProviderName,
        &OpenStack,
    ) -> Result<(), crate::cloud::CloudError>,
) -> Result<Unreachable> {
    let providers = reconcile::select_providers(ctx, only)?;
    let mut failed = Vec::new();
    for (provider, cloud) in crate::cloud::connect_all(providers.iter().copied(), &ctx.calls) {
        let outcome = cloud.and_then(|cloud| work(&provider.name, &cloud));
        if let Err(error) = outcome {
            failed.push((provider.name.to_string(), error.to_string()));
        }
    }
    if !failed.is_empty() && failed.len() == providers.len() {
        anyhow::bail!("{:#}", NoProvider(failed));
    }
    Ok(Unreachable(failed))
}

/// Every provider failed: the command could not do its job (exit 1).
struct NoProvider(Vec<(String, String)>);

impl std::fmt::Display for NoProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no provider could be reached")?;
        for (provider, error) in &self.0 {
            write!(f, "; {}", crate::exit::named(provider, error))?;
        }
        Ok(())
    }
}
