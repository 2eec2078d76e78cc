//! What a cloud listed that changes rarely (its images, its flavors), kept with the time it
//! was listed (`cloud_listing` table), so a steady run lists only the servers. How long a
//! listing stays good is the provider's `cache-ttl`; a create that says the image or the
//! flavor is gone forgets it at once.

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model::ProviderName;

/// The kinds of listing kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Images,
    Flavors,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Images => "images",
            Kind::Flavors => "flavors",
        }
    }
}

/// The provider's kept listing and when it was listed (Unix seconds), if it was listed at
/// `since` or later. A row that does not parse (written by another version) is no listing.
pub fn get<T: DeserializeOwned>(
    conn: &Connection,
    provider: &ProviderName,
    kind: Kind,
    since: i64,
) -> Result<Option<(i64, Vec<T>)>> {
    let row: Option<(i64, String)> = conn
        .query_row(
            "SELECT listed_at, items FROM cloud_listing \
             WHERE provider = ?1 AND kind = ?2 AND listed_at >= ?3",
            params![provider.as_str(), kind.as_str(), since],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .with_context(|| format!("reading the kept {} of {provider}", kind.as_str()))?;
    Ok(row.and_then(|(at, items)| Some((at, serde_json::from_str(&items).ok()?))))
}

pub fn put<T: Serialize>(
    conn: &Connection,
    provider: &ProviderName,
    kind: Kind,
    listed_at: i64,
    items: &[T],
) -> Result<()> {
    let items = serde_json::to_string(items)?;
    conn.execute(
        "INSERT INTO cloud_listing (provider, kind, listed_at, items) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (provider, kind) DO UPDATE SET listed_at = ?3, items = ?4",
        params![provider.as_str(), kind.as_str(), listed_at, items],
    )
    .with_context(|| format!("keeping the {} of {provider}", kind.as_str()))?;
    Ok(())
}

/// Forget the provider's listing: the next round lists again.
pub fn forget(conn: &Connection, provider: &ProviderName, kind: Kind) -> Result<()> {
    conn.execute(
        "DELETE FROM cloud_listing WHERE provider = ?1 AND kind = ?2",
        params![provider.as_str(), kind.as_str()],
    )
    .with_context(|| format!("forgetting the {} of {provider}", kind.as_str()))?;
    Ok(())
}
