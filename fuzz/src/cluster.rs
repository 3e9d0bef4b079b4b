//! The cluster protocol as a storage node receives it: request payloads (or whole frames) from
//! the network, answered by the real insert and select handlers over a real storage.

use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use strata_cluster::proto::{self, Enc, WireFilter, op};
use strata_cluster::server::{Handler, insert_handler, select_handler};
use strata_cluster::tenants::TenantRegistry;
use strata_storage::data::TableOptions;
use strata_storage::index::IndexOptions;
use strata_storage::{Storage, StorageOptions, Tenant};

/// One storage node for the whole run: opening a storage per input would dominate the run, and
/// what earlier inputs wrote only gives later searches something to find.
struct Node {
    _dir: tempfile::TempDir,
    insert: Handler,
    select: Handler,
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let storage = Arc::new(
            Storage::open(StorageOptions {
                data_path: dir.path().to_path_buf(),
                table: TableOptions {
                    min_free_disk_bytes: 0,
                    ..TableOptions::default()
                },
                index: IndexOptions::default(),
            })
            .expect("a storage"),
        );
        let tenants = Arc::new(TenantRegistry::in_memory());
        Node {
            insert: insert_handler(Arc::clone(&storage), Arc::clone(&tenants)),
            select: select_handler(storage, tenants),
            _dir: dir,
        }
    })
}

/// A storage node's RPC: the first byte picks the service (bit 0: insert or select) and the
/// form (bit 1: a request payload as is, or a frame read from the stream as the server does,
/// length prefix and zstd included). Every response must start with a known status byte.
pub fn cluster_rpc(data: &[u8]) {
    let _ = respond(data);
}

/// [`cluster_rpc`]'s body: the response frames, or `None` when the input held no request
/// (a frame that did not decode).
pub fn respond(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let (&sel, rest) = data.split_first()?;
    let payload = if sel & 2 == 0 {
        rest.to_vec()
    } else {
        proto::read_frame(&mut Cursor::new(rest)).ok()?
    };
    let node = node();
    let handler = if sel & 1 == 0 { &node.insert } else { &node.select };
    let mut frames = Vec::new();
    handler(&payload, &mut |frame| {
        assert!(
            matches!(
                frame.first(),
                Some(&(proto::status::OK | proto::status::ERROR | proto::status::READ_ONLY))
            ),
            "a response frame without a known status: {:02x?}",
            &frame[..frame.len().min(16)]
        );
        frames.push(frame);
        // A bounded answer: stop a stream after a few blocks, as a client that went away.
        frames.len() < 64
    });
    assert!(!frames.is_empty(), "a request got no answer");
    Some(frames)
}

/// Seeds: a write of two series, a search and a label-values request over them, each as a
/// payload and as a frame.
pub fn seeds() -> Vec<Vec<u8>> {
    let tenant = Tenant {
        account_id: 1,
        project_id: 2,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut write = Enc::with_op(op::WRITE);
    write.tenant(tenant).u32(2);
    for job in ["a", "b"] {
        proto::put_series(
            &mut write,
            [("__name__", "up"), ("job", job)].into_iter(),
            &[now - 1000, now],
            &[1.0, f64::NAN],
        );
    }
    let filters = [WireFilter {
        name: "__name__".into(),
        op: 0,
        value: "up".into(),
    }];
    let mut search = Enc::with_op(op::SEARCH);
    search.tenant(tenant);
    proto::put_filters(&mut search, &filters);
    search.i64(0).i64(i64::MAX / 2).u64(1000);
    let mut values = Enc::with_op(op::LABEL_VALUES);
    values.tenant(tenant).str("job");
    proto::put_filters(&mut values, &filters);
    values.i64(0).i64(i64::MAX / 2).u64(100);
    let mut out = Vec::new();
    for (service, payload) in [(0u8, write.0), (1, search.0), (1, values.0)] {
        let mut plain = vec![service];
        plain.extend_from_slice(&payload);
        out.push(plain);
        let mut framed = vec![service | 2];
        framed.extend_from_slice(&proto::encode_frame(&payload).expect("a frame"));
        out.push(framed);
    }
    out
}
