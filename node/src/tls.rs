//! HTTPS for stewards' phones: a browser gives a page from any address but localhost a camera
//! and a service worker only in a secure context. The event has its own certificate authority
//! (made by `event create`, its key kept with the organizer's secrets); `device enroll` issues
//! each node a server certificate for the names and addresses it serves; `node run --https`
//! serves the same routes over TLS (rustls). Phones trust the event CA once (README says how).
//!
//! Handshakes run in their own tasks with a time limit, so a client that opens a connection
//! and says nothing holds up no one; connections count in the node's budget
//! ([`crate::conns`]) from the moment they are accepted.

use crate::conns::{Budget, Guarded};
use anyhow::{bail, Context};
use gatemesh_crdt::event::EventConfig;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints,
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
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most handshakes in progress at once; more connections wait in the kernel's backlog.
pub const HANDSHAKES_MAX: usize = 256;
/// Most names one device certificate carries.
pub const TLS_NAMES_MAX: usize = 16;
/// How long a device certificate is valid (browsers refuse server certificates over 398 days).
const DEVICE_CERT_DAYS: i64 = 397;

/// The DNS names the event CA vouches for: these and the names under them. Its certificate
/// says so (name constraints), so a stolen CA key cannot vouch for any site on the internet.
pub const LOCAL_DOMAINS: [&str; 5] = ["local", "localhost", "home.arpa", "internal", "lan"];
/// The addresses the event CA vouches for: private, shared, loopback and link-local ranges.
const LOCAL_NETS: [(&str, u8); 9] = [
    ("10.0.0.0", 8),
    ("172.16.0.0", 12),
    ("192.168.0.0", 16),
    ("100.64.0.0", 10),
    ("169.254.0.0", 16),
    ("127.0.0.0", 8),
    ("fc00::", 7),
    ("fe80::", 10),
    ("::1", 128),
];
/// The event CA and its certificates stay valid this long after the event ends.
const AFTER_EVENT_DAYS: i64 = 30;
const DAY_MS: u64 = 24 * 3600 * 1000;

fn local_nets() -> impl Iterator<Item = (std::net::IpAddr, u8)> {
    LOCAL_NETS
        .iter()
        .filter_map(|(a, p)| Some((a.parse().ok()?, *p)))
}

/// The CA's parameters: the same every time for an event (the issuer of a device certificate is
/// named by them and identified by the key), valid from a day before the event (or now) until
/// [`AFTER_EVENT_DAYS`] after it, for local names and addresses only.
fn ca_params(event: &EventConfig, now_ms: u64) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "gatemesh");
    dn.push(
        DnType::CommonName,
        format!("gatemesh event CA {}", event.event_id),
    );
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut permitted: Vec<GeneralSubtree> = LOCAL_DOMAINS
        .iter()
        .map(|d| GeneralSubtree::DnsName((*d).to_string()))
        .collect();
    permitted.extend(
        local_nets()
            .map(|(a, len)| GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(a, len))),
    );
    p.name_constraints = Some(NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: Vec::new(),
    });
    p.not_before = time_of(event.valid_from_ms.min(now_ms).saturating_sub(DAY_MS));
    p.not_after = ends(event);
    Ok(p)
}

/// When the event CA and its certificates stop being valid.
fn ends(event: &EventConfig) -> time::OffsetDateTime {
    time_of(event.valid_until_ms) + time::Duration::days(AFTER_EVENT_DAYS)
}

/// Make the event's CA in `dir` unless it has one. Returns whether it made it.
pub fn ensure_event_ca(dir: &Path, event: &EventConfig, now_ms: u64) -> anyhow::Result<bool> {
    if dir.join(CA_KEY_FILE).exists() {
        return Ok(false);
    }
    let key = KeyPair::generate()?;
    let cert = ca_params(event, now_ms)?.self_signed(&key)?;
    crate::package::write_secret_file(&dir.join(CA_KEY_FILE), key.serialize_pem().as_bytes())?;
    std::fs::write(dir.join(CA_CERT_FILE), cert.pem())?;
    Ok(true)
}

/// A host name: labels of 1 to 63 letters, digits and inner hyphens, 253 bytes at most.
fn is_host_name(n: &str) -> bool {
    n.len() <= 253
        && n.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Whether the event CA vouches for `n`: a local name or a private address.
fn is_local(n: &str) -> bool {
    if let Ok(ip) = n.parse::<std::net::IpAddr>() {
        return local_nets().any(|(net, len)| in_net(ip, net, len));
    }
    let n = n.to_ascii_lowercase();
    is_host_name(&n)
        && LOCAL_DOMAINS
            .iter()
            .any(|d| n == *d || n.ends_with(&format!(".{d}")))
}

fn in_net(ip: std::net::IpAddr, net: std::net::IpAddr, len: u8) -> bool {
    use std::net::IpAddr::{V4, V6};
    match (ip, net) {
        (V4(a), V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (V6(a), V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// Check the names a device certificate is for, before anything is written: host names under
/// [`LOCAL_DOMAINS`] or private addresses, [`TLS_NAMES_MAX`] at most.
pub fn check_names(names: &[String]) -> anyhow::Result<()> {
    if names.is_empty() || names.len() > TLS_NAMES_MAX {
        bail!("a device certificate needs 1..={TLS_NAMES_MAX} names");
    }
    for n in names {
        if !is_local(n) {
            bail!(
                "--tls-name {n:?}: the event CA vouches only for local host names (under .{}) \
                 and private addresses; for another name give the node an organizer's \
                 certificate with --tls-cert and --tls-key",
                LOCAL_DOMAINS.join(", .")
            );
        }
    }
    Ok(())
}

/// The default name of a device on the LAN: its name made a host label, under `.local`.
pub fn default_name(device: &str) -> String {
    let label: String = device
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let label: String = label.trim_matches('-').chars().take(63).collect();
    let label = label.trim_end_matches('-');
    format!("{}.local", if label.is_empty() { "gate" } else { label })
}

/// Issue `device_dir` a server certificate for `names`, signed by the event CA in `event_dir`
/// (made first if the event has none). Returns the certificate's path.
pub fn issue_device_cert(
    event_dir: &Path,
    event: &EventConfig,
    device_dir: &Path,
    names: &[String],
    now_ms: u64,
) -> anyhow::Result<PathBuf> {
    check_names(names)?;
    ensure_event_ca(event_dir, event, now_ms)?;
    let ca_pem =
        std::fs::read_to_string(event_dir.join(CA_KEY_FILE)).context("reading the event CA key")?;
    let ca_key = KeyPair::from_pem(&ca_pem).context("the event CA key does not read")?;
    let ca = ca_params(event, now_ms)?.self_signed(&ca_key)?;
    let mut p = CertificateParams::new(names.to_vec())?;
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, names[0].clone());
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    let now = time_of(now_ms);
    p.not_before = now - time::Duration::days(1);
    p.not_after = (now + time::Duration::days(DEVICE_CERT_DAYS)).min(ends(event));
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

/// The TLS stream of an accepted connection within its [`Budget`].
pub type TlsConn = tokio_rustls::server::TlsStream<Guarded<TcpStream>>;

/// A listener whose connections come out of finished TLS handshakes (for `axum::serve`).
pub struct TlsListener {
    local: std::net::SocketAddr,
    ready: mpsc::Receiver<(TlsConn, std::net::SocketAddr)>,
}

impl TlsListener {
    /// Accept on `tcp` what `budget` has room for, handshaking each connection in its own task
    /// ([`HANDSHAKES_MAX`] at once, each within [`HANDSHAKE_TIMEOUT`]). The accepting stops
    /// when the server stops taking connections.
    pub fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        budget: Budget,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(HANDSHAKES_MAX);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let slots = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = tokio::select! {
                    c = crate::conns::accept(&tcp, &budget) => c,
                    () = tx.closed() => return,
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

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for crate::conns::ConnHandle
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        stream.io().get_ref().0.handle()
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConn;
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

    fn fest() -> EventConfig {
        let key = gatemesh_crdt::event::OrganizerKey {
            key_id: "k1".into(),
            public_key: hex::encode([7u8; 32]),
        };
        EventConfig::new("fest", "Fest", 1_780_000_000_000, 1_780_300_000_000, key)
    }

    #[test]
    fn a_device_certificate_is_issued_by_the_event_ca_and_serves_tls() {
        let dir = tempfile::tempdir().unwrap();
        let (event, device) = (dir.path().join("event"), dir.path().join("device"));
        std::fs::create_dir_all(&event).unwrap();
        std::fs::create_dir_all(&device).unwrap();
        let now = 1_779_000_000_000;
        assert!(ensure_event_ca(&event, &fest(), now).unwrap());
        let ca = std::fs::read(event.join(CA_CERT_FILE)).unwrap();
        assert!(
            !ensure_event_ca(&event, &fest(), now).unwrap(),
            "the CA is made once"
        );
        assert_eq!(std::fs::read(event.join(CA_CERT_FILE)).unwrap(), ca);
        let names = vec!["gate-a.local".to_string(), "10.0.0.7".to_string()];
        let cert = issue_device_cert(&event, &fest(), &device, &names, now).unwrap();
        server_config(&cert, &device.join(DEVICE_TLS_KEY_FILE)).unwrap();
        // A key that does not go with the certificate is refused.
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        issue_device_cert(&event, &fest(), &other, &names, now).unwrap();
        assert!(server_config(&cert, &other.join(DEVICE_TLS_KEY_FILE)).is_err());
    }

    #[test]
    fn the_event_ca_vouches_for_local_names_and_private_addresses_only() {
        for good in [
            "gate-a.local",
            "localhost",
            "GATE.Local",
            "scanner.home.arpa",
            "box.lan",
            "a.internal",
            "10.1.2.3",
            "172.31.0.9",
            "192.168.10.21",
            "100.64.1.1",
            "127.0.0.1",
            "fd00::7",
            "::1",
        ] {
            assert!(check_names(&[good.to_string()]).is_ok(), "{good}");
        }
        for bad in [
            "",
            "has space.local",
            "a/b.local",
            "..local",
            "-gate.local",
            "gate-.local",
            "example.com",
            "local.example.com",
            "evil-local",
            "8.8.8.8",
            "172.32.0.1",
            "2001:db8::1",
            &format!("{}.local", "a".repeat(64)),
        ] {
            assert!(check_names(&[bad.to_string()]).is_err(), "{bad:?}");
        }
        assert!(check_names(&[]).is_err());
        assert!(check_names(&vec!["a.local".to_string(); TLS_NAMES_MAX + 1]).is_err());
    }

    #[test]
    fn a_device_name_becomes_a_local_host_name() {
        assert_eq!(default_name("gate-a"), "gate-a.local");
        assert_eq!(default_name("Gate A_2"), "gate-a-2.local");
        assert_eq!(default_name("__"), "gate.local");
        assert_eq!(default_name(&"é".repeat(100)), "gate.local");
        assert!(check_names(&[default_name(&"x".repeat(300))]).is_ok());
    }
}
