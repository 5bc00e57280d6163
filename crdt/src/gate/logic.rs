//! A device's gate logic: read the credential, apply the policy, consult and write the ledger.
//!
//! Pure: bytes and `now_ms` in, a decision and the change bytes to persist out. The caller (the
//! CLI, the HTTP API, the simulator) makes the change durable before showing the answer.

use crate::credential::{self, Credential, LegacySecret, Readers};
use crate::event::certificate::{
    roster_from, CertificateError, DeviceCertificate, DeviceIdentity, Role,
};
use crate::event::manifest::Manifest;
use crate::event::pass::{self, PassCheck};
use crate::event::roster::RosterDevice;
use crate::event::{EventConfig, EventPackage, GateConfig};
use crate::gate::bulletin::Bulletin;
use crate::gate::escrow;
use crate::gate::policy::{self, Denial, Reason};
use crate::ledger::{Draft, ForkProof, Ledger, LedgerError, LocalDevice};
use crate::record::{ChainId, DeviceId, Direction, Verdict};
use crate::RecordRef;
use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// How long after an admit the steward who made it may undo it (the ledger's replay honours an
/// annul only within it, on every replica).
pub const ANNUL_WINDOW_MS: u64 = crate::ANNUL_WINDOW_MS;

/// Most references to earlier scans a record carries.
const SEEN_REFS_MAX: usize = crate::record::SEEN_REFS_MAX;

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("unknown gate {0}")]
    UnknownGate(String),
    #[error("scan {0} cannot be annulled: {1}")]
    NotAnnullable(String, &'static str),
    #[error("this node holds {0} bulletins already, the most it keeps")]
    TooManyBulletins(usize),
    #[error("ticket {0} is not in the manifest")]
    UnknownTicket(String),
    #[error("scan time {0} is outside the event (or in the future)")]
    OutsideEvent(u64),
    #[error("the code is for ticket {0}, not the one named")]
    TicketMismatch(String),
    #[error("this device is a steward's: undo, hand check-in and gate pause are a supervisor's")]
    NotSupervisor,
    #[error("phone {0} was unpaired by the organizer")]
    Unpaired(String),
    #[error("{0}")]
    PhoneName(String),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("device certificates: {0}")]
    Certificates(#[from] CertificateError),
    #[error("{0}")]
    Key(#[from] crate::event::certificate::KeyError),
    #[error("store: {0}")]
    Store(String),
}

impl GateError {
    /// Stable code for the HTTP API and the CLI.
    pub fn code(&self) -> &'static str {
        match self {
            GateError::UnknownGate(_) => "unknown_gate",
            GateError::NotAnnullable(..) => "not_annullable",
            GateError::TooManyBulletins(_) => "too_many_bulletins",
            GateError::UnknownTicket(_) => "unknown_ticket",
            GateError::OutsideEvent(_) => "outside_event",
            GateError::TicketMismatch(_) => "ticket_mismatch",
            GateError::Unpaired(_) => "unpaired",
            GateError::NotSupervisor => "supervisor_only",
            GateError::PhoneName(_) => "invalid_field",
            GateError::Ledger(_) => "ledger_error",
            GateError::Certificates(_) | GateError::Key(_) => "event_package",
            GateError::Store(_) => "store_error",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TicketInfo {
    pub id: String,
    pub tier: String,
    pub format: credential::Format,
    /// Who holds it, from the manifest (never from the code): for the steward to check an ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// The answer for one scan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<TicketInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<RecordRef>,
    pub scan_id: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeat: bool,
    pub gate: String,
    pub direction: Direction,
    /// An admit the steward must look at before letting the holder through (amber screen),
    /// with the ticket's or the tier's note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention: Option<String>,
    /// Checked in by hand (found by search), not from a scanned code.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
    /// The node had caught up with its peers when it decided ([`crate::ledger::catchup`]); shown as
    /// `"synced": false` while it is catching up after a start.
    #[serde(skip_serializing_if = "is_true")]
    pub synced: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Decision {
    /// `admit`, `deny` (or `annul`), as in the HTTP answer.
    pub fn verdict_code(&self) -> &'static str {
        match self.verdict {
            Verdict::Admit => "admit",
            Verdict::Deny => "deny",
            Verdict::Annul => "annul",
            Verdict::Room => "room",
            Verdict::Pause => "pause",
        }
    }
}

/// A decision and the ledger change to make durable (none for a repeat).
#[derive(Clone, Debug)]
pub struct ScanOutcome {
    pub decision: Decision,
    pub change: Option<Vec<u8>>,
}

/// One scan request.
#[derive(Clone, Copy, Debug)]
pub struct ScanRequest<'a> {
    pub code: &'a [u8],
    pub gate: &'a str,
    /// Defaults to the gate's direction.
    pub direction: Option<Direction>,
    /// `code` is a ticket id the steward found by search: the manifest says what the ticket
    /// is, and the record is marked `manual`. The same policy and reasons as a scan.
    pub manual: bool,
    /// A paired phone's scan: `live:<phone>@<ms its clock read>`, kept as the record's origin, so
    /// the same scan reconciled later (the phone never got this answer and decided offline) is
    /// `DUPLICATE` and counts once. Ignored when malformed, outside the event's time or on the
    /// ticket already.
    pub origin: Option<&'a str>,
}

pub use crate::record::MANUAL_ORIGIN_PREFIX;

/// A scan an offline (non-mesh) device made and now reconciles through this node.
#[derive(Clone, Debug)]
pub struct OfflineScan<'a> {
    pub ticket_id: &'a str,
    /// The code as the device read it: read again here (its signature checked by this node),
    /// and the ticket need not be in the manifest. Without it, the manifest says what the
    /// ticket is.
    pub code: Option<&'a [u8]>,
    /// `in` or `out`; the gate's when absent.
    pub direction: Option<Direction>,
    pub scanned_at_ms: u64,
    /// The offline device let the holder in.
    pub allowed: bool,
    /// Its reason for a denial (a reason code; anything else is recorded as `offline_deny`).
    pub reason: Option<&'a str>,
    pub gate: &'a str,
    /// `<device>@<scanned-at ms>`.
    pub origin: String,
}

/// What became of a reconciled scan.
#[derive(Clone, Debug)]
pub enum OfflineOutcome {
    /// This origin is on the ticket already.
    Duplicate,
    /// Recorded; `policy` is the denial the gate policy gave an allowed scan (recorded as a
    /// denial, never as an entry).
    Recorded {
        scan_id: String,
        change: Vec<u8>,
        policy: Option<Denial>,
    },
}

/// How far outside the event's validity an offline scan time may be (clocks of handhelds).
pub const OFFLINE_TIME_SLACK_MS: u64 = 24 * 3_600_000;
/// How far ahead of this node's clock an offline scan time may be.
pub const OFFLINE_FUTURE_MS: u64 = 10 * 60 * 1000;

/// What applying a bulletin changed.
#[derive(Clone, Debug, Default)]
pub struct BulletinEffect {
    pub revoked_tickets: usize,
    /// Revoked devices and how many of their records left the index.
    pub revoked_devices: Vec<(crate::DeviceId, u64)>,
    /// Newly enrolled devices (their records come by sync; the count is kept for the event
    /// line and is 0).
    pub added_devices: Vec<(DeviceCertificate, u64)>,
    /// Pause and resume orders taken.
    pub pauses: usize,
    /// Rule changes taken, and how many tickets were judged again under the rules in force.
    pub rules: usize,
    pub rejudged: usize,
    /// Phones unpaired.
    pub unpaired: usize,
}

pub struct GateLogic {
    /// Every bulletin applied, by hash.
    bulletins: BTreeMap<[u8; 32], Bulletin>,
    config: EventConfig,
    organizer_keys: HashMap<String, VerifyingKey>,
    manifest: Manifest,
    legacy_secret: Option<LegacySecret>,
    revoked_tickets: HashSet<String>,
    pauses: crate::gate::pause::Pauses,
    /// Phones the organizer unpaired (bulletins' `unpair`).
    unpaired: std::collections::BTreeSet<String>,
    ledger: Ledger,
}

/// The entry rules in force under these bulletins (see [`crate::event::rules`]).
fn rules_in_force<'a>(
    config: &EventConfig,
    bulletins: impl IntoIterator<Item = &'a Bulletin>,
) -> std::collections::HashMap<String, crate::EntryRule> {
    let changes = bulletins
        .into_iter()
        .map(|b| ((b.version(), b.hash()), &b.body.rules[..]));
    crate::event::rules::in_force(config, changes)
}

/// A bulletin's part in the roster: its revocations, then its added scanners (the roster keeps
/// a revocation that came before its device, so the order bulletins come in does not matter).
/// One rule for the running node and the restart. Returns the devices revoked and the records
/// each lost.
fn apply_roster(ledger: &mut Ledger, b: &Bulletin) -> Vec<(crate::DeviceId, u64)> {
    let mut revoked = Vec::new();
    for r in &b.body.revoke_devices {
        let (Some(id), Some(cut)) = (crate::DeviceId::parse(&r.device_id), r.cut()) else {
            continue;
        };
        revoked.push((id, ledger.revoke(id, &cut)));
    }
    for c in &b.added {
        if let (true, Ok(key)) = (c.role.writes(), c.verifying_key()) {
            ledger.add_device(RosterDevice {
                key,
                name: c.name.clone(),
                cut: None,
                supervisor: c.role == Role::Supervisor,
            });
        }
    }
    revoked
}

impl GateLogic {
    /// Gate logic over an already opened ledger.
    pub fn new(
        package: &EventPackage,
        ledger: Ledger,
        legacy_secret: Option<LegacySecret>,
    ) -> Result<GateLogic, GateError> {
        Ok(GateLogic {
            bulletins: BTreeMap::new(),
            organizer_keys: package.config.organizer_verifying_keys()?,
            config: package.config.clone(),
            manifest: package.manifest.clone().unwrap_or_default(),
            legacy_secret,
            revoked_tickets: HashSet::new(),
            pauses: Default::default(),
            unpaired: Default::default(),
            ledger,
        })
    }

    /// Open the ledger for this package and device (writing on `chain`) as the device had it:
    /// the roster its bulletins made (devices added, devices revoked) first, then its fork
    /// proofs, then its store, restored at `now_ms` with the running node's clock bound; so a
    /// restart trusts exactly what the running node did. The bulletins are applied in full to
    /// the gate logic afterwards ([`Self::apply_bulletin`]). Returns the ledger and how many
    /// stored changes it refused.
    pub fn open_ledger<'a>(
        package: &EventPackage,
        device: Option<&DeviceIdentity>,
        chain: ChainId,
        bulletins: &[Bulletin],
        forks: &[ForkProof],
        stored: impl IntoIterator<Item = &'a [u8]>,
        now_ms: u64,
    ) -> Result<(Ledger, u64), GateError> {
        let roster = roster_from(&package.certificates)?;
        let local = device.map(|d| LocalDevice {
            key: d.key.clone(),
            chain,
        });
        let mut ledger = Ledger::new(
            &package.config.event_id,
            roster,
            rules_in_force(&package.config, bulletins),
            local,
        );
        ledger.set_strict(escrow::strict_zones(&package.config));
        for b in bulletins {
            apply_roster(&mut ledger, b);
        }
        for (a, b) in forks {
            let _ = ledger.accept_fork(a, b);
        }
        let refused = ledger.restore(now_ms, stored);
        Ok((ledger, refused))
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    pub fn into_ledger(self) -> Ledger {
        self.ledger
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Tickets revoked by bulletins.
    pub fn revoked_tickets(&self) -> &HashSet<String> {
        &self.revoked_tickets
    }

    pub fn is_revoked(&self, ticket_id: &str) -> bool {
        self.revoked_tickets.contains(ticket_id)
    }

    pub fn config(&self) -> &EventConfig {
        &self.config
    }

    /// Per strict zone where this gate is short of room: the units it wants and the gates it
    /// knows to hold some ([`escrow::wanted`]).
    pub fn room_wanted(&self) -> Vec<(String, u32, Vec<DeviceId>)> {
        escrow::wanted(&self.ledger, &self.config)
    }

    /// Give room of a zone to a gate that asked ([`escrow::give`]): the room record's change
    /// and the units.
    pub fn give_room(
        &mut self,
        now_ms: u64,
        to: DeviceId,
        asked: (&str, u32),
        busy: bool,
    ) -> Option<(Vec<u8>, u32)> {
        escrow::give((&mut self.ledger, &self.config), now_ms, to, asked, busy)
    }

    /// The organizer keys in force (bulletins and tickets are checked against them).
    pub fn organizer_keys(&self) -> &HashMap<String, VerifyingKey> {
        &self.organizer_keys
    }

    /// What a phone's pass is checked against now: the organizer keys, the scanners that may
    /// pair phones (enrolled and not revoked) and the phones unpaired.
    pub fn pass_check(&self) -> PassCheck {
        let issuers = (self.ledger.roster().iter())
            .filter(|(_, d)| d.cut.is_none())
            .map(|(id, d)| (*id, d.key))
            .collect();
        PassCheck {
            event_id: self.config.event_id.clone(),
            organizer_keys: self.organizer_keys.clone(),
            issuers,
            unpaired: self.unpaired.iter().cloned().collect(),
        }
    }

    pub fn is_unpaired(&self, device_id: &str) -> bool {
        self.unpaired.contains(device_id)
    }

    /// Pair a phone (a supervisor on the dashboard): a pass for `<name>-<4 hex>` signed with
    /// this scanner's key, valid until the event's end (with a day's slack). Returns the
    /// phone's device id and its pass.
    pub fn pair_phone(&self, now_ms: u64, name: &str) -> Result<(String, String), GateError> {
        let key = (self.ledger.local_key()).ok_or(GateError::Ledger(LedgerError::ReadOnly))?;
        let me = DeviceId::from_public_key(&key.verifying_key());
        let salt = [me.0.to_be_bytes(), (now_ms as u32).to_be_bytes()].concat();
        let device_id = pass::phone_device_id(name, &salt).ok_or_else(|| {
            GateError::PhoneName(format!(
                "a phone's name is 1..={} bytes, without spaces, '@' or control characters",
                pass::PHONE_NAME_BYTES_MAX
            ))
        })?;
        let until_ms = (self
            .config
            .valid_until_ms
            .saturating_add(OFFLINE_TIME_SLACK_MS))
        .clamp(now_ms + 1, now_ms + pass::PASS_VALID_MS_MAX);
        let body = pass::PassBody {
            event_id: self.config.event_id.clone(),
            device_id: device_id.clone(),
            issuer: pass::Issuer::Device(me).label(),
            issued_ms: now_ms,
            until_ms,
        };
        Ok((device_id, pass::issue(&body, key)))
    }

    /// Apply a verified bulletin. `Ok(None)`: it was applied already.
    pub fn apply_bulletin(&mut self, b: &Bulletin) -> Result<Option<BulletinEffect>, GateError> {
        let Some(mut effect) = self.take_bulletin(b)? else {
            return Ok(None);
        };
        if !b.body.rules.is_empty() {
            effect.rules = b.body.rules.len();
            let rules = rules_in_force(&self.config, self.bulletins.values());
            effect.rejudged = self.ledger.set_rules(rules);
        }
        Ok(Some(effect))
    }

    /// Apply the bulletins a restart found, as the running node had them: each as
    /// [`Self::apply_bulletin`] does, the rules in force set once at the end rather than once
    /// per rule bulletin. Returns those refused, with why.
    pub fn restore_bulletins<'a>(
        &mut self,
        bulletins: &'a [Bulletin],
    ) -> Vec<(&'a Bulletin, GateError)> {
        let refused = (bulletins.iter())
            .filter_map(|b| self.take_bulletin(b).err().map(|e| (b, e)))
            .collect();
        let rules = rules_in_force(&self.config, self.bulletins.values());
        self.ledger.set_rules(rules);
        refused
    }

    /// A bulletin's every part but its rule changes. `Ok(None)`: taken already.
    fn take_bulletin(&mut self, b: &Bulletin) -> Result<Option<BulletinEffect>, GateError> {
        if self.bulletins.contains_key(&b.hash()) {
            return Ok(None);
        }
        if self.bulletins.len() >= crate::gate::bulletin::BULLETINS_MAX {
            return Err(GateError::TooManyBulletins(self.bulletins.len()));
        }
        let mut effect = BulletinEffect::default();
        for t in &b.body.revoke_tickets {
            self.revoke_ticket(t);
            effect.revoked_tickets += 1;
        }
        effect.revoked_devices = apply_roster(&mut self.ledger, b);
        for order in &b.body.pauses {
            self.pauses.apply(order, b.body.issued_ms, b.hash());
            effect.pauses += 1;
        }
        for c in &b.added {
            effect.added_devices.push((c.clone(), 0));
        }
        self.unpaired.extend(b.body.unpair.iter().cloned());
        effect.unpaired = b.body.unpair.len();
        self.bulletins.insert(b.hash(), b.clone());
        Ok(Some(effect))
    }

    /// The pauses in force.
    pub fn pauses(&self) -> Vec<crate::gate::pause::ActivePause> {
        self.pauses.all()
    }

    /// How many bulletins are applied.
    pub fn bulletin_count(&self) -> usize {
        self.bulletins.len()
    }

    /// Every bulletin applied, in version order.
    pub fn bulletins(&self) -> impl Iterator<Item = &Bulletin> {
        let mut all: Vec<&Bulletin> = self.bulletins.values().collect();
        all.sort_by_key(|b| (b.version(), b.hash()));
        all.into_iter()
    }

    /// Revoke a ticket (organizer bulletin): later scans are denied `revoked`.
    pub fn revoke_ticket(&mut self, ticket_id: &str) {
        self.revoked_tickets.insert(ticket_id.to_string());
    }

    /// Decide one scan and write its record (admits and denials alike).
    pub fn scan(&mut self, now_ms: u64, req: ScanRequest<'_>) -> Result<ScanOutcome, GateError> {
        let gate = self
            .config
            .gate(req.gate)
            .cloned()
            .ok_or_else(|| GateError::UnknownGate(req.gate.to_string()))?;
        if req.manual && !self.is_supervisor() {
            return Err(GateError::NotSupervisor);
        }
        let at = At {
            now_ms,
            gate: &gate,
            direction: req.direction.unwrap_or(gate.direction),
            manual: req.manual,
            origin: req.origin.filter(|o| self.phone_origin_ok(now_ms, o)),
        };
        let cred = self.credential(req);
        // A pause stops entries, never exits (an evacuation must let people out).
        let paused = match at.direction {
            Direction::In => (self.pauses.stopping(&gate.name, &gate.zone))
                .or_else(|| self.gate_pause(&gate.name, now_ms)),
            Direction::Out => None,
        };
        if let Some(p) = paused {
            let denial = Denial::new(Reason::Paused, paused_message(&p));
            return match &cred {
                Ok(c) => self.deny(at, &c.ticket_id, &self.known_tier(&c.tier), Some(c), denial),
                Err((ticket, _)) => self.deny(at, ticket, "", None, denial),
            };
        }
        let cred = match cred {
            Ok(c) => c,
            Err((ticket, denial)) => return self.deny(at, &ticket, "", None, denial),
        };
        let tier =
            match policy::check_ticket(&cred, &self.config, &gate, &self.revoked_tickets, now_ms) {
                Ok(t) => t.clone(),
                Err(d) => {
                    let tier = self.known_tier(&cred.tier);
                    return self.deny(at, &cred.ticket_id, &tier, Some(&cred), d);
                }
            };
        let replay = self.ledger.index().replay(&cred.ticket_id, &tier.name);
        if at.direction == Direction::In {
            let grace = tier.double_scan_grace_ms;
            if let Some(earlier) = self.repeat_of(&replay.entries, now_ms, grace, at.origin) {
                let info = self.ticket_info(&cred, &tier.name);
                return Ok(self.repeat(earlier, info, &gate, at.direction));
            }
            let per_day = self.ledger.index().rule(&tier.name).per_day;
            let today = self.config.festival_day(now_ms);
            if let Err(d) = policy::check_entry(&replay, per_day, today) {
                let mut out = self.deny(at, &cred.ticket_id, &tier.name, Some(&cred), d)?;
                out.decision.previous = replay.entries;
                return Ok(out);
            }
            if let Err(d) = self.check_capacity(&gate.zone) {
                return self.deny(at, &cred.ticket_id, &tier.name, Some(&cred), d);
            }
        }
        self.admit(at, &cred, &tier.name, &replay.entries)
    }

    /// A strict zone takes someone in with room this gate holds ([`crate::gate::escrow`]);
    /// another zone with a capacity takes no one more while that many are inside (the merged
    /// count).
    fn check_capacity(&self, zone: &str) -> Result<(), Denial> {
        if self.config.is_strict(zone) {
            return escrow::check_room(&self.ledger, zone);
        }
        let Some(&cap) = self.config.capacity.get(zone) else {
            return Ok(());
        };
        let inside = self.ledger.index().inside(zone);
        if inside >= cap {
            return Err(Denial::new(
                Reason::ZoneFull,
                format!("zone {zone} holds {inside} of {cap}"),
            ));
        }
        Ok(())
    }

    /// What a scanned code is, or (for a hand check-in) what the manifest says of a ticket id.
    /// A code that is no ticket gives the id its denial is recorded under.
    fn credential(&self, req: ScanRequest<'_>) -> Result<Credential, (String, Denial)> {
        if req.manual {
            let id = String::from_utf8_lossy(req.code);
            return match self.manifest.by_ticket(&id) {
                Some(t) => Ok(manifest_credential(t, &self.config.event_id)),
                None => Err((
                    unreadable_id(req.code),
                    Denial::new(Reason::UnknownTicket, "no ticket with this id"),
                )),
            };
        }
        let readers = Readers {
            organizer_keys: &self.organizer_keys,
            legacy: &self.config.legacy,
            legacy_secret: self.legacy_secret.as_ref(),
            manifest: &self.manifest,
        };
        credential::read(req.code, readers).map_err(|u| {
            let ticket = u.claimed_ticket.unwrap_or_else(|| unreadable_id(req.code));
            (ticket, u.denial)
        })
    }

    /// The ticket as the answer shows it: id, tier, format and, from the manifest, who holds it.
    fn ticket_info(&self, cred: &Credential, tier: &str) -> TicketInfo {
        let attendee = self
            .manifest
            .by_ticket(&cred.ticket_id)
            .map(|t| t.attendee.clone())
            .unwrap_or_default();
        TicketInfo {
            id: cred.ticket_id.clone(),
            tier: tier.to_string(),
            format: cred.format,
            name: attendee.name,
            order: attendee.order,
            notes: attendee.notes,
        }
    }

    /// The note an admit of this ticket stops the steward with, if it is marked.
    fn attention(&self, ticket_id: &str, tier: &str) -> Option<String> {
        let ticket = self.manifest.by_ticket(ticket_id);
        match ticket.filter(|t| t.attendee.attention) {
            Some(t) => Some(t.attendee.notes.clone().unwrap_or_default()),
            None => self.config.tier(tier).and_then(|t| t.attention.clone()),
        }
    }

    /// Write an admit; `earlier` are the ticket's legitimate records, referenced as seen.
    fn admit(
        &mut self,
        at: At<'_>,
        cred: &Credential,
        tier: &str,
        earlier: &[RecordRef],
    ) -> Result<ScanOutcome, GateError> {
        let seen = earlier
            .iter()
            .rev()
            .take(SEEN_REFS_MAX)
            .map(|r| r.scan_id.clone())
            .collect();
        let mut draft = draft(
            at.gate,
            at.direction,
            &cred.ticket_id,
            tier,
            Verdict::Admit,
            Reason::Ok,
            seen,
        );
        draft.origin = self.origin_of(at, &cred.ticket_id);
        let (record, change) = self.ledger.record(at.now_ms, draft)?;
        let attention = match at.direction {
            Direction::In => self.attention(&cred.ticket_id, tier),
            Direction::Out => None,
        };
        let decision = Decision {
            verdict: Verdict::Admit,
            reason: Reason::Ok,
            message: Reason::Ok.words().to_string(),
            ticket: Some(self.ticket_info(cred, tier)),
            previous: Vec::new(),
            scan_id: record.scan_id(),
            repeat: false,
            gate: at.gate.name.clone(),
            direction: at.direction,
            attention,
            manual: at.manual,
            synced: true,
        };
        Ok(ScanOutcome {
            decision,
            change: Some(change),
        })
    }

    /// A record's origin: a hand check-in's ([`MANUAL_ORIGIN_PREFIX`]), else a phone's scan's
    /// unless the ticket has it already; none for a scan at this device.
    fn origin_of(&self, at: At<'_>, ticket_id: &str) -> Option<String> {
        let device = self.ledger.local_device()?;
        if at.manual {
            return Some(format!("{MANUAL_ORIGIN_PREFIX}{device}@{}", at.now_ms));
        }
        let origin = at.origin?;
        let known = self.ledger.index().has_origin(ticket_id, origin);
        (!known).then(|| origin.to_string())
    }

    /// Whether a phone's origin reads `live:<device id>@<ms>` with a time inside the event.
    fn phone_origin_ok(&self, now_ms: u64, origin: &str) -> bool {
        let live = origin.strip_prefix(crate::record::LIVE_ORIGIN_PREFIX);
        let Some((id, ms)) = live.and_then(|o| o.rsplit_once('@')) else {
            return false;
        };
        let ms_ok = ms.len() <= 16 && ms.bytes().all(|b| b.is_ascii_digit());
        let at_ms = ms.parse::<u64>().ok().filter(|_| ms_ok);
        crate::event::offline_device_id_ok(id)
            && at_ms.is_some_and(|t| self.check_offline_time(now_ms, t).is_ok())
    }

    /// The tier as a record may carry it: one the event sells, else none.
    fn known_tier(&self, tier: &str) -> String {
        if self.config.tier(tier).is_some() {
            tier.to_string()
        } else {
            String::new()
        }
    }

    /// Reconcile a scan an offline device made: the same gate policy as a scan, judged at the
    /// scan's time (its code read again here when it came with one, else the ticket must be in
    /// the manifest; not cancelled or revoked, valid then, allowed in the gate's zone), the time
    /// inside the event. An allowed scan the policy or the reading refuses is recorded as a
    /// denial with that reason; an origin already on the ticket is a duplicate.
    pub fn reconcile(
        &mut self,
        now_ms: u64,
        scan: OfflineScan<'_>,
    ) -> Result<OfflineOutcome, GateError> {
        let gate = self
            .config
            .gate(scan.gate)
            .cloned()
            .ok_or_else(|| GateError::UnknownGate(scan.gate.to_string()))?;
        self.check_offline_time(now_ms, scan.scanned_at_ms)?;
        let read = self.offline_credential(&scan, &gate)?;
        let ticket_id = match &read {
            Ok(c) => c.ticket_id.clone(),
            Err((claimed, _)) => claimed.clone(),
        };
        if self.reconciled_already(&ticket_id, &scan) {
            return Ok(OfflineOutcome::Duplicate);
        }
        let (policy, tier) = match &read {
            Ok(cred) => {
                let check = policy::check_ticket(
                    cred,
                    &self.config,
                    &gate,
                    &self.revoked_tickets,
                    scan.scanned_at_ms,
                );
                (check.err(), self.known_tier(&cred.tier))
            }
            Err((_, denial)) => (Some(denial.clone()), String::new()),
        };
        // An entry into a strict zone takes a place this gate holds, as a scan here would.
        let direction = scan.direction.unwrap_or(gate.direction);
        let policy = match (&policy, scan.allowed, direction) {
            (None, true, Direction::In) if self.config.is_strict(&gate.zone) => {
                self.check_capacity(&gate.zone).err()
            }
            _ => policy,
        };
        let (verdict, reason) = match (&policy, scan.allowed) {
            (Some(d), _) => (Verdict::Deny, d.reason.code().to_string()),
            (None, true) => (Verdict::Admit, Reason::Ok.code().to_string()),
            (None, false) => (Verdict::Deny, offline_reason(scan.reason)),
        };
        let mut d = draft(
            &gate,
            direction,
            &ticket_id,
            &tier,
            verdict,
            Reason::Ok,
            Vec::new(),
        );
        d.reason = reason;
        d.origin = Some(scan.origin);
        d.wall_ms = Some(scan.scanned_at_ms);
        let (record, change) = self.ledger.record(now_ms, d)?;
        Ok(OfflineOutcome::Recorded {
            scan_id: record.scan_id(),
            change,
            policy,
        })
    }

    /// Whether this offline scan is on the ticket already: reconciled before (any record with
    /// its origin), or taken online by this phone when the phone never got the answer (its
    /// `live:` origin): a duplicate if that was an admit, or if the phone refused anyway. An
    /// admit the phone made after the node had refused is recorded: it is an entry, and the
    /// replay judges it.
    fn reconciled_already(&self, ticket_id: &str, scan: &OfflineScan<'_>) -> bool {
        let index = self.ledger.index();
        if !index.origin_verdicts(ticket_id, &scan.origin).is_empty() {
            return true;
        }
        let live = format!("{}{}", crate::record::LIVE_ORIGIN_PREFIX, scan.origin);
        let online = index.origin_verdicts(ticket_id, &live);
        match scan.allowed {
            true => online.contains(&Verdict::Admit),
            false => !online.is_empty(),
        }
    }

    /// What an offline scan's ticket is: its code read again (a readable code must name the
    /// ticket the device said), or the manifest's entry for the ticket.
    fn offline_credential(
        &self,
        scan: &OfflineScan<'_>,
        gate: &GateConfig,
    ) -> Result<Result<Credential, (String, Denial)>, GateError> {
        let Some(code) = scan.code else {
            let entry = (self.manifest.by_ticket(scan.ticket_id))
                .ok_or_else(|| GateError::UnknownTicket(scan.ticket_id.to_string()))?;
            return Ok(Ok(manifest_credential(entry, &self.config.event_id)));
        };
        let req = ScanRequest {
            code,
            gate: &gate.name,
            direction: scan.direction,
            manual: false,
            origin: None,
        };
        let read = self.credential(req);
        if let Ok(c) = &read {
            if c.ticket_id != scan.ticket_id {
                return Err(GateError::TicketMismatch(c.ticket_id.clone()));
            }
        }
        Ok(read)
    }

    /// An offline scan's time must fall inside the event (with slack) and not in the future.
    fn check_offline_time(&self, now_ms: u64, scanned_at_ms: u64) -> Result<(), GateError> {
        let earliest = self
            .config
            .valid_from_ms
            .saturating_sub(OFFLINE_TIME_SLACK_MS);
        let latest = (self
            .config
            .valid_until_ms
            .saturating_add(OFFLINE_TIME_SLACK_MS))
        .min(now_ms.saturating_add(OFFLINE_FUTURE_MS));
        if (earliest..=latest).contains(&scanned_at_ms) {
            Ok(())
        } else {
            Err(GateError::OutsideEvent(scanned_at_ms))
        }
    }

    /// Undo an admit this device made less than [`ANNUL_WINDOW_MS`] ago (the holder did not walk
    /// through after all). Writes an annul record; the ticket gets its entry back everywhere.
    pub fn annul(
        &mut self,
        now_ms: u64,
        ticket_id: &str,
        scan_id: &str,
    ) -> Result<Vec<u8>, GateError> {
        let not = |why| GateError::NotAnnullable(scan_id.to_string(), why);
        if !self.is_supervisor() {
            return Err(GateError::NotSupervisor);
        }
        let me = self
            .ledger
            .local_device()
            .ok_or(GateError::Ledger(LedgerError::ReadOnly))?
            .to_string();
        let records = self.ledger.index().records(ticket_id);
        let target = records
            .iter()
            .find(|r| r.scan_id == scan_id)
            .ok_or_else(|| not("no such scan of this ticket"))?;
        if target.verdict != Verdict::Admit {
            return Err(not("only admits can be annulled"));
        }
        if target.device != me {
            return Err(not("only the device that admitted may annul"));
        }
        let admitted_at = crate::Hlc(target.hlc).wall_ms();
        if now_ms.saturating_sub(admitted_at) > ANNUL_WINDOW_MS {
            return Err(not("the undo window has passed"));
        }
        if records.iter().any(|r| r.verdict == Verdict::Annul) {
            return Err(not(
                "this ticket was undone once already; only one undo per ticket",
            ));
        }
        let gate = self
            .config
            .gate(&target.gate)
            .cloned()
            .ok_or_else(|| GateError::UnknownGate(target.gate.clone()))?;
        let mut d = draft(
            &gate,
            target.direction,
            ticket_id,
            &target.tier,
            Verdict::Annul,
            Reason::Ok,
            Vec::new(),
        );
        d.reason = "annul".to_string();
        d.annuls = Some(scan_id.to_string());
        let (_, change) = self.ledger.record(now_ms, d)?;
        Ok(change)
    }

    /// The same device read the same ticket again within the grace, for the same phone (or
    /// for no phone both times): the earlier admit. Two phones on one node each showing a
    /// ticket are two scans.
    fn repeat_of<'r>(
        &self,
        entries: &'r [RecordRef],
        now_ms: u64,
        grace_ms: u64,
        origin: Option<&str>,
    ) -> Option<&'r RecordRef> {
        let me = self.ledger.local_device()?.to_string();
        let phone = phone_of(origin);
        entries.iter().rev().find(|e| {
            e.device == me
                && phone_of(e.origin.as_deref()) == phone
                && now_ms.saturating_sub(e.wall_ms) <= grace_ms
                && e.wall_ms <= now_ms
        })
    }

    /// Whether the scan `scan_id` of `ticket_id` is a phone's (`phone`) online scan: what that
    /// phone may undo.
    pub fn is_phones(&self, ticket_id: &str, scan_id: &str, phone: &str) -> bool {
        let records = self.ledger.index().records(ticket_id);
        let r = records.iter().find(|r| r.scan_id == scan_id);
        r.is_some_and(|r| phone_of(r.origin.as_deref()) == Some(phone))
    }

    fn repeat(
        &self,
        earlier: &RecordRef,
        info: TicketInfo,
        gate: &GateConfig,
        direction: Direction,
    ) -> ScanOutcome {
        let decision = Decision {
            verdict: Verdict::Admit,
            reason: Reason::Ok,
            message: "Same scan again: already admitted a moment ago".to_string(),
            ticket: Some(info),
            previous: Vec::new(),
            scan_id: earlier.scan_id.clone(),
            repeat: true,
            gate: gate.name.clone(),
            direction,
            attention: None,
            manual: false,
            synced: true,
        };
        ScanOutcome {
            decision,
            change: None,
        }
    }

    fn deny(
        &mut self,
        at: At<'_>,
        ticket_id: &str,
        tier: &str,
        cred: Option<&Credential>,
        denial: Denial,
    ) -> Result<ScanOutcome, GateError> {
        let mut draft = draft(
            at.gate,
            at.direction,
            ticket_id,
            tier,
            Verdict::Deny,
            denial.reason,
            Vec::new(),
        );
        draft.origin = self.origin_of(at, ticket_id);
        let (record, change) = self.ledger.record(at.now_ms, draft)?;
        let decision = Decision {
            verdict: Verdict::Deny,
            reason: denial.reason,
            message: denial.message,
            ticket: cred.map(|c| self.ticket_info(c, &c.tier)),
            previous: Vec::new(),
            scan_id: record.scan_id(),
            repeat: false,
            gate: at.gate.name.clone(),
            direction: at.direction,
            attention: None,
            manual: at.manual,
            synced: true,
        };
        Ok(ScanOutcome {
            decision,
            change: Some(change),
        })
    }
}

/// Where and when a scan happens.
#[derive(Clone, Copy)]
struct At<'g> {
    now_ms: u64,
    gate: &'g GateConfig,
    direction: Direction,
    manual: bool,
    /// A phone's origin, checked ([`GateLogic::phone_origin_ok`]).
    origin: Option<&'g str>,
}

/// The phone a record's (or a scan's) `live:` origin names.
fn phone_of(origin: Option<&str>) -> Option<&str> {
    let live = origin?.strip_prefix(crate::record::LIVE_ORIGIN_PREFIX)?;
    live.rsplit_once('@').map(|(phone, _)| phone)
}

/// What the manifest says of a ticket, as a credential the gate policy reads.
fn manifest_credential(
    entry: &crate::event::manifest::ManifestTicket,
    event_id: &str,
) -> Credential {
    Credential {
        format: credential::Format::Manifest,
        ticket_id: entry.ticket_id.clone(),
        event_id: event_id.to_string(),
        tier: entry.tier.clone(),
        valid_from_ms: None,
        valid_until_ms: None,
        zone: Some(entry.zone.clone()),
        revoked: entry.status == crate::event::manifest::TicketStatus::Cancelled,
        live_step: None,
    }
}

/// A record to write. Ticket ids reach here from a credential that checked them
/// ([`credential::ticket_id_ok`]) or from [`unreadable_id`]; tiers are the event's or empty.
/// `gate north paused since 12:00` (the organizer's), `gate north paused by gate-a since
/// 12:00, until 12:05` (a supervisor's).
fn paused_message(p: &crate::gate::pause::ActivePause) -> String {
    let since = crate::record::date::fmt_ms(p.since_ms);
    match (&p.by_name, p.until_ms) {
        (Some(by), Some(until)) => format!(
            "{} paused by {by} since {since}, until {}",
            p.what(),
            crate::record::date::fmt_ms(until)
        ),
        _ => format!("{} paused since {since}", p.what()),
    }
}

fn draft(
    gate: &GateConfig,
    direction: Direction,
    ticket: &str,
    tier: &str,
    verdict: Verdict,
    reason: Reason,
    seen: Vec<String>,
) -> Draft {
    Draft {
        ticket_id: ticket.to_string(),
        tier: tier.to_string(),
        gate: gate.name.clone(),
        zone: gate.zone.clone(),
        direction,
        verdict,
        reason: reason.code().to_string(),
        seen,
        annuls: None,
        origin: None,
        wall_ms: None,
    }
}

/// An offline device's reason for a denial, as a record can carry it.
fn offline_reason(reason: Option<&str>) -> String {
    match reason {
        Some(r)
            if !r.is_empty()
                && r.len() <= crate::record::REASON_BYTES_MAX
                && r.bytes().all(|c| c.is_ascii_lowercase() || c == b'_') =>
        {
            r.to_string()
        }
        _ => "offline_deny".to_string(),
    }
}

/// A stable id for a denial whose code names no ticket: `unreadable:` + 8 bytes of its hash.
fn unreadable_id(code: &[u8]) -> String {
    use sha2::Digest;
    format!(
        "unreadable:{}",
        hex::encode(&sha2::Sha256::digest(code)[..8])
    )
}
