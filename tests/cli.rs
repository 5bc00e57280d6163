//! The organizer and steward flow as a new user runs it: `event create` → `tickets issue` →
//! `device enroll` → `scan`, with the QR images read back by a standard decoder (zbarimg).

use gatemesh_tests::{decisions, gatemesh, gatemesh_fails, make_event, read_codes};
use std::process::Command;

#[test]
fn qr_images_decode_to_codes_that_scan_as_admitted() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 3, &["gate-a"], true);
    let (ev_s, data) = (ev.to_str().unwrap(), tmp.path().join("data"));
    for (id, code) in &codes {
        let png = ev.join("tickets/qr").join(format!("{id}.png"));
        let out = Command::new("zbarimg")
            .args(["--raw", "-q"])
            .arg(&png)
            .output()
            .expect("zbarimg (zbar-tools) is installed by the test command");
        assert!(
            out.status.success(),
            "zbarimg could not read {}",
            png.display()
        );
        let decoded = String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string();
        assert_eq!(&decoded, code, "QR of {id} decodes to another text");
        let out = gatemesh(&[
            "scan",
            "--event",
            ev_s,
            "--device",
            ev.join("device-gate-a").to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--gate",
            "north",
            &decoded,
        ]);
        let d = &decisions(&out.stdout)[0];
        assert_eq!(
            (d["verdict"].as_str(), d["reason"].as_str()),
            (Some("admit"), Some("ok")),
            "{d}"
        );
        assert_eq!(d["ticket"]["id"], id.as_str());
    }
}

#[test]
fn organizer_secret_is_private_and_devices_need_a_valid_certificate() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    make_event(&ev, 1, &["gate-a"], false);
    for secret in [
        ev.join("organizer-keys.json"),
        ev.join("device-gate-a/device.key"),
    ] {
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is readable by others", secret.display());
    }
    // A certificate edited by hand (name changed) no longer verifies: the device refuses to start.
    let cert_path = ev.join("device-gate-a/device.cert.json");
    let text = std::fs::read_to_string(&cert_path).unwrap();
    std::fs::write(&cert_path, text.replace("gate-a", "gate-z")).unwrap();
    let err = gatemesh_fails(&[
        "scan",
        "--event",
        ev.to_str().unwrap(),
        "--device",
        ev.join("device-gate-a").to_str().unwrap(),
        "--data",
        tmp.path().join("d").to_str().unwrap(),
        "--gate",
        "north",
        "X",
    ]);
    assert!(err.contains("does not verify"), "{err}");
    // Creating over an existing event is refused.
    let err = gatemesh_fails(&[
        "event",
        "create",
        "--out",
        ev.to_str().unwrap(),
        "--name",
        "Again",
    ]);
    assert!(err.contains("refusing to overwrite"), "{err}");
    // A TLS name the event CA may not vouch for is refused before anything is written.
    let err = gatemesh_fails(&[
        "device",
        "enroll",
        "--event",
        ev.to_str().unwrap(),
        "--name",
        "gate-b",
        "--tls-name",
        "tickets.example.com",
    ]);
    assert!(err.contains("vouches only for local"), "{err}");
    assert!(!ev.join("device-gate-b").exists(), "nothing half enrolled");
    // The default names come from the device name, made a host label.
    let out = gatemesh(&[
        "device",
        "enroll",
        "--event",
        ev.to_str().unwrap(),
        "--name",
        "Gate B_2",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("gate-b-2.local, localhost, 127.0.0.1"),
        "{said}"
    );
    let pem = std::fs::read_to_string(ev.join("device-Gate B_2/tls.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
}

#[test]
fn key_rotation_keeps_old_tickets_valid_and_cancel_revokes() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let ev_s = ev.to_str().unwrap();
    make_event(&ev, 2, &["gate-a"], false);
    gatemesh(&["event", "add-key", "--event", ev_s]);
    gatemesh(&[
        "tickets", "issue", "--event", ev_s, "--count", "1", "--tier", "vip", "--no-qr",
    ]);
    gatemesh(&["tickets", "cancel", "--event", ev_s, "T000002"]);
    let codes = read_codes(&ev.join("tickets/codes.csv"));
    assert_eq!(codes.len(), 3);
    let args: Vec<&str> = codes.iter().map(|(_, c)| c.as_str()).collect();
    let dev = ev.join("device-gate-a");
    let data = tmp.path().join("data");
    let mut cmd = vec![
        "scan",
        "--event",
        ev_s,
        "--device",
        dev.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--gate",
        "north",
    ];
    cmd.extend(args);
    let d = decisions(&gatemesh(&cmd).stdout);
    let reasons: Vec<&str> = d.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["ok", "revoked", "ok"]);
}

#[test]
fn legacy_codes_made_by_the_seed_javascript_are_admitted() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    make_event(&ev, 1, &["gate-a"], false);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ev.join("event.json")).unwrap()).unwrap();
    let event_id = config["legacy"]["event_id"].as_str().unwrap();
    // The seed's signing code, run by Node.js: JSON.stringify of exactly these five fields.
    let js = format!(
        r#"const crypto = require('crypto');
        const secret = process.env.QR_SIGNATURE_SECRET;
        for (const [ticketId, guestId] of [["L-1", "g-1"], [42, 7], ["é \"q\" /", "g"]]) {{
          const data = {{ ticketId, eventId: "{event_id}", guestId, ticketCode: "TC-" + ticketId, timestamp: Date.now() }};
          const signature = crypto.createHmac('sha256', secret).update(JSON.stringify(data)).digest('hex');
          console.log(JSON.stringify({{ ...data, signature, checksum: 'x' }}));
        }}"#
    );
    let out = Command::new("node")
        .args(["-e", &js])
        .env("QR_SIGNATURE_SECRET", "s3cret")
        .output()
        .expect("node (Node.js) is installed by the test command");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let codes: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(codes.len(), 3);
    let dev = ev.join("device-gate-a");
    let data = tmp.path().join("data");
    let base = [
        "scan",
        "--event",
        ev.to_str().unwrap(),
        "--device",
        dev.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--gate",
        "north",
    ];
    let run = |secret: Option<&str>| {
        let mut cmd = Command::new(gatemesh_tests::gatemesh_bin());
        cmd.args(base).args(&codes);
        match secret {
            Some(s) => cmd.env("QR_SIGNATURE_SECRET", s),
            None => cmd.env_remove("QR_SIGNATURE_SECRET"),
        };
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        decisions(&out.stdout)
            .iter()
            .map(|d| d["reason"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(None), ["invalid_signature"; 3]);
    assert_eq!(run(Some("wrong")), ["invalid_signature"; 3]);
    assert_eq!(run(Some("s3cret")), ["ok"; 3]);
    // QR_EXPIRY_HOURS=0: every code is already too old.
    let mut cmd = Command::new(gatemesh_tests::gatemesh_bin());
    let out = cmd
        .args(base)
        .arg(&codes[0])
        .env("QR_SIGNATURE_SECRET", "s3cret")
        .env("QR_EXPIRY_HOURS", "0")
        .output()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let reason = decisions(&out.stdout)[0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason == "expired" || reason == "already_redeemed",
        "{reason}"
    );
}

/// `gatemesh bulletin --rule`: a rule change the organizer can give, and the mistakes it
/// refuses before anything is signed (nothing written for them).
#[test]
fn a_rule_bulletin_is_written_and_bad_rule_flags_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    make_event(&ev, 1, &["gate-a"], false);
    let ev_s = ev.to_str().unwrap();
    fn bulletin<'a>(ev: &'a str, rule: &'a str) -> [&'a str; 5] {
        ["bulletin", "--event", ev, "--rule", rule]
    }
    for (rule, says) in [
        ("nosuch:max_entries=2", "no tier nosuch"),
        ("general:max_entries=0", "is not a max_entries"),
        ("general:max_entries=99999", "is not a max_entries"),
        ("general:reentry=maybe", "is not a reentry"),
        ("general:colour=red", "the fields are"),
        ("general", "want TIER:FIELD=VALUE"),
    ] {
        let err = gatemesh_fails(&bulletin(ev_s, rule));
        assert!(err.contains(says), "{rule}: {err}");
    }
    let dir = ev.join("bulletins");
    assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().count() == 0);
    gatemesh(&bulletin(ev_s, "general:max_entries_per_day=0"));
    let written: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(written.len(), 1);
    let text = std::fs::read_to_string(written[0].as_ref().unwrap().path()).unwrap();
    assert!(text.contains(r#"max_entries_per_day\":0"#), "{text}");
}
