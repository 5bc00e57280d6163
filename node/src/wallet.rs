//! A rotating ticket's wallet: one self-contained HTML page per ticket, mailed to its holder,
//! that shows the ticket's live QR code (GM2, changing every 15 s) with no network at all. It
//! holds the ticket's signed static part and the private key made for this ticket alone, and
//! signs the current time step with it (`crdt::credential::rotating`), so a screenshot of it
//! stops working within the event's window. The page inlines what it runs: Ed25519
//! (@noble/ed25519, MIT) and a QR encoder (qrcode-generator, MIT), both vendored in `web/vendor`.

use anyhow::Context;
use serde_json::json;
use std::path::Path;

const TEMPLATE: &str = include_str!("../web/wallet.html");
const QRCODE_JS: &str = include_str!("../web/vendor/qrcode-generator.js");
const ED25519_JS: &str = include_str!("../web/vendor/noble-ed25519.js");

/// One ticket's wallet.
#[derive(Clone, Debug)]
pub struct Wallet {
    pub event_name: String,
    pub ticket_id: String,
    pub tier: String,
    /// The holder's name, from the guest list.
    pub name: Option<String>,
    /// The static part as issued: `GM2S:` + base32.
    pub static_part: String,
    pub holder_secret: [u8; 32],
}

/// The wallet page of `w`.
pub fn page(w: &Wallet) -> anyhow::Result<String> {
    let b32 = w
        .static_part
        .strip_prefix(gatemesh_crdt::credential::rotating::STATIC_PREFIX)
        .context("not a rotating ticket's static part")?;
    let fixed = data_encoding::BASE32_NOPAD
        .decode(b32.as_bytes())
        .context("the static part is not base32")?;
    let ticket = json!({
        "ticket_id": w.ticket_id,
        "tier": w.tier,
        "name": w.name,
        "static_hex": hex::encode(fixed),
        "holder_secret_hex": hex::encode(w.holder_secret),
    });
    // Nothing in the JSON can close or open markup around it.
    let ticket = (ticket.to_string())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    // The vendored module's exports are not needed inline: its functions are in scope.
    let ed25519 = ED25519_JS
        .lines()
        .filter(|l| !l.trim_start().starts_with("export {"))
        .collect::<Vec<_>>()
        .join("\n");
    let name = html_escape(&w.event_name);
    let parts = [
        ("{{EVENT_NAME}}", name.as_str()),
        ("{{TICKET_JSON}}", ticket.as_str()),
        ("{{QRCODE_JS}}", QRCODE_JS),
        ("{{ED25519_JS}}", ed25519.as_str()),
    ];
    Ok(fill(TEMPLATE, &parts))
}

/// The template with each placeholder replaced, in one pass: what is put in is never read for
/// placeholders again (an event or guest name holding one stays text).
fn fill(template: &str, parts: &[(&str, &str)]) -> String {
    let mut out =
        String::with_capacity(template.len() + parts.iter().map(|p| p.1.len()).sum::<usize>());
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        match parts.iter().find(|(k, _)| tail.starts_with(k)) {
            Some((k, v)) => {
                out.push_str(v);
                rest = &tail[k.len()..];
            }
            None => {
                out.push_str("{{");
                rest = &tail[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Write each wallet to `dir/<ticket id>.html`, readable by its owner only (it holds the
/// ticket's key).
pub fn write_all(dir: &Path, wallets: &[Wallet]) -> anyhow::Result<()> {
    if wallets.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    for w in wallets {
        let path = dir.join(format!("{}.html", w.ticket_id));
        crate::package::write_secret_file(&path, page(w)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
