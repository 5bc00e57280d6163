//! The event package on disk: reading `event.json`, the device certificates, the manifest, a
//! device's own key and the bulletins of a directory, and writing the organizer's files. The
//! pure core (`gatemesh_crdt`) checks what these files say; this module only moves bytes
//! between files and typed values.

use anyhow::{bail, Context};
use ed25519_dalek::{SigningKey, VerifyingKey};
use gatemesh_crdt::credential::{LegacySecret, LEGACY_EXPIRY_HOURS_DEFAULT};
use gatemesh_crdt::event::certificate::{parse_secret_key, DeviceCertificate, DeviceIdentity};
use gatemesh_crdt::event::manifest::{Manifest, ManifestBody};
use gatemesh_crdt::event::signed::Signed;
use gatemesh_crdt::event::{EventConfig, EventPackage};
use gatemesh_crdt::gate::bulletin::{Bulletin, BULLETINS_MAX};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const EVENT_FILE: &str = "event.json";
pub const ORGANIZER_KEYS_FILE: &str = "organizer-keys.json";
pub const MANIFEST_FILE: &str = "manifest.json";
/// What phones carry of the manifest: codes as hashes (`crdt::event::manifest::phone_manifest`).
pub const PHONE_MANIFEST_FILE: &str = "manifest-phone.json";
/// The guests' e-mail addresses (ticket id → address), owner-only: they stay with the
/// organizer and HQ, never in the manifest the scanners carry.
pub const GUEST_EMAILS_FILE: &str = "guest-emails.json";
pub const DEVICES_DIR: &str = "devices";
pub const DEVICE_KEY_FILE: &str = "device.key";
pub const DEVICE_CERT_FILE: &str = "device.cert.json";
/// Directory of bulletins, in the event package (made by the organizer) and in a node's data
/// directory (received ones).
pub const BULLETINS_DIR: &str = "bulletins";

/// Load and check `event.json`, every device certificate and the manifest, if any.
/// Certificates or a manifest that do not verify are an error: a device must not start on a
/// package someone tampered with.
pub fn load(dir: &Path) -> anyhow::Result<EventPackage> {
    let config = load_config(dir)?;
    let keys = config.organizer_verifying_keys()?;
    let mut certificates = Vec::new();
    let devices = dir.join(DEVICES_DIR);
    if devices.is_dir() {
        let mut paths: Vec<_> = std::fs::read_dir(&devices)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        for p in paths {
            certificates.push(load_certificate(&p, &config.event_id, &keys)?);
        }
    }
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest = if manifest_path.exists() {
        Some(load_manifest(&manifest_path, &config.event_id, &keys)?)
    } else {
        None
    };
    Ok(EventPackage {
        config,
        certificates,
        manifest,
    })
}

/// `event.json`, checked.
pub fn load_config(dir: &Path) -> anyhow::Result<EventConfig> {
    let path = dir.join(EVENT_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let config: EventConfig =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    config
        .validate()
        .with_context(|| format!("checking {}", path.display()))?;
    Ok(config)
}

/// A signed envelope from a file.
fn read_signed(path: &Path) -> anyhow::Result<Signed> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// A device certificate file, verified against the organizer keys and checked.
pub fn load_certificate(
    path: &Path,
    event_id: &str,
    keys: &HashMap<String, VerifyingKey>,
) -> anyhow::Result<DeviceCertificate> {
    let cert: DeviceCertificate = read_signed(path)?
        .open(|id| keys.get(id).copied())
        .with_context(|| format!("device certificate {}", path.display()))?;
    cert.check(event_id)?;
    Ok(cert)
}

/// The signed manifest (its body is large: read with serde_json once the signature holds).
pub fn load_manifest(
    path: &Path,
    event_id: &str,
    keys: &HashMap<String, VerifyingKey>,
) -> anyhow::Result<Manifest> {
    let signed = read_signed(path)?;
    let text = signed
        .verify(|id| keys.get(id).copied())
        .context("manifest")?;
    let body: ManifestBody = serde_json::from_str(text).context("manifest body")?;
    if body.event_id != event_id {
        bail!("manifest is for event {}, not {event_id}", body.event_id);
    }
    Ok(Manifest::new(body)?)
}

/// A device's own key and certificate, from its directory.
pub fn load_identity(
    dir: &Path,
    event_id: &str,
    keys: &HashMap<String, VerifyingKey>,
) -> anyhow::Result<DeviceIdentity> {
    let key_path = dir.join(DEVICE_KEY_FILE);
    let key = parse_secret_key(
        &std::fs::read_to_string(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?,
    )?;
    let certificate = load_certificate(&dir.join(DEVICE_CERT_FILE), event_id, keys)?;
    if certificate.verifying_key()? != key.verifying_key() {
        bail!(
            "{} does not match the certificate's public key",
            key_path.display()
        );
    }
    Ok(DeviceIdentity { key, certificate })
}

/// Every bulletin in `dir/bulletins/` that verifies, in version order. Files that do not verify
/// are reported in the second list and skipped.
pub fn load_bulletins(
    dir: &Path,
    event_id: &str,
    keys: &HashMap<String, VerifyingKey>,
) -> (Vec<Bulletin>, Vec<String>) {
    let mut found = Vec::new();
    let mut bad = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join(BULLETINS_DIR)) else {
        return (found, bad);
    };
    for e in entries.flatten().take(BULLETINS_MAX) {
        let read = std::fs::read(e.path())
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(Bulletin::from_bytes(&bytes, event_id, keys)?));
        match read {
            Ok(b) => found.push(b),
            Err(err) => bad.push(format!("{}: {err:#}", e.path().display())),
        }
    }
    found.sort_by_key(|b| (b.version(), b.hash()));
    (found, bad)
}

/// Store a bulletin in `dir/bulletins/<version>-<hash>.json`, durably.
pub fn save_bulletin(dir: &Path, b: &Bulletin) -> std::io::Result<()> {
    use std::io::Write;
    let d = dir.join(BULLETINS_DIR);
    std::fs::create_dir_all(&d)?;
    let path = d.join(format!("{}.json", b.label()));
    let mut f = std::fs::File::create(&path)?;
    f.write_all(b.bytes())?;
    f.sync_all()?;
    std::fs::File::open(&d)?.sync_all()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrganizerSecret {
    pub key_id: String,
    pub secret_key: String,
}

/// Load the organizer's secret keys (only `event create`, `tickets issue`, `device enroll` do).
pub fn load_organizer_secrets(dir: &Path) -> anyhow::Result<Vec<OrganizerSecret>> {
    let path = dir.join(ORGANIZER_KEYS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (the organizer's secret keys; only the organizer has them)",
            path.display()
        )
    })?;
    Ok(serde_json::from_str(&text)?)
}

/// Pick the signing key: `key_id` if given, else the newest.
pub fn organizer_signing_key(
    dir: &Path,
    key_id: Option<&str>,
) -> anyhow::Result<(String, SigningKey)> {
    let secrets = load_organizer_secrets(dir)?;
    let s = match key_id {
        Some(id) => secrets
            .iter()
            .find(|s| s.key_id == id)
            .with_context(|| format!("no organizer key {id}"))?,
        None => secrets.last().context("no organizer key")?,
    };
    Ok((s.key_id.clone(), parse_secret_key(&s.secret_key)?))
}

/// Sign a value as JSON with an organizer key.
pub fn sign<T: Serialize>(body: &T, key_id: &str, key: &SigningKey) -> anyhow::Result<Signed> {
    Ok(Signed::sign_text(serde_json::to_string(body)?, key_id, key))
}

/// Write a file readable by its owner only (secret keys).
pub fn write_secret_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}

/// The guests' e-mail addresses the organizer keeps (empty when there are none).
pub fn load_guest_emails(dir: &Path) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let path = dir.join(GUEST_EMAILS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Add guests' e-mail addresses to the organizer's file (owner-only).
pub fn add_guest_emails(dir: &Path, emails: &[(String, String)]) -> anyhow::Result<()> {
    if emails.is_empty() {
        return Ok(());
    }
    let mut all = load_guest_emails(dir)?;
    all.extend(emails.iter().cloned());
    write_secret_file(
        &dir.join(GUEST_EMAILS_FILE),
        &serde_json::to_vec_pretty(&all)?,
    )
}

/// Write a signed JSON envelope to a file.
pub fn write_signed(path: &Path, signed: &Signed) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(signed)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The legacy HMAC secret: `--hmac-secret-file`, else `QR_SIGNATURE_SECRET`; `QR_EXPIRY_HOURS`.
pub fn legacy_secret(file: Option<&Path>) -> anyhow::Result<Option<LegacySecret>> {
    let secret = match file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", f.display()))?
                .trim_end()
                .as_bytes()
                .to_vec(),
        ),
        None => std::env::var("QR_SIGNATURE_SECRET")
            .ok()
            .map(String::into_bytes),
    };
    let hours = match std::env::var("QR_EXPIRY_HOURS") {
        Ok(h) => h
            .parse::<u64>()
            .with_context(|| format!("QR_EXPIRY_HOURS={h:?} is not a whole number of hours"))?,
        Err(_) => LEGACY_EXPIRY_HOURS_DEFAULT,
    };
    Ok(secret.filter(|s| !s.is_empty()).map(|secret| LegacySecret {
        secret,
        expiry_ms: hours * 3600 * 1000,
    }))
}
