//! The SQLite store: one file, WAL, busy timeout, foreign keys, schema versioned by
//! `PRAGMA user_version` with forward migrations (`migrations.rs`). Row types and
//! compare-and-set transitions live in `nodes.rs` and `images.rs`.

pub mod images;
pub mod journal;
pub mod listings;
mod migrations;
pub mod nodes;
pub mod pass;
pub mod requests;
pub mod subnodes;
pub mod tokens;

use std::fs::{self, DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

/// How long a writer waits for another process's transaction before giving up; transactions
/// here are short, so this is only ever reached when something is badly wrong.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Commits made by this process's connections: a connection waiting to write wakes at the
/// next one (`wait_for_writer`).
static COMMITS: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());

/// SQLite's own busy handler sleeps up to 100 ms at a time while another connection writes:
/// with a provider's threads committing their intents at once, a fill of 1000 spent most of
/// its time asleep (15 s instead of 2). This one waits for the next commit of this process,
/// or 2 ms (a writer in another process), and gives up after about `BUSY_TIMEOUT`.
fn wait_for_writer(attempt: i32) -> bool {
    const WAIT: Duration = Duration::from_millis(2);
    thread_local! {
        /// When this thread's current wait began (a commit may wake it early, so the
        /// attempts are no clock).
        static SINCE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    let now = std::time::Instant::now();
    let since = SINCE.with(|since| {
        if attempt == 0 || since.get().is_none() {
            since.set(Some(now));
        }
        since.get().unwrap_or(now)
    });
    if now.duration_since(since) > BUSY_TIMEOUT {
        return false;
    }
    let commits = COMMITS.0.lock().unwrap_or_else(|e| e.into_inner());
    let _ = COMMITS.1.wait_timeout(commits, WAIT);
    true
}

/// After each commit (its write lock released): wake the connections waiting to write, and
/// checkpoint as SQLite does by itself at 1000 pages (a WAL hook replaces its own).
fn after_commit(wal: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    {
        let mut commits = COMMITS.0.lock().unwrap_or_else(|e| e.into_inner());
        *commits = commits.wrapping_add(1);
    }
    COMMITS.1.notify_one();
    if pages >= 1000 {
        // Passive: a reader in the way only makes it do less; the commit stands either way.
        let _ = wal.checkpoint();
    }
    Ok(())
}

pub struct Db {
    conn: Connection,
    path: PathBuf,
}

/// A run is one process reading each page about once, so SQLite's default 2 MiB page cache
/// would only hold pages nobody reads again (a 10,000-node pool's table fills it); the
/// operating system caches the file anyway.
const SMALL_CACHE: &str = "PRAGMA cache_size = -256";

impl Db {
    /// Open (creating file and directory on first use, 0600/0700), set pragmas, migrate.
    pub fn open(path: &Path) -> Result<Db> {
        create_private(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening database {}", path.display()))?;
        let mut db = Db {
            conn,
            path: path.to_path_buf(),
        };
        db.configure()
            .with_context(|| format!("configuring database {}", path.display()))?;
        db.migrate()
            .with_context(|| format!("migrating database {}", path.display()))?;
        Ok(db)
    }

    /// Another connection to a database this run opened (and so migrated) already: the
    /// pragmas, but no migration, so the executor's workers never queue on the migration's
    /// exclusive lock.
    pub fn connect(path: &Path) -> Result<Db> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening database {}", path.display()))?;
        let db = Db {
            conn,
            path: path.to_path_buf(),
        };
        db.configure()
            .with_context(|| format!("configuring database {}", path.display()))?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    fn configure(&self) -> Result<()> {
        self.conn.busy_handler(Some(wait_for_writer))?;
        self.conn.wal_hook(Some(after_commit));
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!(
                "journal_mode WAL refused (got {mode}); is the database on a network filesystem?"
            );
        }
        // NORMAL: WAL commits survive a kill -9; the intents before cloud calls are synced
        // to disk on their own (`durably`), so they survive a power loss too. FULL on every
        // commit doubled the CPU of filling 1000 nodes (0.24 -> 0.45 s, wall 1.9 -> 2.7 s
        // here) and would cost a disk sync per launch step.
        self.conn
            .execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")?;
        self.conn.execute_batch(SMALL_CACHE)?;
        Ok(())
    }

    /// Apply the migrations this database has not seen, all in one exclusive transaction so
    /// two processes starting together cannot both migrate.
    fn migrate(&mut self) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)?;
        let version: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = migrations::MIGRATIONS.len();
        if version > known {
            bail!(
                "schema version {version} is newer than this nodepool understands ({known}); \
                 was it opened by a newer release?"
            );
        }
        for (index, sql) in migrations::MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(sql)
                .with_context(|| format!("migration {}", index + 1))?;
        }
        tx.pragma_update(None, "user_version", known)?;
        tx.commit()?;
        Ok(())
    }

    /// For the listing commands and `--dry-run`: read the database without creating,
    /// migrating or writing it. A database that does not exist yet reads as empty (an
    /// in-memory one; `exists` tells the caller); one that needs a migration is refused.
    ///
    /// Tried in order, the first that can read wins: read-write but query-only (as the last
    /// connection it checkpoints and removes the -wal/-shm files it made, so nothing is left
    /// behind); read-only (a user who cannot write the file, while a run keeps -wal/-shm);
    /// immutable, when there is no -wal file, so nothing newer than the file can exist (a
    /// read-only monitoring user, with no run going, who cannot create -shm).
    pub fn open_read_only(path: &Path) -> Result<Db> {
        if !path.exists() {
            return Db::empty(path);
        }
        let wal = {
            let mut name = path.as_os_str().to_owned();
            name.push("-wal");
            PathBuf::from(name)
        };
        let mut attempts = vec![ReadAs::QueryOnly, ReadAs::ReadOnly];
        if !wal.exists() {
            attempts.push(ReadAs::Immutable);
        }
        let mut failures = Vec::new();
        for how in attempts {
            let db = how.open(path).and_then(|conn| {
                conn.execute_batch("PRAGMA query_only = ON")?;
                conn.execute_batch(SMALL_CACHE)?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                let db = Db {
                    conn,
                    path: path.to_path_buf(),
                };
                // The first read is where a WAL database this user cannot share fails.
                db.conn
                    .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?;
                Ok(db)
            });
            match db {
                Ok(db) => {
                    let version = db.schema_version()?;
                    if version == 0 {
                        // Created this instant by a run that is migrating it: nothing yet.
                        return Db::empty(path);
                    }
                    if version != migrations::MIGRATIONS.len() {
                        bail!(
                            "database {} has schema version {version}, this nodepool uses {}; \
                             run `nodepool reconcile` once to migrate it",
                            path.display(),
                            migrations::MIGRATIONS.len()
                        );
                    }
                    return Ok(db);
                }
                Err(error) => failures.push(format!("{}: {error}", how.name())),
            }
        }
        bail!(
            "cannot read database {} ({})",
            path.display(),
            failures.join("; ")
        )
    }

    /// An empty database in memory, standing for `path` that holds nothing yet.
    fn empty(path: &Path) -> Result<Db> {
        let mut db = Db {
            conn: Connection::open_in_memory()?,
            path: path.to_path_buf(),
        };
        db.migrate()?;
        Ok(db)
    }

    pub fn schema_version(&self) -> Result<usize> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}

/// The ways `open_read_only` tries, in order.
#[derive(Clone, Copy)]
enum ReadAs {
    QueryOnly,
    ReadOnly,
    Immutable,
}

impl ReadAs {
    fn name(self) -> &'static str {
        match self {
            ReadAs::QueryOnly => "read-write, query only",
            ReadAs::ReadOnly => "read-only",
            ReadAs::Immutable => "immutable",
        }
    }

    fn open(self, path: &Path) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
        match self {
            ReadAs::QueryOnly => {
                Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_READ_WRITE)
            }
            ReadAs::ReadOnly => {
                Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_READ_ONLY)
            }
            ReadAs::Immutable => Connection::open_with_flags(
                format!("file:{}?immutable=1", uri_path(path)),
                flags | OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
            ),
        }
    }
}

/// A path as the path part of an SQLite `file:` URI (`?` and `#` escaped).
fn uri_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

/// Run `work` (a write that must survive a power loss: an intent committed before a cloud
/// call) with its commit synced to disk, and with it every earlier commit in the WAL.
pub(crate) fn durably<T>(conn: &Connection, work: impl FnOnce() -> Result<T>) -> Result<T> {
    // Inside a caller's transaction the level cannot change; its commit is the caller's.
    if !conn.is_autocommit() {
        return work();
    }
    conn.execute_batch("PRAGMA synchronous = FULL")?;
    let done = work();
    conn.execute_batch("PRAGMA synchronous = NORMAL")?;
    done
}

/// Run `work` inside a savepoint: all of it is kept, or none. A savepoint, not a transaction,
/// so callers may batch several such writes in a transaction of their own.
///
/// On its own (not inside a caller's transaction) it is an immediate transaction: it takes
/// the write lock first, waiting its turn, so a read inside it is never made stale by
/// another thread's commit (which would make its first write fail at once, "database is
/// locked", with no wait).
pub(crate) fn in_savepoint<T>(conn: &Connection, work: impl FnOnce() -> Result<T>) -> Result<T> {
    let (begin, keep, undo) = if conn.is_autocommit() {
        ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
    } else {
        (
            "SAVEPOINT nodepool_write",
            "RELEASE nodepool_write",
            "ROLLBACK TO nodepool_write; RELEASE nodepool_write",
        )
    };
    conn.execute_batch(begin)?;
    let kept = work().and_then(|done| {
        conn.execute_batch(keep)?;
        Ok(done)
    });
    if kept.is_err() {
        let _ = conn.execute_batch(undo);
    }
    kept
}

/// The run's private scratch directory beside the database (inside the 0700 state
/// directory): node-set keys are generated there, never in /tmp.
pub fn work_dir(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".work");
    PathBuf::from(name)
}

/// The builder's scratch directory, beside the run's: the builder holds another lock, so
/// a reconcile emptying its own never pulls a key from under a snapshot's ssh.
pub fn builder_work_dir(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".build-work");
    PathBuf::from(name)
}

/// Empty the work directory (what a killed run left there, such as a node set's private key)
/// and create it 0700. Called by the run lock's holder before any SSH work.
pub fn reset_work_dir(database: &Path) -> Result<PathBuf> {
    reset_private_dir(work_dir(database))
}

/// `reset_work_dir` for the builder (the build lock's holder).
pub fn reset_builder_work_dir(database: &Path) -> Result<PathBuf> {
    reset_private_dir(builder_work_dir(database))
}

fn reset_private_dir(dir: PathBuf) -> Result<PathBuf> {
    match fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("emptying {}", dir.display())),
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Create the directory that will hold `path` (the database or its lock file), 0700, if it
/// does not exist yet.
pub(crate) fn create_private_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating state directory {}", dir.display()))?;
        }
    }
    Ok(())
}

/// Create the directory (0700) and the file (0600) before SQLite does, so neither is ever
/// world-readable: the database holds hostnames, addresses and host keys.
fn create_private(path: &Path) -> Result<()> {
    create_private_dir(path)?;
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => bail!("database path {} is a directory", path.display()),
        Ok(_) => Ok(()),
        Err(_) => {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating database {}", path.display()))?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parallel_read_then_write_transactions_wait_their_turn_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.db");
        let db = Db::open(&path).unwrap();
        db.conn()
            .execute_batch("CREATE TABLE counter (n INTEGER); INSERT INTO counter VALUES (0);")
            .unwrap();
        std::thread::scope(|scope| {
            for _ in 0..16 {
                scope.spawn(|| {
                    let db = Db::connect(&path).unwrap();
                    for _ in 0..25 {
                        // A read, then a write that depends on it: a lost update, or a
                        // "database is locked" without waiting, if the read went stale.
                        in_savepoint(db.conn(), || {
                            let n: i64 = db
                                .conn()
                                .query_row("SELECT n FROM counter", [], |r| r.get(0))?;
                            db.conn().execute("UPDATE counter SET n = ?1", [n + 1])?;
                            Ok(())
                        })
                        .unwrap();
                    }
                });
            }
        });
        let n: i64 = db
            .conn()
            .query_row("SELECT n FROM counter", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 16 * 25);
    }

    #[test]
    fn the_wal_is_checkpointed_as_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.db");
        let db = Db::open(&path).unwrap();
        db.conn()
            .execute_batch("CREATE TABLE blob (b BLOB)")
            .unwrap();
        // 24 MiB in 6000 commits: past the 1000-page mark many times over.
        for _ in 0..6000 {
            db.conn()
                .execute("INSERT INTO blob VALUES (zeroblob(4096))", [])
                .unwrap();
        }
        let wal = fs::metadata(dir.path().join("n.db-wal")).unwrap().len();
        assert!(wal < 12 << 20, "the WAL grew to {wal} bytes");
    }

    #[test]
    fn first_open_creates_private_file_and_directory_and_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/sub/nodepool.db");
        let db = Db::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), migrations::MIGRATIONS.len());
        let file_mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!((file_mode, dir_mode), (0o600, 0o700));
        drop(db);
        // A second open is a no-op migration.
        assert_eq!(
            Db::open(&path).unwrap().schema_version().unwrap(),
            migrations::MIGRATIONS.len()
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nodepool.db");
        let db = Db::open(&path).unwrap();
        db.conn().pragma_update(None, "user_version", 999).unwrap();
        drop(db);
        let err = format!("{:#}", Db::open(&path).err().unwrap());
        assert!(err.contains("schema version 999 is newer"), "{err}");
    }

    #[test]
    fn migration_3_keeps_a_running_cooldown_and_clears_old_blockers() {
        let conn = Connection::open_in_memory().unwrap();
        for sql in &migrations::MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        // Three failures (a 20 s cooldown) ending at 1020, a quota wait ending at 1060.
        conn.execute_batch(
            "INSERT INTO cooldown VALUES ('p1', 'small', 'failures', 3, 1020, 'boom');
             INSERT INTO cooldown VALUES ('p1', '', 'quota', 0, 1060, 'quota');
             INSERT INTO allocation VALUES ('small', 'p1', 2, 0, 'at max-servers', 1000);",
        )
        .unwrap();
        conn.execute_batch(migrations::MIGRATIONS[2]).unwrap();
        let cooldowns = pass::cooldowns(&conn).unwrap();
        let ends: Vec<i64> = cooldowns
            .iter()
            .map(crate::plan::policy::cooldown_end)
            .collect();
        assert_eq!(ends, [1060, 1020]);
        assert!(cooldowns.iter().all(|c| c.last_time == 1000));
        assert!(pass::allocations(&conn).unwrap().is_empty());
    }

    #[test]
    fn failures_count_up_in_one_statement_and_a_success_clears_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.db");
        let (a, b) = (Db::open(&path).unwrap(), Db::open(&path).unwrap());
        let (provider, label) = ("p1".into(), "small".into());
        pass::record_failure(a.conn(), &provider, &label, "first", 10).unwrap();
        pass::record_failure(b.conn(), &provider, &label, "second", 20).unwrap();
        let cooldowns = pass::cooldowns(a.conn()).unwrap();
        assert_eq!(
            (cooldowns[0].failures, cooldowns[0].last_time),
            (2, 20),
            "{cooldowns:?}"
        );
        assert_eq!(cooldowns[0].last_error.as_deref(), Some("second"));
        pass::record_success(b.conn(), &provider, &label).unwrap();
        assert!(pass::cooldowns(a.conn()).unwrap().is_empty());
    }

    #[test]
    fn a_worker_connection_does_not_wait_for_the_migration_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.db");
        let writer = Db::open(&path).unwrap();
        writer.conn().execute_batch("BEGIN EXCLUSIVE").unwrap();
        let started = std::time::Instant::now();
        let worker = Db::connect(&path).unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            worker.schema_version().unwrap(),
            migrations::MIGRATIONS.len()
        );
        writer.conn().execute_batch("COMMIT").unwrap();
    }

    #[test]
    fn pragmas_are_set() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("n.db")).unwrap();
        let fk: i64 = db
            .conn()
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        let mode: String = db
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let cache: i64 = db
            .conn()
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .unwrap();
        let synchronous = || -> i64 {
            db.conn()
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(
            (fk, mode.as_str(), cache, synchronous()),
            (1, "wal", -256, 1)
        );
        let inside = durably(db.conn(), || Ok(synchronous())).unwrap();
        assert_eq!(
            (inside, synchronous()),
            (2, 1),
            "FULL for the intent, NORMAL after"
        );
    }
}

/// States are stored as their 2015 names; an unknown name in the database is an error, not a
/// panic. Names (provider, label, …) are text, read without an intermediate `String`.
mod sql_types {
    use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

    use crate::model::{
        DiskImageName, ImageName, ImageState, LabelName, LaunchPhase, NodeId, NodeState,
        ProviderName, SubnodeId, TargetName,
    };

    macro_rules! name_from_sql {
        ($($name:ident),*) => {$(
            impl FromSql for $name {
                fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                    value.as_str().map($name::from)
                }
            }
        )*};
    }

    name_from_sql!(
        ProviderName,
        LabelName,
        TargetName,
        ImageName,
        DiskImageName
    );

    macro_rules! id_sql {
        ($($id:ident),*) => {$(
            impl ToSql for $id {
                fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                    Ok(ToSqlOutput::from(self.0))
                }
            }

            impl FromSql for $id {
                fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                    value.as_i64().map($id)
                }
            }
        )*};
    }

    id_sql!(NodeId, SubnodeId);

    impl ToSql for LaunchPhase {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.as_str()))
        }
    }

    impl FromSql for LaunchPhase {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
            let text = value.as_str()?;
            LaunchPhase::parse(text)
                .ok_or_else(|| FromSqlError::Other(format!("unknown launch phase `{text}`").into()))
        }
    }

    impl ToSql for NodeState {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.as_str()))
        }
    }

    impl FromSql for NodeState {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
            let text = value.as_str()?;
            NodeState::parse(text)
                .ok_or_else(|| FromSqlError::Other(format!("unknown node state `{text}`").into()))
        }
    }

    impl ToSql for ImageState {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.as_str()))
        }
    }

    impl FromSql for ImageState {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
            let text = value.as_str()?;
            ImageState::parse(text)
                .ok_or_else(|| FromSqlError::Other(format!("unknown image state `{text}`").into()))
        }
    }
}
