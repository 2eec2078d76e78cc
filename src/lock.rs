//! The run lock: an `fs2` exclusive lock on a file next to the database. `reconcile`,
//! `cleanup` and `check` share the run lock; image builds take the build lock so they never
//! block nodes. The holder writes its pid, start time and command into the file so a refused
//! run can say who holds it.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use fs2::FileExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Node work: reconcile, cleanup, check.
    Run,
    /// Image work: builds, uploads, snapshots.
    Build,
}

impl LockKind {
    fn suffix(self) -> &'static str {
        match self {
            LockKind::Run => "run.lock",
            LockKind::Build => "build.lock",
        }
    }
}

/// Held until dropped (closing the file releases the lock, also when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
    path: PathBuf,
}

/// Another process holds the lock; maps to exit status 75.
#[derive(Debug)]
pub struct LockHeld {
    pub path: PathBuf,
    /// What the holder wrote: `pid 123, started 2026-11-21T10:00:00Z, command reconcile`.
    pub holder: String,
    pub waited: Option<Duration>,
}

impl fmt::Display for LockHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "another nodepool run holds the lock {} ({})",
            self.path.display(),
            self.holder
        )?;
        if let Some(waited) = self.waited {
            write!(f, "; gave up after waiting {} s", waited.as_secs())?;
        }
        Ok(())
    }
}

impl std::error::Error for LockHeld {}

pub fn lock_path(database: &Path, kind: LockKind) -> PathBuf {
    let mut name = database.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(kind.suffix());
    database.with_file_name(name)
}

impl Lock {
    /// Take the lock, or fail with `LockHeld` at once (`wait` None) or after `wait`.
    pub fn acquire(
        database: &Path,
        kind: LockKind,
        command: &str,
        wait: Option<Duration>,
    ) -> Result<Lock> {
        let path = lock_path(database, kind);
        // The lock is taken before the database is opened, so it may be the first file in a
        // new state directory: that directory is private like the database's.
        crate::state::create_private_dir(&path)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        let started = Instant::now();
        let mut announced = false;
        let mut pause = Duration::from_millis(50);
        loop {
            match file.try_lock_exclusive() {
                Ok(()) => break,
                Err(e) if e.kind() != fs2::lock_contended_error().kind() => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
                Err(_) => {}
            }
            let holder = read_holder(&mut file);
            let limit = match wait {
                Some(limit) if started.elapsed() < limit => limit,
                _ => {
                    return Err(LockHeld {
                        path,
                        holder,
                        waited: wait.map(|_| started.elapsed()),
                    }
                    .into());
                }
            };
            if !announced {
                eprintln!(
                    "nodepool: waiting up to {} s for the lock {} ({holder})",
                    limit.as_secs(),
                    path.display()
                );
                announced = true;
            }
            std::thread::sleep(pause.min(limit.saturating_sub(started.elapsed())));
            pause = (pause * 2).min(Duration::from_secs(1));
        }
        write_holder(&mut file, command).with_context(|| format!("writing {}", path.display()))?;
        Ok(Lock { _file: file, path })
    }

    /// Take the lock if it is free: `None` when another process holds it.
    pub fn try_acquire(database: &Path, kind: LockKind, command: &str) -> Result<Option<Lock>> {
        match Lock::acquire(database, kind, command, None) {
            Ok(lock) => Ok(Some(lock)),
            Err(error) if error.downcast_ref::<LockHeld>().is_some() => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn write_holder(file: &mut File, command: &str) -> std::io::Result<()> {
    let started = humantime::format_rfc3339_seconds(SystemTime::now());
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(
        file,
        "pid {}, started {started}, command {command}",
        std::process::id()
    )?;
    file.flush()
}

fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let read = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.take(512).read_to_string(&mut text));
    match read {
        Ok(_) if !text.trim().is_empty() => text.trim().to_string(),
        _ => "holder unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_state_directory_made_for_the_lock_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state/nodepool.db");
        let _held = Lock::acquire(&db, LockKind::Run, "reconcile", None).unwrap();
        let mode = std::fs::metadata(dir.path().join("state"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_second_run_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("nodepool.db");
        let held = Lock::acquire(&db, LockKind::Run, "reconcile", None).unwrap();
        assert_eq!(held.path(), dir.path().join("nodepool.db.run.lock"));
        let err = Lock::acquire(&db, LockKind::Run, "cleanup", None).unwrap_err();
        let held_err = err.downcast_ref::<LockHeld>().expect("LockHeld");
        assert!(
            held_err
                .holder
                .contains(&format!("pid {}", std::process::id())),
            "{held_err}"
        );
        assert!(held_err.holder.contains("command reconcile"), "{held_err}");
        assert_eq!(crate::exit::Exit::of(&err), crate::exit::Exit::Locked);
    }

    #[test]
    fn build_and_run_locks_are_independent() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("nodepool.db");
        let _run = Lock::acquire(&db, LockKind::Run, "reconcile", None).unwrap();
        assert!(Lock::acquire(&db, LockKind::Build, "image-update", None).is_ok());
    }

    #[test]
    fn waiting_gets_the_lock_once_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("nodepool.db");
        let held = Lock::acquire(&db, LockKind::Run, "reconcile", None).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let got = Lock::acquire(&db, LockKind::Run, "cleanup", Some(Duration::from_secs(10)));
        releaser.join().unwrap();
        assert!(got.is_ok());
    }

    #[test]
    fn waiting_gives_up_after_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("nodepool.db");
        let _held = Lock::acquire(&db, LockKind::Run, "reconcile", None).unwrap();
        let err = Lock::acquire(
            &db,
            LockKind::Run,
            "cleanup",
            Some(Duration::from_millis(200)),
        )
        .unwrap_err();
        assert!(err.to_string().contains("gave up after waiting"), "{err}");
    }
}
