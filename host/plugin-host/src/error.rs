//! What can go wrong loading or calling a plugin.

/// Why a plugin call failed. The string form of [`CallFailure::reason`] is the `reason` label of
/// `strata_plugin_failures_total`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallFailure {
    /// The call ran past its deadline and was interrupted.
    Timeout {
        /// The deadline.
        limit_ms: u64,
    },
    /// The plugin tried to grow its memory beyond its limit.
    OutOfMemory {
        /// The limit.
        limit_bytes: usize,
    },
    /// The plugin trapped (a panic, an `unreachable`, an out-of-bounds access ...).
    Trap(String),
    /// The plugin returned output that breaks the batch contract (refs out of range,
    /// non-monotonic ends, invalid UTF-8) or too much of it.
    InvalidOutput(String),
}

impl CallFailure {
    /// Short, stable name for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            CallFailure::Timeout { .. } => "timeout",
            CallFailure::OutOfMemory { .. } => "out_of_memory",
            CallFailure::Trap(_) => "trap",
            CallFailure::InvalidOutput(_) => "invalid_output",
        }
    }
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::Timeout { limit_ms } => write!(f, "timeout: the call ran longer than {limit_ms} ms"),
            CallFailure::OutOfMemory { limit_bytes } => {
                write!(f, "out of memory: the plugin needed more than its {limit_bytes} bytes")
            }
            CallFailure::Trap(m) => write!(f, "trap: {m}"),
            CallFailure::InvalidOutput(m) => write!(f, "invalid output: {m}"),
        }
    }
}

/// Errors of the plugin host.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The component file could not be read, compiled, cached or instantiated.
    #[error("plugin {name}: cannot load {path}: {message}")]
    Load {
        /// Plugin name.
        name: String,
        /// Its file.
        path: String,
        /// Why.
        message: String,
    },
    /// The component was built against an incompatible `strata:plugin` version.
    #[error(
        "plugin {name}: built against {found}, but this host implements strata:plugin@{host}; rebuild it with a {host_major}.x SDK"
    )]
    Version {
        /// Plugin name.
        name: String,
        /// What the component exports (or "no strata:plugin interface").
        found: String,
        /// The host's package version.
        host: &'static str,
        /// The compatible series, e.g. `0.1`.
        host_major: &'static str,
    },
    /// The configuration is wrong (a duplicate name, a path mounted twice ...).
    #[error("plugin {name}: {message}")]
    Config {
        /// Plugin name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A call failed; the plugin stays loaded, the failed instance is dropped and the next
    /// call gets another one.
    #[error("plugin {plugin}: {failure}")]
    Call {
        /// Plugin name.
        plugin: String,
        /// What happened.
        failure: CallFailure,
    },
    /// The plugin refused the input (its own parse error).
    #[error("plugin {plugin}: line {line} (byte {offset}): {message}")]
    Parse {
        /// Plugin name.
        plugin: String,
        /// 1-based line, 0 when not line-oriented.
        line: u32,
        /// Byte offset in the body.
        offset: u64,
        /// The plugin's message.
        message: String,
    },
    /// The engine could not be set up.
    #[error("plugin runtime: {0}")]
    Runtime(String),
}
