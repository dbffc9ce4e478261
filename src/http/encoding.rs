//! Fewer bytes over the air: gzip negotiation, entity tags and byte ranges.
//!
//! On a Pi Zero's 2.4 GHz Wi-Fi airtime costs more than CPU. Text compresses 3–6×, so the
//! dashboard's files are gzip'd once (see `static_files`) and API answers above
//! [`API_GZIP_MIN`] are gzip'd per request, always only for clients that say they accept it.
//! Each representation has its own strong entity tag (the gzip one ends in `.gz`), so a
//! conditional request or a range never mixes the two.

use std::io::Write as _;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use warp::http::{header, HeaderValue, Response};

/// API bodies shorter than this go out as they are: below about one TCP segment, gzip's
/// header and the CPU it costs buy nothing.
pub const API_GZIP_MIN: usize = 1400;
/// API bodies from this size are compressed on a blocking thread, so a year of history
/// does not hold up a runtime worker (and the broadcast) on a single-core Pi.
pub const API_GZIP_OFFLOAD: usize = 64 * 1024;
/// Level for API answers, compressed on every request: on a year of history, level 4 sends
/// 8 % more bytes than the default 6 in 40 % of its CPU time; level 1 sends 70 % more (see
/// docs/benchmarks.md).
const API_LEVEL: u32 = 4;
/// Level for the dashboard's files, compressed once.
pub const STATIC_LEVEL: u32 = 9;

/// Whether an `Accept-Encoding` value admits gzip (RFC 9110 §12.5.3): `gzip`, `x-gzip` or
/// `*` with a non-zero weight, unless gzip itself is refused with `q=0`.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(value) = accept_encoding else {
        return false;
    };
    let mut star = false;
    for item in value.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let weight = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
            })
            .next()
            .map_or(1.0, |q| q.parse::<f32>().unwrap_or(0.0));
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return weight > 0.0;
        }
        if coding == "*" {
            star = weight > 0.0;
        }
    }
    star
}

/// `data` gzip'd at `level`.
pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(data.len() / 3 + 64),
        Compression::new(level),
    );
    // Writing into a Vec cannot fail.
    encoder.write_all(data).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// Whether an `If-None-Match` value matches the strong tag `etag` (weak comparison, as
/// RFC 9110 §13.1.2 asks: `W/"x"` matches `"x"`).
pub fn none_match(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag)
}

/// The byte range a `Range` header asks of a `len`-byte representation.
#[derive(Debug, PartialEq, Eq)]
pub enum Ranged {
    /// No usable single range (absent, not `bytes=`, several ranges, malformed): the whole
    /// representation is sent, which RFC 9110 §14.2 allows.
    Whole,
    /// Bytes `start..end` (end exclusive).
    Part(usize, usize),
    /// Nothing in the representation: `416`.
    Unsatisfiable,
}

/// Parses a single-range `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`).
pub fn range(value: Option<&str>, len: usize) -> Ranged {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ranged::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<usize>().ok();
    match (first.is_empty(), last.is_empty()) {
        (true, true) => Ranged::Whole,
        (true, false) => match parse(last) {
            Some(0) => Ranged::Unsatisfiable,
            Some(n) if len > 0 => Ranged::Part(len.saturating_sub(n), len),
            Some(_) => Ranged::Unsatisfiable,
            None => Ranged::Whole,
        },
        (false, _) => {
            let Some(start) = parse(first) else {
                return Ranged::Whole;
            };
            let end = if last.is_empty() {
                Some(usize::MAX)
            } else {
                parse(last)
            };
            match end {
                Some(end) if end < start => Ranged::Whole,
                Some(_) if start >= len => Ranged::Unsatisfiable,
                Some(end) => Ranged::Part(start, end.min(len - 1) + 1),
                None => Ranged::Whole,
            }
        }
    }
}

/// An API answer gzip'd when the client accepts it and the body is worth it. The answer
/// varies with `Accept-Encoding` either way, which `Vary` tells caches.
pub async fn api(accept_encoding: Option<String>, response: Response<Bytes>) -> Response<Bytes> {
    let (mut parts, body) = response.into_parts();
    parts
        .headers
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if body.len() < API_GZIP_MIN
        || parts.headers.contains_key(header::CONTENT_ENCODING)
        || !accepts_gzip(accept_encoding.as_deref())
    {
        return Response::from_parts(parts, body);
    }
    let compressed = if body.len() >= API_GZIP_OFFLOAD {
        let input = body.clone();
        match tokio::task::spawn_blocking(move || gzip(&input, API_LEVEL)).await {
            Ok(compressed) => compressed,
            // The runtime is shutting down: the plain body is still a correct answer.
            Err(_) => return Response::from_parts(parts, body),
        }
    } else {
        gzip(&body, API_LEVEL)
    };
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    Response::from_parts(parts, Bytes::from(compressed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_negotiated_by_weight() {
        assert!(accepts_gzip(Some("gzip, deflate, br")));
        assert!(accepts_gzip(Some("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(Some("x-gzip")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("*, gzip;q=0")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("gzip; q=0.000")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(Some("br, deflate")));
        assert!(!accepts_gzip(Some("")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let data = b"{\"cpu\":12.5}".repeat(200);
        let packed = gzip(&data, API_LEVEL);
        assert!(packed.len() < data.len() / 10);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        assert!(none_match("\"a\"", "\"a\""));
        assert!(none_match("\"x\", W/\"a\"", "\"a\""));
        assert!(none_match("*", "\"a\""));
        assert!(!none_match("\"a.gz\"", "\"a\""));
        assert!(!none_match("", "\"a\""));
    }

    #[test]
    fn single_ranges_are_parsed() {
        assert_eq!(range(None, 10), Ranged::Whole);
        assert_eq!(range(Some("bytes=0-3"), 10), Ranged::Part(0, 4));
        assert_eq!(range(Some("bytes=5-"), 10), Ranged::Part(5, 10));
        assert_eq!(range(Some("bytes=-3"), 10), Ranged::Part(7, 10));
        assert_eq!(range(Some("bytes=-30"), 10), Ranged::Part(0, 10));
        assert_eq!(range(Some("bytes=8-100"), 10), Ranged::Part(8, 10));
        assert_eq!(range(Some("bytes=10-"), 10), Ranged::Unsatisfiable);
        assert_eq!(range(Some("bytes=-0"), 10), Ranged::Unsatisfiable);
        assert_eq!(range(Some("bytes=4-2"), 10), Ranged::Whole);
        assert_eq!(range(Some("bytes=0-1,4-5"), 10), Ranged::Whole);
        assert_eq!(range(Some("items=0-1"), 10), Ranged::Whole);
        assert_eq!(range(Some("bytes=a-b"), 10), Ranged::Whole);
        assert_eq!(range(Some("bytes=-"), 10), Ranged::Whole);
    }
}
