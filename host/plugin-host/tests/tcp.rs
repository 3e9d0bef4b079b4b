//! Influx lines over a raw TCP socket, as Telegraf's socket_writer sends them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use strata_ingest::{IngestLimits, MemorySink};
use strata_plugin_host::{HostOptions, PluginHost};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn lines_over_tcp_are_stored_and_a_bad_chunk_does_not_close_the_stream() {
    let host =
        Arc::new(PluginHost::load(HostOptions::default(), vec![common::spec("influx", "strata_influx")]).unwrap());
    let sink = Arc::new(MemorySink::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(strata_plugin_host::lines::serve_tcp(
        listener,
        host,
        "influx".into(),
        sink.clone(),
        IngestLimits::default(),
    ));
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"disk,dev=sda used=1\ndisk,dev=sdb used=2\n")
        .await
        .unwrap();
    conn.flush().await.unwrap();
    wait_for(&sink, 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.write_all(b"broken line without fields\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.write_all(b"disk,dev=sdc used=3\n").await.unwrap();
    drop(conn);
    wait_for(&sink, 3).await;
    let names: Vec<String> = sink
        .series()
        .iter()
        .flat_map(|s| s.labels.iter().filter(|l| l.0 == "dev").map(|l| l.1.clone()))
        .collect();
    assert_eq!(names, ["sda", "sdb", "sdc"]);
}

async fn wait_for(sink: &MemorySink, samples: usize) {
    for _ in 0..200 {
        if sink.sample_count() >= samples {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("only {} of {samples} samples arrived", sink.sample_count());
}
