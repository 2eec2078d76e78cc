//! Observe: the database and one listing per provider (servers and images), providers in
//! parallel, into the planner's input (`plan::Observed`). Data only; every decision is the
//! planner's.

use std::collections::BTreeMap;

use anyhow::Result;
use rusqlite::Connection;

use crate::cloud::Cloud;
use crate::model::ProviderName;
pub use crate::plan::{CloudView, Observed};
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
        cooldowns: pass::cooldowns(conn)?,
        allocations: pass::allocations(conn)?,
        leaks: pass::leaks(conn)?,
        clouds: BTreeMap::new(),
    })
}

/// List servers and images of every given cloud, a few providers at a time.
pub fn clouds<C: Cloud>(clouds: &BTreeMap<ProviderName, C>) -> BTreeMap<ProviderName, CloudView> {
    let entries: Vec<(&ProviderName, &C)> = clouds.iter().collect();
    let views = crate::parallel::map(
        &entries,
        crate::parallel::PROVIDER_THREADS,
        |(_, cloud)| view(*cloud),
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

fn view(cloud: &impl Cloud) -> CloudView {
    cloud.begin_listing();
    let listed = cloud
        .list_servers()
        .and_then(|servers| Ok((servers, cloud.list_images()?)));
    cloud.end_listing();
    match listed {
        Ok((servers, images)) => CloudView::Seen { servers, images },
        Err(error) => CloudView::unreachable(&error),
    }
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
