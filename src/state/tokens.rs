//! Keystone tokens kept between runs (`token` table), so a steady run needs no token call.
//! The database file is 0600 in a 0700 directory; a token is only written to one that is not
//! readable by others, and never printed.

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

use crate::model::{ProviderName, Secret};

/// A token as stored: valid until `expires_at` (Unix seconds) for the auth settings whose
/// hash it was stored under, with the service catalog (JSON) that came with it.
#[derive(Debug, Clone)]
pub struct StoredToken {
    pub token: Secret,
    pub expires_at: i64,
    pub catalog: String,
}

/// Every stored token: provider, the hash of the auth settings it was issued for, token.
pub fn all(conn: &Connection) -> Result<Vec<(ProviderName, String, StoredToken)>> {
    let mut stmt = conn
        .prepare("SELECT provider, auth_hash, token, expires_at, catalog FROM token")
        .context("reading the stored tokens")?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                ProviderName::from(row.get::<_, String>(0)?),
                row.get(1)?,
                StoredToken {
                    token: Secret(row.get(2)?),
                    expires_at: row.get(3)?,
                    catalog: row.get(4)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
        .context("reading the stored tokens")?;
    Ok(rows)
}

pub fn put(
    conn: &Connection,
    provider: &ProviderName,
    auth_hash: &str,
    token: &StoredToken,
) -> Result<()> {
    conn.execute(
        "INSERT INTO token (provider, auth_hash, token, expires_at, catalog) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (provider) DO UPDATE SET auth_hash = ?2, token = ?3, expires_at = ?4, \
         catalog = ?5",
        params![
            provider.as_str(),
            auth_hash,
            token.token.expose(),
            token.expires_at,
            token.catalog
        ],
    )
    .with_context(|| format!("storing the token of {provider}"))?;
    Ok(())
}

/// Forget the provider's token (the cloud refused it, or caching is off).
pub fn forget(conn: &Connection, provider: &ProviderName) -> Result<()> {
    conn.execute("DELETE FROM token WHERE provider = ?1", [provider.as_str()])
        .with_context(|| format!("forgetting the token of {provider}"))?;
    Ok(())
}
