//! The organizer's work, as library functions that return what they made: the event package
//! (`event create`, `add-key`), tickets (`tickets issue`, `cancel`), devices (`device enroll`),
//! bulletins. The CLI prints what they return; the simulator and the tests call them directly.

use crate::package::{
    self, OrganizerSecret, DEVICES_DIR, DEVICE_CERT_FILE, DEVICE_KEY_FILE, EVENT_FILE,
    MANIFEST_FILE, ORGANIZER_KEYS_FILE,
};
use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;
use gatemesh_crdt::credential::make_legacy_code;
use gatemesh_crdt::credential::ticket::{self, TicketPayload};
use gatemesh_crdt::event::certificate::{DeviceCertificate, Role};
use gatemesh_crdt::event::manifest::{Attendee, ManifestBody, ManifestTicket, TicketStatus};
use gatemesh_crdt::event::{EventConfig, EventPackage, OrganizerKey, TierConfig, NAME_LEN_MAX};
use gatemesh_crdt::gate::bulletin::{BulletinBody, DeviceRevocation, KeptChain};
use gatemesh_crdt::DeviceId;
use rand::{rngs::OsRng, Rng, RngCore};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Most tickets one `tickets issue` makes.
pub const ISSUE_COUNT_MAX: u32 = 1_000_000;

/// How tickets are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketFormat {
    /// Signed GM1 codes (default).
    Gm1,
    /// Legacy HMAC JSON codes (needs the HMAC secret).
    Legacy,
    /// Opaque barcode codes looked up in the manifest.
    Manifest,
    /// Rotating live codes (GM2): a wallet page per ticket whose code changes every 15 s.
    Rotating,
}

/// What `event create` made.
#[derive(Clone, Debug)]
pub struct CreatedEvent {
    pub event_id: String,
    pub public: PathBuf,
    pub secret: PathBuf,
}

fn parse_time(s: &str) -> anyhow::Result<u64> {
    let t = humantime::parse_rfc3339_weak(s)
        .with_context(|| format!("{s:?} is not an RFC 3339 time"))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64)
}

fn new_key_id(existing: &[OrganizerKey]) -> String {
    format!("k{}", existing.len() + 1)
}

pub fn event_create(
    out: &Path,
    name: &str,
    id: Option<String>,
    from: Option<String>,
    until: Option<String>,
) -> anyhow::Result<CreatedEvent> {
    event_create_with_key(out, name, id, from, until, SigningKey::generate(&mut OsRng))
}

/// [`event_create`] with a given organizer key (the simulator makes its world from a seed).
pub fn event_create_with_key(
    out: &Path,
    name: &str,
    id: Option<String>,
    from: Option<String>,
    until: Option<String>,
    key: SigningKey,
) -> anyhow::Result<CreatedEvent> {
    if out.join(EVENT_FILE).exists() {
        bail!(
            "{} already holds an event; refusing to overwrite it",
            out.display()
        );
    }
    std::fs::create_dir_all(out)?;
    let id = id.unwrap_or_else(|| {
        let slug: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(24)
            .collect::<String>()
            .to_lowercase();
        format!(
            "{}-{:04x}",
            if slug.is_empty() {
                "event".into()
            } else {
                slug
            },
            OsRng.gen::<u16>()
        )
    });
    let from_ms = from
        .as_deref()
        .map(parse_time)
        .transpose()?
        .unwrap_or_else(crate::now_ms);
    let until_ms = until
        .as_deref()
        .map(parse_time)
        .transpose()?
        .unwrap_or(from_ms + 7 * 24 * 3600 * 1000);
    if until_ms <= from_ms {
        bail!("--valid-until must be after --valid-from");
    }
    let public = OrganizerKey {
        key_id: "k1".into(),
        public_key: hex::encode(key.verifying_key().as_bytes()),
    };
    let config = EventConfig::new(&id, name, from_ms, until_ms, public);
    config.validate()?;
    let secrets = vec![OrganizerSecret {
        key_id: "k1".into(),
        secret_key: hex::encode(key.to_bytes()),
    }];
    package::write_secret_file(
        &out.join(ORGANIZER_KEYS_FILE),
        &serde_json::to_vec_pretty(&secrets)?,
    )?;
    std::fs::write(out.join(EVENT_FILE), serde_json::to_vec_pretty(&config)?)?;
    crate::tls::ensure_event_ca(out, &config, crate::now_ms())?;
    Ok(CreatedEvent {
        event_id: id,
        public: out.join(EVENT_FILE),
        secret: out.join(ORGANIZER_KEYS_FILE),
    })
}

/// Add an organizer key; returns its id.
pub fn event_add_key(dir: &Path) -> anyhow::Result<String> {
    let mut config: EventConfig = serde_json::from_slice(&std::fs::read(dir.join(EVENT_FILE))?)?;
    let mut secrets = package::load_organizer_secrets(dir)?;
    let key = SigningKey::generate(&mut OsRng);
    let key_id = new_key_id(&config.organizer_keys);
    config.organizer_keys.push(OrganizerKey {
        key_id: key_id.clone(),
        public_key: hex::encode(key.verifying_key().as_bytes()),
    });
    secrets.push(OrganizerSecret {
        key_id: key_id.clone(),
        secret_key: hex::encode(key.to_bytes()),
    });
    package::write_secret_file(
        &dir.join(ORGANIZER_KEYS_FILE),
        &serde_json::to_vec_pretty(&secrets)?,
    )?;
    std::fs::write(dir.join(EVENT_FILE), serde_json::to_vec_pretty(&config)?)?;
    Ok(key_id)
}

/// Make `zone`'s capacity strict (`capacity` places), its room held at the start by the named
/// scanners (none named: every scanner enrolled). Returns the holders' names.
pub fn event_strict(
    dir: &Path,
    zone: &str,
    capacity: u64,
    holders: &[String],
) -> anyhow::Result<Vec<String>> {
    use gatemesh_crdt::event::CapacityMode;
    let package = package::load(dir)?;
    let mut config = package.config.clone();
    if !config.zones.iter().any(|z| z == zone) || capacity == 0 {
        bail!("zone {zone} is not one of the event's, or capacity is 0");
    }
    let scanners: Vec<&DeviceCertificate> = (package.certificates.iter())
        .filter(|c| c.role.writes())
        .collect();
    let chosen: Vec<&DeviceCertificate> = match holders.is_empty() {
        true => scanners,
        false => (holders.iter())
            .map(|h| {
                (scanners.iter().find(|c| &c.name == h).copied())
                    .with_context(|| format!("no scanner {h} is enrolled"))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    if chosen.is_empty() {
        bail!("no scanner to hold the room: enroll the gates first");
    }
    config.capacity.insert(zone.to_string(), capacity);
    config
        .capacity_mode
        .insert(zone.to_string(), CapacityMode::Strict);
    let ids = chosen.iter().map(|c| c.device_id.clone()).collect();
    config.room_holders.insert(zone.to_string(), ids);
    config.validate()?;
    std::fs::write(dir.join(EVENT_FILE), serde_json::to_vec_pretty(&config)?)?;
    Ok(chosen.iter().map(|c| c.name.clone()).collect())
}

/// Options of `tickets issue`.
#[derive(Clone, Debug)]
pub struct IssueOptions {
    pub count: u32,
    pub tier: String,
    pub format: TicketFormat,
    pub key_id: Option<String>,
    pub nfc: bool,
    pub qr: bool,
    pub hmac_secret_file: Option<PathBuf>,
    /// Issue these tickets (from a guest list or HQ's database) instead of `count` new
    /// numbered ones of `tier`.
    pub named: Option<Vec<Planned>>,
}

/// One ticket to issue from a list: its id (numbered when absent), tier and holder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Planned {
    pub id: Option<String>,
    pub tier: String,
    pub attendee: Attendee,
    /// Kept by the organizer (`guest-emails.json`), not in the manifest.
    pub email: Option<String>,
}

/// Longest ticket id taken from outside (it names a QR file).
pub const TICKET_ID_LEN_MAX: usize = 64;

/// One issued ticket, as written to codes.csv.
#[derive(Clone, Debug)]
pub struct Issued {
    pub ticket_id: String,
    pub tier: String,
    /// The code (for a rotating ticket, its static part `GM2S:…`, which no scanner takes: the
    /// wallet shows live codes made from it).
    pub code: String,
    pub nfc_uid: Option<String>,
    /// A rotating ticket's wallet key (its wallet page holds it; nothing else keeps it).
    pub holder: Option<[u8; 32]>,
}

pub fn tickets_issue(dir: &Path, out: &Path, o: &IssueOptions) -> anyhow::Result<Vec<Issued>> {
    let package = package::load(dir)?;
    let config = &package.config;
    let wanted = o.named.as_ref().map_or(o.count as usize, Vec::len);
    if wanted == 0 || wanted > ISSUE_COUNT_MAX as usize {
        bail!("tickets to issue must be 1..={ISSUE_COUNT_MAX}, not {wanted}");
    }
    let (key_id, key) = package::organizer_signing_key(dir, o.key_id.as_deref())?;
    let mut tickets = package
        .manifest
        .as_ref()
        .map(|m| m.tickets().to_vec())
        .unwrap_or_default();
    let plan = plan_tickets(config, &tickets, o)?;
    let legacy_secret = if o.format == TicketFormat::Legacy {
        Some(
            package::legacy_secret(o.hmac_secret_file.as_deref())?
                .context("legacy tickets need QR_SIGNATURE_SECRET or --hmac-secret-file")?,
        )
    } else {
        None
    };
    let signer = CodeSigner {
        config,
        key_id: &key_id,
        key: &key,
        legacy_secret: legacy_secret.as_ref().map(|s| s.secret.as_slice()),
    };
    check_live_tiers(&plan, o.format)?;
    if o.format == TicketFormat::Rotating && o.nfc {
        bail!("a rotating ticket shows a live code: a wristband UID would be a copyable code beside it");
    }
    let mut issued = Vec::with_capacity(plan.len());
    for (ticket_id, tier, n, attendee) in plan {
        let (code, holder) = signer.code(o.format, &ticket_id, tier, n)?;
        let nfc_uid = o.nfc.then(random_nfc_uid);
        tickets.push(ManifestTicket {
            ticket_id: ticket_id.clone(),
            ticket_code: code.clone(),
            tier: tier.name.clone(),
            zone: tier.zones.first().cloned().unwrap_or_default(),
            max_scans: tier.max_entries,
            current_scans: 0,
            status: TicketStatus::Valid,
            nfc_uid: nfc_uid.clone(),
            attendee,
        });
        issued.push(Issued {
            ticket_id,
            tier: tier.name.clone(),
            code,
            nfc_uid,
            holder,
        });
    }
    let wallets = wallets(config, &issued, &tickets);
    crate::wallet::write_all(&out.join("wallet"), &wallets)?;
    write_manifest(dir, config, tickets, &key_id, &key)?;
    let emails: Vec<(String, String)> = o
        .named
        .iter()
        .flatten()
        .zip(&issued)
        .filter_map(|(p, t)| Some((t.ticket_id.clone(), p.email.clone()?)))
        .collect();
    package::add_guest_emails(dir, &emails)?;
    write_codes(out, &issued, o.qr)?;
    Ok(issued)
}

/// A tier that shows live codes only is issued rotating tickets only.
fn check_live_tiers(
    plan: &[(String, &TierConfig, usize, Attendee)],
    format: TicketFormat,
) -> anyhow::Result<()> {
    match plan.iter().find(|(_, t, ..)| t.live_code) {
        Some((_, tier, ..)) if format != TicketFormat::Rotating => bail!(
            "tier {} shows live codes only: issue its tickets with --rotating",
            tier.name
        ),
        _ => Ok(()),
    }
}

/// The wallet pages of the rotating tickets just issued (their holders' names from `tickets`).
fn wallets(
    config: &EventConfig,
    issued: &[Issued],
    tickets: &[ManifestTicket],
) -> Vec<crate::wallet::Wallet> {
    (issued.iter())
        .filter_map(|t| {
            let name = (tickets.iter().rev())
                .find(|m| m.ticket_id == t.ticket_id)
                .and_then(|m| m.attendee.name.clone());
            Some(crate::wallet::Wallet {
                event_name: config.name.clone(),
                ticket_id: t.ticket_id.clone(),
                tier: t.tier.clone(),
                name,
                static_part: t.code.clone(),
                holder_secret: t.holder?,
            })
        })
        .collect()
}

/// The tickets to issue: (id, tier, number, holder), numbered after the `existing` ones.
fn plan_tickets<'c>(
    config: &'c EventConfig,
    existing: &[ManifestTicket],
    o: &IssueOptions,
) -> anyhow::Result<Vec<(String, &'c TierConfig, usize, Attendee)>> {
    let tier_of = |name: &str| {
        config
            .tier(name)
            .with_context(|| format!("no tier {name} in this event"))
    };
    let first = existing.len() + 1;
    let Some(named) = &o.named else {
        let tier = tier_of(&o.tier)?;
        return Ok((first..first + o.count as usize)
            .map(|n| (format!("T{n:06}"), tier, n, Attendee::default()))
            .collect());
    };
    let mut seen: HashSet<String> = existing.iter().map(|t| t.ticket_id.clone()).collect();
    let mut plan = Vec::with_capacity(named.len());
    for (i, p) in named.iter().enumerate() {
        let n = first + i;
        let id = p.id.clone().unwrap_or_else(|| format!("T{n:06}"));
        let ok = !id.is_empty()
            && id.len() <= TICKET_ID_LEN_MAX
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            bail!("ticket id {id:?}: 1..={TICKET_ID_LEN_MAX} of A-Z a-z 0-9 - _ .");
        }
        if !seen.insert(id.clone()) {
            bail!("ticket {id} is issued already (or listed twice)");
        }
        plan.push((id, tier_of(&p.tier)?, n, p.attendee.clone()));
    }
    Ok(plan)
}

/// What signs a ticket's code, in each format.
struct CodeSigner<'a> {
    config: &'a EventConfig,
    key_id: &'a str,
    key: &'a SigningKey,
    legacy_secret: Option<&'a [u8]>,
}

impl CodeSigner<'_> {
    fn code(
        &self,
        format: TicketFormat,
        ticket_id: &str,
        tier: &TierConfig,
        n: usize,
    ) -> anyhow::Result<(String, Option<[u8; 32]>)> {
        let config = self.config;
        if format == TicketFormat::Rotating {
            return self.rotating(ticket_id, tier);
        }
        Ok((
            match format {
                TicketFormat::Gm1 => ticket::encode(
                    &TicketPayload {
                        event_id: config.event_id.clone(),
                        ticket_id: ticket_id.to_string(),
                        tier: tier.name.clone(),
                        key_id: self.key_id.to_string(),
                        valid_from_s: config.valid_from_ms / 1000,
                        valid_until_s: config.valid_until_ms.div_ceil(1000),
                    },
                    self.key,
                )?,
                TicketFormat::Legacy => make_legacy_code(
                    ticket_id,
                    &config.legacy.event_id,
                    &format!("G{n:06}"),
                    &random_code(10),
                    crate::now_ms(),
                    self.legacy_secret.unwrap_or_default(),
                ),
                TicketFormat::Manifest => random_code(12),
                TicketFormat::Rotating => unreachable!("made by rotating()"),
            },
            None,
        ))
    }

    /// A rotating ticket: its static part (with a wallet key made for it alone) and that key.
    fn rotating(
        &self,
        ticket_id: &str,
        tier: &TierConfig,
    ) -> anyhow::Result<(String, Option<[u8; 32]>)> {
        use gatemesh_crdt::credential::rotating;
        let holder = SigningKey::generate(&mut OsRng);
        let payload = rotating::RotatingPayload {
            event_id: self.config.event_id.clone(),
            ticket_id: ticket_id.to_string(),
            tier: tier.name.clone(),
            key_id: self.key_id.to_string(),
            valid_from_s: self.config.valid_from_ms / 1000,
            valid_until_s: self.config.valid_until_ms.div_ceil(1000),
            holder: holder.verifying_key().to_bytes(),
        };
        let part = rotating::static_part(&payload, self.key);
        let code = format!(
            "{}{}",
            rotating::STATIC_PREFIX,
            data_encoding::BASE32_NOPAD.encode(&part)
        );
        Ok((code, Some(holder.to_bytes())))
    }
}

fn write_manifest(
    dir: &Path,
    config: &EventConfig,
    tickets: Vec<ManifestTicket>,
    key_id: &str,
    key: &SigningKey,
) -> anyhow::Result<()> {
    let body = ManifestBody {
        event_id: config.event_id.clone(),
        generated_at: crate::now_ms(),
        expires_at: config.valid_until_ms,
        tickets,
    };
    package::write_signed(
        &dir.join(MANIFEST_FILE),
        &package::sign(&body, key_id, key)?,
    )?;
    // What phones carry: no codes, only their hashes (`crdt::event::manifest::phone_manifest`).
    let phone = gatemesh_crdt::event::manifest::phone_manifest(&body);
    package::write_signed(
        &dir.join(package::PHONE_MANIFEST_FILE),
        &package::sign(&phone, key_id, key)?,
    )
}

fn write_codes(out: &Path, issued: &[Issued], qr: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(out.join("qr"))?;
    let csv_path = out.join("codes.csv");
    let new = !csv_path.exists();
    let mut csv = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&csv_path)?,
    );
    if new {
        writeln!(csv, "ticket_id,tier,code,nfc_uid,qr")?;
    }
    for t in issued {
        let png = out.join("qr").join(format!("{}.png", t.ticket_id));
        // A rotating ticket's QR code is its wallet's, live; its static part is no code.
        let qr = qr && t.holder.is_none();
        if qr {
            crate::qr::write_png(&t.code, &png)?;
        }
        let qr_name = match (qr, t.holder.is_some()) {
            (true, _) => format!("qr/{}.png", t.ticket_id),
            (false, true) => format!("wallet/{}.html", t.ticket_id),
            (false, false) => String::new(),
        };
        writeln!(
            csv,
            "{},{},{},{},{}",
            t.ticket_id,
            t.tier,
            csv_field(&t.code),
            t.nfc_uid.as_deref().unwrap_or(""),
            qr_name
        )?;
    }
    csv.flush()?;
    Ok(())
}

/// RFC 4180 quoting (legacy codes are JSON, with commas and quotes).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn random_code(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..len)
        .map(|_| ALPHABET[OsRng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn random_nfc_uid() -> String {
    let mut b = [0u8; 7];
    OsRng.fill_bytes(&mut b);
    b[0] = 0x04; // NXP manufacturer byte, as on most wristbands
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Mark tickets cancelled in the signed manifest.
pub fn tickets_cancel(dir: &Path, ids: &[String]) -> anyhow::Result<()> {
    let package = package::load(dir)?;
    let mut tickets = package
        .manifest
        .as_ref()
        .map(|m| m.tickets().to_vec())
        .context("the event has no manifest yet")?;
    for id in ids {
        let t = tickets
            .iter_mut()
            .find(|t| &t.ticket_id == id)
            .with_context(|| format!("no ticket {id} in the manifest"))?;
        t.status = TicketStatus::Cancelled;
    }
    let (key_id, key) = package::organizer_signing_key(dir, None)?;
    write_manifest(dir, &package.config, tickets, &key_id, &key)?;
    Ok(())
}

pub fn device_enroll(
    dir: &Path,
    name: &str,
    role: Role,
    out: &Path,
) -> anyhow::Result<DeviceCertificate> {
    let package = package::load(dir)?;
    // Short device ids must be unique within the event: draw again on a collision.
    let key = loop {
        let k = SigningKey::generate(&mut OsRng);
        let id = DeviceId::from_public_key(&k.verifying_key()).to_string();
        if !package.certificates.iter().any(|c| c.device_id == id) {
            break k;
        }
    };
    device_enroll_with_key(dir, name, role, out, key)
}

/// List an offline handheld in the event (nodes take its reconciled scans with the staff
/// token). Copy event.json to the devices again afterwards.
pub fn offline_device_enroll(dir: &Path, name: &str) -> anyhow::Result<()> {
    let path = dir.join(EVENT_FILE);
    let mut config: EventConfig = serde_json::from_slice(&std::fs::read(&path)?)?;
    if gatemesh_crdt::gate::offline::check_device_id(Some(name)).ok() != Some(name) {
        bail!("{name:?} is not a valid offline device id (1..=64 bytes, no '@', no spaces around)");
    }
    if !config.offline_devices.iter().any(|d| d == name) {
        config.offline_devices.push(name.to_string());
    }
    config.validate()?;
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}

/// A phone paired by the organizer.
#[derive(Clone, Debug)]
pub struct PairedPhone {
    pub device_id: String,
    pub pass: String,
    /// `<link base>/#pair=<pass>`, when a link base was given.
    pub link: Option<String>,
    /// Where the pass (and the link's QR code) were written.
    pub dir: PathBuf,
}

/// Pair a phone: a pass for `<name>-<4 hex>` signed by the organizer, valid until a day after
/// the event, written (owner-only) to `EVENT/phone-<device id>/pass.txt` with the pairing
/// link's QR code beside it when a link base is given.
pub fn phone_enroll(
    dir: &Path,
    name: &str,
    link_base: Option<&str>,
) -> anyhow::Result<PairedPhone> {
    use gatemesh_crdt::event::pass;
    let package = package::load(dir)?;
    let salt: [u8; 8] = rand::random();
    let device_id = pass::phone_device_id(name, &salt).with_context(|| {
        format!("{name:?} is not a phone name (1..=40 bytes, no spaces, '@' or control characters)")
    })?;
    let (key_id, key) = package::organizer_signing_key(dir, None)?;
    let until_ms = package.config.valid_until_ms + 24 * 3_600_000;
    let issuer = pass::Issuer::Organizer(key_id);
    let (event_id, now) = (&package.config.event_id, crate::now_ms());
    let body = pass::PassBody::new(event_id, &device_id, &issuer, now, until_ms);
    let pass = pass::issue(&body, &key);
    let out = dir.join(format!("phone-{device_id}"));
    std::fs::create_dir_all(&out)?;
    package::write_secret_file(&out.join("pass.txt"), format!("{pass}\n").as_bytes())?;
    let link = link_base.map(|b| format!("{}/#pair={pass}", b.trim_end_matches('/')));
    if let Some(link) = &link {
        crate::qr::write_png(link, &out.join("pairing.png"))?;
    }
    Ok(PairedPhone {
        device_id,
        pass,
        link,
        dir: out,
    })
}

/// [`device_enroll`] with a given device key (the simulator makes its world from a seed).
pub fn device_enroll_with_key(
    dir: &Path,
    name: &str,
    role: Role,
    out: &Path,
    key: SigningKey,
) -> anyhow::Result<DeviceCertificate> {
    let package = package::load(dir)?;
    let short_id = DeviceId::from_public_key(&key.verifying_key()).to_string();
    if package.certificates.iter().any(|c| c.device_id == short_id) {
        bail!("device id {short_id} is enrolled already");
    }
    if name.is_empty() || name.len() > NAME_LEN_MAX {
        bail!("device name must be 1..={} characters", NAME_LEN_MAX);
    }
    if out.join(DEVICE_KEY_FILE).exists() {
        bail!(
            "{} already holds a device key; refusing to overwrite it",
            out.display()
        );
    }
    let (key_id, org_key) = package::organizer_signing_key(dir, None)?;
    let cert = DeviceCertificate {
        event_id: package.config.event_id.clone(),
        device_id: DeviceId::from_public_key(&key.verifying_key()).to_string(),
        public_key: hex::encode(key.verifying_key().as_bytes()),
        name: name.to_string(),
        role,
        valid_from_ms: package.config.valid_from_ms,
        valid_until_ms: package.config.valid_until_ms,
    };
    let signed = package::sign(&cert, &key_id, &org_key)?;
    std::fs::create_dir_all(out)?;
    std::fs::create_dir_all(dir.join(DEVICES_DIR))?;
    package::write_secret_file(
        &out.join(DEVICE_KEY_FILE),
        hex::encode(key.to_bytes()).as_bytes(),
    )?;
    package::write_signed(&out.join(DEVICE_CERT_FILE), &signed)?;
    package::write_signed(
        &dir.join(DEVICES_DIR)
            .join(format!("{}.json", cert.device_id)),
        &signed,
    )?;
    Ok(cert)
}

/// What a bulletin is to say.
#[derive(Clone, Debug, Default)]
pub struct BulletinRequest {
    pub event: PathBuf,
    pub revoke_ticket: Vec<String>,
    /// Device names or ids.
    pub revoke_device: Vec<String>,
    /// `CHAIN:POSITION` of the revoked devices' chains to keep.
    pub keep: Vec<String>,
    /// A store whose records of the revoked devices are kept, as it holds them.
    pub ledger: Option<PathBuf>,
    pub add_device: Vec<String>,
    /// Pause or resume gates, zones or the event.
    pub pauses: Vec<gatemesh_crdt::gate::pause::PauseOrder>,
    /// Entry rule changes, `TIER:FIELD=VALUE` (`max_entries`, `reentry`,
    /// `max_entries_per_day`).
    pub rules: Vec<String>,
    /// Phones to unpair (their device ids, as `device enroll --role offline` or the dashboard
    /// printed them).
    pub unpair: Vec<String>,
}

/// Write the next bulletin of the event; returns its path.
pub fn bulletin(a: &BulletinRequest) -> anyhow::Result<PathBuf> {
    let package = package::load(&a.event)?;
    let (revoke_devices, add_devices) = bulletin_devices(a, &package)?;
    let rules = rule_changes(&package.config, &a.rules)?;
    let nothing = a.revoke_ticket.is_empty() && revoke_devices.is_empty() && rules.is_empty();
    if nothing && add_devices.is_empty() && a.pauses.is_empty() && a.unpair.is_empty() {
        bail!(
            "a bulletin needs at least one --revoke-ticket, --revoke-device, --add-device, \
             --rule, --unpair, --pause-* or --resume-*"
        );
    }
    if let Some(bad) = a
        .unpair
        .iter()
        .find(|d| !gatemesh_crdt::event::offline_device_id_ok(d))
    {
        bail!("--unpair {bad:?} is not a phone's device id");
    }
    check_pauses(&package.config, &a.pauses)?;
    let keys = package.config.organizer_verifying_keys()?;
    let (existing, _) = package::load_bulletins(&a.event, &package.config.event_id, &keys);
    let version = existing
        .iter()
        .map(|b| b.version())
        .max()
        .map_or(1, |v| v + 1);
    let body = BulletinBody {
        event_id: package.config.event_id.clone(),
        version,
        issued_ms: crate::now_ms(),
        revoke_tickets: a.revoke_ticket.clone(),
        revoke_devices,
        add_devices,
        pauses: a.pauses.clone(),
        rules,
        unpair: a.unpair.clone(),
    };
    let (key_id, key) = package::organizer_signing_key(&a.event, None)?;
    std::fs::create_dir_all(a.event.join(package::BULLETINS_DIR))?;
    let signed = package::sign(&body, &key_id, &key)?;
    let bytes = serde_json::to_vec_pretty(&signed)?;
    let made = gatemesh_crdt::gate::bulletin::Bulletin::from_bytes(
        &bytes,
        &package.config.event_id,
        &keys,
    )?;
    let path = a
        .event
        .join(package::BULLETINS_DIR)
        .join(format!("{}.json", made.label()));
    std::fs::write(&path, &bytes)?;
    Ok(path)
}

/// `TIER:FIELD=VALUE` flags as one change per tier (in the order tiers are first named).
/// The tier must be the event's; `max_entries` is 1..=10000, `max_entries_per_day` 0..=10000
/// (0 lifts the daily limit), `reentry` true or false.
pub fn rule_changes(
    config: &EventConfig,
    flags: &[String],
) -> anyhow::Result<Vec<gatemesh_crdt::event::rules::RuleChange>> {
    use gatemesh_crdt::event::rules::RuleChange;
    let mut changes: Vec<RuleChange> = Vec::new();
    for flag in flags {
        // Tier names may hold `:`; fields do not.
        let (tier, setting) = flag
            .rsplit_once(':')
            .with_context(|| format!("--rule {flag}: want TIER:FIELD=VALUE"))?;
        let (field, value) = setting
            .split_once('=')
            .with_context(|| format!("--rule {flag}: want TIER:FIELD=VALUE"))?;
        if config.tier(tier).is_none() {
            bail!("--rule {flag}: no tier {tier} in this event");
        }
        let at = match changes.iter().position(|c| c.tier == tier) {
            Some(i) => i,
            None => {
                changes.push(RuleChange {
                    tier: tier.to_string(),
                    ..RuleChange::default()
                });
                changes.len() - 1
            }
        };
        let c = &mut changes[at];
        let number = || value.parse::<u32>().ok();
        let ok = match field {
            "max_entries" => number().map(|n| c.max_entries = Some(n)),
            "max_entries_per_day" => number().map(|n| c.max_entries_per_day = Some(n)),
            "reentry" => value.parse::<bool>().ok().map(|r| c.reentry = Some(r)),
            _ => bail!("--rule {flag}: the fields are max_entries, reentry, max_entries_per_day"),
        };
        if ok.is_none() || !c.is_valid() {
            bail!("--rule {flag}: {value} is not a {field} (entries 1..=10000, a day 0..=10000, reentry true or false)");
        }
    }
    Ok(changes)
}

/// Pause orders name gates and zones of the event.
fn check_pauses(
    config: &EventConfig,
    pauses: &[gatemesh_crdt::gate::pause::PauseOrder],
) -> anyhow::Result<()> {
    use gatemesh_crdt::gate::pause::Scope;
    for (i, p) in pauses.iter().enumerate() {
        if pauses[..i]
            .iter()
            .any(|q| q.scope == p.scope && q.name == p.name)
        {
            bail!(
                "{:?} {} is named twice (pause and resume at once?)",
                p.scope,
                p.name
            );
        }
        let known = match p.scope {
            Scope::Event => true,
            Scope::Zone => config.zones.contains(&p.name),
            Scope::Gate => config.gate(&p.name).is_some(),
        };
        if !known {
            bail!("no {:?} {} in this event", p.scope, p.name);
        }
    }
    Ok(())
}

/// The devices a bulletin revokes (with the chains kept) and the certificates it adds.
#[allow(clippy::type_complexity)]
fn bulletin_devices(
    a: &BulletinRequest,
    package: &EventPackage,
) -> anyhow::Result<(
    Vec<DeviceRevocation>,
    Vec<gatemesh_crdt::event::signed::Signed>,
)> {
    let find = |who: &str| {
        package
            .certificates
            .iter()
            .find(|c| c.name == who || c.device_id == who)
            .with_context(|| {
                format!(
                    "no enrolled device {who} in {}",
                    a.event.join(DEVICES_DIR).display()
                )
            })
    };
    let held = match &a.ledger {
        Some(dir) => ledger_tips(&a.event, dir)?,
        None => Vec::new(),
    };
    let revoke_devices = a
        .revoke_device
        .iter()
        .map(|d| {
            let device_id = find(d)?.device_id.clone();
            Ok(DeviceRevocation {
                keep: kept_chains(&device_id, &a.keep, &held)?,
                device_id,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let add_devices = a
        .add_device
        .iter()
        .map(|d| {
            let cert = find(d)?;
            let path = a
                .event
                .join(DEVICES_DIR)
                .join(format!("{}.json", cert.device_id));
            Ok(serde_json::from_slice(&std::fs::read(&path)?)?)
        })
        .collect::<anyhow::Result<Vec<gatemesh_crdt::event::signed::Signed>>>()?;
    Ok((revoke_devices, add_devices))
}

/// The chains of a revoked device to keep: `--keep CHAIN:POSITION` for this device's chains
/// (a chain id names one device's chain only if that device wrote it, so `--keep` given with
/// several devices applies to each), else what `--ledger` holds of it.
fn kept_chains(
    device_id: &str,
    keep: &[String],
    held: &[(String, String, u32)],
) -> anyhow::Result<Vec<KeptChain>> {
    let mut out = Vec::new();
    for k in keep {
        let (chain, through) = k
            .split_once(':')
            .with_context(|| format!("--keep {k:?}: expected CHAIN:POSITION"))?;
        if DeviceId::parse(chain).is_none() {
            bail!("--keep {k:?}: the chain is 8 hex digits");
        }
        let through: u32 = through
            .parse()
            .with_context(|| format!("--keep {k:?}: the position is a number"))?;
        out.push(KeptChain {
            chain: chain.to_string(),
            through,
        });
    }
    out.extend(
        held.iter()
            .filter(|(d, _, _)| d == device_id)
            .map(|(_, chain, through)| KeptChain {
                chain: chain.clone(),
                through: *through,
            }),
    );
    Ok(out)
}

/// (device, chain, position) of every chain a store holds.
fn ledger_tips(event: &Path, data: &Path) -> anyhow::Result<Vec<(String, String, u32)>> {
    let dev = crate::device::open(event, None, data, None)?;
    Ok(dev
        .gate
        .ledger()
        .summary()
        .iter()
        .map(|t| (t.chain.device.to_string(), t.chain.chain.to_string(), t.seq))
        .collect())
}
