//! Talking to nodes: SSH with the system OpenSSH client (`ssh`), and the bootstrap that every
//! node of a set gets before it is ready (`bootstrap`).
//!
//! Nothing here touches the database or a cloud: callers pass what a node is (address, user,
//! key, recorded host keys) and get back what happened. Every child process is bounded by a
//! timeout and killed by its PID when the timeout expires.

pub mod bootstrap;
pub mod ssh;
