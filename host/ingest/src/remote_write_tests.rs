use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::prompb::{self, Label, Sample, TimeSeries, WriteRequest, v2};

fn label(n: &str, v: &str) -> Label {
    Label {
        name: n.into(),
        value: v.into(),
    }
}

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

type Collected = Vec<(Vec<(String, String)>, Vec<(i64, u64)>)>;

fn collect(batch: &MetricBatch) -> Collected {
    batch
        .iter()
        .map(|s| {
            (
                s.labels().map(|(n, v)| (n.to_owned(), v.to_owned())).collect(),
                s.timestamps()
                    .iter()
                    .zip(s.values())
                    .map(|(&t, v)| (t, v.to_bits()))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn v1_decodes_like_prost() {
    let req = WriteRequest {
        timeseries: vec![
            series(&[("__name__", "up"), ("job", "node")], &[(1000, 1.0), (2000, -0.5)]),
            series(&[("__name__", "stale")], &[(-5, f64::from_bits(0x7ff0_0000_0000_0002))]),
        ],
        metadata: vec![prompb::MetricMetadata {
            r#type: 1,
            metric_family_name: "up".into(),
            help: "h".into(),
            unit: String::new(),
        }],
    };
    let mut batch = MetricBatch::new();
    let stats = decode_v1(&req.encode_to_vec(), &mut batch).unwrap();
    assert_eq!(stats.samples, 3);
    assert_eq!(stats.metadata, 1);
    let got = collect(&batch);
    assert_eq!(
        got[0].0,
        vec![("__name__".into(), "up".into()), ("job".into(), "node".into())]
    );
    assert_eq!(got[0].1, vec![(1000, 1.0f64.to_bits()), (2000, (-0.5f64).to_bits())]);
    assert_eq!(got[1].1, vec![(-5, 0x7ff0_0000_0000_0002)]);
}

#[test]
fn v1_default_fields_and_unknown_fields() {
    // A sample with value 0 and timestamp 0 is encoded as an empty message.
    let req = WriteRequest {
        timeseries: vec![series(&[("a", "b")], &[(0, 0.0)])],
        metadata: vec![],
    };
    let mut raw = req.encode_to_vec();
    // An unknown field 9 (varint) at the top level must be skipped.
    raw.extend_from_slice(&[0x48, 0x01]);
    let mut batch = MetricBatch::new();
    decode_v1(&raw, &mut batch).unwrap();
    assert_eq!(collect(&batch)[0].1, vec![(0, 0)]);
}

#[test]
fn v1_histograms_are_refused() {
    let mut ts = series(&[("a", "b")], &[]);
    ts.histograms.push(prompb::Histogram::default());
    let req = WriteRequest {
        timeseries: vec![ts],
        metadata: vec![],
    };
    let err = decode_v1(&req.encode_to_vec(), &mut MetricBatch::new()).unwrap_err();
    assert_eq!(err.reason, RejectReason::NativeHistogram);
}

#[test]
fn v1_garbage_is_a_protobuf_error_with_offset() {
    let err = decode_v1(b"\x0a\x10garbage", &mut MetricBatch::new()).unwrap_err();
    assert_eq!(err.reason, RejectReason::Protobuf);
    assert!(err.message.contains("at byte"), "{err}");
    let bad_utf8 = WriteRequest {
        timeseries: vec![series(&[("a", "b")], &[(1, 1.0)])],
        metadata: vec![],
    }
    .encode_to_vec();
    let mut bad = bad_utf8.clone();
    let pos = bad.iter().rposition(|&b| b == b'b').unwrap();
    bad[pos] = 0xff;
    let err = decode_v1(&bad, &mut MetricBatch::new()).unwrap_err();
    assert!(err.message.contains("UTF-8"), "{err}");
}

fn v2_request() -> v2::Request {
    v2::Request {
        symbols: vec![
            "".into(),
            "__name__".into(),
            "requests_total".into(),
            "job".into(),
            "api".into(),
            "help".into(),
        ],
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            samples: vec![v2::Sample {
                value: 7.0,
                timestamp: 100,
            }],
            histograms: vec![],
            exemplars: vec![v2::Exemplar {
                labels_refs: vec![3, 4],
                value: 1.0,
                timestamp: 99,
            }],
            metadata: Some(v2::Metadata {
                r#type: 1,
                help_ref: 5,
                unit_ref: 0,
            }),
            created_timestamp: 50,
        }],
    }
}

#[test]
fn v2_resolves_symbols() {
    let mut batch = MetricBatch::new();
    let stats = decode_v2(&v2_request().encode_to_vec(), &mut batch).unwrap();
    assert_eq!(stats.samples, 1);
    assert_eq!(stats.exemplars, 1);
    assert_eq!(stats.metadata, 1);
    let got = collect(&batch);
    assert_eq!(
        got[0].0,
        vec![
            ("__name__".into(), "requests_total".into()),
            ("job".into(), "api".into())
        ]
    );
    assert_eq!(got[0].1, vec![(100, 7.0f64.to_bits())]);
}

#[test]
fn v2_bad_refs_and_histograms_are_refused() {
    let mut req = v2_request();
    req.timeseries[0].labels_refs = vec![1, 99];
    let err = decode_v2(&req.encode_to_vec(), &mut MetricBatch::new()).unwrap_err();
    assert!(err.message.contains("symbol 99"), "{err}");

    let mut req = v2_request();
    req.timeseries[0].labels_refs = vec![1, 2, 3];
    let err = decode_v2(&req.encode_to_vec(), &mut MetricBatch::new()).unwrap_err();
    assert!(err.message.contains("odd number"), "{err}");

    let mut req = v2_request();
    req.timeseries[0].metadata = Some(v2::Metadata {
        r#type: 1,
        help_ref: 1000,
        unit_ref: 0,
    });
    assert!(decode_v2(&req.encode_to_vec(), &mut MetricBatch::new()).is_err());

    let mut req = v2_request();
    req.timeseries[0].histograms.push(prompb::Histogram::default());
    let err = decode_v2(&req.encode_to_vec(), &mut MetricBatch::new()).unwrap_err();
    assert_eq!(err.reason, RejectReason::NativeHistogram);
}

#[test]
fn content_type_negotiation() {
    use RemoteWriteVersion::*;
    assert_eq!(RemoteWriteVersion::from_content_type(None).unwrap(), V1);
    assert_eq!(
        RemoteWriteVersion::from_content_type(Some("application/x-protobuf")).unwrap(),
        V1
    );
    assert_eq!(
        RemoteWriteVersion::from_content_type(Some("application/x-protobuf;proto=prometheus.WriteRequest")).unwrap(),
        V1
    );
    assert_eq!(
        RemoteWriteVersion::from_content_type(Some(v2::CONTENT_TYPE)).unwrap(),
        V2
    );
    for bad in ["application/json", "application/x-protobuf;proto=foo.Bar", "text/plain"] {
        let err = RemoteWriteVersion::from_content_type(Some(bad)).unwrap_err();
        assert_eq!(err.reason, RejectReason::UnsupportedMediaType, "{bad}");
    }
}

fn arb_series() -> impl Strategy<Value = TimeSeries> {
    (
        prop::collection::vec(("[a-z_]{1,8}", "\\PC{0,12}"), 0..5),
        prop::collection::vec((any::<i64>(), any::<u64>()), 0..6),
    )
        .prop_map(|(labels, samples)| TimeSeries {
            labels: labels.into_iter().map(|(name, value)| Label { name, value }).collect(),
            samples: samples
                .into_iter()
                .map(|(timestamp, bits)| Sample {
                    value: f64::from_bits(bits),
                    timestamp,
                })
                .collect(),
            exemplars: vec![],
            histograms: vec![],
        })
}

proptest! {
    /// The hand-written decoder agrees with prost on every well-formed request.
    #[test]
    fn v1_matches_prost(timeseries in prop::collection::vec(arb_series(), 0..6)) {
        let req = WriteRequest { timeseries, metadata: vec![] };
        let mut batch = MetricBatch::new();
        decode_v1(&req.encode_to_vec(), &mut batch).unwrap();
        prop_assert_eq!(batch.series_count(), req.timeseries.len());
        for (s, want) in batch.iter().zip(&req.timeseries) {
            let labels: Vec<_> = s.labels().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
            let want_labels: Vec<_> = want.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
            prop_assert_eq!(labels, want_labels);
            let samples: Vec<_> = s.timestamps().iter().zip(s.values()).map(|(&t, v)| (t, v.to_bits())).collect();
            let want_samples: Vec<_> = want.samples.iter().map(|x| (x.timestamp, x.value.to_bits())).collect();
            prop_assert_eq!(samples, want_samples);
        }
    }

    /// Arbitrary bytes never panic either decoder.
    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_v1(&bytes, &mut MetricBatch::new());
        let _ = decode_v2(&bytes, &mut MetricBatch::new());
    }

    /// Truncating a valid request anywhere gives an error or a prefix, never a panic.
    #[test]
    fn truncation_never_panics(timeseries in prop::collection::vec(arb_series(), 1..4), cut in any::<prop::sample::Index>()) {
        let raw = WriteRequest { timeseries, metadata: vec![] }.encode_to_vec();
        let cut = cut.index(raw.len());
        let _ = decode_v1(&raw[..cut], &mut MetricBatch::new());
    }
}
