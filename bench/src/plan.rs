//! Request bodies, encoded once before any target is measured, so every target receives the
//! same bytes and the client spends its CPU on sending, not on encoding.

use std::ops::Range;

use crate::datagen::{Dataset, Scrape};

/// One request body and how many samples it carries.
#[derive(Debug, Clone)]
pub struct Body {
    /// The bytes to POST.
    pub bytes: Vec<u8>,
    /// Samples inside.
    pub samples: u32,
}

/// Every body of a run: `scrapes[s][c]` holds chunk `c` (a run of consecutive series) of scrape
/// round `s`. Bodies of one chunk always go through the same client, in scrape order, so no
/// series ever receives an older sample after a newer one.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Bodies per scrape round, per chunk.
    pub scrapes: Vec<Vec<Body>>,
    /// Samples in all bodies.
    pub samples: u64,
    /// Bytes of all bodies.
    pub bytes: u64,
}

impl Plan {
    /// Encodes the first `max_scrapes` scrapes of `data`, `batch` series per body, with `encode`
    /// turning one scrape's series range into a body.
    pub fn build(
        data: &Dataset,
        batch: usize,
        max_scrapes: usize,
        encode: impl Fn(&Dataset, &Scrape, Range<usize>) -> Vec<u8>,
    ) -> Plan {
        let batch = batch.max(1);
        let mut plan = Plan::default();
        for scrape in data.generator().take(max_scrapes) {
            let mut bodies = Vec::with_capacity(data.series_count().div_ceil(batch));
            let mut first = 0;
            while first < data.series_count() {
                let range = first..(first + batch).min(data.series_count());
                first = range.end;
                let samples = range.len() as u32;
                let bytes = encode(data, &scrape, range);
                plan.samples += u64::from(samples);
                plan.bytes += bytes.len() as u64;
                bodies.push(Body { bytes, samples });
            }
            plan.scrapes.push(bodies);
        }
        plan
    }
}
