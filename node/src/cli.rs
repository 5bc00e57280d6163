//! The `gatemesh` command line: the organizer's commands (event, tickets, devices) and the
//! steward's scan loop. `main` only parses and calls [`run`].

use crate::credential::{make_legacy_code, LegacySecret, LEGACY_EXPIRY_HOURS_DEFAULT};
use crate::device::{DeviceCertificate, DeviceIdentity, Role, DEVICE_CERT_FILE, DEVICE_KEY_FILE};
use crate::event::{
    self, EventConfig, EventPackage, OrganizerKey, OrganizerSecret, DEVICES_DIR, EVENT_FILE,
    MANIFEST_FILE, ORGANIZER_KEYS_FILE,
};
use crate::gate::{GateLogic, ScanRequest};
use crate::manifest::{ManifestBody, ManifestTicket, TicketStatus};
use crate::signed::Signed;
use crate::store::Store;
use crate::ticket::{self, TicketPayload};
use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use ed25519_dalek::SigningKey;
use gatemesh_crdt::{DeviceId, Direction};
use rand::{rngs::OsRng, Rng, RngCore};
use std::collections::HashSet;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

/// Most tickets one `tickets issue` makes.
pub const ISSUE_COUNT_MAX: u32 = 1_000_000;
/// Longest line `gatemesh scan` reads from standard input.
pub const SCAN_LINE_BYTES_MAX: usize = crate::credential::CODE_BYTES_MAX + 2;

#[derive(Parser, Debug)]
#[command(
    name = "gatemesh",
    version,
    about = "Ticket scanners that agree on who came in, with no server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or change an event package (organizer).
    #[command(subcommand)]
    Event(EventCmd),
    /// Issue or cancel tickets (organizer).
    #[command(subcommand)]
    Tickets(TicketsCmd),
    /// Enroll a scanner device (organizer).
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Scan codes on this device: from arguments, or one per line on standard input.
    Scan(ScanArgs),
    /// Show what a device's ledger holds: totals, one ticket, or the double entries.
    Ledger(LedgerArgs),
    /// Run this device as a mesh node.
    #[command(subcommand)]
    Node(NodeCmd),
    /// A small mesh on this machine: event, tickets, scans with shared screenshots, a network
    /// split and heal, and a summary. The first thing to run.
    Demo {
        /// Nodes in the mesh (2..=8).
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Directory for the event and the nodes' stores (default: a new one under the
        /// system's temporary directory); must be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Fewer tickets, no QR images (the test suite runs this).
        #[arg(long)]
        short: bool,
        /// Stop after the summary instead of keeping the mesh and its dashboard up until Ctrl-C.
        #[arg(long)]
        no_wait: bool,
        /// Address of the first node's HTTP API (the dashboard); the others take free ports.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: std::net::SocketAddr,
    },
    /// Write this node's full ledger and the event's identity to one file (for `bridge import`).
    Export {
        /// The event package directory.
        #[arg(long)]
        event: PathBuf,
        /// The node's store.
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Merge the mesh into PostgreSQL for HQ.
    #[command(subcommand)]
    Bridge(BridgeCmd),
    /// Make an organizer-signed bulletin (revoke tickets or devices, add devices) in
    /// EVENT/bulletins/; give it to any node (`!bulletin FILE`) and the mesh spreads it.
    Bulletin(BulletinArgs),
}

#[derive(clap::Args, Debug)]
pub struct BulletinArgs {
    #[arg(long)]
    pub event: PathBuf,
    /// Ticket id to revoke; repeatable.
    #[arg(long)]
    pub revoke_ticket: Vec<String>,
    /// Device name or id to revoke; repeatable. What it wrote up to the positions `--keep`
    /// names (or that `--ledger` holds) still counts; everything else of it is ignored.
    #[arg(long)]
    pub revoke_device: Vec<String>,
    /// A revoked device's chain to keep, `CHAIN:POSITION` as `!status` and `/api/status` show
    /// them under `chains`; repeatable.
    #[arg(long)]
    pub keep: Vec<String>,
    /// A store (of a stopped node, or the bridge's) whose records of the revoked devices are
    /// kept, as it holds them now.
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Name of a device enrolled since the devices went out, to add; repeatable.
    #[arg(long)]
    pub add_device: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Join the mesh and scan codes typed on standard input; decisions and mesh events are
    /// printed as JSON lines.
    Run(NodeRunArgs),
}

/// Where a scanning device's files are and where it stands.
#[derive(clap::Args, Debug)]
pub struct DeviceArgs {
    /// The event package directory.
    #[arg(long)]
    pub event: PathBuf,
    /// This device's directory (key and certificate).
    #[arg(long)]
    pub device: PathBuf,
    /// This device's store.
    #[arg(long)]
    pub data: PathBuf,
    /// The gate this device stands at.
    #[arg(long)]
    pub gate: String,
    /// Override the gate's direction.
    #[arg(long, value_enum)]
    pub direction: Option<DirectionArg>,
    /// File holding the legacy HMAC secret (else QR_SIGNATURE_SECRET).
    #[arg(long)]
    pub hmac_secret_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct NodeRunArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// QUIC listen address (default /ip4/0.0.0.0/udp/0/quic-v1).
    #[arg(long)]
    pub listen: Vec<String>,
    /// A peer to dial, e.g. /ip4/10.0.0.2/udp/4001/quic-v1/p2p/<peer-id>; repeatable.
    #[arg(long)]
    pub peer: Vec<String>,
    /// Do not announce or browse with mDNS (static --peer only).
    #[arg(long)]
    pub no_mdns: bool,
    /// Serve the HTTP API on this address, e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub http: Option<std::net::SocketAddr>,
    /// Token for scanning and reading (default: generated and printed).
    #[arg(long)]
    pub staff_token: Option<String>,
    /// Token for bulletins (default: generated and printed).
    #[arg(long)]
    pub admin_token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum BridgeCmd {
    /// Merge an export file (`gatemesh export`); records that do not verify are refused and
    /// counted; merging the same file twice adds nothing.
    Import {
        #[arg(long)]
        event: PathBuf,
        #[arg(long)]
        file: PathBuf,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Join the mesh as an enrolled read-only member (an observer device) and keep PostgreSQL
    /// current as scans happen; survives database restarts and network splits.
    Run {
        #[arg(long)]
        event: PathBuf,
        /// The observer device (`gatemesh device enroll --role observer`).
        #[arg(long)]
        device: PathBuf,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// The bridge's own store (default: DEVICE/bridge-data).
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long)]
        listen: Vec<String>,
        #[arg(long)]
        peer: Vec<String>,
        #[arg(long)]
        no_mdns: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum EventCmd {
    /// Make a new event directory: event.json (public) and organizer-keys.json (secret).
    Create {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        name: String,
        /// Event id (default: derived from the name and a random suffix).
        #[arg(long)]
        id: Option<String>,
        /// Start of validity, RFC 3339 (default: now).
        #[arg(long)]
        valid_from: Option<String>,
        /// End of validity, RFC 3339 (default: 7 days after the start).
        #[arg(long)]
        valid_until: Option<String>,
    },
    /// Add a new organizer key; tickets signed by the older keys stay valid (rotation).
    AddKey {
        #[arg(long)]
        event: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum TicketFormat {
    /// Signed GM1 codes (default).
    Gm1,
    /// Legacy HMAC JSON codes (needs the HMAC secret).
    Legacy,
    /// Opaque barcode codes looked up in the manifest.
    Manifest,
}

#[derive(Subcommand, Debug)]
pub enum TicketsCmd {
    /// Sign tickets; writes codes.csv, QR images and the signed manifest.
    Issue {
        #[arg(long)]
        event: PathBuf,
        #[arg(long, default_value_t = 10)]
        count: u32,
        #[arg(long, default_value = "general")]
        tier: String,
        #[arg(long, value_enum, default_value_t = TicketFormat::Gm1)]
        format: TicketFormat,
        /// Where codes.csv and qr/ go (default: EVENT/tickets).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Organizer key to sign with (default: the newest).
        #[arg(long)]
        key_id: Option<String>,
        /// Also give each manifest ticket an NFC wristband UID.
        #[arg(long)]
        nfc: bool,
        /// Do not write QR images.
        #[arg(long)]
        no_qr: bool,
        /// File holding the legacy HMAC secret (else QR_SIGNATURE_SECRET).
        #[arg(long)]
        hmac_secret_file: Option<PathBuf>,
        /// Take the tickets from HQ's PostgreSQL database (with --query) instead of --count.
        #[arg(long, requires = "query")]
        from_postgres: Option<String>,
        /// SQL returning the ticket id first and, optionally, the tier second (read-only).
        #[arg(long, requires = "from_postgres")]
        query: Option<String>,
    },
    /// Mark tickets cancelled in the signed manifest; scanners deny them as `revoked`.
    Cancel {
        #[arg(long)]
        event: PathBuf,
        tickets: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeviceCmd {
    /// Make a device key and an organizer-signed certificate.
    Enroll {
        #[arg(long)]
        event: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value_t = RoleArg::Scanner)]
        role: RoleArg,
        /// Device directory to create (default: EVENT/device-NAME).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    Scanner,
    Observer,
    /// A handheld that is not a mesh node: listed in event.json so nodes take its offline
    /// scans (`POST /offline/reconcile`) with the staff token; it gets no key.
    Offline,
}

#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Codes to scan; none: read them from standard input, one per line.
    pub codes: Vec<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DirectionArg {
    In,
    Out,
}

impl DirectionArg {
    pub fn direction(self) -> Direction {
        match self {
            DirectionArg::In => Direction::In,
            DirectionArg::Out => Direction::Out,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct LedgerArgs {
    #[arg(long)]
    pub event: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    /// Show one ticket's records.
    #[arg(long)]
    pub ticket: Option<String>,
    /// List double entries.
    #[arg(long)]
    pub conflicts: bool,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Event(EventCmd::Create {
            out,
            name,
            id,
            valid_from,
            valid_until,
        }) => event_create(&out, &name, id, valid_from, valid_until),
        Command::Event(EventCmd::AddKey { event }) => event_add_key(&event),
        Command::Tickets(TicketsCmd::Issue {
            event,
            count,
            tier,
            format,
            out,
            key_id,
            nfc,
            no_qr,
            hmac_secret_file,
            from_postgres,
            query,
        }) => {
            let named = match (from_postgres, query) {
                (Some(url), Some(query)) => Some(
                    runtime()?
                        .block_on(gatemesh_cloud_bridge::fetch_tickets(&url, &query, &tier))?
                        .into_iter()
                        .map(|t| (t.ticket_id, t.tier))
                        .collect(),
                ),
                _ => None,
            };
            let opts = IssueOptions {
                count,
                tier,
                format,
                key_id,
                nfc,
                qr: !no_qr,
                hmac_secret_file,
                named,
            };
            let out = out.unwrap_or_else(|| event.join("tickets"));
            tickets_issue(&event, &out, &opts).map(|_| ())
        }
        Command::Tickets(TicketsCmd::Cancel { event, tickets }) => tickets_cancel(&event, &tickets),
        Command::Device(DeviceCmd::Enroll {
            event,
            name,
            role,
            out,
        }) => {
            let out = out.unwrap_or_else(|| event.join(format!("device-{name}")));
            let role = match role {
                RoleArg::Scanner => Role::Scanner,
                RoleArg::Observer => Role::Observer,
                RoleArg::Offline => return offline_device_enroll(&event, &name),
            };
            device_enroll(&event, &name, role, &out).map(|_| ())
        }
        Command::Scan(args) => scan(args),
        Command::Demo {
            nodes,
            dir,
            short,
            no_wait,
            http,
        } => {
            let dir = dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!(
                    "gatemesh-demo-{}-{}",
                    std::process::id(),
                    crate::now_ms()
                ))
            });
            crate::demo::run(&crate::demo::DemoOptions {
                nodes,
                dir,
                short,
                wait: !no_wait,
                http,
            })
        }
        Command::Bulletin(args) => {
            bulletin(&args).map(|p| println!("bulletin written to {}", p.display()))
        }
        Command::Node(NodeCmd::Run(a)) => {
            let parse = |v: &[String]| {
                v.iter()
                    .map(|s| {
                        s.parse()
                            .with_context(|| format!("{s:?} is not a multiaddr"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            };
            let d = a.device;
            let opts = crate::mesh::NodeOptions {
                event: d.event,
                device: d.device,
                data: d.data,
                gate: d.gate,
                direction: d.direction.map(DirectionArg::direction),
                listen: parse(&a.listen)?,
                peers: parse(&a.peer)?,
                mdns: !a.no_mdns,
                hmac_secret_file: d.hmac_secret_file,
                http: a.http,
                staff_token: a.staff_token,
                admin_token: a.admin_token,
                read_stdin: true,
                journal: false,
            };
            runtime()?.block_on(crate::mesh::run(opts))
        }
        Command::Ledger(args) => ledger(args),
        Command::Export { event, data, out } => {
            let v = crate::bridge::export(&event, &data, &out)?;
            println!("{v}");
            Ok(())
        }
        Command::Bridge(BridgeCmd::Import {
            event,
            file,
            database_url,
        }) => {
            let v = runtime()?.block_on(crate::bridge::import(&event, &file, &database_url))?;
            println!("{v}");
            Ok(())
        }
        Command::Bridge(BridgeCmd::Run {
            event,
            device,
            database_url,
            data,
            listen,
            peer,
            no_mdns,
        }) => {
            let data = data.unwrap_or_else(|| device.join("bridge-data"));
            let gate = EventPackage::load(&event)?
                .config
                .gates
                .first()
                .map(|g| g.name.clone())
                .unwrap_or_default();
            let opts = crate::mesh::NodeOptions {
                event,
                device,
                data,
                gate,
                direction: None,
                listen: parse_addrs(&listen)?,
                peers: parse_addrs(&peer)?,
                mdns: !no_mdns,
                hmac_secret_file: None,
                http: None,
                staff_token: None,
                admin_token: None,
                read_stdin: false,
                journal: true,
            };
            runtime()?.block_on(crate::bridge::run(opts, &database_url))
        }
    }
}

/// The runtime of the long-running commands: two workers (the machines have two cores).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn parse_addrs(v: &[String]) -> anyhow::Result<Vec<gatemesh_transport::libp2p::Multiaddr>> {
    v.iter()
        .map(|s| {
            s.parse()
                .with_context(|| format!("{s:?} is not a multiaddr"))
        })
        .collect()
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
) -> anyhow::Result<()> {
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
) -> anyhow::Result<()> {
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
    event::write_secret_file(
        &out.join(ORGANIZER_KEYS_FILE),
        &serde_json::to_vec_pretty(&secrets)?,
    )?;
    std::fs::write(out.join(EVENT_FILE), serde_json::to_vec_pretty(&config)?)?;
    println!("event {id} created in {}", out.display());
    println!(
        "  public:  {} (copy to every device, with {DEVICES_DIR}/ and {MANIFEST_FILE})",
        out.join(EVENT_FILE).display()
    );
    println!(
        "  secret:  {} (keep it on the organizer's machine)",
        out.join(ORGANIZER_KEYS_FILE).display()
    );
    Ok(())
}

fn event_add_key(dir: &Path) -> anyhow::Result<()> {
    let mut config: EventConfig = serde_json::from_slice(&std::fs::read(dir.join(EVENT_FILE))?)?;
    let mut secrets = event::load_organizer_secrets(dir)?;
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
    event::write_secret_file(
        &dir.join(ORGANIZER_KEYS_FILE),
        &serde_json::to_vec_pretty(&secrets)?,
    )?;
    std::fs::write(dir.join(EVENT_FILE), serde_json::to_vec_pretty(&config)?)?;
    println!("organizer key {key_id} added; earlier keys stay valid");
    Ok(())
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
    /// Issue these tickets (id, tier) instead of `count` new numbered ones of `tier`.
    pub named: Option<Vec<(String, String)>>,
}

/// Longest ticket id taken from outside (it names a QR file).
pub const TICKET_ID_LEN_MAX: usize = 64;

/// One issued ticket, as written to codes.csv.
#[derive(Clone, Debug)]
pub struct Issued {
    pub ticket_id: String,
    pub tier: String,
    pub code: String,
    pub nfc_uid: Option<String>,
}

pub fn tickets_issue(dir: &Path, out: &Path, o: &IssueOptions) -> anyhow::Result<Vec<Issued>> {
    let package = EventPackage::load(dir)?;
    let config = &package.config;
    let tier_of = |name: &str| {
        config
            .tier(name)
            .with_context(|| format!("no tier {name} in this event"))
    };
    let wanted = o.named.as_ref().map_or(o.count as usize, Vec::len);
    if wanted == 0 || wanted > ISSUE_COUNT_MAX as usize {
        bail!("tickets to issue must be 1..={ISSUE_COUNT_MAX}, not {wanted}");
    }
    let (key_id, key) = event::organizer_signing_key(dir, o.key_id.as_deref())?;
    let mut tickets = package
        .manifest
        .as_ref()
        .map(|m| m.tickets().to_vec())
        .unwrap_or_default();
    let first = tickets.len() + 1;
    let plan: Vec<(String, &crate::event::TierConfig, usize)> = match &o.named {
        None => {
            let tier = tier_of(&o.tier)?;
            (first..first + o.count as usize)
                .map(|n| (format!("T{n:06}"), tier, n))
                .collect()
        }
        Some(named) => {
            let mut seen: HashSet<&str> = tickets.iter().map(|t| t.ticket_id.as_str()).collect();
            let mut plan = Vec::with_capacity(named.len());
            for (i, (id, tier)) in named.iter().enumerate() {
                let ok = !id.is_empty()
                    && id.len() <= TICKET_ID_LEN_MAX
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if !ok {
                    bail!("ticket id {id:?}: 1..={TICKET_ID_LEN_MAX} of A-Z a-z 0-9 - _ .");
                }
                if !seen.insert(id) {
                    bail!("ticket {id} is issued already (or listed twice)");
                }
                plan.push((id.clone(), tier_of(tier)?, first + i));
            }
            plan
        }
    };
    let legacy_secret = if o.format == TicketFormat::Legacy {
        Some(
            legacy_secret(o.hmac_secret_file.as_deref())?
                .context("legacy tickets need QR_SIGNATURE_SECRET or --hmac-secret-file")?,
        )
    } else {
        None
    };
    let mut issued = Vec::with_capacity(plan.len());
    for (ticket_id, tier, n) in plan {
        let code = match o.format {
            TicketFormat::Gm1 => ticket::encode(
                &TicketPayload {
                    event_id: config.event_id.clone(),
                    ticket_id: ticket_id.clone(),
                    tier: tier.name.clone(),
                    key_id: key_id.clone(),
                    valid_from_s: config.valid_from_ms / 1000,
                    valid_until_s: config.valid_until_ms.div_ceil(1000),
                },
                &key,
            )?,
            TicketFormat::Legacy => {
                let secret = legacy_secret
                    .as_ref()
                    .map(|s| s.secret.as_slice())
                    .unwrap_or_default();
                make_legacy_code(
                    &ticket_id,
                    &config.legacy.event_id,
                    &format!("G{n:06}"),
                    &random_code(10),
                    crate::now_ms(),
                    secret,
                )
            }
            TicketFormat::Manifest => random_code(12),
        };
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
        });
        issued.push(Issued {
            ticket_id,
            tier: tier.name.clone(),
            code,
            nfc_uid,
        });
    }
    write_manifest(dir, config, tickets, &key_id, &key)?;
    write_codes(out, &issued, o.qr)?;
    println!(
        "{} tickets issued ({:?}); codes in {}",
        issued.len(),
        o.format,
        out.join("codes.csv").display()
    );
    Ok(issued)
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
    event::write_signed(&dir.join(MANIFEST_FILE), &Signed::sign(&body, key_id, key)?)
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
        if qr {
            crate::qr::write_png(&t.code, &png)?;
        }
        let qr_name = if qr {
            format!("qr/{}.png", t.ticket_id)
        } else {
            String::new()
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

fn tickets_cancel(dir: &Path, ids: &[String]) -> anyhow::Result<()> {
    let package = EventPackage::load(dir)?;
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
    let (key_id, key) = event::organizer_signing_key(dir, None)?;
    write_manifest(dir, &package.config, tickets, &key_id, &key)?;
    println!(
        "{} tickets cancelled; copy {MANIFEST_FILE} to the devices",
        ids.len()
    );
    Ok(())
}

pub fn device_enroll(
    dir: &Path,
    name: &str,
    role: Role,
    out: &Path,
) -> anyhow::Result<DeviceCertificate> {
    let package = EventPackage::load(dir)?;
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
    if crate::offline::check_device_id(Some(name)).ok() != Some(name) {
        bail!("{name:?} is not a valid offline device id (1..=64 bytes, no '@', no spaces around)");
    }
    if !config.offline_devices.iter().any(|d| d == name) {
        config.offline_devices.push(name.to_string());
    }
    config.validate()?;
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    println!(
        "offline device {name} listed in {}; copy it to the devices",
        path.display()
    );
    Ok(())
}

/// [`device_enroll`] with a given device key (the simulator makes its world from a seed).
pub fn device_enroll_with_key(
    dir: &Path,
    name: &str,
    role: Role,
    out: &Path,
    key: SigningKey,
) -> anyhow::Result<DeviceCertificate> {
    let package = EventPackage::load(dir)?;
    let short_id = DeviceId::from_public_key(&key.verifying_key()).to_string();
    if package.certificates.iter().any(|c| c.device_id == short_id) {
        bail!("device id {short_id} is enrolled already");
    }
    if name.is_empty() || name.len() > event::NAME_LEN_MAX {
        bail!("device name must be 1..={} characters", event::NAME_LEN_MAX);
    }
    if out.join(DEVICE_KEY_FILE).exists() {
        bail!(
            "{} already holds a device key; refusing to overwrite it",
            out.display()
        );
    }
    let (key_id, org_key) = event::organizer_signing_key(dir, None)?;
    let cert = DeviceCertificate {
        event_id: package.config.event_id.clone(),
        device_id: DeviceId::from_public_key(&key.verifying_key()).to_string(),
        public_key: hex::encode(key.verifying_key().as_bytes()),
        name: name.to_string(),
        role,
        valid_from_ms: package.config.valid_from_ms,
        valid_until_ms: package.config.valid_until_ms,
    };
    let signed = Signed::sign(&cert, &key_id, &org_key)?;
    std::fs::create_dir_all(out)?;
    std::fs::create_dir_all(dir.join(DEVICES_DIR))?;
    event::write_secret_file(
        &out.join(DEVICE_KEY_FILE),
        hex::encode(key.to_bytes()).as_bytes(),
    )?;
    event::write_signed(&out.join(DEVICE_CERT_FILE), &signed)?;
    event::write_signed(
        &dir.join(DEVICES_DIR)
            .join(format!("{}.json", cert.device_id)),
        &signed,
    )?;
    println!(
        "device {name} ({}) enrolled as {:?} in {}",
        cert.device_id,
        role,
        out.display()
    );
    Ok(cert)
}

/// The legacy HMAC secret: `--hmac-secret-file`, else `QR_SIGNATURE_SECRET`; `QR_EXPIRY_HOURS`.
pub fn legacy_secret(file: Option<&Path>) -> anyhow::Result<Option<LegacySecret>> {
    let secret = match file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", f.display()))?
                .trim_end()
                .as_bytes()
                .to_vec(),
        ),
        None => std::env::var("QR_SIGNATURE_SECRET")
            .ok()
            .map(String::into_bytes),
    };
    let hours = match std::env::var("QR_EXPIRY_HOURS") {
        Ok(h) => h
            .parse::<u64>()
            .with_context(|| format!("QR_EXPIRY_HOURS={h:?} is not a whole number of hours"))?,
        Err(_) => LEGACY_EXPIRY_HOURS_DEFAULT,
    };
    Ok(secret.filter(|s| !s.is_empty()).map(|secret| LegacySecret {
        secret,
        expiry_ms: hours * 3600 * 1000,
    }))
}

/// A device's gate logic and store, opened from its directories.
pub struct OpenDevice {
    pub gate: GateLogic,
    pub store: Store,
    pub identity: Option<DeviceIdentity>,
    pub certificates: Vec<DeviceCertificate>,
    /// Stored changes the ledger refused on opening (a damaged store, or records of devices
    /// revoked since).
    pub refused_at_open: u64,
}

impl std::fmt::Debug for OpenDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenDevice")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

pub fn open_device(
    event_dir: &Path,
    device_dir: Option<&Path>,
    data: &Path,
    hmac_file: Option<&Path>,
) -> anyhow::Result<OpenDevice> {
    let package = EventPackage::load(event_dir)?;
    let keys = package.config.organizer_verifying_keys()?;
    let device = device_dir
        .map(|d| DeviceIdentity::load(d, &package.config.event_id, &keys))
        .transpose()?;
    let store = Store::open(data).with_context(|| format!("opening store {}", data.display()))?;
    let forks = store.forks()?;
    let changes: Vec<sled::IVec> = store.changes().collect::<Result<_, _>>()?;
    let (ledger, refused) = GateLogic::open_ledger(
        &package,
        device.as_ref(),
        store.chain(),
        &forks,
        changes.iter().map(|c| c.as_ref()),
    )?;
    drop(changes);
    let gate = GateLogic::new(&package, ledger, legacy_secret(hmac_file)?)?;
    Ok(OpenDevice {
        gate,
        store,
        identity: device,
        certificates: package.certificates,
        refused_at_open: refused,
    })
}

fn scan(args: ScanArgs) -> anyhow::Result<()> {
    let d = &args.device;
    let mut dev = open_device(
        &d.event,
        Some(&d.device),
        &d.data,
        d.hmac_secret_file.as_deref(),
    )?;
    let direction = d.direction.map(DirectionArg::direction);
    let stdout = std::io::stdout();
    let scan_one = |code: &[u8], dev: &mut OpenDevice| -> anyhow::Result<()> {
        let outcome = dev.gate.scan(
            crate::now_ms(),
            ScanRequest {
                code,
                gate: &d.gate,
                direction,
            },
        )?;
        if let Some(change) = outcome.change {
            dev.store.append(&[change])?; // durable before the answer is shown
        }
        let mut out = stdout.lock();
        serde_json::to_writer(&mut out, &outcome.decision)?;
        writeln!(out)?;
        out.flush()?;
        Ok(())
    };
    if !args.codes.is_empty() {
        for c in &args.codes {
            scan_one(c.as_bytes(), &mut dev)?;
        }
        return Ok(());
    }
    let mut input = std::io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut input)
            .take(SCAN_LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') && n > SCAN_LINE_BYTES_MAX {
            // Over-long line: scan what we have (it is `malformed`), drop the rest of the line.
            let mut rest = Vec::new();
            input.read_until(b'\n', &mut rest)?;
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if !line.is_empty() {
            scan_one(&line, &mut dev)?;
        }
    }
    Ok(())
}

fn ledger(args: LedgerArgs) -> anyhow::Result<()> {
    let dev = open_device(&args.event, None, &args.data, None)?;
    let index = dev.gate.ledger().index();
    let value = if let Some(t) = &args.ticket {
        serde_json::json!({ "ticket": t, "records": index.records(t) })
    } else if args.conflicts {
        serde_json::json!({ "conflicts": index.conflicts() })
    } else {
        let (mut admits, mut denials) = (0u64, 0u64);
        index.for_each_record(|r| match r.verdict {
            gatemesh_crdt::Verdict::Admit => admits += 1,
            gatemesh_crdt::Verdict::Deny => denials += 1,
            gatemesh_crdt::Verdict::Annul => {}
        });
        serde_json::json!({
            "records": index.len(),
            "tickets": index.ticket_count(),
            "admits": admits,
            "denials": denials,
            "double_entries": index.conflict_count(),
            "heads": dev.gate.ledger().heads().iter().map(hex::encode).collect::<Vec<_>>(),
            "chains": chains_json(dev.gate.ledger(), &dev.certificates),
        })
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// Every chain of a ledger: device, its name, chain id, position of the tip, tip hash.
pub fn chains_json(
    ledger: &gatemesh_crdt::Ledger,
    certs: &[DeviceCertificate],
) -> serde_json::Value {
    let name = |d: &str| {
        certs
            .iter()
            .find(|c| c.device_id == d)
            .map(|c| c.name.clone())
            .unwrap_or_default()
    };
    ledger
        .summary()
        .iter()
        .map(|t| {
            serde_json::json!({
                "device": t.chain.device.to_string(),
                "name": name(&t.chain.device.to_string()),
                "chain": t.chain.chain.to_string(),
                "position": t.seq,
                "tip": hex::encode(t.hash),
            })
        })
        .collect()
}

/// Write the next bulletin of the event; returns its path.
pub fn bulletin(a: &BulletinArgs) -> anyhow::Result<PathBuf> {
    use crate::bulletin::{load_dir, BulletinBody, DeviceRevocation, BULLETINS_DIR};
    let package = EventPackage::load(&a.event)?;
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
        .collect::<anyhow::Result<Vec<Signed>>>()?;
    if a.revoke_ticket.is_empty() && revoke_devices.is_empty() && add_devices.is_empty() {
        bail!("a bulletin needs at least one --revoke-ticket, --revoke-device or --add-device");
    }
    let keys = package.config.organizer_verifying_keys()?;
    let (existing, _) = load_dir(&a.event, &package.config.event_id, &keys);
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
    };
    let (key_id, key) = event::organizer_signing_key(&a.event, None)?;
    std::fs::create_dir_all(a.event.join(BULLETINS_DIR))?;
    let signed = Signed::sign(&body, &key_id, &key)?;
    let bytes = serde_json::to_vec_pretty(&signed)?;
    let made = crate::bulletin::Bulletin::from_bytes(&bytes, &package.config.event_id, &keys)?;
    let path = a
        .event
        .join(BULLETINS_DIR)
        .join(format!("{}.json", made.label()));
    std::fs::write(&path, &bytes)?;
    Ok(path)
}

/// The chains of a revoked device to keep: `--keep CHAIN:POSITION` for this device's chains
/// (a chain id names one device's chain only if that device wrote it, so `--keep` given with
/// several devices applies to each), else what `--ledger` holds of it.
fn kept_chains(
    device_id: &str,
    keep: &[String],
    held: &[(String, String, u32)],
) -> anyhow::Result<Vec<crate::bulletin::KeptChain>> {
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
        out.push(crate::bulletin::KeptChain {
            chain: chain.to_string(),
            through,
        });
    }
    out.extend(
        held.iter()
            .filter(|(d, _, _)| d == device_id)
            .map(|(_, chain, through)| crate::bulletin::KeptChain {
                chain: chain.clone(),
                through: *through,
            }),
    );
    if out.is_empty() {
        eprintln!(
            "warning: nothing of device {device_id} is kept (no --keep or --ledger): every \
             record it wrote is ignored, admits from before the theft included"
        );
    }
    Ok(out)
}

/// (device, chain, position) of every chain a store holds.
fn ledger_tips(event: &Path, data: &Path) -> anyhow::Result<Vec<(String, String, u32)>> {
    let dev = open_device(event, None, data, None)?;
    Ok(dev
        .gate
        .ledger()
        .summary()
        .iter()
        .map(|t| (t.chain.device.to_string(), t.chain.chain.to_string(), t.seq))
        .collect())
}
