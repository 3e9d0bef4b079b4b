//! InfluxDB line protocol bodies of the same samples (one field, `value`, per line).
//!
//! VictoriaMetrics runs with `-influxSkipSingleField`, so a line `m,tags value=1` becomes the
//! series `m{tags}`: the same series names as over remote_write.

use std::fmt::Write as _;
use std::ops::Range;

use crate::datagen::{Dataset, Scrape};

/// Escapes a tag key or value: commas, spaces and equals signs get a backslash.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        if matches!(c, ',' | ' ' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Series `range` of `scrape` as line protocol with nanosecond timestamps.
pub fn encode(data: &Dataset, scrape: &Scrape, range: Range<usize>) -> Vec<u8> {
    let mut out = String::with_capacity(range.len() * 160);
    for i in range {
        let labels = data.labels(i);
        let mut name = "";
        for (n, v) in labels {
            if n == "__name__" {
                name = v;
            }
        }
        escape_into(&mut out, name);
        for (n, v) in labels.iter().filter(|(n, _)| n != "__name__") {
            out.push(',');
            escape_into(&mut out, n);
            out.push('=');
            escape_into(&mut out, v);
        }
        let ts_ns = i128::from(scrape.timestamps[data.instance_of(i)]) * 1_000_000;
        // Writing into a String cannot fail.
        let _ = writeln!(out, " value={} {ts_ns}", scrape.values[i]);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen::GenConfig;

    #[test]
    fn lines_are_escaped_and_deterministic() {
        let data = Dataset::new(GenConfig::new(1, 134, 2, 1_700_000_000_000));
        let scrape = data.generator().next().expect("one scrape");
        let body = String::from_utf8(encode(&data, &scrape, 0..134)).expect("utf8");
        assert_eq!(body.lines().count(), 134);
        let first = body.lines().next().expect("a line");
        assert!(
            first.starts_with("node_cpu_seconds_total,cpu=0,instance=10.1.0.0:9100,job=node,mode=idle,"),
            "{first}"
        );
        assert!(body.contains("mountpoint=/var/lib/data"));
        let again = encode(&data, &data.generator().next().expect("one scrape"), 0..134);
        assert_eq!(body.as_bytes(), &again[..]);
        let mut s = String::new();
        escape_into(&mut s, "a b,c=d");
        assert_eq!(s, "a\\ b\\,c\\=d");
    }
}
