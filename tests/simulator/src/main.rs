//! `nodepool-simulator`: a wire-compatible OpenStack subset on loopback, for trying nodepool
//! without a cloud. A binary of its own crate so the production `nodepool` never carries a
//! server.
//!
//! Prints `nodepool-simulator listening on http://127.0.0.1:PORT` once it serves, then serves
//! until killed. Knobs can be changed while it runs with `POST /_sim/knobs`.

use std::convert::Infallible;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nodepool_simulator::{Knobs, Simulator};

/// Serve a simulated OpenStack cloud (Keystone, Nova, Glance, Neutron) on 127.0.0.1.
///
/// Keystone is at /identity (v3 and v2.0); its catalog points at /compute/v2.1, /image and
/// /network. GET /_sim/calls, GET /_sim/state and POST /_sim/knobs need no token.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// User name Keystone accepts.
    #[arg(long, default_value = "demo")]
    username: String,
    /// Password Keystone accepts.
    #[arg(long, default_value = "secret")]
    password: String,
    /// Project (tenant) name Keystone accepts.
    #[arg(long, default_value = "demo")]
    project: String,
    /// Seconds a new server stays in BUILD (and a new snapshot queued).
    #[arg(long, default_value = "0", value_name = "SECONDS", value_parser = seconds)]
    boot_delay: Duration,
    /// Share of new servers that end in ERROR (0 to 1).
    #[arg(long, default_value_t = 0.0, value_name = "RATIO")]
    error_ratio: f64,
    /// Share of new servers that stay in BUILD forever (0 to 1).
    #[arg(long, default_value_t = 0.0, value_name = "RATIO")]
    stuck_ratio: f64,
    /// Share of requests (identity excluded) answered 500 (0 to 1).
    #[arg(long, default_value_t = 0.0, value_name = "RATIO")]
    server_error_ratio: f64,
    /// Answer 429 with Retry-After past this many requests in one second.
    #[arg(long, value_name = "N")]
    rate_limit: Option<u32>,
    /// Most servers that may exist at once (403 on create past it).
    #[arg(long, value_name = "N")]
    instance_quota: Option<u32>,
    /// Seconds to wait before answering each request.
    #[arg(long, default_value = "0", value_name = "SECONDS", value_parser = seconds)]
    latency: Duration,
    /// Extra seconds before answering one route, as `ROUTE=SECONDS` with the route named as in
    /// `GET /_sim/calls` (`--route-latency 'POST /compute/servers=0.5'`); repeatable.
    #[arg(long, value_name = "ROUTE=SECONDS", value_parser = route_seconds)]
    route_latency: Vec<(String, Duration)>,
    /// Seconds a deleted server stays listed, in status DELETED.
    #[arg(long, default_value = "0", value_name = "SECONDS", value_parser = seconds)]
    delete_delay: Duration,
    /// Deleted servers go to ERROR and stay.
    #[arg(long)]
    delete_fails: bool,
    /// Seed of the randomness (ids, which servers fail).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Address given to every server.
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    server_ip: String,
    /// Most items in one page of a list.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    page_size: usize,
    /// Name of an active base image present at start; repeat for more [default: "Ubuntu
    /// 22.04", "CentOS 7"].
    #[arg(long = "image", value_name = "NAME")]
    images: Vec<String>,
}

/// A duration given as (fractional) seconds.
fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(value).map_err(|e| e.to_string())
}

/// `ROUTE=SECONDS`.
fn route_seconds(text: &str) -> Result<(String, Duration), String> {
    let (route, secs) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("expected ROUTE=SECONDS, got {text:?}"))?;
    Ok((route.trim().to_string(), seconds(secs.trim())?))
}

impl Args {
    fn knobs(self) -> Knobs {
        let defaults = Knobs::default();
        Knobs {
            username: self.username,
            password: self.password,
            project: self.project,
            boot_delay: self.boot_delay,
            error_ratio: self.error_ratio,
            stuck_ratio: self.stuck_ratio,
            broken_images: Vec::new(),
            server_error_ratio: self.server_error_ratio,
            // Only meaningful while running: set through POST /_sim/knobs.
            fail_next: 0,
            identity_fail_next: 0,
            rate_limit_per_second: self.rate_limit,
            instance_quota: self.instance_quota,
            latency: self.latency,
            route_latency: self.route_latency.into_iter().collect(),
            token_lifetime: defaults.token_lifetime,
            delete_delay: self.delete_delay,
            delete_fails: self.delete_fails,
            corrupt_checksums: false,
            seed: self.seed,
            server_ip: self.server_ip,
            authorized_keys: None,
            page_size: self.page_size,
            images: if self.images.is_empty() {
                defaults.images
            } else {
                self.images
            },
            flavors: defaults.flavors,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    match serve(args) {
        Ok(never) => match never {},
        Err(error) => {
            eprintln!("nodepool-simulator: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Warnings (a request that could not be accepted or answered) to stderr, as nodepool logs;
/// `RUST_LOG=debug` shows every request.
fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("warn");
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp(None)
        .format_target(false)
        .try_init();
}

/// Start, say where, then serve until killed; the accept thread does the work.
fn serve(args: Args) -> anyhow::Result<Infallible> {
    let simulator = Simulator::start_on(args.port, args.knobs())?;
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "nodepool-simulator listening on {}",
        simulator.url()
    )?;
    stdout.flush()?;
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Args::command().debug_assert();
    }
}
