//! The bytes the real daemon sends over HTTP: the dashboard's files gzip'd when the client
//! accepts it (and decompressing to the files on disk), entity tags and `304`, byte ranges,
//! HEAD matching GET, and API answers compressed only when large enough.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{eventually, Daemon, WAIT};

/// A response with its body as raw bytes (a gzip'd body is not text).
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    fn gunzipped(&self) -> Vec<u8> {
        assert_eq!(self.header("content-encoding").as_deref(), Some("gzip"));
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&self.body[..])
            .read_to_end(&mut out)
            .expect("a valid gzip body");
        out
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Raw {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let body = raw[split + 4..].to_vec();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    if method != "HEAD" {
        let length: usize = Raw {
            status,
            head: head.clone(),
            body: vec![],
        }
        .header("content-length")
        .map_or(0, |l| l.parse().unwrap());
        assert_eq!(
            body.len(),
            length,
            "{method} {path}: body and Content-Length"
        );
    }
    Raw { status, head, body }
}

const GZIP: (&str, &str) = ("Accept-Encoding", "gzip, deflate, br");

#[test]
fn dashboard_files_are_gzipped_when_accepted_and_decompress_to_the_files() {
    let daemon = Daemon::start(&[]);
    for (path, file) in [
        ("/", "index.html"),
        ("/app.js", "app.js"),
        ("/charts.js", "charts.js"),
        ("/style.css", "style.css"),
        ("/manifest.webmanifest", "manifest.webmanifest"),
        ("/favicon.svg", "favicon.svg"),
    ] {
        let on_disk = std::fs::read(format!("assets/{file}")).unwrap();
        let zipped = request(daemon.addr, "GET", path, &[GZIP]);
        assert_eq!(zipped.status, 200, "{path}");
        assert_eq!(zipped.gunzipped(), on_disk, "{path} decompresses to {file}");
        assert!(
            zipped.body.len() < on_disk.len(),
            "{path} is smaller gzip'd"
        );
        assert_eq!(
            zipped.header("vary").as_deref(),
            Some("accept-encoding"),
            "{path}"
        );
        assert!(zipped.header("content-security-policy").is_some(), "{path}");

        // Without Accept-Encoding, or with gzip refused, the file as it is.
        for headers in [&[][..], &[("Accept-Encoding", "gzip;q=0, identity")][..]] {
            let plain = request(daemon.addr, "GET", path, headers);
            assert_eq!(plain.status, 200, "{path}");
            assert_eq!(plain.header("content-encoding"), None, "{path}");
            assert_eq!(plain.body, on_disk, "{path} serves {file}");
            assert_eq!(plain.header("vary").as_deref(), Some("accept-encoding"));
            // Each form has its own strong tag.
            let (tag, ztag) = (
                plain.header("etag").unwrap(),
                zipped.header("etag").unwrap(),
            );
            assert!(tag.starts_with('"') && !tag.starts_with("W/"), "{tag}");
            assert_ne!(tag, ztag, "{path}");
        }
    }
    // Images are compressed already: one form, no Vary.
    let png = request(daemon.addr, "GET", "/icon-192.png", &[GZIP]);
    assert_eq!(png.status, 200);
    assert_eq!(png.header("content-encoding"), None);
    assert_eq!(png.header("vary"), None);
    assert_eq!(png.body, std::fs::read("assets/icon-192.png").unwrap());
}

#[test]
fn matching_etags_get_304_and_others_the_file() {
    let daemon = Daemon::start(&[]);
    for accept in [&[GZIP][..], &[][..]] {
        let first = request(daemon.addr, "GET", "/charts.js", accept);
        let etag = first.header("etag").unwrap();
        let mut headers = accept.to_vec();
        headers.push(("If-None-Match", &etag));
        let again = request(daemon.addr, "GET", "/charts.js", &headers);
        assert_eq!(again.status, 304);
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.clone()));
        assert_eq!(again.header("cache-control").as_deref(), Some("no-cache"));
        // A list holding it, or its weak form, matches too (RFC 9110 weak comparison).
        let listed = format!("\"nope\", W/{etag}");
        let mut headers = accept.to_vec();
        headers.push(("If-None-Match", &listed));
        assert_eq!(
            request(daemon.addr, "GET", "/charts.js", &headers).status,
            304
        );
        // Another file's tag, or the other form's, does not.
        let other = request(daemon.addr, "GET", "/app.js", accept)
            .header("etag")
            .unwrap();
        let mut headers = accept.to_vec();
        headers.push(("If-None-Match", &other));
        let full = request(daemon.addr, "GET", "/charts.js", &headers);
        assert_eq!(full.status, 200);
        assert_eq!(full.body, first.body);
    }
    let zipped_tag = request(daemon.addr, "GET", "/charts.js", &[GZIP])
        .header("etag")
        .unwrap();
    let plain = request(
        daemon.addr,
        "GET",
        "/charts.js",
        &[("If-None-Match", &zipped_tag)],
    );
    assert_eq!(
        plain.status, 200,
        "the gzip form's tag does not validate the plain one"
    );
    assert_eq!(plain.body, std::fs::read("assets/charts.js").unwrap());
}

#[test]
fn head_matches_get_and_ranges_apply_to_the_form_sent() {
    let daemon = Daemon::start(&[]);
    for path in ["/", "/style.css", "/api/v1/stats", "/healthz"] {
        for accept in [&[GZIP][..], &[][..]] {
            let get = request(daemon.addr, "GET", path, accept);
            let head = request(daemon.addr, "HEAD", path, accept);
            assert_eq!(head.status, get.status, "HEAD {path}");
            assert!(head.body.is_empty(), "HEAD {path} has no body");
            for name in ["content-type", "content-encoding", "etag", "vary"] {
                assert_eq!(head.header(name), get.header(name), "HEAD {path}: {name}");
            }
            if !path.starts_with("/api") {
                // A file's length is fixed; a live document's changes between requests.
                assert_eq!(
                    head.header("content-length"),
                    get.header("content-length"),
                    "HEAD {path}"
                );
            }
        }
    }

    let css = std::fs::read("assets/style.css").unwrap();
    let part = request(
        daemon.addr,
        "GET",
        "/style.css",
        &[("Range", "bytes=10-19")],
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &css[10..20]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 10-19/{}", css.len()))
    );
    let tail = request(daemon.addr, "GET", "/style.css", &[("Range", "bytes=-5")]);
    assert_eq!(tail.body, &css[css.len() - 5..]);
    // With gzip accepted, the range is of the gzip'd form (the one its tag names), and the
    // pieces put together decompress to the file.
    let zipped = request(daemon.addr, "GET", "/style.css", &[GZIP]);
    let etag = zipped.header("etag").unwrap();
    let half = zipped.body.len() / 2;
    let first = format!("bytes=0-{}", half - 1);
    let rest = format!("bytes={half}-");
    let mut joined = Vec::new();
    for range in [&first, &rest] {
        let piece = request(
            daemon.addr,
            "GET",
            "/style.css",
            &[GZIP, ("Range", range), ("If-Range", &etag)],
        );
        assert_eq!(piece.status, 206, "{range}");
        assert_eq!(piece.header("content-encoding").as_deref(), Some("gzip"));
        joined.extend_from_slice(&piece.body);
    }
    assert_eq!(
        Raw {
            body: joined,
            ..zipped
        }
        .gunzipped(),
        css
    );
    // A stale If-Range, or several ranges: the whole file.
    for headers in [
        &[("Range", "bytes=0-9"), ("If-Range", "\"stale\"")][..],
        &[("Range", "bytes=0-1,5-6")][..],
    ] {
        let whole = request(daemon.addr, "GET", "/style.css", headers);
        assert_eq!(whole.status, 200);
        assert_eq!(whole.body, css);
    }
    let beyond = format!("bytes={}-", css.len());
    let past = request(daemon.addr, "GET", "/style.css", &[("Range", &beyond)]);
    assert_eq!(past.status, 416);
    assert_eq!(
        past.header("content-range"),
        Some(format!("bytes */{}", css.len()))
    );
}

#[test]
fn api_answers_are_gzipped_only_when_large_and_accepted() {
    let daemon = Daemon::start(&["--interval", "250ms"]);
    let stats = eventually(WAIT, || {
        let r = request(daemon.addr, "GET", "/api/v1/stats", &[GZIP]);
        (r.status == 200).then_some(r)
    })
    .expect("a first document");
    // A document (a few KB) is compressed and decompresses to JSON.
    let doc: serde_json::Value = serde_json::from_slice(&stats.gunzipped()).unwrap();
    assert!(doc["system"]["hostname"].is_string(), "{doc}");
    assert_eq!(stats.header("vary").as_deref(), Some("accept-encoding"));
    assert_eq!(
        stats.header("content-type").as_deref(),
        Some("application/json")
    );
    let plain = request(daemon.addr, "GET", "/api/v1/stats", &[]);
    assert_eq!(plain.header("content-encoding"), None);
    serde_json::from_slice::<serde_json::Value>(&plain.body).unwrap();

    // Small answers go out as they are, accepted or not.
    for path in [
        "/healthz",
        "/api/v1/history?range=nope",
        "/api/v1/events?limit=1",
    ] {
        let small = request(daemon.addr, "GET", path, &[GZIP]);
        assert!(
            small.body.len() < 1400,
            "{path}: {} bytes",
            small.body.len()
        );
        assert_eq!(small.header("content-encoding"), None, "{path}");
        serde_json::from_slice::<serde_json::Value>(&small.body).unwrap();
    }
    // History grows past the threshold within a few ticks, then is compressed.
    let history = eventually(WAIT, || {
        let r = request(daemon.addr, "GET", "/api/v1/history?range=10m", &[GZIP]);
        (r.header("content-encoding").is_some()).then_some(r)
    })
    .expect("history past the threshold, compressed");
    let view: serde_json::Value = serde_json::from_slice(&history.gunzipped()).unwrap();
    assert!(!view["points"].as_array().unwrap().is_empty());
    let metrics = request(daemon.addr, "GET", "/metrics", &[GZIP]);
    assert!(String::from_utf8(metrics.gunzipped())
        .unwrap()
        .contains("pistats_collections_total"));
}
