//! What goes in and out of a [`crate::protocol::replica::Replica`]: the inputs a driver feeds it (local
//! requests, network events, completed writes, time) and the outputs it asks the driver to carry
//! out (writes, answers, messages, admission decisions, events for observers).
//!
//! A peer is named by its device id: only enrolled devices can connect, and the driver maps them
//! to its transport's addresses. Requests and inbound messages carry an opaque token the driver
//! chooses, handed back in the output that answers them.

use crate::gate::offline::{ReconcileRequest, ReconcileResponse};
use crate::gate::BulletinEffect;
use crate::gate::Decision;
use crate::ledger::ForkProof;
use crate::record::{ChainKey, DeviceId, Direction};
use crate::RecordRef;
use ed25519_dalek::VerifyingKey;

/// First byte of a sync-protocol request: what follows.
pub const KIND_SYNC: u8 = 0;
pub const KIND_BULLETIN: u8 = 1;
/// The event configuration a node judges by ([`crate::event::EventConfig::fingerprint`]),
/// handed to every peer as it connects.
pub const KIND_HELLO: u8 = 2;
/// A gate short of a strict zone's room asks for some (the zone and the units wanted).
pub const KIND_ROOM: u8 = 3;

/// What a sync-protocol request to a peer is, for what becomes of its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    /// A sync session's message: the answer goes on with the session
    /// ([`Input::SyncAnswer`]).
    Sync,
    /// A bulletin or our hello handed over: the answer carries nothing.
    Bulletin,
    /// Room of a strict zone asked for: the answer carries the room record, if any was given
    /// ([`Input::RoomAnswer`]).
    Room,
}

/// A local request awaiting its answer.
pub type RequestId = u64;
/// An inbound message awaiting our verdict or response (the driver's handle on it).
pub type Token = u64;
/// A batch of changes to write; [`Input::Persisted`] reports it (and every earlier one) done.
pub type PersistId = u64;

/// The two gossip topics of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// One ledger change per message.
    Ledger,
    /// Organizer bulletins.
    Control,
}

/// Who posts a reconcile, as the edge authenticated it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconciler {
    /// The staff token: the device ids the organizer listed in the event file.
    Staff,
    /// The admin token: any device id.
    Admin,
    /// A paired phone (its pass checked by the edge): its own device id only, scans made since
    /// it was paired (`since_ms`), each with the code it read.
    Phone { device: String, since_ms: u64 },
}

#[derive(Clone, Debug)]
pub enum Input {
    /// A code read at a gate (standard input, HTTP, the scanner page).
    Scan {
        id: RequestId,
        code: Vec<u8>,
        gate: Option<String>,
        direction: Option<Direction>,
        /// `code` is a ticket id found by search, checked in by hand.
        manual: bool,
        /// A paired phone's `<phone>@<ms>` (see [`crate::gate::ScanRequest::origin`]).
        origin: Option<String>,
    },
    /// A supervisor undoes an admit this device made (the holder did not walk through).
    Annul {
        id: RequestId,
        ticket_id: String,
        scan_id: String,
        /// Asked by a paired phone: only its own online admits.
        phone: Option<String>,
    },
    /// A supervisor pauses its gate for five minutes, or resumes it (`POST /api/gate-pause`).
    PauseGate {
        id: RequestId,
        /// The node's own gate when none.
        gate: Option<String>,
        paused: bool,
    },
    /// Offline scans posted by a handheld (`POST /offline/reconcile`).
    Reconcile {
        id: RequestId,
        request: ReconcileRequest,
        /// Who asks: what device ids it may reconcile for.
        by: Reconciler,
    },
    /// A bulletin handed over by the operator (`id`) or a peer (`from`).
    Bulletin {
        id: Option<RequestId>,
        from: Option<DeviceId>,
        bytes: Vec<u8>,
    },
    /// The operator cuts this node off from devices, or lets them back.
    Block {
        devices: Vec<DeviceId>,
        block: bool,
    },
    /// Every write up to this one is done (durable ones made durable).
    Persisted {
        upto: PersistId,
    },
    /// The write failed: answers waiting for it fail, nothing is published.
    PersistFailed {
        upto: PersistId,
        message: String,
    },
    /// A connection with the peer is up: a new one, or one replacing its older connection (a
    /// peer that restarted; its hello is awaited again either way).
    PeerUp {
        peer: DeviceId,
    },
    /// The peer now hears our ledger gossip (the transport learned its subscription). What we
    /// published before reached it only if it was already listening: a session brings the rest.
    PeerListening {
        peer: DeviceId,
    },
    PeerDown {
        peer: DeviceId,
    },
    Gossip {
        from: DeviceId,
        token: Token,
        topic: Topic,
        data: Vec<u8>,
    },
    /// A sync-protocol request from a peer (kind byte first).
    SyncRequest {
        from: DeviceId,
        token: Token,
        data: Vec<u8>,
    },
    /// The answer to our sync message (empty: the peer refused it).
    SyncAnswer {
        from: DeviceId,
        data: Vec<u8>,
    },
    /// The answer to our ask for room: `KIND_ROOM` and the room record given, or nothing.
    RoomAnswer {
        from: DeviceId,
        data: Vec<u8>,
    },
    /// Our sync message, bulletin hand-over or ask for room did not get an answer.
    SyncFailed {
        from: DeviceId,
        asked: Asked,
    },
    /// A frame the transport could not read (oversized, cut short): counted.
    FrameRefused {
        from: Option<DeviceId>,
    },
    /// Time passes: due sync rounds, retries and certificate expiries happen.
    Tick,
}

/// What gossip does with a message we checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Forward it.
    Accept,
    /// Drop it quietly.
    Ignore,
    /// Drop it and hold it against the sender.
    Reject,
}

#[derive(Clone, Debug)]
pub enum Output {
    /// Write these changes (in order, after every earlier write); `durable`: flush them to the
    /// disk before reporting [`Input::Persisted`].
    Persist {
        id: PersistId,
        changes: Vec<Vec<u8>>,
        durable: bool,
    },
    /// Keep these fork proofs durably (all of them, replacing the earlier set).
    SaveForks(Vec<ForkProof>),
    /// Keep this bulletin (its bytes) with the node's data.
    SaveBulletin {
        label: String,
        bytes: Vec<u8>,
    },
    /// The answer to a local request. Never before its write is done.
    Reply {
        id: RequestId,
        reply: Reply,
    },
    Publish {
        topic: Topic,
        data: Vec<u8>,
    },
    /// A sync-protocol request to a peer (kind byte first).
    Send {
        to: DeviceId,
        data: Vec<u8>,
        asked: Asked,
    },
    /// The response to a peer's sync-protocol request.
    Respond {
        token: Token,
        data: Vec<u8>,
    },
    Validate {
        token: Token,
        acceptance: Acceptance,
    },
    /// Close every connection with the peer (it sent what is not a protocol message).
    Disconnect {
        peer: DeviceId,
    },
    /// Let a device connect (enrolled, or unblocked), with its key.
    Allow {
        peer: DeviceId,
        key: VerifyingKey,
    },
    /// Refuse a device's connections (revoked, expired, or blocked by the operator).
    Deny {
        peer: DeviceId,
    },
    Event(Event),
}

/// Answers to local requests.
#[derive(Clone, Debug)]
pub enum Reply {
    Decision(Box<Decision>),
    Reconciled(ReconcileResponse),
    /// The annul record is written: the ticket has its entry back everywhere.
    Annulled {
        scan_id: String,
    },
    BulletinAccepted,
    /// The gate pause record is written: every node stops (or resumes) the gate's entries.
    GatePaused {
        gate: String,
        paused: bool,
        /// When the pause runs out.
        until_ms: Option<u64>,
    },
    /// A refused request: a stable code and a sentence.
    Refused {
        code: &'static str,
        message: String,
    },
    /// The node could not make the answer durable.
    Failed {
        code: &'static str,
        message: String,
    },
}

/// What observers (standard output, the live stream) hear of.
#[derive(Clone, Debug)]
pub enum Event {
    /// A local decision, durable.
    Scan(Box<Decision>),
    /// Records newly taken in from a peer.
    Applied {
        via: &'static str,
        from: DeviceId,
        records: Vec<RecordRef>,
    },
    PeerConnected(DeviceId),
    PeerDisconnected(DeviceId),
    /// A message refused, and why.
    Rejected {
        from: Option<DeviceId>,
        reason: String,
    },
    /// A peer judges by another event configuration: refused (`event_mismatch`).
    EventMismatch {
        peer: DeviceId,
        theirs: String,
        ours: String,
    },
    /// Changes of a batch refused, with their reasons.
    RejectedChanges {
        from: DeviceId,
        via: &'static str,
        reasons: Vec<&'static str>,
    },
    Fork {
        chain: ChainKey,
        from: u32,
    },
    Bulletin {
        version: u64,
        label: String,
        effect: BulletinEffect,
    },
    /// The number of double entries changed.
    Conflicts {
        double_entries: usize,
    },
    Reconciled {
        device: String,
        reconciled: usize,
        failed: usize,
    },
    /// This gate asked for room of a strict zone.
    RoomAsked {
        zone: String,
        want: u32,
        asked: Vec<DeviceId>,
    },
    /// This gate gave room (its room record is durable and published).
    RoomGiven {
        zone: String,
        to: DeviceId,
        units: u32,
    },
    /// Room of a strict zone reached this gate.
    RoomReceived {
        zone: String,
        from: DeviceId,
        units: u32,
    },
    Blocked {
        devices: Vec<DeviceId>,
        block: bool,
    },
    Error {
        code: &'static str,
        message: String,
    },
}
