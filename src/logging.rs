//! Logs go to stderr (stdout is for tables and JSON): nodepool's at info by default, `--debug`
//! turns on debug lines,
//! `RUST_LOG` overrides both — except that the HTTP library never logs below debug: at trace
//! it dumps the raw bytes of every request, Keystone tokens and passwords included, while its
//! debug lines redact them.
//!
//! While progress bars are drawn on stderr ([`drawing`]), a log line is written with them
//! cleared and they are drawn again below it, so neither garbles the other.

use std::sync::Mutex;

use indicatif::MultiProgress;
use log::{Level, Log, Metadata, Record};

/// Crates whose trace output carries raw HTTP traffic.
const HTTP_CRATES: [&str; 2] = ["ureq", "ureq_proto"];

pub fn init(debug: bool) {
    // The HTTP stack's own debug lines (one per socket event) would drown ours.
    let default = if debug {
        "debug,ureq=warn,ureq_proto=warn,rustls=warn"
    } else {
        // Each launch, deletion and failure is one info line with its reason: journald holds
        // the story of every run. Other crates speak up only when something is wrong.
        "warn,nodepool=info"
    };
    let env = env_logger::Env::default().default_filter_or(default);
    let inner = env_logger::Builder::from_env(env)
        .format_timestamp(None)
        .format_target(false)
        .build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(Capped(inner))).is_ok() {
        log::set_max_level(max);
    }
}

/// The progress bars on stderr now, if any.
static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Log lines are written around `bars` until the guard is dropped.
pub fn drawing(bars: &MultiProgress) -> Drawing {
    *shown() = Some(bars.clone());
    Drawing(())
}

fn shown() -> std::sync::MutexGuard<'static, Option<MultiProgress>> {
    // A panic elsewhere while holding it left a valid Option.
    BARS.lock().unwrap_or_else(|e| e.into_inner())
}

/// While it lives, log lines clear the bars [`drawing`] was given.
#[must_use = "the bars are forgotten when this is dropped"]
pub struct Drawing(());

impl Drop for Drawing {
    fn drop(&mut self) {
        *shown() = None;
    }
}

/// Passes records on, but none of the HTTP crates' below debug.
struct Capped<L>(L);

fn allowed(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    let crate_name = target.split("::").next().unwrap_or(target);
    metadata.level() <= Level::Debug || !HTTP_CRATES.contains(&crate_name)
}

impl<L: Log> Log for Capped<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        allowed(metadata) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !allowed(record.metadata()) {
            return;
        }
        let bars = shown().clone();
        match bars {
            Some(bars) => bars.suspend(|| self.0.log(record)),
            None => self.0.log(record),
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl Log for Seen {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &Record<'_>) {
            let line = format!("{} {}", record.target(), record.args());
            self.0.lock().unwrap().push(line);
        }
        fn flush(&self) {}
    }

    #[test]
    fn http_crates_never_log_below_debug_whatever_the_filter() {
        let capped = Capped(Seen::default());
        let send = |target: &str, level: Level| {
            capped.log(
                &Record::builder()
                    .target(target)
                    .level(level)
                    .args(format_args!("x"))
                    .build(),
            );
        };
        send("ureq_proto::util", Level::Trace); // the raw bytes: dropped
        send("ureq::run", Level::Trace);
        send("ureq::run", Level::Debug);
        send("nodepool::execute", Level::Trace);
        send("ureqx", Level::Trace); // another crate that only starts alike
        let seen = capped.0 .0.lock().unwrap().clone();
        assert_eq!(seen, ["ureq::run x", "nodepool::execute x", "ureqx x"]);
    }

    #[test]
    fn while_bars_are_drawn_log_lines_still_pass_and_afterwards_the_bars_are_forgotten() {
        let bars = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
        let capped = Capped(Seen::default());
        let send = |text: &'static str| {
            capped.log(
                &Record::builder()
                    .target("nodepool")
                    .level(Level::Warn)
                    .args(format_args!("{text}"))
                    .build(),
            );
        };
        {
            let _drawing = drawing(&bars);
            assert!(shown().is_some());
            send("during");
        }
        assert!(shown().is_none());
        send("after");
        let seen = capped.0 .0.lock().unwrap().clone();
        assert_eq!(seen, ["nodepool during", "nodepool after"]);
    }
}
