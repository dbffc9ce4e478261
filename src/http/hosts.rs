//! DNS-rebinding defence: the names a request's `Host` header may carry.
//!
//! A web page on another site can make a visitor's browser resolve its own name to the
//! Pi's address and then read pistats as if it were same-origin: the browser sends that
//! name in `Host`. Requests are therefore answered only for IP literals, `localhost` (and
//! `*.localhost`), the machine's host name, `hostname.local` (mDNS), and configured extra
//! names; anything else gets `421 Misdirected Request`. A request without `Host` (HTTP/1.0,
//! never a browser) is answered.

use std::net::Ipv6Addr;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct AllowedHosts(Arc<Vec<String>>);

impl AllowedHosts {
    /// This machine's names plus `extra` (names a reverse proxy or local DNS uses).
    pub fn of_this_machine(extra: &[String]) -> AllowedHosts {
        AllowedHosts::new(host_name().as_deref(), extra)
    }

    fn new(hostname: Option<&str>, extra: &[String]) -> AllowedHosts {
        let mut names = Vec::new();
        if let Some(hostname) = hostname.map(normalize).filter(|h| !h.is_empty()) {
            let short = hostname.split('.').next().unwrap_or_default().to_owned();
            names.push(format!("{short}.local"));
            names.push(short);
            names.push(hostname);
        }
        names.extend(extra.iter().map(|n| normalize(n)));
        names.sort();
        names.dedup();
        AllowedHosts(Arc::new(names))
    }

    /// Whether a request with this `Host` header value is for this server.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim();
        // `[v6]` or `[v6]:port`
        if let Some(rest) = host.strip_prefix('[') {
            return rest
                .split_once(']')
                .is_some_and(|(ip, _)| ip.parse::<Ipv6Addr>().is_ok());
        }
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let name = normalize(name);
        if name.parse::<std::net::Ipv4Addr>().is_ok() {
            return true;
        }
        name == "localhost" || name.ends_with(".localhost") || self.0.contains(&name)
    }
}

/// Lower case, without the root's trailing dot.
fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names_and_literals_are_allowed_others_not() {
        let hosts = AllowedHosts::new(Some("Kitchen-Pi"), &["stats.example.org".to_owned()]);
        for ok in [
            "kitchen-pi",
            "kitchen-pi:8765",
            "KITCHEN-PI.local",
            "kitchen-pi.local.:8765",
            "localhost:8765",
            "app.localhost",
            "127.0.0.1:8765",
            "192.168.1.20",
            "[::1]:8765",
            "[fe80::1]",
            "stats.example.org",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "kitchen-pi.evil.example",
            "attacker.example:8765",
            "localhost.evil.example",
            "[not-an-ip]",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
    }
}
