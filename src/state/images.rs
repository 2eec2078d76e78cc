//! Provider images (`snapshot_image`: uploads and snapshots) and local builds (`dib_image`).

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::model::image::{DibImage, ImageFailures, ProviderImage};
use crate::model::{DiskImageName, ImageName, ImageState, ProviderName};

fn provider_image(row: &Row<'_>) -> rusqlite::Result<ProviderImage> {
    Ok(ProviderImage {
        id: row.get(0)?,
        provider: row.get(1)?,
        image: row.get(2)?,
        hostname: row.get(3)?,
        version: row.get(4)?,
        external_id: row.get(5)?,
        server_external_id: row.get(6)?,
        dib_image_id: row.get(7)?,
        state: row.get(8)?,
        state_time: row.get(9)?,
        phase: row.get(10)?,
        last_error: row.get(11)?,
        phase_time: row.get(12)?,
        ip: row.get(13)?,
        keypair_name: row.get(14)?,
        log: row.get(15)?,
        failed_launches: row.get(16)?,
        launched_ok: row.get(17)?,
    })
}

/// The columns `provider_image` reads, in its order.
const PROVIDER_IMAGE_COLUMNS: &str = "id, provider_name, image_name, hostname, version, \
    external_id, server_external_id, dib_image_id, state, state_time, phase, last_error, \
    phase_time, ip, keypair_name, log, failed_launches, launched_ok";

/// One provider image by its id.
pub fn get_provider_image(conn: &Connection, id: i64) -> Result<Option<ProviderImage>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PROVIDER_IMAGE_COLUMNS} FROM snapshot_image WHERE id = ?1"
    ))?;
    stmt.query_row([id], provider_image)
        .optional()
        .with_context(|| format!("reading provider image {id}"))
}

pub fn list_provider_images(conn: &Connection) -> Result<Vec<ProviderImage>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PROVIDER_IMAGE_COLUMNS} FROM snapshot_image ORDER BY id"
    ))?;
    let rows = stmt.query_map([], provider_image)?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading provider images")
}

pub fn list_dib_images(conn: &Connection) -> Result<Vec<DibImage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, image_name, filename, version, state, state_time, last_error, builder_pid \
         FROM dib_image ORDER BY id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(DibImage {
            id: row.get(0)?,
            image: row.get(1)?,
            filename: row.get(2)?,
            version: row.get(3)?,
            state: row.get(4)?,
            state_time: row.get(5)?,
            last_error: row.get(6)?,
            builder_pid: row.get(7)?,
        })
    })?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading disk images")
}

/// Record a provider image about to be made (intent first) and return its id.
pub fn insert_provider_image(
    conn: &Connection,
    provider: &ProviderName,
    image: &ImageName,
    version: i64,
    state: ImageState,
    now: i64,
) -> Result<i64> {
    conn.execute(
        "INSERT INTO snapshot_image (provider_name, image_name, version, state, state_time) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![provider.as_str(), image.as_str(), version, state, now],
    )
    .context("inserting provider image")?;
    Ok(conn.last_insert_rowid())
}

/// Record a local build about to start and return its id.
pub fn insert_dib_image(
    conn: &Connection,
    image: &DiskImageName,
    filename: &str,
    version: i64,
    state: ImageState,
    now: i64,
) -> Result<i64> {
    conn.execute(
        "INSERT INTO dib_image (image_name, filename, version, state, state_time) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![image.as_str(), filename, version, state, now],
    )
    .context("inserting disk image")?;
    Ok(conn.last_insert_rowid())
}

/// Record a snapshot about to be made (intent first): its row, in phase `requested`, with
/// the template server's hostname and the snapshot's log fixed; returns its id.
pub fn insert_snapshot(
    conn: &Connection,
    (provider, image, version): (&ProviderName, &ImageName, i64),
    (hostname, log): (&str, &str),
    now: i64,
) -> Result<i64> {
    conn.execute(
        "INSERT INTO snapshot_image (provider_name, image_name, version, state, state_time, \
         phase, phase_time, hostname, log) \
         VALUES (?1, ?2, ?3, 'building', ?4, 'requested', ?4, ?5, ?6)",
        params![
            provider.as_str(),
            image.as_str(),
            version,
            now,
            hostname,
            log
        ],
    )
    .context("inserting a snapshot image")?;
    Ok(conn.last_insert_rowid())
}

/// What one step of a snapshot records; `None` keeps a column as it is. A new `phase` also
/// sets `phase_time`.
#[derive(Debug, Default)]
pub struct SnapshotStep<'a> {
    pub phase: Option<&'a str>,
    pub server_external_id: Option<&'a str>,
    pub external_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub host_keys: Option<&'a str>,
    pub keypair_name: Option<&'a str>,
    pub private_key: Option<&'a str>,
    pub log: Option<&'a str>,
}

/// Record a snapshot's step if the row is still in `state` (compare-and-set, as for nodes).
pub fn snapshot_progress(
    conn: &Connection,
    id: i64,
    state: ImageState,
    step: &SnapshotStep<'_>,
    now: i64,
) -> Result<bool> {
    let changed = conn
        .execute(
            "UPDATE snapshot_image SET \
             phase_time = CASE WHEN ?1 IS NULL THEN phase_time ELSE ?9 END, \
             phase = coalesce(?1, phase), \
             server_external_id = coalesce(?2, server_external_id), \
             external_id = coalesce(?3, external_id), \
             ip = coalesce(?4, ip), \
             host_keys = coalesce(?5, host_keys), \
             keypair_name = coalesce(?6, keypair_name), \
             private_key = coalesce(?7, private_key), \
             log = coalesce(?8, log) \
             WHERE id = ?10 AND state = ?11",
            params![
                step.phase,
                step.server_external_id,
                step.external_id,
                step.ip,
                step.host_keys,
                step.keypair_name,
                step.private_key,
                step.log,
                now,
                id,
                state
            ],
        )
        .with_context(|| format!("recording a step of snapshot image {id}"))?;
    Ok(changed == 1)
}

/// A snapshot's template server and keypair are gone: its phase ends and the private key
/// generated for the server is forgotten.
pub fn template_gone(conn: &Connection, id: i64, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE snapshot_image SET phase = NULL, phase_time = ?1, private_key = NULL \
         WHERE id = ?2",
        params![now, id],
    )
    .with_context(|| format!("recording that snapshot image {id}'s template is gone"))?;
    Ok(())
}

/// The secrets of a snapshot's template server: its recorded host keys and the private key
/// generated for it.
pub fn template_secrets(conn: &Connection, id: i64) -> Result<(Option<String>, Option<String>)> {
    conn.query_row(
        "SELECT host_keys, private_key FROM snapshot_image WHERE id = ?1",
        [id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .with_context(|| format!("reading the template keys of snapshot image {id}"))
}

/// A provider image's attempt failed (its row is gone): why, and its log, for `status`.
pub fn record_image_failure(
    conn: &Connection,
    provider: &ProviderName,
    image: &ImageName,
    (error, log): (&str, Option<&str>),
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO image_failure (provider_name, image_name, time, error, log) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (provider_name, image_name) \
         DO UPDATE SET time = ?3, error = ?4, log = ?5",
        params![provider.as_str(), image.as_str(), now, error, log],
    )
    .with_context(|| format!("recording the failure of image {image} on {provider}"))?;
    Ok(())
}

/// A provider image was made: its last failure is history.
pub fn clear_image_failure(
    conn: &Connection,
    provider: &ProviderName,
    image: &ImageName,
) -> Result<()> {
    conn.execute(
        "DELETE FROM image_failure WHERE provider_name = ?1 AND image_name = ?2",
        params![provider.as_str(), image.as_str()],
    )
    .with_context(|| format!("clearing the failure of image {image} on {provider}"))?;
    Ok(())
}

/// Each provider image whose last attempt failed: the error and the log.
pub fn image_failures(conn: &Connection) -> Result<ImageFailures> {
    let mut stmt =
        conn.prepare_cached("SELECT provider_name, image_name, error, log FROM image_failure")?;
    let rows = stmt.query_map([], |row| {
        Ok((
            (
                ProviderName::from(row.get::<_, String>(0)?),
                ImageName::from(row.get::<_, String>(1)?),
            ),
            (row.get(2)?, row.get(3)?),
        ))
    })?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading failed images")
}

/// A ready image nodepool made is marked failed with `reason`: launches fall back to the
/// previous one. False when it is no longer ready or already failed.
pub fn mark_image_failed(conn: &Connection, id: i64, reason: &str) -> Result<bool> {
    let changed = conn
        .execute(
            "UPDATE snapshot_image SET last_error = ?1 \
             WHERE id = ?2 AND state = 'ready' AND last_error IS NULL",
            params![reason, id],
        )
        .with_context(|| format!("marking provider image {id} failed"))?;
    Ok(changed == 1)
}

/// How a launch from a provider image ended, counted on the image (`node` is the node
/// booted from it; images nodepool did not make have no row and count nothing): a failure
/// is one more in a row, a node that became ready proves the image works.
pub fn count_launch(conn: &Connection, node: crate::model::NodeId, ok: bool) -> Result<()> {
    let set = if ok {
        "failed_launches = 0, launched_ok = 1"
    } else {
        "failed_launches = failed_launches + 1"
    };
    conn.execute(
        &format!(
            "UPDATE snapshot_image SET {set} WHERE state = 'ready' \
             AND external_id = (SELECT image_external_id FROM node WHERE id = ?1) \
             AND provider_name = (SELECT provider_name FROM node WHERE id = ?1)"
        ),
        [node],
    )
    .with_context(|| format!("counting the launch of node {node} on its image"))?;
    Ok(())
}

/// A provider image nodepool made (`id`, of `image` on `provider`) is ready: building →
/// ready, its image's last failure is history, and the provider's kept image listing, which
/// predates it, is dropped so the next round lists the cloud's images again (and launches
/// from it at once, not after `cache-ttl`). False when the row was no longer building.
pub fn provider_image_ready(
    conn: &Connection,
    id: i64,
    (provider, image): (&ProviderName, &ImageName),
    now: i64,
) -> Result<bool> {
    super::in_savepoint(conn, || {
        if !transition_provider_image(conn, id, ImageState::Building, ImageState::Ready, now)? {
            return Ok(false);
        }
        clear_image_failure(conn, provider, image)?;
        super::listings::forget(conn, provider, super::listings::Kind::Images)?;
        Ok(true)
    })
}

/// Sightings of `provider`'s images that carry this installation's properties and no row,
/// by image id.
pub fn image_leaks(
    conn: &Connection,
    provider: &ProviderName,
) -> Result<std::collections::BTreeMap<String, crate::model::pass::Sighting>> {
    let mut stmt = conn.prepare_cached(
        "SELECT image_id, first_seen, last_seen FROM image_leak WHERE provider_name = ?1",
    )?;
    let rows = stmt.query_map([provider.as_str()], |row| {
        Ok((
            row.get(0)?,
            crate::model::pass::Sighting {
                first_seen: row.get(1)?,
                last_seen: row.get(2)?,
            },
        ))
    })?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading leaked images")
}

/// Another sighting of a leaked image (the first one records when it was first seen).
pub fn sight_image_leak(
    conn: &Connection,
    provider: &ProviderName,
    id: &str,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO image_leak (provider_name, image_id, first_seen, last_seen) \
         VALUES (?1, ?2, ?3, ?3) ON CONFLICT (provider_name, image_id) \
         DO UPDATE SET last_seen = excluded.last_seen",
        params![provider.as_str(), id, now],
    )
    .with_context(|| format!("recording leaked image {id}"))?;
    Ok(())
}

pub fn forget_image_leak(conn: &Connection, provider: &ProviderName, id: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM image_leak WHERE provider_name = ?1 AND image_id = ?2",
        params![provider.as_str(), id],
    )
    .with_context(|| format!("forgetting leaked image {id}"))?;
    Ok(())
}

/// Compare-and-set for provider images, as `nodes::transition`.
pub fn transition_provider_image(
    conn: &Connection,
    id: i64,
    from: ImageState,
    to: ImageState,
    now: i64,
) -> Result<bool> {
    transition(conn, "snapshot_image", id, (from, to), now)
        .with_context(|| format!("moving provider image {id} to {to}"))
}

/// The compare-and-set of both image tables: `id` moves `from` → `to` if still `from`.
fn transition(
    conn: &Connection,
    table: &str,
    id: i64,
    (from, to): (ImageState, ImageState),
    now: i64,
) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        &format!("UPDATE {table} SET state = ?1, state_time = ?2 WHERE id = ?3 AND state = ?4"),
        params![to, now, id, from],
    )?;
    Ok(changed == 1)
}

/// A build's builder started as process group `pid`.
pub fn record_builder(conn: &Connection, id: i64, pid: u32) -> Result<()> {
    conn.execute(
        "UPDATE dib_image SET builder_pid = ?1 WHERE id = ?2",
        params![pid, id],
    )
    .with_context(|| format!("recording the builder of disk image {id}"))?;
    Ok(())
}

/// An upload's intent, before its image is created: the build it is of.
pub fn record_upload_build(conn: &Connection, id: i64, dib_image_id: i64) -> Result<()> {
    conn.execute(
        "UPDATE snapshot_image SET dib_image_id = ?1 WHERE id = ?2",
        params![dib_image_id, id],
    )
    .with_context(|| format!("recording the build of provider image {id}"))?;
    Ok(())
}

/// The cloud's image id of a provider image, recorded as soon as the create answers.
pub fn record_external_id(conn: &Connection, id: i64, external_id: &str) -> Result<()> {
    conn.execute(
        "UPDATE snapshot_image SET external_id = ?1 WHERE id = ?2",
        params![external_id, id],
    )
    .with_context(|| format!("recording the image id of provider image {id}"))?;
    Ok(())
}

/// Remove a provider image's row (its cloud image is the caller's).
pub fn remove_provider_image(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM snapshot_image WHERE id = ?1", [id])
        .with_context(|| format!("removing provider image {id}"))?;
    Ok(())
}

/// A diskimage's build failed; `log` is the build's log.
pub fn record_build_failure(
    conn: &Connection,
    image: &DiskImageName,
    log: &str,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO build_failure (image_name, time, log) VALUES (?1, ?2, ?3) \
         ON CONFLICT (image_name) DO UPDATE SET time = ?2, log = ?3",
        params![image.as_str(), now, log],
    )
    .with_context(|| format!("recording the failed build of {image}"))?;
    Ok(())
}

/// A build of the diskimage succeeded: its last failure is history.
pub fn clear_build_failure(conn: &Connection, image: &DiskImageName) -> Result<()> {
    conn.execute(
        "DELETE FROM build_failure WHERE image_name = ?1",
        [image.as_str()],
    )
    .with_context(|| format!("clearing the failed build of {image}"))?;
    Ok(())
}

/// Each diskimage whose last build failed, with that build's log.
pub fn build_failures(
    conn: &Connection,
) -> Result<std::collections::BTreeMap<DiskImageName, String>> {
    let mut stmt = conn.prepare_cached("SELECT image_name, log FROM build_failure")?;
    let rows = stmt.query_map([], |row| {
        Ok((DiskImageName::from(row.get::<_, String>(0)?), row.get(1)?))
    })?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading failed builds")
}

/// Compare-and-set for local builds, as `nodes::transition`.
pub fn transition_dib_image(
    conn: &Connection,
    id: i64,
    from: ImageState,
    to: ImageState,
    now: i64,
) -> Result<bool> {
    transition(conn, "dib_image", id, (from, to), now)
        .with_context(|| format!("moving disk image {id} to {to}"))
}

/// Remove a local build's row (its files are the caller's).
pub fn remove_dib_image(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM dib_image WHERE id = ?1", [id])
        .with_context(|| format!("removing disk image {id}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Db;

    #[test]
    fn provider_images_and_builds_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("n.db")).unwrap();
        let dib = insert_dib_image(
            db.conn(),
            &"ubuntu".into(),
            "/img/ubuntu-1",
            1,
            ImageState::Ready,
            5,
        )
        .unwrap();
        let id = insert_provider_image(
            db.conn(),
            &"p1".into(),
            &"trusty".into(),
            7,
            ImageState::Building,
            10,
        )
        .unwrap();
        assert!(transition_provider_image(
            db.conn(),
            id,
            ImageState::Building,
            ImageState::Ready,
            20
        )
        .unwrap());
        assert!(!transition_provider_image(
            db.conn(),
            id,
            ImageState::Building,
            ImageState::Delete,
            30
        )
        .unwrap());
        let images = list_provider_images(db.conn()).unwrap();
        assert_eq!(
            (images[0].state, images[0].version, images[0].state_time),
            (ImageState::Ready, Some(7), 20)
        );
        let builds = list_dib_images(db.conn()).unwrap();
        assert_eq!(
            (builds[0].id, builds[0].filename.as_deref()),
            (dib, Some("/img/ubuntu-1"))
        );
    }
}
