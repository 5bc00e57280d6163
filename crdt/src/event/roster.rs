//! The roster: devices allowed to write records, with their keys and revocations.
//!
//! The node builds it from organizer-signed device certificates and bulletins; this crate only
//! trusts what it is given. A revocation cannot be backdated by the revoked device: it names,
//! per chain of the device, the last position the organizer accepts ([`Cut`]). Positions are
//! fixed by the device's own hash chain, so records "from before" cannot be added later, and
//! every replica applies the same cut whatever the device wrote in its clocks.

use crate::record::{ChainId, DeviceId, ScanBody};
use ed25519_dalek::VerifyingKey;
use std::collections::{BTreeMap, HashMap};

/// Most devices one event may enroll.
pub const ROSTER_DEVICES_MAX: usize = 4096;
/// Most chains one revocation names.
pub const CUT_CHAINS_MAX: usize = 64;

/// What stays of a revoked device: records of the named chains up to the given position.
/// Anything else of the device (later positions, other chains) is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cut {
    pub keep: BTreeMap<ChainId, u32>,
}

impl Cut {
    pub fn keeps(&self, body: &ScanBody) -> bool {
        self.keep
            .get(&body.chain)
            .is_some_and(|last| body.seq <= *last)
    }

    /// Two revocations of one device: only what both keep stays (so the order they arrive in
    /// does not matter).
    pub fn meet(&self, other: &Cut) -> Cut {
        let keep = self
            .keep
            .iter()
            .filter_map(|(c, a)| other.keep.get(c).map(|b| (*c, (*a).min(*b))))
            .collect();
        Cut { keep }
    }
}

/// A device's cut once `cut` is applied on top of the one it had, if any.
fn narrowed(old: Option<&Cut>, cut: &Cut) -> Cut {
    old.map_or_else(|| cut.clone(), |o| o.meet(cut))
}

#[derive(Clone, Debug)]
pub struct RosterDevice {
    pub key: VerifyingKey,
    pub name: String,
    pub cut: Option<Cut>,
    /// Its certificate makes it a supervisor's device: its gate pauses count.
    pub supervisor: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Roster {
    devices: HashMap<DeviceId, RosterDevice>,
    /// Revocations of devices not (yet) added: the addition takes them, so a revocation that
    /// arrives before its device's addition is not lost (the order bulletins arrive in does not
    /// matter). Bounded like the devices.
    early_cuts: HashMap<DeviceId, Cut>,
}

/// Whether a device may have written a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Enrolled,
    Unknown,
    Revoked,
}

impl Roster {
    /// Add a device. A second insert of the same key keeps the first's name, and the device is
    /// a supervisor's only if every certificate says so (the least of them, so the order
    /// certificates arrive in does not matter). Returns false when the roster is full.
    pub fn insert(&mut self, mut device: RosterDevice) -> bool {
        let id = DeviceId::from_public_key(&device.key);
        if let Some(known) = self.devices.get_mut(&id) {
            known.supervisor &= device.supervisor;
            return true;
        }
        if self.devices.len() >= ROSTER_DEVICES_MAX {
            return false;
        }
        if let Some(early) = self.early_cuts.remove(&id) {
            device.cut = Some(narrowed(device.cut.as_ref(), &early));
        }
        self.devices.insert(id, device);
        true
    }

    pub fn get(&self, id: DeviceId) -> Option<&RosterDevice> {
        self.devices.get(&id)
    }

    /// Whether a device's certificate makes it a supervisor's.
    pub fn is_supervisor(&self, id: DeviceId) -> bool {
        self.devices.get(&id).is_some_and(|d| d.supervisor)
    }

    /// Revoke a device, keeping what `cut` keeps. Returns false for a device not added yet:
    /// its cut is kept for the addition.
    pub fn revoke(&mut self, id: DeviceId, cut: &Cut) -> bool {
        if let Some(d) = self.devices.get_mut(&id) {
            d.cut = Some(narrowed(d.cut.as_ref(), cut));
            return true;
        }
        if self.early_cuts.len() < ROSTER_DEVICES_MAX || self.early_cuts.contains_key(&id) {
            let early = narrowed(self.early_cuts.get(&id), cut);
            self.early_cuts.insert(id, early);
        }
        false
    }

    /// The standing of a record's author for this record.
    pub fn standing(&self, body: &ScanBody) -> Standing {
        match self.devices.get(&body.device) {
            None => Standing::Unknown,
            Some(d) if d.cut.as_ref().is_some_and(|c| !c.keeps(body)) => Standing::Revoked,
            Some(_) => Standing::Enrolled,
        }
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&DeviceId, &RosterDevice)> {
        self.devices.iter()
    }
}
