//! Images nodepool makes: diskimage-builder builds (`build`), their uploads (`upload`), and
//! snapshots of servers prepared by a setup script (`snapshot`).

pub mod build;
pub mod retention;
pub mod snapshot;
pub mod upload;
