//! Images nodepool makes: diskimage-builder builds (`build`) and their uploads (`upload`).

pub mod build;
pub mod upload;
