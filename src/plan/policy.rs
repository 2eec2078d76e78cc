//! Every timing rule of the planner in one place, each with its reason. The store keeps facts
//! (three failures, the last at T); what they mean for now is decided here.

use crate::model::pass::Cooldown;

/// Nodes building or used this long are deleted: 2015's cleanup rule, since no job or launch
/// takes that long and a stuck one would hold its quota forever.
pub const STALE_AFTER_S: i64 = 8 * 3600;

/// A server still listed this long after its delete call gets another one: clouds lose
/// deletes (a 204 and the server stays), and asking every round would hammer a slow one.
pub const DELETE_RETRY_S: i64 = 60;

/// A leaked server is deleted only once first seen this long ago: a slow listing, or a row
/// being written by another process, must never cost a healthy node.
pub const LEAK_GRACE_S: i64 = 300;

/// Provider images beyond the current and the previous one are deleted once this old (2015's
/// rule): a day's builds stay for an operator who wants to look at one.
pub const IMAGE_RETENTION_S: i64 = 8 * 3600;

/// A create whose answer was lost (no answer, a 5xx, an unreadable success) may still make a
/// server: Nova can finish a request after the client gave up on it (60 s by default), and
/// the server is listed as soon as it exists. A row waits this long for its server before it
/// is given up, so a slow Nova never gets a second create for the same node.
pub const CREATE_ANSWER_GRACE_S: i64 = 120;

/// A quota refusal blocks the provider's launches this long: quota frees as servers go, not
/// at once, and retrying every round would only collect refusals.
pub const QUOTA_WAIT_S: i64 = 60;

/// Failures in a row before a cooldown starts: one failure is bad luck and is just retried.
const FAILURES_BEFORE_COOLDOWN: u32 = 2;
/// The first cooldown, doubled for each failure after it, up to the longest.
const COOLDOWN_FIRST_S: i64 = 10;
/// The longest cooldown: a broken provider/label is still retried every ten minutes, so it
/// recovers on its own once the cloud does.
const COOLDOWN_MAX_S: i64 = 600;

/// How long a provider/label waits after `failures` failures in a row: 0 for the first,
/// then 10 s doubling to 10 min.
pub fn cooldown_seconds(failures: u32) -> i64 {
    if failures < FAILURES_BEFORE_COOLDOWN {
        return 0;
    }
    let doublings = (failures - FAILURES_BEFORE_COOLDOWN).min(16);
    (COOLDOWN_FIRST_S << doublings).min(COOLDOWN_MAX_S)
}

/// When a stored cooldown ends: a quota wait after the refusal, or the failure schedule
/// after the last failure.
pub fn cooldown_end(cooldown: &Cooldown) -> i64 {
    let wait = match cooldown.label {
        None => QUOTA_WAIT_S,
        Some(_) => cooldown_seconds(cooldown.failures),
    };
    cooldown.last_time + wait
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldowns_start_at_the_second_failure_and_double_to_ten_minutes() {
        let schedule: Vec<i64> = (0..10).map(cooldown_seconds).collect();
        assert_eq!(schedule, [0, 0, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(cooldown_seconds(u32::MAX), 600);
    }

    #[test]
    fn a_quota_refusal_waits_a_minute_and_failures_follow_the_schedule() {
        let mut cooldown = Cooldown {
            provider: "p1".into(),
            label: None,
            failures: 0,
            last_time: 1000,
            last_error: None,
        };
        assert_eq!(cooldown_end(&cooldown), 1000 + QUOTA_WAIT_S);
        cooldown.label = Some("small".into());
        cooldown.failures = 3;
        assert_eq!(cooldown_end(&cooldown), 1020);
    }
}
