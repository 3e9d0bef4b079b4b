//! Per-tenant limits (`[[limits.tenants]]`): query limit overrides and an ingestion rate.
//!
//! The first rule whose pattern matches a tenant applies. Query overrides replace fields of the
//! role's [`QueryOptions`] for that tenant's requests. The ingestion rate is a token bucket per
//! tenant holding one second's worth of samples:
//!
//! - admission, once per request before the body is read (the query/ingest middleware in
//!   [`crate::limits`]): a tenant whose bucket is empty or in debt gets 429 with `Retry-After`
//!   (the seconds until the bucket refills above zero), counted in
//!   `strata_tenant_ingest_rejected_total{tenant="<rule pattern>"}` (labelled by the rule, not
//!   the tenant, so the series count is bounded by the configuration);
//! - accounting, once per stored batch ([`RateLimitedSink`]): the samples written are taken
//!   from the bucket, which may go into debt. A request is never cut in the middle, and over
//!   time a tenant gets its rate; the overshoot is at most the requests admitted at once.
//!
//! Both steps take one short lock per request or batch, never per sample.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use strata_ingest::{MetricBatch, PushOutcome, SampleSink, SinkError};
use strata_query::QueryOptions;
use strata_storage::Tenant;

use crate::auth::TenantPattern;
use crate::error::{ApiError, ErrorType};

/// Query limits one rule overrides; `None` keeps the role's value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryOverrides {
    /// Most series one selector may load.
    pub max_series: Option<usize>,
    /// Most samples one query may load.
    pub max_samples: Option<usize>,
    /// Most points per series in a range query result.
    pub max_points_per_series: Option<usize>,
    /// Wall-clock budget of one query.
    pub timeout: Option<Duration>,
    /// Most bytes of one regex.
    pub max_regex_length: Option<usize>,
}

impl QueryOverrides {
    /// `base` with these overrides applied.
    pub fn apply(&self, base: &QueryOptions) -> QueryOptions {
        let mut out = base.clone();
        if let Some(v) = self.max_series {
            out.max_series = v;
        }
        if let Some(v) = self.max_samples {
            out.max_samples = v;
        }
        if let Some(v) = self.max_points_per_series {
            out.max_points_per_series = v;
        }
        if let Some(v) = self.timeout {
            out.timeout = v;
        }
        if let Some(v) = self.max_regex_length {
            out.max_regex_length = v;
        }
        out
    }
}

/// One `[[limits.tenants]]` table.
#[derive(Clone, Debug)]
pub struct TenantRule {
    /// Which tenants it covers.
    pub pattern: TenantPattern,
    /// The pattern as configured: the metric label of refusals.
    pub name: String,
    /// Query limit overrides.
    pub query: QueryOverrides,
    /// Samples per second each matching tenant may ingest; `None` = unlimited.
    pub ingest_samples_per_second: Option<u64>,
}

/// A tenant over its ingestion rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    /// The rule that limits it.
    pub rule: String,
    /// Its rate, samples per second.
    pub rate: u64,
    /// Whole seconds until it may send again (at least 1).
    pub retry_after_secs: u64,
}

impl RateLimited {
    /// The 429 answer, in Prometheus' error shape, with `Retry-After`.
    pub fn response(&self, tenant: Tenant) -> Response {
        let error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorType::Unavailable,
            format!(
                "tenant {}:{} is over its ingestion rate of {} samples/s (limits.tenants \"{}\" max_ingest_samples_per_second); retry in {}s",
                tenant.account_id, tenant.project_id, self.rate, self.rule, self.retry_after_secs
            ),
        );
        let mut response = error.into_response();
        if let Ok(v) = HeaderValue::from_str(&self.retry_after_secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

/// Buckets kept before idle (full) ones are dropped: a flood of made-up tenant ids in
/// `/insert/<tenant>/` paths must not grow memory without limit.
const MAX_BUCKETS: usize = 10_000;

/// Seconds of rate a full bucket holds (the burst).
const BURST_SECONDS: f64 = 1.0;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(rate: f64, now: Instant) -> Self {
        Self {
            tokens: rate * BURST_SECONDS,
            updated: now,
        }
    }

    fn refill(&mut self, rate: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate * BURST_SECONDS);
        self.updated = now;
    }
}

/// The rules of a role and the buckets of the tenants that have ingested.
#[derive(Debug, Default)]
pub struct TenantLimits {
    rules: Vec<TenantRule>,
    buckets: Mutex<HashMap<Tenant, Bucket>>,
}

impl TenantLimits {
    /// Limits for `rules`, in configuration order.
    pub fn new(rules: Vec<TenantRule>) -> Arc<Self> {
        Arc::new(Self {
            rules,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// The rule covering `tenant`, if any (first match).
    pub fn rule(&self, tenant: Tenant) -> Option<&TenantRule> {
        self.rules
            .iter()
            .find(|r| r.pattern.matches(tenant.account_id, tenant.project_id))
    }

    /// Whether any rule limits ingestion (else no request needs a look).
    pub fn limits_ingest(&self) -> bool {
        self.rules.iter().any(|r| r.ingest_samples_per_second.is_some())
    }

    /// `base` with `tenant`'s overrides applied.
    pub fn query_options(&self, base: &QueryOptions, tenant: Tenant) -> QueryOptions {
        match self.rule(tenant) {
            Some(rule) => rule.query.apply(base),
            None => base.clone(),
        }
    }

    fn rate(&self, tenant: Tenant) -> Option<(&TenantRule, f64)> {
        let rule = self.rule(tenant)?;
        Some((rule, rule.ingest_samples_per_second? as f64))
    }

    fn buckets(&self) -> MutexGuard<'_, HashMap<Tenant, Bucket>> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_bucket<T>(&self, tenant: Tenant, rate: f64, now: Instant, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let mut buckets = self.buckets();
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&tenant) {
            // Drop the buckets that are full again: forgetting them changes nothing.
            buckets.retain(|t, b| {
                let rate = self.rate(*t).map_or(0.0, |(_, r)| r);
                b.refill(rate, now);
                b.tokens < rate * BURST_SECONDS
            });
        }
        let bucket = buckets.entry(tenant).or_insert_with(|| Bucket::full(rate, now));
        bucket.refill(rate, now);
        f(bucket)
    }

    /// Whether `tenant` may send an ingestion request now.
    pub fn admit(&self, tenant: Tenant, now: Instant) -> Result<(), RateLimited> {
        let Some((rule, rate)) = self.rate(tenant) else {
            return Ok(());
        };
        let tokens = self.with_bucket(tenant, rate, now, |b| b.tokens);
        if tokens > 0.0 {
            return Ok(());
        }
        metrics::counter!("strata_tenant_ingest_rejected_total", "tenant" => rule.name.clone()).increment(1);
        Err(RateLimited {
            rule: rule.name.clone(),
            rate: rule.ingest_samples_per_second.unwrap_or_default(),
            retry_after_secs: ((-tokens / rate).floor() as u64).saturating_add(1),
        })
    }

    /// Takes `samples` stored for `tenant` from its bucket.
    pub fn charge(&self, tenant: Tenant, samples: u64, now: Instant) {
        if samples == 0 {
            return;
        }
        if let Some((_, rate)) = self.rate(tenant) {
            self.with_bucket(tenant, rate, now, |b| b.tokens -= samples as f64);
        }
    }
}

/// A sink that charges what it stores to the tenants' ingestion rates.
pub struct RateLimitedSink {
    inner: Arc<dyn SampleSink>,
    limits: Arc<TenantLimits>,
}

impl RateLimitedSink {
    /// `inner` charged to `limits`; `inner` itself when no rule limits ingestion.
    pub fn wrap(inner: Arc<dyn SampleSink>, limits: Option<&Arc<TenantLimits>>) -> Arc<dyn SampleSink> {
        match limits {
            Some(limits) if limits.limits_ingest() => Arc::new(Self {
                inner,
                limits: Arc::clone(limits),
            }),
            _ => inner,
        }
    }
}

impl SampleSink for RateLimitedSink {
    fn push(&self, tenant: Tenant, batch: &MetricBatch) -> Result<PushOutcome, SinkError> {
        let outcome = self.inner.push(tenant, batch)?;
        self.limits.charge(tenant, outcome.samples_written, Instant::now());
        Ok(outcome)
    }
}

/// The tenant an ingestion path writes to: `/insert/<tenant>/...`, else `0:0`. `None` when the
/// tenant segment does not parse (the handler answers 400 for it).
pub fn ingest_tenant(path: &str) -> Option<Tenant> {
    let Some(rest) = path.strip_prefix("/insert/") else {
        return Some(Tenant::default());
    };
    let segment = rest.split('/').next().unwrap_or("");
    // The router percent-decodes path parameters; a tenant is digits and `:`, so `%3A` is the
    // only escape that can turn into a valid one. Decoding it here means `42%3A7` cannot
    // sidestep the limit that `42:7` gets.
    let segment = segment.replace("%3A", ":").replace("%3a", ":");
    crate::ingest_api::parse_tenant(&segment).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, rate: Option<u64>, max_series: Option<usize>) -> TenantRule {
        TenantRule {
            pattern: TenantPattern::parse(pattern).unwrap(),
            name: pattern.into(),
            query: QueryOverrides {
                max_series,
                ..QueryOverrides::default()
            },
            ingest_samples_per_second: rate,
        }
    }

    fn t(account_id: u32, project_id: u32) -> Tenant {
        Tenant { account_id, project_id }
    }

    #[test]
    fn first_match_wins_for_query_overrides() {
        let limits = TenantLimits::new(vec![rule("42:7", None, None), rule("42:*", None, Some(5))]);
        let base = QueryOptions::default();
        assert_eq!(limits.query_options(&base, t(42, 7)).max_series, base.max_series);
        assert_eq!(limits.query_options(&base, t(42, 1)).max_series, 5);
        assert_eq!(limits.query_options(&base, t(0, 0)).max_series, base.max_series);
        let all = QueryOverrides {
            max_series: Some(1),
            max_samples: Some(2),
            max_points_per_series: Some(3),
            timeout: Some(Duration::from_secs(4)),
            max_regex_length: Some(5),
        }
        .apply(&base);
        assert_eq!(
            (
                all.max_series,
                all.max_samples,
                all.max_points_per_series,
                all.timeout,
                all.max_regex_length
            ),
            (1, 2, 3, Duration::from_secs(4), 5)
        );
        assert_eq!(all.max_regex_compiled_bytes, base.max_regex_compiled_bytes);
    }

    #[test]
    fn bucket_admits_a_burst_then_refuses_until_refilled() {
        let limits = TenantLimits::new(vec![rule("1", Some(100), None)]);
        let now = Instant::now();
        let one = t(1, 0);
        assert!(limits.admit(one, now).is_ok(), "a new bucket is full");
        limits.charge(one, 100, now);
        let refused = limits.admit(one, now).unwrap_err();
        assert_eq!(
            (refused.rate, refused.retry_after_secs, refused.rule.as_str()),
            (100, 1, "1")
        );
        // Half a second refills half the bucket.
        assert!(limits.admit(one, now + Duration::from_millis(500)).is_ok());
        // A large request goes into debt: 1,000 samples over = 10 s at 100/s.
        limits.charge(one, 1_050, now + Duration::from_millis(500));
        let refused = limits.admit(one, now + Duration::from_millis(500)).unwrap_err();
        assert_eq!(refused.retry_after_secs, 11);
        assert!(limits.admit(one, now + Duration::from_millis(9_000)).is_err());
        assert!(limits.admit(one, now + Duration::from_millis(10_600)).is_ok());
        // The burst is capped at one second: a long pause does not bank more.
        let later = now + Duration::from_secs(3600);
        limits.charge(one, 100, later);
        assert!(limits.admit(one, later).is_err());
    }

    #[test]
    fn tenants_have_their_own_buckets_and_unmatched_ones_none() {
        let limits = TenantLimits::new(vec![rule("42:*", Some(10), None)]);
        let now = Instant::now();
        limits.charge(t(42, 1), 1_000, now);
        assert!(limits.admit(t(42, 1), now).is_err());
        assert!(limits.admit(t(42, 2), now).is_ok(), "another project of the same rule");
        limits.charge(t(7, 0), 1_000_000, now);
        assert!(limits.admit(t(7, 0), now).is_ok(), "no rule, no limit");
        assert_eq!(limits.buckets().len(), 2, "unlimited tenants get no bucket");
    }

    #[test]
    fn idle_buckets_are_dropped_when_too_many() {
        let limits = TenantLimits::new(vec![rule("*", Some(10), None)]);
        let now = Instant::now();
        limits.charge(t(0, 0), 50, now);
        for i in 1..MAX_BUCKETS as u32 {
            limits.admit(t(i, 0), now).unwrap();
        }
        assert_eq!(limits.buckets().len(), MAX_BUCKETS);
        limits.admit(t(u32::MAX, 0), now).unwrap();
        let buckets = limits.buckets();
        assert!(
            buckets.len() <= 2,
            "only the bucket in debt and the new one stay: {}",
            buckets.len()
        );
        assert!(buckets.contains_key(&t(0, 0)));
    }

    #[test]
    fn sink_charges_what_was_written() {
        let limits = TenantLimits::new(vec![rule("0", Some(5), None)]);
        let memory = Arc::new(strata_ingest::MemorySink::new());
        let sink = RateLimitedSink::wrap(memory.clone(), Some(&limits));
        let mut batch = MetricBatch::new();
        batch
            .add_series([("__name__", "m")], (0..10).map(|i| (i, 1.0)))
            .unwrap();
        let now = Instant::now();
        sink.push(t(0, 0), &batch).unwrap();
        assert!(limits.admit(t(0, 0), now).is_err());
        let unlimited = TenantLimits::new(vec![rule("9", None, None)]);
        let plain: Arc<dyn SampleSink> = memory;
        assert!(Arc::ptr_eq(
            &RateLimitedSink::wrap(Arc::clone(&plain), Some(&unlimited)),
            &plain
        ));
    }

    #[test]
    fn tenant_of_a_path() {
        assert_eq!(ingest_tenant("/api/v1/write"), Some(t(0, 0)));
        assert_eq!(ingest_tenant("/insert/42/prometheus/api/v1/write"), Some(t(42, 0)));
        assert_eq!(ingest_tenant("/insert/42:7/prometheus/api/v1/write"), Some(t(42, 7)));
        assert_eq!(ingest_tenant("/insert/42%3A7/prometheus/api/v1/write"), Some(t(42, 7)));
        assert_eq!(ingest_tenant("/insert/x/prometheus"), None);
    }

    #[test]
    fn refusal_is_429_with_retry_after() {
        let refused = RateLimited {
            rule: "42:*".into(),
            rate: 10,
            retry_after_secs: 3,
        };
        let response = refused.response(t(42, 1));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }
}
