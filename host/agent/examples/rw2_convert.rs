//! What remote-write 2.0 costs the sender: the queue holds 1.0 blocks, and a URL that speaks
//! 2.0 converts each block when it sends it (decompress, decode, re-encode with a symbol table,
//! compress). Builds `SERIES` node_exporter-like series (default 100k, one sample each), cuts
//! them into 10k-sample 1.0 blocks as the agent does, converts every block `ROUNDS` times
//! (default 5), and prints CPU seconds per million samples and the 2.0/1.0 size ratio.
//!
//! `cargo run --release -p strata-agent --example rw2_convert [SERIES] [ROUNDS]`

use std::time::Instant;

use strata_agent::RemoteWriter;
use strata_agent::remote_write::v1_block_to_v2;
use strata_ingest::MetricBatch;

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

#[allow(clippy::print_stdout, reason = "an example that reports figures")]
fn main() {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let mut batch = MetricBatch::new();
    let ts = 1_700_000_000_000;
    for i in 0..series {
        let cpu = (i % 64).to_string();
        let mode = ["user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice"][i % 8];
        let name = format!("node_metric_{}", i / 512);
        let instance = format!("10.1.{}.{}:9100", (i / 4096) % 256, (i / 16) % 256);
        let labels = [
            ("__name__", name.as_str()),
            ("cpu", cpu.as_str()),
            ("instance", instance.as_str()),
            ("job", "node"),
            ("mode", mode),
        ];
        if batch.add_series(labels, [(ts, i as f64 * 0.25)]).is_err() {
            break;
        }
    }
    let blocks = RemoteWriter::encode_blocks(&batch, 10_000);
    let v1_bytes: usize = blocks.iter().map(Vec::len).sum();
    let mut v2_bytes = 0;
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for _ in 0..rounds {
        v2_bytes = 0;
        for block in &blocks {
            match v1_block_to_v2(block) {
                Ok(v2) => v2_bytes += v2.len(),
                Err(err) => {
                    println!("conversion failed: {err}");
                    return;
                }
            }
        }
    }
    let cpu = cpu_seconds() - cpu;
    let samples = (batch.sample_count() * rounds) as f64;
    println!(
        "{} series in {} blocks, {rounds} rounds: {:.3} CPU s per million samples converted ({:.0} samples/s wall); 1.0 {} bytes, 2.0 {} bytes ({:.2}x)",
        batch.series_count(),
        blocks.len(),
        cpu / samples * 1e6,
        samples / wall.elapsed().as_secs_f64(),
        v1_bytes,
        v2_bytes,
        v2_bytes as f64 / v1_bytes as f64
    );
}
