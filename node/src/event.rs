//! The event package made by the organizer before the event.
//!
//! `event.json` is public and copied to every device: event id, name, validity window, organizer
//! public keys (several may be valid at once, for rotation), zones, gates and ticket tiers with
//! their policy. The ledger needs no genesis document: every chain's first record links to an
//! anchor derived from the event id. `organizer-keys.json` holds the organizer's secret
//! keys (mode 0600) and never leaves the organizer's machine.

use crate::device::DeviceCertificate;
use crate::manifest::Manifest;
use crate::signed::Signed;
use anyhow::{bail, Context};
use ed25519_dalek::{SigningKey, VerifyingKey};
use gatemesh_crdt::{Direction, EntryRule};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const EVENT_FILE: &str = "event.json";
pub const ORGANIZER_KEYS_FILE: &str = "organizer-keys.json";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const DEVICES_DIR: &str = "devices";
/// Default grace for a scanner reading the same ticket twice.
pub const DOUBLE_SCAN_GRACE_MS_DEFAULT: u64 = 3_000;
/// Longest id or name in the event package.
pub const NAME_LEN_MAX: usize = 64;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrganizerKey {
    pub key_id: String,
    /// Hex of the 32-byte ed25519 public key.
    pub public_key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GateConfig {
    pub name: String,
    pub zone: String,
    pub direction: Direction,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TierConfig {
    pub name: String,
    pub max_entries: u32,
    pub reentry: bool,
    pub zones: Vec<String>,
    /// Optional narrower validity than the event's (ms since epoch).
    pub valid_from_ms: Option<u64>,
    pub valid_until_ms: Option<u64>,
    pub double_scan_grace_ms: u64,
}

/// Settings for the legacy HMAC JSON codes (seed `scan-validation-service.md`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LegacyConfig {
    /// The `eventId` legacy codes carry for this event.
    pub event_id: String,
    /// The tier legacy codes are admitted as.
    pub tier: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventConfig {
    pub format: u32,
    pub event_id: String,
    pub name: String,
    pub valid_from_ms: u64,
    pub valid_until_ms: u64,
    pub organizer_keys: Vec<OrganizerKey>,
    pub zones: Vec<String>,
    pub gates: Vec<GateConfig>,
    pub tiers: Vec<TierConfig>,
    pub legacy: LegacyConfig,
    /// Offline handhelds (not mesh nodes) whose scans a node takes in `POST /offline/reconcile`
    /// with the staff token; any other device id needs the admin token.
    #[serde(default)]
    pub offline_devices: Vec<String>,
}

/// The `format` this version writes (2: no genesis document; format 1 files still load, their
/// genesis is ignored).
pub const EVENT_FORMAT: u32 = 2;

impl EventConfig {
    /// A new event with a default layout: a main and a VIP zone, three entry gates and an exit,
    /// general (one entry), VIP (re-entry) and weekend (three entries) tiers.
    pub fn new(
        event_id: &str,
        name: &str,
        valid_from_ms: u64,
        valid_until_ms: u64,
        key: OrganizerKey,
    ) -> EventConfig {
        let gate = |n: &str, z: &str, d| GateConfig {
            name: n.into(),
            zone: z.into(),
            direction: d,
        };
        let tier = |n: &str, max, reentry, zones: &[&str]| TierConfig {
            name: n.into(),
            max_entries: max,
            reentry,
            zones: zones.iter().map(|z| z.to_string()).collect(),
            valid_from_ms: None,
            valid_until_ms: None,
            double_scan_grace_ms: DOUBLE_SCAN_GRACE_MS_DEFAULT,
        };
        EventConfig {
            format: EVENT_FORMAT,
            event_id: event_id.into(),
            name: name.into(),
            valid_from_ms,
            valid_until_ms,
            organizer_keys: vec![key],
            zones: vec!["main".into(), "vip".into()],
            gates: vec![
                gate("north", "main", Direction::In),
                gate("south", "main", Direction::In),
                gate("exit", "main", Direction::Out),
                gate("vip", "vip", Direction::In),
            ],
            tiers: vec![
                tier("general", 1, false, &["main"]),
                tier("vip", 1, true, &["main", "vip"]),
                tier("weekend", 3, false, &["main"]),
            ],
            legacy: LegacyConfig {
                event_id: event_id.into(),
                tier: "general".into(),
            },
            offline_devices: Vec::new(),
        }
    }

    /// Check internal consistency: every gate's zone and tier's zones exist, names bounded.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.organizer_keys.is_empty() {
            bail!("event has no organizer key");
        }
        let names = std::iter::once(&self.event_id)
            .chain(self.zones.iter())
            .chain(self.gates.iter().map(|g| &g.name))
            .chain(self.tiers.iter().map(|t| &t.name));
        for n in names {
            if n.is_empty() || n.len() > NAME_LEN_MAX || n.contains(char::is_whitespace) {
                bail!("name {n:?} must be 1..={NAME_LEN_MAX} characters without spaces");
            }
        }
        for d in &self.offline_devices {
            let ok = crate::offline::check_device_id(Some(d)).is_ok_and(|id| id == d);
            if !ok {
                bail!("offline device id {d:?} is not a valid device id");
            }
        }
        for g in &self.gates {
            if !self.zones.contains(&g.zone) {
                bail!("gate {} is in unknown zone {}", g.name, g.zone);
            }
        }
        for t in &self.tiers {
            if let Some(z) = t.zones.iter().find(|z| !self.zones.contains(z)) {
                bail!("tier {} names unknown zone {z}", t.name);
            }
        }
        if self.tier(&self.legacy.tier).is_none() {
            bail!("legacy tier {} is not a tier", self.legacy.tier);
        }
        self.organizer_verifying_keys()?;
        Ok(())
    }

    pub fn tier(&self, name: &str) -> Option<&TierConfig> {
        self.tiers.iter().find(|t| t.name == name)
    }

    pub fn gate(&self, name: &str) -> Option<&GateConfig> {
        self.gates.iter().find(|g| g.name == name)
    }

    pub fn organizer_verifying_keys(&self) -> anyhow::Result<HashMap<String, VerifyingKey>> {
        self.organizer_keys
            .iter()
            .map(|k| Ok((k.key_id.clone(), parse_public_key(&k.public_key)?)))
            .collect()
    }

    /// The entry rules the ledger's replay uses, per tier.
    pub fn entry_rules(&self) -> HashMap<String, EntryRule> {
        self.tiers
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    EntryRule {
                        max_entries: t.max_entries,
                        reentry: t.reentry,
                    },
                )
            })
            .collect()
    }
}

pub fn parse_public_key(hex_key: &str) -> anyhow::Result<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("public key must be 64 hex digits")?;
    VerifyingKey::from_bytes(&bytes).context("not an ed25519 public key")
}

pub fn parse_secret_key(hex_key: &str) -> anyhow::Result<SigningKey> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("secret key must be 64 hex digits")?;
    Ok(SigningKey::from_bytes(&bytes))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrganizerSecret {
    pub key_id: String,
    pub secret_key: String,
}

/// Everything a device loads from an event directory.
#[derive(Clone, Debug)]
pub struct EventPackage {
    pub dir: PathBuf,
    pub config: EventConfig,
    pub certificates: Vec<DeviceCertificate>,
    pub manifest: Option<Manifest>,
}

impl EventPackage {
    /// Load and check `event.json`, every device certificate and the manifest, if any.
    /// Certificates or a manifest that do not verify are an error: a device must not start on a
    /// package someone tampered with.
    pub fn load(dir: &Path) -> anyhow::Result<EventPackage> {
        let path = dir.join(EVENT_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let config: EventConfig =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        config
            .validate()
            .with_context(|| format!("checking {}", path.display()))?;
        let keys = config.organizer_verifying_keys()?;
        let mut certificates = Vec::new();
        let devices = dir.join(DEVICES_DIR);
        if devices.is_dir() {
            let mut paths: Vec<_> = std::fs::read_dir(&devices)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            paths.sort();
            for p in paths
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
            {
                certificates.push(DeviceCertificate::load(p, &config.event_id, &keys)?);
            }
        }
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = if manifest_path.exists() {
            Some(Manifest::load(&manifest_path, &config.event_id, &keys)?)
        } else {
            None
        };
        Ok(EventPackage {
            dir: dir.to_path_buf(),
            config,
            certificates,
            manifest,
        })
    }
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

/// Write a signed JSON envelope to a file.
pub fn write_signed(path: &Path, signed: &Signed) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(signed)?)
        .with_context(|| format!("writing {}", path.display()))
}
