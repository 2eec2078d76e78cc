//! The time is read once per command and passed down, so a plan is a function of its inputs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as stored in the database.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `2026-11-21T19:36:00Z` for a stored time.
pub fn rfc3339(seconds: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Hours since `state_time`, as the 2015 listings showed them (two decimals).
pub fn age_hours(now: i64, since: i64) -> f64 {
    let hours = (now - since).max(0) as f64 / 3600.0;
    (hours * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(age_hours(7200 + 36, 0), 2.01);
        assert_eq!(age_hours(0, 50), 0.0);
    }
}
