//! Test-only crash points. `NODEPOOL_FAILPOINT=after-create` (or `after-create:3` for the
//! third time the point is reached) kills this process with SIGKILL at that point, so the
//! kill -9 tests can prove that the next run converges from any instant. Compiled only with
//! the `failpoints` feature, which the integration tests turn on: in a release build a point
//! is nothing at all and the variable means nothing.
//!
//! Points: after-intent, after-create, after-record, after-floating-ip-allocate (allocated
//! and recorded, not attached), after-floating-ip, after-keyscan,
//! mid-ssh (the set is bootstrapped, not yet marked ready), after-delete-call,
//! after-leak-delete. Image points (`IMAGE_POINTS`, reached by `image-update`): build-running
//! (the builder started and recorded), upload-after-create (the Glance image made, its id not
//! recorded), upload-streaming (half the file sent), snapshot-before-create (the template's
//! create about to go), snapshot-after-create (made, its id not recorded),
//! snapshot-after-login, snapshot-setup-started, snapshot-after-create-image (the snapshot
//! asked for, its id not recorded).

#[cfg(feature = "failpoints")]
use std::sync::atomic::{AtomicU32, Ordering};
#[cfg(feature = "failpoints")]
use std::sync::OnceLock;

pub const ENV: &str = "NODEPOOL_FAILPOINT";

/// Every point, for the tests that cover them all.
pub const POINTS: &[&str] = &[
    "after-intent",
    "after-create",
    "after-record",
    "after-floating-ip-allocate",
    "after-floating-ip",
    "after-keyscan",
    "mid-ssh",
    "after-delete-call",
    "after-leak-delete",
];

/// The points of the image work, for the tests of `image-update` killed there.
pub const IMAGE_POINTS: &[&str] = &[
    "build-running",
    "upload-after-create",
    "upload-streaming",
    "snapshot-before-create",
    "snapshot-after-create",
    "snapshot-after-login",
    "snapshot-setup-started",
    "snapshot-after-create-image",
];

/// Die here if the environment names this point (a no-op without the `failpoints` feature).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_point: &str) {}

#[cfg(feature = "failpoints")]
static ARMED: OnceLock<Option<(String, u32)>> = OnceLock::new();
#[cfg(feature = "failpoints")]
static HITS: AtomicU32 = AtomicU32::new(0);

#[cfg(feature = "failpoints")]
fn armed() -> &'static Option<(String, u32)> {
    ARMED.get_or_init(|| {
        let value = std::env::var(ENV).ok()?;
        let (name, nth) = match value.split_once(':') {
            Some((name, nth)) => (name.to_string(), nth.parse().unwrap_or(1)),
            None => (value, 1),
        };
        Some((name, nth.max(1)))
    })
}

/// Die here if the environment names this point.
#[cfg(feature = "failpoints")]
pub fn hit(point: &str) {
    let Some((name, nth)) = armed() else { return };
    if name != point || HITS.fetch_add(1, Ordering::SeqCst) + 1 != *nth {
        return;
    }
    eprintln!("nodepool: failpoint {point}: killing this process");
    // SIGKILL, as an operator's kill -9 or the OOM killer would: no destructors, no flush.
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status();
    std::process::abort();
}
