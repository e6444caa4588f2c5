//! TLS with rustls: for STOMP listeners (`ssl://`, `stomp+ssl://` listen entries) and for
//! the failover client and network connectors (`ssl://` servers).
//!
//! TLS wraps a connection that the [`Net`](crate::net::Net) seam already opened, so it adds
//! no second seam: a [`TlsAcceptor`] turns an accepted [`BoxStream`] into another one, and
//! [`ClientTls::connect`] does the same for an opened client connection. The certificate,
//! key and (optional) client CA are PEM files named in `[server.tls]`; a client's are
//! named per server ([`ClientTls`], MCollective's `pool.N.ssl.*`).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Serialize};

use crate::net::BoxStream;

/// Whether a TLS listener asks clients for certificates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientCertificates {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A client may present one; if it does, it must chain to `client_ca_file`.
    Optional,
    /// Every client must present one that chains to `client_ca_file` (ActiveMQ's
    /// `needClientAuth=true`).
    Required,
}

/// `[server.tls]`: the broker's certificate for TLS listeners.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the broker's certificate chain (leaf first).
    pub cert_file: String,
    /// PEM file with the broker's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM file with the CA certificates that client certificates must chain to.
    pub client_ca_file: String,
    /// Whether clients are asked for certificates (`none`, `optional`, `required`).
    pub client_certificates: ClientCertificates,
    /// A TLS client must finish its handshake within this time.
    pub handshake_timeout_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: String::new(),
            key_file: String::new(),
            client_ca_file: String::new(),
            client_certificates: ClientCertificates::None,
            handshake_timeout_ms: 10_000,
        }
    }
}

/// Why TLS could not be set up: which file, and what was wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct TlsError {
    /// The file (or setting) at fault.
    pub file: String,
    /// What was wrong.
    pub message: String,
}

impl TlsError {
    fn new(file: &str, message: impl fmt::Display) -> TlsError {
        TlsError {
            file: file.to_owned(),
            message: message.to_string(),
        }
    }
}

/// Accepts TLS connections with one broker certificate.
#[derive(Clone)]
pub struct TlsAcceptor {
    inner: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certificates(file: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(Path::new(file))
        .map_err(|e| TlsError::new(file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(file, e))?;
    if certs.is_empty() {
        return Err(TlsError::new(file, "no PEM certificate in the file"));
    }
    Ok(certs)
}

impl TlsAcceptor {
    /// Reads the files named in `config` and builds the acceptor.
    pub fn from_config(config: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
        if config.cert_file.is_empty() || config.key_file.is_empty() {
            return Err(TlsError::new(
                "server.tls",
                "a TLS listener needs cert_file and key_file",
            ));
        }
        let chain = read_certificates(&config.cert_file)?;
        let key = PrivateKeyDer::from_pem_file(Path::new(&config.key_file))
            .map_err(|e| TlsError::new(&config.key_file, e))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new("server.tls", e))?;
        let builder = match config.client_certificates {
            ClientCertificates::None => builder.with_no_client_auth(),
            mode => {
                if config.client_ca_file.is_empty() {
                    return Err(TlsError::new(
                        "server.tls.client_ca_file",
                        "client certificates need a client_ca_file to check them against",
                    ));
                }
                let mut roots = RootCertStore::empty();
                for cert in read_certificates(&config.client_ca_file)? {
                    roots
                        .add(cert)
                        .map_err(|e| TlsError::new(&config.client_ca_file, e))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = if mode == ClientCertificates::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::new(&config.client_ca_file, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut server = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::new(&config.key_file, e))?;
        // No TLS 1.3 session tickets after the handshake. Ruby's and Python's STOMP clients
        // read a socket in one thread while another writes to it; with tickets, stomp.py
        // was left waiting for CONNECTED forever (most likely a ticket read while its
        // CONNECT was written), once in about
        // a dozen runs of `interop_tls` on a loaded machine (none in 24 without tickets).
        // TLS 1.3 clients then make a full handshake on every reconnect.
        server.send_tls13_tickets = 0;
        Ok(TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            handshake_timeout: Duration::from_millis(config.handshake_timeout_ms),
        })
    }

    /// Runs the server side of the handshake on `stream`, within the configured time.
    /// Returns the TLS stream and the common name of the client's certificate, when it
    /// presented one (rustls has verified it against `client_ca_file` by then).
    pub async fn accept(&self, stream: BoxStream) -> std::io::Result<(BoxStream, Option<String>)> {
        match tokio::time::timeout(self.handshake_timeout, self.inner.accept(stream)).await {
            Ok(Ok(tls)) => {
                let cn = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| common_name(leaf));
                Ok((Box::new(tls), cn))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}

/// The subject common name (CN) of a DER certificate, if it has one.
fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// The system's CA bundle, which `ssl://` servers are verified against when no CA file is
/// given (as a Java client uses the JVM's default trust store); `SSL_CERT_FILE` overrides.
const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A client's TLS settings for one server (an `ssl://` pool entry).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTls {
    /// PEM file with the CA certificates the server's certificate must chain to; the
    /// system's bundle when empty.
    pub ca_file: String,
    /// PEM file with this client's certificate chain, for brokers that ask for one.
    pub cert_file: String,
    /// PEM file with this client's private key (with `cert_file`).
    pub key_file: String,
    /// Accept any server certificate: encryption without authentication (MCollective's
    /// `ssl.fallback` when no CA is configured, the stomp gem's `ssl: true`). Off by
    /// default, and logged when used.
    pub insecure_skip_verify: bool,
}

impl ClientTls {
    /// Builds the rustls client configuration from the files named here.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new("tls", e))?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServer(provider())))
        } else {
            let ca_file = if self.ca_file.is_empty() {
                std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| SYSTEM_CA_FILE.to_owned())
            } else {
                self.ca_file.clone()
            };
            let mut roots = RootCertStore::empty();
            for cert in read_certificates(&ca_file)? {
                roots.add(cert).map_err(|e| TlsError::new(&ca_file, e))?;
            }
            builder.with_root_certificates(roots)
        };
        match (self.cert_file.is_empty(), self.key_file.is_empty()) {
            (true, true) => Ok(builder.with_no_client_auth()),
            (false, false) => {
                let chain = read_certificates(&self.cert_file)?;
                let key = PrivateKeyDer::from_pem_file(Path::new(&self.key_file))
                    .map_err(|e| TlsError::new(&self.key_file, e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::new(&self.key_file, e))
            }
            (true, false) => Err(TlsError::new(
                &self.key_file,
                "a client key needs its certificate (cert_file)",
            )),
            (false, true) => Err(TlsError::new(
                &self.cert_file,
                "a client certificate needs its key (key_file)",
            )),
        }
    }

    /// Runs the client side of the handshake on an opened `stream` to `host`, checking
    /// the server's certificate against `host` (a name or an IP address).
    pub async fn connect(&self, host: &str, stream: BoxStream) -> std::io::Result<BoxStream> {
        let config = self
            .client_config()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        if self.insecure_skip_verify {
            tracing::warn!(%host, "TLS without verifying the server's certificate");
        }
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{host}` is not a valid TLS server name: {e}"),
            )
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tls = connector.connect(name, stream).await?;
        Ok(Box::new(tls))
    }
}

/// Accepts every server certificate, still checking the handshake's signatures; only for
/// [`ClientTls::insecure_skip_verify`].
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Whether a client URI scheme means TLS (`ssl://`, `stomp+ssl://`, …).
pub fn is_tls_scheme(scheme: &str) -> bool {
    matches!(
        scheme.to_ascii_lowercase().as_str(),
        "ssl" | "tls" | "stomp+ssl" | "stomp+tls" | "stomp+nio+ssl" | "stomp+ssl+nio" | "stomps"
    )
}

/// How a listen entry is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP: `host:port`, `tcp://host:port`, `stomp://host:port`.
    Tcp,
    /// TLS over TCP: `ssl://`, `tls://`, `stomp+ssl://`, `stomp+tls://`, `stomp+nio+ssl://`.
    Tls,
}

/// Splits a listen entry into its transport and `host:port`.
pub fn parse_listen(entry: &str) -> Result<(Transport, &str), String> {
    let Some((scheme, rest)) = entry.split_once("://") else {
        return Ok((Transport::Tcp, entry));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "tcp" | "stomp" | "stomp+nio" => Ok((Transport::Tcp, rest)),
        "ssl" | "tls" | "stomp+ssl" | "stomp+tls" | "stomp+nio+ssl" => Ok((Transport::Tls, rest)),
        other => Err(format!(
            "unknown scheme `{other}://` (use host:port, tcp://, stomp://, ssl:// or stomp+ssl://)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_entries_name_their_transport() {
        assert_eq!(
            parse_listen("127.0.0.1:61613"),
            Ok((Transport::Tcp, "127.0.0.1:61613"))
        );
        assert_eq!(parse_listen("stomp://h:1"), Ok((Transport::Tcp, "h:1")));
        assert_eq!(
            parse_listen("ssl://0.0.0.0:61614"),
            Ok((Transport::Tls, "0.0.0.0:61614"))
        );
        assert_eq!(
            parse_listen("STOMP+SSL://[::1]:2"),
            Ok((Transport::Tls, "[::1]:2"))
        );
        assert!(parse_listen("amqp://h:1").unwrap_err().contains("amqp://"));
    }

    #[test]
    fn missing_and_foreign_files_are_named() {
        let none = TlsAcceptor::from_config(&TlsConfig::default()).unwrap_err();
        assert!(
            none.to_string().contains("cert_file and key_file"),
            "{none}"
        );
        let config = TlsConfig {
            cert_file: "/nonexistent/broker.crt".to_owned(),
            key_file: "/nonexistent/broker.key".to_owned(),
            ..TlsConfig::default()
        };
        let missing = TlsAcceptor::from_config(&config).unwrap_err();
        assert_eq!(missing.file, "/nonexistent/broker.crt");
        // A file that is not PEM at all.
        let dir = std::env::temp_dir().join(format!("stampede-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let config = TlsConfig {
            cert_file: junk.display().to_string(),
            key_file: junk.display().to_string(),
            ..TlsConfig::default()
        };
        let foreign = TlsAcceptor::from_config(&config).unwrap_err();
        assert!(
            foreign.to_string().contains("no PEM certificate"),
            "{foreign}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
