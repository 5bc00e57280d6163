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
