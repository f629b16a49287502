use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which tools may be called, and how tool declarations are tracked.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolsSpec {
    /// Glob patterns of tool names that may be called (`*` matches any run of characters, `?` one
    /// character, `[abc]` a class). A call to a tool matching none of them is blocked.
    /// Defaults to `["*"]`; an empty list allows no tool.
    #[serde(default = "super::all_tools")]
    pub allow: Vec<String>,
    /// Glob patterns of tool names that are always blocked, even when `allow` matches them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Block calls to tools the server never declared in a `tools/list` response during the session
    /// (tool drift, or a client calling tools that were never offered).
    #[serde(default)]
    pub block_undeclared: bool,
    /// Remember each tool's name, description and input schema at the session's first `tools/list`;
    /// a later change within the session (a rug pull) is a finding, blocked when the change adds
    /// instructions, URLs, references to other tools or invisible characters.
    #[serde(default)]
    pub pin_definitions: bool,
}

impl Default for ToolsSpec {
    fn default() -> Self {
        Self {
            allow: super::all_tools(),
            deny: Vec::new(),
            block_undeclared: false,
            pin_definitions: false,
        }
    }
}
