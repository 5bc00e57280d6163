//! The organizer's guest list as a CSV file (an Eventbrite or pretix export, a spreadsheet):
//! which column is what, read and checked row by row, every bad row reported with its line
//! number before anything is issued.
//!
//! `--columns` names the columns. An item `field` is the file's column at that position (`-`
//! skips one); `field=Header` is the column with that header (case and spaces ignored), and
//! `name=First Name+Last Name` joins columns with a space. Fields: `id`, `name`, `tier`,
//! `order`, `email`, `notes`, `attention` (yes/true/1/x/oui marks the ticket). E-mail addresses
//! go to the organizer's `guest-emails.json` and to HQ, never into the manifest.

use crate::organizer::{Planned, TICKET_ID_LEN_MAX};
use anyhow::{bail, Context};
use gatemesh_crdt::event::manifest::Attendee;
use gatemesh_crdt::event::EventConfig;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Largest guest list file read.
pub const GUEST_LIST_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// Most bad rows listed in the error (the count says how many more).
const BAD_ROWS_SHOWN: usize = 20;
const FIELDS: [&str; 7] = ["id", "name", "tier", "order", "email", "notes", "attention"];

/// Where a field's value comes from: columns (joined with a space), by position or by header.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Position(usize),
    Headers(Vec<String>),
}

/// The parsed `--columns`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Columns {
    fields: HashMap<&'static str, Source>,
}

impl Columns {
    /// Read a `--columns` value.
    pub fn parse(spec: &str) -> anyhow::Result<Columns> {
        let mut fields = HashMap::new();
        for (i, item) in spec.split(',').map(str::trim).enumerate() {
            if item == "-" || item.is_empty() {
                continue;
            }
            let (field, source) = match item.split_once('=') {
                Some((f, h)) => (
                    f.trim(),
                    Source::Headers(h.split('+').map(header_key).collect()),
                ),
                None => (item, Source::Position(i)),
            };
            let Some(field) = FIELDS.iter().find(|f| f.eq_ignore_ascii_case(field)) else {
                bail!(
                    "--columns: unknown field {field:?} (fields: {})",
                    FIELDS.join(", ")
                );
            };
            if fields.insert(*field, source).is_some() {
                bail!("--columns names {field} twice");
            }
        }
        if fields.is_empty() {
            bail!("--columns names no field");
        }
        Ok(Columns { fields })
    }

    /// Field → column positions, for this header row.
    fn resolve(
        &self,
        header: &csv::StringRecord,
    ) -> anyhow::Result<HashMap<&'static str, Vec<usize>>> {
        let keys: Vec<String> = header.iter().map(header_key).collect();
        let mut at = HashMap::new();
        for (field, source) in &self.fields {
            let cols = match source {
                Source::Position(i) if *i < keys.len() => vec![*i],
                Source::Position(i) => bail!(
                    "--columns: {field} is column {} but the file has {}",
                    i + 1,
                    keys.len()
                ),
                Source::Headers(hs) => hs
                    .iter()
                    .map(|h| {
                        keys.iter().position(|k| k == h).with_context(|| {
                            format!("--columns: no column {h:?} in the header row")
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
            };
            at.insert(*field, cols);
        }
        Ok(at)
    }
}

/// Headers compared without case or surrounding spaces.
fn header_key(h: &str) -> String {
    h.trim().to_lowercase()
}

/// What `--from-csv` reads: the columns, the tier for rows without one, and a map from the
/// file's tier names to the event's (`Weekend Pass=weekend`).
pub struct GuestListOptions<'a> {
    pub columns: &'a Columns,
    pub default_tier: &'a str,
    pub tier_map: &'a HashMap<String, String>,
}

/// Read `--tier-map` (`File name=tier,...`).
pub fn parse_tier_map(spec: Option<&str>) -> anyhow::Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    for item in spec
        .unwrap_or_default()
        .split(',')
        .filter(|i| !i.trim().is_empty())
    {
        let (from, to) = item
            .split_once('=')
            .with_context(|| format!("--tier-map item {item:?} is not NAME=TIER"))?;
        map.insert(header_key(from), to.trim().to_string());
    }
    Ok(map)
}

/// Read a guest list; every row checked, none taken if any is bad.
pub fn read(
    path: &Path,
    config: &EventConfig,
    o: &GuestListOptions<'_>,
) -> anyhow::Result<Vec<Planned>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > GUEST_LIST_BYTES_MAX {
        bail!(
            "{} is {len} bytes, over {GUEST_LIST_BYTES_MAX}",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes, config, o).with_context(|| format!("guest list {}", path.display()))
}

/// Read a guest list for the event in `event_dir`, with `--columns` and `--tier-map` as given.
pub fn read_for_event(
    event_dir: &Path,
    file: &Path,
    columns: &str,
    tier_map: Option<&str>,
    default_tier: &str,
) -> anyhow::Result<Vec<Planned>> {
    let config = crate::package::load(event_dir)?.config;
    let columns = Columns::parse(columns)?;
    let tier_map = parse_tier_map(tier_map)?;
    let o = GuestListOptions {
        columns: &columns,
        default_tier,
        tier_map: &tier_map,
    };
    read(file, &config, &o)
}

/// Parse a guest list's bytes (UTF-8, optional BOM, a header row, RFC 4180 quoting).
pub fn parse(
    bytes: &[u8],
    config: &EventConfig,
    o: &GuestListOptions<'_>,
) -> anyhow::Result<Vec<Planned>> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let header = reader
        .headers()
        .context("the header row does not read as UTF-8 CSV")?
        .clone();
    let at = o.columns.resolve(&header)?;
    let mut planned = Vec::new();
    let mut bad = Vec::new();
    let mut ids = HashSet::new();
    for row in reader.records() {
        match row {
            Ok(r) if r.len() != header.len() => {
                let line = r.position().map_or(0, |p| p.line());
                bad.push(format!(
                    "line {line}: {} fields, the header has {}",
                    r.len(),
                    header.len()
                ));
            }
            Ok(r) => {
                let line = r.position().map_or(0, |p| p.line());
                match guest(&r, &at, config, o, &mut ids) {
                    Ok(p) => planned.push(p),
                    Err(e) => bad.push(format!("line {line}: {e}")),
                }
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                bad.push(format!("line {line}: {}", csv_error(&e)));
            }
        }
    }
    if !bad.is_empty() {
        let more = bad.len().saturating_sub(BAD_ROWS_SHOWN);
        let mut msg = format!("{} bad rows, nothing issued:\n", bad.len());
        msg.push_str(&bad[..bad.len().min(BAD_ROWS_SHOWN)].join("\n"));
        if more > 0 {
            msg.push_str(&format!("\n... and {more} more"));
        }
        bail!(msg);
    }
    if planned.is_empty() {
        bail!("the guest list has no rows");
    }
    Ok(planned)
}

fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".to_string(),
        _ => e.to_string(),
    }
}

/// One row as a ticket to issue.
fn guest(
    r: &csv::StringRecord,
    at: &HashMap<&'static str, Vec<usize>>,
    config: &EventConfig,
    o: &GuestListOptions<'_>,
    ids: &mut HashSet<String>,
) -> anyhow::Result<Planned> {
    let field = |f: &str| -> Option<String> {
        let parts: Vec<String> = at
            .get(f)?
            .iter()
            .filter_map(|&i| r.get(i))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|v| !v.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    };
    let id = field("id");
    if let Some(id) = &id {
        let ok = id.len() <= TICKET_ID_LEN_MAX
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            bail!("ticket id {id:?}: 1..={TICKET_ID_LEN_MAX} of A-Z a-z 0-9 - _ .");
        }
        if !ids.insert(id.clone()) {
            bail!("ticket id {id} is listed twice");
        }
    }
    let tier = tier_of(field("tier").as_deref(), config, o)?;
    let attendee = Attendee {
        name: field("name"),
        order: field("order"),
        notes: field("notes"),
        attention: field("attention").is_some_and(|v| {
            ["yes", "true", "1", "x", "oui", "y"].contains(&v.to_lowercase().as_str())
        }),
    };
    attendee
        .check()
        .map_err(|f| anyhow::anyhow!("{f} is too long or holds control characters"))?;
    let email = field("email");
    if email
        .as_ref()
        .is_some_and(|e| e.len() > 254 || !e.contains('@'))
    {
        bail!("e-mail {email:?} is not an address");
    }
    Ok(Planned {
        id,
        tier,
        attendee,
        email,
    })
}

/// The event tier a row's tier names: mapped, else the same name (case ignored), else refused.
fn tier_of(
    value: Option<&str>,
    config: &EventConfig,
    o: &GuestListOptions<'_>,
) -> anyhow::Result<String> {
    let Some(v) = value else {
        return Ok(o.default_tier.to_string());
    };
    let name = o.tier_map.get(&header_key(v)).map_or(v, String::as_str);
    config
        .tiers
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name))
        .map(|t| t.name.clone())
        .with_context(|| {
            let names: Vec<&str> = config.tiers.iter().map(|t| t.name.as_str()).collect();
            format!(
                "tier {v:?} is not one of {} (map it with --tier-map)",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatemesh_crdt::event::OrganizerKey;

    fn config() -> EventConfig {
        let key = OrganizerKey {
            key_id: "k1".into(),
            public_key: "00".repeat(32),
        };
        EventConfig::new("fest", "Fest", 0, 1, key)
    }

    fn read(csv: &str, columns: &str, map: &str) -> anyhow::Result<Vec<Planned>> {
        let columns = Columns::parse(columns)?;
        let tier_map = parse_tier_map(Some(map))?;
        let o = GuestListOptions {
            columns: &columns,
            default_tier: "general",
            tier_map: &tier_map,
        };
        parse(csv.as_bytes(), &config(), &o)
    }

    #[test]
    fn columns_by_position_and_by_header() {
        let csv = "\u{feff}Ticket,Who,Kind,Ref\nA-1,\"Dupré, Éloïse\",VIP,O-9\nA-2,Zoé,,O-10\n";
        let p = read(csv, "id,name,tier,order", "").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].id.as_deref(), Some("A-1"));
        assert_eq!(p[0].attendee.name.as_deref(), Some("Dupré, Éloïse"));
        assert_eq!(p[0].tier, "vip");
        assert_eq!(p[1].tier, "general");
        let csv = "Order #,First Name,Last Name,Ticket Type,Notes\nO-1,Jean,Müller,Weekend Pass,\"seat 12\nrow B\"\n";
        let p = read(
            csv,
            "order=Order #,name=First Name+Last Name,tier=ticket type",
            "Weekend Pass=weekend",
        )
        .unwrap();
        assert_eq!(p[0].attendee.name.as_deref(), Some("Jean Müller"));
        assert_eq!(p[0].tier, "weekend");
        assert_eq!(p[0].id, None);
        assert_eq!(p[0].attendee.notes, None, "notes not mapped");
        let p = read(csv, "order,-,name,tier,notes", "weekend pass=weekend").unwrap();
        assert_eq!(p[0].attendee.notes.as_deref(), Some("seat 12 row B"));
    }

    #[test]
    fn bad_rows_are_listed_with_their_lines_and_nothing_is_taken() {
        let csv = "id,name,tier\nA-1,Ann,general\nA 2,Bob,general\nA-3,Cy,gold\nA-1,Dee,general\nA-5,\"E\u{7}\",general\nA-6,Fay\n";
        let e = read(csv, "id,name,tier", "").unwrap_err().to_string();
        assert!(e.starts_with("5 bad rows"), "{e}");
        assert!(e.contains("line 7: 2 fields, the header has 3"), "{e}");
        for line in ["line 3:", "line 4:", "line 5:", "line 6:"] {
            assert!(e.contains(line), "{line} missing from {e}");
        }
        assert!(!e.contains("line 2:"), "{e}");
        let e = read("id\n", "id", "").unwrap_err().to_string();
        assert!(e.contains("no rows"), "{e}");
        let e = read("a,b\n1,2\n", "id=Ticket", "").unwrap_err().to_string();
        assert!(e.contains("no column \"ticket\""), "{e}");
        assert!(Columns::parse("id,colour").is_err());
        assert!(Columns::parse("id,id=x").is_err());
        let bytes = b"id,name\nA-1,\xff\xfe\n";
        let columns = Columns::parse("id,name").unwrap();
        let o = GuestListOptions {
            columns: &columns,
            default_tier: "general",
            tier_map: &HashMap::new(),
        };
        let e = parse(bytes, &config(), &o).unwrap_err().to_string();
        assert!(e.contains("line 2: not UTF-8"), "{e}");
    }
}
