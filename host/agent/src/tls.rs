//! The TLS client of the agent: `https` scrape targets (a job's `tls_config`) and `https`
//! remote-write URLs.
//!
//! rustls with the `ring` provider (no system libraries), plugged into ureq as a connector of
//! our own rather than ureq's built-in one, because Prometheus' `tls_config.server_name` needs
//! the name used for SNI and certificate verification to differ from the URL's host — which
//! ureq's connector cannot do — while the request's `Host` header stays the target's address.
//!
//! Roots: `ca_file` when given, else the system bundle (`$SSL_CERT_FILE`, or Debian's
//! `/etc/ssl/certs/ca-certificates.crt` and the other usual places). `cert_file` + `key_file`
//! present a client certificate. `insecure_skip_verify` accepts any server certificate (the
//! handshake signatures are still checked, so the peer must hold the key it shows).

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme, StreamOwned};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, TcpConnector, Transport, TransportAdapter,
};

/// Where a system's CA bundle usually is (Debian first).
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// A job's `tls_config` with its file paths resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// PEM CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name to send (SNI) and to verify the certificate against, instead of the URL's host.
    pub server_name: Option<String>,
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
}

/// Why a TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no usable PEM item.
    #[error("tls_config: {what} {path}: {message}")]
    File {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Settings that do not go together or a name that is not a DNS name or IP address.
    #[error("tls_config: {0}")]
    Invalid(String),
    /// rustls refused the configuration (e.g. a key that does not match the certificate).
    #[error("tls_config: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::File {
        what,
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let path = from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            TlsError::Invalid("no system CA bundle found (install ca-certificates or set tls_config.ca_file)".into())
        })?;
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(read_certs("system CA bundle", &path)?);
    Ok(store)
}

/// Builds a rustls client configuration from `settings` (reads the files now).
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
    let builder = if settings.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
    } else {
        let roots = match &settings.ca_file {
            Some(path) => {
                let mut store = RootCertStore::empty();
                for cert in read_certs("ca_file", path)? {
                    store.add(cert).map_err(|e| TlsError::File {
                        what: "ca_file",
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                }
                store
            }
            None => system_roots()?,
        };
        builder.with_root_certificates(roots)
    };
    let config = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("cert_file", cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
                what: "key_file",
                path: key.clone(),
                message: e.to_string(),
            })?;
            builder.with_client_auth_cert(chain, key_der)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TlsError::Invalid(
                "cert_file and key_file go together: set both or neither".into(),
            ));
        }
    };
    Ok(Arc::new(config))
}

/// A ureq connector that wraps `https` connections in rustls with our configuration.
pub struct RustlsConnector {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for RustlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl RustlsConnector {
    /// A connector for `settings` (reads the certificate files now).
    pub fn new(settings: &TlsSettings) -> Result<Self, TlsError> {
        let server_name = settings
            .server_name
            .as_ref()
            .map(|name| {
                ServerName::try_from(name.clone())
                    .map_err(|_| TlsError::Invalid(format!("server_name {name:?} is not a DNS name or IP address")))
            })
            .transpose()?;
        Ok(Self {
            config: client_config(settings)?,
            server_name,
        })
    }
}

impl<In: Transport> Connector<In> for RustlsConnector {
    type Out = Either<In, RustlsTransport>;

    fn connect(&self, details: &ConnectionDetails<'_>, chained: Option<In>) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Err(ureq::Error::Io(std::io::Error::other(
                "the TLS connector has no connection to wrap",
            )));
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => {
                let host = details.uri.host().unwrap_or_default();
                // An IPv6 literal comes with its brackets.
                let host = host.trim_start_matches('[').trim_end_matches(']');
                ServerName::try_from(host.to_owned()).map_err(|_| {
                    ureq::Error::Io(std::io::Error::other(format!(
                        "{host:?} is not a valid TLS server name"
                    )))
                })?
            }
        };
        let conn = ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|e| ureq::Error::Io(std::io::Error::other(format!("TLS: {e}"))))?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        let mut stream = StreamOwned { conn, sock };
        // Drive the handshake now so that certificate errors surface as connection errors.
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| ureq::Error::Io(std::io::Error::new(e.kind(), format!("TLS handshake: {e}"))))?;
        let buffers = LazyBuffers::new(details.config.input_buffer_size(), details.config.output_buffer_size());
        Ok(Some(Either::B(RustlsTransport { buffers, stream })))
    }
}

/// A connection wrapped in TLS.
pub struct RustlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for RustlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustlsTransport").finish_non_exhaustive()
    }
}

impl Transport for RustlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// `insecure_skip_verify`: any certificate, but real signature checks (the peer must own the
/// key of the certificate it shows, so a passive replay does not work).
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A ureq agent with `config` whose `https` connections use `tls` (plain TCP only when `None`).
pub fn agent(config: ureq::config::Config, tls: Option<RustlsConnector>) -> ureq::Agent {
    match tls {
        Some(tls) => ureq::Agent::with_parts(
            config,
            ().chain(TcpConnector::default()).chain(tls),
            DefaultResolver::default(),
        ),
        None => ureq::Agent::with_parts(config, ().chain(TcpConnector::default()), DefaultResolver::default()),
    }
}

#[cfg(test)]
mod tests;
