//! Remote-write 1.0 bodies (snappy-compressed protobuf) through `strata-ingest`'s messages.

use std::ops::Range;

use strata_ingest::prompb::{Label, Sample, TimeSeries, WriteRequest, encode_snappy};

use crate::datagen::{Dataset, Scrape};

/// Headers every remote-write request carries.
pub const HEADERS: [(&str, &str); 3] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

/// Series `range` of `scrape`, one sample each, as a snappy-compressed `WriteRequest`: the shape
/// Prometheus and vmagent send (one scrape's samples of many series per request).
pub fn encode(data: &Dataset, scrape: &Scrape, range: Range<usize>) -> Vec<u8> {
    let timeseries = range
        .map(|i| TimeSeries {
            labels: data
                .labels(i)
                .iter()
                .map(|(name, value)| Label {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            samples: vec![Sample {
                value: scrape.values[i],
                timestamp: scrape.timestamps[data.instance_of(i)],
            }],
            ..Default::default()
        })
        .collect();
    encode_snappy(&WriteRequest {
        timeseries,
        ..Default::default()
    })
}

/// An empty request: asks whether the endpoint exists without adding data.
pub fn empty() -> Vec<u8> {
    encode_snappy(&WriteRequest::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen::GenConfig;
    use crate::plan::Plan;

    #[test]
    fn same_seed_same_bytes() {
        let build = |seed| {
            let data = Dataset::new(GenConfig::new(seed, 300, 5, 1_700_000_000_000));
            Plan::build(&data, 100, usize::MAX, encode)
        };
        let (a, b, c) = (build(11), build(11), build(12));
        assert_eq!(a.samples, 402 * 5);
        assert_eq!(a.scrapes.len(), 5);
        let bytes = |p: &Plan| -> Vec<Vec<u8>> { p.scrapes.iter().flatten().map(|b| b.bytes.clone()).collect() };
        assert_eq!(bytes(&a), bytes(&b));
        assert_ne!(bytes(&a), bytes(&c));
        // The body really is snappy-framed protobuf with our labels inside.
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&a.scrapes[0][0].bytes)
            .expect("snappy");
        assert!(raw.windows(22).any(|w| w == b"node_cpu_seconds_total"));
    }
}
