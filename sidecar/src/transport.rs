//! Transports: how frames reach the guard. One module each; `bridge` serves a stdio server as
//! Streamable HTTP behind `http`.

pub mod bridge;
pub mod http;
pub mod lines;
pub mod stdio;
