//! `[cluster]`: the storage, insert and select roles (DESIGN.md §2, FORMATS.md §5).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{ByteSize, ConfigError, HumanDuration};

/// `[cluster]`: where the cluster roles listen and which storage nodes they talk to.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Storage nodes as `host[:port]`. For the insert role the port defaults to 8400 (insert
    /// RPC), for the select role to 8401 (select RPC).
    pub storage_nodes: Vec<String>,
    /// The storage role's insert RPC listener.
    pub insert_listen_addr: SocketAddr,
    /// The storage role's select RPC listener.
    pub select_listen_addr: SocketAddr,
    /// Copies of every series on distinct storage nodes (insert), and how many failed nodes a
    /// query tolerates before it is partial (select): use the same value on both.
    pub replication_factor: usize,
    /// Select: answer 503 instead of a partial result when storage nodes fail.
    pub deny_partial_response: bool,
    /// Insert: the buffer each storage node gets in the insert process. Writes are answered
    /// once buffered; a node whose buffer is full gets no more until it drains.
    pub insert_buffer_size: ByteSize,
    /// Insert: a storage node whose current send takes longer than this counts as slow; its
    /// share goes to other nodes until it catches up.
    pub slow_node_timeout: HumanDuration,
    /// Insert: keep a slow or down node's share buffered for it instead of sending it to other
    /// nodes (writes are refused once its buffer is full).
    pub disable_rerouting: bool,
    /// TLS on the cluster protocol. Storage: its RPC certificate (PEM); insert/select: the
    /// client certificate presented to storage nodes (mutual TLS). Goes with `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Storage: require client certificates signed by this CA (mutual TLS). Insert/select:
    /// dial storage nodes over TLS and trust this CA for their certificates.
    pub tls_ca_file: Option<PathBuf>,
    /// Insert/select: the name storage certificates must carry, instead of each node's host.
    pub tls_server_name: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            storage_nodes: Vec::new(),
            insert_listen_addr: SocketAddr::from(([127, 0, 0, 1], 8400)),
            select_listen_addr: SocketAddr::from(([127, 0, 0, 1], 8401)),
            replication_factor: 1,
            deny_partial_response: false,
            insert_buffer_size: ByteSize::mib(32),
            slow_node_timeout: HumanDuration(std::time::Duration::from_secs(2)),
            disable_rerouting: false,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            tls_server_name: None,
        }
    }
}

impl ClusterConfig {
    /// The storage node addresses with `default_port` added where none is given.
    pub fn storage_node_addrs(&self, default_port: u16) -> Vec<String> {
        self.storage_nodes
            .iter()
            .map(|n| {
                let n = n.trim();
                // "host:port" or "[v6]:port" carry a port; a bare name or address does not.
                let has_port = match n.rsplit_once(':') {
                    Some((host, port)) => port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']')),
                    None => false,
                };
                if has_port {
                    n.to_owned()
                } else {
                    format!("{n}:{default_port}")
                }
            })
            .collect()
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.replication_factor == 0 {
            return Err(ConfigError::Invalid {
                key: "cluster.replication_factor",
                message: "must be at least 1".into(),
            });
        }
        if self.insert_buffer_size.bytes() < 64 << 10 {
            return Err(ConfigError::Invalid {
                key: "cluster.insert_buffer_size",
                message: "must be at least 64KiB".into(),
            });
        }
        if self.slow_node_timeout.get().is_zero() {
            return Err(ConfigError::Invalid {
                key: "cluster.slow_node_timeout",
                message: "must be more than 0".into(),
            });
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(ConfigError::Invalid {
                key: "cluster.tls_cert_file",
                message: "cluster.tls_cert_file and cluster.tls_key_file go together: set both or neither".into(),
            });
        }
        if let Some(bad) = self.storage_nodes.iter().find(|n| n.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                key: "cluster.storage_nodes",
                message: format!("empty node address {bad:?}"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_are_added_only_when_missing() {
        let c = ClusterConfig {
            storage_nodes: vec!["a".into(), "b:9000".into(), "10.0.0.1".into(), "[::1]:7".into()],
            ..ClusterConfig::default()
        };
        assert_eq!(
            c.storage_node_addrs(8400),
            vec!["a:8400", "b:9000", "10.0.0.1:8400", "[::1]:7"]
        );
        assert!(c.validate().is_ok());
        let bad = ClusterConfig {
            replication_factor: 0,
            ..ClusterConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("cluster.replication_factor")
        );
    }
}
