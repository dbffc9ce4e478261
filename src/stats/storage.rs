//! SD card and eMMC identity and wear, from the attributes `drivers/mmc/core` gives each
//! card under `/sys/block/mmcblkN/device/`:
//!
//! - `type` (`drivers/mmc/core/bus.c`, `type_show`): `MMC`, `SD`, `SDIO`, `SDcombo`;
//! - `name`, `manfid` (`0x%06x`), `oemid` (`0x%04x`), `date` (`%02d/%04d`), `serial`
//!   (`0x%08x`), from the CID register (`sd.c` and `mmc.c`, `MMC_DEV_ATTR`);
//! - eMMC only (`mmc.c`): `life_time` (`0x%02x 0x%02x`, EXT_CSD `DEVICE_LIFE_TIME_EST_TYP_A`
//!   and `_B`) and `pre_eol_info` (`0x%02x`, EXT_CSD `PRE_EOL_INFO`). SD cards have no
//!   standard wear report, so their wear is `None`.
//!
//! The identity cannot change while the card is in, and the wear estimates move in 10 %
//! steps over months, so cards are read once per [`CARD_REFRESH`], not every tick.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::model::MmcCard;
use super::procfs::read_trimmed;

/// How long card attributes are reused before they are read again.
pub const CARD_REFRESH: Duration = Duration::from_secs(600);

/// The card behind `/sys/block/NAME`, or `None` when NAME is not an MMC block device.
pub fn read_card(sys_root: &Path, disk: &str) -> Option<MmcCard> {
    if !disk.starts_with("mmcblk") || disk.contains('/') {
        return None;
    }
    let dir = sys_root.join("block").join(disk).join("device");
    let kind = read_trimmed(&dir.join("type")).filter(|t| !t.is_empty())?;
    let field = |name: &str| read_trimmed(&dir.join(name)).filter(|v| !v.is_empty());
    Some(MmcCard {
        kind,
        name: field("name"),
        manufacturer_id: field("manfid"),
        oem_id: field("oemid"),
        date: field("date"),
        serial: field("serial"),
        life_time: field("life_time").and_then(|v| parse_life_time(&v)),
        pre_eol_info: field("pre_eol_info").and_then(|v| parse_hex_byte(&v)),
    })
}

/// `0x01 0x02` → (1, 2).
pub fn parse_life_time(text: &str) -> Option<(u8, u8)> {
    let mut parts = text.split_whitespace();
    let a = parse_hex_byte(parts.next()?)?;
    let b = parse_hex_byte(parts.next()?)?;
    parts.next().is_none().then_some((a, b))
}

/// `0x0b` → 11.
pub fn parse_hex_byte(text: &str) -> Option<u8> {
    let digits = text.trim().strip_prefix("0x")?;
    u8::from_str_radix(digits, 16).ok()
}

/// Card attributes per disk, re-read every [`CARD_REFRESH`] and when a new disk appears.
#[derive(Debug, Default)]
pub struct CardCache {
    read_at: Option<Instant>,
    cards: BTreeMap<String, Option<MmcCard>>,
}

impl CardCache {
    /// The card of `disk` (see [`read_card`]).
    pub fn card(&mut self, sys_root: &Path, disk: &str) -> Option<MmcCard> {
        if self
            .read_at
            .is_none_or(|t| t.elapsed() >= CARD_REFRESH)
        {
            self.cards.clear();
            self.read_at = Some(Instant::now());
        }
        self.cards
            .entry(disk.to_owned())
            .or_insert_with(|| read_card(sys_root, disk))
            .clone()
    }
}
