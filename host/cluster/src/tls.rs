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

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

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

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })
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

/// The storage node's side: `cert_file` + `key_file`, and with `client_ca_file` mutual TLS.
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
    let config = builder
        .with_single_cert(load_certs(cert_file)?, load_key(key_file)?)
        .map_err(config_err)?;
    Ok(Arc::new(config))
}

/// How insert and select nodes dial storage nodes over TLS.
#[derive(Clone, Debug)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
}

impl ClientTls {
    /// Trusts the CA in `ca_file`; presents `client_cert` (cert, key) when given; verifies
    /// `server_name` instead of each node's host name when given.
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
            Some((cert, key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(config_err)?,
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
