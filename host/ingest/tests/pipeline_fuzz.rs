//! Fuzz-style property tests of the whole ingestion path through the public API: whatever the
//! bytes, headers and parameters, the `Ingestor` returns a typed result, never panics, and
//! pushes either the whole valid request or nothing.

use std::sync::Arc;

use proptest::prelude::*;
use strata_ingest::limits::now_ms;
use strata_ingest::prompb::{Label, Sample, TimeSeries, WriteRequest, encode_snappy};
use strata_ingest::{IngestFailure, IngestLimits, Ingestor, MemorySink, RequestMeta, Tenant};

fn ingestor() -> (Arc<MemorySink>, Ingestor) {
    let sink = Arc::new(MemorySink::new());
    let limits = IngestLimits {
        max_decompressed_bytes: 1 << 20,
        ..IngestLimits::default()
    };
    (sink.clone(), Ingestor::new(sink, limits))
}

const CONTENT_TYPES: [Option<&str>; 4] = [
    None,
    Some("application/x-protobuf"),
    Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
    Some("text/plain"),
];
const ENCODINGS: [Option<&str>; 4] = [None, Some("snappy"), Some("zstd"), Some("br")];

fn arb_request() -> impl Strategy<Value = WriteRequest> {
    let series = (
        prop::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,6}|[0-9-]{1,3}", "\\PC{0,10}"), 0..6),
        prop::collection::vec((-5i64..5, any::<u64>()), 0..5),
    )
        .prop_map(|(labels, samples)| {
            let now = now_ms();
            TimeSeries {
                labels: labels.into_iter().map(|(name, value)| Label { name, value }).collect(),
                samples: samples
                    .into_iter()
                    .map(|(dt, bits)| Sample {
                        value: f64::from_bits(bits),
                        timestamp: now + dt * 1000,
                    })
                    .collect(),
                exemplars: vec![],
                histograms: vec![],
            }
        });
    prop::collection::vec(series, 0..6).prop_map(|timeseries| WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bodies under arbitrary headers: a typed answer, and nothing pushed on error.
    #[test]
    fn arbitrary_bodies(body in prop::collection::vec(any::<u8>(), 0..512), ct in 0usize..4, ce in 0usize..4) {
        let (sink, ing) = ingestor();
        let meta = RequestMeta { content_type: CONTENT_TYPES[ct], content_encoding: ENCODINGS[ce], extra_labels: &[] };
        for result in [
            ing.remote_write(Tenant::default(), &body, &meta),
            ing.import_json(Tenant::default(), &body, &meta),
            ing.import_prometheus(Tenant::default(), &body, &meta, 0),
        ] {
            if result.is_err() {
                prop_assert!(matches!(result, Err(IngestFailure::Input(_))));
            }
        }
        // Random bytes essentially never form a valid request; if one did, it was pushed whole.
        prop_assert!(sink.push_count() <= 3);
    }

    /// Valid-looking requests, some with bad label names, duplicate names or unsorted samples:
    /// either every sample arrives or none does.
    #[test]
    fn all_or_nothing(req in arb_request()) {
        let (sink, ing) = ingestor();
        let body = encode_snappy(&req);
        let sent: usize = req.timeseries.iter().map(|s| s.samples.len()).sum();
        match ing.remote_write(Tenant::default(), &body, &RequestMeta::default()) {
            Ok(summary) => {
                prop_assert_eq!(summary.samples, sent);
                prop_assert_eq!(sink.sample_count(), sent);
            }
            Err(IngestFailure::Input(err)) => {
                prop_assert_eq!(sink.sample_count(), 0);
                prop_assert!(err.message.starts_with("series #"), "{}", err.message);
            }
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    /// Flipping bytes of a valid compressed request never panics and never half-applies it.
    #[test]
    fn corrupted_requests(req in arb_request(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let (sink, ing) = ingestor();
        let mut body = encode_snappy(&req);
        if body.is_empty() {
            return Ok(());
        }
        for (at, byte) in flips {
            let i = at.index(body.len());
            body[i] ^= byte | 1;
        }
        let result = ing.remote_write(Tenant::default(), &body, &RequestMeta::default());
        if result.is_err() {
            prop_assert_eq!(sink.push_count(), 0);
        }
    }
}
