//! `/_sim/` endpoints for people and scripts, no token needed and not counted as calls:
//! `GET calls`, `GET state` (the dump), `GET knobs`, and `POST knobs` with a JSON object of
//! the knob fields to change (durations in seconds).

use std::io::Read;
use std::time::Instant;

use serde_json::Value;

use super::http::{Reply, Service};
use super::{Core, Knobs};

const MAX_BODY: u64 = 1 << 20;

pub(crate) fn handle(core: &Core, method: &str, path: &str, body: &mut dyn Read) -> Reply {
    let error = |status, message: &str| Service::Identity.error(status, message);
    let answer = |value: Result<Value, serde_json::Error>| match value {
        Ok(value) => Reply::json(200, value),
        Err(e) => error(500, &e.to_string()),
    };
    match (method, path.trim_end_matches('/')) {
        ("GET", "calls") => answer(serde_json::to_value(core.state().calls.clone())),
        ("GET", "state") => {
            let now = Instant::now();
            let mut state = core.state();
            state.sweep(now);
            answer(serde_json::to_value(state.dump(now)))
        }
        ("GET", "knobs") => answer(serde_json::to_value(core.knobs())),
        ("POST", "knobs") => {
            let mut text = Vec::new();
            if let Err(e) = body.take(MAX_BODY).read_to_end(&mut text) {
                return error(400, &format!("reading the request body: {e}"));
            }
            let mut knobs = core.knobs.lock().unwrap_or_else(|e| e.into_inner());
            match merge(&knobs, &text) {
                Ok(merged) => {
                    *knobs = merged;
                    answer(serde_json::to_value(&*knobs))
                }
                Err(message) => error(400, &message),
            }
        }
        _ => error(404, &format!("no control endpoint {method} /_sim/{path}")),
    }
}

/// The knobs with the fields named in `change` (a JSON object) replaced.
fn merge(current: &Knobs, change: &[u8]) -> Result<Knobs, String> {
    let change: Value =
        serde_json::from_slice(change).map_err(|e| format!("malformed JSON: {e}"))?;
    let Value::Object(change) = change else {
        return Err("expected a JSON object of knob fields".into());
    };
    let mut merged = match serde_json::to_value(current) {
        Ok(Value::Object(merged)) => merged,
        _ => return Err("the current knobs do not serialize to an object".into()),
    };
    for (key, value) in change {
        if !merged.contains_key(&key) {
            return Err(format!("unknown knob {key:?}"));
        }
        merged.insert(key, value);
    }
    serde_json::from_value(Value::Object(merged)).map_err(|e| format!("invalid knobs: {e}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn merge_changes_only_the_named_knobs() {
        let knobs = Knobs::default();
        let merged = merge(&knobs, br#"{"boot_delay": 1.5, "instance_quota": 3}"#).unwrap();
        assert_eq!(merged.boot_delay, Duration::from_millis(1500));
        assert_eq!(merged.instance_quota, Some(3));
        assert_eq!(merged.username, knobs.username);
    }

    #[test]
    fn merge_refuses_unknown_knobs_and_bad_values() {
        let knobs = Knobs::default();
        assert!(merge(&knobs, br#"{"boot_dealy": 1}"#)
            .unwrap_err()
            .contains("boot_dealy"));
        assert!(merge(&knobs, br#"{"boot_delay": -1}"#).is_err());
        assert!(merge(&knobs, b"[1]").is_err());
    }
}
