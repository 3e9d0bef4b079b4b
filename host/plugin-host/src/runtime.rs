//! The wasmtime engine shared by all plugins: its configuration, the epoch ticker that bounds
//! calls in time, the store limiter that bounds them in memory, and the on-disk cache of
//! compiled components.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::Digest;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};

use crate::error::{CallFailure, PluginError};

/// How often the epoch advances; a call's deadline is a whole number of these.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime line compiled artifacts are valid for; part of the cache key (the engine's
/// compatibility hash covers the exact version and settings).
const WASMTIME_LINE: &str = "wasmtime48";

/// The engine plus its ticker thread. Dropping it stops the ticker.
pub struct Runtime {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Creates the engine. `cache_dir` holds compiled components; `None` compiles on every load.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Synchronous calls only: the component-model async machinery triples the fixed cost
        // of a call (issue 8: ~150 ns vs ~500-680 ns).
        config.concurrency_support(false);
        // Epoch checks cost less than fuel for the same guarantee (a bounded call time).
        config.epoch_interruption(true);
        #[cfg(feature = "profiling")]
        match std::env::var("STRATA_PLUGIN_PROFILER").as_deref() {
            // Writes /tmp/perf-<pid>.map so that `perf report` names guest functions.
            Ok("perfmap") => {
                config.profiler(wasmtime::ProfilingStrategy::PerfMap);
            }
            // Writes jit-<pid>.dump: with `perf record -k mono` and `perf inject --jit`,
            // `perf annotate` shows the guest's machine code.
            Ok("jitdump") => {
                config.profiler(wasmtime::ProfilingStrategy::JitDump);
            }
            _ => {}
        }
        let engine = Engine::new(&config).map_err(|e| PluginError::Runtime(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| PluginError::Runtime(format!("cannot start the epoch ticker: {e}")))?
        };
        Ok(Self {
            engine,
            cache_dir,
            stop,
            ticker: Some(ticker),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `bytes`, or loads the artifact a previous run cached for the same bytes and
    /// engine. Returns the component and whether it came from the cache.
    pub fn compile(&self, bytes: &[u8]) -> Result<(Component, bool), String> {
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes)
                .map(|c| (c, false))
                .map_err(|e| format!("{e:#}"));
        };
        let path = dir.join(self.cache_key(bytes));
        if path.exists() {
            match self.load_cached(&path) {
                Ok(c) => return Ok((c, true)),
                // A damaged or foreign artifact is not fatal: recompile and overwrite it.
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "ignoring unusable plugin cache entry"),
            }
        }
        let compiled = self.engine.precompile_component(bytes).map_err(|e| format!("{e:#}"))?;
        if let Err(e) =
            strata_fsutil::create_dir_all_durable(dir).and_then(|()| strata_fsutil::atomic_write(&path, &compiled))
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled plugin");
        }
        let component = self.load_cached_bytes(&compiled)?;
        Ok((component, false))
    }

    fn cache_key(&self, bytes: &[u8]) -> String {
        let content = sha2::Sha256::digest(bytes);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let hex: String = content.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}-{WASMTIME_LINE}-{:016x}.cwasm", h.finish())
    }

    #[allow(unsafe_code)]
    fn load_cached(&self, path: &Path) -> Result<Component, String> {
        // SAFETY: deserialising runs machine code from the file. The cache directory is ours
        // (under the data dir, written only by `compile` above via atomic rename) and is as
        // trusted as the binary; wasmtime checks the header, version and engine settings.
        unsafe { Component::deserialize_file(&self.engine, path) }.map_err(|e| format!("{e:#}"))
    }

    #[allow(unsafe_code)]
    fn load_cached_bytes(&self, compiled: &[u8]) -> Result<Component, String> {
        // SAFETY: `compiled` was produced by `precompile_component` of this very engine.
        unsafe { Component::deserialize(&self.engine, compiled) }.map_err(|e| format!("{e:#}"))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// Per-call bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLimits {
    /// Linear memory (all memories together) a plugin instance may use.
    pub max_memory_bytes: usize,
    /// Wall-clock budget of one call, rounded up to the 10 ms epoch tick.
    pub timeout: Duration,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            max_memory_bytes: 256 << 20,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Store data: the limiter plus what host imports need.
pub(crate) struct State {
    pub(crate) limiter: Limiter,
    pub(crate) plugin: Arc<str>,
    pub(crate) config: Arc<Vec<(String, String)>>,
}

/// A memory limiter that remembers that it refused, so a failed call can say "out of memory"
/// rather than a generic trap. Refusing a grow traps (like `StoreLimits::trap_on_grow_failure`):
/// guest allocators otherwise turn a failed grow into an abort with a less useful message.
pub(crate) struct Limiter {
    max_memory: usize,
    used: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let next = self.used - current.min(self.used) + desired;
        if next > self.max_memory {
            self.hit = true;
            return Err(wasmtime::Error::msg("plugin memory limit reached"));
        }
        self.used = next;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; a million entries is far beyond any real plugin.
        if desired > 1_000_000 {
            self.hit = true;
            return Err(wasmtime::Error::msg("plugin table limit reached"));
        }
        Ok(true)
    }
}

/// Warm instances kept per plugin: a call takes one (or instantiates afresh when none is idle)
/// and gives it back when the call succeeded, so the fixed cost of a call is a call, not an
/// instantiation (~12 µs). An instance that trapped, timed out or hit its memory limit is
/// dropped (wasmtime refuses further calls into it anyway), and so is one that grew its memory
/// past [`RECYCLE_MAX_MEMORY`], so that idle instances never hold much memory.
///
/// Plugins must not rely on fresh globals per call: an instance serves many calls in turn
/// (never two at once).
pub(crate) struct Pool<B> {
    idle: std::sync::Mutex<Vec<(Store<State>, B)>>,
    max_idle: usize,
}

/// Instances whose linear memory grew beyond this are not kept warm.
pub(crate) const RECYCLE_MAX_MEMORY: usize = 16 << 20;

impl<B> Pool<B> {
    pub(crate) fn new() -> Self {
        Self {
            idle: std::sync::Mutex::new(Vec::new()),
            max_idle: std::thread::available_parallelism().map_or(4, |n| n.get()).clamp(2, 32),
        }
    }

    /// Runs `f` in a warm instance or in one made by `make` (a fresh store plus instantiation),
    /// with the deadline of `limits` armed. On error returns the store so the caller can say why.
    pub(crate) fn call<R>(
        &self,
        limits: CallLimits,
        make: impl FnOnce() -> (Store<State>, wasmtime::Result<B>),
        f: impl FnOnce(&mut Store<State>, &B) -> wasmtime::Result<R>,
    ) -> Result<R, (Store<State>, wasmtime::Error)> {
        let warm = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let (mut store, bindings) = match warm {
            Some(w) => w,
            None => match make() {
                (store, Ok(b)) => (store, b),
                (store, Err(e)) => return Err((store, e)),
            },
        };
        arm_deadline(&mut store, limits);
        match f(&mut store, &bindings) {
            Ok(r) => {
                if store.data().limiter.used <= RECYCLE_MAX_MEMORY {
                    let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                    if idle.len() < self.max_idle {
                        idle.push((store, bindings));
                    }
                }
                Ok(r)
            }
            Err(e) => Err((store, e)),
        }
    }
}

/// Arms the per-call deadline: every call (a pooled one or a session push) gets the whole budget.
pub(crate) fn arm_deadline(store: &mut Store<State>, limits: CallLimits) {
    // u64 milliseconds: `Duration::as_millis` is a u128, whose division is a slow library call
    // on every request.
    let ms = limits
        .timeout
        .as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(limits.timeout.subsec_millis()));
    let tick_ms = EPOCH_TICK.as_secs() * 1000 + u64::from(EPOCH_TICK.subsec_millis());
    store.set_epoch_deadline(ms.div_ceil(tick_ms).max(1));
}

/// A fresh store for one request, with memory and time bounds armed.
pub(crate) fn new_store(
    engine: &Engine,
    plugin: Arc<str>,
    config: Arc<Vec<(String, String)>>,
    limits: CallLimits,
) -> Store<State> {
    let state = State {
        limiter: Limiter {
            max_memory: limits.max_memory_bytes,
            used: 0,
            hit: false,
        },
        plugin,
        config,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    arm_deadline(&mut store, limits);
    store.epoch_deadline_trap();
    store
}

/// Names what went wrong in a call that returned a wasmtime error.
pub(crate) fn classify(store: &Store<State>, err: &wasmtime::Error, limits: CallLimits) -> CallFailure {
    if store.data().limiter.hit {
        return CallFailure::OutOfMemory {
            limit_bytes: limits.max_memory_bytes,
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallFailure::Timeout {
            limit_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
        },
        Some(trap) => CallFailure::Trap(trap.to_string()),
        None => CallFailure::Trap(format!("{err:#}")),
    }
}
