//! Prometheus remote-write wire messages, declared by hand for prost (no protoc at build time).
//!
//! Two schemas live here:
//! - remote-write 1.0, protobuf package `prometheus` ([`WriteRequest`] and friends);
//! - remote-write 2.0, protobuf package `io.prometheus.write.v2` (module [`v2`]).
//!
//! Field numbers and types follow the published `.proto` files exactly; they are the contract
//! with every sender. Native histograms are declared so that a request carrying them decodes
//! (and can be refused or converted deliberately) instead of failing as garbage.
//!
//! These types are convenient for senders (the load generator, tests). The server's hot path
//! decodes the wire format directly into a [`crate::MetricBatch`] and does not allocate these.

use prost::Message;

/// Remote-write 1.0 request: `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series with their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric metadata (type, help, unit) Prometheus sends now and then. Field 2 is reserved.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// One series of a 1.0 request: its labels and samples.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Labels, sorted by name as the spec requires of senders.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Float samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Exemplars attached to this series.
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// Native histogram samples.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// A label name/value pair.
#[derive(Clone, PartialEq, Eq, Hash, Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// One float sample.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Sample {
    /// The value; NaN bit patterns (including the stale marker) travel unchanged.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// An exemplar of remote-write 1.0.
#[derive(Clone, PartialEq, Message)]
pub struct Exemplar {
    /// Exemplar labels (a trace id, typically).
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The exemplar value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// Metadata of a metric family in remote-write 1.0.
#[derive(Clone, PartialEq, Message)]
pub struct MetricMetadata {
    /// The metric type; see [`MetricType`].
    #[prost(enumeration = "MetricType", tag = "1")]
    pub r#type: i32,
    /// The metric family name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// Help text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Unit.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Metric type of remote-write 1.0 metadata (`prometheus.MetricMetadata.MetricType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    /// Unknown type.
    Unknown = 0,
    /// Counter.
    Counter = 1,
    /// Gauge.
    Gauge = 2,
    /// Classic histogram.
    Histogram = 3,
    /// Gauge histogram.
    Gaugehistogram = 4,
    /// Summary.
    Summary = 5,
    /// Info.
    Info = 6,
    /// State set.
    Stateset = 7,
}

/// A native histogram sample. The wire layout is identical in 1.0 and 2.0, so both share it.
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    /// Observation count, integer or float.
    #[prost(oneof = "histogram::Count", tags = "1, 2")]
    pub count: Option<histogram::Count>,
    /// Sum of observations.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// Bucket schema: -4..=8 exponential, -53 custom bounds.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// Width of the zero bucket.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// Zero-bucket count, integer or float.
    #[prost(oneof = "histogram::ZeroCount", tags = "6, 7")]
    pub zero_count: Option<histogram::ZeroCount>,
    /// Spans of negative buckets.
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// Delta-encoded integer counts of negative buckets.
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// Absolute float counts of negative buckets.
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    /// Spans of positive buckets.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// Delta-encoded integer counts of positive buckets.
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// Absolute float counts of positive buckets.
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// Counter-reset hint; see [`histogram::ResetHint`].
    #[prost(enumeration = "histogram::ResetHint", tag = "14")]
    pub reset_hint: i32,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// Upper bounds of custom buckets (schema -53).
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
}

/// Nested types of [`Histogram`].
pub mod histogram {
    /// Observation count.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum Count {
        /// Integer histogram count.
        #[prost(uint64, tag = "1")]
        CountInt(u64),
        /// Float histogram count.
        #[prost(double, tag = "2")]
        CountFloat(f64),
    }

    /// Zero-bucket count.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum ZeroCount {
        /// Integer histogram zero count.
        #[prost(uint64, tag = "6")]
        ZeroCountInt(u64),
        /// Float histogram zero count.
        #[prost(double, tag = "7")]
        ZeroCountFloat(f64),
    }

    /// Counter-reset hint.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum ResetHint {
        /// Must be detected by comparing with the previous histogram.
        Unknown = 0,
        /// First histogram after a reset.
        Yes = 1,
        /// No reset since the previous histogram.
        No = 2,
        /// Gauge histogram: resets do not apply.
        Gauge = 3,
    }
}

/// A run of consecutive buckets of a native histogram.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct BucketSpan {
    /// Gap to the previous span (or the start index of the first span).
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Number of consecutive buckets.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// Remote-write 2.0 messages (`io.prometheus.write.v2`).
pub mod v2 {
    use prost::Message;

    pub use super::{BucketSpan, Histogram, histogram};

    /// The Content-Type a 2.0 sender uses.
    pub const CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

    /// A 2.0 request: a symbol table plus series referring to it.
    #[derive(Clone, PartialEq, Message)]
    pub struct Request {
        /// De-duplicated strings; index 0 must be the empty string. Fields 1–3 are reserved.
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        /// The series.
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// One series of a 2.0 request.
    #[derive(Clone, PartialEq, Message)]
    pub struct TimeSeries {
        /// Pairs of symbol indices: name, value, name, value, …
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        /// Float samples, oldest first.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        /// Native histogram samples, oldest first.
        #[prost(message, repeated, tag = "3")]
        pub histograms: Vec<Histogram>,
        /// Exemplars.
        #[prost(message, repeated, tag = "4")]
        pub exemplars: Vec<Exemplar>,
        /// Metadata of the series' metric.
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
        /// When the counter started, in ms; 0 means unset.
        #[prost(int64, tag = "6")]
        pub created_timestamp: i64,
    }

    /// One float sample.
    #[derive(Clone, Copy, PartialEq, Message)]
    pub struct Sample {
        /// The value.
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the Unix epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    /// An exemplar of remote-write 2.0.
    #[derive(Clone, PartialEq, Message)]
    pub struct Exemplar {
        /// Pairs of symbol indices for the exemplar's labels.
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        /// The exemplar value.
        #[prost(double, tag = "2")]
        pub value: f64,
        /// Milliseconds since the Unix epoch; 0 means unset.
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// Metadata of a series' metric.
    #[derive(Clone, Copy, PartialEq, Message)]
    pub struct Metadata {
        /// The metric type; see [`MetricType`].
        #[prost(enumeration = "MetricType", tag = "1")]
        pub r#type: i32,
        /// Symbol index of the help text.
        #[prost(uint32, tag = "3")]
        pub help_ref: u32,
        /// Symbol index of the unit.
        #[prost(uint32, tag = "4")]
        pub unit_ref: u32,
    }

    /// Metric type of 2.0 metadata.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        /// Not given.
        Unspecified = 0,
        /// Counter.
        Counter = 1,
        /// Gauge.
        Gauge = 2,
        /// Classic histogram.
        Histogram = 3,
        /// Gauge histogram.
        Gaugehistogram = 4,
        /// Summary.
        Summary = 5,
        /// Info.
        Info = 6,
        /// State set.
        Stateset = 7,
    }

    /// Encodes a 2.0 request as a sender does: protobuf, then snappy block format.
    ///
    /// # Panics
    /// If the encoded request exceeds snappy's maximum input (about 4 GiB), which no sane
    /// sender produces.
    pub fn encode_snappy(req: &Request) -> Vec<u8> {
        super::snappy_block(&req.encode_to_vec())
    }
}

/// The Content-Type a 1.0 sender uses.
pub const CONTENT_TYPE_V1: &str = "application/x-protobuf";

/// Encodes a 1.0 request as Prometheus sends it: protobuf, then snappy *block* format (not the
/// framed stream format).
///
/// # Panics
/// If the encoded request exceeds snappy's maximum input (about 4 GiB), which no sane sender
/// produces.
pub fn encode_snappy(req: &WriteRequest) -> Vec<u8> {
    snappy_block(&req.encode_to_vec())
}

/// Encodes a 1.0 request as protobuf compressed with zstd (one frame with its content size),
/// as sent with `Content-Encoding: zstd`.
pub fn encode_zstd(req: &WriteRequest, level: i32) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(&req.encode_to_vec(), level)
}

fn snappy_block(raw: &[u8]) -> Vec<u8> {
    #[allow(clippy::expect_used)]
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .expect("remote-write request larger than snappy's 4 GiB maximum")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    Label {
                        name: "job".into(),
                        value: "node".into(),
                    },
                ],
                samples: vec![
                    Sample {
                        value: 1.0,
                        timestamp: 1_700_000_000_000,
                    },
                    Sample {
                        value: f64::from_bits(0x7ff0_0000_0000_0002),
                        timestamp: 1_700_000_015_000,
                    },
                ],
                exemplars: vec![],
                histograms: vec![],
            }],
            metadata: vec![MetricMetadata {
                r#type: MetricType::Gauge as i32,
                metric_family_name: "up".into(),
                help: "whether the target is up".into(),
                unit: String::new(),
            }],
        }
    }

    #[test]
    fn v1_round_trips_through_snappy() {
        let req = sample_request();
        let wire = encode_snappy(&req);
        let raw = snap::raw::Decoder::new().decompress_vec(&wire).unwrap();
        let back = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(back.timeseries.len(), 1);
        assert_eq!(back.timeseries[0].labels, req.timeseries[0].labels);
        // The stale marker's exact bit pattern survives (PartialEq on NaN would not show it).
        assert_eq!(back.timeseries[0].samples[1].value.to_bits(), 0x7ff0_0000_0000_0002);
        assert_eq!(back.metadata, req.metadata);
    }

    #[test]
    fn v1_round_trips_through_zstd() {
        let req = sample_request();
        let wire = encode_zstd(&req, 1).unwrap();
        let raw = zstd::bulk::decompress(&wire, 1 << 20).unwrap();
        assert_eq!(
            WriteRequest::decode(raw.as_slice()).unwrap().timeseries[0].labels.len(),
            2
        );
    }

    #[test]
    fn v2_round_trips_with_symbols_and_histograms() {
        let req = v2::Request {
            symbols: vec![
                "".into(),
                "__name__".into(),
                "http_requests_total".into(),
                "help!".into(),
            ],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![v2::Sample {
                    value: 3.0,
                    timestamp: 10,
                }],
                histograms: vec![Histogram {
                    count: Some(histogram::Count::CountInt(5)),
                    schema: 3,
                    zero_count: Some(histogram::ZeroCount::ZeroCountFloat(1.5)),
                    positive_spans: vec![BucketSpan { offset: -2, length: 2 }],
                    positive_deltas: vec![2, -1],
                    timestamp: 10,
                    ..Default::default()
                }],
                exemplars: vec![v2::Exemplar {
                    labels_refs: vec![],
                    value: 1.0,
                    timestamp: 9,
                }],
                metadata: Some(v2::Metadata {
                    r#type: v2::MetricType::Counter as i32,
                    help_ref: 3,
                    unit_ref: 0,
                }),
                created_timestamp: 5,
            }],
        };
        let wire = v2::encode_snappy(&req);
        let raw = snap::raw::Decoder::new().decompress_vec(&wire).unwrap();
        assert_eq!(v2::Request::decode(raw.as_slice()).unwrap(), req);
    }

    #[test]
    fn v1_message_read_as_v2_is_empty_not_garbage() {
        // Fields 1..=3 are reserved in v2 so a mislabelled 1.0 body decodes as an empty request.
        let raw = sample_request().encode_to_vec();
        let as_v2 = v2::Request::decode(raw.as_slice()).unwrap();
        assert!(as_v2.timeseries.is_empty() && as_v2.symbols.is_empty());
    }
}
