//! Transports: how frames reach the guard. One file each.

pub mod http;
pub mod lines;
pub mod stdio;
