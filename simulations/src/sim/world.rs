//! The event, devices and tickets every run uses, made once per process from a fixed key seed,
//! so device ids (which break ties in the ledger's order) are the same in every process: a seed
//! replays the same run anywhere.

use gatemesh_crdt::event::certificate::{DeviceIdentity, Role};
use gatemesh_crdt::event::EventPackage;
use gatemesh_crdt::gate::bulletin::Bulletin;
use gatemesh_node::organizer::{
    self, device_enroll_with_key, event_create_with_key, tickets_issue, BulletinRequest,
    IssueOptions, TicketFormat,
};
use gatemesh_node::package;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::OnceLock;

/// Most honest nodes a run may have.
pub const NODES_MAX: usize = 50;
pub const GENERAL_TICKETS: usize = 40;
pub const VIP_TICKETS: usize = 8;
/// The chain the Byzantine device writes (its store's chain id).
pub const BYZ_CHAIN: u32 = 0xb4d_c4a1;
/// How much of the Byzantine device's chain its revocation keeps.
pub const BYZ_KEPT: u32 = 3;
/// The vip zone is strict at this many places, its room held at the start by n0 and n1.
pub const VIP_CAPACITY: u64 = 3;

pub struct World {
    pub package: EventPackage,
    /// An organizer bulletin revoking the last general ticket (a refund mid-event).
    pub refund: Bulletin,
    /// An organizer bulletin adding the Byzantine device (it is not in the package's roster:
    /// a scanner enrolled after the devices went out).
    pub byz_addition: Bulletin,
    /// An organizer bulletin revoking the Byzantine device, keeping its first records.
    pub byz_revocation: Bulletin,
    /// Organizer bulletins changing the general tier's rule after the devices went out: two
    /// entries, then (a later version, which wins in any order) one again.
    pub rule_two: Bulletin,
    pub rule_one: Bulletin,
    /// Honest devices, then the Byzantine one (enrolled like the others).
    pub identities: Vec<DeviceIdentity>,
    pub general: Vec<(String, String)>,
    pub vip: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl World {
    pub fn byzantine(&self) -> &DeviceIdentity {
        &self.identities[NODES_MAX]
    }
}

pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| make_world().expect("the simulator's event package"))
}

fn issue(ev: &std::path::Path, count: usize, tier: &str) -> anyhow::Result<Vec<(String, String)>> {
    let o = IssueOptions {
        count: count as u32,
        tier: tier.into(),
        format: TicketFormat::Gm1,
        key_id: None,
        nfc: false,
        qr: false,
        hmac_secret_file: None,
        named: None,
    };
    Ok(tickets_issue(ev, &ev.join("tickets"), &o)?
        .into_iter()
        .map(|t| (t.ticket_id, t.code))
        .collect())
}

/// Device `i` of the world: `n0`… and, last, the Byzantine one.
fn device_name(i: usize) -> String {
    if i == NODES_MAX {
        "byz".to_string()
    } else {
        format!("n{i}")
    }
}

/// The vip zone's own way out (its exits give its room back).
fn add_vip_exit(ev: &std::path::Path) -> anyhow::Result<()> {
    use gatemesh_crdt::event::{EventConfig, GateConfig};
    let path = ev.join(package::EVENT_FILE);
    let mut config: EventConfig = serde_json::from_slice(&std::fs::read(&path)?)?;
    config.gates.push(GateConfig {
        name: "vip-exit".into(),
        zone: "vip".into(),
        direction: gatemesh_crdt::Direction::Out,
        tiers: Vec::new(),
    });
    std::fs::write(path, serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}

/// Enroll every device; returns the package the nodes got, which the Byzantine device,
/// enrolled last, is not in (it joins by bulletin).
fn enroll(
    ev: &std::path::Path,
    key: &mut impl FnMut() -> ed25519_dalek::SigningKey,
) -> anyhow::Result<EventPackage> {
    for i in 0..NODES_MAX {
        let name = device_name(i);
        let dir = ev.join(format!("device-{name}"));
        device_enroll_with_key(ev, &name, Role::Supervisor, &dir, key())?;
    }
    organizer::event_strict(ev, "vip", VIP_CAPACITY, &["n0".into(), "n1".into()])?;
    let package = package::load(ev)?;
    let name = device_name(NODES_MAX);
    let dir = ev.join(format!("device-{name}"));
    device_enroll_with_key(ev, &name, Role::Scanner, &dir, key())?;
    Ok(package)
}

/// The organizer's next bulletin of the event, as a node reads it.
fn organizer_bulletin(
    ev: &std::path::Path,
    package: &EventPackage,
    b: BulletinRequest,
) -> anyhow::Result<Bulletin> {
    let path = organizer::bulletin(&BulletinRequest {
        event: ev.to_path_buf(),
        ..b
    })?;
    let keys = package.config.organizer_verifying_keys()?;
    let bytes = std::fs::read(path)?;
    Ok(Bulletin::from_bytes(
        &bytes,
        &package.config.event_id,
        &keys,
    )?)
}

fn make_world() -> anyhow::Result<World> {
    let dir = tempfile::tempdir()?;
    let ev = dir.path().join("event");
    let mut keys_rng = StdRng::seed_from_u64(0x5eed_f1e1d);
    let mut key = || ed25519_dalek::SigningKey::generate(&mut keys_rng);
    event_create_with_key(
        &ev,
        "Sim Fest",
        Some("simfest".into()),
        Some("2026-01-01T00:00:00Z".into()),
        Some("2027-01-01T00:00:00Z".into()),
        key(),
    )?;
    add_vip_exit(&ev)?;
    let general = issue(&ev, GENERAL_TICKETS, "general")?;
    let vip = issue(&ev, VIP_TICKETS, "vip")?;
    let package = enroll(&ev, &mut key)?;
    let keys = package.config.organizer_verifying_keys()?;
    let read = |b: BulletinRequest| organizer_bulletin(&ev, &package, b);
    let general_rule = |n: u32| BulletinRequest {
        rules: vec![format!("general:max_entries={n}")],
        ..BulletinRequest::default()
    };
    let refund = read(BulletinRequest {
        revoke_ticket: vec![general[GENERAL_TICKETS - 1].0.clone()],
        ..BulletinRequest::default()
    })?;
    let byz_addition = read(BulletinRequest {
        add_device: vec!["byz".into()],
        ..BulletinRequest::default()
    })?;
    let byz_revocation = read(BulletinRequest {
        revoke_device: vec!["byz".into()],
        keep: vec![format!("{BYZ_CHAIN:08x}:{BYZ_KEPT}")],
        ..BulletinRequest::default()
    })?;
    let rule_two = read(general_rule(2))?;
    let rule_one = read(general_rule(1))?;
    let identities = (0..=NODES_MAX)
        .map(|i| {
            let name = device_name(i);
            package::load_identity(
                &ev.join(format!("device-{name}")),
                &package.config.event_id,
                &keys,
            )
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(World {
        package,
        refund,
        byz_addition,
        byz_revocation,
        rule_two,
        rule_one,
        identities,
        general,
        vip,
        _dir: dir,
    })
}
