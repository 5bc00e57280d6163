//! Whether a node has caught up since it started: until it has finished one sync session with
//! every peer it reaches, or [`ReplicaConfig::catch_up_ms`](crate::protocol::replica::ReplicaConfig) has
//! passed, what it answers may not know of an admit made elsewhere while it was down. Its
//! answers then say `synced: false` (the page shows "catching up"), and so do `/health/ready`
//! and `/metrics`.

use crate::record::DeviceId;
use std::collections::HashSet;

/// How long a node started on a mesh says it is catching up at most (`gatemesh node run`).
pub const CATCH_UP_MAX_MS: u64 = 3_000;

#[derive(Clone, Debug, Default)]
pub struct CatchUp {
    started_ms: Option<u64>,
    done: bool,
    /// Peers a sync session of ours finished with since the start.
    synced: HashSet<DeviceId>,
}

impl CatchUp {
    /// A node that never catches up (a device on its own): always synced.
    pub fn none() -> CatchUp {
        CatchUp {
            done: true,
            ..CatchUp::default()
        }
    }

    /// The first time the replica is given.
    pub fn start(&mut self, now_ms: u64) {
        self.started_ms.get_or_insert(now_ms);
    }

    /// A sync session of ours with `peer` finished: neither side had more for the other.
    pub fn session_done(&mut self, peer: DeviceId) {
        if !self.done {
            self.synced.insert(peer);
        }
    }

    /// Whether the node has caught up: every peer online now finished a session with it (and
    /// there is at least one), or `bound_ms` passed since the start. Once caught up, for good.
    pub fn synced(
        &mut self,
        now_ms: u64,
        bound_ms: u64,
        mut online: impl Iterator<Item = DeviceId>,
    ) -> bool {
        if self.done {
            return true;
        }
        let started = *self.started_ms.get_or_insert(now_ms);
        let mut any = false;
        let every = online.all(|p| {
            any = true;
            self.synced.contains(&p)
        });
        if (any && every) || now_ms.saturating_sub(started) >= bound_ms {
            self.done = true;
            self.synced.clear();
        }
        self.done
    }

    /// Whether it has caught up, as last found.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = CATCH_UP_MAX_MS;

    #[test]
    fn alone_it_catches_up_at_the_bound() {
        let mut c = CatchUp::default();
        c.start(1_000);
        assert!(!c.synced(1_000, B, std::iter::empty()));
        assert!(!c.synced(1_000 + B - 1, B, std::iter::empty()));
        assert!(c.synced(1_000 + B, B, std::iter::empty()));
    }

    #[test]
    fn with_peers_it_waits_for_a_session_with_each() {
        let (p, q) = (DeviceId(1), DeviceId(2));
        let mut c = CatchUp::default();
        c.start(0);
        c.session_done(p);
        assert!(!c.synced(10, B, [p, q].into_iter()), "q has not synced yet");
        c.session_done(q);
        assert!(c.synced(20, B, [p, q].into_iter()));
        // Caught up for good, whatever happens next.
        assert!(c.synced(30, B, [DeviceId(3)].into_iter()));
    }

    #[test]
    fn a_device_on_its_own_is_always_synced() {
        let mut c = CatchUp::none();
        assert!(c.synced(0, 0, std::iter::empty()));
    }
}
