//! The systemd units of `systemd/` and the timers `nodepool timers` writes, checked by systemd
//! itself: `systemd-analyze verify` on every unit, `systemd-analyze calendar` on every
//! schedule (tests/run.sh installs systemd's tools when they are missing).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{status, stderr, stdout, Install, BIN};

/// The repository's `systemd/`.
fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

/// The shipped units, copied into `dir` with `ExecStart=` pointing at the binary under test
/// (verify checks that the program exists).
fn copy_units(dir: &Path) -> Vec<PathBuf> {
    let mut copied = Vec::new();
    for entry in fs::read_dir(shipped()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !(name.ends_with(".service") || name.ends_with(".timer")) {
            continue;
        }
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("/usr/local/bin/nodepool", BIN);
        let to = dir.join(&name);
        fs::write(&to, text).unwrap();
        copied.push(to);
    }
    copied.sort();
    copied
}

/// `systemd-analyze verify` of `units`; the man pages named by Documentation= are checked by
/// the man page tests, not here.
fn verify(units: &[PathBuf]) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units)
        .output()
        .expect("systemd-analyze (tests/run.sh installs systemd)");
    assert!(
        out.status.success() && stderr(&out).trim().is_empty(),
        "systemd-analyze verify {units:?}:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// systemd's normalized form of a calendar event, or why it refuses it.
fn calendar(event: &str) -> Result<String, String> {
    let out = Command::new("systemd-analyze")
        .args(["calendar", event])
        .output()
        .expect("systemd-analyze");
    let text = stdout(&out);
    match text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Normalized form: "))
    {
        Some(form) if out.status.success() => Ok(form.to_string()),
        _ => Err(format!("{text}{}", stderr(&out))),
    }
}

#[test]
fn every_shipped_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let units = copy_units(dir.path());
    let names: Vec<String> = units
        .iter()
        .map(|u| u.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    for timer in names.iter().filter(|n| n.ends_with(".timer")) {
        let text = fs::read_to_string(dir.path().join(timer)).unwrap();
        let service = text
            .lines()
            .find_map(|l| l.strip_prefix("Unit="))
            .unwrap_or_else(|| panic!("{timer} names its service"));
        assert!(
            names.iter().any(|n| n == service),
            "{timer} starts {service}, which is not shipped"
        );
        let event = text
            .lines()
            .find_map(|l| l.strip_prefix("OnCalendar="))
            .unwrap();
        calendar(event).unwrap_or_else(|e| panic!("{timer}: {event}: {e}"));
    }
    for service in names.iter().filter(|n| n.ends_with(".service")) {
        let text = fs::read_to_string(dir.path().join(service)).unwrap();
        assert!(
            text.contains("SuccessExitStatus=75"),
            "{service}: another run's lock is no failure"
        );
    }
    verify(&units);
}

#[test]
fn timers_turns_the_2015_cron_section_into_timers_systemd_accepts() {
    let install = Install::with_config(
        "cron:\n  cleanup: '*/1 * * * *'\n  check: '*/15 * * * *'\n  image-update: '14 2 * * *'\n",
    );
    let printed = install.run(&["timers"]);
    assert_eq!(status(&printed), 0, "{}", stderr(&printed));
    let printed = stdout(&printed);
    for line in [
        "OnCalendar=*-*-* *:00/1:00",
        "OnCalendar=*-*-* *:00/15:00",
        "OnCalendar=*-*-* 02:14:00",
    ] {
        assert!(printed.contains(line), "{line}:\n{printed}");
    }
    // Written into a directory beside the shipped services, they verify with them.
    let dir = tempfile::tempdir().unwrap();
    let mut units = copy_units(dir.path());
    units.retain(|u| u.extension().is_some_and(|e| e == "service"));
    let out = install.run(&["timers", "--output", dir.path().to_str().unwrap()]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    for name in [
        "nodepool-cleanup.timer",
        "nodepool-check.timer",
        "nodepool-image-update.timer",
    ] {
        let path = dir.path().join(name);
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let event = text
            .lines()
            .find_map(|l| l.strip_prefix("OnCalendar="))
            .unwrap();
        calendar(event).unwrap_or_else(|e| panic!("{name}: {event}: {e}"));
        units.push(path);
    }
    assert!(
        fs::read_to_string(dir.path().join("nodepool-image-update.timer"))
            .unwrap()
            .contains("Persistent=true")
    );
    verify(&units);
}

#[test]
fn every_form_of_the_table_is_a_calendar_systemd_reads_the_same_way() {
    // cron, and the times of the next two runs systemd must agree with: each event is
    // checked by systemd-analyze, and its normalized form compared.
    let cases = [
        ("14 2 * * *", "*-*-* 02:14:00"),
        ("*/15 * * * *", "*-*-* *:00/15:00"),
        ("27 */6 * * *", "*-*-* 00/6:27:00"),
        ("0 0 1 * *", "*-*-01 00:00:00"),
        ("0,30 8-18 * * 1-5", "Mon..Fri *-*-* 08..18:00,30:00"),
        ("5 4 * * sun", "Sun *-*-* 04:05:00"),
        ("0 12 * jan,jul *", "*-01,07-* 12:00:00"),
        ("10-40/10 * * * *", "*-*-* *:10,20,30,40:00"),
        ("0 22 * * Mon-Fri", "Mon..Fri *-*-* 22:00:00"),
        ("0 3 */2 * *", "*-*-01/2 03:00:00"),
        ("0 0 * * 0,7", "Sun *-*-* 00:00:00"),
        ("@daily", "*-*-* 00:00:00"),
        // cron's week starts on Sunday, systemd's `weekly` on Monday.
        ("@weekly", "Sun *-*-* 00:00:00"),
        ("*/60 */24 * * *", "*-*-* 00:00:00"),
        ("0 0 */31 */12 *", "*-01-01 00:00:00"),
        ("0 0 1 * 0-6", "*-*-* 00:00:00"),
    ];
    for (cron, normalized) in cases {
        let event = nodepool::schedule::on_calendar(cron).unwrap_or_else(|e| panic!("{cron}: {e}"));
        assert_eq!(
            calendar(&event).as_deref(),
            Ok(normalized),
            "{cron} -> {event}"
        );
    }
}

#[test]
fn a_schedule_systemd_cannot_say_is_an_error_naming_it_and_nothing_is_written() {
    let install = Install::with_config("cron:\n  cleanup: '0 0 1 * mon'\n");
    let dir = tempfile::tempdir().unwrap();
    let out = install.run(&["timers", "--output", dir.path().to_str().unwrap()]);
    assert_eq!(status(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("cron.cleanup `0 0 1 * mon`"), "{err}");
    assert!(err.contains("either matches"), "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}
