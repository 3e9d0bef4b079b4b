//! TLS for the cluster protocol (rustls, `ring` provider — the same versions as the HTTP
//! listeners in `strata-http`).
//!
//! - Storage nodes: with a certificate and key, both RPC ports speak TLS only; with a CA file
//!   as well, they also require a client certificate signed by that CA (mutual TLS).
//! - Insert and select nodes: with a CA file, they dial storage nodes over TLS and verify the
//!   node's certificate against that CA, for the host name of the node's address (or
//!   `server_name` when set); with a certificate and key as well, they present it as their
//!   client certificate.
//!
//! Inside TLS the protocol is unchanged (handshake, frames). A storage node that requires TLS
//! answers a plaintext client with a plaintext refusal saying so, so a misconfiguration shows
//! as a clear message rather than a broken connection.
//!
//! Certificates and keys (the storage node's server pair and an insert/select node's client
//! pair) are reloaded when their files change, like the HTTP listeners' ([`ReloadingCert`]
//! from `strata-http`: the files' modification times are looked at, at most once per
//! second, at the next handshake). A renewal that does not load (half-written file, key not
//! matching) is logged and counted in `strata_tls_cert_reloads_total{result="error"}`, and the
//! previous pair keeps serving. The CA files are read once, at start-up.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::CertifiedKey;
use strata_http::tls::{ReloadingCert, TlsOptions};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or CA file could not be read or parsed.
    #[error("cannot load {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the configuration (key does not match the certificate, ...).
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::File {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// A certificate and key that are reloaded when their files change (checked at most once a
/// second, at a handshake); an error here (at start-up) names the file.
fn reloading_pair(cert_file: &Path, key_file: &Path) -> Result<ReloadingCert, TlsError> {
    ReloadingCert::new(TlsOptions::new(cert_file, key_file)).map_err(|e| match e {
        strata_http::tls::TlsError::Cert { path, message } | strata_http::tls::TlsError::Key { path, message } => {
            TlsError::File { path, message }
        }
        mismatch @ strata_http::tls::TlsError::Mismatch { .. } => TlsError::Config(mismatch.to_string()),
    })
}

/// The client side of [`ReloadingCert`]: presents the current pair to a storage node that asks
/// for a client certificate.
#[derive(Debug)]
struct ReloadingClientCert(ReloadingCert);

impl ResolvesClientCert for ReloadingClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::File {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

fn config_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// The storage node's side: `cert_file` + `key_file` (reloaded when they change), and with
/// `client_ca_file` mutual TLS.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_err)?;
    let builder = match client_ca_file {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, provider())
                .build()
                .map_err(config_err)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_cert_resolver(Arc::new(reloading_pair(cert_file, key_file)?));
    Ok(Arc::new(config))
}

/// How insert and select nodes dial storage nodes over TLS.
#[derive(Clone, Debug)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
}

impl ClientTls {
    /// Trusts the CA in `ca_file`; presents `client_cert` (cert, key) when given, reloaded when
    /// the files change; verifies `server_name` instead of each node's host name when given.
    pub fn new(
        ca_file: &Path,
        client_cert: Option<(&Path, &Path)>,
        server_name: Option<String>,
    ) -> Result<Self, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_err)?
            .with_root_certificates(load_roots(ca_file)?);
        let config = match client_cert {
            Some((cert, key)) => {
                builder.with_client_cert_resolver(Arc::new(ReloadingClientCert(reloading_pair(cert, key)?)))
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }

    /// Wraps a connected socket to `addr` (`host:port`) in a client TLS session; the
    /// handshake happens on the first read or write.
    pub fn wrap(&self, addr: &str, tcp: TcpStream) -> std::io::Result<Conn> {
        let host = match &self.server_name {
            Some(name) => name.clone(),
            None => host_of(addr).to_owned(),
        };
        let name = ServerName::try_from(host).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let session = rustls::ClientConnection::new(Arc::clone(&self.config), name).map_err(std::io::Error::other)?;
        Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(session, tcp))))
    }
}

/// The host part of `host:port` or `[v6]:port`.
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A client connection, plain or TLS.
#[derive(Debug)]
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    /// The TCP socket underneath, for timeouts.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
