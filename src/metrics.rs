//! Metrics after a run: statsd packets when `STATSD_HOST` is set (2015's keys), and a
//! Prometheus text file, written atomically, when the configuration names one
//! (`prometheus-textfile`, for node_exporter's textfile collector). Both are best effort: a
//! metric that cannot be sent is a warning, never the run's failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::UdpSocket;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::Connection;

use crate::config::Config;
use crate::model::node::Node;
use crate::state::{nodes, pass};

/// What a finished run reports.
pub struct RunReport<'a> {
    pub command: &'a str,
    pub exit_status: i32,
    pub took: Duration,
    /// Counters of what the run did (`launch.ready` …), for statsd.
    pub counters: &'a [(&'static str, u64)],
    /// More statsd lines the command made (image builds and uploads).
    pub extra: &'a [String],
}

/// Send and write the run's metrics.
pub fn report(config: &Config, conn: &Connection, run: &RunReport<'_>) {
    let nodes = match nodes::list(conn) {
        Ok(nodes) => nodes,
        Err(error) => {
            log::warn!("metrics: {error:#}");
            return;
        }
    };
    if let Some(target) = statsd_target() {
        let lines = statsd_lines(config, &nodes, run);
        if let Err(error) = send(&target, &lines) {
            log::warn!("metrics: statsd {target}: {error:#}");
        }
    }
    if let Some(path) = &config.prometheus_textfile {
        let blockers = pass::allocations(conn).unwrap_or_default();
        let last_runs = crate::state::journal::last_of_each(conn).unwrap_or_default();
        let text = prometheus_text(&nodes, &last_runs, &blockers);
        if let Err(error) = crate::output::write_atomically(path, &text) {
            log::warn!("metrics: {}: {error:#}", path.display());
        }
    }
}

/// `STATSD_HOST[:STATSD_PORT]` (default port 8125), as 2015 read them.
fn statsd_target() -> Option<String> {
    let host = std::env::var("STATSD_HOST")
        .ok()
        .filter(|h| !h.is_empty())?;
    let port = std::env::var("STATSD_PORT").unwrap_or_else(|_| "8125".into());
    Some(format!("{host}:{port}"))
}

/// A statsd key part: dots and spaces would make new levels.
fn part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '.' || c == ':' || c == '|' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The 2015 gauges (`nodepool.target.<target>.<label>.<provider>.<state>`, their sums per
/// state, min-ready and max-servers), the run's counters and its duration.
pub fn statsd_lines(config: &Config, nodes: &[Node], run: &RunReport<'_>) -> Vec<String> {
    let mut gauges: BTreeMap<String, u64> = BTreeMap::new();
    for node in nodes {
        let key = format!(
            "nodepool.target.{}.{}.{}.{}",
            part(node.target.as_str()),
            part(node.label.as_str()),
            part(node.provider.as_str()),
            node.state
        );
        *gauges.entry(key).or_default() += 1;
        *gauges
            .entry(format!("nodepool.target.{}", node.state))
            .or_default() += 1;
    }
    // Every state of every configured target, label and provider, so a gauge drops back to
    // 0 when its last node goes (statsd keeps a gauge's last value).
    const STATES: [&str; 6] = ["building", "ready", "used", "hold", "delete", "test"];
    for state in STATES {
        gauges
            .entry(format!("nodepool.target.{state}"))
            .or_default();
        for target in config.targets.values() {
            for label in config.labels.values() {
                for provider in &label.providers {
                    let key = format!(
                        "nodepool.target.{}.{}.{}.{state}",
                        part(target.name.as_str()),
                        part(label.name.as_str()),
                        part(provider.as_str())
                    );
                    gauges.entry(key).or_default();
                }
            }
        }
    }
    for label in config.labels.values() {
        if let Some(min_ready) = label.min_ready {
            gauges.insert(
                format!("nodepool.label.{}.min_ready", part(label.name.as_str())),
                u64::from(min_ready),
            );
        }
    }
    for provider in config.providers.values() {
        gauges.insert(
            format!(
                "nodepool.provider.{}.max_servers",
                part(provider.name.as_str())
            ),
            u64::from(provider.max_servers),
        );
    }
    let mut lines: Vec<String> = gauges
        .into_iter()
        .map(|(key, value)| format!("{key}:{value}|g"))
        .collect();
    for (key, value) in run.counters {
        lines.push(format!("nodepool.{key}:{value}|c"));
    }
    lines.extend(run.extra.iter().cloned());
    lines.push(format!(
        "nodepool.run.{}:{}|ms",
        part(run.command),
        run.took.as_millis()
    ));
    lines
}

/// Packets of at most 512 bytes (what every network passes), lines joined by newlines.
fn send(target: &str, lines: &[String]) -> Result<()> {
    let socket = UdpSocket::bind("0.0.0.0:0")
        .or_else(|_| UdpSocket::bind("[::]:0"))
        .context("opening a UDP socket")?;
    socket
        .connect(target)
        .with_context(|| format!("resolving {target}"))?;
    let mut packet = String::new();
    for line in lines {
        if line.len() > 512 {
            log::warn!("metrics: a statsd line longer than a packet is left out: {line}");
            continue;
        }
        if !packet.is_empty() && packet.len() + 1 + line.len() > 512 {
            socket.send(packet.as_bytes())?;
            packet.clear();
        }
        if !packet.is_empty() {
            packet.push('\n');
        }
        packet.push_str(line);
    }
    if !packet.is_empty() {
        socket.send(packet.as_bytes())?;
    }
    Ok(())
}

/// A Prometheus label value, escaped.
fn value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The text file: nodes per label, provider and state; the newest finished run of each
/// command (its API calls per provider and route, duration, exit status); what blocks each
/// label.
pub fn prometheus_text(
    nodes: &[Node],
    runs: &[crate::state::journal::Run],
    allocations: &[crate::model::pass::Allocation],
) -> String {
    let mut out = String::new();
    let mut counts: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for node in nodes {
        *counts
            .entry((
                node.label.to_string(),
                node.provider.to_string(),
                node.state.to_string(),
            ))
            .or_default() += 1;
    }
    out.push_str("# HELP nodepool_nodes Nodes by label, provider and state.\n");
    out.push_str("# TYPE nodepool_nodes gauge\n");
    for ((label, provider, state), n) in counts {
        let _ = writeln!(
            out,
            "nodepool_nodes{{label=\"{}\",provider=\"{}\",state=\"{}\"}} {n}",
            value(&label),
            value(&provider),
            value(&state)
        );
    }
    out.push_str(
        "# HELP nodepool_last_run_api_calls API calls of each command's last run, per provider and route.\n",
    );
    out.push_str("# TYPE nodepool_last_run_api_calls gauge\n");
    for run in runs {
        let calls: BTreeMap<String, u64> = run
            .api_calls
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        for (key, n) in calls {
            let (provider, route) = key.split_once(' ').unwrap_or(("", key.as_str()));
            let _ = writeln!(
                out,
                "nodepool_last_run_api_calls{{command=\"{}\",provider=\"{}\",route=\"{}\"}} {n}",
                value(&run.command),
                value(provider),
                value(route)
            );
        }
    }
    out.push_str("# HELP nodepool_last_run_seconds How long each command's last run took.\n");
    out.push_str("# TYPE nodepool_last_run_seconds gauge\n");
    for run in runs {
        let _ = writeln!(
            out,
            "nodepool_last_run_seconds{{command=\"{}\"}} {:.3}",
            value(&run.command),
            run.seconds.unwrap_or(0.0)
        );
    }
    out.push_str("# HELP nodepool_last_run_exit_status Each command's last exit status.\n");
    out.push_str("# TYPE nodepool_last_run_exit_status gauge\n");
    for run in runs {
        let _ = writeln!(
            out,
            "nodepool_last_run_exit_status{{command=\"{}\"}} {}",
            value(&run.command),
            run.exit_status.unwrap_or(-1)
        );
    }
    out.push_str(
        "# HELP nodepool_label_blocked 1 for what kept the last pass from launching a label on a provider.\n",
    );
    out.push_str("# TYPE nodepool_label_blocked gauge\n");
    for allocation in allocations {
        if let Some(blocker) = &allocation.blocker {
            let _ = writeln!(
                out,
                "nodepool_label_blocked{{label=\"{}\",provider=\"{}\",reason=\"{}\"}} 1",
                value(allocation.label.as_str()),
                value(allocation.provider.as_str()),
                blocker.code()
            );
        }
    }
    out
}
