//! 2015's `cron:` schedules as systemd calendar events (`OnCalendar=`), for `nodepool timers`.
//! Pure: a cron expression in, the event or why it cannot be one out.
//!
//! Five fields (minute hour day-of-month month day-of-week) with `*`, lists, ranges, steps and
//! the names of months and days, as Vixie cron reads them; `@hourly`, `@daily`, `@weekly`,
//! `@monthly`, `@yearly` and `@annually` too. What systemd cannot say is refused with the
//! reason: cron runs a job when the day of the month *or* the day of the week matches if both
//! are restricted, systemd only when both do; and `@reboot` is a boot-time unit, not a
//! calendar.

use std::fmt::Write as _;

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
/// Cron's day numbers: 0 and 7 are Sunday.
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const SYSTEMD_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// One of the five fields: its name (for errors), its range and its names.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The first name stands for this number (months: 1, days: 0).
    names_from: u32,
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    names_from: 0,
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    names_from: 0,
};
const DAY_OF_MONTH: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
    names_from: 0,
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
    names_from: 1,
};
const DAY_OF_WEEK: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &DAYS,
    names_from: 0,
};

/// A field as systemd writes it: `*`, or values, ranges (`a..b`) and repetitions (`a/s`).
#[derive(Debug, PartialEq)]
enum Spec {
    Any,
    Items(Vec<String>),
}

/// The systemd calendar event of the cron expression `cron`.
pub fn on_calendar(cron: &str) -> Result<String, String> {
    let cron = cron.trim();
    if let Some(name) = cron.strip_prefix('@') {
        // Spelled out: systemd's `weekly` is Monday, cron's `@weekly` Sunday.
        return match name {
            "hourly" => Ok("*-*-* *:00:00".into()),
            "daily" | "midnight" => Ok("*-*-* 00:00:00".into()),
            "weekly" => Ok("Sun *-*-* 00:00:00".into()),
            "monthly" => Ok("*-*-01 00:00:00".into()),
            "yearly" | "annually" => Ok("*-01-01 00:00:00".into()),
            "reboot" => Err(
                "`@reboot` runs at boot, which is not a calendar event: use a \
                             service started at boot (or OnBootSec=) instead"
                    .into(),
            ),
            _ => Err(format!("`@{name}` is not a cron schedule")),
        };
    }
    let fields: Vec<&str> = cron.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = fields[..] else {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
            fields.len()
        ));
    };
    let minute = spec(minute, &MINUTE, true)?;
    let hour = spec(hour, &HOUR, true)?;
    let dom_text = dom;
    let dom = spec(dom, &DAY_OF_MONTH, false)?;
    let month = spec(month, &MONTH, false)?;
    // As Vixie cron: a day field is unrestricted only when it starts with `*`; when both are
    // restricted a day matching either runs the job.
    let dow_restricted = !dow.starts_with('*');
    let dom_restricted = !dom_text.starts_with('*');
    let mut dow = weekdays(dow)?;
    let mut dom = dom;
    if dom_restricted && dow_restricted && dow.is_none() {
        // Every day of the week, ORed with some days of the month: every day.
        dom = Spec::Any;
    }
    if !dow_restricted {
        dow = None;
    }
    if dom != Spec::Any && dow.is_some() {
        return Err(
            "both day of month and day of week are restricted: cron runs when either matches, \
             a systemd calendar only when both do; split it into two timers"
                .into(),
        );
    }
    let mut event = String::new();
    if let Some(days) = dow {
        let _ = write!(event, "{days} ");
    }
    let _ = write!(
        event,
        "*-{}-{} {}:{}:00",
        text(&month),
        text(&dom),
        text(&hour),
        text(&minute)
    );
    Ok(event)
}

fn text(spec: &Spec) -> String {
    match spec {
        Spec::Any => "*".into(),
        Spec::Items(items) => items.join(","),
    }
}

/// A number or a name of `field`.
fn value(item: &str, field: &Field) -> Result<u32, String> {
    let lower = item.to_ascii_lowercase();
    let found = match field.names.iter().position(|n| *n == lower) {
        Some(i) => i as u32 + field.names_from,
        None => item
            .parse::<u32>()
            .map_err(|_| format!("`{item}` is not a {} value", field.name))?,
    };
    if found < field.min || found > field.max {
        return Err(format!(
            "{} `{item}` is out of range {}-{}",
            field.name, field.min, field.max
        ));
    }
    Ok(found)
}

/// The numbers an item covers (`a`, `a-b`, `*`, each with an optional `/step`).
fn expand(item: &str, field: &Field) -> Result<(Vec<u32>, bool), String> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => {
            let step: u32 =
                step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!("`{item}`: the step of {} must be 1 or more", field.name)
                })?;
            (range, Some(step))
        }
        None => (item, None),
    };
    let (low, high, whole) = match range {
        "*" => (field.min, field.max, step.is_none()),
        _ => match range.split_once('-') {
            Some((a, b)) => (value(a, field)?, value(b, field)?, false),
            // `a/s` is `a-MAX/s`.
            None if step.is_some() => (value(range, field)?, field.max, false),
            None => {
                let v = value(range, field)?;
                (v, v, false)
            }
        },
    };
    if low > high {
        return Err(format!(
            "`{item}`: the range of {} runs backwards",
            field.name
        ));
    }
    Ok((
        (low..=high).step_by(step.unwrap_or(1) as usize).collect(),
        whole,
    ))
}

/// A field other than the day of week as systemd writes it. `pad`: two digits (times).
fn spec(text: &str, field: &Field, pad: bool) -> Result<Spec, String> {
    let show = |v: u32| {
        if pad {
            format!("{v:02}")
        } else {
            v.to_string()
        }
    };
    let mut items = Vec::new();
    for item in text.split(',') {
        let (values, whole) = expand(item, field)?;
        if whole {
            if text.contains(',') {
                return Err(format!("`*` in a list of {}: `{text}`", field.name));
            }
            return Ok(Spec::Any);
        }
        // A step over the whole range is systemd's repetition (one that leaves the range at
        // once is just its first value); anything else is listed.
        match item.split_once('/') {
            Some(("*", _)) if values.len() == 1 => items.push(show(values[0])),
            Some(("*", step)) => items.push(format!("{}/{step}", show(field.min))),
            _ if values.len() > 1 && !item.contains('/') => {
                items.push(format!(
                    "{}..{}",
                    show(values[0]),
                    show(values[values.len() - 1])
                ));
            }
            _ => items.extend(values.into_iter().map(show)),
        }
    }
    Ok(Spec::Items(items))
}

/// The day-of-week field as systemd writes it, or `None` for every day.
fn weekdays(text: &str) -> Result<Option<String>, String> {
    let mut days = [false; 7];
    for item in text.split(',') {
        let (values, whole) = expand(item, &DAY_OF_WEEK)?;
        if whole {
            return Ok(None);
        }
        for v in values {
            days[(v % 7) as usize] = true;
        }
    }
    if days.iter().all(|d| *d) {
        return Ok(None);
    }
    // Monday first, as systemd's week is.
    let names: Vec<&str> = (1..=7)
        .map(|i| i % 7)
        .filter(|i| days[*i])
        .map(|i| SYSTEMD_DAYS[i])
        .collect();
    Ok(Some(names.join(",")))
}

#[cfg(test)]
mod tests {
    use super::on_calendar;

    #[test]
    fn the_2015_defaults_and_the_common_forms() {
        let cases = [
            ("14 2 * * *", "*-*-* 02:14:00"),
            ("*/15 * * * *", "*-*-* *:00/15:00"),
            ("*/1 * * * *", "*-*-* *:00/1:00"),
            ("27 */6 * * *", "*-*-* 00/6:27:00"),
            ("0 0 1 * *", "*-*-1 00:00:00"),
            (
                "0,30 8-18 * * 1-5",
                "Mon,Tue,Wed,Thu,Fri *-*-* 08..18:00,30:00",
            ),
            ("5 4 * * sun", "Sun *-*-* 04:05:00"),
            ("0 12 * jan,jul *", "*-1,7-* 12:00:00"),
            ("0 0 * * 0,7", "Sun *-*-* 00:00:00"),
            ("10-40/10 * * * *", "*-*-* *:10,20,30,40:00"),
            ("0 22 * * Mon-Fri", "Mon,Tue,Wed,Thu,Fri *-*-* 22:00:00"),
            ("0 3 */2 * *", "*-*-1/2 03:00:00"),
            ("@daily", "*-*-* 00:00:00"),
            ("@hourly", "*-*-* *:00:00"),
            ("@weekly", "Sun *-*-* 00:00:00"),
            // A step past the field's span is its first value, as in cron.
            ("*/60 */24 * * *", "*-*-* 00:00:00"),
            ("0 0 */31 */12 *", "*-1-1 00:00:00"),
            // Every day of the week, ORed with the 1st: every day.
            ("0 0 1 * 0-6", "*-*-* 00:00:00"),
            ("0 0 * * 0-7", "*-*-* 00:00:00"),
        ];
        for (cron, event) in cases {
            assert_eq!(on_calendar(cron).as_deref(), Ok(event), "{cron}");
        }
    }

    #[test]
    fn what_systemd_cannot_say_is_refused_with_the_reason() {
        let cases = [
            ("0 0 1 * mon", "either matches"),
            ("@reboot", "boot"),
            ("61 * * * *", "out of range 0-59"),
            ("* * * *", "expected 5 fields"),
            ("*/0 * * * *", "1 or more"),
            ("30-10 * * * *", "backwards"),
            ("0 0 * foo *", "`foo` is not a month value"),
            ("*,5 * * * *", "`*` in a list"),
        ];
        for (cron, why) in cases {
            let error = on_calendar(cron).unwrap_err();
            assert!(error.contains(why), "{cron}: {error}");
        }
    }
}
