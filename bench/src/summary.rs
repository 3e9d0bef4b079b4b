//! Turns every target's [`Figures`] into the report's rows.

use crate::report::{Fig, Report, Row};
use crate::run::Figures;
use crate::target::Kind;

const MIB: f64 = 1024.0 * 1024.0;

fn row(
    name: impl Into<String>,
    unit: &'static str,
    results: &[(Kind, Figures)],
    pick: impl Fn(&Figures) -> Fig,
) -> Row {
    Row {
        name: name.into(),
        unit,
        cells: results.iter().map(|(_, f)| pick(f)).collect(),
    }
}

fn scaled(f: &Fig, by: f64) -> Fig {
    f.clone().map(|v| v / by)
}

/// Builds the report; `series` is the number of active series fed to every target.
pub fn report(results: &[(Kind, Figures)], series: usize, batch: usize) -> Report {
    let mut rep = Report {
        targets: results.iter().map(|(k, _)| *k).collect(),
        ..Report::default()
    };
    let Some((_, first)) = results.first() else {
        return rep;
    };
    let clients: Vec<usize> = first.ingest.iter().map(|r| r.0).collect();

    let mut ingest = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        ingest.push(row(format!("ingestion rate, {c} clients"), "samples/s", results, |f| {
            f.ingest[i].1.clone()
        }));
        ingest.push(row(
            format!("server CPU, {c} clients"),
            "CPU s / 1M samples",
            results,
            |f| f.ingest[i].2.clone(),
        ));
    }
    ingest.push(row("rejected samples (all runs)", "samples", results, |f| {
        f.rejected.clone()
    }));
    rep.sections.push((
        format!("Ingestion: remote_write 1.0, snappy protobuf, {batch} samples per request"),
        ingest,
    ));

    let mut memory = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        memory.push(row(
            format!("peak RSS after ingestion, {c} clients"),
            "MiB",
            results,
            |f| scaled(&f.ingest[i].3, MIB),
        ));
    }
    memory.push(row(
        format!("peak RSS per active series ({series} series)"),
        "bytes",
        results,
        |f| scaled(&f.ingest[0].3, series as f64),
    ));
    memory.push(row("peak RSS after the query suite", "MiB", results, |f| {
        scaled(&f.rss_after_queries, MIB)
    }));
    rep.sections
        .push(("Memory (VmHWM of the server process)".to_owned(), memory));

    rep.sections.push((
        "Disk after flush + merge".to_owned(),
        vec![
            row("data (samples)", "bytes/sample", results, |f| f.disk.0.clone()),
            row("index", "bytes/sample", results, |f| f.disk.1.clone()),
            row("whole data directory", "bytes/sample", results, |f| f.disk.2.clone()),
        ],
    ));

    let suite = crate::queries::suite();
    let mut latency = vec![row(
        "check: stored / sent samples of node_load1",
        "ratio",
        results,
        |f| f.stored_share.clone(),
    )];
    let mut answers = Vec::new();
    for (i, q) in suite.iter().enumerate() {
        let pick = |g: fn(&crate::queries::QueryResult) -> Option<f64>| {
            move |f: &Figures| match &f.queries[i] {
                Ok(r) if r.failures > 0 && r.latencies.is_empty() => {
                    Err(format!("failed: {}", r.error.clone().unwrap_or_default()))
                }
                Ok(r) => g(r).ok_or_else(|| "n/a".to_owned()),
                Err(why) => Err(why.clone()),
            }
        };
        latency.push(row(
            format!("{} — median", q.name),
            "ms",
            results,
            pick(|r| r.median_ms()),
        ));
        latency.push(row(format!("{} — p90", q.name), "ms", results, pick(|r| r.p90_ms())));
        answers.push(row(
            q.name,
            "series/values",
            results,
            pick(|r| r.result_len.map(|n| n as f64)),
        ));
    }
    rep.sections
        .push(("Query latency (dashboard suite over the HTTP API)".to_owned(), latency));
    rep.sections.push((
        "Answer sizes (equal across targets when they hold the same data)".to_owned(),
        answers,
    ));

    let on_disk = results.iter().map(|(_, f)| f.startup.0).max().unwrap_or(0);
    rep.sections.push((
        "Start-up (spawn until ready and a query answers)".to_owned(),
        vec![
            row("empty data directory (ready only)", "s", results, |f| {
                f.empty_start.clone()
            }),
            row(
                format!("after restart with {on_disk} samples on disk"),
                "s",
                results,
                |f| f.startup.1.clone(),
            ),
        ],
    ));

    let c0 = clients.first().copied().unwrap_or(2);
    rep.sections.push((
        format!("Influx line protocol ({c0} clients, plain text)"),
        vec![
            row("ingestion rate", "samples/s", results, |f| f.influx.0.clone()),
            row("server CPU", "CPU s / 1M samples", results, |f| f.influx.1.clone()),
        ],
    ));
    for (_, f) in results {
        rep.notes.extend(f.notes.iter().cloned());
    }
    rep
}
