//! The command line: one `Cli` with the global options and one `Command` variant per
//! subcommand, with the 2015 names and positional arguments. Doc comments here are the
//! `--help` text and the man page.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keeps pools of ready CI nodes on OpenStack clouds.
///
/// Each invocation loads the configuration, compares what is wanted with what exists, does a
/// bounded amount of work, records it in SQLite and exits. Run it from systemd timers, by
/// hand, or from CI pipelines.
#[derive(Debug, Parser)]
#[command(
    name = "nodepool",
    version = env!("NODEPOOL_VERSION"),
    after_help = crate::exit::Exit::help_text()
)]
pub struct Cli {
    /// Configuration file (YAML, or TOML when it ends in .toml)
    #[arg(
        short,
        long,
        global = true,
        env = "NODEPOOL_CONFIG",
        default_value = "/etc/nodepool/nodepool.yaml",
        value_name = "CONFIG"
    )]
    pub config: PathBuf,

    /// Print debug logs on stderr
    #[arg(long, global = true)]
    pub debug: bool,

    /// Output format of listings and reports
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable tables
    Table,
    /// One JSON document on stdout
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List nodes
    List,
    /// List images in the providers (uploads and snapshots)
    ImageList,
    /// List disk images built locally by diskimage-builder
    DibImageList,
    /// Build a diskimage-builder image locally
    ImageBuild(ImageBuildArgs),
    /// Upload the newest built disk image to providers
    ImageUpload(ImageUploadArgs),
    /// Make a new image now: build and upload (diskimage) or snapshot (setup script)
    ImageUpdate(ImageUpdateArgs),
    /// Delete an image from its provider
    ImageDelete(IdArg),
    /// Delete a locally built disk image
    DibImageDelete(IdArg),
    /// Keep a node indefinitely (state hold); no pass touches it
    Hold(IdArg),
    /// Mark a node for deletion
    Delete(DeleteArgs),
    /// List servers in the clouds that the database does not know
    AlienList(ProviderFilter),
    /// List uploads and snapshots in the clouds that the database does not know
    AlienImageList(ProviderFilter),
    /// Validate the configuration and print every problem found
    ConfigValidate(ConfigValidateArgs),
    /// Bring nodes to the configured state: launch, make ready, delete
    Reconcile(ReconcileArgs),
    /// Delete stale nodes, old images, leaked servers and keypairs
    Cleanup(LockArgs),
    /// Log into every ready node over SSH and delete the ones that fail
    Check(LockArgs),
    /// Take ready nodes of a label for a CI job (they become used); prints them as JSON
    Acquire(AcquireArgs),
    /// Give back an acquired node; nodes are single use, so it is deleted
    Release(IdArg),
    /// Show ready, building, used and held nodes per label and provider, against min-ready and
    /// max-servers
    Status,
    /// Print (or write) systemd timer units for the schedules of the `cron:` section
    Timers(TimersArgs),
    /// Show the run journal: what each run observed, planned, did, and how it ended
    History(HistoryArgs),
    /// Print shell completions for bash, zsh or fish
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Show at most N runs, newest first
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: u32,
    /// Only runs started since TIME: RFC 3339 (2026-12-01T03:00:00Z) or a time ago (2h, 30min)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct TimersArgs {
    /// Write the units into DIR (e.g. /etc/systemd/system) instead of printing them
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// Options of the commands that take the run lock.
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// Wait up to SECONDS for another run to release the lock instead of exiting with 75
    #[arg(long, value_name = "SECONDS")]
    pub wait_lock: Option<u64>,
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// The ID shown by the listing commands
    pub id: i64,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Node ID, as shown by `nodepool list`
    pub id: crate::model::NodeId,
    /// Delete the server now, in the foreground, and wait until it is gone
    #[arg(long)]
    pub now: bool,
}

#[derive(Debug, Args)]
pub struct ConfigValidateArgs {
    /// Check the file alone, not this host's clouds.yaml entries and private keys (for a
    /// configuration repository's CI, which is not the nodepool host)
    #[arg(long)]
    pub file_only: bool,
}

#[derive(Debug, Args)]
pub struct ProviderFilter {
    /// Only this provider (default: all providers)
    pub provider: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// Name of the diskimage to build
    pub image: String,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct ImageUploadArgs {
    /// [PROVIDER] IMAGE: the provider to upload to (default `all`: every provider that uses
    /// the image), then the image name
    #[arg(num_args = 1..=2, required = true, value_names = ["PROVIDER", "IMAGE"])]
    pub args: Vec<String>,
    #[command(flatten)]
    pub lock: LockArgs,
}

impl ImageUploadArgs {
    /// `(provider, image)`; clap guarantees one or two values.
    pub fn provider_and_image(&self) -> (&str, &str) {
        match self.args.as_slice() {
            [image] => ("all", image),
            [provider, image, ..] => (provider, image),
            [] => ("all", ""),
        }
    }
}

#[derive(Debug, Args)]
pub struct ImageUpdateArgs {
    /// Provider to update, or `all`
    #[arg(required_unless_present = "missing")]
    pub provider: Option<String>,
    /// Name of the image; with `all` and no IMAGE, every image a label uses (the daily update)
    pub image: Option<String>,
    /// Build, upload or snapshot only the images that are missing or failed
    #[arg(long, conflicts_with_all = ["provider", "image"])]
    pub missing: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Print the plan (every action with its reason) and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Only this provider
    #[arg(long, value_name = "PROVIDER")]
    pub provider: Option<String>,
    /// Repeat rounds while work is in flight, for at most SECONDS (0: one round)
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub duration: u64,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct AcquireArgs {
    /// Label of the nodes to take
    pub label: String,
    /// How many nodes to take; all or none
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Who holds the nodes (recorded with them; default: $USER)
    #[arg(long)]
    pub owner: Option<String>,
    /// When fewer are ready, ask reconcile for them (demand above min-ready) and wait up to
    /// SECONDS; exit 124 if they are not ready by then
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
