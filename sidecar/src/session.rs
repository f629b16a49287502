//! Per-session state: the tools the server declared, the requests awaiting answers, and the detectors'
//! memory. A session is one stdio connection, one `Mcp-Session-Id`, or one legacy SSE stream.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use crate::decision::Decision;
use crate::engine::DetectState;

/// Most requests tracked while awaiting their answer; beyond it new requests are forwarded untracked
/// (and counted), so a client that never reads answers cannot grow the proxy's memory without bound.
pub const MAX_PENDING: usize = 4096;

#[derive(Debug)]
pub struct SessionState {
    pub id: Arc<str>,
    /// Tools declared by the server's `tools/list` responses; `None` before the first listing.
    pub declared: Option<HashSet<String>>,
    /// Client requests awaiting the server's answer, by raw id.
    pub pending: HashMap<String, Pending>,
    pub detect: DetectState,
    /// Calls held while the user is asked (MCP elicitation), and recent approvals.
    pub asks: crate::ask::Asks,
    /// Where the session is in its lifecycle.
    pub phase: Phase,
    /// Refuse `tools/call` outside [`Phase::Ready`]. On where the transport sees the whole session on
    /// this state (stdio, legacy SSE). Off for Streamable HTTP: its initialize runs before the session
    /// id exists, stateless requests have none, and an ended session must reach the server, whose 404
    /// tells the client to start a new one (a proxy-made error would hide it).
    pub enforce_lifecycle: bool,
}

/// The MCP session lifecycle as the proxy sees it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No `initialize` yet.
    #[default]
    New,
    /// `initialize` sent, not answered yet.
    Initializing,
    /// The server answered `initialize`: calls may flow.
    Ready,
}

impl SessionState {
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self {
            id: id.into(),
            declared: None,
            pending: HashMap::new(),
            detect: DetectState::default(),
            asks: crate::ask::Asks::default(),
            phase: Phase::New,
            enforce_lifecycle: false,
        }
    }
}

/// A forwarded client request.
#[derive(Debug)]
pub enum Pending {
    /// `tools/list`; `first_page` when sent without a cursor (its answer replaces the declared set).
    ToolsList { first_page: bool },
    /// A forwarded `tools/call`, with what its audit record needs once the answer arrives.
    ToolsCall(Box<CallInFlight>),
    /// `initialize`: its answer makes the session ready.
    Initialize,
    /// Any other request: remembered so that it can be failed if the server goes away.
    Other,
}

#[derive(Debug)]
pub struct CallInFlight {
    pub tool: String,
    /// Redacted, truncated arguments for the audit record.
    pub args: String,
    pub decision: Decision,
    pub outcome: &'static str,
    pub forwarded_at: Instant,
    pub decide_us: u64,
    /// The call reads a taint source: its result's text is fingerprinted.
    pub taint_source: bool,
    /// OpenTelemetry: the call's span (empty when export is off).
    pub span: crate::otel::CallSpan,
}
