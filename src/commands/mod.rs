//! One file per subcommand; this module only loads what they share and dispatches.

mod acquire;
mod alien_image_list;
mod alien_list;
mod check;
mod cleanup;
mod config_validate;
mod delete;
mod dib_image_delete;
mod dib_image_list;
mod history;
mod hold;
mod image_build;
mod image_delete;
mod image_list;
mod image_update;
mod image_upload;
mod list;
mod reconcile;
mod release;
mod status;
mod timers;

use anyhow::Result;

use crate::cli::{Cli, Command, Format};
use crate::cloud::openstack::auth::Session;
use crate::cloud::openstack::http::CallCounter;
use crate::cloud::openstack::OpenStack;
use crate::cloud::StoredSession;
use crate::config::{self, Config};
use crate::exit::Unreachable;
use crate::model::ProviderName;
use crate::state::Db;
use std::collections::BTreeMap;

/// What every command that has a valid configuration gets.
pub struct Context {
    pub config: Config,
    pub format: Format,
    /// Read once per command (see `clock`).
    pub now: i64,
    /// Every cloud API call of this command, printed by `--debug`.
    pub calls: CallCounter,
    /// What the command tells its journal row besides how it ended.
    pub journal: std::sync::Mutex<JournalNotes>,
}

/// What a command adds to its journal row (`state::journal`).
#[derive(Debug, Default)]
pub struct JournalNotes {
    /// Seconds spent waiting for the lock.
    pub lock_wait: Option<f64>,
    /// The command's summary, as JSON.
    pub summary: Option<String>,
    /// The actions planned and how each ended, as JSON.
    pub actions: Option<String>,
    /// Counters and timers of the image work, as statsd lines (`nodepool.dib_image_build…`).
    pub statsd: Vec<String>,
}

impl Context {
    /// Add to the journal row (a poisoned lock only loses the note).
    pub fn note(&self, change: impl FnOnce(&mut JournalNotes)) {
        if let Ok(mut notes) = self.journal.lock() {
            change(&mut notes);
        }
    }
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
    // Needs no configuration: a shell's completion script is installed before one exists.
    if let Command::Completions(args) = &cli.command {
        use clap::CommandFactory;
        let mut command = Cli::command();
        clap_complete::generate(args.shell, &mut command, "nodepool", &mut std::io::stdout());
        return Ok(());
    }
    let config = load_config(&cli.config)?;
    let ctx = Context {
        config,
        format: cli.format,
        now: crate::clock::now(),
        calls: CallCounter::default(),
        journal: Default::default(),
    };
    let started = std::time::Instant::now();
    let row = journaled(&cli.command)
        .and_then(|name| begin_journal(&ctx, name).map(|(db, id)| (db, id, name)));
    let result = dispatch(cli, &ctx);
    if let Some((db, id, name)) = row {
        finish_journal(&ctx, (&db, id, name), &result, started.elapsed());
    }
    if cli.debug {
        report_calls(&ctx.calls);
    }
    result
}

/// The journal's name of a command that changes something; None for the ones that only read
/// (or write outside the database).
fn journaled(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::ImageBuild(_) => "image-build",
        Command::ImageUpload(_) => "image-upload",
        Command::ImageUpdate(_) => "image-update",
        Command::ImageDelete(_) => "image-delete",
        Command::DibImageDelete(_) => "dib-image-delete",
        Command::Hold(_) => "hold",
        Command::Delete(_) => "delete",
        Command::Reconcile(args) if !args.dry_run => "reconcile",
        Command::Cleanup(_) => "cleanup",
        Command::Check(_) => "check",
        Command::Acquire(_) => "acquire",
        Command::Release(_) => "release",
        _ => return None,
    })
}

/// The journal row of this run, begun before it does anything; a database that cannot be
/// opened is the command's own error to report.
fn begin_journal(ctx: &Context, name: &str) -> Option<(Db, i64)> {
    let db = ctx.open_db().ok()?;
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let hash = std::fs::read(&ctx.config.path)
        .map(|bytes| {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(&bytes);
            digest
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .unwrap_or_default();
    match crate::state::journal::begin(db.conn(), (name, &argv.join(" ")), &hash, ctx.now) {
        Ok(id) => Some((db, id)),
        Err(error) => {
            log::warn!("{error:#}");
            None
        }
    }
}

/// statsd and the Prometheus text file, from what the run's journal row holds.
fn report_metrics(
    ctx: &Context,
    (db, command): (&Db, &str),
    (ending, took): (&crate::state::journal::Ending, std::time::Duration),
    image_lines: &[String],
) {
    let summary: serde_json::Value = ending
        .summary
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let count = |key: &str| {
        summary
            .get(key)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let counters = [
        ("launch.count", count("launched")),
        ("launch.ready", count("ready")),
        ("launch.error", count("failed")),
        ("delete.count", count("deleting")),
        ("delete.ok", count("deleted")),
    ];
    let run = crate::metrics::RunReport {
        command,
        exit_status: ending.exit_status,
        took,
        counters: if summary.is_object() { &counters } else { &[] },
        extra: image_lines,
    };
    crate::metrics::report(&ctx.config, db.conn(), &run);
}

fn finish_journal(
    ctx: &Context,
    (db, id, command): (&Db, i64, &str),
    result: &Result<()>,
    took: std::time::Duration,
) {
    let notes = std::mem::take(&mut *ctx.journal.lock().unwrap_or_else(|e| e.into_inner()));
    let calls: BTreeMap<String, u64> = ctx
        .calls
        .snapshot()
        .into_iter()
        .map(|((provider, route), n)| (format!("{provider} {route}"), n))
        .collect();
    let ending = crate::state::journal::Ending {
        exit_status: match result {
            Ok(()) => 0,
            Err(error) => i32::from(crate::exit::Exit::of(error).code()),
        },
        interrupted: crate::interrupt::received().map(crate::interrupt::name),
        seconds: (took.as_secs_f64() * 1000.0).round() / 1000.0,
        lock_wait: notes.lock_wait,
        api_calls: serde_json::to_string(&calls).unwrap_or_default(),
        summary: notes.summary,
        actions: notes.actions,
    };
    let keep = ctx.config.history_max_age.as_secs() as i64;
    if let Err(error) =
        crate::state::journal::finish(db.conn(), id, &ending, (crate::clock::now(), keep))
    {
        log::warn!("{error:#}");
    }
    // After the row is finished: the text file's last-run families are read from the journal.
    report_metrics(ctx, (db, command), (&ending, took), &notes.statsd);
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
        Command::ImageBuild(args) => image_build::run(ctx, args),
        Command::ImageUpload(args) => image_upload::run(ctx, args),
        Command::ImageUpdate(args) => image_update::run(ctx, args),
        Command::ImageDelete(args) => image_delete::run(ctx, args),
        Command::DibImageDelete(args) => dib_image_delete::run(ctx, args),
        Command::AlienList(args) => alien_list::run(ctx, args.provider.as_deref()),
        Command::AlienImageList(args) => alien_image_list::run(ctx, args.provider.as_deref()),
        Command::Reconcile(args) => reconcile::run(ctx, args),
        Command::Cleanup(args) => cleanup::run(ctx, args),
        Command::Check(args) => check::run(ctx, args),
        Command::Acquire(args) => acquire::run(ctx, args),
        Command::Release(args) => release::run(ctx, crate::model::NodeId(args.id)),
        Command::Timers(args) => timers::run(ctx, args),
        Command::History(args) => history::run(ctx, args),
        Command::Completions(_) => unreachable!("handled above"),
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
    let stored = stored_sessions(ctx);
    for (provider, cloud) in
        crate::cloud::connect_all(providers.iter().copied(), &ctx.calls, &stored)
    {
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

/// Keystone tokens stored by earlier runs, for the providers whose `token-cache` is on; none
/// when there is no database yet (or it cannot be read: the run then logs in as before).
pub(crate) fn stored_sessions(ctx: &Context) -> BTreeMap<ProviderName, StoredSession> {
    let rows = Db::open_read_only(&ctx.config.database)
        .and_then(|db| crate::state::tokens::all(db.conn()));
    let rows = match rows {
        Ok(rows) => rows,
        Err(error) => {
            log::debug!("no stored tokens: {error:#}");
            return BTreeMap::new();
        }
    };
    rows.into_iter()
        .filter(|(provider, _, _)| {
            ctx.config
                .providers
                .get(provider)
                .is_some_and(|p| p.token_cache)
        })
        .filter_map(|(provider, auth_hash, stored)| {
            let catalog = serde_json::from_str(&stored.catalog).ok()?;
            let session = Session {
                token: stored.token,
                catalog,
                expires_at: Some(stored.expires_at),
            };
            Some((provider, (auth_hash, session)))
        })
        .collect()
}

/// Store each connected provider's token for the next run, unless it is the one stored
/// already; forget the tokens a cloud refused and those of providers with `token-cache`
/// off. Tokens are only written to a database that nobody else can read.
pub(crate) fn keep_sessions(
    ctx: &Context,
    db: &Db,
    clouds: &BTreeMap<ProviderName, OpenStack>,
    refused: impl Iterator<Item = ProviderName>,
    stored: &BTreeMap<ProviderName, StoredSession>,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let conn = db.conn();
    for provider in refused {
        crate::state::tokens::forget(conn, &provider)?;
    }
    let mode = std::fs::metadata(db.path())?.permissions().mode() & 0o777;
    let private = mode & 0o077 == 0;
    for (name, cloud) in clouds {
        let wanted = ctx
            .config
            .providers
            .get(name)
            .is_some_and(|p| p.token_cache);
        let keep = cloud.session_to_keep().filter(|_| wanted && private);
        let Some((session, expires_at)) = keep.and_then(|s| s.expires_at.map(|at| (s, at))) else {
            crate::state::tokens::forget(conn, name)?;
            continue;
        };
        if stored
            .get(name)
            .is_some_and(|(_, s)| s.token == session.token)
        {
            continue;
        }
        let token = crate::state::tokens::StoredToken {
            catalog: serde_json::to_string(&session.catalog)?,
            token: session.token,
            expires_at,
        };
        crate::state::tokens::put(conn, name, &cloud.credentials_key(), &token)?;
    }
    if !private
        && clouds
            .keys()
            .any(|p| ctx.config.providers.get(p).is_some_and(|p| p.token_cache))
    {
        log::warn!(
            "{}: tokens are not kept between runs: the database is readable by others (mode \
             {mode:o}); make it 0600, or set token-cache: false",
            db.path().display()
        );
    }
    Ok(())
}

/// The build lock (image work: builds, uploads, deletes; one at a time per host, never the
/// reconcile lock), waiting up to `wait_lock` seconds if given.
/// Run `work` for each of `jobs` on its provider, providers in parallel, each job with the
/// database at `db`'s path on a connection of its own: one token per provider (a stored one
/// where it is good), kept for the next command. Each job's line, or its provider's name
/// with its error.
pub(crate) fn on_providers<J: Sync>(
    ctx: &Context,
    db: &Db,
    jobs: &[J],
    provider_of: impl Fn(&J) -> &crate::config::Provider + Sync,
    work: impl Fn(&Db, &OpenStack, &J) -> Result<String> + Sync,
) -> Result<Vec<Result<String, String>>> {
    let mut providers: Vec<&crate::config::Provider> = jobs.iter().map(&provider_of).collect();
    providers.dedup_by(|a, b| a.name == b.name);
    let stored = stored_sessions(ctx);
    let clouds: BTreeMap<ProviderName, Result<OpenStack, String>> =
        crate::cloud::connect_all(providers.iter().copied(), &ctx.calls, &stored)
            .into_iter()
            .map(|(p, cloud)| (p.name.clone(), cloud.map_err(|e| e.to_string())))
            .collect();
    let path = db.path().to_path_buf();
    let outcomes = crate::parallel::map(
        jobs,
        crate::parallel::PROVIDER_THREADS,
        |job| {
            let name = &provider_of(job).name;
            let done = match clouds.get(name) {
                Some(Ok(cloud)) => Db::connect(&path).and_then(|db| work(&db, cloud, job)),
                Some(Err(error)) => Err(anyhow::anyhow!("{error}")),
                None => Err(anyhow::anyhow!("not connected")),
            };
            done.map_err(|error| format!("{name}: {error:#}"))
        },
        |job| Err(format!("{}: the job panicked", provider_of(job).name)),
    );
    let connected: BTreeMap<ProviderName, OpenStack> = clouds
        .into_iter()
        .filter_map(|(name, cloud)| Some((name, cloud.ok()?)))
        .collect();
    keep_sessions(ctx, db, &connected, std::iter::empty(), &stored)?;
    Ok(outcomes)
}

/// Print the lines of the jobs that went well; fail naming the ones that did not.
pub(crate) fn report_jobs(
    what: &str,
    outcomes: Vec<Result<String, String>>,
) -> Result<Vec<String>> {
    let (lines, failed): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(Result::is_ok);
    let lines: Vec<String> = lines.into_iter().filter_map(Result::ok).collect();
    let failed: Vec<String> = failed.into_iter().filter_map(Result::err).collect();
    if !failed.is_empty() {
        for line in &lines {
            crate::output::line(line)?;
        }
        anyhow::bail!("{what} failed on {}", failed.join("; "));
    }
    Ok(lines)
}

pub(crate) fn take_build_lock(
    ctx: &Context,
    command: &str,
    wait_lock: Option<u64>,
) -> Result<crate::lock::Lock> {
    take(ctx, crate::lock::LockKind::Build, command, wait_lock)
}

/// Take a lock, noting in the journal how long that took.
pub(crate) fn take(
    ctx: &Context,
    kind: crate::lock::LockKind,
    command: &str,
    wait_lock: Option<u64>,
) -> Result<crate::lock::Lock> {
    let started = std::time::Instant::now();
    let lock = crate::lock::Lock::acquire(
        &ctx.config.database,
        kind,
        command,
        wait_lock.map(std::time::Duration::from_secs),
    );
    ctx.note(|n| n.lock_wait = Some((started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0));
    lock
}
