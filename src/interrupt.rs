//! SIGTERM and SIGINT. A run that gets one stops starting work, lets the calls in flight
//! finish (each is bounded), records and prints its summary saying it was interrupted,
//! finishes its journal row, and then dies of the same signal, so systemd counts a clean stop
//! and a shell sees 128+N, as with any well-behaved Unix command. A second signal ends the
//! process at once, for a person who will not wait.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

struct Flags {
    /// The signal received (0: none).
    received: Arc<AtomicUsize>,
    /// Set by the first signal: the next one takes the default action.
    caught_one: Arc<AtomicBool>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// Catch SIGTERM and SIGINT from now on: called by the commands that check `requested`
/// (reconcile and cleanup rounds); the others keep the default action, so Ctrl-C ends them.
pub fn install() {
    let flags = FLAGS.get_or_init(|| Flags {
        received: Arc::new(AtomicUsize::new(0)),
        caught_one: Arc::new(AtomicBool::new(false)),
    });
    for signal in [SIGTERM, SIGINT] {
        // In this order: the default action only if one was caught before, then note this one.
        let registered =
            signal_hook::flag::register_conditional_default(signal, Arc::clone(&flags.caught_one))
                .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&flags.caught_one)))
                .and_then(|_| {
                    signal_hook::flag::register_usize(
                        signal,
                        Arc::clone(&flags.received),
                        signal as usize,
                    )
                });
        if let Err(error) = registered {
            log::warn!("cannot catch {}: {error}", name(signal));
        }
    }
}

/// The signal that asked the run to stop, if one did.
pub fn received() -> Option<i32> {
    let signal = FLAGS.get()?.received.load(Ordering::SeqCst);
    (signal != 0).then_some(signal as i32)
}

/// Whether a stop was asked for: no new work may start.
pub fn requested() -> bool {
    received().is_some()
}

/// The signal's name for messages.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "a signal",
    }
}

/// After the summary: end the process by the signal that stopped it, with its default action.
pub fn die_of_it() {
    if let Some(signal) = received() {
        let _ = signal_hook::low_level::emulate_default_handler(signal);
    }
}
