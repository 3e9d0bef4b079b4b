//! The WIT `session` resource through the host: a stream of chunks in one instance, failures
//! that break only the session, and the listing of TCP/UDP listeners with their counters.

mod common;

use std::sync::Arc;
use std::time::Duration;

use strata_ingest::{IngestLimits, MemorySink, MetricBatch};
use strata_plugin_host::{CallFailure, HostOptions, PluginError, PluginHost, StreamSession};
use tokio::io::AsyncWriteExt;

fn host() -> PluginHost {
    PluginHost::load(
        HostOptions::default(),
        vec![
            common::spec("influx", "strata_influx"),
            common::spec("hostile", "strata_hostile"),
        ],
    )
    .unwrap()
}

#[test]
fn a_session_parses_chunk_after_chunk_and_keeps_going_after_a_bad_one() {
    let host = host();
    let influx = host.ingest_plugin("influx").unwrap();
    let mut session = StreamSession::open(influx, &[]).unwrap();
    let mut out = MetricBatch::new();
    session.push(b"m,host=a v=1 1000000000\n", 5, &mut out).unwrap();
    assert_eq!(out.sample_count(), 1);
    let err = session.push(b"no fields here\n", 5, &mut out).unwrap_err();
    assert!(matches!(err, PluginError::Parse { .. }), "{err}");
    assert!(!session.is_broken(), "a parse error must not end the session");
    session
        .push(b"m,host=b v=2 2000000000\nm,host=c v=3\n", 7, &mut out)
        .unwrap();
    assert_eq!(out.sample_count(), 2);
    session.finish(&mut out).unwrap();
    assert!(out.is_empty(), "nothing was buffered");
}

#[test]
fn a_trap_breaks_the_session_and_a_new_one_works() {
    let host = host();
    let hostile = host.ingest_plugin("hostile").unwrap();
    let mut trapping = StreamSession::open(Arc::clone(&hostile), &common::params(&[("mode", "trap")])).unwrap();
    let mut out = MetricBatch::new();
    let err = trapping.push(b"x\n", 1, &mut out).unwrap_err();
    assert!(
        matches!(
            &err,
            PluginError::Call {
                failure: CallFailure::Trap(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(trapping.is_broken());
    assert!(
        trapping.push(b"x\n", 1, &mut out).is_err(),
        "a broken session refuses chunks"
    );

    let mut timing_out = StreamSession::open(Arc::clone(&hostile), &common::params(&[("mode", "loop")])).unwrap();
    let err = timing_out.push(b"x\n", 1, &mut out).unwrap_err();
    assert!(
        matches!(
            &err,
            PluginError::Call {
                failure: CallFailure::Timeout { .. },
                ..
            }
        ),
        "{err}"
    );

    let mut fine = StreamSession::open(hostile, &common::params(&[("mode", "ok")])).unwrap();
    fine.push(b"x\n", 1, &mut out).unwrap();
    assert_eq!(out.sample_count(), 1);
}

#[tokio::test]
async fn the_listing_shows_listeners_with_their_counters() {
    let host = Arc::new(host());
    let sink = Arc::new(MemorySink::new());
    let tcp_addr = spawn_tcp(&host, &sink).await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_addr = udp.local_addr().unwrap();
    tokio::spawn(strata_plugin_host::lines::serve_udp(
        udp,
        Arc::clone(&host),
        "influx".into(),
        sink.clone(),
        IngestLimits::default(),
    ));

    let mut conn = tokio::net::TcpStream::connect(tcp_addr).await.unwrap();
    conn.write_all(b"t,via=tcp v=1\n").await.unwrap();
    conn.flush().await.unwrap();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"u,via=udp v=1\n", udp_addr).unwrap();
    sender.send_to(b"broken\n", udp_addr).unwrap();

    let listing = || host.list().into_iter().find(|p| p.name == "influx").unwrap().listeners;
    for _ in 0..200 {
        let l = listing();
        if l.iter().map(|l| l.samples + l.dropped_chunks).sum::<u64>() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listeners = listing();
    assert_eq!(listeners.len(), 2, "{listeners:?}");
    let t = listeners.iter().find(|l| l.protocol == "tcp").unwrap();
    assert_eq!(t.address, tcp_addr.to_string());
    assert_eq!((t.open_connections, t.connections_total), (1, 1));
    assert_eq!((t.chunks, t.samples, t.dropped_chunks), (1, 1, 0));
    let u = listeners.iter().find(|l| l.protocol == "udp").unwrap();
    assert_eq!(u.address, udp_addr.to_string());
    assert_eq!((u.chunks, u.samples, u.dropped_chunks), (1, 1, 1));
    assert!(
        host.list()
            .iter()
            .find(|p| p.name == "hostile")
            .unwrap()
            .listeners
            .is_empty()
    );

    drop(conn);
    for _ in 0..200 {
        if listing().iter().all(|l| l.open_connections == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listing().iter().map(|l| l.open_connections).sum::<u64>(), 0);
    assert_eq!(sink.sample_count(), 2);
}

#[tokio::test]
async fn a_long_lived_connection_moves_to_the_reloaded_version() {
    let host = Arc::new(host());
    let sink = Arc::new(MemorySink::new());
    let addr = spawn_tcp(&host, &sink).await;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"r,n=1 v=1\n").await.unwrap();
    conn.flush().await.unwrap();
    wait_for(&sink, 1).await;
    let before = host.ingest_plugin("influx").unwrap();
    for (name, result) in host.reload() {
        result.unwrap_or_else(|e| panic!("reload of {name} failed: {e}"));
    }
    let after = host.ingest_plugin("influx").unwrap();
    assert!(!Arc::ptr_eq(&before, &after), "reload must load a new version");
    conn.write_all(b"r,n=2 v=2\n").await.unwrap();
    conn.flush().await.unwrap();
    wait_for(&sink, 2).await;
    // The second chunk ran on the new version: its session was opened and pushed there.
    let calls = host.list().into_iter().find(|p| p.name == "influx").unwrap().calls;
    assert!(calls >= 2, "the new version saw {calls} calls");
}

/// Serves the influx plugin on a TCP port of its own; returns the address.
async fn spawn_tcp(host: &Arc<PluginHost>, sink: &Arc<MemorySink>) -> std::net::SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(strata_plugin_host::lines::serve_tcp(
        tcp,
        Arc::clone(host),
        "influx".into(),
        sink.clone(),
        IngestLimits::default(),
    ));
    addr
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
