//! Decision vectors for the scanner page's offline decision (`node/web/gate.js`), written from
//! the Rust gate logic: an event with every tier rule the page applies, a mesh that admitted
//! tickets before the snapshot, organizer bulletins (a ticket revoked, a gate paused, a rule
//! changed), and sequences of scans a phone makes offline, each with the decision
//! `GateLogic::scan` gives on a device holding what the snapshot held plus the phone's own
//! earlier scans. The page must give the same verdict, reason and ticket on every one.

use ed25519_dalek::SigningKey;
use gatemesh_crdt::credential::make_legacy_code;
use gatemesh_crdt::credential::ticket::{self, TicketPayload};
use gatemesh_crdt::event::certificate::{DeviceCertificate, DeviceIdentity, Role};
use gatemesh_crdt::event::manifest::{
    Attendee, Manifest, ManifestBody, ManifestTicket, TicketStatus,
};
use gatemesh_crdt::event::rules::RuleChange;
use gatemesh_crdt::event::signed::Signed;
use gatemesh_crdt::event::{
    CapacityMode, EventConfig, EventPackage, GateConfig, LegacyConfig, OrganizerKey, TierConfig,
};
use gatemesh_crdt::gate::bulletin::{Bulletin, BulletinBody};
use gatemesh_crdt::gate::pause::{PauseOrder, Scope};
use gatemesh_crdt::gate::{GateLogic, ScanRequest};
use gatemesh_crdt::Direction;
use serde_json::{json, Value};

/// Friday 10 July 2026, 12:00 UTC (14:00 at the venue): the snapshot is taken then.
pub const T0: u64 = 1_783_684_800_000;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

fn org(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
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

fn gate(name: &str, zone: &str, direction: Direction, tiers: &[&str]) -> GateConfig {
    GateConfig {
        name: name.into(),
        zone: zone.into(),
        direction,
        tiers: tiers.iter().map(|t| t.to_string()).collect(),
    }
}

fn tier(name: &str, max: u32, reentry: bool, zones: &[&str]) -> TierConfig {
    TierConfig {
        name: name.into(),
        max_entries: max,
        reentry,
        zones: zones.iter().map(|z| z.to_string()).collect(),
        valid_from_ms: None,
        valid_until_ms: None,
        double_scan_grace_ms: 3_000,
        attention: None,
        max_entries_per_day: None,
        valid_days: Vec::new(),
        live_code: false,
    }
}

/// The event: four zones (one with a capacity, one strict whose room gate 2 holds), gates in
/// and out, a staff door for VIPs, and tiers with one entry, re-entry, a daily limit, a day
/// pass and a window already over.
pub fn config() -> EventConfig {
    let key = |n: u8, id: &str| OrganizerKey {
        key_id: id.into(),
        public_key: hex::encode(org(n).verifying_key().as_bytes()),
    };
    let mut c = EventConfig::new("fest", "Fest", T0 - 2 * DAY, T0 + 3 * DAY, key(1, "k1"));
    c.organizer_keys.push(key(2, "k2"));
    c.zones = ["main", "vip", "back", "lounge"].map(String::from).into();
    c.gates = vec![
        gate("north", "main", Direction::In, &[]),
        gate("south", "main", Direction::In, &[]),
        gate("exit", "main", Direction::Out, &[]),
        gate("vip", "vip", Direction::In, &[]),
        gate("staff-door", "main", Direction::In, &["vip"]),
        gate("back", "back", Direction::In, &[]),
        gate("back-exit", "back", Direction::Out, &[]),
        gate("lounge", "lounge", Direction::In, &[]),
    ];
    let mut weekend = tier("weekend", 3, false, &["main"]);
    weekend.max_entries_per_day = Some(1);
    let mut saturday = tier("saturday", 1, false, &["main"]);
    saturday.valid_days = vec!["2026-07-11".into()];
    let mut early = tier("early", 1, false, &["main"]);
    early.valid_until_ms = Some(T0 - HOUR);
    let mut live = tier("live", 1, false, &["main"]);
    live.live_code = true;
    let mut vip = tier("vip", 1, true, &["main", "vip", "lounge"]);
    vip.attention = Some("Check the VIP wristband".into());
    c.tiers = vec![
        tier("general", 1, false, &["main"]),
        vip,
        weekend,
        tier("crew", 5, true, &["main", "back"]),
        saturday,
        early,
        live,
    ];
    c.capacity = [("back".to_string(), 2u64), ("lounge".to_string(), 3)].into();
    c.capacity_mode = [("lounge".to_string(), CapacityMode::Strict)].into();
    let holder = device(2).certificate.device_id;
    c.room_holders = [("lounge".to_string(), vec![holder])].into();
    c.day_starts = Some("06:00+02:00".into());
    c.legacy = LegacyConfig {
        event_id: "fest-legacy".into(),
        tier: "general".into(),
    };
    c.validate().expect("the vectors' event is valid");
    c
}

fn manifest_body() -> ManifestBody {
    let t =
        |id: &str, code: &str, tier: &str, zone: &str, status, nfc: Option<&str>| ManifestTicket {
            ticket_id: id.into(),
            ticket_code: code.into(),
            tier: tier.into(),
            zone: zone.into(),
            max_scans: 1,
            current_scans: 0,
            status,
            nfc_uid: nfc.map(str::to_string),
            attendee: Attendee::default(),
        };
    let mut m3 = t(
        "M3",
        "BARCODE-0003",
        "vip",
        "vip",
        TicketStatus::Valid,
        None,
    );
    m3.attendee = Attendee {
        name: Some("Jürgen Müller".into()),
        order: Some("ORD9Q".into()),
        notes: Some("Wheelchair user: side ramp".into()),
        attention: true,
    };
    let mut g1 = t("G-NEW", "-", "general", "main", TicketStatus::Valid, None);
    g1.attendee.name = Some("Éloïse Dupré".into());
    ManifestBody {
        event_id: "fest".into(),
        generated_at: T0 - DAY,
        expires_at: T0 + 3 * DAY,
        tickets: vec![
            t(
                "M1",
                "BARCODE-0001",
                "general",
                "main",
                TicketStatus::Valid,
                Some("04:A2:3B:4C:5D:6E:7F"),
            ),
            t(
                "M2",
                "BARCODE-0002",
                "general",
                "main",
                TicketStatus::Cancelled,
                None,
            ),
            m3,
            t(
                "G-CANCEL",
                "-",
                "general",
                "main",
                TicketStatus::Cancelled,
                None,
            ),
            g1,
        ],
    }
}

/// The phone manifest as the organizer signs it (the page checks this envelope).
pub fn manifest_envelope() -> Signed {
    let phone = gatemesh_crdt::event::manifest::phone_manifest(&manifest_body());
    let text = serde_json::to_string(&phone).unwrap();
    Signed::sign_text(text, "k1", &org(1))
}

fn package() -> EventPackage {
    EventPackage {
        config: config(),
        certificates: vec![device(2).certificate, device(3).certificate],
        manifest: Some(Manifest::new(manifest_body()).unwrap()),
    }
}

/// A GM1 code: `ticket` of `tier`, valid around T0, signed by organizer key `key`.
pub fn gm1_with(ticket: &str, tier: &str, f: impl FnOnce(&mut TicketPayload)) -> String {
    let mut p = TicketPayload {
        event_id: "fest".into(),
        ticket_id: ticket.into(),
        tier: tier.into(),
        key_id: "k1".into(),
        valid_from_s: (T0 - 3 * DAY) / 1000,
        valid_until_s: (T0 + 4 * DAY) / 1000,
    };
    f(&mut p);
    let key = if p.key_id == "k2" { org(2) } else { org(1) };
    ticket::encode(&p, &key).unwrap()
}

pub fn gm1(ticket: &str, tier: &str) -> String {
    gm1_with(ticket, tier, |_| {})
}

/// A rotating ticket's wallet key: one per ticket.
fn holder(ticket: &str) -> SigningKey {
    use sha2::Digest;
    SigningKey::from_bytes(&sha2::Sha256::digest(ticket.as_bytes()).into())
}

/// A live code (GM2) of `ticket`, made by its wallet for the step of `at_ms`.
pub fn gm2(ticket: &str, tier: &str, at_ms: u64) -> String {
    use gatemesh_crdt::credential::rotating;
    let payload = rotating::RotatingPayload {
        event_id: "fest".into(),
        ticket_id: ticket.into(),
        tier: tier.into(),
        key_id: "k1".into(),
        valid_from_s: (T0 - 3 * DAY) / 1000,
        valid_until_s: (T0 + 4 * DAY) / 1000,
        holder: holder(ticket).verifying_key().to_bytes(),
    };
    let part = rotating::static_part(&payload, &org(1));
    rotating::live_code(&part, ticket, &holder(ticket), rotating::step_of(at_ms))
}

/// A live code made by a wallet that is not the ticket's (its static part copied).
fn gm2_forged(ticket: &str, at_ms: u64) -> String {
    use gatemesh_crdt::credential::rotating;
    let payload = rotating::RotatingPayload {
        event_id: "fest".into(),
        ticket_id: ticket.into(),
        tier: "live".into(),
        key_id: "k1".into(),
        valid_from_s: (T0 - 3 * DAY) / 1000,
        valid_until_s: (T0 + 4 * DAY) / 1000,
        holder: holder(ticket).verifying_key().to_bytes(),
    };
    let part = rotating::static_part(&payload, &org(1));
    rotating::live_code(
        &part,
        ticket,
        &holder("someone else"),
        rotating::step_of(at_ms),
    )
}

fn bulletin(version: u64, f: impl FnOnce(&mut BulletinBody)) -> Bulletin {
    let mut body = BulletinBody {
        event_id: "fest".into(),
        version,
        issued_ms: T0 - 2 * HOUR + version,
        revoke_tickets: Vec::new(),
        revoke_devices: Vec::new(),
        add_devices: Vec::new(),
        pauses: Vec::new(),
        rules: Vec::new(),
        unpair: Vec::new(),
    };
    f(&mut body);
    let signed = Signed::sign_text(serde_json::to_string(&body).unwrap(), "k1", &org(1));
    let keys = config().organizer_verifying_keys().unwrap();
    Bulletin::from_bytes(&serde_json::to_vec(&signed).unwrap(), "fest", &keys).unwrap()
}

/// What the organizer said during the event: a ticket revoked, gate south paused, general
/// tickets given a second entry.
pub fn bulletins() -> Vec<Bulletin> {
    vec![
        bulletin(1, |b| b.revoke_tickets = vec!["T-REV".into()]),
        bulletin(2, |b| {
            b.pauses = vec![PauseOrder {
                scope: Scope::Gate,
                name: "south".into(),
                paused: true,
            }]
        }),
        bulletin(3, |b| {
            b.rules = vec![RuleChange {
                tier: "general".into(),
                max_entries: Some(2),
                ..Default::default()
            }]
        }),
    ]
}

fn logic(dev: u8, stored: &[Vec<u8>]) -> GateLogic {
    let p = package();
    let d = device(dev);
    let bulletins = bulletins();
    let (ledger, refused) = GateLogic::open_ledger(
        &p,
        Some(&d),
        gatemesh_crdt::ChainId(u32::from(dev)),
        &bulletins,
        &[],
        stored.iter().map(Vec::as_slice),
        T0,
    )
    .unwrap();
    assert_eq!(refused, 0);
    let mut g = GateLogic::new(&p, ledger, None).unwrap();
    assert!(g.restore_bulletins(&bulletins).is_empty());
    g
}

fn scan(g: &mut GateLogic, now: u64, code: &str, gate: &str, dir: Option<Direction>) -> Value {
    let req = ScanRequest {
        code: code.as_bytes(),
        gate,
        direction: dir,
        manual: false,
        origin: None,
    };
    let d = g.scan(now, req).unwrap().decision;
    json!({
        "verdict": d.verdict_code(),
        "reason": d.reason.code(),
        "repeat": d.repeat,
        "ticket_id": d.ticket.as_ref().map(|t| t.id.clone()),
        "attention": d.attention,
    })
}

/// The mesh before the snapshot: what gate 2 admitted.
fn mesh() -> Vec<Vec<u8>> {
    let mut g = logic(2, &[]);
    let at = |h: u64| T0 - h * 60_000;
    // Oldest first: a device's clock (its HLC) never goes back, so a scan planned earlier than
    // one already made would be dated after it.
    let plan: &[(u64, String, &str, Option<Direction>)] = &[
        (24 * 60, gm1("W-YDAY", "weekend"), "north", None),
        (300, gm1("G-MESH", "general"), "north", None),
        (290, gm1("G-TWICE", "general"), "north", None),
        (280, gm1("G-TWICE", "general"), "north", None),
        (60, gm1("V-IN", "vip"), "north", None),
        (50, gm1("C1", "crew"), "back", None),
        (49, gm1("C2", "crew"), "back", None),
        (30, gm1("W-TODAY", "weekend"), "north", None),
    ];
    for (mins, code, gate, dir) in plan {
        let d = scan(&mut g, at(*mins), code, gate, *dir);
        assert_eq!(d["verdict"], "admit", "mesh scan {code} at {gate}: {d}");
    }
    g.ledger().changes().map(<[u8]>::to_vec).collect()
}

/// How many mutated codes the vectors hold.
pub const MUTATIONS: usize = 3000;

/// One sequence of scans: `(seconds after the start, code, gate, direction)`.
type Plan = Vec<(u64, String, &'static str, Option<Direction>)>;

fn friday() -> Plan {
    let legacy = make_legacy_code("L1", "fest-legacy", "guest-1", "TC-1", T0, b"secret");
    let foreign = {
        use data_encoding::BASE32_NOPAD;
        let a = BASE32_NOPAD
            .decode(&gm1("G-FORGED", "general").as_bytes()[4..])
            .unwrap();
        let b = BASE32_NOPAD
            .decode(&gm1("G-OTHER", "general").as_bytes()[4..])
            .unwrap();
        let mut out = a[..a.len() - 64].to_vec();
        out.extend_from_slice(&b[b.len() - 64..]);
        format!("GM1:{}", BASE32_NOPAD.encode(&out))
    };
    let new = gm1("G-NEW", "general");
    let g = |s: &str| s.to_string();
    let out = Some(Direction::Out);
    vec![
        (0, new.clone(), "north", None),
        (1, new.clone(), "north", None),
        (10, new.clone(), "north", None),
        (11, new.clone(), "south", None),
        (12, gm1("G-SOUTH-OUT", "general"), "south", out),
        (13, foreign, "north", None),
        (
            14,
            gm1_with("G-K9", "general", |p| p.key_id = "k9".into()),
            "north",
            None,
        ),
        (
            15,
            gm1_with("G-K2", "general", |p| p.key_id = "k2".into()),
            "north",
            None,
        ),
        (16, new[..new.len() - 9].to_string(), "north", None),
        (17, gm1("G-LOWER", "general").to_lowercase(), "north", None),
        (18, g(""), "north", None),
        (19, "X".repeat(3000), "north", None),
        (
            20,
            gm1_with("G-OTHER-EVENT", "general", |p| p.event_id = "other".into()),
            "north",
            None,
        ),
        (21, gm1("G-PLATINUM", "platinum"), "north", None),
        (22, gm1("G-CANCEL", "general"), "north", None),
        (23, gm1("T-REV", "general"), "north", None),
        (
            24,
            gm1_with("G-LATER", "general", |p| p.valid_from_s = (T0 + DAY) / 1000),
            "north",
            None,
        ),
        (
            25,
            gm1_with("G-OVER", "general", |p| p.valid_until_s = (T0 - DAY) / 1000),
            "north",
            None,
        ),
        (26, gm1("S-1", "saturday"), "north", None),
        (27, gm1("E-1", "early"), "north", None),
        (28, gm1("V-NEW", "vip"), "vip", None),
        (29, gm1("G-VIPGATE", "general"), "vip", None),
        (30, gm1("G-STAFF", "general"), "staff-door", None),
        (31, gm1("V-STAFF", "vip"), "staff-door", None),
        (32, g("BARCODE-0001"), "north", None),
        (33, g("04a23b4c5d6e7f"), "north", None),
        (40, g(" 04:A2:3B:4C:5D:6E:7F "), "north", None),
        (41, g("BARCODE-0002"), "north", None),
        (42, g("UNKNOWN-CODE"), "north", None),
        (43, g("bad\u{1}code"), "north", None),
        (43, g("\u{feff}BARCODE-0003"), "vip", None),
        (43, g("\u{85}BARCODE-0003 "), "vip", None),
        (44, legacy.clone(), "north", None),
        (
            45,
            legacy.replace("\"guestId\"", "\"guest\""),
            "north",
            None,
        ),
        (46, g("{not json"), "north", None),
        (47, g("BARCODE-0003"), "vip", None),
        (47, gm1("V-LOUNGE", "vip"), "lounge", None),
        (47, gm1("G-LOUNGE", "general"), "lounge", None),
        (48, gm1("G-MESH", "general"), "north", None),
        (60, gm1("G-MESH", "general"), "north", None),
        (61, gm1("G-TWICE", "general"), "north", None),
        (62, gm1("W-TODAY", "weekend"), "north", None),
        (63, gm1("W-YDAY", "weekend"), "north", None),
        (64, gm1("V-IN", "vip"), "north", None),
        (65, gm1("V-IN", "vip"), "exit", None),
        (66, gm1("V-IN", "vip"), "north", None),
        (67, gm1("C3", "crew"), "back", None),
        (68, gm1("C1", "crew"), "back-exit", None),
        (69, gm1("C3", "crew"), "back", None),
        (70, gm1("C4", "crew"), "back", None),
        (71, gm1("G-CTRL\u{7}", "general"), "north", None),
        (72, gm1("W-TODAY", "weekend"), "exit", None),
        (73, g("GM1:"), "north", None),
        (74, g("GM1:AB"), "north", None),
        (76, gm2("R-1", "live", T0 + 76_000), "north", None),
        (77, gm2("R-2", "live", T0 + 77_000 - 40_000), "north", None),
        (78, gm2("R-3", "live", T0 + 78_000 + 120_000), "north", None),
        (79, gm2("R-4", "live", T0 + 79_000 - 15_000), "north", None),
        (80, gm2_forged("R-5", T0 + 80_000), "north", None),
        (81, gm1("R-6", "live"), "north", None),
        (
            82,
            gm2("R-7", "live", T0 + 82_000).to_lowercase(),
            "north",
            None,
        ),
        (
            83,
            gm2("R-8", "live", T0 + 83_000)[..60].to_string(),
            "north",
            None,
        ),
        (90, gm2("R-1", "live", T0 + 90_000), "exit", None),
        (91, gm2("R-1", "live", T0 + 91_000), "north", None),
        (92, gm2("G-R", "general", T0 + 92_000), "north", None),
        (75, new.clone(), "north", None),
    ]
}

/// The next festival day (after 06:00 at the venue): daily limits start again, the Saturday
/// pass is valid.
fn saturday() -> Plan {
    vec![
        (DAY / 1000, gm1("W-TODAY", "weekend"), "north", None),
        (DAY / 1000 + 10, gm1("W-TODAY", "weekend"), "north", None),
        (DAY / 1000 + 11, gm1("S-1", "saturday"), "north", None),
        (DAY / 1000 + 12, gm1("W-YDAY", "weekend"), "north", None),
        (DAY / 1000 + 13, gm1("C2", "crew"), "back", None),
    ]
}

fn run(stored: &[Vec<u8>], start: u64, plan: Plan) -> Vec<Value> {
    let mut phone = logic(3, stored);
    plan.into_iter()
        .map(|(s, code, gate, dir)| {
            let now = start + s * 1000;
            let expect = scan(&mut phone, now, &code, gate, dir);
            let direction = dir.map(|d| match d {
                Direction::In => "in",
                Direction::Out => "out",
            });
            json!({"now_ms": now, "code": code, "gate": gate, "direction": direction, "expect": expect})
        })
        .collect()
}

/// Codes a fuzzer would send: valid codes of every format with characters flipped, cut,
/// doubled, cased or padded, and printable noise, from `seed`.
fn mutations(seed: u64, n: usize) -> Plan {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let legacy = make_legacy_code("L1", "fest-legacy", "guest-1", "TC-1", T0, b"secret");
    let bases = [
        gm2("R-9", "live", T0),
        gm1("G-NEW", "general"),
        gm1("V-NEW", "vip"),
        gm1("W-TODAY", "weekend"),
        "BARCODE-0001".to_string(),
        "04:A2:3B:4C:5D:6E:7F".to_string(),
        legacy,
        "GM1:".to_string(),
    ];
    let alphabet: Vec<char> =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567abcxyz018:{}\",. \n\r\t-_é\u{1}\u{feff}\u{85}\u{a0}"
            .chars()
            .collect();
    let gates = [
        "north",
        "south",
        "exit",
        "vip",
        "staff-door",
        "back",
        "back-exit",
    ];
    (0..n)
        .map(|i| {
            let mut c: Vec<char> = bases[rng.gen_range(0..bases.len())].chars().collect();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..=c.len());
                let ch = alphabet[rng.gen_range(0..alphabet.len())];
                match rng.gen_range(0..7) {
                    0 if at < c.len() => c[at] = ch,
                    1 if at < c.len() => {
                        c.remove(at);
                    }
                    2 => c.insert(at, ch),
                    3 => c.truncate(at),
                    4 => c = c.iter().map(|x| x.to_ascii_lowercase()).collect(),
                    5 => c.extend_from_slice(&c.clone()[..at]),
                    _ => c.push(ch),
                }
            }
            let gate = gates[rng.gen_range(0..gates.len())];
            (i as u64 / 4, c.into_iter().collect(), gate, None)
        })
        .collect()
}

/// The vectors: the pack and manifest a node would serve, the snapshot it would take at T0,
/// and the scenarios with their expected decisions.
pub fn vectors() -> Value {
    let stored = mesh();
    let node = logic(3, &stored);
    let pack = gatemesh_crdt::gate::offline::pack(&node);
    let snapshot = gatemesh_crdt::gate::snapshot::build(&node, T0);
    let scenarios = json!([
        {"name": "friday", "scans": run(&stored, T0, friday())},
        {"name": "saturday", "scans": run(&stored, T0, saturday())},
        {"name": "mutations", "scans": run(&stored, T0, mutations(7, MUTATIONS))},
    ]);
    json!({
        "pack": pack,
        "manifest": manifest_envelope(),
        "snapshot_hex": hex::encode(&snapshot),
        "scenarios": scenarios,
    })
}
