//! The `gatemesh` command line: clap types, dispatch to the library, and printing. The work is
//! done by `gatemesh_node` (the organizer's functions, the device, the node, the bridge); this
//! module only turns arguments into calls and results into lines.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use gatemesh_crdt::event::certificate::Role;
use gatemesh_crdt::gate::pause::{PauseOrder, Scope};
use gatemesh_crdt::protocol::replica::ReplicaConfig;
use gatemesh_crdt::protocol::{Input, Output, Reply};
use gatemesh_crdt::Direction;
use gatemesh_node::guestlist;
use gatemesh_node::organizer::{self, BulletinRequest, IssueOptions, Planned};
use std::path::{Path, PathBuf};

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
    /// Pause a gate: every scan there is denied `paused` until resumed; repeatable.
    #[arg(long)]
    pub pause_gate: Vec<String>,
    /// Pause every gate of a zone; repeatable.
    #[arg(long)]
    pub pause_zone: Vec<String>,
    /// Pause the whole event (every gate).
    #[arg(long)]
    pub pause_event: bool,
    #[arg(long)]
    pub resume_gate: Vec<String>,
    #[arg(long)]
    pub resume_zone: Vec<String>,
    #[arg(long)]
    pub resume_event: bool,
    /// Change a tier's entry rule for every node, `TIER:FIELD=VALUE` with FIELD `max_entries`,
    /// `reentry` or `max_entries_per_day` (0 lifts the daily limit); repeatable. Every ticket of
    /// the tier is judged again under the new rule.
    #[arg(long)]
    pub rule: Vec<String>,
    /// Unpair a phone (its device id, e.g. `phone-7-3fa2`): every node refuses its pass and
    /// its reconciles from then on; repeatable.
    #[arg(long)]
    pub unpair: Vec<String>,
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
    /// Serve the same over HTTPS on this address, e.g. 0.0.0.0:8443 (what phones need for the
    /// camera and an installable page), with the certificate `device enroll` issued.
    #[arg(long)]
    pub https: Option<std::net::SocketAddr>,
    /// A certificate chain (PEM) to serve instead, e.g. one the organizer's own CA issued.
    #[arg(long, requires = "https", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Token for scanning and reading (default: generated once, kept in the data directory's
    /// tokens.json).
    #[arg(long)]
    pub staff_token: Option<String>,
    /// Token for bulletins (default: generated once, kept in tokens.json beside the staff one).
    #[arg(long)]
    pub admin_token: Option<String>,
    /// After a start, how long answers say "catching up" (`synced: false`) at most, unless the
    /// node finished a sync with every peer it reaches first.
    #[arg(long, default_value_t = gatemesh_crdt::ledger::catchup::CATCH_UP_MAX_MS)]
    pub catch_up_ms: u64,
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
    /// Make a zone's capacity strict: never over it, even across a split. Its room is shared
    /// among the named scanners at the start (default: every scanner enrolled); the others get
    /// room as they need it. Before the devices go out (it changes event.json).
    Strict {
        #[arg(long)]
        event: PathBuf,
        #[arg(long)]
        zone: String,
        #[arg(long)]
        capacity: u64,
        /// A scanner (name) holding room at the start; repeatable.
        #[arg(long)]
        holder: Vec<String>,
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
    /// Rotating live codes (GM2): one wallet page per ticket (tickets/wallet/ID.html) whose QR
    /// code changes every 15 s.
    Rotating,
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
        /// The same as `--format rotating`: live codes a screenshot cannot pass, each ticket's
        /// wallet page in tickets/wallet/ (mail one to each holder).
        #[arg(long)]
        rotating: bool,
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
        /// Take the tickets and their holders from a guest list (CSV with a header row).
        #[arg(long, conflicts_with = "from_postgres", requires = "columns")]
        from_csv: Option<PathBuf>,
        /// What the CSV's columns are: `id,name,tier,order,email` by position (`-` skips one),
        /// or by header: `order=Order #,name=First Name+Last Name,tier=Ticket Type`. Fields:
        /// id, name, tier, order, email, notes, attention. Rows without an id are numbered.
        #[arg(long, requires = "from_csv")]
        columns: Option<String>,
        /// The CSV's tier names as the event's tiers: `Weekend Pass=weekend,Pass VIP=vip`.
        #[arg(long, requires = "from_csv")]
        tier_map: Option<String>,
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
        /// A name or address the node serves HTTPS as (its TLS certificate is issued for these;
        /// repeatable; default: NAME.local, localhost and 127.0.0.1).
        #[arg(long)]
        tls_name: Vec<String>,
        /// `--role offline`: the scanner page's address the pairing link opens
        /// (`https://gate-a.local:8443`); the link and its QR code are printed and written.
        #[arg(long)]
        link_base: Option<String>,
        /// `--role offline`: list the device in event.json instead (the seed's handhelds, which
        /// reconcile with the staff token; before the devices go out: it changes the event file).
        #[arg(long)]
        list: bool,
    },
    /// Give a supervisor's device a PIN (read from standard input, 4 to 12 digits): its pages
    /// then ask for it before an undo, a hand check-in or a gate pause (a scanner shared with
    /// stewards). Kept hashed in the device's directory; restart the node to take it.
    Pin {
        /// The device's directory.
        #[arg(long)]
        device: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    /// A steward's scanner: scans and searches.
    #[value(alias = "steward")]
    Scanner,
    /// A supervisor's device: scans, and may undo, check in by hand and pause its gate.
    Supervisor,
    Observer,
    /// A steward's phone (not a mesh node): a pairing pass signed by the organizer, its own
    /// device id and token; it scans online, and offline when its node does not answer.
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
        Command::Event(cmd) => event(cmd),
        Command::Tickets(cmd) => tickets(cmd),
        Command::Device(DeviceCmd::Enroll {
            event,
            name,
            role,
            out,
            tls_name,
            link_base,
            list,
        }) => match role {
            RoleArg::Offline => enroll_phone(&event, &name, link_base.as_deref(), list),
            _ => enroll(event, &name, role, out, tls_name),
        },
        Command::Device(DeviceCmd::Pin { device }) => device_pin(&device),
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
                    gatemesh_node::now_ms()
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
        Command::Bulletin(a) => {
            let path = organizer::bulletin(&bulletin_request(a))?;
            println!("bulletin written to {}", path.display());
            Ok(())
        }
        Command::Node(NodeCmd::Run(a)) => node_run(a),
        Command::Ledger(args) => ledger(args),
        Command::Export { event, data, out } => {
            let v = gatemesh_node::bridge::export(&event, &data, &out)?;
            println!("{v}");
            Ok(())
        }
        Command::Bridge(cmd) => bridge(cmd),
    }
}

fn event(cmd: EventCmd) -> anyhow::Result<()> {
    match cmd {
        EventCmd::Create {
            out,
            name,
            id,
            valid_from,
            valid_until,
        } => {
            let made = organizer::event_create(&out, &name, id, valid_from, valid_until)?;
            println!("event {} created in {}", made.event_id, out.display());
            println!(
                "  public:  {} (copy to every device, with devices/ and manifest.json)",
                made.public.display()
            );
            println!(
                "  secret:  {} (keep it on the organizer's machine)",
                made.secret.display()
            );
        }
        EventCmd::AddKey { event } => {
            let key_id = organizer::event_add_key(&event)?;
            println!("organizer key {key_id} added; earlier keys stay valid");
        }
        EventCmd::Strict {
            event,
            zone,
            capacity,
            holder,
        } => {
            let holders = organizer::event_strict(&event, &zone, capacity, &holder)?;
            println!(
                "zone {zone} is strict: {capacity} places, held at the start by {}; copy event.json to the devices",
                holders.join(", ")
            );
        }
    }
    Ok(())
}

fn tickets(cmd: TicketsCmd) -> anyhow::Result<()> {
    match cmd {
        TicketsCmd::Issue {
            event,
            count,
            tier,
            format,
            rotating,
            out,
            key_id,
            nfc,
            no_qr,
            hmac_secret_file,
            from_postgres,
            query,
            from_csv,
            columns,
            tier_map,
        } => {
            let named = named_tickets(
                &event,
                &tier,
                (from_postgres, query),
                (from_csv, columns, tier_map),
            )?;
            let opts = IssueOptions {
                count,
                tier,
                format: match rotating {
                    true => organizer::TicketFormat::Rotating,
                    false => format.into(),
                },
                key_id,
                nfc,
                qr: !no_qr,
                hmac_secret_file,
                named,
            };
            let out = out.unwrap_or_else(|| event.join("tickets"));
            let issued = organizer::tickets_issue(&event, &out, &opts)?;
            println!(
                "{} tickets issued ({:?}); codes in {}",
                issued.len(),
                opts.format,
                out.join("codes.csv").display()
            );
        }
        TicketsCmd::Cancel { event, tickets } => {
            organizer::tickets_cancel(&event, &tickets)?;
            println!(
                "{} tickets cancelled; copy manifest.json to the devices",
                tickets.len()
            );
        }
    }
    Ok(())
}

/// The tickets to issue by name: HQ's rows (`--from-postgres` with `--query`) or a guest list
/// (`--from-csv`); none for `--count`.
fn named_tickets(
    event: &Path,
    tier: &str,
    (from_postgres, query): (Option<String>, Option<String>),
    (from_csv, columns, tier_map): (Option<PathBuf>, Option<String>, Option<String>),
) -> anyhow::Result<Option<Vec<Planned>>> {
    Ok(match (from_postgres, query, from_csv) {
        (Some(url), Some(query), _) => Some(
            runtime()?
                .block_on(gatemesh_cloud_bridge::fetch_tickets(&url, &query, tier))?
                .into_iter()
                .map(|t| Planned {
                    id: Some(t.ticket_id),
                    tier: t.tier,
                    ..Planned::default()
                })
                .collect(),
        ),
        (_, _, Some(file)) => Some(guestlist::read_for_event(
            event,
            &file,
            columns.as_deref().unwrap_or(""),
            tier_map.as_deref(),
            tier,
        )?),
        _ => None,
    })
}

/// Pair a phone: an organizer-signed pass, printed with its pairing link, and the link's QR
/// code written beside it (or, with `list`, the seed's listing in event.json).
fn enroll_phone(
    event: &Path,
    name: &str,
    link_base: Option<&str>,
    list: bool,
) -> anyhow::Result<()> {
    if list {
        organizer::offline_device_enroll(event, name)?;
        println!("offline device {name} listed in event.json; copy it to the devices");
        return Ok(());
    }
    let paired = organizer::phone_enroll(event, name, link_base)?;
    println!(
        "phone {} paired (pass valid until the event ends)",
        paired.device_id
    );
    println!("pass: {}", paired.pass);
    match &paired.link {
        Some(link) => println!("pairing link: {link}"),
        None => println!(
            "pairing link: the scanner page's address followed by #pair={}",
            paired.pass
        ),
    }
    println!("written to {}", paired.dir.display());
    println!(
        "unpair it with: gatemesh bulletin --event {} --unpair {}",
        event.display(),
        paired.device_id
    );
    Ok(())
}

fn device_pin(device: &std::path::Path) -> anyhow::Result<()> {
    let mut pin = String::new();
    std::io::stdin().read_line(&mut pin)?;
    gatemesh_node::supervisor::write_pin(device, pin.trim())?;
    println!(
        "supervisor PIN set for {} (restart its node to take it)",
        device.display()
    );
    Ok(())
}

fn enroll(
    event: PathBuf,
    name: &str,
    role: RoleArg,
    out: Option<PathBuf>,
    tls_names: Vec<String>,
) -> anyhow::Result<()> {
    let role = match role {
        RoleArg::Scanner => Role::Scanner,
        RoleArg::Supervisor => Role::Supervisor,
        RoleArg::Observer => Role::Observer,
        RoleArg::Offline => unreachable!("phones are enrolled by enroll_phone"),
    };
    let out = out.unwrap_or_else(|| event.join(format!("device-{name}")));
    let names = if tls_names.is_empty() {
        vec![
            gatemesh_node::tls::default_name(name),
            "localhost".into(),
            "127.0.0.1".into(),
        ]
    } else {
        tls_names
    };
    // Checked before the device is written: a bad name leaves nothing half enrolled.
    gatemesh_node::tls::check_names(&names)?;
    let cert = organizer::device_enroll(&event, name, role, &out)?;
    println!(
        "device {name} ({}) enrolled as {:?} in {}",
        cert.device_id,
        role,
        out.display()
    );
    let config = gatemesh_node::package::load(&event)?.config;
    let tls = gatemesh_node::tls::issue_device_cert(
        &event,
        &config,
        &out,
        &names,
        gatemesh_node::now_ms(),
    )?;
    println!(
        "HTTPS certificate for {} in {}",
        names.join(", "),
        tls.display()
    );
    Ok(())
}

impl From<TicketFormat> for organizer::TicketFormat {
    fn from(f: TicketFormat) -> Self {
        match f {
            TicketFormat::Gm1 => organizer::TicketFormat::Gm1,
            TicketFormat::Legacy => organizer::TicketFormat::Legacy,
            TicketFormat::Manifest => organizer::TicketFormat::Manifest,
            TicketFormat::Rotating => organizer::TicketFormat::Rotating,
        }
    }
}

fn bulletin_request(a: BulletinArgs) -> BulletinRequest {
    if !a.revoke_device.is_empty() && a.keep.is_empty() && a.ledger.is_none() {
        eprintln!(
            "warning: nothing of the revoked devices is kept (no --keep or --ledger): every \
             record they wrote is ignored, admits from before the theft included"
        );
    }
    let pauses = pause_orders(&a);
    BulletinRequest {
        event: a.event,
        revoke_ticket: a.revoke_ticket,
        revoke_device: a.revoke_device,
        keep: a.keep,
        ledger: a.ledger,
        add_device: a.add_device,
        pauses,
        rules: a.rule,
        unpair: a.unpair,
    }
}

/// The pause and resume flags as orders (naming one target twice is refused when the bulletin
/// is made).
fn pause_orders(a: &BulletinArgs) -> Vec<PauseOrder> {
    let order = |scope, name: &str, paused| PauseOrder {
        scope,
        name: name.to_string(),
        paused,
    };
    let mut all = Vec::new();
    for (names, paused) in [(&a.pause_gate, true), (&a.resume_gate, false)] {
        all.extend(names.iter().map(|n| order(Scope::Gate, n, paused)));
    }
    for (names, paused) in [(&a.pause_zone, true), (&a.resume_zone, false)] {
        all.extend(names.iter().map(|n| order(Scope::Zone, n, paused)));
    }
    for (on, paused) in [(a.pause_event, true), (a.resume_event, false)] {
        if on {
            all.push(order(Scope::Event, "", paused));
        }
    }
    all
}

fn node_run(a: NodeRunArgs) -> anyhow::Result<()> {
    let d = a.device;
    // The certificate `device enroll` issued, unless another is given.
    let tls = a.https.map(|_| {
        let dir = &d.device;
        let cert = a.tls_cert.clone();
        let key = a.tls_key.clone();
        (
            cert.unwrap_or_else(|| dir.join(gatemesh_node::tls::DEVICE_TLS_CERT_FILE)),
            key.unwrap_or_else(|| dir.join(gatemesh_node::tls::DEVICE_TLS_KEY_FILE)),
        )
    });
    let opts = gatemesh_node::node::NodeOptions {
        event: d.event,
        device: d.device,
        data: d.data,
        gate: d.gate,
        direction: d.direction.map(DirectionArg::direction),
        listen: parse_addrs(&a.listen)?,
        peers: parse_addrs(&a.peer)?,
        mdns: !a.no_mdns,
        hmac_secret_file: d.hmac_secret_file,
        http: a.http,
        https: a.https,
        tls,
        staff_token: a.staff_token,
        admin_token: a.admin_token,
        read_stdin: true,
        journal: false,
        catch_up_ms: a.catch_up_ms,
    };
    runtime()?.block_on(gatemesh_node::node::run(opts))
}

fn bridge(cmd: BridgeCmd) -> anyhow::Result<()> {
    match cmd {
        BridgeCmd::Import {
            event,
            file,
            database_url,
        } => {
            let v =
                runtime()?.block_on(gatemesh_node::bridge::import(&event, &file, &database_url))?;
            println!("{v}");
            Ok(())
        }
        BridgeCmd::Run {
            event,
            device,
            database_url,
            data,
            listen,
            peer,
            no_mdns,
        } => {
            let data = data.unwrap_or_else(|| device.join("bridge-data"));
            let config = gatemesh_node::package::load_config(&event)?;
            let gate = config
                .gates
                .first()
                .map(|g| g.name.clone())
                .unwrap_or_default();
            let opts = gatemesh_node::node::NodeOptions {
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
                https: None,
                tls: None,
                staff_token: None,
                admin_token: None,
                read_stdin: false,
                journal: true,
                catch_up_ms: gatemesh_crdt::ledger::catchup::CATCH_UP_MAX_MS,
            };
            runtime()?.block_on(gatemesh_node::bridge::run(opts, &database_url))
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

/// `gatemesh scan`: the device's replica with no network; each decision durable before it is
/// printed.
fn scan(args: ScanArgs) -> anyhow::Result<()> {
    let d = &args.device;
    let dev = gatemesh_node::device::open(
        &d.event,
        Some(&d.device),
        &d.data,
        d.hmac_secret_file.as_deref(),
    )?;
    let (mut replica, mut store) = dev.into_replica(ReplicaConfig {
        gate: d.gate.clone(),
        direction: d.direction.map(DirectionArg::direction),
        journal: false,
        catch_up_ms: 0,
    });
    let mut scan_one = |id: u64, code: &[u8]| -> anyhow::Result<()> {
        let input = Input::Scan {
            id,
            code: code.to_vec(),
            gate: None,
            direction: None,
            manual: false,
            origin: None,
        };
        let mut outs = replica.handle(gatemesh_node::now_ms(), input);
        let mut upto = None;
        for o in &outs {
            if let Output::Persist { id, changes, .. } = o {
                store.append(changes)?; // durable before the answer is shown
                upto = Some(*id);
            }
        }
        if let Some(upto) = upto {
            outs.extend(replica.handle(gatemesh_node::now_ms(), Input::Persisted { upto }));
        }
        for o in outs {
            if let Output::Reply { reply, .. } = o {
                print_reply(reply)?;
            }
        }
        Ok(())
    };
    if !args.codes.is_empty() {
        for (i, c) in args.codes.iter().enumerate() {
            scan_one(i as u64 + 1, c.as_bytes())?;
        }
        return Ok(());
    }
    let mut input = std::io::stdin().lock();
    let mut id = 0;
    while let Some(line) = gatemesh_node::input::next_line(&mut input)? {
        id += 1;
        scan_one(id, &line)?;
    }
    Ok(())
}

fn print_reply(reply: Reply) -> anyhow::Result<()> {
    use std::io::Write;
    let v = match reply {
        Reply::Decision(d) => serde_json::to_value(&d)?,
        Reply::Refused { code, message } | Reply::Failed { code, message } => {
            anyhow::bail!("{code}: {message}")
        }
        _ => return Ok(()),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")?;
    out.flush()?;
    Ok(())
}

fn ledger(args: LedgerArgs) -> anyhow::Result<()> {
    let dev = gatemesh_node::device::open(&args.event, None, &args.data, None)?;
    let (replica, _store) = dev.into_replica(ReplicaConfig {
        gate: String::new(),
        direction: None,
        journal: false,
        catch_up_ms: 0,
    });
    let index = replica.gate().ledger().index();
    let value = if let Some(t) = &args.ticket {
        serde_json::json!({ "ticket": t, "records": index.records(t) })
    } else if args.conflicts {
        serde_json::json!({ "conflicts": index.conflicts() })
    } else {
        let tally = index.tally();
        serde_json::json!({
            "records": index.len(),
            "tickets": index.ticket_count(),
            "admits": tally.total.admitted,
            "denials": tally.total.denied,
            "double_entries": index.conflict_count(),
            "heads": replica.gate().ledger().heads().iter().map(hex::encode).collect::<Vec<_>>(),
            "chains": replica.chains(),
        })
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}
