//! Images nodepool makes: diskimage-builder builds (`build`).

pub mod build;
