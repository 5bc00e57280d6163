//! The event package made by the organizer before the event.
//!
//! `event.json` is public and copied to every device: event id, name, validity window, organizer
//! public keys (several may be valid at once, for rotation), zones, gates and ticket tiers with
//! their policy. The ledger needs no genesis document: every chain's first record links to an
//! anchor derived from the event id. `organizer-keys.json` holds the organizer's secret
//! keys (mode 0600) and never leaves the organizer's machine.

use crate::certificate::{parse_public_key, DeviceCertificate, KeyError};
use crate::index::EntryRule;
use crate::manifest::Manifest;
use crate::record::Direction;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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
    pub fn validate(&self) -> Result<(), EventError> {
        let bail = |s: String| Err(EventError::Invalid(s));
        if self.organizer_keys.is_empty() {
            return bail("event has no organizer key".into());
        }
        let names = std::iter::once(&self.event_id)
            .chain(self.zones.iter())
            .chain(self.gates.iter().map(|g| &g.name))
            .chain(self.tiers.iter().map(|t| &t.name));
        for n in names {
            if n.is_empty() || n.len() > NAME_LEN_MAX || n.contains(char::is_whitespace) {
                return bail(format!(
                    "name {n:?} must be 1..={NAME_LEN_MAX} characters without spaces"
                ));
            }
        }
        for d in &self.offline_devices {
            let ok = crate::offline::check_device_id(Some(d)).is_ok_and(|id| id == d);
            if !ok {
                return bail(format!("offline device id {d:?} is not a valid device id"));
            }
        }
        for g in &self.gates {
            if !self.zones.contains(&g.zone) {
                return bail(format!("gate {} is in unknown zone {}", g.name, g.zone));
            }
        }
        for t in &self.tiers {
            if let Some(z) = t.zones.iter().find(|z| !self.zones.contains(z)) {
                return bail(format!("tier {} names unknown zone {z}", t.name));
            }
        }
        if self.tier(&self.legacy.tier).is_none() {
            return bail(format!("legacy tier {} is not a tier", self.legacy.tier));
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

    pub fn organizer_verifying_keys(&self) -> Result<HashMap<String, VerifyingKey>, KeyError> {
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event.json: {0}")]
    Invalid(String),
    #[error("event.json: {0}")]
    Key(#[from] KeyError),
}

/// Everything a device needs of the event: its configuration, the enrolled devices'
/// certificates and the ticket manifest, all checked by whoever loaded them.
#[derive(Clone, Debug)]
pub struct EventPackage {
    pub config: EventConfig,
    pub certificates: Vec<DeviceCertificate>,
    pub manifest: Option<Manifest>,
}
