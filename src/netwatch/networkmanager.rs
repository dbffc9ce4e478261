//! NetworkManager as the connectivity source, over the system bus.
//!
//! The device is resolved by interface name (`GetDeviceByIpIface`); its `State`, `StateReason`
//! and the `AddressData` of its current IPv4/IPv6 configuration objects make up the view, and
//! for a Wi-Fi device also its `Bitrate` and its `ActiveAccessPoint`'s properties (a roam
//! changes that path, so the access point watched is always the current one). All of
//! NetworkManager's signals come through one match rule on its unique name; a relevant one
//! (a watched property changed, the device appeared or disappeared) triggers a fresh read,
//! so the published view never depends on the order or completeness of signal payloads.
//!
//! A read takes several round trips, and what it finds (the device's path, its IP
//! configuration paths) is only known at its end. A signal that arrives during a read is
//! therefore judged twice: against the paths watched before the read and against the paths
//! the read found. If either makes it relevant, one more read follows. Otherwise a device
//! that activates while it is being resolved (at boot, when the state moves fastest) would
//! stay "not connected" until its next change.

use std::collections::HashMap;

use futures_util::StreamExt;
use zbus::message::Type;
use zbus::names::UniqueName;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection, MatchRule, Message, MessageStream};

use super::{wifi, Publisher};
use crate::stats::model::{Connectivity, Wifi};

pub(super) const SOURCE: &str = "networkmanager";

const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const NM_IFACE: &str = "org.freedesktop.NetworkManager";
const DEVICE_IFACE: &str = "org.freedesktop.NetworkManager.Device";
const IP4_IFACE: &str = "org.freedesktop.NetworkManager.IP4Config";
const IP6_IFACE: &str = "org.freedesktop.NetworkManager.IP6Config";
const WIRELESS_IFACE: &str = "org.freedesktop.NetworkManager.Device.Wireless";
const AP_IFACE: &str = "org.freedesktop.NetworkManager.AccessPoint";
const PROPERTIES_IFACE: &str = "org.freedesktop.DBus.Properties";
const UNKNOWN_DEVICE: &str = "org.freedesktop.NetworkManager.UnknownDevice";
/// `NM_DEVICE_STATE_ACTIVATED`: the device is connected and has its IP configuration.
const STATE_ACTIVATED: u32 = 100;
/// `NM_DEVICE_TYPE_WIFI`.
const TYPE_WIFI: u32 = 2;
/// Properties of the access point that make up [`Wifi`]; a change to any means a re-read.
const AP_PROPERTIES: [&str; 7] = [
    "Ssid",
    "HwAddress",
    "Strength",
    "Frequency",
    "Flags",
    "WpaFlags",
    "RsnFlags",
];
/// Signals queued for the watcher. A full queue holds back the connection's reader (zbus
/// drops nothing), so the watcher keeps consuming signals while it reads.
const QUEUE: usize = 64;
/// Distinct signal subjects remembered during one read; beyond that, the read is followed
/// by a fresh resolve whatever they were.
const LATE_MAX: usize = 256;

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager",
    default_path = "/org/freedesktop/NetworkManager"
)]
trait NetworkManager {
    fn get_device_by_ip_iface(&self, iface: &str) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(interface = "org.freedesktop.NetworkManager.Device")]
trait Device {
    #[zbus(property)]
    fn state(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn ip4_config(&self) -> zbus::Result<OwnedObjectPath>;
    #[zbus(property)]
    fn ip6_config(&self) -> zbus::Result<OwnedObjectPath>;
    /// The current state and the reason the device entered it.
    #[zbus(property)]
    fn state_reason(&self) -> zbus::Result<(u32, u32)>;
    #[zbus(property)]
    fn device_type(&self) -> zbus::Result<u32>;
}

#[zbus::proxy(interface = "org.freedesktop.NetworkManager.Device.Wireless")]
trait Wireless {
    #[zbus(property)]
    fn active_access_point(&self) -> zbus::Result<OwnedObjectPath>;
    /// kbit/s.
    #[zbus(property)]
    fn bitrate(&self) -> zbus::Result<u32>;
}

#[zbus::proxy(interface = "org.freedesktop.NetworkManager.AccessPoint")]
trait AccessPoint {
    #[zbus(property)]
    fn ssid(&self) -> zbus::Result<Vec<u8>>;
    #[zbus(property)]
    fn hw_address(&self) -> zbus::Result<String>;
    /// Percent, 0–100.
    #[zbus(property)]
    fn strength(&self) -> zbus::Result<u8>;
    /// MHz.
    #[zbus(property)]
    fn frequency(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn flags(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn wpa_flags(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn rsn_flags(&self) -> zbus::Result<u32>;
}

/// `IP4Config` and `IP6Config` share the property; only the interface name differs.
#[zbus::proxy(interface = "org.freedesktop.NetworkManager.IP4Config")]
trait IpConfig {
    #[zbus(property)]
    fn address_data(&self) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;
}

/// `NMDeviceState` names, as `nmcli` prints them.
pub(super) fn state_name(state: u32) -> String {
    match state {
        0 => "unknown",
        10 => "unmanaged",
        20 => "unavailable",
        30 => "disconnected",
        40 => "prepare",
        50 => "config",
        60 => "need-auth",
        70 => "ip-config",
        80 => "ip-check",
        90 => "secondaries",
        100 => "activated",
        110 => "deactivating",
        120 => "failed",
        other => return format!("state-{other}"),
    }
    .to_owned()
}

/// Object paths the current view came from; signals about anything else are ignored.
#[derive(Debug, Default)]
struct Watched {
    device: Option<OwnedObjectPath>,
    ip4: Option<OwnedObjectPath>,
    ip6: Option<OwnedObjectPath>,
    /// The wireless device's active access point.
    ap: Option<OwnedObjectPath>,
}

enum Event {
    /// The device may have appeared or gone: resolve it again.
    Resolve,
    /// Something the view depends on changed: read it again.
    Reread,
    Ignore,
}

/// Follows `interface` through NetworkManager (the bus peer `owner`) until an error, which is
/// returned. A missing device is not an error: it is published as `absent` and followed
/// until NetworkManager adds it.
pub(super) async fn follow(
    conn: &Connection,
    owner: &UniqueName<'_>,
    interface: &str,
    out: &Publisher,
) -> zbus::Error {
    match follow_inner(conn, owner, interface, out).await {
        Ok(never) => match never {},
        Err(err) => err,
    }
}

async fn follow_inner(
    conn: &Connection,
    owner: &UniqueName<'_>,
    interface: &str,
    out: &Publisher,
) -> zbus::Result<std::convert::Infallible> {
    // Subscribe first, so nothing that happens during the first read is missed.
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .sender(owner.to_owned())?
        .path_namespace(NM_PATH)?
        .build();
    let mut signals = MessageStream::for_match_rule(rule, conn, Some(QUEUE)).await?;
    let manager = NetworkManagerProxy::builder(conn)
        .destination(owner.to_owned())?
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let mut watched = Watched::default();
    let mut pending = Some(Event::Resolve);
    loop {
        let Some(event) = pending.take() else {
            let msg = next_signal(signals.next().await)?;
            if let Some(touch) = Touch::of(&msg) {
                pending = merge(None, touch.event(&watched));
            }
            continue;
        };
        // Signals keep being consumed while reading: an unread backlog would stall the
        // connection's reader, and with it the replies the read is waiting for.
        let device = match event {
            Event::Resolve => None,
            _ => watched.device.clone(),
        };
        let read = refresh(conn, owner, &manager, interface, device);
        tokio::pin!(read);
        // What the signals during the read were about, to judge again against its result.
        let mut late: Vec<Touch> = Vec::new();
        let mut overflow = false;
        let (fresh, view) = loop {
            tokio::select! {
                biased;
                read = &mut read => break read?,
                msg = signals.next() => {
                    let Some(touch) = Touch::of(&next_signal(msg)?) else { continue };
                    pending = merge(pending, touch.event(&watched));
                    if late.len() >= LATE_MAX {
                        overflow = true;
                    } else if !late.contains(&touch) {
                        late.push(touch);
                    }
                }
            }
        };
        for touch in &late {
            pending = merge(pending, touch.event(&fresh));
        }
        if overflow {
            pending = merge(pending, Event::Resolve);
        }
        if pending.is_some() {
            tracing::debug!("network: NetworkManager changed during a read; reading again");
        }
        watched = fresh;
        out.publish(view);
    }
}

fn next_signal(msg: Option<zbus::Result<Message>>) -> zbus::Result<Message> {
    msg.unwrap_or_else(|| {
        Err(zbus::Error::InputOutput(std::sync::Arc::new(
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        )))
    })
}

/// The stronger of two pending actions.
fn merge(pending: Option<Event>, event: Event) -> Option<Event> {
    match (pending, event) {
        (Some(Event::Resolve), _) | (_, Event::Resolve) => Some(Event::Resolve),
        (Some(Event::Reread), _) | (_, Event::Reread) => Some(Event::Reread),
        (None, Event::Ignore) => None,
        (Some(Event::Ignore), Event::Ignore) => None,
    }
}

/// Reads the view: of `device`, or of whatever device has the interface when `None`.
async fn refresh(
    conn: &Connection,
    owner: &UniqueName<'_>,
    manager: &NetworkManagerProxy<'_>,
    interface: &str,
    device: Option<OwnedObjectPath>,
) -> zbus::Result<(Watched, Connectivity)> {
    let device = match device {
        Some(device) => Some(device),
        None => resolve_device(manager, interface).await?,
    };
    match device {
        Some(device) => {
            let (view, mut watched) = read_device(conn, owner, &device, interface).await?;
            watched.device = Some(device);
            Ok((watched, view))
        }
        None => Ok((Watched::default(), absent(interface))),
    }
}

/// The device's object path, or `None` when NetworkManager does not know the interface.
async fn resolve_device(
    manager: &NetworkManagerProxy<'_>,
    interface: &str,
) -> zbus::Result<Option<OwnedObjectPath>> {
    match manager.get_device_by_ip_iface(interface).await {
        Ok(path) => {
            tracing::debug!("network: NetworkManager device for {interface} is {path}");
            Ok(Some(path))
        }
        Err(zbus::Error::MethodError(name, _, _)) if name.as_str() == UNKNOWN_DEVICE => {
            tracing::debug!("network: NetworkManager has no device {interface} (yet)");
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

fn absent(interface: &str) -> Connectivity {
    Connectivity {
        source: SOURCE,
        interface: interface.to_owned(),
        state: "absent".into(),
        ..Connectivity::default()
    }
}

/// Reads the device's state, reason, addresses and Wi-Fi link, with the paths of the
/// objects they came from (all but the device's own, which the caller knows).
async fn read_device(
    conn: &Connection,
    owner: &UniqueName<'_>,
    device: &ObjectPath<'_>,
    interface: &str,
) -> zbus::Result<(Connectivity, Watched)> {
    let proxy = DeviceProxy::builder(conn)
        .destination(owner.to_owned())?
        .path(device.to_owned())?
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let state = proxy.state().await?;
    let ip4 = config_path(proxy.ip4_config().await?);
    let ip6 = config_path(proxy.ip6_config().await?);
    let mut addresses = Vec::new();
    for (path, iface) in [(&ip4, IP4_IFACE), (&ip6, IP6_IFACE)] {
        if let Some(path) = path {
            addresses.extend(read_addresses(conn, owner, path, iface).await?);
        }
    }
    // Older NetworkManager versions lack `StateReason`; the view then has no reason.
    let reason = match proxy.state_reason().await {
        Ok((_, code)) if state != STATE_ACTIVATED => wifi::reason_words(code),
        _ => None,
    };
    // A device whose type cannot be read is followed like a wired one.
    let kind = match proxy.device_type().await {
        Ok(kind) => Some(kind),
        Err(zbus::Error::MethodError(..) | zbus::Error::FDO(_)) => None,
        Err(err) => return Err(err),
    };
    let (wifi, ap) = if kind == Some(TYPE_WIFI) {
        let (wifi, ap) = read_wifi(conn, owner, device).await?;
        (Some(wifi), ap)
    } else {
        (None, None)
    };
    let view = Connectivity {
        source: SOURCE,
        interface: interface.to_owned(),
        state: state_name(state),
        connected: state == STATE_ACTIVATED,
        addresses,
        reason,
        wifi,
    };
    Ok((
        view,
        Watched {
            device: None,
            ip4,
            ip6,
            ap,
        },
    ))
}

/// The wireless device's bit rate and its active access point's properties, with the
/// access point's path. An access point that vanished between reading its path and its
/// properties (a roam) counts as none: the device's own change signal follows.
async fn read_wifi(
    conn: &Connection,
    owner: &UniqueName<'_>,
    device: &ObjectPath<'_>,
) -> zbus::Result<(Wifi, Option<OwnedObjectPath>)> {
    let wireless = WirelessProxy::builder(conn)
        .destination(owner.to_owned())?
        .path(device.to_owned())?
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let mut wifi = Wifi {
        bitrate_kbps: Some(wireless.bitrate().await?).filter(|&b| b > 0),
        ..Wifi::default()
    };
    let Some(ap) = config_path(wireless.active_access_point().await?) else {
        return Ok((wifi, None));
    };
    let proxy = AccessPointProxy::builder(conn)
        .destination(owner.to_owned())?
        .path(ap.clone())?
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let read = async {
        wifi.ssid = Some(String::from_utf8_lossy(&proxy.ssid().await?).into_owned());
        wifi.bssid = Some(proxy.hw_address().await?.to_ascii_uppercase()).filter(|b| !b.is_empty());
        wifi.quality_percent = Some(proxy.strength().await?.min(100));
        let frequency = proxy.frequency().await?;
        wifi.frequency_mhz = Some(frequency).filter(|&f| f > 0);
        wifi.band = wifi::band_of(frequency);
        let (flags, wpa, rsn) = (
            proxy.flags().await?,
            proxy.wpa_flags().await?,
            proxy.rsn_flags().await?,
        );
        wifi.security = Some(wifi::security(flags, wpa, rsn));
        zbus::Result::Ok(())
    };
    match read.await {
        Ok(()) => Ok((wifi, Some(ap))),
        Err(zbus::Error::MethodError(..) | zbus::Error::FDO(_)) => Ok((
            Wifi {
                bitrate_kbps: wifi.bitrate_kbps,
                ..Wifi::default()
            },
            Some(ap),
        )),
        Err(err) => Err(err),
    }
}

/// NetworkManager uses `/` for "no configuration".
fn config_path(path: OwnedObjectPath) -> Option<OwnedObjectPath> {
    (path.as_str() != "/").then_some(path)
}

/// `address/prefix` for each address of an IP configuration object. A configuration that
/// vanished between reading its path and its addresses has none: the device's own change
/// signal follows and triggers another read.
async fn read_addresses(
    conn: &Connection,
    owner: &UniqueName<'_>,
    path: &ObjectPath<'_>,
    iface: &'static str,
) -> zbus::Result<Vec<String>> {
    let proxy = IpConfigProxy::builder(conn)
        .destination(owner.to_owned())?
        .path(path.to_owned())?
        .interface(iface)?
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let data = match proxy.address_data().await {
        Ok(data) => data,
        Err(zbus::Error::MethodError(..) | zbus::Error::FDO(_)) => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    Ok(data
        .iter()
        .filter_map(|entry| {
            let address = entry.get("address")?.downcast_ref::<&str>().ok()?;
            Some(
                match entry
                    .get("prefix")
                    .and_then(|p| p.downcast_ref::<u32>().ok())
                {
                    Some(prefix) => format!("{address}/{prefix}"),
                    None => address.to_owned(),
                },
            )
        })
        .collect())
}

/// What a NetworkManager signal is about, independent of what is being watched.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Touch {
    DeviceAdded,
    DeviceRemoved(OwnedObjectPath),
    /// The state or the IP configuration paths of the device at this path.
    Device(OwnedObjectPath),
    /// The addresses of the IPv4 configuration at this path.
    Ip4(OwnedObjectPath),
    /// The addresses of the IPv6 configuration at this path.
    Ip6(OwnedObjectPath),
    /// The properties of the access point at this path.
    Ap(OwnedObjectPath),
}

impl Touch {
    /// `None` for signals that never matter to the view (other properties, other objects'
    /// signals are filtered by [`Touch::event`]).
    fn of(msg: &Message) -> Option<Touch> {
        let header = msg.header();
        let (Some(path), Some(iface), Some(member)) =
            (header.path(), header.interface(), header.member())
        else {
            return None;
        };
        let path = || OwnedObjectPath::from(path.to_owned());
        match (iface.as_str(), member.as_str()) {
            (NM_IFACE, "DeviceAdded") => Some(Touch::DeviceAdded),
            (NM_IFACE, "DeviceRemoved") => msg
                .body()
                .deserialize::<ObjectPath<'_>>()
                .ok()
                .map(|removed| Touch::DeviceRemoved(removed.into())),
            // Emitted by NetworkManager next to the property change; either is enough.
            (DEVICE_IFACE, "StateChanged") => Some(Touch::Device(path())),
            // The interface-specific signals of NetworkManager before 1.2x, which carry the
            // same properties as the standard one.
            (WIRELESS_IFACE, "PropertiesChanged") => Some(Touch::Device(path())),
            (AP_IFACE, "PropertiesChanged") => Some(Touch::Ap(path())),
            (PROPERTIES_IFACE, "PropertiesChanged") => {
                type Changed<'a> = (&'a str, HashMap<&'a str, Value<'a>>, Vec<&'a str>);
                let body = msg.body();
                let (changed_iface, changed, invalidated) =
                    body.deserialize::<Changed<'_>>().ok()?;
                let touches = |names: &[&str]| {
                    names
                        .iter()
                        .any(|n| changed.contains_key(n) || invalidated.contains(n))
                };
                let addresses = ["AddressData", "Addresses"];
                match changed_iface {
                    DEVICE_IFACE
                        if touches(&["State", "StateReason", "Ip4Config", "Ip6Config"]) =>
                    {
                        Some(Touch::Device(path()))
                    }
                    WIRELESS_IFACE if touches(&["ActiveAccessPoint", "Bitrate"]) => {
                        Some(Touch::Device(path()))
                    }
                    AP_IFACE if touches(&AP_PROPERTIES) => Some(Touch::Ap(path())),
                    IP4_IFACE if touches(&addresses) => Some(Touch::Ip4(path())),
                    IP6_IFACE if touches(&addresses) => Some(Touch::Ip6(path())),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// What this means for a watcher following `watched`.
    fn event(&self, watched: &Watched) -> Event {
        let is = |watched: &Option<OwnedObjectPath>, path: &OwnedObjectPath| {
            watched.as_ref() == Some(path)
        };
        match self {
            Touch::DeviceAdded if watched.device.is_none() => Event::Resolve,
            Touch::DeviceRemoved(path) if is(&watched.device, path) => Event::Resolve,
            Touch::Device(path) if is(&watched.device, path) => Event::Reread,
            Touch::Ip4(path) if is(&watched.ip4, path) => Event::Reread,
            Touch::Ip6(path) if is(&watched.ip6, path) => Event::Reread,
            Touch::Ap(path) if is(&watched.ap, path) => Event::Reread,
            _ => Event::Ignore,
        }
    }
}

/// One read of `interface` through NetworkManager, for `pistats network`.
pub(super) async fn read_once(
    conn: &Connection,
    owner: &UniqueName<'_>,
    interface: &str,
) -> zbus::Result<Connectivity> {
    let manager = NetworkManagerProxy::builder(conn)
        .destination(owner.to_owned())?
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    match resolve_device(&manager, interface).await? {
        Some(device) => Ok(read_device(conn, owner, &device, interface).await?.0),
        None => Ok(absent(interface)),
    }
}
