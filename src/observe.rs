//! Observe: the database and one listing per provider (servers and images), providers in
//! parallel, into the planner's input (`plan::Observed`). Data only; every decision is the
//! planner's.

use std::collections::BTreeMap;

use anyhow::Result;
use rusqlite::Connection;

use crate::cloud::{Cloud, Image};
use crate::model::ProviderName;
pub use crate::plan::{CloudView, Observed};
use crate::state::listings::{self, Kind};
use crate::state::{images, nodes, pass, subnodes};

/// Read the database side. The database is read before the clouds are listed, so a server
/// created by a row this snapshot holds is always in the listing that follows.
pub fn database(conn: &Connection, now: i64) -> Result<Observed> {
    Ok(Observed {
        now,
        installation: pass::installation(conn)?,
        nodes: nodes::list(conn)?,
        subnodes: subnodes::list(conn)?,
        images: images::list_provider_images(conn)?,
        builds: images::list_dib_images(conn)?,
        build_failures: images::build_failures(conn)?,
        image_failures: images::image_failures(conn)?,
        requests: crate::state::requests::all(conn)?,
        cooldowns: pass::cooldowns(conn)?,
        allocations: pass::allocations(conn)?,
        leaks: pass::leaks(conn)?,
        clouds: BTreeMap::new(),
    })
}

/// List the servers of every given cloud, a few providers at a time, and their images, unless
/// `kept` has a listing of them (and when it was made) that is still good.
pub fn clouds<C: Cloud>(
    clouds: &BTreeMap<ProviderName, C>,
    kept: &BTreeMap<ProviderName, (i64, Vec<Image>)>,
) -> BTreeMap<ProviderName, CloudView> {
    let entries: Vec<(&ProviderName, &C)> = clouds.iter().collect();
    let views = crate::parallel::map(
        &entries,
        crate::parallel::PROVIDER_THREADS,
        |(name, cloud)| view(*cloud, kept.get(*name)),
        |_| CloudView::Unreachable {
            error: "listing panicked".into(),
            auth_refused: false,
        },
    );
    entries
        .into_iter()
        .map(|(name, _)| name.clone())
        .zip(views)
        .collect()
}

fn view(cloud: &impl Cloud, kept: Option<&(i64, Vec<Image>)>) -> CloudView {
    cloud.begin_listing();
    let listed = cloud.list_servers().and_then(|servers| {
        let (images_listed_at, images) = match kept {
            Some((at, images)) => (*at, images.clone()),
            None => (crate::clock::now(), cloud.list_images()?),
        };
        Ok((servers, images, images_listed_at))
    });
    cloud.end_listing();
    match listed {
        Ok((servers, images, images_listed_at)) => CloudView::Seen {
            servers,
            images,
            images_listed_at,
        },
        Err(error) => CloudView::unreachable(&error),
    }
}

/// The image listings kept from earlier rounds that are still good by each provider's
/// `cache-ttl` (none is good with a TTL of zero).
pub fn kept_images(
    conn: &Connection,
    config: &crate::config::Config,
    now: i64,
) -> Result<BTreeMap<ProviderName, (i64, Vec<Image>)>> {
    let mut kept = BTreeMap::new();
    for (name, provider) in &config.providers {
        let ttl = provider.cache_ttl.as_secs() as i64;
        if ttl == 0 {
            continue;
        }
        if let Some(listing) = listings::get(conn, name, Kind::Images, now - ttl)? {
            kept.insert(name.clone(), listing);
        }
    }
    Ok(kept)
}

/// Keep the image listings this round made (not the kept ones it reused) for later rounds.
pub fn keep_images(
    conn: &Connection,
    views: &BTreeMap<ProviderName, CloudView>,
    kept: &BTreeMap<ProviderName, (i64, Vec<Image>)>,
) -> Result<()> {
    for (name, view) in views {
        if let CloudView::Seen {
            images,
            images_listed_at,
            ..
        } = view
        {
            if kept.get(name).is_none_or(|(at, _)| at != images_listed_at) {
                listings::put(conn, name, Kind::Images, *images_listed_at, images)?;
            }
        }
    }
    Ok(())
}

impl CloudView {
    /// The view of a provider that answered `error` (or none).
    pub fn unreachable(error: &crate::cloud::CloudError) -> CloudView {
        CloudView::Unreachable {
            error: error.to_string(),
            auth_refused: error.kind == crate::cloud::ErrorKind::AuthFailed,
        }
    }
}
