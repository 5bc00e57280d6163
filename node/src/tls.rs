//! HTTPS for stewards' phones: a browser gives a page from any address but localhost a camera
//! and a service worker only in a secure context. The event has its own certificate authority
//! (made by `event create`, its key kept with the organizer's secrets); `device enroll` issues
//! each node a server certificate for the names and addresses it serves; `node run --https`
//! serves the same routes over TLS (rustls). Phones trust the event CA once (README says how).
//!
//! Handshakes run in their own tasks with a time limit, so a client that opens a connection
//! and says nothing holds up no one.

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The event CA's certificate (public: copied to devices, offered by the pages at `/ca.pem`).
pub const CA_CERT_FILE: &str = "event-ca.pem";
/// The event CA's private key (organizer's secret, owner-only).
pub const CA_KEY_FILE: &str = "event-ca.key.pem";
/// A device's server certificate and key, in its device directory.
pub const DEVICE_TLS_CERT_FILE: &str = "tls.pem";
pub const DEVICE_TLS_KEY_FILE: &str = "tls.key.pem";
/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; more connections wait in the kernel's backlog.
pub const HANDSHAKES_MAX: usize = 256;
/// Most names one device certificate carries.
pub const TLS_NAMES_MAX: usize = 16;
/// How long a device certificate is valid (browsers refuse server certificates over 398 days).
const DEVICE_CERT_DAYS: i64 = 397;

/// The CA's parameters, the same every time (the issuer of a device certificate is named by
/// them and identified by the key).
fn ca_params(event_id: &str) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "gatemesh");
    dn.push(DnType::CommonName, format!("gatemesh event CA {event_id}"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

/// Make the event's CA in `dir` unless it has one. Returns whether it made it.
pub fn ensure_event_ca(dir: &Path, event_id: &str) -> anyhow::Result<bool> {
    if dir.join(CA_KEY_FILE).exists() {
        return Ok(false);
    }
    let key = KeyPair::generate()?;
    let cert = ca_params(event_id)?.self_signed(&key)?;
    crate::package::write_secret_file(&dir.join(CA_KEY_FILE), key.serialize_pem().as_bytes())?;
    std::fs::write(dir.join(CA_CERT_FILE), cert.pem())?;
    Ok(true)
}

/// Check the names a device certificate is for: DNS names or IP addresses.
fn check_names(names: &[String]) -> anyhow::Result<()> {
    if names.is_empty() || names.len() > TLS_NAMES_MAX {
        bail!("a device certificate needs 1..={TLS_NAMES_MAX} names");
    }
    for n in names {
        let dns = !n.is_empty()
            && n.len() <= 253
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !dns && n.parse::<std::net::IpAddr>().is_err() {
            bail!("--tls-name {n:?} is neither a host name nor an IP address");
        }
    }
    Ok(())
}

/// Issue `device_dir` a server certificate for `names`, signed by the event CA in `event_dir`
/// (made first if the event has none). Returns the certificate's path.
pub fn issue_device_cert(
    event_dir: &Path,
    event_id: &str,
    device_dir: &Path,
    names: &[String],
    now_ms: u64,
) -> anyhow::Result<PathBuf> {
    check_names(names)?;
    ensure_event_ca(event_dir, event_id)?;
    let ca_pem =
        std::fs::read_to_string(event_dir.join(CA_KEY_FILE)).context("reading the event CA key")?;
    let ca_key = KeyPair::from_pem(&ca_pem).context("the event CA key does not read")?;
    let ca = ca_params(event_id)?.self_signed(&ca_key)?;
    let mut p = CertificateParams::new(names.to_vec())?;
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, names[0].clone());
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    let now = time_of(now_ms);
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(DEVICE_CERT_DAYS);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &ca, &ca_key)?;
    let cert_path = device_dir.join(DEVICE_TLS_CERT_FILE);
    std::fs::write(&cert_path, cert.pem())?;
    crate::package::write_secret_file(
        &device_dir.join(DEVICE_TLS_KEY_FILE),
        key.serialize_pem().as_bytes(),
    )?;
    Ok(cert_path)
}

fn time_of(ms: u64) -> time::OffsetDateTime {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A TLS server configuration from PEM files: the certificate chain and its key.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} holds no certificate", cert.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not make a TLS identity")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener whose connections come out of finished TLS handshakes (for `axum::serve`).
pub struct TlsListener {
    local: std::net::SocketAddr,
    ready: mpsc::Receiver<(
        tokio_rustls::server::TlsStream<TcpStream>,
        std::net::SocketAddr,
    )>,
}

impl TlsListener {
    /// Accept on `tcp`, handshaking each connection in its own task.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(HANDSHAKES_MAX);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let slots = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let shake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    if let Ok(Ok(tls)) = shake.await {
                        let _ = tx.send((tls, peer)).await;
                    }
                    drop(slot);
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task ended (the runtime is stopping): wait for the shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_certificate_is_issued_by_the_event_ca_and_serves_tls() {
        let dir = tempfile::tempdir().unwrap();
        let (event, device) = (dir.path().join("event"), dir.path().join("device"));
        std::fs::create_dir_all(&event).unwrap();
        std::fs::create_dir_all(&device).unwrap();
        assert!(ensure_event_ca(&event, "fest").unwrap());
        let ca = std::fs::read(event.join(CA_CERT_FILE)).unwrap();
        assert!(
            !ensure_event_ca(&event, "fest").unwrap(),
            "the CA is made once"
        );
        assert_eq!(std::fs::read(event.join(CA_CERT_FILE)).unwrap(), ca);
        let names = vec!["gate-a.local".to_string(), "10.0.0.7".to_string()];
        let cert = issue_device_cert(&event, "fest", &device, &names, 1_780_000_000_000).unwrap();
        server_config(&cert, &device.join(DEVICE_TLS_KEY_FILE)).unwrap();
        for bad in [
            vec![],
            vec!["has space".to_string()],
            vec!["a/b".to_string()],
        ] {
            assert!(
                issue_device_cert(&event, "fest", &device, &bad, 0).is_err(),
                "{bad:?}"
            );
        }
        // A key that does not go with the certificate is refused.
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        issue_device_cert(&event, "fest", &other, &names, 0).unwrap();
        assert!(server_config(&cert, &other.join(DEVICE_TLS_KEY_FILE)).is_err());
    }
}
