//! The event every fuzz input meets: one organizer key, three enrolled scanners, a signed-code
//! tier, a legacy HMAC secret, a manifest with barcodes and NFC wristbands, one listed offline
//! handheld, a strict zone whose room scanner 1 holds; and the seed corpus, made in it (genuine codes, records, changes, sync messages, a
//! bulletin, an export, a reconcile request), so the fuzzer starts from what a node accepts.

use ed25519_dalek::{SigningKey, VerifyingKey};
use gatemesh_crdt::credential::ticket::{self, TicketPayload};
use gatemesh_crdt::credential::{make_legacy_code, LegacySecret, Readers};
use gatemesh_crdt::event::certificate::{DeviceCertificate, DeviceIdentity, Role};
use gatemesh_crdt::event::manifest::{Manifest, ManifestBody, ManifestTicket, TicketStatus};
use gatemesh_crdt::event::signed::Signed;
use gatemesh_crdt::event::{EventConfig, EventPackage, OrganizerKey};
use gatemesh_crdt::gate::bulletin::BulletinBody;
use gatemesh_crdt::gate::{GateLogic, ScanRequest};
use gatemesh_crdt::ledger::export::{ExportHeader, EXPORT_MAGIC};
use gatemesh_crdt::protocol::{Input, KIND_ROOM, KIND_SYNC};
use gatemesh_crdt::{ChainId, DeviceId, Ledger, Replica, ReplicaConfig, SyncMessage};
use std::collections::HashMap;

/// The fuzz world's clock.
pub const NOW: u64 = 1_800_000_000_000;
const HOUR: u64 = 3_600_000;
pub const EVENT: &str = "fest";
const SECRET: &[u8] = b"legacy-secret";
const KEY_ID: &str = "k1";
const HANDHELD: &str = "hh-1";

fn organizer() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

fn device_key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[100 + n; 32])
}

pub fn device_id(n: u8) -> DeviceId {
    DeviceId::from_public_key(&device_key(n).verifying_key())
}

fn certificate(n: u8) -> DeviceCertificate {
    let key = device_key(n).verifying_key();
    DeviceCertificate {
        event_id: EVENT.into(),
        device_id: DeviceId::from_public_key(&key).to_string(),
        public_key: hex::encode(key.as_bytes()),
        name: format!("gate-{n}"),
        role: Role::Supervisor,
        valid_from_ms: 0,
        valid_until_ms: u64::MAX,
    }
}

fn identity(n: u8) -> DeviceIdentity {
    DeviceIdentity {
        key: device_key(n),
        certificate: certificate(n),
    }
}

fn manifest_ticket(id: &str, code: &str, nfc: Option<&str>) -> ManifestTicket {
    ManifestTicket {
        ticket_id: id.into(),
        ticket_code: code.into(),
        tier: "general".into(),
        zone: "main".into(),
        max_scans: 1,
        current_scans: 0,
        status: TicketStatus::Valid,
        nfc_uid: nfc.map(str::to_string),
        attendee: Default::default(),
    }
}

fn named(mut t: ManifestTicket, name: &str, order: &str) -> ManifestTicket {
    t.attendee.name = Some(name.into());
    t.attendee.order = Some(order.into());
    t
}

fn package() -> EventPackage {
    let key = OrganizerKey {
        key_id: KEY_ID.into(),
        public_key: hex::encode(organizer().verifying_key().as_bytes()),
    };
    let mut config = EventConfig::new(EVENT, "Fest", NOW - 24 * HOUR, NOW + 24 * HOUR, key);
    config.offline_devices.push(HANDHELD.into());
    // Zone vip is strict: its 50 places are room held by scanner 1.
    config.capacity.insert("vip".into(), 50);
    (config.capacity_mode).insert("vip".into(), gatemesh_crdt::event::CapacityMode::Strict);
    let holders = vec![device_id(1).to_string()];
    config.room_holders.insert("vip".into(), holders);
    let body = ManifestBody {
        event_id: EVENT.into(),
        generated_at: NOW,
        expires_at: NOW + HOUR,
        tickets: vec![
            named(
                manifest_ticket("M1", "BARCODE-0001", Some("04:A2:3B:4C:5D:6E:7F")),
                "Éloïse Dupré-Lefèvre",
                "ORD-7K",
            ),
            named(
                manifest_ticket("M2", "BARCODE-0002", None),
                "Nguyễn Văn Ánh",
                "ORD-8",
            ),
            manifest_ticket("G1", "-", None),
        ],
    };
    EventPackage {
        config,
        certificates: (1..=3).map(certificate).collect(),
        manifest: Some(Manifest::new(body).expect("the fuzz manifest is valid")),
    }
}

/// The event, made once per input (cheap: fixed keys, three devices, three tickets).
pub struct World {
    package: EventPackage,
    keys: HashMap<String, VerifyingKey>,
    secret: LegacySecret,
}

impl World {
    /// The event's manifest (tickets with attendees).
    pub fn manifest(&self) -> &Manifest {
        self.package
            .manifest
            .as_ref()
            .expect("the fuzz event has a manifest")
    }

    pub fn new() -> World {
        let package = package();
        let keys = package
            .config
            .organizer_verifying_keys()
            .expect("the fuzz event's keys read");
        World {
            package,
            keys,
            secret: LegacySecret {
                secret: SECRET.to_vec(),
                expiry_ms: 24 * HOUR,
            },
        }
    }

    pub fn organizer_keys(&self) -> HashMap<String, VerifyingKey> {
        self.keys.clone()
    }

    pub fn readers(&self) -> Readers<'_> {
        Readers {
            organizer_keys: &self.keys,
            legacy: &self.package.config.legacy,
            legacy_secret: Some(&self.secret),
            manifest: self.package.manifest.as_ref().expect("a manifest"),
        }
    }

    /// Device `n`'s empty ledger, writing on chain `n`.
    pub fn ledger(&self, n: u8) -> Ledger {
        GateLogic::open_ledger(
            &self.package,
            Some(&identity(n)),
            ChainId(u32::from(n)),
            &[],
            &[],
            std::iter::empty(),
            0,
        )
        .expect("the fuzz ledger opens")
        .0
    }

    pub fn gate(&self, n: u8) -> GateLogic {
        GateLogic::new(&self.package, self.ledger(n), Some(self.secret.clone()))
            .expect("the fuzz gate opens")
    }

    /// Device `n`'s replica, started, with device 2 connected (unless it is device 2).
    pub fn replica(&self, n: u8) -> Replica {
        let config = ReplicaConfig {
            gate: "north".into(),
            direction: None,
            journal: false,
            catch_up_ms: 0,
        };
        let mut r = Replica::new(self.gate(n), &self.package.certificates, config);
        r.start(NOW);
        if n != 2 {
            r.handle(NOW, Input::PeerUp { peer: device_id(2) });
        }
        r
    }
}

impl Default for World {
    fn default() -> World {
        World::new()
    }
}

fn gm1(ticket_id: &str) -> String {
    let payload = TicketPayload {
        event_id: EVENT.into(),
        ticket_id: ticket_id.into(),
        tier: "general".into(),
        key_id: KEY_ID.into(),
        valid_from_s: (NOW - HOUR) / 1000,
        valid_until_s: (NOW + HOUR) / 1000,
    };
    ticket::encode(&payload, &organizer()).expect("a GM1 code encodes")
}

/// A rotating ticket's live code for now (its wallet's key made for it alone).
fn gm2(ticket_id: &str) -> String {
    use gatemesh_crdt::credential::rotating;
    let holder = SigningKey::from_bytes(&[150; 32]);
    let payload = rotating::RotatingPayload {
        event_id: EVENT.into(),
        ticket_id: ticket_id.into(),
        tier: "general".into(),
        key_id: KEY_ID.into(),
        valid_from_s: (NOW - HOUR) / 1000,
        valid_until_s: (NOW + HOUR) / 1000,
        holder: holder.verifying_key().to_bytes(),
    };
    let part = rotating::static_part(&payload, &organizer());
    rotating::live_code(&part, ticket_id, &holder, rotating::step_of(NOW))
}

fn legacy(ticket_id: &str) -> String {
    make_legacy_code(ticket_id, EVENT, "G000001", "ABCDEF", NOW - HOUR, SECRET)
}

/// Codes of every format a gate reads.
fn codes() -> Vec<Vec<u8>> {
    vec![
        gm1("G1").into_bytes(),
        gm1("G2").into_bytes(),
        gm2("R1").into_bytes(),
        legacy("L1").into_bytes(),
        b"BARCODE-0001".to_vec(),
        b"04:A2:3B:4C:5D:6E:7F".to_vec(),
    ]
}

/// Device 2's changes after scanning every code once (admits and denials alike), and the room
/// scanner 1 gave it.
fn device_2_changes(w: &World) -> (Ledger, Vec<Vec<u8>>) {
    let mut gate = w.gate(2);
    let mut changes = Vec::new();
    for (i, code) in codes().iter().enumerate() {
        let out = gate
            .scan(
                NOW + i as u64 * 10_000,
                ScanRequest {
                    code,
                    gate: "north",
                    direction: None,
                    manual: false,
                    origin: None,
                },
            )
            .expect("a seed scan is decided");
        changes.extend(out.change);
    }
    // A supervisor's pause of its gate, and its resume (scanners are supervisors' devices).
    for (at, paused) in [(NOW + 1_000, true), (NOW + 2_000, false)] {
        changes.push(
            gate.pause_gate(at, "north", paused)
                .expect("a supervisor pauses"),
        );
    }
    // Room of the strict zone, given by scanner 1 to scanner 2, which holds none.
    let (gift, _) =
        (w.gate(1).give_room(NOW, device_id(2), ("vip", 5), false)).expect("scanner 1 gives room");
    let taken = gate.ledger_mut().admit(NOW, 1, std::slice::from_ref(&gift));
    assert_eq!(
        taken.persist.len(),
        1,
        "scanner 2 takes the room it was given"
    );
    changes.push(gift);
    (gate.into_ledger(), changes)
}

pub fn bulletin_bytes(w: &World) -> Vec<u8> {
    let signed_cert = |n: u8| {
        let text = serde_json::to_string(&certificate(n)).expect("a certificate serialises");
        Signed::sign_text(text, KEY_ID, &organizer())
    };
    let body = BulletinBody {
        pauses: Vec::new(),
        event_id: EVENT.into(),
        version: 1,
        issued_ms: NOW,
        revoke_tickets: vec!["G2".into()],
        revoke_devices: Vec::new(),
        add_devices: vec![signed_cert(3)],
        rules: vec![gatemesh_crdt::event::rules::RuleChange {
            tier: "general".into(),
            max_entries: Some(2),
            ..Default::default()
        }],
        unpair: Vec::new(),
    };
    let text = serde_json::to_string(&body).expect("a bulletin serialises");
    let bytes = serde_json::to_vec(&Signed::sign_text(text, KEY_ID, &organizer()))
        .expect("a signed bulletin serialises");
    gatemesh_crdt::gate::bulletin::Bulletin::from_bytes(&bytes, EVENT, &w.organizer_keys())
        .expect("the seed bulletin is genuine");
    bytes
}

fn export_bytes(changes: &[Vec<u8>]) -> Vec<u8> {
    use sha2::Digest;
    let ledger: Vec<u8> = changes.concat();
    let header = ExportHeader {
        event_id: EVENT.into(),
        event_name: "Fest".into(),
        exported_at: gatemesh_crdt::record::date::iso(NOW),
        records: changes.len() as u64,
        changes: changes.len() as u64,
        ledger_bytes: ledger.len() as u64,
        ledger_sha256: hex::encode(sha2::Sha256::digest(&ledger)),
    };
    let mut out = format!(
        "{EXPORT_MAGIC}\n{}\n",
        serde_json::to_string(&header).expect("a header serialises")
    )
    .into_bytes();
    out.extend_from_slice(&ledger);
    out
}

fn reconcile_json() -> Vec<u8> {
    serde_json::json!({
        "device_id": HANDHELD,
        "scans": [
            {"ticket_id": "M1", "scanned_at": gatemesh_crdt::record::date::iso(NOW - 60_000),
             "result": "ALLOW", "gate": "north"},
            {"ticket_id": "M2", "scanned_at": gatemesh_crdt::record::date::iso(NOW - 30_000),
             "result": "DENY", "reason": "already_used", "scan_count": 2},
        ]
    })
    .to_string()
    .into_bytes()
}

/// A phone's reconcile: its codes read again by the node, an exit among them.
fn phone_reconcile_json() -> Vec<u8> {
    let codes = codes();
    serde_json::json!({
        "device_id": HANDHELD,
        "scans": [
            {"ticket_id": "G1", "code": String::from_utf8_lossy(&codes[0]), "gate": "north",
             "direction": "in", "scanned_at": gatemesh_crdt::record::date::iso(NOW - 50_000),
             "result": "ALLOW"},
            {"ticket_id": "G1", "code": String::from_utf8_lossy(&codes[0]), "gate": "north",
             "direction": "out", "scanned_at": gatemesh_crdt::record::date::iso(NOW - 40_000),
             "result": "ALLOW"},
        ]
    })
    .to_string()
    .into_bytes()
}

/// A pass for a phone, signed by the organizer or by scanner 1.
fn phone_pass(by_organizer: bool) -> Vec<u8> {
    use gatemesh_crdt::event::pass;
    let (issuer, key) = match by_organizer {
        true => (pass::Issuer::Organizer(KEY_ID.into()), organizer()),
        false => (pass::Issuer::Device(device_id(1)), device_key(1)),
    };
    let body = pass::PassBody {
        event_id: EVENT.into(),
        device_id: format!("{HANDHELD}-0a1b"),
        issuer: issuer.label(),
        issued_ms: NOW - 60_000,
        until_ms: NOW + 86_400_000,
    };
    pass::issue(&body, &key).into_bytes()
}

/// The seed corpus of `target`: genuine inputs the target should take in whole.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let w = World::new();
    let (ledger_2, changes) = device_2_changes(&w);
    let message = SyncMessage::from_ledger(&ledger_2, Some(&[])).encode();
    match target {
        "credential" => codes(),
        "record" => changes
            .iter()
            .map(|c| {
                gatemesh_crdt::record::change::read(c)
                    .expect("a seed change reads")
                    .record
                    .bytes
            })
            .collect(),
        "change" => {
            let mut reversed = changes.clone();
            reversed.reverse();
            let bundle = gatemesh_crdt::protocol::bundle::encode(&changes[..changes.len().min(8)]);
            vec![crate::framed(&changes), crate::framed(&reversed), bundle]
        }
        "sync" => vec![
            [&[KIND_SYNC][..], &message].concat(),
            [&[1u8][..], &message].concat(),
            [&[2u8][..], &changes[0]].concat(),
            [&[3u8][..], &bulletin_bytes(&w)].concat(),
            // Scanner 2 asks for 5 places of the strict zone, carrying its latest changes.
            [
                &[4u8][..],
                &gatemesh_crdt::protocol::room_ask("vip", 5, ledger_2.own_tail(4))[1..],
            ]
            .concat(),
            // The answer to an ask: the room record given.
            [&[5u8, KIND_ROOM][..], changes.last().expect("the gift")].concat(),
        ],
        "bulletin" => vec![bulletin_bytes(&w)],
        "export" => vec![export_bytes(&changes)],
        "reconcile" => vec![reconcile_json(), phone_reconcile_json()],
        "pass" => vec![phone_pass(true), phone_pass(false)],
        "search" => ["eloise", "ORD-7", "nguyen anh", "Ł ǅ ﬁ ẞ"]
            .iter()
            .map(|q| q.as_bytes().to_vec())
            .collect(),
        "json" => vec![
            serde_json::to_vec(&certificate(1)).expect("a certificate serialises"),
            bulletin_bytes(&w),
            reconcile_json(),
        ],
        other => panic!("no fuzz target {other}"),
    }
}
