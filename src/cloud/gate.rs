//! The gate every call to one provider passes: `rate` spaces the *starts* of mutating calls
//! (creates, deletes, floating-IP calls, uploads), `max-concurrency` bounds how many of them
//! are in flight at once, and a rate limit the cloud answered (429, or 413 with
//! `Retry-After`) pauses every call to the provider, reads included, until it has passed.
//! One gate per provider, shared by all the threads of a run.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct Gate {
    rate: Duration,
    max_in_flight: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    in_flight: usize,
    /// The earliest start of the next mutating call.
    next_start: Option<Instant>,
    /// No call starts before this (the cloud asked to wait).
    paused_until: Option<Instant>,
}

/// A call's turn; a mutating call's permit frees its slot when dropped.
pub struct Permit<'a> {
    gate: &'a Gate,
    mutating: bool,
    /// When the turn was given: starts of mutating calls are `rate` apart by this clock.
    at: Instant,
}

impl Permit<'_> {
    pub fn at(&self) -> Instant {
        self.at
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.mutating {
            let mut state = self.gate.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
            self.gate.changed.notify_all();
        }
    }
}

impl Gate {
    /// `max_in_flight` of `None`: no bound but the callers' own number.
    pub fn new(rate: Duration, max_in_flight: Option<usize>) -> Gate {
        Gate {
            rate,
            max_in_flight: max_in_flight.unwrap_or(usize::MAX).max(1),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for this call's turn: until no pause holds and, for a mutating call, until fewer
    /// than `max-concurrency` are in flight and `rate` has passed since the last one started.
    /// `None` when the turn would come after `until` (the run's or the listing's end).
    pub fn enter(&self, mutating: bool, until: Option<Instant>) -> Option<Permit<'_>> {
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            let mut turn = state.paused_until.filter(|&at| at > now);
            if mutating {
                turn = turn.max(state.next_start.filter(|&at| at > now));
            }
            let slot = !mutating || state.in_flight < self.max_in_flight;
            if turn.is_none() && slot {
                if mutating {
                    state.in_flight += 1;
                    state.next_start = Some(now + self.rate);
                }
                return Some(Permit {
                    gate: self,
                    mutating,
                    at: now,
                });
            }
            if until.is_some_and(|end| turn.unwrap_or(now) >= end) {
                return None;
            }
            // Woken by a freed slot or a new pause, or when the turn comes (or the end).
            let wake = [turn, until].into_iter().flatten().min();
            let wait = wake.map_or(Duration::from_secs(1), |at| {
                at.saturating_duration_since(now)
            });
            state = self
                .changed
                .wait_timeout(state, wait.max(Duration::from_millis(1)))
                .map(|(state, _)| state)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// The cloud asked to wait `wait`: no call to it starts before then.
    pub fn pause(&self, wait: Duration) {
        let at = Instant::now() + wait;
        let mut state = self.lock();
        state.paused_until = state.paused_until.max(Some(at));
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::Gate;

    /// `callers` threads each make one mutating call of `hold` through `gate`; returns the
    /// start instants and the most calls in flight at once.
    fn calls(gate: &Gate, callers: usize, hold: Duration) -> (Vec<Instant>, usize) {
        let (in_flight, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let starts = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..callers {
                scope.spawn(|| {
                    let permit = gate.enter(true, None).expect("no end given");
                    starts.lock().unwrap().push(permit.at());
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(hold);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        let mut starts = starts.into_inner().unwrap();
        starts.sort();
        (starts, peak.into_inner())
    }

    #[test]
    fn calls_overlap_up_to_max_concurrency_and_never_beyond() {
        let gate = Gate::new(Duration::ZERO, Some(3));
        let (_, peak) = calls(&gate, 12, Duration::from_millis(50));
        assert_eq!(peak, 3);
        let unbounded = Gate::new(Duration::ZERO, None);
        let (_, peak) = calls(&unbounded, 8, Duration::from_millis(200));
        assert!(peak > 3, "without a bound they overlap: {peak}");
    }

    #[test]
    fn starts_are_at_least_rate_apart_even_when_calls_overlap() {
        let rate = Duration::from_millis(40);
        let gate = Gate::new(rate, None);
        let (starts, peak) = calls(&gate, 6, Duration::from_millis(300));
        for pair in starts.windows(2) {
            assert!(pair[1] - pair[0] >= rate, "{:?}", pair[1] - pair[0]);
        }
        assert!(peak > 1, "a slow call does not hold up the next start");
    }

    #[test]
    fn a_pause_holds_every_caller_reads_included() {
        let gate = Gate::new(Duration::ZERO, None);
        let started = Instant::now();
        gate.pause(Duration::from_millis(300));
        std::thread::scope(|scope| {
            let read = scope.spawn(|| gate.enter(false, None).map(|_| started.elapsed()));
            let write = scope.spawn(|| gate.enter(true, None).map(|_| started.elapsed()));
            for waited in [read.join().unwrap(), write.join().unwrap()] {
                assert!(waited.unwrap() >= Duration::from_millis(300));
            }
        });
    }

    #[test]
    fn a_turn_after_the_end_is_refused_at_once() {
        let gate = Gate::new(Duration::ZERO, None);
        gate.pause(Duration::from_secs(30));
        let started = Instant::now();
        let end = Some(Instant::now() + Duration::from_millis(100));
        assert!(gate.enter(false, end).is_none());
        assert!(started.elapsed() < Duration::from_secs(5));
        // A full gate waits for a slot until the end, then gives up.
        let full = Gate::new(Duration::ZERO, Some(1));
        let _held = full.enter(true, None).unwrap();
        let started = Instant::now();
        assert!(full
            .enter(true, Some(Instant::now() + Duration::from_millis(100)))
            .is_none());
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}
