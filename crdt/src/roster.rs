//! The roster: devices allowed to write records, with their keys and revocations.
//!
//! The node builds it from organizer-signed device certificates; this crate only trusts what it
//! is given. A revoked device's records with an HLC at or after the revocation are ignored.

use crate::hlc::Hlc;
use crate::record::DeviceId;
use ed25519_dalek::VerifyingKey;
use std::collections::HashMap;

/// Most devices one event may enroll.
pub const ROSTER_DEVICES_MAX: usize = 4096;

#[derive(Clone, Debug)]
pub struct RosterDevice {
    pub key: VerifyingKey,
    pub name: String,
    /// Records at or after this HLC are ignored.
    pub revoked_from: Option<Hlc>,
}

#[derive(Clone, Debug, Default)]
pub struct Roster {
    devices: HashMap<DeviceId, RosterDevice>,
}

impl Roster {
    /// Add or replace a device. Returns false when the roster is full.
    pub fn insert(&mut self, device: RosterDevice) -> bool {
        let id = DeviceId::from_public_key(&device.key);
        if !self.devices.contains_key(&id) && self.devices.len() >= ROSTER_DEVICES_MAX {
            return false;
        }
        self.devices.insert(id, device);
        true
    }

    pub fn get(&self, id: DeviceId) -> Option<&RosterDevice> {
        self.devices.get(&id)
    }

    /// Mark a device revoked from `from` on. Returns false for an unknown device.
    pub fn revoke(&mut self, id: DeviceId, from: Hlc) -> bool {
        match self.devices.get_mut(&id) {
            Some(d) => {
                d.revoked_from = Some(d.revoked_from.map_or(from, |old| old.min(from)));
                true
            }
            None => false,
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
