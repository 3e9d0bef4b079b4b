//! TLS for the HTTP listeners (rustls with the `ring` provider: no system libraries or build
//! tools beyond a C compiler).
//!
//! The certificate and key are PEM files. [`ReloadingCert`] serves them to every handshake and
//! looks at their modification times at most once per `check_interval`; when either changed
//! it loads both again. A pair that fails to load (half-written by a renewal tool, key not
//! matching the certificate) is logged and counted, and the previous pair keeps serving, so a
//! renewal never takes the listener down.
//!
//! [`TlsListener`] does the handshakes off the accept loop (each in its own task with a
//! deadline), so one slow or silent client does not hold up the others. The cluster protocol
//! can use [`server_config`] and [`load_certified_key`] for its own listeners.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Where the certificate and key are and how often to look for new ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Shortest time between two looks at the files' modification times.
    pub check_interval: Duration,
    /// Longest time a client may take to finish its handshake.
    pub handshake_timeout: Duration,
}

impl TlsOptions {
    /// Options for this pair with a 1 s check interval and a 10 s handshake deadline.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            check_interval: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is missing, unreadable or holds no PEM certificate.
    #[error("cannot load the TLS certificate {path}: {message}")]
    Cert {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The key file is missing, unreadable, holds no PEM key, or an unsupported key type.
    #[error("cannot load the TLS key {path}: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The key is not the certificate's.
    #[error("the TLS key {key} does not match the certificate {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// Loads and checks a certificate chain and its key.
pub fn load_certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_err = |message: String| TlsError::Cert {
        path: cert_file.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("no `BEGIN CERTIFICATE` block in the file".into()));
    }
    let key_err = |message: String| TlsError::Key {
        path: key_file.to_path_buf(),
        message,
    };
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| key_err(e.to_string()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| key_err(e.to_string()))?;
    let certified = CertifiedKey::new(certs, signer);
    certified.keys_match().map_err(|_| TlsError::Mismatch {
        cert: cert_file.to_path_buf(),
        key: key_file.to_path_buf(),
    })?;
    Ok(certified)
}

/// Modification time and length of a file, `None` when it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

fn modified(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

struct Loaded {
    key: Arc<CertifiedKey>,
    /// Modification time and length of both files when `key` was loaded (or last tried).
    stamp: (Stamp, Stamp),
    checked: Instant,
}

/// A certificate resolver that picks up renewed files.
pub struct ReloadingCert {
    options: TlsOptions,
    state: Mutex<Loaded>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_file", &self.options.cert_file)
            .field("key_file", &self.options.key_file)
            .finish()
    }
}

impl ReloadingCert {
    /// Loads the pair now; an error here stops start-up, with the file named.
    pub fn new(options: TlsOptions) -> Result<Self, TlsError> {
        let stamp = (modified(&options.cert_file), modified(&options.key_file));
        let key = Arc::new(load_certified_key(&options.cert_file, &options.key_file)?);
        Ok(Self {
            options,
            state: Mutex::new(Loaded {
                key,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The pair to present, reloaded first if the files changed since the last look.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= self.options.check_interval {
            state.checked = Instant::now();
            let stamp = (modified(&self.options.cert_file), modified(&self.options.key_file));
            if stamp != state.stamp {
                // Remember the new stamp even when loading fails: a broken pair is reported
                // once, not on every handshake, and the next change is tried again.
                state.stamp = stamp;
                match load_certified_key(&self.options.cert_file, &self.options.key_file) {
                    Ok(key) => {
                        state.key = Arc::new(key);
                        metrics::counter!("strata_tls_cert_reloads_total", "result" => "ok").increment(1);
                        tracing::info!(cert = %self.options.cert_file.display(), "TLS certificate reloaded");
                    }
                    Err(err) => {
                        metrics::counter!("strata_tls_cert_reloads_total", "result" => "error").increment(1);
                        tracing::error!("keeping the previous TLS certificate: {err}");
                    }
                }
            }
        }
        Arc::clone(&state.key)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A rustls server configuration (TLS 1.2 and 1.3, `ring` provider) over `resolver`,
/// offering `alpn` (e.g. `http/1.1`).
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Most handshakes in progress at once; more connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 1024;

/// A listener whose accepted connections have completed a TLS handshake.
pub struct TlsListener {
    local: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Wraps `listener`; the certificate comes from `options` (loaded now, reloaded on change).
    pub fn new(listener: TcpListener, options: TlsOptions) -> Result<Self, io::Error> {
        let local = listener.local_addr()?;
        let resolver =
            ReloadingCert::new(options.clone()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let config = server_config(Arc::new(resolver), &[b"http/1.1"]).map_err(io::Error::other)?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let acceptor_task = tokio::spawn(accept_loop(listener, acceptor, options.handshake_timeout, tx));
        Ok(Self {
            local,
            ready,
            acceptor_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Stops accepting (and closes the socket) when the server lets go of the listener.
        self.acceptor_task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    deadline: Duration,
    ready: tokio::sync::mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(err)) => {
                    metrics::counter!("strata_tls_handshake_errors_total").increment(1);
                    tracing::debug!(%peer, "TLS handshake failed: {err}");
                }
                Err(_) => {
                    metrics::counter!("strata_tls_handshake_errors_total").increment(1);
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends when aborted, i.e. when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn subject_of(key: &CertifiedKey) -> Vec<u8> {
        key.cert[0].as_ref().to_vec()
    }

    #[test]
    fn loads_and_reports_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "a.test");
        assert!(load_certified_key(&cert, &key).is_ok());
        let missing = load_certified_key(&dir.path().join("nope.pem"), &key).unwrap_err();
        assert!(missing.to_string().contains("nope.pem"), "{missing}");
        std::fs::write(dir.path().join("empty.pem"), "hello").unwrap();
        let empty = load_certified_key(&dir.path().join("empty.pem"), &key).unwrap_err();
        assert!(matches!(empty, TlsError::Cert { .. }), "{empty}");
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = write_pair(other.path(), "b.test");
        let mismatch = load_certified_key(&cert, &other_key).unwrap_err();
        assert!(matches!(mismatch, TlsError::Mismatch { .. }), "{mismatch}");
    }

    #[test]
    fn reloads_changed_files_and_keeps_the_old_pair_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "a.test");
        let mut options = TlsOptions::new(&cert, &key);
        options.check_interval = Duration::ZERO;
        let resolver = ReloadingCert::new(options).unwrap();
        let first = subject_of(&resolver.current());

        // A renewal: new files (sizes differ from the old ones often enough; the mtime too).
        std::thread::sleep(Duration::from_millis(20));
        write_pair(dir.path(), "renewed-name.test");
        let second = subject_of(&resolver.current());
        assert_ne!(first, second, "the renewed certificate should be served");

        // A half-written renewal keeps the last good pair.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\ntruncated").unwrap();
        assert_eq!(subject_of(&resolver.current()), second);
    }
}
