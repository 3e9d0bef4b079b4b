//! The steps every ingestion endpoint runs, in one place: decompress (bounded) → decode →
//! validate → push, with the metrics. The HTTP layer only maps headers in and statuses out.
//!
//! Metrics (all `strata_*`):
//! - `strata_rows_inserted_total{type}` — samples accepted by the sink;
//! - `strata_rows_rejected_total{reason}` — samples of refused requests (a request refused
//!   before its samples could be counted adds 0 here and 1 to the next one);
//! - `strata_ingest_requests_total{type,result}` — `ok`, `bad_request`, `unavailable`;
//! - `strata_ingest_bytes_received_total{type}` — request bodies as received (compressed).
//!
//! `type` is `promremotewrite`, `vmimport` or `prometheus`. Request durations per path come from
//! the HTTP layer's `strata_http_request_duration_seconds`.

use std::cell::RefCell;
use std::sync::Arc;

use crate::batch::MetricBatch;
use crate::decompress::{self, Encoding};
use crate::error::IngestError;
use crate::limits::{IngestLimits, now_ms};
use crate::remote_write::{self, RemoteWriteStats, RemoteWriteVersion};
use crate::sink::{SampleSink, SinkError};
use crate::{Tenant, exposition, jsonl};

/// Why an ingestion request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IngestFailure {
    /// The request is wrong; nothing of it was pushed.
    #[error(transparent)]
    Input(#[from] IngestError),
    /// The sink refused the valid batch.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// The request headers and parameters that steer decoding.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta<'a> {
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// `Content-Encoding`.
    pub content_encoding: Option<&'a str>,
    /// `extra_label=name=value` parameters, added to (or replacing labels of) every series.
    pub extra_labels: &'a [(String, String)],
}

/// What a successful request wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Float samples pushed.
    pub samples: usize,
    /// Native histogram samples written (always 0: they are refused).
    pub histograms: usize,
    /// Exemplars written (always 0: they are accepted and dropped).
    pub exemplars: usize,
}

/// Decodes and pushes requests into one sink under one set of limits.
#[derive(Clone)]
pub struct Ingestor {
    sink: Arc<dyn SampleSink>,
    limits: IngestLimits,
}

/// Buffers reused across requests on one thread, so steady-state ingestion does not allocate
/// (and fault in) a fresh decompression buffer and batch per request.
#[derive(Default)]
struct Scratch {
    raw: Vec<u8>,
    batch: MetricBatch,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Scratch larger than this (after an unusually big request) is freed rather than kept per thread.
const MAX_RETAINED_SCRATCH: usize = 24 << 20;

const TYPE_RW: &str = "promremotewrite";
const TYPE_IMPORT: &str = "vmimport";
const TYPE_PROM: &str = "prometheus";

impl Ingestor {
    /// An ingestor writing into `sink`.
    pub fn new(sink: Arc<dyn SampleSink>, limits: IngestLimits) -> Self {
        Self { sink, limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> &IngestLimits {
        &self.limits
    }

    /// A Prometheus remote-write request (1.0 or 2.0 by Content-Type).
    pub fn remote_write(
        &self,
        tenant: Tenant,
        body: &[u8],
        meta: &RequestMeta<'_>,
    ) -> Result<WriteSummary, IngestFailure> {
        self.run(TYPE_RW, tenant, body, meta, |raw, batch| {
            let version = RemoteWriteVersion::from_content_type(meta.content_type)?;
            let encoding = Encoding::from_header(meta.content_encoding)?;
            decompress::remote_write_body_into(body, encoding, self.limits.max_decompressed_bytes, raw)?;
            let stats: RemoteWriteStats = remote_write::decode(raw, version, batch)?;
            Ok(stats.exemplars)
        })
    }

    /// A `/api/v1/import` body: JSON lines, uncompressed unless Content-Encoding says zstd or
    /// snappy.
    pub fn import_json(
        &self,
        tenant: Tenant,
        body: &[u8],
        meta: &RequestMeta<'_>,
    ) -> Result<WriteSummary, IngestFailure> {
        self.run(TYPE_IMPORT, tenant, body, meta, |raw, batch| {
            self.import_body(body, meta, raw)?;
            jsonl::decode_import(raw, batch)?;
            Ok(0)
        })
    }

    /// A `/api/v1/import/prometheus` body: text exposition; lines without a timestamp get
    /// `default_timestamp` (ms), normally the request time.
    pub fn import_prometheus(
        &self,
        tenant: Tenant,
        body: &[u8],
        meta: &RequestMeta<'_>,
        default_timestamp: i64,
    ) -> Result<WriteSummary, IngestFailure> {
        self.run(TYPE_PROM, tenant, body, meta, |raw, batch| {
            self.import_body(body, meta, raw)?;
            let text = std::str::from_utf8(raw).map_err(|e| {
                IngestError::new(crate::RejectReason::Exposition, format!("body is not valid UTF-8: {e}"))
            })?;
            exposition::parse_into_batch(text, default_timestamp, batch)?;
            Ok(0)
        })
    }

    fn import_body(&self, body: &[u8], meta: &RequestMeta<'_>, out: &mut Vec<u8>) -> Result<(), IngestError> {
        let limit = self.limits.max_decompressed_bytes;
        match meta.content_encoding {
            None => decompress::identity_into(body, limit, out),
            Some(_) => match Encoding::from_header(meta.content_encoding)? {
                Encoding::Identity => decompress::identity_into(body, limit, out),
                Encoding::Snappy => decompress::snappy_into(body, limit, out),
                Encoding::Zstd => decompress::zstd_into(body, limit, out),
            },
        }
    }

    /// Decode (via `decode`, which returns the exemplar count), validate, push; count it all.
    fn run(
        &self,
        kind: &'static str,
        tenant: Tenant,
        body: &[u8],
        meta: &RequestMeta<'_>,
        decode: impl FnOnce(&mut Vec<u8>, &mut MetricBatch) -> Result<usize, IngestError>,
    ) -> Result<WriteSummary, IngestFailure> {
        metrics::counter!("strata_ingest_bytes_received_total", "type" => kind).increment(body.len() as u64);
        let mut scratch = SCRATCH.with(RefCell::take);
        let result = self.run_with(kind, tenant, meta, decode, &mut scratch);
        scratch.batch.clear();
        if scratch.raw.capacity() + scratch.batch.capacity_bytes() <= MAX_RETAINED_SCRATCH {
            SCRATCH.with(|cell| cell.replace(scratch));
        }
        result
    }

    fn run_with(
        &self,
        kind: &'static str,
        tenant: Tenant,
        meta: &RequestMeta<'_>,
        decode: impl FnOnce(&mut Vec<u8>, &mut MetricBatch) -> Result<usize, IngestError>,
        scratch: &mut Scratch,
    ) -> Result<WriteSummary, IngestFailure> {
        let Scratch { raw, batch } = scratch;
        batch.clear();
        let prepared = decode(raw, batch).and_then(|exemplars| {
            batch.apply_extra_labels(meta.extra_labels)?;
            self.limits.validate(batch, now_ms())?;
            Ok(exemplars)
        });
        let exemplars = match prepared {
            Ok(n) => n,
            Err(err) => {
                metrics::counter!("strata_rows_rejected_total", "reason" => err.reason.as_str())
                    .increment(batch.sample_count() as u64);
                metrics::counter!("strata_ingest_requests_total", "type" => kind, "result" => "bad_request")
                    .increment(1);
                tracing::debug!(kind, error = %err, "ingestion request refused");
                return Err(err.into());
            }
        };
        if batch.is_empty() {
            // Metadata-only requests (Prometheus sends them every minute) carry nothing to store.
            metrics::counter!("strata_ingest_requests_total", "type" => kind, "result" => "ok").increment(1);
            return Ok(WriteSummary::default());
        }
        match self.sink.push(tenant, batch) {
            Ok(outcome) => {
                metrics::counter!("strata_rows_inserted_total", "type" => kind).increment(outcome.samples_written);
                metrics::counter!("strata_ingest_requests_total", "type" => kind, "result" => "ok").increment(1);
                let _ = exemplars; // seen and dropped: see remote_write module docs.
                Ok(WriteSummary {
                    samples: batch.sample_count(),
                    histograms: 0,
                    exemplars: 0,
                })
            }
            Err(err) => {
                let result = match err {
                    SinkError::Unavailable(_) => "unavailable",
                    SinkError::Rejected(_) => "bad_request",
                };
                metrics::counter!("strata_ingest_requests_total", "type" => kind, "result" => result).increment(1);
                Err(err.into())
            }
        }
    }
}

/// Parses `extra_label` values (`name=value`) from query parameters.
pub fn parse_extra_labels<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<(String, String)>, IngestError> {
    values
        .into_iter()
        .map(|v| match v.split_once('=') {
            Some((name, value)) if crate::limits::is_valid_label_name(name) => Ok((name.to_owned(), value.to_owned())),
            _ => Err(IngestError::new(
                crate::RejectReason::BadParameter,
                format!(
                    "extra_label \"{}\" must be name=value with a valid label name",
                    crate::batch::truncate(v, 64)
                ),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompb::{Label, Sample, TimeSeries, WriteRequest, encode_snappy};
    use crate::sink::MemorySink;

    fn request(ts: i64) -> Vec<u8> {
        encode_snappy(&WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: ts,
                }],
                exemplars: vec![],
                histograms: vec![],
            }],
            metadata: vec![],
        })
    }

    #[test]
    fn remote_write_pushes_with_extra_labels() {
        let sink = Arc::new(MemorySink::new());
        let ing = Ingestor::new(sink.clone(), IngestLimits::default());
        let extra = parse_extra_labels(["env=prod"]).unwrap();
        let meta = RequestMeta {
            extra_labels: &extra,
            ..Default::default()
        };
        let out = ing.remote_write(Tenant::default(), &request(now_ms()), &meta).unwrap();
        assert_eq!(out.samples, 1);
        assert_eq!(sink.series()[0].labels[1], ("env".to_owned(), "prod".to_owned()));
    }

    #[test]
    fn invalid_request_pushes_nothing_and_sink_errors_pass_through() {
        let sink = Arc::new(MemorySink::new());
        let ing = Ingestor::new(sink.clone(), IngestLimits::default());
        let meta = RequestMeta::default();
        let err = ing
            .remote_write(Tenant::default(), &request(now_ms() + 10 * 86_400_000), &meta)
            .unwrap_err();
        assert!(matches!(err, IngestFailure::Input(ref e) if e.reason == crate::RejectReason::FutureTimestamp));
        assert_eq!(sink.push_count(), 0);
        sink.set_failure(Some(SinkError::Unavailable("full".into())));
        let err = ing
            .remote_write(Tenant::default(), &request(now_ms()), &meta)
            .unwrap_err();
        assert!(matches!(err, IngestFailure::Sink(SinkError::Unavailable(_))));
    }

    #[test]
    fn metadata_only_request_is_not_pushed() {
        let sink = Arc::new(MemorySink::new());
        let ing = Ingestor::new(sink.clone(), IngestLimits::default());
        let body = encode_snappy(&WriteRequest {
            timeseries: vec![],
            metadata: vec![crate::prompb::MetricMetadata {
                r#type: 1,
                metric_family_name: "up".into(),
                help: "h".into(),
                unit: String::new(),
            }],
        });
        let out = ing
            .remote_write(Tenant::default(), &body, &RequestMeta::default())
            .unwrap();
        assert_eq!(out.samples, 0);
        assert_eq!(sink.push_count(), 0);
    }

    #[test]
    fn bad_extra_label() {
        assert!(parse_extra_labels(["novalue"]).is_err());
        assert!(parse_extra_labels(["1a=b"]).is_err());
        assert_eq!(parse_extra_labels(["a=b=c"]).unwrap(), vec![("a".into(), "b=c".into())]);
    }
}
