//! Stream sessions: the WIT `session` resource of an ingestion plugin, held for the life of a
//! TCP connection or a UDP listener so that a plugin sees one stream as one stream (it may keep
//! state between chunks) and each chunk costs a call, not a checkout from the pool.
//!
//! A session owns its own instance (a store of its own, not a pooled one): pooled instances are
//! lent for one call, while a session lives as long as its connection. Every push gets the
//! plugin's whole per-call deadline and the store's memory limit applies to the session as a
//! whole. After a trap, a timeout or a memory-limit hit the instance is unusable, so the session
//! is [`broken`](StreamSession::is_broken) and the caller opens a new one for the next chunk.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use strata_ingest::MetricBatch;
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use crate::error::{CallFailure, PluginError};
use crate::ingest::{IngestPlugin, bindings, convert};
use crate::runtime::{State, arm_deadline, classify};

/// What `push` and `finish` return inside the guest call.
type Parsed = Result<bindings::strata::plugin::types::Batch, bindings::strata::plugin::types::ParseError>;

/// An open `session` of one ingestion plugin version.
pub struct StreamSession {
    plugin: Arc<IngestPlugin>,
    store: Store<State>,
    bindings: bindings::IngestProtocol,
    handle: ResourceAny,
    broken: bool,
}

impl std::fmt::Debug for StreamSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSession")
            .field("plugin", &self.plugin.name())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl StreamSession {
    /// Opens a session of `plugin` in a new instance (the resource's constructor gets `params`).
    pub fn open(plugin: Arc<IngestPlugin>, params: &[(String, String)]) -> Result<Self, PluginError> {
        plugin.counters.calls.fetch_add(1, Ordering::Relaxed);
        let limits = plugin.limits();
        let (mut store, bindings) = plugin.instantiate();
        let opened = bindings.and_then(|b| {
            let handle = b
                .strata_plugin_ingest()
                .session()
                .call_constructor(&mut store, &params.to_vec())?;
            Ok((b, handle))
        });
        match opened {
            Ok((bindings, handle)) => Ok(Self {
                plugin,
                store,
                bindings,
                handle,
                broken: false,
            }),
            Err(e) => {
                let failure = classify(&store, &e, limits);
                Err(plugin.fail(failure))
            }
        }
    }

    /// The plugin version this session runs on (compare with the host's current one to notice a
    /// reload).
    pub fn plugin(&self) -> &Arc<IngestPlugin> {
        &self.plugin
    }

    /// Whether the instance failed (trap, timeout, memory limit) and cannot take more chunks.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Parses one chunk of whole lines into `out` (cleared first). A parse error leaves the
    /// session usable; any other failure breaks it.
    pub fn push(&mut self, chunk: &[u8], default_ts_ms: i64, out: &mut MetricBatch) -> Result<(), PluginError> {
        let handle = self.handle;
        self.call(out, |store, b| {
            b.strata_plugin_ingest()
                .session()
                .call_push(store, handle, chunk, default_ts_ms)
        })
    }

    /// Ends the stream: whatever the plugin still buffered goes into `out` (cleared first), and
    /// the resource is dropped. The instance goes with the session.
    pub fn finish(mut self, out: &mut MetricBatch) -> Result<(), PluginError> {
        let handle = self.handle;
        let result = self.call(out, |store, b| {
            b.strata_plugin_ingest().session().call_finish(store, handle)
        });
        if !self.broken {
            // Lets the guest run its destructor; the store is dropped right after either way.
            let _ = self.handle.resource_drop(&mut self.store);
        }
        result
    }

    fn call(
        &mut self,
        out: &mut MetricBatch,
        f: impl FnOnce(&mut Store<State>, &bindings::IngestProtocol) -> wasmtime::Result<Parsed>,
    ) -> Result<(), PluginError> {
        out.clear();
        if self.broken {
            return Err(PluginError::Call {
                plugin: self.plugin.name().to_string(),
                failure: CallFailure::Trap("the session's instance failed earlier; open a new session".into()),
            });
        }
        let plugin = &self.plugin;
        plugin.counters.calls.fetch_add(1, Ordering::Relaxed);
        let limits = plugin.limits();
        arm_deadline(&mut self.store, limits);
        let batch = match f(&mut self.store, &self.bindings) {
            Ok(r) => r,
            Err(e) => {
                self.broken = true;
                let failure = classify(&self.store, &e, limits);
                return Err(plugin.fail(failure));
            }
        };
        let batch = batch.map_err(|e| {
            plugin.counters.parse_errors.fetch_add(1, Ordering::Relaxed);
            PluginError::Parse {
                plugin: plugin.name().to_string(),
                line: e.line,
                offset: e.offset,
                message: e.message,
            }
        })?;
        convert(&batch, out).map_err(|m| {
            out.clear();
            plugin.fail(CallFailure::InvalidOutput(m))
        })
    }
}
