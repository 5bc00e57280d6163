//! QR images of ticket codes. GM1 codes are uppercase base32 with `GM1:`, which the encoder puts
//! in alphanumeric mode by itself; other codes go in byte mode.

use anyhow::Context;
use qrcode::{EcLevel, QrCode};
use std::path::Path;

/// Pixels per QR module in written images.
const MODULE_PX: u32 = 6;

/// Write `code` as a PNG QR image.
pub fn write_png(code: &str, path: &Path) -> anyhow::Result<()> {
    let qr = QrCode::with_error_correction_level(code.as_bytes(), EcLevel::M)
        .context("code does not fit in a QR symbol")?;
    let image = qr
        .render::<image::Luma<u8>>()
        .module_dimensions(MODULE_PX, MODULE_PX)
        .quiet_zone(true)
        .build();
    image
        .save(path)
        .with_context(|| format!("writing {}", path.display()))
}

/// The QR version (1..=40: 17 + 4 × version modules a side) `text` takes at the error
/// correction tickets use (M).
pub fn version(text: &str) -> Option<i16> {
    let qr = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).ok()?;
    match qr.version() {
        qrcode::Version::Normal(v) => Some(v),
        qrcode::Version::Micro(_) => None,
    }
}

/// `text` as an SVG QR symbol (one path of dark modules, a 4-module quiet zone), for a page
/// to show: a phone's pairing link on the dashboard.
pub fn svg(text: &str) -> anyhow::Result<String> {
    let qr = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .context("text does not fit in a QR symbol")?;
    let width = qr.width();
    let side = width + 8;
    let mut path = String::new();
    for (i, c) in qr.to_colors().iter().enumerate() {
        if *c == qrcode::Color::Dark {
            let (x, y) = (i % width + 4, i / width + 4);
            path.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {side} {side}\" \
         shape-rendering=\"crispEdges\"><rect width=\"{side}\" height=\"{side}\" fill=\"#fff\"/>\
         <path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}
