//! What a supervisor may do at a gate that a steward may not: pause the gate for
//! [`crate::record::GATE_PAUSE_MS`] (or resume it before that), signed by the device like any record, so the
//! pause spreads through the mesh as a scan does and every node holds the same one
//! (`crate::index::actions`). Undoing an admit and checking a holder in by hand are the
//! supervisor's too; the node asks for the role (or the supervisor's PIN) before it asks the
//! gate logic for them, and the audit names the device of every one.
//!
//! A pause counts only when its device's certificate makes it a supervisor's: a steward's
//! scanner, stolen or not, cannot stop a gate.

use crate::gate::pause::{ActivePause, Scope};
use crate::gate::{GateError, GateLogic};
use crate::index::actions::GatePause;
use crate::ledger::{Draft, Ledger, LedgerError};
use crate::record::{Direction, Verdict, PAUSE_TICKET_PREFIX};

impl GateLogic {
    /// Pause (or resume) `gate` from `now_ms`, as this device: the record to make durable.
    pub fn pause_gate(
        &mut self,
        now_ms: u64,
        gate: &str,
        paused: bool,
    ) -> Result<Vec<u8>, GateError> {
        let gate = (self.config().gate(gate).cloned())
            .ok_or_else(|| GateError::UnknownGate(gate.to_string()))?;
        let ledger = self.ledger();
        let me = ledger.local_device().ok_or(LedgerError::ReadOnly)?;
        if !ledger.roster().is_supervisor(me) {
            return Err(GateError::NotSupervisor);
        }
        // After the gate's latest pause or resume that counts now, even one dated ahead that
        // came within what clocks follow only since it arrived: a resume always ends it.
        if let Some(hlc) = (ledger.index().actions()).latest_hlc(&gate.name, now_ms) {
            self.ledger_mut()
                .follow(crate::record::hlc::Hlc(hlc), now_ms);
        }
        let draft = Draft {
            ticket_id: format!("{PAUSE_TICKET_PREFIX}{}", gate.name),
            tier: String::new(),
            gate: gate.name.clone(),
            zone: gate.zone.clone(),
            direction: if paused {
                Direction::In
            } else {
                Direction::Out
            },
            verdict: Verdict::Pause,
            reason: if paused { "paused" } else { "resumed" }.to_string(),
            seen: Vec::new(),
            annuls: None,
            origin: None,
            wall_ms: None,
        };
        let (_, change) = self.ledger_mut().record(now_ms, draft)?;
        Ok(change)
    }

    /// Whether this device's certificate makes it a supervisor's.
    pub fn is_supervisor(&self) -> bool {
        let ledger = self.ledger();
        (ledger.local_device()).is_some_and(|me| ledger.roster().is_supervisor(me))
    }

    /// A supervisor's pause of `gate` in force at `now_ms`.
    pub fn gate_pause(&self, gate: &str, now_ms: u64) -> Option<ActivePause> {
        let ledger = self.ledger();
        let roster = ledger.roster();
        let p = (ledger.index().actions()).gate_pause(gate, now_ms, |d| roster.is_supervisor(d))?;
        Some(shown(ledger, p))
    }

    /// Every supervisor's pause of one of the event's gates in force at `now_ms`.
    pub fn gate_pauses(&self, now_ms: u64) -> Vec<ActivePause> {
        (self.config().gates.iter())
            .filter_map(|g| self.gate_pause(&g.name, now_ms))
            .collect()
    }
}

/// A supervisor's pause as the pages show it: who, since, until.
fn shown(ledger: &Ledger, p: GatePause) -> ActivePause {
    let by = p.by();
    ActivePause {
        scope: Scope::Gate,
        name: p.gate,
        since_ms: p.since_ms,
        by: Some(by.to_string()),
        by_name: ledger.roster().get(by).map(|d| d.name.clone()),
        until_ms: Some(p.until_ms),
    }
}
