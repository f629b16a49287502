//! Why a pod that asked for the proxy cannot get it. Every message tells the user what to change and
//! names the annotation or field (and its allowed values); the webhook returns it as the denial
//! reason, so `kubectl apply` and the ReplicaSet's events show it verbatim.

/// A pod opted in to injection but cannot be injected as it is. The webhook denies such a pod
/// (fail closed) rather than admitting it unguarded.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum InjectError {
    /// `mcpguard.io/inject` is neither `"true"` nor `"false"`.
    #[error(
        "annotation mcpguard.io/inject is {value:?}; allowed values are \"true\" (inject the \
         mcp-guard proxy) and \"false\" (do not)"
    )]
    InvalidInject {
        /// The annotation's value.
        value: String,
    },
    /// The namespace label `mcpguard.io/injection` is neither `enabled` nor `disabled`.
    #[error(
        "namespace {namespace:?} has label mcpguard.io/injection={value:?}; allowed values are \
         \"enabled\" (inject every pod unless it has annotation mcpguard.io/inject: \"false\") and \
         \"disabled\" (inject no pod); fix the namespace label"
    )]
    InvalidNamespaceLabel {
        /// The namespace.
        namespace: String,
        /// The label's value.
        value: String,
    },
    /// The pod says `mcpguard.io/inject: "true"` in a namespace labelled `mcpguard.io/injection=disabled`.
    #[error(
        "the pod asks for the mcp-guard proxy (annotation mcpguard.io/inject: \"true\") but namespace \
         {namespace:?} has label mcpguard.io/injection=disabled, so it cannot be guarded there; remove \
         the annotation, remove the namespace label, or run the pod in another namespace"
    )]
    NamespaceDisabled {
        /// The namespace.
        namespace: String,
    },
    /// Neither the pod nor its namespace names a policy.
    #[error(
        "no McpGuardPolicy for the mcp-guard proxy: set the annotation mcpguard.io/policy on the pod \
         (or on namespace {namespace:?}, as its pods' default) to the name of an McpGuardPolicy in \
         namespace {namespace:?}"
    )]
    MissingPolicy {
        /// The pod's namespace.
        namespace: String,
    },
    /// `mcpguard.io/policy` is not a valid object name.
    #[error(
        "{source_of} mcpguard.io/policy is {policy:?}, which is not a valid McpGuardPolicy name: \
         {reason}; set it to the name of an McpGuardPolicy in the pod's namespace"
    )]
    InvalidPolicyName {
        /// Where the name was read: "annotation" or "namespace \"x\" annotation".
        source_of: String,
        /// The name.
        policy: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The named policy does not exist in the pod's namespace.
    #[error(
        "McpGuardPolicy {policy:?} not found in namespace {namespace:?}; create it or fix the \
         annotation mcpguard.io/policy"
    )]
    PolicyNotFound {
        /// The policy's name.
        policy: String,
        /// The pod's namespace.
        namespace: String,
    },
    /// `mcpguard.io/transport` is neither `http` nor `stdio`.
    #[error(
        "annotation mcpguard.io/transport is {value:?}; allowed values are \"http\" (the default: the \
         server listens on HTTP itself) and \"stdio\" (the server speaks MCP on stdin/stdout)"
    )]
    InvalidTransport {
        /// The annotation's value.
        value: String,
    },
    /// `mcpguard.io/port` is neither a port name nor a number from 1 to 65535.
    #[error(
        "annotation mcpguard.io/port is {value:?}; set it to the container port the Service targets: \
         the name of a declared container port, or a number from 1 to 65535"
    )]
    InvalidPort {
        /// The annotation's value.
        value: String,
    },
    /// `mcpguard.io/server-port` is not a number from 1 to 65535.
    #[error(
        "annotation mcpguard.io/server-port is {value:?}; set it to a number from 1 to 65535: the port \
         the MCP server listens on once the proxy has taken over its port"
    )]
    InvalidServerPort {
        /// The annotation's value.
        value: String,
    },
    /// `mcpguard.io/server-port` was given for a stdio server.
    #[error(
        "annotation mcpguard.io/server-port only applies to mcpguard.io/transport: http; remove it \
         (a stdio server listens on no port: the proxy runs it as a child process)"
    )]
    ServerPortWithStdio,
    /// No container declares the port `mcpguard.io/port` names.
    #[error(
        "annotation mcpguard.io/port is {port:?}, but no container declares such a port (declared: \
         {declared}); set mcpguard.io/port to the name or number of the container port the Service \
         targets, or declare that port in the MCP server container's ports"
    )]
    PortNotFound {
        /// The annotation's value.
        port: String,
        /// The declared ports, `container/name:number`.
        declared: String,
    },
    /// `mcpguard.io/port` matches more than one declared container port.
    #[error(
        "annotation mcpguard.io/port is {port:?}, which matches several container ports ({matches}); \
         set mcpguard.io/port to a port name or number that exactly one container declares once"
    )]
    AmbiguousPort {
        /// The annotation's value.
        port: String,
        /// The matching ports, `container/name:number/protocol`.
        matches: String,
    },
    /// No `mcpguard.io/port` and no container declares a TCP port (`http` transport).
    #[error(
        "no container declares a TCP port, so mcp-guard cannot tell which port its proxy must take \
         over; declare the MCP server's port in its container's ports and set the annotation \
         mcpguard.io/port to it (or set mcpguard.io/transport: stdio for a stdio server)"
    )]
    NoPort,
    /// No `mcpguard.io/port` and several TCP ports are declared.
    #[error(
        "the pod declares several TCP ports ({ports}); set the annotation mcpguard.io/port to the one \
         the MCP server's Service targets (its name or number)"
    )]
    SeveralPorts {
        /// The declared TCP ports, `container/name:number`.
        ports: String,
    },
    /// The port the proxy would serve is not TCP.
    #[error(
        "container port {port} has protocol {protocol}, but MCP runs over TCP; set the annotation \
         mcpguard.io/port to a TCP port"
    )]
    PortNotTcp {
        /// The port, `container/name:number`.
        port: String,
        /// Its protocol.
        protocol: String,
    },
    /// The default server port (the Service's port + 10000) is beyond 65535.
    #[error(
        "the MCP server would move from port {port} to {moved}, which is beyond 65535; set the \
         annotation mcpguard.io/server-port to a free port for the server to listen on"
    )]
    ServerPortOutOfRange {
        /// The port the proxy takes over.
        port: i32,
        /// `port + 10000`.
        moved: i32,
    },
    /// A port mcp-guard needs is already declared in the pod.
    #[error(
        "port {port}, {what}, is already used by container {owner:?}; set the annotation \
         {annotation} to a free port"
    )]
    PortInUse {
        /// Which port: "where the MCP server would move to", ...
        what: &'static str,
        /// The port number.
        port: i32,
        /// The container declaring it.
        owner: String,
        /// The annotation that chooses the port.
        annotation: &'static str,
    },
    /// `stdio` with several containers and no `mcpguard.io/port` saying which one runs the server.
    #[error(
        "mcpguard.io/transport is stdio and the pod has several containers ({containers}); set the \
         annotation mcpguard.io/port to a port declared by the MCP server's container so mcp-guard \
         knows which container to wrap"
    )]
    StdioWhichContainer {
        /// The containers' names.
        containers: String,
    },
    /// `stdio` with several containers and a `mcpguard.io/port` number no container declares.
    #[error(
        "annotation mcpguard.io/port is {port}, which no container declares, and the pod has several \
         containers ({containers}); declare port {port} in the MCP server container's ports so \
         mcp-guard knows which container to wrap"
    )]
    StdioUndeclaredPort {
        /// The annotation's port number.
        port: i32,
        /// The containers' names.
        containers: String,
    },
    /// The `stdio` server container has no explicit `command`.
    #[error(
        "container {container:?} runs a stdio MCP server (mcpguard.io/transport: stdio) but sets no \
         command; set its command (and args) explicitly: mcp-guard runs it as `mcp-guard-proxy ... -- \
         <command> <args>` and cannot see the image's ENTRYPOINT at admission time"
    )]
    StdioWithoutCommand {
        /// The server container.
        container: String,
    },
    /// The `stdio` server container already mounts something where mcp-guard mounts its volumes.
    #[error(
        "container {container:?} already mounts a volume at {path}, where mcp-guard mounts its own \
         (mcpguard.io/transport: stdio); mount that volume elsewhere"
    )]
    MountPathInUse {
        /// The server container.
        container: String,
        /// The mount path.
        path: String,
    },
    /// The pod has no containers.
    #[error("the pod has no containers for mcp-guard to guard (annotation mcpguard.io/inject)")]
    NoContainers,
    /// Every port from the configured metrics port up is taken (practically impossible).
    #[error(
        "no free port at or above {from} is left for the mcp-guard proxy's metrics; free one or set \
         mcpguard.io/inject: \"false\""
    )]
    NoFreePort {
        /// The configured metrics port.
        from: u16,
    },
}
