//! Decoding of Wi-Fi facts shared by both sources: NetworkManager's state reasons and
//! security flags, the band of a frequency, and the kernel's `/proc/net/wireless`.

use std::path::Path;

use crate::stats::model::Wifi;

/// The band a channel's centre frequency (MHz) belongs to.
pub(super) fn band_of(frequency_mhz: u32) -> Option<&'static str> {
    match frequency_mhz {
        2400..=2500 => Some("2.4 GHz"),
        // 5.955 GHz (channel 1 of U-NII-5) and up is the 6 GHz band.
        4900..=5949 => Some("5 GHz"),
        5950..=7125 => Some("6 GHz"),
        _ => None,
    }
}

/// `NM80211ApFlags`: the access point requires encryption.
const AP_PRIVACY: u32 = 0x1;
/// `NM80211ApSecurityFlags` key management bits.
const KEY_PSK: u32 = 0x100;
const KEY_8021X: u32 = 0x200;
const KEY_SAE: u32 = 0x400;
const KEY_OWE: u32 = 0x800 | 0x1000;
const KEY_SUITE_B_192: u32 = 0x2000;

/// The access point's security from its `Flags`, `WpaFlags` and `RsnFlags`, in the words
/// `nmcli` uses: `open`, `WEP`, `WPA`, `WPA2`, `WPA3` (joined with `/` when the network
/// offers several), `OWE`; ` Enterprise` is added for 802.1X key management.
pub(super) fn security(flags: u32, wpa: u32, rsn: u32) -> String {
    if wpa == 0 && rsn == 0 {
        return if flags & AP_PRIVACY != 0 {
            "WEP"
        } else {
            "open"
        }
        .to_owned();
    }
    if rsn & KEY_OWE != 0 && rsn & (KEY_PSK | KEY_8021X | KEY_SAE) == 0 {
        return "OWE".to_owned();
    }
    let mut kinds = Vec::new();
    if wpa != 0 {
        kinds.push("WPA");
    }
    if rsn & (KEY_PSK | KEY_8021X) != 0 {
        kinds.push("WPA2");
    }
    if rsn & (KEY_SAE | KEY_SUITE_B_192) != 0 {
        kinds.push("WPA3");
    }
    if kinds.is_empty() {
        // RSN without a key management NetworkManager names: still protected.
        kinds.push("WPA2");
    }
    let mut words = kinds.join("/");
    if (wpa | rsn) & (KEY_8021X | KEY_SUITE_B_192) != 0 {
        words.push_str(" Enterprise");
    }
    words
}

/// `NMDeviceStateReason` in words; `None` for `NONE` (no reason given).
pub(super) fn reason_words(code: u32) -> Option<String> {
    let words = match code {
        0 => return None,
        1 => "unknown",
        2 => "now managed",
        3 => "now unmanaged",
        4 => "configuration failed",
        5 => "IP configuration unavailable",
        6 => "IP configuration expired",
        7 => "no secrets (wrong or missing password)",
        8 => "supplicant disconnected",
        9 => "supplicant configuration failed",
        10 => "supplicant failed",
        11 => "supplicant timeout",
        12 => "PPP start failed",
        13 => "PPP disconnected",
        14 => "PPP failed",
        15 => "DHCP start failed",
        16 => "DHCP error",
        17 => "DHCP failed",
        18 => "shared connection start failed",
        19 => "shared connection failed",
        20 => "AutoIP start failed",
        21 => "AutoIP error",
        22 => "AutoIP failed",
        23 => "modem busy",
        24 => "modem no dial tone",
        25 => "modem no carrier",
        26 => "modem dial timeout",
        27 => "modem dial failed",
        28 => "modem initialization failed",
        29 => "GSM APN failed",
        30 => "GSM registration not searching",
        31 => "GSM registration denied",
        32 => "GSM registration timeout",
        33 => "GSM registration failed",
        34 => "GSM PIN check failed",
        35 => "firmware missing",
        36 => "device removed",
        37 => "sleeping",
        38 => "connection removed",
        39 => "disconnected by user",
        40 => "carrier lost",
        41 => "connection assumed",
        42 => "supplicant available",
        43 => "modem not found",
        44 => "Bluetooth failed",
        45 => "SIM not inserted",
        46 => "SIM PIN required",
        47 => "SIM PUK required",
        48 => "wrong SIM",
        49 => "InfiniBand mode",
        50 => "dependency failed",
        51 => "BR2684 failed",
        52 => "ModemManager unavailable",
        53 => "SSID not found",
        54 => "secondary connection failed",
        55 => "DCB/FCoE failed",
        56 => "teamd control failed",
        57 => "modem failed",
        58 => "modem available",
        59 => "SIM PIN incorrect",
        60 => "new activation",
        61 => "parent changed",
        62 => "parent managed changed",
        63 => "OVSDB failed",
        64 => "duplicate IP address",
        65 => "IP method unsupported",
        66 => "SR-IOV configuration failed",
        67 => "peer not found",
        other => return Some(format!("reason {other}")),
    };
    Some(words.to_owned())
}

/// cfg80211's `max_qual.qual`: every driver on the cfg80211 stack (all in-tree Wi-Fi drivers,
/// Raspberry Pi's brcmfmac included) reports link quality as `signal + 110` clamped to 0–70.
const CFG80211_MAX_QUALITY: f64 = 70.0;

/// Signal and quality of `interface` from `PROC/net/wireless`, the kernel's wireless
/// extensions view, whose layout (`net/wireless/wext-proc.c`) is:
///
/// ```text
/// Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE
///  face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22
///  wlan0: 0000   70.  -40.  -256        0      0      0      0      0        0
/// ```
///
/// A value is valid when followed by `.` (its "updated" flag); the level is in dBm when
/// negative. cfg80211 lists an interface only while it is associated, so a wireless
/// interface missing here has all fields `None`. `None` when the interface is not listed.
pub(super) fn from_proc(proc_root: &Path, interface: &str) -> Option<Wifi> {
    let text = std::fs::read_to_string(proc_root.join("net/wireless")).ok()?;
    parse_proc(&text, interface)
}

pub(super) fn parse_proc(text: &str, interface: &str) -> Option<Wifi> {
    let line = text.lines().skip(2).find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        (name.trim() == interface).then_some(rest)
    })?;
    let mut fields = line.split_whitespace();
    let _status = fields.next();
    // A valid value ends in `.`; one without is stale or not supported by the driver.
    let mut valid = || -> Option<f64> {
        let field = fields.next()?;
        field.strip_suffix('.')?.parse::<f64>().ok()
    };
    let (link, level) = (valid(), valid());
    let quality = link
        .filter(|q| q.is_finite() && *q >= 0.0)
        .map(|q| (q * 100.0 / CFG80211_MAX_QUALITY).round().min(100.0) as u8);
    let signal = level
        .filter(|l| l.is_finite() && *l < 0.0 && *l > -256.0)
        .map(|l| l.round() as i32);
    Some(Wifi {
        quality_percent: quality,
        signal_dbm: signal,
        ..Wifi::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Raspberry Pi 4 (brcmfmac) associated at -40 dBm, as `cat /proc/net/wireless` shows it.
    const PI4: &str = include_str!("../../tests/fixtures/pi4/proc/net/wireless");

    #[test]
    fn reads_signal_and_quality_of_the_interface() {
        let wifi = parse_proc(PI4, "wlan0").expect("wlan0 is listed");
        assert_eq!(wifi.signal_dbm, Some(-40));
        assert_eq!(wifi.quality_percent, Some(100));
        // The kernel does not know the rest; it is not guessed.
        assert_eq!(wifi.ssid, None);
        assert_eq!(wifi.bssid, None);
        assert_eq!(wifi.frequency_mhz, None);
        assert_eq!(wifi.bitrate_kbps, None);
        let weak = parse_proc(PI4, "wlan1").expect("wlan1 is listed");
        assert_eq!(weak.signal_dbm, Some(-78));
        assert_eq!(weak.quality_percent, Some(46));
    }

    #[test]
    fn values_without_the_updated_flag_are_unknown() {
        let wifi = parse_proc(PI4, "wlan2").expect("wlan2 is listed");
        assert_eq!(wifi.signal_dbm, None);
        assert_eq!(wifi.quality_percent, None);
    }

    #[test]
    fn unlisted_interfaces_and_garbage_are_none() {
        assert_eq!(parse_proc(PI4, "eth0"), None);
        assert_eq!(parse_proc(PI4, "wlan"), None);
        assert_eq!(parse_proc("", "wlan0"), None);
        let garbage = "x\ny\n wlan0: zz 1e999. nan. -9999.\n";
        let wifi = parse_proc(garbage, "wlan0").unwrap();
        assert_eq!((wifi.signal_dbm, wifi.quality_percent), (None, None));
    }

    #[test]
    fn bands() {
        assert_eq!(band_of(2412), Some("2.4 GHz"));
        assert_eq!(band_of(5180), Some("5 GHz"));
        assert_eq!(band_of(5955), Some("6 GHz"));
        assert_eq!(band_of(0), None);
    }

    #[test]
    fn security_words() {
        assert_eq!(security(0, 0, 0), "open");
        assert_eq!(security(AP_PRIVACY, 0, 0), "WEP");
        // A typical home router: CCMP pairwise and group, PSK.
        assert_eq!(security(AP_PRIVACY, 0, 0x188), "WPA2");
        assert_eq!(security(AP_PRIVACY, 0x144, 0x188), "WPA/WPA2");
        assert_eq!(security(AP_PRIVACY, 0, 0x588), "WPA2/WPA3");
        assert_eq!(security(AP_PRIVACY, 0, 0x488), "WPA3");
        assert_eq!(security(AP_PRIVACY, 0, 0x288), "WPA2 Enterprise");
        assert_eq!(security(0, 0, 0x888), "OWE");
    }

    #[test]
    fn reasons() {
        assert_eq!(reason_words(0), None);
        assert_eq!(reason_words(11).as_deref(), Some("supplicant timeout"));
        assert_eq!(reason_words(40).as_deref(), Some("carrier lost"));
        assert_eq!(reason_words(999).as_deref(), Some("reason 999"));
    }
}
