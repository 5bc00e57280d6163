//! Supervisors' actions the records hold: gate pauses, and the audit of every undo, hand
//! check-in and gate pause or resume, with the device that signed it.
//!
//! A gate's pause is a last-writer-wins register over the pause and resume records that name
//! it ([`crate::record::gate_pause`]), ordered by (HLC, scan reference): the latest record
//! signed by a supervisor's device decides, and a pause holds for
//! [`crate::record::GATE_PAUSE_MS`] from its clock. A record dated more than
//! [`MAX_FORWARD_DRIFT_MS`] ahead of the reader's clock (the most a clock is followed) is left
//! out until then, in the registers and in the audit, so a device whose clock is wild (or a
//! stolen supervisor's scanner dating a pause in the year 9999) can neither pause a gate for
//! longer than that plus five minutes nor hide others' pauses, resumes and actions. Who is a supervisor is the roster's to say,
//! asked when the register is read, so a certificate arriving late or a device's role
//! narrowed by a later one gives every replica the same answer in any order. Records are kept
//! whoever signed them (they are in the ledger); a steward's pause is in the audit, marked as
//! not counted, and stops nothing.
//!
//! The same records in any order give the same registers and the same audit; records dropped
//! (a revoked device past its cut, a proven fork) leave as if never taken in.

use crate::record::hlc::MAX_FORWARD_DRIFT_MS;
use crate::record::{gate_pause, DeviceId, ScanBody, ScanRef, Verdict, GATE_PAUSE_MS};
use crate::record::{MANUAL_ORIGIN_PREFIX, PAUSE_TICKET_PREFIX};
use serde::Serialize;
use std::collections::BTreeMap;

/// What a supervisor did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Undid an admit (or an exit).
    Undo,
    /// Checked a holder in by hand (found by search), admitted or denied.
    HandCheckin,
    /// Paused a gate.
    GatePause,
    /// Resumed a gate before its pause ran out.
    GateResume,
}

/// One action in the audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    pub scan: ScanRef,
    pub hlc: u64,
    pub wall_ms: u64,
    pub ticket_id: Box<str>,
    pub gate: Box<str>,
}

impl Action {
    pub fn device(&self) -> DeviceId {
        self.scan.chain.device
    }

    fn of(body: &ScanBody) -> Option<Action> {
        let manual = (body.origin.as_deref()).is_some_and(|o| o.starts_with(MANUAL_ORIGIN_PREFIX));
        let kind = match (body.verdict, gate_pause(body)) {
            (Verdict::Annul, _) => ActionKind::Undo,
            (Verdict::Pause, Some((_, true))) => ActionKind::GatePause,
            (Verdict::Pause, Some((_, false))) => ActionKind::GateResume,
            (Verdict::Admit | Verdict::Deny, _) if manual => ActionKind::HandCheckin,
            _ => return None,
        };
        let ticket = body.ticket_id.strip_prefix(PAUSE_TICKET_PREFIX);
        Some(Action {
            kind,
            scan: body.scan_ref(),
            hlc: body.hlc,
            wall_ms: body.wall_ms,
            ticket_id: ticket.map_or(body.ticket_id.as_str(), |_| "").into(),
            gate: body.gate.as_str().into(),
        })
    }
}

/// A gate paused by a supervisor, in force now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatePause {
    pub gate: String,
    /// The pause record: its device is who paused.
    pub scan: ScanRef,
    pub since_ms: u64,
    pub until_ms: u64,
}

impl GatePause {
    pub fn by(&self) -> DeviceId {
        self.scan.chain.device
    }
}

/// A gate's pause and resume records, by device: (HLC, scan) → paused.
type GateRecords = BTreeMap<DeviceId, BTreeMap<(u64, ScanRef), bool>>;

/// The pause registers and the audit.
#[derive(Clone, Debug, Default)]
pub struct Actions {
    /// Gate → its pause and resume records, by device (so a read looks at each device's latest
    /// record once, however many a device wrote).
    pauses: BTreeMap<Box<str>, GateRecords>,
    /// Every supervisor's action, by (HLC, scan).
    audit: BTreeMap<(u64, ScanRef), Action>,
}

impl Actions {
    /// Take one record in (any record: those that are no action are passed by).
    pub fn record(&mut self, body: &ScanBody) {
        let Some(action) = Action::of(body) else {
            return;
        };
        if let Some((gate, paused)) = gate_pause(body) {
            let gate = self.pauses.entry(gate.into()).or_default();
            let device = gate.entry(body.device).or_default();
            device.insert((body.hlc, action.scan), paused);
        }
        self.audit.insert((action.hlc, action.scan), action);
    }

    /// Forget the records `gone` says (dropped from the ledger).
    pub fn drop_where(&mut self, gone: impl Fn(&ScanRef) -> bool) {
        self.audit.retain(|(_, scan), _| !gone(scan));
        for devices in self.pauses.values_mut() {
            for records in devices.values_mut() {
                records.retain(|(_, scan), _| !gone(scan));
            }
            devices.retain(|_, records| !records.is_empty());
        }
        self.pauses.retain(|_, devices| !devices.is_empty());
    }

    /// The pause of `gate` in force at `now` (milliseconds): the latest record of a
    /// supervisor's device, if it is a pause not yet run out.
    pub fn gate_pause(
        &self,
        gate: &str,
        now: u64,
        supervisor: impl Fn(DeviceId) -> bool,
    ) -> Option<GatePause> {
        let devices = self.pauses.get(gate)?;
        // A record dated further ahead than a clock is followed counts only from then: a device
        // with a wild clock neither pauses a gate for long nor hides others' pauses and resumes.
        let bound = clock_bound(now);
        let (&(hlc, scan), &paused) = (devices.iter())
            .filter(|(d, _)| supervisor(**d))
            .filter_map(|(_, records)| records.range(..bound).next_back())
            .max_by_key(|(at, _)| **at)?;
        let until = hlc_ms(hlc).saturating_add(GATE_PAUSE_MS);
        (paused && now < until).then(|| GatePause {
            gate: gate.to_string(),
            scan,
            since_ms: hlc_ms(hlc),
            until_ms: until,
        })
    }

    /// The clock of the latest record of `gate` counted at `now`, whoever signed it.
    pub fn latest_hlc(&self, gate: &str, now: u64) -> Option<u64> {
        let bound = clock_bound(now);
        (self.pauses.get(gate)?.values())
            .filter_map(|records| records.range(..bound).next_back())
            .map(|((hlc, _), _)| *hlc)
            .max()
    }

    /// Every gate paused at `now`.
    pub fn gate_pauses(&self, now: u64, supervisor: impl Fn(DeviceId) -> bool) -> Vec<GatePause> {
        (self.pauses.keys())
            .filter_map(|g| self.gate_pause(g, now, &supervisor))
            .collect()
    }

    /// The latest `max` actions, newest first.
    pub fn latest(&self, max: usize) -> impl Iterator<Item = &Action> {
        self.audit.values().rev().take(max)
    }

    /// The latest `max` actions dated no further ahead of `now` than a clock is followed,
    /// newest first (records dated far ahead cannot crowd out the present).
    pub fn latest_at(&self, now: u64, max: usize) -> impl Iterator<Item = &Action> {
        self.audit
            .range(..clock_bound(now))
            .rev()
            .map(|(_, a)| a)
            .take(max)
    }

    pub fn len(&self) -> usize {
        self.audit.len()
    }

    pub fn is_empty(&self) -> bool {
        self.audit.is_empty()
    }
}

/// The first (HLC, scan) dated beyond what a clock reading `now` follows.
fn clock_bound(now: u64) -> (u64, ScanRef) {
    let wall = (now.saturating_add(MAX_FORWARD_DRIFT_MS).saturating_add(1)).min(u64::MAX >> 16);
    let first = crate::record::hlc::Hlc::new(wall, 0).0;
    (first, ScanRef::MIN)
}

/// The wall time an HLC carries, in milliseconds.
fn hlc_ms(hlc: u64) -> u64 {
    crate::record::hlc::Hlc(hlc).wall_ms()
}
