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
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::model::MmcCard;
use super::procfs::read_trimmed;

/// How long card attributes are reused before they are read again.
pub const CARD_REFRESH: Duration = Duration::from_secs(600);

/// The card behind `/sys/block/NAME`, or `None` when NAME is not an MMC block device. An
/// eMMC's boot partitions (`mmcblk0boot0`, `…boot1`) are disks of the same card: the card is
/// reported once, on `mmcblkN`.
pub fn read_card(sys_root: &Path, disk: &str) -> Option<MmcCard> {
    let index = disk.strip_prefix("mmcblk")?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
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
    let mut parts = text.split_ascii_whitespace();
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
    cards: BTreeMap<String, Option<Arc<MmcCard>>>,
}

impl CardCache {
    /// The card of `disk` (see [`read_card`]), shared by the documents until the next read.
    pub fn card(&mut self, sys_root: &Path, disk: &str) -> Option<Arc<MmcCard>> {
        if self.read_at.is_none_or(|t| t.elapsed() >= CARD_REFRESH) {
            self.cards.clear();
            self.read_at = Some(Instant::now());
        }
        if let Some(card) = self.cards.get(disk) {
            return card.clone();
        }
        let card = read_card(sys_root, disk).map(Arc::new);
        self.cards.insert(disk.to_owned(), card.clone());
        card
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::*;
    use crate::config::Config;
    use crate::stats::{Collector, Context};

    fn board(name: &str) -> (PathBuf, PathBuf) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        (dir.join("proc"), dir.join("sys"))
    }

    /// The whole collector's document on a board's fixture tree (no `vcgencmd`), and its JSON.
    fn board_document(name: &str) -> (crate::stats::StatsDocument, serde_json::Value) {
        let (proc_root, sys_root) = board(name);
        let config = Config {
            proc_root,
            sys_root,
            vcgencmd: PathBuf::from("/nonexistent"),
            ..Config::default()
        };
        let doc = Collector::new(&config).collect(Context::default());
        let v = serde_json::to_value(&doc).unwrap();
        (doc, v)
    }

    #[test]
    fn sd_card_identity_without_wear() {
        let (_, sys) = board("pi5");
        let card = read_card(&sys, "mmcblk0").unwrap();
        assert_eq!(
            card,
            MmcCard {
                kind: "SD".into(),
                name: Some("SR64G".into()),
                manufacturer_id: Some("0x000003".into()),
                oem_id: Some("0x5344".into()),
                date: Some("08/2023".into()),
                serial: Some("0x8c1e42a7".into()),
                life_time: None,
                pre_eol_info: None,
            }
        );
        assert_eq!(card.life_time_used_percent(), None);
        assert_eq!(read_card(&sys, "nvme0n1"), None);
        assert_eq!(read_card(&sys, "mmcblk9"), None);
    }

    /// An eMMC (e.g. a Compute Module 4's), with the attributes as `drivers/mmc/core/mmc.c`
    /// prints them.
    #[test]
    fn emmc_wear_is_decoded() {
        let tmp = tempfile::tempdir().unwrap();
        let dev = tmp.path().join("block/mmcblk0/device");
        fs::create_dir_all(&dev).unwrap();
        for (file, text) in [
            ("type", "MMC\n"),
            ("name", "BJTD4R\n"),
            ("manfid", "0x000015\n"),
            ("oemid", "0x0100\n"),
            ("date", "01/2021\n"),
            ("serial", "0x1234abcd\n"),
            ("life_time", "0x02 0x0b\n"),
            ("pre_eol_info", "0x02\n"),
        ] {
            fs::write(dev.join(file), text).unwrap();
        }
        let card = read_card(tmp.path(), "mmcblk0").unwrap();
        assert_eq!(card.life_time, Some((0x02, 0x0B)));
        assert_eq!(card.life_time_used_percent(), Some(100));
        assert_eq!(
            card.pre_eol_words(),
            Some("warning: 80 % of reserved blocks consumed")
        );
        assert_eq!(
            crate::stats::model::life_time_words(0x02).as_deref(),
            Some("10-20 % used")
        );
        assert_eq!(
            crate::stats::model::life_time_words(0x0B).as_deref(),
            Some("exceeded")
        );
        assert_eq!(crate::stats::model::life_time_words(0x00), None);

        fs::write(dev.join("life_time"), "0x01 0x03\n").unwrap();
        fs::write(dev.join("pre_eol_info"), "0x00\n").unwrap();
        let card = read_card(tmp.path(), "mmcblk0").unwrap();
        assert_eq!(card.life_time_used_percent(), Some(30));
        assert_eq!(card.pre_eol_words(), None, "0x00 is 'not defined'");

        for bad in [
            "",
            "0x01",
            "1 2",
            "0x01 0x02 0x03",
            "0x1ff 0x01",
            "\u{fffd}",
        ] {
            fs::write(dev.join("life_time"), bad).unwrap();
            assert_eq!(
                read_card(tmp.path(), "mmcblk0").unwrap().life_time,
                None,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cache_rereads_a_new_disk_but_not_a_known_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dev = tmp.path().join("block/mmcblk1/device");
        let mut cache = CardCache::default();
        assert_eq!(cache.card(tmp.path(), "mmcblk1"), None);
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("type"), "SD\n").unwrap();
        // Within the refresh period the first answer stands.
        assert_eq!(cache.card(tmp.path(), "mmcblk1"), None);
        cache.read_at = Some(Instant::now() - CARD_REFRESH);
        assert_eq!(cache.card(tmp.path(), "mmcblk1").unwrap().kind, "SD");
    }

    /// The whole collector on the Pi 5 tree: every hwmon chip, the fan, per-disk counters and
    /// the SD card reach the JSON document.
    #[test]
    fn pi5_document_has_sensors_fans_and_disks() {
        let (_, v) = board_document("pi5");
        let sensors = &v["temperature"]["sensors"];
        assert_eq!(sensors["rp1_adc"][0]["current"], 54.311, "{sensors}");
        assert_eq!(sensors["nvme"][0]["label"], "Composite");
        assert_eq!(sensors["nvme"][0]["critical"], 84.85);
        assert_eq!(sensors["nvme"][1]["label"], "Sensor 1");
        assert_eq!(sensors["cpu_thermal"][0]["current"], 51.25);
        let fans = &v["temperature"]["fans"];
        assert_eq!(fans[0]["name"], "pwmfan", "{fans}");
        assert_eq!(fans[0]["rpm"], 2946.0);
        assert_eq!(fans[0]["pwm_percent"], 29.4);
        assert_eq!(fans[0]["cooling_state"], 1);
        assert_eq!(fans[0]["cooling_max_state"], 4);
        let devices = &v["disk"]["devices"];
        assert_eq!(
            devices.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["mmcblk0", "nvme0n1"],
            "partitions and loop devices are not disks"
        );
        assert_eq!(devices["nvme0n1"]["written_bytes"], 9_812_344u64 * 512);
        assert_eq!(devices["nvme0n1"]["read_bytes"], 4_402_870u64 * 512);
        assert!(devices["nvme0n1"]["card"].is_null());
        let card = &devices["mmcblk0"]["card"];
        assert_eq!(card["type"], "SD");
        assert_eq!(card["name"], "SR64G");
        assert_eq!(card["manufacturer_id"], "0x000003");
        assert!(card["life_time_used_percent"].is_null());
        assert!(card["pre_eol"].is_null());
        // The all-disk sum is unchanged by the per-disk split.
        assert_eq!(
            v["disk"]["io_counters"]["write_bytes"],
            (9_812_344u64 + 24) * 512
        );
        assert_eq!(v["pi"]["undervoltage_detection"], true);
        assert_eq!(v["pi"]["throttled"]["under_voltage"], false);
    }

    #[test]
    fn cm4_emmc_wear_and_no_under_voltage_verdict() {
        let (doc, v) = board_document("cm4");
        let devices = &v["disk"]["devices"];
        let card = &devices["mmcblk0"]["card"];
        assert_eq!(card["type"], "MMC", "{devices}");
        assert_eq!(card["life_time_raw"], "0x02 0x01");
        assert_eq!(card["life_time_a"], "10-20 % used");
        assert_eq!(card["life_time_b"], "0-10 % used");
        assert_eq!(card["life_time_used_percent"], 20);
        assert_eq!(card["pre_eol"], "normal");
        // The boot partitions are disks of their own, without a second copy of the card.
        assert!(devices["mmcblk0boot0"]["card"].is_null());
        assert_eq!(devices["mmcblk0boot0"]["read_count"], 22);
        assert!(
            v["pi"]["throttled"]["under_voltage"].is_null(),
            "{}",
            v["pi"]
        );
        let text = crate::metrics::render(&doc, &crate::metrics::OwnMetrics::default());
        assert!(
            text.contains(r#"pistats_mmc_life_time_used_percent{device="mmcblk0",type="A"} 20"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pistats_mmc_pre_eol_info{device="mmcblk0"} 1"#),
            "{text}"
        );
        assert_eq!(text.matches("pistats_mmc_card_info{").count(), 1, "{text}");
    }

    #[test]
    fn pi4_sd_card() {
        let (_, sys) = board("pi4");
        let card = read_card(&sys, "mmcblk0").unwrap();
        assert_eq!(
            (card.kind.as_str(), card.name.as_deref()),
            ("SD", Some("USD00"))
        );
        assert_eq!(card.date.as_deref(), Some("03/2021"));
    }

    #[test]
    fn pizerow_document_says_under_voltage_is_unknown() {
        let (doc, v) = board_document("pizerow");
        assert_eq!(v["system"]["model"], "Raspberry Pi Zero W Rev 1.1");
        assert!(
            v["pi"]["throttled"]["under_voltage"].is_null(),
            "{}",
            v["pi"]
        );
        assert!(v["pi"]["throttled"]["under_voltage_occurred"].is_null());
        assert_eq!(v["pi"]["undervoltage_detection"], false);
        assert_eq!(v["temperature"]["fans"], serde_json::json!([]));
        assert_eq!(v["disk"]["devices"]["mmcblk0"]["card"]["name"], "SC16G");
        assert_eq!(
            v["disk"]["devices"]["mmcblk0"]["written_bytes"],
            302_212u64 * 512
        );
        // Written per day comes from the history, which a bare collection has not.
        assert!(v["disk"]["devices"]["mmcblk0"]["written_today_bytes"].is_null());
        assert_eq!(
            v["disk"]["devices"]["mmcblk0"]["written_per_day"],
            serde_json::json!([])
        );
        let mut doc = doc;
        if let Some(dev) = doc.disk.devices.get_mut("mmcblk0") {
            dev.written = Some(crate::history::Written {
                today: 4096,
                per_day: vec![(crate::history::Day::from_ymd(2026, 11, 25), 1 << 20)],
            });
        }
        let w = serde_json::to_value(&doc).unwrap();
        assert_eq!(w["disk"]["devices"]["mmcblk0"]["written_today_bytes"], 4096);
        assert_eq!(
            w["disk"]["devices"]["mmcblk0"]["written_per_day"],
            serde_json::json!([{"date": "2026-11-25", "bytes": 1_048_576}])
        );
        let text = crate::metrics::render(&doc, &crate::metrics::OwnMetrics::default());
        assert!(!text.contains(r#"flag="under_voltage""#), "{text}");
        assert!(
            text.contains("pistats_pi_undervoltage_detection 0"),
            "{text}"
        );
        assert!(
            text.contains(r#"pistats_disk_device_written_bytes_total{device="mmcblk0"} 154732544"#),
            "{text}"
        );
    }
}
