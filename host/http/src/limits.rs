//! Overload protection for queries: at most `max_concurrent` query requests run at once; more
//! wait up to `queue_wait` for a slot and then get 503 with `Retry-After`, counted in
//! `strata_http_requests_throttled_total{kind="query"}`.
//!
//! Ingestion has the same kind of limit inside its handlers (`strata_ingest::IngestLimits`),
//! where the slot is taken before the body is read.
//!
//! The same middleware admits ingestion requests against the tenants' ingestion rates
//! ([`crate::tenant_limits`]) when `[[limits.tenants]]` sets any: a tenant over its rate gets
//! 429 with `Retry-After` before its body is read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{Access, classify};
use crate::error::ApiError;
use crate::tenant_limits::{TenantLimits, ingest_tenant};

/// Query concurrency settings and per-tenant limits.
#[derive(Clone, Debug)]
pub struct LimitOptions {
    /// Queries that run at once; 0 = twice the CPU count.
    pub max_concurrent_queries: usize,
    /// How long a query waits for a slot before 503.
    pub query_queue_wait: Duration,
    /// `[[limits.tenants]]`; the same value must reach the role's sinks
    /// ([`crate::tenant_limits::RateLimitedSink`]) for ingestion rates to be charged.
    pub tenants: Option<Arc<TenantLimits>>,
    /// Exact paths that ingest although they do not look like it (plugin mounts such as a
    /// custom `http_paths` entry; the same list as `AuthOptions::write_paths`), so that the
    /// tenant's ingestion rate refuses them with 429 too.
    pub write_paths: Vec<String>,
}

impl Default for LimitOptions {
    fn default() -> Self {
        Self {
            max_concurrent_queries: 0,
            query_queue_wait: Duration::from_secs(5),
            tenants: None,
            write_paths: Vec::new(),
        }
    }
}

impl LimitOptions {
    /// `max_concurrent_queries` with 0 resolved to twice the CPU count.
    pub fn query_concurrency(&self) -> usize {
        if self.max_concurrent_queries > 0 {
            return self.max_concurrent_queries;
        }
        std::thread::available_parallelism().map_or(4, |n| n.get() * 2)
    }
}

/// Waiters beyond this many times the concurrency are refused at once, so a flood does not
/// pile up tasks that would all time out anyway.
const QUEUE_FACTOR: usize = 8;

/// The shared slots of one listener.
#[derive(Debug)]
pub struct QueryLimiter {
    slots: Arc<tokio::sync::Semaphore>,
    limit: usize,
    wait: Duration,
    waiting: AtomicUsize,
    /// Set only when some tenant has an ingestion rate.
    ingest_rates: Option<Arc<TenantLimits>>,
    write_paths: Vec<String>,
}

impl QueryLimiter {
    /// Slots for `options`.
    pub fn new(options: &LimitOptions) -> Arc<Self> {
        let limit = options.query_concurrency();
        Arc::new(Self {
            slots: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
            wait: options.query_queue_wait,
            waiting: AtomicUsize::new(0),
            ingest_rates: options.tenants.clone().filter(|t| t.limits_ingest()),
            write_paths: options.write_paths.clone(),
        })
    }

    /// Whether `path` ingests: by its shape, or as a configured plugin mount.
    fn is_ingest_path(&self, path: &str) -> bool {
        classify(path, false) == Access::Write || self.write_paths.iter().any(|p| p == path)
    }

    async fn acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Some(permit);
        }
        if self.wait.is_zero() || self.waiting.fetch_add(1, Ordering::AcqRel) >= self.limit * QUEUE_FACTOR {
            if !self.wait.is_zero() {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            return None;
        }
        let permit = tokio::time::timeout(self.wait, Arc::clone(&self.slots).acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.ok().and_then(Result::ok)
    }
}

/// Whether `path` runs a query (and so takes a query slot).
pub fn is_query_path(path: &str) -> bool {
    let Some((_, api)) = path.split_once("/api/v1/") else {
        return path.ends_with("/federate") || path == "/federate";
    };
    api.starts_with("query")
        || api.starts_with("series")
        || api.starts_with("labels")
        || api.starts_with("label/")
        || api.starts_with("export")
        || api.starts_with("status/tsdb")
}

/// The middleware.
pub(crate) async fn limit_queries(limiter: Arc<QueryLimiter>, request: Request, next: Next) -> Response {
    if !is_query_path(request.uri().path()) {
        if let Some(rates) = &limiter.ingest_rates {
            let path = request.uri().path();
            if limiter.is_ingest_path(path)
                && let Some(tenant) = ingest_tenant(path)
                && let Err(refused) = rates.admit(tenant, Instant::now())
            {
                return refused.response(tenant);
            }
        }
        return next.run(request).await;
    }
    let Some(_permit) = limiter.acquire().await else {
        metrics::counter!("strata_http_requests_throttled_total", "kind" => "query").increment(1);
        return ApiError::unavailable(format!(
            "too many concurrent queries (limits.max_concurrent_queries={}); retry later",
            limiter.limit
        ))
        .into_response();
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_paths() {
        for p in [
            "/api/v1/query",
            "/api/v1/query_range",
            "/prometheus/api/v1/series",
            "/api/v1/labels",
            "/api/v1/label/job/values",
            "/api/v1/export",
            "/select/0/prometheus/api/v1/query",
            "/federate",
        ] {
            assert!(is_query_path(p), "{p}");
        }
        for p in [
            "/api/v1/write",
            "/health",
            "/metrics",
            "/",
            "/api/v1/status/buildinfo",
            "/insert/0/prometheus",
        ] {
            assert!(!is_query_path(p), "{p}");
        }
    }

    #[test]
    fn plugin_mounts_count_as_ingestion() {
        let limiter = QueryLimiter::new(&LimitOptions {
            write_paths: vec!["/custom/mount".into()],
            ..LimitOptions::default()
        });
        assert!(limiter.is_ingest_path("/custom/mount"));
        assert!(limiter.is_ingest_path("/api/v1/write"));
        assert!(!limiter.is_ingest_path("/custom/other"));
        assert!(!limiter.is_ingest_path("/api/v1/query"));
    }

    #[tokio::test]
    async fn waits_then_refuses() {
        let limiter = QueryLimiter::new(&LimitOptions {
            max_concurrent_queries: 1,
            query_queue_wait: Duration::from_millis(50),
            tenants: None,
            write_paths: Vec::new(),
        });
        let held = limiter.acquire().await.expect("first slot");
        assert!(limiter.acquire().await.is_none(), "second waits 50ms then fails");
        drop(held);
        assert!(limiter.acquire().await.is_some(), "a freed slot is taken again");
        assert_eq!(limiter.waiting.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_waiter_gets_a_slot_freed_in_time() {
        let limiter = QueryLimiter::new(&LimitOptions {
            max_concurrent_queries: 1,
            query_queue_wait: Duration::from_secs(5),
            tenants: None,
            write_paths: Vec::new(),
        });
        let held = limiter.acquire().await.unwrap();
        let l2 = Arc::clone(&limiter);
        let waiter = tokio::spawn(async move { l2.acquire().await.is_some() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.unwrap());
    }
}
