//! The decision, table-driven: every credential format, every reason code, in DESIGN §5's order.

use ed25519_dalek::SigningKey;
use gatemesh_crdt::certificate::{DeviceCertificate, DeviceIdentity, Role};
use gatemesh_crdt::credential::{make_legacy_code, LegacySecret};
use gatemesh_crdt::event::{EventConfig, EventPackage, OrganizerKey};
use gatemesh_crdt::gate::{GateLogic, ScanRequest};
use gatemesh_crdt::manifest::{Manifest, ManifestBody, ManifestTicket, TicketStatus};
use gatemesh_crdt::policy::Reason;
use gatemesh_crdt::ticket::{self, TicketPayload};
use gatemesh_crdt::{Direction, Verdict};
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000_000;
const HOUR: u64 = 3_600_000;
const SECRET: &[u8] = b"legacy-secret";

fn org(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn config() -> EventConfig {
    let key = |n: u8, id: &str| OrganizerKey {
        key_id: id.into(),
        public_key: hex::encode(org(n).verifying_key().as_bytes()),
    };
    let mut c = EventConfig::new(
        "fest",
        "Fest",
        NOW - 24 * HOUR,
        NOW + 24 * HOUR,
        key(1, "k1"),
    );
    c.organizer_keys.push(key(2, "k2"));
    c
}

fn manifest_ticket(
    id: &str,
    code: &str,
    status: TicketStatus,
    nfc: Option<&str>,
) -> ManifestTicket {
    ManifestTicket {
        ticket_id: id.into(),
        ticket_code: code.into(),
        tier: "general".into(),
        zone: "main".into(),
        max_scans: 1,
        current_scans: 0,
        status,
        nfc_uid: nfc.map(str::to_string),
    }
}

fn device(n: u8) -> DeviceIdentity {
    let key = SigningKey::from_bytes(&[100 + n; 32]);
    let certificate = DeviceCertificate {
        event_id: "fest".into(),
        device_id: gatemesh_crdt::DeviceId::from_public_key(&key.verifying_key()).to_string(),
        public_key: hex::encode(key.verifying_key().as_bytes()),
        name: format!("gate-{n}"),
        role: Role::Scanner,
        valid_from_ms: 0,
        valid_until_ms: u64::MAX,
    };
    DeviceIdentity { key, certificate }
}

fn package() -> EventPackage {
    let body = ManifestBody {
        event_id: "fest".into(),
        generated_at: NOW,
        expires_at: NOW + HOUR,
        tickets: vec![
            manifest_ticket(
                "M1",
                "BARCODE-0001",
                TicketStatus::Valid,
                Some("04:A2:3B:4C:5D:6E:7F"),
            ),
            manifest_ticket("M2", "BARCODE-0002", TicketStatus::Cancelled, None),
            manifest_ticket(
                "M3",
                "BARCODE-0003",
                TicketStatus::Valid,
                Some("04:B1:00:00:00:00:01"),
            ),
            manifest_ticket("G-CANCELLED", "-", TicketStatus::Cancelled, None),
        ],
    };
    EventPackage {
        config: config(),
        certificates: vec![device(1).certificate, device(2).certificate],
        manifest: Some(Manifest::new(body).unwrap()),
    }
}

fn gate_logic(dev: u8, secret: bool) -> GateLogic {
    let p = package();
    let d = device(dev);
    let (ledger, _) = GateLogic::open_ledger(
        &p,
        Some(&d),
        gatemesh_crdt::ChainId(u32::from(dev)),
        &[],
        std::iter::empty(),
    )
    .unwrap();
    let secret = secret.then(|| LegacySecret {
        secret: SECRET.to_vec(),
        expiry_ms: 24 * HOUR,
    });
    GateLogic::new(&p, ledger, secret).unwrap()
}

fn gm1_with(f: impl FnOnce(&mut TicketPayload), key: &SigningKey) -> String {
    let mut p = TicketPayload {
        event_id: "fest".into(),
        ticket_id: "G1".into(),
        tier: "general".into(),
        key_id: "k1".into(),
        valid_from_s: (NOW - HOUR) / 1000,
        valid_until_s: (NOW + HOUR) / 1000,
    };
    f(&mut p);
    ticket::encode(&p, key).unwrap()
}

fn gm1(ticket: &str) -> String {
    gm1_with(|p| p.ticket_id = ticket.into(), &org(1))
}

/// Swap the payload of a code for another one while keeping the first one's signature.
fn with_foreign_signature(payload_from: &str, sig_from: &str) -> String {
    use data_encoding::BASE32_NOPAD;
    let a = BASE32_NOPAD.decode(&payload_from.as_bytes()[4..]).unwrap();
    let b = BASE32_NOPAD.decode(&sig_from.as_bytes()[4..]).unwrap();
    let mut out = a[..a.len() - 64].to_vec();
    out.extend_from_slice(&b[b.len() - 64..]);
    format!("GM1:{}", BASE32_NOPAD.encode(&out))
}

fn legacy(ticket: &str, event: &str, ts: u64) -> String {
    make_legacy_code(ticket, event, "guest-1", "CODE1", ts, SECRET)
}

fn check(gate: &mut GateLogic, code: &[u8], gate_name: &str, expect: Reason) {
    let out = gate
        .scan(
            NOW,
            ScanRequest {
                code,
                gate: gate_name,
                direction: None,
            },
        )
        .unwrap();
    assert_eq!(
        out.decision.reason,
        expect,
        "code {:?}: {}",
        String::from_utf8_lossy(&code[..code.len().min(80)]),
        out.decision.message
    );
    let verdict = if expect == Reason::Ok {
        Verdict::Admit
    } else {
        Verdict::Deny
    };
    assert_eq!(out.decision.verdict, verdict);
    assert!(
        out.change.is_some(),
        "every decision but a repeat is recorded"
    );
}

#[test]
fn credentials_table() {
    let valid = gm1("G1");
    let mut tampered_sig = valid.clone().into_bytes();
    let last = tampered_sig.len() - 2;
    tampered_sig[last] = if tampered_sig[last] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let cases: Vec<(&str, Vec<u8>, &str, Reason)> = vec![
        ("gm1 valid", valid.clone().into_bytes(), "north", Reason::Ok),
        (
            "gm1 lower-case",
            gm1("G-lower").to_lowercase().into_bytes(),
            "north",
            Reason::Ok,
        ),
        (
            "gm1 second organizer key",
            gm1_with(
                |p| {
                    p.ticket_id = "G2".into();
                    p.key_id = "k2".into()
                },
                &org(2),
            )
            .into_bytes(),
            "north",
            Reason::Ok,
        ),
        (
            "gm1 tampered payload",
            with_foreign_signature(&gm1("G-OTHER"), &valid).into_bytes(),
            "north",
            Reason::InvalidSignature,
        ),
        (
            "gm1 tampered signature",
            tampered_sig,
            "north",
            Reason::InvalidSignature,
        ),
        (
            "gm1 unknown key id",
            gm1_with(
                |p| {
                    p.ticket_id = "G3".into();
                    p.key_id = "k9".into()
                },
                &org(9),
            )
            .into_bytes(),
            "north",
            Reason::InvalidSignature,
        ),
        (
            "gm1 key id of another key",
            gm1_with(|p| p.ticket_id = "G4".into(), &org(2)).into_bytes(),
            "north",
            Reason::InvalidSignature,
        ),
        (
            "gm1 other event",
            gm1_with(
                |p| {
                    p.ticket_id = "G5".into();
                    p.event_id = "other".into()
                },
                &org(1),
            )
            .into_bytes(),
            "north",
            Reason::WrongEvent,
        ),
        (
            "gm1 unknown tier",
            gm1_with(
                |p| {
                    p.ticket_id = "G6".into();
                    p.tier = "backstage".into()
                },
                &org(1),
            )
            .into_bytes(),
            "north",
            Reason::UnknownTicket,
        ),
        (
            "gm1 expired",
            gm1_with(
                |p| {
                    p.ticket_id = "G7".into();
                    p.valid_until_s = (NOW - 1000) / 1000
                },
                &org(1),
            )
            .into_bytes(),
            "north",
            Reason::Expired,
        ),
        (
            "gm1 not yet valid",
            gm1_with(
                |p| {
                    p.ticket_id = "G8".into();
                    p.valid_from_s = (NOW + HOUR) / 1000
                },
                &org(1),
            )
            .into_bytes(),
            "north",
            Reason::NotYetValid,
        ),
        (
            "gm1 cancelled in manifest",
            gm1("G-CANCELLED").into_bytes(),
            "north",
            Reason::Revoked,
        ),
        (
            "gm1 wrong zone",
            gm1("G9").into_bytes(),
            "vip",
            Reason::WrongZone,
        ),
        (
            "gm1 truncated",
            valid.as_bytes()[..valid.len() / 2].to_vec(),
            "north",
            Reason::Malformed,
        ),
        (
            "gm1 prefix only",
            b"GM1:".to_vec(),
            "north",
            Reason::Malformed,
        ),
        ("empty", Vec::new(), "north", Reason::Malformed),
        ("oversized", vec![b'A'; 2049], "north", Reason::Malformed),
        (
            "not utf-8",
            vec![0xff, 0xfe, 0x41],
            "north",
            Reason::Malformed,
        ),
        (
            "control characters",
            b"AB\x01CD".to_vec(),
            "north",
            Reason::Malformed,
        ),
        (
            "legacy valid",
            legacy("L1", "fest", NOW - HOUR).into_bytes(),
            "north",
            Reason::Ok,
        ),
        (
            "legacy numeric ids",
            make_legacy_code_numeric(NOW).into_bytes(),
            "north",
            Reason::Ok,
        ),
        (
            "legacy tampered",
            legacy("L2", "fest", NOW)
                .replace("\"L2\"", "\"L3\"")
                .into_bytes(),
            "north",
            Reason::InvalidSignature,
        ),
        (
            "legacy expired",
            legacy("L4", "fest", NOW - 25 * HOUR).into_bytes(),
            "north",
            Reason::Expired,
        ),
        (
            "legacy from the future",
            legacy("L5", "fest", NOW + HOUR).into_bytes(),
            "north",
            Reason::NotYetValid,
        ),
        (
            "legacy other event",
            legacy("L6", "other", NOW).into_bytes(),
            "north",
            Reason::WrongEvent,
        ),
        (
            "legacy no checksum",
            strip_checksum(&legacy("L7", "fest", NOW)).into_bytes(),
            "north",
            Reason::Malformed,
        ),
        (
            "legacy truncated",
            legacy("L8", "fest", NOW).as_bytes()[..40].to_vec(),
            "north",
            Reason::Malformed,
        ),
        (
            "legacy string timestamp",
            legacy("L9", "fest", NOW)
                .replace(&format!(":{NOW}"), &format!(":\"{NOW}\""))
                .into_bytes(),
            "north",
            Reason::Malformed,
        ),
        (
            "manifest code",
            b"BARCODE-0001".to_vec(),
            "north",
            Reason::Ok,
        ),
        (
            "manifest nfc uid, other spelling",
            b"04b1000000000".to_vec(),
            "north",
            Reason::UnknownTicket,
        ),
        (
            "manifest nfc uid",
            b"04b10000000001".to_vec(),
            "north",
            Reason::Ok,
        ),
        (
            "manifest cancelled",
            b"BARCODE-0002".to_vec(),
            "north",
            Reason::Revoked,
        ),
        (
            "manifest unknown",
            b"BARCODE-9999".to_vec(),
            "north",
            Reason::UnknownTicket,
        ),
    ];
    let mut g = gate_logic(1, true);
    for (name, code, gate, expect) in cases {
        eprintln!("case: {name}");
        check(&mut g, &code, gate, expect);
    }
}

fn make_legacy_code_numeric(ts: u64) -> String {
    // ticketId and guestId as JSON numbers: the signature covers them as numbers.
    use hmac::{Hmac, Mac};
    let signed = format!("{{\"ticketId\":4711,\"eventId\":\"fest\",\"guestId\":99,\"ticketCode\":\"X\",\"timestamp\":{ts}}}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(signed.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    format!(
        "{},\"signature\":\"{sig}\",\"checksum\":\"c\"}}",
        &signed[..signed.len() - 1]
    )
}

fn strip_checksum(code: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(code).unwrap();
    let mut o = v.as_object().unwrap().clone();
    o.remove("checksum");
    serde_json::to_string(&o).unwrap()
}

#[test]
fn legacy_codes_need_the_secret() {
    let mut g = gate_logic(1, false);
    check(
        &mut g,
        legacy("L1", "fest", NOW).as_bytes(),
        "north",
        Reason::InvalidSignature,
    );
}

#[test]
fn first_failure_wins() {
    let mut g = gate_logic(1, true);
    // Expired and wrong zone: expired comes first.
    let code = gm1_with(
        |p| {
            p.ticket_id = "E1".into();
            p.valid_until_s = (NOW - 1000) / 1000
        },
        &org(1),
    );
    check(&mut g, code.as_bytes(), "vip", Reason::Expired);
    // Other event and unknown key: the signature comes first.
    let code = gm1_with(
        |p| {
            p.ticket_id = "E2".into();
            p.event_id = "x".into();
            p.key_id = "k9".into()
        },
        &org(9),
    );
    check(&mut g, code.as_bytes(), "north", Reason::InvalidSignature);
    // Revoked and already redeemed: revoked first.
    let code = gm1("E3");
    check(&mut g, code.as_bytes(), "north", Reason::Ok);
    g.revoke_ticket("E3");
    check(&mut g, code.as_bytes(), "south", Reason::Revoked);
}

#[test]
fn screenshot_at_a_second_gate_is_refused_with_the_first_entry() {
    let (mut a, mut b) = (gate_logic(1, false), gate_logic(2, false));
    let code = gm1("S1");
    let first = a
        .scan(
            NOW,
            ScanRequest {
                code: code.as_bytes(),
                gate: "north",
                direction: None,
            },
        )
        .unwrap();
    b.ledger_mut().admit(NOW, 9, &[first.change.unwrap()]);
    let second = b
        .scan(
            NOW + 10,
            ScanRequest {
                code: code.as_bytes(),
                gate: "south",
                direction: None,
            },
        )
        .unwrap();
    assert_eq!(second.decision.reason, Reason::AlreadyRedeemed);
    assert_eq!(second.decision.previous[0].gate, "north");
    assert_eq!(
        second.decision.previous[0].device,
        device(1).id().to_string()
    );
}

#[test]
fn double_scan_grace_returns_the_earlier_admit_on_the_same_device_only() {
    let mut a = gate_logic(1, false);
    let code = gm1("R1");
    let scan = |g: &mut GateLogic, t| {
        g.scan(
            t,
            ScanRequest {
                code: code.as_bytes(),
                gate: "north",
                direction: None,
            },
        )
        .unwrap()
    };
    let first = scan(&mut a, NOW);
    let again = scan(&mut a, NOW + 1_000);
    assert!(again.decision.repeat && again.change.is_none());
    assert_eq!(
        (again.decision.verdict, again.decision.scan_id.as_str()),
        (Verdict::Admit, first.decision.scan_id.as_str())
    );
    let later = scan(&mut a, NOW + 10_000);
    assert_eq!(later.decision.reason, Reason::AlreadyRedeemed);
}

#[test]
fn reentry_after_out_for_vip_and_three_entries_for_weekend() {
    let mut g = gate_logic(1, false);
    let vip = gm1_with(
        |p| {
            p.ticket_id = "V1".into();
            p.tier = "vip".into()
        },
        &org(1),
    );
    let at = |g: &mut GateLogic, t: u64, gate: &str, code: &str| {
        g.scan(
            t,
            ScanRequest {
                code: code.as_bytes(),
                gate,
                direction: None,
            },
        )
        .unwrap()
        .decision
        .reason
    };
    assert_eq!(at(&mut g, NOW, "vip", &vip), Reason::Ok);
    assert_eq!(
        at(&mut g, NOW + 10_000, "north", &vip),
        Reason::AlreadyRedeemed
    );
    assert_eq!(at(&mut g, NOW + 20_000, "exit", &vip), Reason::Ok);
    assert_eq!(at(&mut g, NOW + 30_000, "north", &vip), Reason::Ok);
    let general = gm1("N1");
    assert_eq!(at(&mut g, NOW, "north", &general), Reason::Ok);
    assert_eq!(at(&mut g, NOW + 10_000, "exit", &general), Reason::Ok);
    assert_eq!(
        at(&mut g, NOW + 20_000, "north", &general),
        Reason::AlreadyRedeemed
    );
    let weekend = gm1_with(
        |p| {
            p.ticket_id = "W1".into();
            p.tier = "weekend".into()
        },
        &org(1),
    );
    for day in 0..3 {
        assert_eq!(
            at(&mut g, NOW + day * HOUR / 8, "north", &weekend),
            Reason::Ok
        );
    }
    assert_eq!(
        at(&mut g, NOW + HOUR / 2, "north", &weekend),
        Reason::AlreadyRedeemed
    );
}

#[test]
fn out_scan_uses_the_request_direction_over_the_gate() {
    let mut g = gate_logic(1, false);
    let code = gm1("D1");
    let out = g
        .scan(
            NOW,
            ScanRequest {
                code: code.as_bytes(),
                gate: "north",
                direction: Some(Direction::Out),
            },
        )
        .unwrap();
    assert_eq!(
        (out.decision.direction, out.decision.reason),
        (Direction::Out, Reason::Ok)
    );
    assert!(g
        .scan(
            NOW,
            ScanRequest {
                code: code.as_bytes(),
                gate: "nowhere",
                direction: None
            }
        )
        .is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    /// Random bytes and mutated valid codes: never a panic, always a reason, never an admit of a
    /// code that was changed.
    #[test]
    fn any_input_gets_a_reason_and_no_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2100),
        base in 0usize..3,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut g = gate_logic(1, true);
        let out = g.scan(NOW, ScanRequest { code: &bytes, gate: "north", direction: None }).unwrap();
        prop_assert!(Reason::from_code(out.decision.reason.code()).is_some());
        let valid = [gm1("P1"), legacy("P2", "fest", NOW), "BARCODE-0001".to_string()][base].clone().into_bytes();
        let mut mutated = valid.clone();
        for (i, b) in &flips {
            let i = i.index(mutated.len());
            mutated[i] ^= b | 1;
        }
        let out = g.scan(NOW, ScanRequest { code: &mutated, gate: "north", direction: None }).unwrap();
        // A mutation may leave the signed content intact (the legacy checksum is not verified,
        // base32 reads lower case as upper case); it must never admit another ticket.
        if out.decision.verdict == Verdict::Admit {
            let id = out.decision.ticket.as_ref().map(|t| t.id.as_str());
            prop_assert!(matches!(id, Some("P1" | "P2" | "M1")), "mutated code admitted as {:?}: {:?}", id, String::from_utf8_lossy(&mutated));
        }
        let truncated = &valid[..cut.index(valid.len())];
        let out = g.scan(NOW, ScanRequest { code: truncated, gate: "north", direction: None }).unwrap();
        prop_assert_eq!(out.decision.verdict, Verdict::Deny);
    }
}

#[test]
fn annul_gives_the_entry_back_within_the_window_on_the_admitting_device_only() {
    let (mut a, mut b) = (gate_logic(1, false), gate_logic(2, false));
    let code = gm1("U1");
    let first = a
        .scan(
            NOW,
            ScanRequest {
                code: code.as_bytes(),
                gate: "north",
                direction: None,
            },
        )
        .unwrap();
    b.ledger_mut().admit(NOW, 9, &[first.change.unwrap()]);
    let id = first.decision.scan_id;
    assert!(
        b.annul(NOW + 1_000, "U1", &id).is_err(),
        "another device may not annul"
    );
    assert!(
        a.annul(NOW + 10 * 60_000, "U1", &id).is_err(),
        "window passed"
    );
    let change = a.annul(NOW + 5_000, "U1", &id).unwrap();
    assert!(a.annul(NOW + 6_000, "U1", &id).is_err(), "twice");
    b.ledger_mut().admit(NOW + 5_001, 9, &[change]);
    let again = b
        .scan(
            NOW + 10_000,
            ScanRequest {
                code: code.as_bytes(),
                gate: "south",
                direction: None,
            },
        )
        .unwrap();
    assert_eq!(again.decision.reason, Reason::Ok);
}
