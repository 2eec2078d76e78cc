//! Observe: the database and one listing per provider (servers and images), providers in
//! parallel. Data only; every decision is the planner's.

use std::collections::BTreeMap;

use anyhow::Result;
use rusqlite::Connection;

use crate::cloud::{Cloud, Image, Server};
use crate::model::ProviderName;
use crate::state::images::{self, ProviderImageRow};
use crate::state::nodes::{self, Node};
use crate::state::pass::{self, Allocation, Cooldown, Sighting};
use crate::state::subnodes::{self, Subnode};

/// Everything one round knows.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub now: i64,
    /// This installation's id (`nodepool_installation` in server metadata).
    pub installation: String,
    pub nodes: Vec<Node>,
    pub subnodes: Vec<Subnode>,
    pub images: Vec<ProviderImageRow>,
    pub cooldowns: Vec<Cooldown>,
    pub allocations: Vec<Allocation>,
    pub leaks: BTreeMap<(ProviderName, String), Sighting>,
    /// The providers this round looked at; one absent here is not touched.
    pub clouds: BTreeMap<ProviderName, CloudView>,
}

#[derive(Debug, Clone)]
pub enum CloudView {
    Seen {
        servers: Vec<Server>,
        images: Vec<Image>,
    },
    /// The provider could not be listed; nothing is decided about it this round.
    Unreachable { error: String },
}

/// Read the database side. The database is read before the clouds are listed, so a server
/// created by a row this snapshot holds is always in the listing that follows.
pub fn database(conn: &Connection, now: i64) -> Result<Observed> {
    Ok(Observed {
        now,
        installation: pass::installation(conn)?,
        nodes: nodes::list_for_planning(conn)?,
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
        },
    );
    entries
        .into_iter()
        .map(|(name, _)| name.clone())
        .zip(views)
        .collect()
}

fn view(cloud: &impl Cloud) -> CloudView {
    let listed = cloud
        .list_servers()
        .and_then(|servers| Ok((servers, cloud.list_images()?)));
    match listed {
        Ok((servers, images)) => CloudView::Seen { servers, images },
        Err(error) => CloudView::Unreachable {
            error: error.to_string(),
        },
    }
}
