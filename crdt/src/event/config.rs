//! The event package made by the organizer before the event.
//!
//! `event.json` is public and copied to every device: event id, name, validity window, organizer
//! public keys (several may be valid at once, for rotation), zones, gates and ticket tiers with
//! their policy. The ledger needs no genesis document: every chain's first record links to an
//! anchor derived from the event id. `organizer-keys.json` holds the organizer's secret
//! keys (mode 0600) and never leaves the organizer's machine.

use crate::event::certificate::{parse_public_key, DeviceCertificate, KeyError};
use crate::event::manifest::Manifest;
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
    /// The gate's check-in list: the tiers it admits (a VIP or staff door); empty, every tier
    /// allowed in its zone. Others are denied `wrong_list`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<String>,
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
    /// Stop the steward on every admit of this tier (amber screen, confirm by tap), with this
    /// note (e.g. "check the student card").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<String>,
    /// Most entries in one festival day (a weekend pass: 1), within `max_entries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries_per_day: Option<u32>,
    /// The festival days the tier is valid on (`2026-07-10`, days as `day_starts` cuts them);
    /// empty, every day of the event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub valid_days: Vec<String>,
    /// The tier's tickets show live codes (GM2, `tickets issue --rotating`): a static code of
    /// it (GM1, legacy) is refused `code_expired`, as a screenshot would be.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub live_code: bool,
}

/// How recent a live code (GM2) must be (`event.json` `live_codes`; these defaults when
/// absent).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LiveCodes {
    /// How long after its 15-second step began a live code is taken: a screenshot stops
    /// working then. A wallet whose clock runs behind spends this too.
    pub window_s: u64,
    /// How far ahead of the scanner's clock a wallet's clock may run.
    pub ahead_s: u64,
}

impl Default for LiveCodes {
    fn default() -> Self {
        LiveCodes {
            window_s: 30,
            ahead_s: 60,
        }
    }
}

/// Longest window (or clock lead) a live code may be given, in seconds.
pub const LIVE_CODE_S_MAX: u64 = 600;

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
    /// Most people inside a zone at once (zone → capacity): admits beyond are `zone_full`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub capacity: std::collections::BTreeMap<String, u64>,
    /// When a festival day starts, local time with its UTC offset (`06:00+02:00`; default
    /// `00:00+00:00`): what daily limits and valid days count in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_starts: Option<String>,
    /// How recent a live code must be; the defaults ([`LiveCodes::default`]) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_codes: Option<LiveCodes>,
    /// Zones whose capacity is a hard limit even across a split (`"strict"`), rather than the
    /// merged count reported when it is passed (the default): each gate admits with room it
    /// holds (`crate::index::room`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub capacity_mode: std::collections::BTreeMap<String, CapacityMode>,
    /// A strict zone's room at the start: the scanners (device ids) that hold it, its
    /// capacity shared among them in this order (the first ones get one more when it does not
    /// divide). Every other device starts with none and is given room as it needs it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub room_holders: std::collections::BTreeMap<String, Vec<String>>,
}

/// Most places a strict zone may have.
pub const STRICT_CAPACITY_MAX: u64 = 1_000_000_000;

/// How a zone's capacity holds.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CapacityMode {
    /// Gates judge by the merged count; an overshoot in a split is reported.
    Reported,
    /// Gates admit only with room they hold: never over capacity.
    Strict,
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
            tiers: Vec::new(),
        };
        let tier = |n: &str, max, reentry, zones: &[&str]| TierConfig {
            name: n.into(),
            max_entries: max,
            reentry,
            zones: zones.iter().map(|z| z.to_string()).collect(),
            valid_from_ms: None,
            valid_until_ms: None,
            double_scan_grace_ms: DOUBLE_SCAN_GRACE_MS_DEFAULT,
            attention: None,
            max_entries_per_day: None,
            valid_days: Vec::new(),
            live_code: false,
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
            day_starts: None,
            capacity: Default::default(),
            live_codes: None,
            capacity_mode: Default::default(),
            room_holders: Default::default(),
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
            let ok = offline_device_id_ok(d);
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
        self.validate_days_and_lists()?;
        if self.tier(&self.legacy.tier).is_none() {
            return bail(format!("legacy tier {} is not a tier", self.legacy.tier));
        }
        self.organizer_verifying_keys()?;
        Ok(())
    }

    /// Check-in lists name tiers that exist; notes, days and the day start read.
    fn validate_days_and_lists(&self) -> Result<(), EventError> {
        let bail = |s: String| Err(EventError::Invalid(s));
        for g in &self.gates {
            if let Some(t) = g.tiers.iter().find(|t| self.tier(t).is_none()) {
                return bail(format!("gate {} lists unknown tier {t}", g.name));
            }
        }
        self.validate_strict()?;
        if let Some(l) = self.live_codes {
            if l.window_s == 0 || l.window_s > LIVE_CODE_S_MAX || l.ahead_s > LIVE_CODE_S_MAX {
                return bail(format!(
                    "live_codes: window_s is 1..={LIVE_CODE_S_MAX}, ahead_s 0..={LIVE_CODE_S_MAX}"
                ));
            }
        }
        for (zone, cap) in &self.capacity {
            if !self.zones.contains(zone) || *cap == 0 {
                return bail(format!("capacity names unknown zone {zone} or is 0"));
            }
        }
        if let Some(d) = &self.day_starts {
            if parse_day_start(d).is_none() {
                return bail(format!(
                    "day_starts {d:?} is not HH:MM with an offset (06:00+02:00)"
                ));
            }
        }
        for t in &self.tiers {
            let bad_note = t.attention.as_ref().is_some_and(|n| {
                n.len() > crate::event::manifest::NOTES_BYTES_MAX || n.chars().any(char::is_control)
            });
            if bad_note {
                return bail(format!(
                    "tier {}: attention note too long or not text",
                    t.name
                ));
            }
            if let Some(d) = t.valid_days.iter().find(|d| parse_day(d).is_none()) {
                return bail(format!(
                    "tier {}: valid day {d:?} is not YYYY-MM-DD",
                    t.name
                ));
            }
            if t.max_entries_per_day == Some(0) {
                return bail(format!(
                    "tier {}: max_entries_per_day must be 1 or more",
                    t.name
                ));
            }
        }
        Ok(())
    }

    /// A strict zone has a capacity and its room's holders: device ids, each once, at most
    /// [`crate::event::roster::ROSTER_DEVICES_MAX`].
    fn validate_strict(&self) -> Result<(), EventError> {
        let bail = |s: String| Err(EventError::Invalid(s));
        for (zone, mode) in &self.capacity_mode {
            let cap = self.capacity.get(zone).copied();
            let cap_ok = cap.is_some_and(|c| c <= STRICT_CAPACITY_MAX);
            if *mode == CapacityMode::Strict && !cap_ok {
                return bail(format!(
                    "strict zone {zone} has no capacity, or one over {}",
                    STRICT_CAPACITY_MAX
                ));
            }
            if *mode == CapacityMode::Strict && !self.room_holders.contains_key(zone) {
                return bail(format!("strict zone {zone} names no room holders"));
            }
        }
        for (zone, holders) in &self.room_holders {
            let mut seen = std::collections::BTreeSet::new();
            let ok = holders.len() <= crate::event::roster::ROSTER_DEVICES_MAX
                && holders
                    .iter()
                    .all(|h| crate::record::DeviceId::parse(h).is_some() && seen.insert(h));
            if !ok || self.capacity_mode.get(zone) != Some(&CapacityMode::Strict) {
                return bail(format!(
                    "room_holders of {zone}: device ids (8 hex), each once, of a strict zone"
                ));
            }
        }
        Ok(())
    }

    /// Whether a zone's capacity is strict.
    pub fn is_strict(&self, zone: &str) -> bool {
        self.capacity_mode.get(zone) == Some(&CapacityMode::Strict)
    }

    /// How recent a live code must be: (window, clock lead), in ms.
    pub fn live_code_ms(&self) -> (u64, u64) {
        let l = self.live_codes.unwrap_or_default();
        (l.window_s * 1000, l.ahead_s * 1000)
    }

    /// When a festival day starts, in ms after its date's midnight UTC (may be negative).
    pub fn day_start_ms(&self) -> i64 {
        self.day_starts
            .as_deref()
            .and_then(parse_day_start)
            .unwrap_or(0)
    }

    /// The festival day a time falls in.
    pub fn festival_day(&self, ms: u64) -> u64 {
        crate::record::date::festival_day(ms, self.day_start_ms())
    }

    /// A tier's valid days, as festival day numbers (empty: every day).
    pub fn valid_days(&self, tier: &TierConfig) -> Vec<u64> {
        tier.valid_days
            .iter()
            .filter_map(|d| parse_day(d))
            .collect()
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

    /// What identifies the configuration a node judges by: SHA-256 of the configuration's
    /// canonical encoding (postcard: fields in order, lists and maps in their order), so two
    /// copies of `event.json` that differ only in layout agree, and any rule that differs does
    /// not. Nodes exchange it when they connect and refuse a peer on another one.
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"gatemesh event configuration 1\n");
        h.update(postcard::to_allocvec(self).unwrap_or_default());
        h.finalize().into()
    }
}

/// Longest offline device id.
pub const DEVICE_ID_LEN_MAX: usize = 64;

/// An offline device's id (`offline_devices`, reconcile requests): 1..=64 bytes, no `@`, no
/// control characters, no space around it.
pub fn offline_device_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.trim() == id
        && id.len() <= DEVICE_ID_LEN_MAX
        && !id.contains('@')
        && !id.chars().any(char::is_control)
}

/// `HH:MM` with an optional `+HH:MM` / `-HH:MM` offset → when the day starts, in ms after its
/// date's midnight UTC: local start minus offset (`00:00+02:00` → -2 h, so 10 July local starts
/// at 9 July 22:00 UTC and is still named 10 July).
pub fn parse_day_start(s: &str) -> Option<i64> {
    let hm = |t: &str| -> Option<i64> {
        let (h, m) = t.split_once(':')?;
        let ok = h.len() == 2
            && m.len() == 2
            && (h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit());
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        (ok && h < 24 && m < 60).then_some((h * 60 + m) * 60_000)
    };
    let (local, offset) = match s.find(['+', '-']) {
        Some(i) => {
            let sign = if s.as_bytes()[i] == b'-' { -1 } else { 1 };
            (&s[..i], sign * hm(&s[i + 1..])?)
        }
        None => (s, 0),
    };
    Some(hm(local)? - offset)
}

/// `YYYY-MM-DD` → days since 1970-01-01.
pub fn parse_day(s: &str) -> Option<u64> {
    let ok = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
    let t = humantime::parse_rfc3339(&format!("{s}T00:00:00Z"))
        .ok()
        .filter(|_| ok)?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(ms / crate::record::date::DAY_MS)
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
