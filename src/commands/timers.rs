//! `nodepool timers [--output DIR]`: the `cron:` section of the configuration (2015's
//! internal schedules) as systemd timer units, so an upgrade keeps its schedule. Each timer
//! starts the service of the same name that `systemd/` ships; a schedule systemd cannot say
//! is an error naming its key, and nothing is written.

use anyhow::{bail, Result};

use super::Context;
use crate::cli::TimersArgs;
use crate::output;
use crate::schedule;

/// Per `cron:` key: the unit, what it runs, and whether a run missed while the machine was
/// off is made up at boot (a daily image update is; a check 15 minutes late is not worth it).
const TIMERS: [(&str, &str, bool); 3] = [
    ("cleanup", "nodepool-cleanup", true),
    ("check", "nodepool-check", false),
    ("image-update", "nodepool-image-update", true),
];

pub fn run(ctx: &Context, args: &TimersArgs) -> Result<()> {
    let cron = &ctx.config.cron;
    let mut units = Vec::new();
    let mut problems = Vec::new();
    for (key, unit, persistent) in TIMERS {
        let expression = match key {
            "cleanup" => &cron.cleanup,
            "check" => &cron.check,
            _ => &cron.image_update,
        };
        match schedule::on_calendar(expression) {
            Ok(event) => units.push((unit, timer(ctx, key, expression, &event, unit, persistent))),
            Err(why) => problems.push(format!("cron.{key} `{expression}`: {why}")),
        }
    }
    if !problems.is_empty() {
        bail!(
            "{}: {}; no timer was written",
            ctx.config.path.display(),
            problems.join("; ")
        );
    }
    match &args.output {
        None => {
            for (unit, text) in &units {
                output::line(&format!("# {unit}.timer\n{text}"))?;
            }
            Ok(())
        }
        Some(dir) => {
            for (unit, text) in &units {
                output::write_atomically(&dir.join(format!("{unit}.timer")), text)?;
            }
            output::line(&format!(
                "timers: wrote {} in {}; then `systemctl daemon-reload` and `systemctl enable \
                 --now {}`",
                units
                    .iter()
                    .map(|(u, _)| format!("{u}.timer"))
                    .collect::<Vec<_>>()
                    .join(", "),
                dir.display(),
                units
                    .iter()
                    .map(|(u, _)| format!("{u}.timer"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ))
        }
    }
}

fn timer(
    ctx: &Context,
    key: &str,
    cron: &str,
    event: &str,
    unit: &str,
    persistent: bool,
) -> String {
    format!(
        "# Written by `nodepool timers` from cron.{key} '{cron}' in {config}.\n\
         [Unit]\n\
         Description=nodepool {key} ({cron})\n\
         \n\
         [Timer]\n\
         OnCalendar={event}\n\
         {persistent}\
         Unit={unit}.service\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        config = ctx.config.path.display(),
        persistent = if persistent { "Persistent=true\n" } else { "" },
    )
}
