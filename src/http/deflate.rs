//! `permessage-deflate` (RFC 7692) for the feed, compressed once per tick.
//!
//! A compressed document is about a quarter of the plain one, which matters more than CPU on a
//! Pi Zero's shared 2.4 GHz Wi-Fi. Every browser and Python's `websockets` offer the
//! extension. pistats accepts it only with `server_no_context_takeover` and
//! `client_no_context_takeover`: each message is compressed on its own, so the hub compresses
//! a document once and every client that negotiated the extension gets the very same frame
//! (RSV1 set), and no client holds a compression context.
//!
//! The feed is one-way: clients send only pongs and close frames, which are never compressed.
//! A compressed message from a client is refused (see `ws`), so no inflater is kept either.
//!
//! The one compressor is kept between documents and reset for each. Creating one allocates
//! and zeroes about 300 KiB of match tables; done every second, the allocator handed those
//! pages back to the kernel after each document and faulted them in again for the next (about
//! 50 page faults a tick). The broadcaster lets it go when the last client leaves.
//!
//! An offer that is malformed (unknown or repeated parameter, a window size outside 8–15, a
//! value where none belongs) is declined: the next offer in the header is tried, and with none
//! left the connection is upgraded without the extension, as §5 of the RFC allows.

use std::sync::Mutex;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};
use warp::http::{header, HeaderMap, HeaderValue};

/// The name of the extension in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";
/// The largest LZ77 window (2^15 bytes), and what a client that names no limit accepts.
pub(super) const MAX_WINDOW_BITS: u8 = 15;

/// The compressor kept between documents while anyone is connected (see the module docs).
static KEPT: Mutex<Option<Compress>> = Mutex::new(None);

/// An accepted offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Accepted {
    /// The window the client allows the server (`server_max_window_bits`, 15 if not given).
    /// A message longer than 2^bits is sent uncompressed (RSV1 clear), which the extension
    /// allows: within a shorter message no back-reference can reach further than that.
    pub window_bits: u8,
    /// The `Sec-WebSocket-Extensions` answer.
    pub response: HeaderValue,
}

/// Whether a message of `len` bytes may go compressed to a client that allows the server a
/// window of 2^`window_bits` bytes.
pub(super) fn fits(window_bits: u8, len: usize) -> bool {
    len <= 1usize << window_bits
}

/// The first acceptable `permessage-deflate` offer among the request's
/// `Sec-WebSocket-Extensions` headers, or `None` (no offer, or none well-formed).
pub(super) fn negotiate(headers: &HeaderMap) -> Option<Accepted> {
    headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(accept)
}

/// One offer (`permessage-deflate; param; param=value`), accepted or declined.
fn accept(offer: &str) -> Option<Accepted> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut server_bits = None;
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(value)) => server_bits = Some(window_bits(value)?),
            // Without a value: the client could honour a limit; pistats sets none (it never
            // inflates what a client sends).
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(value)) => {
                window_bits(value)?;
            }
            _ => return None,
        }
        seen.push(name);
    }
    let mut response = format!("{NAME}; server_no_context_takeover; client_no_context_takeover");
    if let Some(bits) = server_bits {
        response.push_str(&format!("; server_max_window_bits={bits}"));
    }
    Some(Accepted {
        window_bits: server_bits.unwrap_or(MAX_WINDOW_BITS),
        response: HeaderValue::from_str(&response).ok()?,
    })
}

/// A token or a quoted string's content (RFC 7692 §7.1: a value may be quoted); `None` for
/// an unterminated quote or an empty value.
fn unquote(value: &str) -> Option<&str> {
    let value = match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => value,
    };
    (!value.is_empty()).then_some(value)
}

/// A window size: `8` to `15`, in digits without a leading zero (RFC 7692 §7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    match value {
        "8" | "9" | "10" | "11" | "12" | "13" | "14" | "15" => value.parse().ok(),
        _ => None,
    }
}

/// `message` as the payload of one compressed message with no context takeover: raw DEFLATE
/// ended by a sync flush, whose empty stored block's `00 00 FF FF` is removed (RFC 7692
/// §7.2.1); the receiver appends it back before inflating.
pub fn compress(message: &[u8]) -> Bytes {
    // One compression a tick, so the lock is never contended; a poisoned lock only means a
    // compressor is made afresh.
    let kept = KEPT.lock().ok().and_then(|mut kept| kept.take());
    let mut deflater = kept.unwrap_or_else(|| Compress::new(Compression::best(), false));
    let compressed = compress_with(&mut deflater, message);
    if let Ok(mut kept) = KEPT.lock() {
        *kept = Some(deflater);
    }
    compressed
}

/// [`compress`] with a given compressor, reset first so that nothing of an earlier message
/// is referred to.
fn compress_with(deflater: &mut Compress, message: &[u8]) -> Bytes {
    deflater.reset();
    // Worst case for DEFLATE: stored blocks, 5 bytes per 16 KiB, plus the flush.
    let mut out = Vec::with_capacity(message.len() + message.len() / 1000 + 64);
    loop {
        let read = deflater.total_in() as usize;
        let status = deflater
            .compress_vec(&message[read..], &mut out, FlushCompress::Sync)
            .expect("deflate into a growable buffer cannot fail");
        if deflater.total_in() as usize == message.len()
            && out.len() < out.capacity()
            && status == Status::Ok
        {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    debug_assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len().saturating_sub(4));
    Bytes::from(out)
}

/// Lets the kept compressor go: nobody is connected to need the next document compressed.
pub(super) fn release() {
    if let Ok(mut kept) = KEPT.lock() {
        *kept = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn offer(values: &[&str]) -> Option<Accepted> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::SEC_WEBSOCKET_EXTENSIONS, v.parse().unwrap());
        }
        negotiate(&headers)
    }

    fn answer(values: &[&str]) -> Option<String> {
        offer(values).map(|a| a.response.to_str().unwrap().to_owned())
    }

    const PLAIN: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn what_browsers_and_python_offer_is_accepted() {
        // Chromium and Firefox.
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some(PLAIN)
        );
        // Python websockets.
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits=12"]).as_deref(),
            Some(PLAIN)
        );
        assert_eq!(answer(&["permessage-deflate"]).as_deref(), Some(PLAIN));
        assert_eq!(
            answer(&["PerMessage-Deflate;Server_No_Context_Takeover"]).as_deref(),
            Some(PLAIN)
        );
        assert_eq!(offer(&["permessage-deflate"]).unwrap().window_bits, 15);
    }

    #[test]
    fn a_server_window_limit_is_echoed_and_kept() {
        let accepted = offer(&["permessage-deflate; server_max_window_bits=10"]).unwrap();
        assert_eq!(
            accepted.response.to_str().unwrap(),
            format!("{PLAIN}; server_max_window_bits=10")
        );
        assert_eq!(accepted.window_bits, 10);
        assert!(fits(accepted.window_bits, 1024));
        assert!(!fits(accepted.window_bits, 1025));
        let quoted = offer(&["permessage-deflate; server_max_window_bits=\"9\""]).unwrap();
        assert_eq!(quoted.window_bits, 9);
    }

    #[test]
    fn malformed_offers_are_declined_and_the_next_one_is_tried() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=1e1",
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate; server_max_window_bits=",
            "permessage-deflate; client_max_window_bits=99999999999999999999",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; x-unknown",
            "permessage-deflate;",
            "permessage-deflate; ;",
            "x-webkit-deflate-frame",
            "deflate-permessage",
            "",
            ";;;,,,",
        ] {
            assert_eq!(answer(&[bad]), None, "{bad:?}");
        }
        assert_eq!(
            answer(&["permessage-deflate; bogus, permessage-deflate; server_max_window_bits=12"])
                .as_deref(),
            Some(format!("{PLAIN}; server_max_window_bits=12").as_str())
        );
        assert_eq!(
            answer(&["x-webkit-deflate-frame", "permessage-deflate"]).as_deref(),
            Some(PLAIN)
        );
        // Not text: ignored, never a panic.
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_bytes(b"permessage-deflate\xff").unwrap(),
        );
        assert_eq!(negotiate(&headers), None);
        // A huge offer with thousands of parameters is a bounded walk, declined.
        let huge = format!("permessage-deflate{}", "; a".repeat(5000));
        assert_eq!(answer(&[&huge]), None);
    }

    fn inflate(payload: &[u8]) -> Vec<u8> {
        let mut input = payload.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut inflater = Decompress::new(false);
        let mut out = Vec::with_capacity(1 << 20);
        inflater
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(inflater.total_in() as usize, input.len());
        out
    }

    #[test]
    fn compressed_payloads_inflate_to_the_message() {
        let document =
            br#"{"cpu":{"usage_percent":12.5,"per_core_usage":[10.0,15.0]},"processes":[]}"#
                .repeat(60);
        let compressed = compress(&document);
        assert!(
            compressed.len() < document.len() / 4,
            "{}",
            compressed.len()
        );
        assert!(!compressed.ends_with(&[0, 0, 0xff, 0xff]));
        assert_eq!(inflate(&compressed), document);
        assert_eq!(inflate(&compress(b"")), b"");
        // Incompressible input, larger than one output reservation.
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(inflate(&compress(&noise)), noise);
    }

    /// A kept compressor starts every message afresh: its output is the same bytes as a new
    /// compressor's, whatever it compressed before (no context takeover).
    #[test]
    fn a_kept_compressor_starts_each_message_afresh() {
        let fresh = |message: &[u8]| {
            let mut deflater = Compress::new(Compression::best(), false);
            let mut out = Vec::with_capacity(message.len() * 2 + 64);
            deflater
                .compress_vec(message, &mut out, FlushCompress::Sync)
                .unwrap();
            assert_eq!(deflater.total_in() as usize, message.len());
            out.truncate(out.len() - 4);
            out
        };
        let document = serde_json::to_vec(&crate::stats::wire_golden::document()).unwrap();
        let other = br#"{"cpu":{"usage_percent":99.5},"processes":[{"name":"x"}]}"#.repeat(40);
        let mut kept = Compress::new(Compression::best(), false);
        for message in [&document[..], &other, &document, b"", &document] {
            let compressed = compress_with(&mut kept, message);
            assert_eq!(compressed, fresh(message));
            assert_eq!(inflate(&compressed), message);
        }
        release();
        assert_eq!(compress(&document), fresh(&document));
        assert_eq!(compress(&other), fresh(&other));
    }

    /// A Pi 4's document (the recorded wire document: three interfaces, ten processes) goes
    /// out in at most 1.3 KB, the size the compressed feed was built to: one TCP segment on a
    /// 1500-byte-MTU link, where the plain document needs two or more.
    #[test]
    fn a_pi_document_compresses_to_at_most_1300_bytes() {
        let document = serde_json::to_vec(&crate::stats::wire_golden::document()).unwrap();
        let compressed = compress(&document);
        assert!(
            compressed.len() <= 1300,
            "{} bytes from {}",
            compressed.len(),
            document.len()
        );
        assert_eq!(inflate(&compressed), document);
    }
}
