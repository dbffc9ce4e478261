//! Direct readers for the parts of `/proc` and `/sys` that sysinfo does not cover (or covers
//! with more work than needed). Each takes the root to read from, so tests can point them at
//! fixture trees of a Raspberry Pi. Every reader returns `None`/empty when its source is
//! missing: a missing sensor is normal, never an error.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::model::{BatteryInfo, DiskIo, Memory, NetIo, Partition, SensorReading};

/// Reads a file as text; bytes that are not UTF-8 become U+FFFD instead of failing the whole
/// read. `None` if absent or unreadable (e.g. out of file descriptors).
///
/// `/proc` and `/sys` files report a size of 0, so `fs::read`'s `statx` for a size hint buys
/// nothing: the file is read into a buffer sized for the small files read here (open, one
/// read, the read that sees the end, close).
pub fn read_text(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    let mut buf = ReadBuf::with_capacity(512);
    // Not `read_to_end`: on a `File` it asks for the size and position first (`statx`,
    // `lseek`), two system calls per file that tell nothing here.
    pread_from_start(&file, &mut buf, 512, ReadEnd::Empty).ok()?;
    Some(buf.into_text())
}

/// Room for a sysfs attribute (at most a page) or a small `/proc` file in one read.
const SMALL_FILE: usize = 4096;

/// A file read on every tick, kept open and re-read from its start with `pread`. Under file
/// descriptor exhaustion opening fails, not reading an open file, so the collector's main
/// sources stay readable. After a read error the file is opened again once.
///
/// The buffer is kept between reads and grows to the file's size, so a tick's read is one
/// `pread` for the content and one that sees the end: no `lseek`, no `statx`, no allocation
/// (std's `read_to_end` on a fresh `Vec` spends ten system calls on a 2 KiB `/proc` file,
/// doubling its buffer from 32 bytes).
#[derive(Debug)]
pub struct KeptFile {
    path: PathBuf,
    file: Option<File>,
    buf: ReadBuf,
    /// Which short read has it all.
    end: ReadEnd,
}

/// When a read from the start of a file has all of it, without another read to see the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// Only a read that returns nothing says so: any file.
    Empty,
    /// A read that does not fill its room (see [`KeptFile::whole`]).
    Short,
    /// A read that leaves room and is shorter than a seq_file buffer less a record (see
    /// [`KeptFile::records`]).
    ShortOfBuffer,
}

/// The least a seq_file's buffer holds: one page, and pages are 4 KiB or more.
const SEQ_BUFFER_MIN: usize = 4096;
/// More than any record of the `/proc` files read as [`ReadEnd::ShortOfBuffer`] takes: a
/// `diskstats` line is under 250 bytes, a `net/dev` line under 200.
const LONGEST_RECORD: usize = 1024;

impl KeptFile {
    pub fn new(path: PathBuf) -> KeptFile {
        KeptFile {
            path,
            file: None,
            buf: ReadBuf::default(),
            end: ReadEnd::Empty,
        }
    }

    /// A kept file that the kernel renders in one piece on each read from its start: a
    /// `/proc` file of one record (`stat`, `meminfo`, `loadavg`, `uptime`) or a sysfs
    /// attribute. A read that does not fill its room has the whole file, so a tick reads it
    /// with one `pread`, not two. For a regular file (a fixture tree) a short read is its end
    /// as well.
    pub fn whole(path: PathBuf) -> KeptFile {
        KeptFile {
            end: ReadEnd::Short,
            ..KeptFile::new(path)
        }
    }

    /// A kept `/proc` file of many short records (`diskstats`, `net/dev`). The kernel's
    /// seq_file fills a read record by record and stops early only at the end, when the
    /// reader's room is full, or when the next record would overflow its own buffer (a page
    /// or more). So a read that leaves room and is shorter than a page less the longest record
    /// has it all, and a tick reads such a file (a Pi's fit in 1–2 KiB) with one `pread`; a
    /// longer one is read until a read returns nothing. A regular file's short read is its
    /// end too.
    pub fn records(path: PathBuf) -> KeptFile {
        KeptFile {
            end: ReadEnd::ShortOfBuffer,
            ..KeptFile::new(path)
        }
    }

    /// The whole file; `None` when it can be neither read nor opened.
    pub fn read_bytes(&mut self) -> Option<&[u8]> {
        if self.read_open().is_none() {
            // A file kept open may have gone stale (its device removed and added again): open
            // it once more. One that could not be opened is not tried twice.
            self.file.take()?;
            self.read_open()?;
        }
        Some(self.buf.bytes())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, if it is open.
    pub fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// The whole file as text (see [`read_text`]).
    pub fn read_text(&mut self) -> Option<std::borrow::Cow<'_, str>> {
        self.read_bytes()?;
        Some(self.buf.text())
    }

    /// The file as one finite number, as [`read_f64`] reads a path (a sysfs attribute).
    pub fn read_f64(&mut self) -> Option<f64> {
        finite(self.read_text()?.trim().parse().ok()?)
    }

    fn read_open(&mut self) -> Option<()> {
        if self.file.is_none() {
            self.file = File::open(&self.path).ok();
        }
        let file = self.file.as_ref()?;
        pread_from_start(file, &mut self.buf, SMALL_FILE / 4, self.end).ok()
    }
}

/// A read buffer that stays initialized between reads: its room is zeroed once, when it grows,
/// not before every read, which keeps reading into it free of `unsafe` without a memset per
/// read (that memset was a tenth of an unwatched tick's instructions).
#[derive(Debug, Default)]
pub struct ReadBuf {
    /// Initialized room; only `..len` holds the last read.
    room: Vec<u8>,
    len: usize,
}

impl ReadBuf {
    pub fn with_capacity(capacity: usize) -> ReadBuf {
        ReadBuf {
            room: vec![0; capacity],
            len: 0,
        }
    }

    /// What the last read returned.
    pub fn bytes(&self) -> &[u8] {
        &self.room[..self.len]
    }

    /// The last read as text; bytes that are not UTF-8 become U+FFFD. `/proc` and `/sys` are
    /// ASCII, so this is a validation pass, borrowing the bytes (`from_utf8_lossy` walks them in
    /// chunks and costs several times `from_utf8`'s word-at-a-time check).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match std::str::from_utf8(self.bytes()) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(self.bytes()),
        }
    }

    /// The last read as an owned string (see [`Self::text`]), without copying valid text.
    pub fn into_text(mut self) -> String {
        self.room.truncate(self.len);
        match String::from_utf8(self.room) {
            Ok(text) => text,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Reads `file` from offset 0 into `buf` (its last content dropped), in reads of at least
/// `chunk` bytes, until one returns nothing or one that `end` says has the rest (for files
/// the kernel renders in one piece, such as `/proc/PID/stat`, one that does not fill its
/// room). The buffer is kept by the caller and grows to the file's size, so a read allocates
/// nothing once warm.
pub fn pread_from_start(
    file: &File,
    buf: &mut ReadBuf,
    chunk: usize,
    end: ReadEnd,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    buf.len = 0;
    loop {
        let len = buf.len;
        if buf.room.len() - len < chunk {
            // Doubling: a file larger than the room takes a few more reads once, then only its
            // content's and the one that sees the end.
            buf.room.resize((len + chunk).max(buf.room.len() * 2), 0);
        }
        let room = buf.room.len() - len;
        match file.read_at(&mut buf.room[len..], len as u64) {
            Ok(n) => {
                buf.len = len + n;
                let ended = match end {
                    ReadEnd::Empty => n == 0,
                    ReadEnd::Short => n < room,
                    ReadEnd::ShortOfBuffer => n < room && n + LONGEST_RECORD <= SEQ_BUFFER_MIN,
                };
                if n == 0 || ended {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads a small text file, trimmed of whitespace and NULs; `None` if absent or unreadable.
pub fn read_trimmed(path: &Path) -> Option<String> {
    let text = read_text(path)?;
    Some(
        text.trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .to_owned(),
    )
}

/// Reads a file holding one number.
pub fn read_number<T: std::str::FromStr>(path: &Path) -> Option<T> {
    read_trimmed(path)?.parse().ok()
}

/// Reads a file holding one finite number (`NaN` and `inf` parse as `f64`, but are not data).
pub fn read_f64(path: &Path) -> Option<f64> {
    finite(read_trimmed(path)?.parse().ok()?)
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The number at the start of `field` after spaces, as in `MemTotal:` ` 3884 kB`; `None` unless
/// digits follow and end the field. A hand-rolled scan: these files are parsed on every tick,
/// and splitting on Unicode whitespace cost more than the read.
fn leading_number(field: &[u8]) -> Option<u64> {
    let start = field
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(field.len());
    let (value, len) = decimal(&field[start..])?;
    matches!(field.get(start + len), None | Some(b' ' | b'\t' | b'\n')).then_some(value)
}

/// The decimal number `bytes` start with and how many digits it took; `None` without a digit
/// or when the number does not fit a `u64`.
fn decimal(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    let mut digits = 0;
    for &b in bytes {
        let digit = b.wrapping_sub(b'0');
        if digit >= 10 {
            break;
        }
        value = accumulate(value, digits, digit)?;
        digits += 1;
    }
    (digits > 0).then_some((value, digits))
}

/// `value` with one more decimal `digit` after its `digits` digits; `None` past `u64::MAX`.
/// Up to 19 digits fit a u64 whatever they are: only a 20th needs the checks.
#[inline]
fn accumulate(value: u64, digits: usize, digit: u8) -> Option<u64> {
    if digits < 19 {
        Some(value * 10 + u64::from(digit))
    } else {
        value.checked_mul(10)?.checked_add(u64::from(digit))
    }
}

/// Reads the space-separated decimal counters of `line` into `out` (those beyond its length are
/// counted, not kept) and returns how many there were; `None` if one is not a number or does
/// not fit a `u64`.
fn counters(line: &[u8], out: &mut [u64]) -> Option<usize> {
    // One pass over the bytes. Most are the columns' padding, passed over first. (A loop for
    // the padding and one for the digits, each tighter, took more instructions on
    // `/proc/net/dev`.)
    let mut count = 0;
    let mut value = 0u64;
    let mut digits = 0;
    let mut keep = |value: u64, count: &mut usize| {
        if let Some(slot) = out.get_mut(*count) {
            *slot = value;
        }
        *count += 1;
    };
    for &b in line {
        if b == b' ' && digits == 0 {
            continue;
        }
        let digit = b.wrapping_sub(b'0');
        if digit < 10 {
            value = accumulate(value, digits, digit)?;
            digits += 1;
        } else if is_separator(b) {
            if digits > 0 {
                keep(value, &mut count);
                (value, digits) = (0, 0);
            }
        } else {
            return None;
        }
    }
    if digits > 0 {
        keep(value, &mut count);
    }
    Some(count)
}

/// What separates the columns of `/proc` tables.
fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n')
}

/// The separated fields of a `/proc` table's line.
fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| is_separator(b))
        .filter(|field| !field.is_empty())
}

/// `field` as a decimal `u64`; `None` unless it is all digits and fits.
fn whole_decimal(field: &[u8]) -> Option<u64> {
    decimal(field).and_then(|(value, len)| (len == field.len()).then_some(value))
}

/// The first line of `text` (without its newline) and what follows it; see [`byte_lines`].
pub(super) fn split_line(text: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'\n', text) {
        Some(end) => (&text[..end], &text[end + 1..]),
        None => (text, &[]),
    }
}

/// The lines of `text` (without their newlines), their ends found with `memchr`, which costs
/// less than `str::lines`' search on the short lines of the files read every tick
/// (docs/benchmarks.md, "Unwatched ticks parse in one pass").
pub(super) fn byte_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = split_line(rest);
        rest = next;
        Some(line)
    })
}

/// `/proc/meminfo` in bytes; `None` without a positive `MemTotal` (a truncated or garbled
/// file is not a machine with no memory). Read as bytes: the file is ASCII, and validating it
/// as UTF-8 first would be a second pass over it every tick.
pub fn parse_meminfo(text: impl AsRef<[u8]>) -> Option<Memory> {
    /// How many keys are read, each a bit of `found`; the file has some 55 lines and these are
    /// among its first 25, so reading stops once all were seen (the file is read on every tick).
    const KEYS: usize = 8;
    let mut m = Memory::default();
    let mut available = None;
    let mut found = 0u32;
    for line in byte_lines(text.as_ref()) {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let index = match &line[..colon] {
            b"MemTotal" => 0,
            b"MemFree" => 1,
            b"MemAvailable" => 2,
            b"Buffers" => 3,
            b"Cached" => 4,
            b"SReclaimable" => 5,
            b"SwapTotal" => 6,
            b"SwapFree" => 7,
            _ => continue,
        };
        let Some(bytes) = leading_number(&line[colon + 1..]).and_then(|kib| kib.checked_mul(1024))
        else {
            continue;
        };
        match index {
            0 => m.total = bytes,
            1 => m.free = bytes,
            2 => available = Some(bytes),
            3 => m.buffers = bytes,
            4 | 5 => m.cached = m.cached.saturating_add(bytes),
            6 => m.swap_total = bytes,
            _ => m.swap_free = bytes,
        }
        found |= 1 << index;
        if found == (1 << KEYS) - 1 {
            break;
        }
    }
    // Kernels before 3.14 lack MemAvailable; estimate it the way psutil does.
    m.available = available.unwrap_or(m.free.saturating_add(m.buffers).saturating_add(m.cached));
    (m.total > 0).then_some(m)
}

pub fn read_meminfo(proc_root: &Path) -> Option<Memory> {
    parse_meminfo(&read_text(&proc_root.join("meminfo"))?)
}

/// Per-interface counters from `/proc/net/dev`. A line with a field that is not a counter is
/// left out rather than read as zeros, as is one whose name is not UTF-8. Read as bytes, as
/// [`parse_meminfo`] is.
///
/// Names are shared with `known` (the last tick's) where they match: see [`shared_name`].
pub fn parse_net_dev(
    text: impl AsRef<[u8]>,
    known: &[(Arc<str>, NetIo)],
) -> Vec<(Arc<str>, NetIo)> {
    let mut interfaces = Vec::with_capacity(known.len());
    parse_net_dev_into(text, known, &mut interfaces);
    interfaces
}

/// [`parse_net_dev`] into `interfaces` (cleared first), keeping its buffer.
pub fn parse_net_dev_into(
    text: impl AsRef<[u8]>,
    known: &[(Arc<str>, NetIo)],
    interfaces: &mut Vec<(Arc<str>, NetIo)>,
) {
    interfaces.clear();
    // Two header lines, then one line an interface.
    for line in byte_lines(text.as_ref()).skip(2) {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        // Every field must be a counter; the first 16 are the ones defined.
        let mut v = [0u64; 16];
        if counters(&line[colon + 1..], &mut v).is_none_or(|n| n < 16) {
            continue;
        }
        let Some(name) = shared_name(line[..colon].trim_ascii(), known, interfaces.len()) else {
            continue;
        };
        interfaces.push((
            name,
            NetIo {
                bytes_recv: v[0],
                packets_recv: v[1],
                errin: v[2],
                dropin: v[3],
                bytes_sent: v[8],
                packets_sent: v[9],
                errout: v[10],
                dropout: v[11],
            },
        ));
    }
}

/// `None` when `/proc/net/dev` cannot be read.
pub fn read_net_dev(proc_root: &Path) -> Option<Vec<(Arc<str>, NetIo)>> {
    read_text(&proc_root.join("net/dev")).map(|text| parse_net_dev(&text, &[]))
}

/// A device or interface name as shared text: the `Arc` of `known` that spells it, else a new
/// one; `None` when it is not UTF-8. The kernel lists the same names tick after tick, so a
/// tick allocates nothing for them. `at` is where the name would be if the list had not
/// changed (its index in this tick's list), and is looked at first.
pub fn shared_name<T>(name: &[u8], known: &[(Arc<str>, T)], at: usize) -> Option<Arc<str>> {
    match named(known, name, at) {
        Some((known, _)) => Some(known.clone()),
        None => std::str::from_utf8(name).ok().map(Arc::from),
    }
}

/// The entry of `list` named `name`, looked for at `at` first: where it was last tick, as the
/// kernel keeps its lists' order.
pub fn named<'a, T>(
    list: &'a [(Arc<str>, T)],
    name: &[u8],
    at: usize,
) -> Option<&'a (Arc<str>, T)> {
    let spells = |(known, _): &&(Arc<str>, T)| known.as_bytes() == name;
    list.get(at)
        .filter(spells)
        .or_else(|| list.iter().find(spells))
}

/// Sums `/proc/diskstats` over whole disks (those listed in `/sys/block`), leaving out
/// partitions (already counted in their disk) and loop/ram devices (not real I/O). Sums
/// saturate rather than wrap.
pub fn parse_diskstats(text: &str, is_whole_disk: impl Fn(&str) -> bool) -> DiskIo {
    sum_disks(&parse_diskstats_per_disk(text, |name| {
        is_whole_disk(name).then_some(())
    }))
}

/// The whole disks of `/proc/diskstats` one by one, in file order (see [`parse_diskstats`]
/// for which lines count), each under the name `whole_disk` gives it: `None` for a name that
/// is not a whole disk (or not UTF-8). Field numbers follow
/// `Documentation/admin-guide/iostats.rst`. Read as bytes, as [`parse_meminfo`] is.
pub fn parse_diskstats_per_disk<N>(
    text: impl AsRef<[u8]>,
    whole_disk: impl FnMut(&str) -> Option<N>,
) -> Vec<(N, DiskIo)> {
    let mut disks = Vec::new();
    parse_diskstats_per_disk_into(text, &mut disks, whole_disk);
    disks
}

/// [`parse_diskstats_per_disk`] into `disks` (cleared first), keeping its buffer.
pub fn parse_diskstats_per_disk_into<N>(
    text: impl AsRef<[u8]>,
    disks: &mut Vec<(N, DiskIo)>,
    mut whole_disk: impl FnMut(&str) -> Option<N>,
) {
    const SECTOR: u64 = 512;
    disks.clear();
    for line in byte_lines(text.as_ref()) {
        // Major, minor and name first: most lines are partitions, loop or ram devices, and
        // need no more than that.
        let mut fields = fields(line);
        let (Some(_), Some(_), Some(name)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        // zram is compressed RAM (swap on Raspberry Pi OS): its writes wear no storage.
        if name.starts_with(b"loop") || name.starts_with(b"ram") || name.starts_with(b"zram") {
            continue;
        }
        let Some(name) = std::str::from_utf8(name).ok().and_then(&mut whole_disk) else {
            continue;
        };
        // Fields 4 to 10 (reads, merged, sectors read, ms, writes, merged, sectors written).
        let mut f: [&[u8]; 7] = [&[]; 7];
        if !f
            .iter_mut()
            .all(|slot| fields.next().map(|v| *slot = v).is_some())
        {
            continue;
        }
        let n = |i: usize| whole_decimal(f[i]);
        let (Some(reads), Some(read_sectors), Some(writes), Some(written_sectors)) =
            (n(0), n(2), n(4), n(6))
        else {
            continue;
        };
        disks.push((
            name,
            DiskIo {
                read_count: reads,
                write_count: writes,
                read_bytes: read_sectors.saturating_mul(SECTOR),
                write_bytes: written_sectors.saturating_mul(SECTOR),
            },
        ));
    }
}

/// Field-by-field saturating sum.
pub fn sum_disks<N>(disks: &[(N, DiskIo)]) -> DiskIo {
    let mut io = DiskIo::default();
    for (_, d) in disks {
        io.read_count = io.read_count.saturating_add(d.read_count);
        io.read_bytes = io.read_bytes.saturating_add(d.read_bytes);
        io.write_count = io.write_count.saturating_add(d.write_count);
        io.write_bytes = io.write_bytes.saturating_add(d.write_bytes);
    }
    io
}

pub fn read_diskstats(proc_root: &Path, sys_root: &Path) -> Option<DiskIo> {
    Some(whole_disk_stats(
        &read_text(&proc_root.join("diskstats"))?,
        sys_root,
    ))
}

/// [`parse_diskstats`] with whole disks being those listed in `SYS/block`.
pub fn whole_disk_stats(text: &str, sys_root: &Path) -> DiskIo {
    sum_disks(&whole_disks(text, sys_root))
}

/// [`parse_diskstats_per_disk`] with whole disks being those listed in `SYS/block`.
pub fn whole_disks(text: &str, sys_root: &Path) -> Vec<(String, DiskIo)> {
    let block = sys_root.join("block");
    parse_diskstats_per_disk(text, |name| {
        (!name.contains('/') && block.join(name).exists()).then(|| name.to_owned())
    })
}

/// `/proc/uptime`'s first field. Negative, NaN, infinite or absurd values are `None`, never a
/// panic (`Duration::from_secs_f64` would panic on them).
pub fn parse_uptime(text: &str) -> Option<Duration> {
    let secs: f64 = text.split_ascii_whitespace().next()?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

pub fn read_uptime(proc_root: &Path) -> Option<Duration> {
    parse_uptime(&read_text(&proc_root.join("uptime"))?)
}

/// The boot time from `/proc/stat`'s `btime` line (whole seconds since the epoch). Unlike
/// `now − uptime` it does not move between ticks.
pub fn parse_btime(text: &str) -> Option<SystemTime> {
    let secs: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

pub fn read_boot_time(proc_root: &Path) -> Option<SystemTime> {
    parse_btime(&read_text(&proc_root.join("stat"))?)
}

/// A process's resident set size in bytes, from `/proc/PID/statm` (psutil's `rss`); the
/// collector takes it from the scan's `stat` line, the tests check that against this.
#[cfg(test)]
pub fn read_rss(proc_root: &Path, pid: u32) -> Option<u64> {
    let text = read_trimmed(&proc_root.join(format!("{pid}/statm")))?;
    let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
    pages.checked_mul(page_size())
}

/// The kernel's page size in bytes (`statm` and `stat` count pages).
pub(crate) fn page_size() -> u64 {
    static PAGE_SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE_SIZE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    })
}

/// The three load averages; `None` unless all three are finite and not negative.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    parse_loadavg_line(text.as_bytes()).0
}

/// The last PID the kernel handed out in the reader's PID namespace: `/proc/loadavg`'s fifth
/// and last field (`0.42 0.31 0.25 1/187 2210`). The process scan lists `/proc` only when it
/// moved (see [`super::processes`]). `None` unless there are exactly five fields and the last
/// is a decimal `u32`: a line the scan does not understand has it list every time.
pub fn parse_last_pid(text: &str) -> Option<u32> {
    parse_loadavg_line(text.as_bytes()).1
}

/// [`parse_loadavg`] and [`parse_last_pid`] in one pass over the bytes (the file is read on
/// every tick).
pub fn parse_loadavg_line(text: &[u8]) -> (Option<[f64; 3]>, Option<u32>) {
    let mut fields = text
        .split(u8::is_ascii_whitespace)
        .filter(|field| !field.is_empty());
    let mut load = [0.0; 3];
    let mut loads_read = true;
    for slot in &mut load {
        match fields.next().map(load_figure) {
            Some(Some(value)) => *slot = value,
            Some(None) => loads_read = false,
            None => return (None, None),
        }
    }
    let last_pid = match (fields.nth(1), fields.next()) {
        (Some(last), None) => whole_decimal(last).and_then(|pid| u32::try_from(pid).ok()),
        _ => None,
    };
    (loads_read.then_some(load), last_pid)
}

/// A load average, finite and not negative. The kernel writes them as `%lu.%02lu`: those are
/// read as an integer of hundredths divided by 100, which rounds as `str::parse` does (both
/// are exact below 2^53, the division is correctly rounded); anything else goes to
/// `str::parse`.
fn load_figure(field: &[u8]) -> Option<f64> {
    let kernels = field
        .split_at_checked(field.len().saturating_sub(3))
        .filter(|(whole, _)| whole.len() <= 12)
        .and_then(|(whole, rest)| {
            Some((
                whole_decimal(whole)?,
                whole_decimal(rest.strip_prefix(b".")?)?,
            ))
        });
    if let Some((whole, hundredths)) = kernels {
        return Some((whole * 100 + hundredths) as f64 / 100.0);
    }
    let value: f64 = std::str::from_utf8(field).ok()?.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some(value)
}

pub fn read_loadavg(proc_root: &Path) -> Option<[f64; 3]> {
    parse_loadavg(&read_text(&proc_root.join("loadavg"))?)
}

/// CPU frequency in MHz from cpufreq: each CPU's `scaling_cur_freq` kept open (a full tick
/// reads it with one `pread`, not an open, a read and a close), and the hardware limits
/// `cpuinfo_min_freq` and `cpuinfo_max_freq`, which do not change, read until found.
///
/// Where there is no cpufreq (a VM, a board without a driver), the files are looked for again
/// every [`CPUFREQ_RETRY`], not on every tick.
#[derive(Debug)]
pub struct CpuFreq {
    current: Vec<KeptFile>,
    cpu0: PathBuf,
    limits: Option<(f64, f64)>,
    /// When a read last found no cpufreq at all.
    missing_at: Option<Instant>,
}

/// How often cpufreq is looked for where it was missing: a driver loaded after the daemon
/// started shows within this time.
pub const CPUFREQ_RETRY: Duration = Duration::from_secs(60);

impl CpuFreq {
    pub fn new(sys_root: &Path, cpus: usize) -> CpuFreq {
        let cpu_dir = sys_root.join("devices/system/cpu");
        CpuFreq {
            current: (0..cpus)
                .map(|cpu| {
                    KeptFile::whole(cpu_dir.join(format!("cpu{cpu}/cpufreq/scaling_cur_freq")))
                })
                .collect(),
            cpu0: cpu_dir.join("cpu0/cpufreq"),
            limits: None,
            missing_at: None,
        }
    }

    /// Current (mean over the CPUs that have a figure), min and max.
    pub fn read(&mut self) -> (Option<f64>, Option<f64>, Option<f64>) {
        if self
            .missing_at
            .is_some_and(|at| at.elapsed() < CPUFREQ_RETRY)
        {
            return (None, None, None);
        }
        let (mut sum, mut count) = (0.0, 0u32);
        for file in &mut self.current {
            if let Some(khz) = file.read_f64() {
                sum += khz;
                count += 1;
            }
        }
        let mean = (count > 0).then(|| sum / f64::from(count)).and_then(finite);
        if self.limits.is_none() {
            let khz = |file: &str| read_f64(&self.cpu0.join(file));
            if let (Some(min), Some(max)) = (khz("cpuinfo_min_freq"), khz("cpuinfo_max_freq")) {
                self.limits = Some((min, max));
            }
        }
        self.missing_at = (count == 0 && self.limits.is_none()).then(Instant::now);
        let mhz = |khz: f64| khz / 1000.0;
        (
            mean.map(mhz),
            self.limits.map(|(min, _)| mhz(min)),
            self.limits.map(|(_, max)| mhz(max)),
        )
    }
}

/// The sysfs directories the hardware readers walk (`class/thermal`, `class/hwmon` and each
/// hwmon device, `class/power_supply`), listed once per [`LISTINGS_MAX_AGE`] and sorted.
///
/// Sensors, fans and batteries come and go rarely, while a full tick walks these directories
/// several times over (the sensors and the fans both walk hwmon, the thermal zones and the
/// cooling devices share `class/thermal`): on the Pi 4 fixture tree the listings were some 50
/// of a full tick's 314 system calls. The values in them are still read on every full tick.
#[derive(Debug, Default)]
pub struct Listings {
    listed_at: Option<Instant>,
    dirs: std::collections::HashMap<PathBuf, Arc<[PathBuf]>>,
}

/// How long [`Listings`] keeps a directory's entries: a sensor, fan or battery that appears
/// shows within this time.
pub const LISTINGS_MAX_AGE: Duration = Duration::from_secs(60);

impl Listings {
    /// `dir`'s entries, sorted; empty if it cannot be read.
    pub fn entries(&mut self, dir: &Path) -> Arc<[PathBuf]> {
        if self
            .listed_at
            .is_none_or(|at| at.elapsed() >= LISTINGS_MAX_AGE)
        {
            self.dirs.clear();
            self.listed_at = Some(Instant::now());
        }
        if let Some(entries) = self.dirs.get(dir) {
            return Arc::clone(entries);
        }
        let entries: Arc<[PathBuf]> = sorted_entries(dir).into();
        self.dirs.insert(dir.to_owned(), Arc::clone(&entries));
        entries
    }

    /// Lists every directory again at its next use.
    pub fn forget(&mut self) {
        self.listed_at = None;
    }
}

pub(crate) fn sorted_entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

/// Thermal zones as (type, °C). On a Pi the SoC's zone is `cpu-thermal`.
pub fn read_thermal_zones(sys_root: &Path) -> Vec<(String, f64)> {
    thermal_zones(sys_root, &mut Listings::default())
        .into_iter()
        .map(|(kind, celsius, _)| (kind, celsius))
        .collect()
}

/// Thermal zones as (type, °C, path of its `temp`).
pub fn thermal_zones(sys_root: &Path, listings: &mut Listings) -> Vec<(String, f64, PathBuf)> {
    listings
        .entries(&sys_root.join("class/thermal"))
        .iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("thermal_zone"))
        })
        .filter_map(|zone| {
            let kind = read_trimmed(&zone.join("type"))?;
            let temp = zone.join("temp");
            let milli = read_f64(&temp)?;
            Some((kind, milli / 1000.0, temp))
        })
        .collect()
}

/// The SoC temperature: the zone named like the CPU, else the first zone.
pub fn pi_cpu_celsius(zones: &[(String, f64)]) -> Option<f64> {
    pi_cpu_zone(zones.iter().map(|(kind, _)| kind.as_str())).map(|z| zones[z].1)
}

/// Which of the zones of these types [`pi_cpu_celsius`] reads.
pub fn pi_cpu_zone<'a>(kinds: impl IntoIterator<Item = &'a str>) -> Option<usize> {
    let mut any = false;
    for (i, kind) in kinds.into_iter().enumerate() {
        if matches!(
            kind,
            "cpu-thermal" | "cpu_thermal" | "soc_thermal" | "x86_pkg_temp"
        ) {
            return Some(i);
        }
        any = true;
    }
    any.then_some(0)
}

/// Every hwmon temperature input plus every thermal zone, grouped by chip name like psutil's
/// `sensors_temperatures()`.
pub fn read_sensors(
    sys_root: &Path,
    zones: &[(String, f64)],
    listings: &mut Listings,
) -> BTreeMap<String, Vec<SensorReading>> {
    let mut sensors: BTreeMap<String, Vec<SensorReading>> = BTreeMap::new();
    for hwmon in listings.entries(&sys_root.join("class/hwmon")).iter() {
        let Some(chip) = read_trimmed(&hwmon.join("name")) else {
            continue;
        };
        for input in listings.entries(hwmon).iter() {
            let Some(file) = input.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(prefix) = file
                .strip_suffix("_input")
                .filter(|p| p.starts_with("temp"))
            else {
                continue;
            };
            let Some(current) = read_f64(input) else {
                continue;
            };
            let milli = |suffix: &str| {
                read_f64(&hwmon.join(format!("{prefix}_{suffix}"))).map(|v| v / 1000.0)
            };
            sensors
                .entry(chip.clone())
                .or_default()
                .push(SensorReading {
                    label: read_trimmed(&hwmon.join(format!("{prefix}_label"))).unwrap_or_default(),
                    current: current / 1000.0,
                    high: milli("max"),
                    critical: milli("crit"),
                });
        }
    }
    for (kind, celsius) in zones {
        // A Pi's cpu-thermal zone also appears as an hwmon chip of the same name.
        let chip = kind.replace('-', "_");
        if sensors.contains_key(&chip) || sensors.contains_key(kind) {
            continue;
        }
        sensors.entry(chip).or_default().push(SensorReading {
            label: String::new(),
            current: *celsius,
            high: None,
            critical: None,
        });
    }
    sensors
}

/// The first battery under `/sys/class/power_supply`, with mains state; `None` without one.
pub fn read_battery(sys_root: &Path, listings: &mut Listings) -> Option<BatteryInfo> {
    let supplies = listings.entries(&sys_root.join("class/power_supply"));
    let kind = |p: &Path| read_trimmed(&p.join("type")).unwrap_or_default();
    let battery = supplies.iter().find(|p| kind(p) == "Battery")?;
    let percent = read_f64(&battery.join("capacity"))?;
    let status = read_trimmed(&battery.join("status")).unwrap_or_default();
    let mains_online = supplies
        .iter()
        .filter(|p| matches!(kind(p).as_str(), "Mains" | "USB"))
        .filter_map(|p| read_number::<u8>(&p.join("online")))
        .max()
        .map(|v| v == 1);
    let power_plugged = mains_online.or(match status.as_str() {
        "Charging" | "Full" => Some(true),
        "Discharging" => Some(false),
        _ => None,
    });
    let num = |f: &str| read_f64(&battery.join(f));
    let secsleft = if power_plugged == Some(false) {
        let (now, rate) = match (num("energy_now"), num("power_now")) {
            (Some(e), Some(p)) => (e, p),
            _ => (num("charge_now")?, num("current_now")?),
        };
        // `as` saturates; an absurd estimate is still not a panic.
        finite(now / rate * 3600.0)
            .filter(|_| rate > 0.0)
            .map(|secs| secs.max(0.0) as u64)
    } else {
        None
    };
    Some(BatteryInfo {
        percent,
        power_plugged,
        secsleft,
    })
}

/// Block-device mounts from `/proc/self/mounts` (like psutil's `disk_partitions(all=False)`),
/// one entry per mount point, with their space from `statvfs`. `None` when the mount table
/// cannot be read; a line that is not UTF-8 is still read (the table is bytes).
pub fn read_mounts(proc_root: &Path) -> Option<Vec<Partition>> {
    Some(measure_mounts(
        &fs::read(proc_root.join("self/mounts")).ok()?,
    ))
}

/// The block-device mounts of a mount table, measured with `statvfs`.
pub fn measure_mounts(table: &[u8]) -> Vec<Partition> {
    let mut partitions = Vec::new();
    measure_entries(&kept_mounts(table), &mut partitions);
    partitions
}

/// A mount to measure on every tick, its names converted once: a tick copies `Arc`s and
/// passes the kept path to `statvfs`, allocating nothing per mount.
#[derive(Debug)]
struct KeptMount {
    path: std::ffi::CString,
    device: Arc<str>,
    mountpoint: Arc<str>,
    fstype: Arc<str>,
}

/// The block-device mounts of a table, one per mount point (a mount point with a NUL byte
/// cannot be passed to `statvfs` and is left out, as it was when measuring failed).
fn kept_mounts(table: &[u8]) -> Vec<KeptMount> {
    let mut seen = std::collections::HashSet::new();
    parse_mounts(table)
        .into_iter()
        .filter(|m| seen.insert(m.mountpoint.clone()))
        .filter_map(|m| {
            Some(KeptMount {
                path: std::ffi::CString::new(m.mountpoint.as_slice()).ok()?,
                device: String::from_utf8_lossy(&m.device).into(),
                mountpoint: String::from_utf8_lossy(&m.mountpoint).into(),
                fstype: String::from_utf8_lossy(&m.fstype).into(),
            })
        })
        .collect()
}

/// The mount table (`PROC/self/mounts`), read and parsed again only when it changed: the
/// kernel renders every mount (cgroups, tmpfs, their options) on each read, which was the
/// largest part of an unwatched tick's system time, while mounts change rarely. procfs tells
/// of a change by `poll` (`POLLPRI`, see proc(5)); a file elsewhere (a fixture tree) is read
/// every time. The space of each mount is measured (`statvfs`) every time.
#[derive(Debug)]
pub struct MountTable {
    file: KeptFile,
    /// The block-device mounts of the last read, one per mount point.
    mounts: Option<Vec<KeptMount>>,
    /// Whether the open file is procfs's.
    watched: bool,
}

impl MountTable {
    pub fn new(path: PathBuf) -> MountTable {
        MountTable {
            file: KeptFile::new(path),
            mounts: None,
            watched: false,
        }
    }

    /// The block-device mounts with their space; `None` when the table cannot be read.
    pub fn measure(&mut self) -> Option<Vec<Partition>> {
        let mut partitions = Vec::new();
        self.measure_into(&mut partitions).then_some(partitions)
    }

    /// [`measure`](MountTable::measure) into `partitions` (cleared first), keeping its
    /// buffer; false when the table cannot be read.
    pub fn measure_into(&mut self, partitions: &mut Vec<Partition>) -> bool {
        partitions.clear();
        if self.mounts.is_none() || !self.unchanged() {
            self.mounts = None;
            let Some(table) = self.file.read_bytes() else {
                return false;
            };
            let mounts = kept_mounts(table);
            self.watched = self.file.file().is_some_and(is_procfs);
            self.mounts = Some(mounts);
        }
        measure_entries(self.mounts.as_deref().unwrap_or_default(), partitions);
        true
    }

    /// The kernel says the table is as it was when the file was opened or last polled.
    fn unchanged(&self) -> bool {
        use std::os::fd::AsRawFd;
        let Some(file) = self.file.file().filter(|_| self.watched) else {
            return false;
        };
        let mut fd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLPRI,
            revents: 0,
        };
        // SAFETY: one valid pollfd, the file is open for the call's duration; timeout 0.
        unsafe { libc::poll(&mut fd, 1, 0) == 0 }
    }
}

/// Whether `file` is on procfs (not a fixture tree's copy).
pub(crate) fn is_procfs(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: a valid open descriptor and a writable statfs struct that fstatfs fills.
    if unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstatfs returned 0, so it filled the struct.
    #[allow(clippy::unnecessary_cast)]
    let kind = unsafe { st.assume_init() }.f_type as i64;
    kind == PROC_SUPER_MAGIC
}

/// The space of each mount, by `statvfs` (those it cannot measure are left out).
fn measure_entries(mounts: &[KeptMount], partitions: &mut Vec<Partition>) {
    partitions.extend(mounts.iter().filter_map(|m| {
        let (total, used, free) = statvfs(&m.path)?;
        Some(Partition {
            device: Arc::clone(&m.device),
            mountpoint: Arc::clone(&m.mountpoint),
            fstype: Arc::clone(&m.fstype),
            total,
            used,
            free,
        })
    }));
}

/// One line of the mount table, fields as bytes with the octal escapes decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub device: Vec<u8>,
    pub mountpoint: Vec<u8>,
    pub fstype: Vec<u8>,
}

/// The block-device lines (device under `/dev/`) of a mount table, in order.
pub fn parse_mounts(table: &[u8]) -> Vec<MountEntry> {
    table
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let mut f = line
                .split(|b| b.is_ascii_whitespace())
                .filter(|f| !f.is_empty());
            let (device, mountpoint, fstype) = (f.next()?, f.next()?, f.next()?);
            if !device.starts_with(b"/dev/") {
                return None;
            }
            Some(MountEntry {
                device: unescape_mount(device),
                mountpoint: unescape_mount(mountpoint),
                fstype: unescape_mount(fstype),
            })
        })
        .collect()
}

/// `/proc/mounts` writes space, tab, newline and backslash as octal escapes (`\040`).
fn unescape_mount(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let code = field
            .get(i + 1..i + 4)
            .filter(|c| field[i] == b'\\' && c.iter().all(|d| (b'0'..=b'7').contains(d)))
            .and_then(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// (total, used, free-for-users) in bytes.
// The block counts are 32-bit on armhf, so the casts are not redundant everywhere.
#[allow(clippy::unnecessary_cast)]
fn statvfs(c_path: &std::ffi::CStr) -> Option<(u64, u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: c_path is a valid NUL-terminated string and st points to writable memory of the
    // right type; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize as u64;
    let total = (st.f_blocks as u64).saturating_mul(frsize);
    let used = (st.f_blocks as u64)
        .saturating_sub(st.f_bfree as u64)
        .saturating_mul(frsize);
    let free = (st.f_bavail as u64).saturating_mul(frsize);
    (total > 0).then_some((total, used, free))
}

/// Link details from `/sys/class/net/IF`: (is_up, mtu, speed in Mb/s, MAC).
pub fn read_link(sys_root: &Path, name: &str) -> (bool, Option<u32>, Option<u32>, Option<String>) {
    let dir = sys_root.join("class/net").join(name);
    let flags = read_trimmed(&dir.join("flags"))
        .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok());
    let is_up = flags.is_some_and(|f| f & 1 == 1); // IFF_UP
    let speed = read_number::<i64>(&dir.join("speed"))
        .filter(|s| *s > 0)
        .and_then(|s| u32::try_from(s).ok());
    let mac = read_trimmed(&dir.join("address")).filter(|m| !m.is_empty());
    (is_up, read_number(&dir.join("mtu")), speed, mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_counts_reclaimable_as_cached() {
        let m = parse_meminfo(
            "MemTotal:  1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nBuffers: 50 kB\n\
             Cached: 300 kB\nSwapCached: 7 kB\nSReclaimable: 20 kB\nSwapTotal: 400 kB\nSwapFree: 300 kB\n",
        )
        .unwrap();
        assert_eq!(m.total, 1000 * 1024);
        assert_eq!(m.available, 600 * 1024);
        assert_eq!(m.cached, 320 * 1024);
        assert_eq!(m.swap_used(), 100 * 1024);
        assert_eq!(m.used(), (1000 - 100 - 50 - 320) * 1024);
    }

    #[test]
    fn meminfo_without_available_estimates_it() {
        let m =
            parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 300 kB\n")
                .unwrap();
        assert_eq!(m.available, 450 * 1024);
    }

    #[test]
    fn meminfo_without_total_is_unread_not_zero() {
        assert_eq!(parse_meminfo(""), None);
        assert_eq!(parse_meminfo("MemTotal: 0 kB\nMemFree: 5 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: -5 kB\n"), None);
        // A size whose bytes overflow u64 is not read (rather than wrapped).
        assert_eq!(parse_meminfo("MemTotal: 18446744073709551615 kB\n"), None);
    }

    #[test]
    fn net_dev_reads_errors_and_drops() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n\
            wlan0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n\
            bad0: 1000 x 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n";
        let v = parse_net_dev(text, &[]);
        assert_eq!(v.len(), 2, "the line with a non-number is left out: {v:?}");
        assert_eq!(&*v[0].0, "wlan0");
        let io = v[0].1;
        assert_eq!((io.bytes_recv, io.bytes_sent), (1000, 2000));
        assert_eq!((io.packets_recv, io.packets_sent), (10, 20));
        assert_eq!((io.errin, io.dropin, io.errout, io.dropout), (1, 2, 3, 4));
    }

    #[test]
    fn net_dev_names_are_the_last_ticks_where_they_match() {
        let tick = |eth: &str| {
            format!(
                "h1\nh2\n{eth}: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
                 wlan0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
            )
        };
        let first = parse_net_dev(tick("eth0"), &[]);
        let same = parse_net_dev(tick("eth0"), &first);
        assert!(same
            .iter()
            .zip(&first)
            .all(|(a, b)| Arc::ptr_eq(&a.0, &b.0)));
        // A new name is new text; a known one found elsewhere in the list is still shared.
        let renamed = parse_net_dev(tick("end0"), &first);
        assert_eq!(&*renamed[0].0, "end0");
        assert!(!Arc::ptr_eq(&renamed[0].0, &first[0].0));
        assert!(Arc::ptr_eq(&renamed[1].0, &first[1].0));
        let moved = parse_net_dev(tick("eth0"), &first[1..]);
        assert!(Arc::ptr_eq(&moved[1].0, &first[1].0), "{moved:?}");
        // Not UTF-8: left out.
        let mut bytes = tick("eth0").into_bytes();
        bytes[6] = 0xff;
        assert_eq!(parse_net_dev(&bytes, &first).len(), 1);
    }

    #[test]
    fn diskstats_skips_partitions_and_loops() {
        let text = " 179 0 mmcblk0 100 0 800 0 50 0 400 0 0 0 0\n 179 1 mmcblk0p1 7 0 56 0 1 0 8 0 0 0 0\n 7 0 loop0 9 0 9 0 9 0 9 0 0 0 0\n 252 0 zram0 5 0 40 0 70 0 560 0 0 0 0\n";
        let whole = |n: &str| matches!(n, "mmcblk0" | "loop0" | "zram0");
        let io = parse_diskstats(text, whole);
        let disks = parse_diskstats_per_disk(text, |n| whole(n).then(|| n.to_owned()));
        assert_eq!(disks.len(), 1, "{disks:?}");
        assert_eq!(disks[0].0, "mmcblk0");
        assert_eq!(disks[0].1, io);
        assert_eq!(io.read_count, 100);
        assert_eq!(io.read_bytes, 800 * 512);
        assert_eq!(io.write_count, 50);
        assert_eq!(io.write_bytes, 400 * 512);
    }

    #[test]
    fn net_dev_lines_short_or_with_a_late_non_counter_are_left_out() {
        let text = "h1\nh2\n eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n\
            short0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n\
            late0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 x\n";
        let v = parse_net_dev(text, &[]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(
            (v[0].1.bytes_recv, v[0].1.bytes_sent, v[0].1.dropout),
            (1, 9, 12)
        );
    }

    #[test]
    fn diskstats_lines_under_ten_fields_are_skipped() {
        let text = " 8 0 sda 1 0 2 0 3 0\n 8 16 sdb 1 0 2 0 3 0 4\n";
        let disks = parse_diskstats_per_disk(text, |n| Some(n.to_owned()));
        assert_eq!(disks.len(), 1, "{disks:?}");
        assert_eq!(disks[0].0, "sdb");
        assert_eq!(disks[0].1.write_bytes, 4 * 512);
    }

    #[test]
    fn meminfo_stops_at_the_keys_it_reads_and_ignores_the_rest() {
        let text = "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nBuffers: 50 kB\n\
            Cached: 300 kB\nSwapCached: 7 kB\nSwapTotal: 200 kB\nSwapFree: 150 kB\n\
            SReclaimable: 20 kB\nHugePages_Total: x\nMemTotal: 1 kB\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(m.total, 1000 * 1024);
        assert_eq!(m.cached, 320 * 1024);
        assert_eq!((m.swap_total, m.swap_free), (200 * 1024, 150 * 1024));
        assert_eq!(m.available, 600 * 1024);
    }

    #[test]
    fn diskstats_sums_saturate() {
        let max = u64::MAX;
        let text = format!(" 8 0 sda {max} 0 {max} 0 1 0 1 0\n 8 16 sdb 5 0 5 0 1 0 1 0\n");
        let io = parse_diskstats(&text, |_| true);
        assert_eq!(io.read_count, u64::MAX);
        assert_eq!(io.read_bytes, u64::MAX);
        assert_eq!(io.write_count, 2);
    }

    #[test]
    fn uptime_rejects_what_a_duration_cannot_hold() {
        assert_eq!(
            parse_uptime("93784.51 362118.60\n"),
            Some(Duration::from_secs_f64(93784.51))
        );
        for bad in ["-5.00 1.0", "NaN 1", "inf 1", "1e20 1", "-0.5", "", "abc"] {
            let parsed = parse_uptime(bad);
            // 1e20 s fits no Duration (u64 seconds end at 1.8e19).
            assert_eq!(parsed, None, "{bad:?}");
        }
    }

    #[test]
    fn btime_is_read_from_stat() {
        let stat = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1752395215\nprocesses 7\n";
        assert_eq!(
            parse_btime(stat),
            Some(UNIX_EPOCH + Duration::from_secs(1_752_395_215))
        );
        assert_eq!(parse_btime("cpu 1 2\n"), None);
        assert_eq!(parse_btime("btime -1\n"), None);
        assert_eq!(parse_btime("btime 18446744073709551615\n"), None);
    }

    #[test]
    fn loadavg_without_nan() {
        assert_eq!(
            parse_loadavg("0.42 0.31 0.25 1/187 2210"),
            Some([0.42, 0.31, 0.25])
        );
        for bad in ["NaN 0.31 0.25", "0.1 inf 0.2", "0.1 0.2 -1", "0.1 0.2", ""] {
            assert_eq!(parse_loadavg(bad), None, "{bad:?}");
        }
        // Not the kernel's `%lu.%02lu`, but numbers all the same.
        assert_eq!(parse_loadavg("1 0.5 1e2 1/2 3"), Some([1.0, 0.5, 100.0]));
    }

    #[test]
    fn load_figures_in_the_kernels_format_are_what_str_parse_reads() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let figures = (0..2000u64).map(|i| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Small loads, each of the hundredths, and the widest whole parts taken this way.
            match i % 3 {
                0 => format!("{}.{:02}", i / 300, i % 100),
                1 => format!("{}.{:02}", rng % 1_000, rng % 100),
                _ => format!("{}.{:02}", rng % 1_000_000_000_000, rng % 100),
            }
        });
        for figure in figures {
            let line = format!("{figure} {figure} {figure} 1/100 4000\n");
            let parsed: f64 = figure.parse().unwrap();
            assert_eq!(
                parse_loadavg_line(line.as_bytes()),
                (Some([parsed; 3]), Some(4000)),
                "{figure}"
            );
        }
    }

    #[test]
    fn last_pid_is_the_fifth_field() {
        assert_eq!(parse_last_pid("0.42 0.31 0.25 1/187 2210\n"), Some(2210));
        assert_eq!(parse_last_pid("0.00 0.01 0.05 1/123 4567"), Some(4567));
        assert_eq!(
            parse_last_pid("0.00 0.01 0.05 1/123 4294967295\n"),
            Some(u32::MAX)
        );
        // Truncated: a read cut short, an empty file.
        for cut in [
            "0.42 0.31 0.25 1/187",
            "0.42 0.31 0.25 1/187 \n",
            "0.42",
            "",
        ] {
            assert_eq!(parse_last_pid(cut), None, "{cut:?}");
        }
        // Garbage: not a decimal PID, out of range, signed, a field too many.
        for bad in [
            "0.42 0.31 0.25 1/187 22x0\n",
            "0.42 0.31 0.25 1/187 -1\n",
            "0.42 0.31 0.25 1/187 +5\n",
            "0.42 0.31 0.25 1/187 4294967296\n",
            "0.42 0.31 0.25 1/187 2210 9\n",
            "\u{0} \u{0} \u{0} \u{0} \u{0}",
            "a b c d e",
        ] {
            assert_eq!(parse_last_pid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cpu_zone_preferred_over_first() {
        let zones = vec![
            ("acpitz".to_owned(), 30.0),
            ("cpu-thermal".to_owned(), 48.3),
        ];
        assert_eq!(pi_cpu_celsius(&zones), Some(48.3));
        assert_eq!(pi_cpu_celsius(&zones[..1]), Some(30.0));
        assert_eq!(pi_cpu_celsius(&[]), None);
    }

    #[test]
    fn mount_escapes_are_decoded() {
        assert_eq!(unescape_mount(b"/media/my\\040disk"), b"/media/my disk");
        assert_eq!(unescape_mount(b"/plain"), b"/plain");
        assert_eq!(unescape_mount(b"/odd\\x"), b"/odd\\x");
        assert_eq!(unescape_mount(b"/odd\\09"), b"/odd\\09");
        assert_eq!(unescape_mount(b"/end\\"), b"/end\\");
    }

    /// A mount table with a non-UTF-8 line, a bind mount listed twice, an escaped mount point
    /// (a real directory whose name has a space) and a pseudo file system.
    #[test]
    fn mounts_are_parsed_as_bytes_and_measured_with_statvfs() {
        let dir = tempfile::tempdir().unwrap();
        let spaced = dir.path().join("my disk");
        fs::create_dir(&spaced).unwrap();
        let spaced_escaped = spaced.to_str().unwrap().replace(' ', "\\040");
        let proc_root = dir.path().join("proc");
        fs::create_dir_all(proc_root.join("self")).unwrap();
        let mut table = Vec::new();
        table.extend_from_slice(b"proc /proc proc rw 0 0\n");
        table.extend_from_slice(b"/dev/root / ext4 rw 0 0\n");
        table.extend_from_slice(b"/dev/sda1 /media/\xff\xfe vfat rw 0 0\n");
        table.extend_from_slice(format!("/dev/sdb1 {spaced_escaped} ext4 rw 0 0\n").as_bytes());
        table.extend_from_slice(b"/dev/root / ext4 rw,bind 0 0\n");
        fs::write(proc_root.join("self/mounts"), &table).unwrap();

        let entries = parse_mounts(&table);
        let points: Vec<&[u8]> = entries.iter().map(|e| e.mountpoint.as_slice()).collect();
        assert_eq!(
            points,
            [
                b"/".as_slice(),
                b"/media/\xff\xfe".as_slice(),
                spaced.to_str().unwrap().as_bytes(),
                b"/".as_slice()
            ]
        );

        let mounts = read_mounts(&proc_root).expect("the table is readable");
        let names: Vec<&str> = mounts.iter().map(|m| &*m.mountpoint).collect();
        // The non-UTF-8 mount point does not exist here, so statvfs leaves it out; it does
        // not hide the lines after it. The bind mount is listed once.
        assert_eq!(names, ["/", spaced.to_str().unwrap()]);
        assert_eq!(&*mounts[1].device, "/dev/sdb1");
        assert_eq!(&*mounts[1].fstype, "ext4");
        for m in &mounts {
            assert!(
                m.total > 0 && m.used <= m.total && m.free <= m.total,
                "{m:?}"
            );
        }
        // The escaped directory is on the same file system as the temporary directory.
        let path = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        let tmp = statvfs(&path).unwrap();
        assert_eq!(mounts[1].total, tmp.0);
    }

    #[test]
    fn missing_roots_give_nothing() {
        let nowhere = Path::new("/nonexistent-pistats-root");
        assert!(read_meminfo(nowhere).is_none());
        assert!(read_net_dev(nowhere).is_none());
        assert!(read_mounts(nowhere).is_none());
        assert!(read_uptime(nowhere).is_none());
        assert!(read_boot_time(nowhere).is_none());
        assert!(read_loadavg(nowhere).is_none());
        assert!(read_battery(nowhere, &mut Listings::default()).is_none());
        assert!(read_sensors(nowhere, &[], &mut Listings::default()).is_empty());
        assert_eq!(CpuFreq::new(nowhere, 4).read(), (None, None, None));
    }

    #[test]
    fn kept_files_are_reread_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loadavg");
        fs::write(&path, "0.5 0.4 0.3 1/99 7\n").unwrap();
        let mut kept = KeptFile::new(path.clone());
        assert_eq!(kept.read_text().as_deref(), Some("0.5 0.4 0.3 1/99 7\n"));
        // Rewritten in place (as the kernel regenerates /proc files): the new content.
        fs::write(&path, "1.5 1.4\n").unwrap();
        assert_eq!(kept.read_text().as_deref(), Some("1.5 1.4\n"));
        assert_eq!(kept.read_text().as_deref(), Some("1.5 1.4\n"));
        let mut missing = KeptFile::new(dir.path().join("absent"));
        assert_eq!(missing.read_bytes(), None);
        fs::write(dir.path().join("absent"), "late").unwrap();
        assert_eq!(
            missing.read_text().as_deref(),
            Some("late"),
            "opened once it exists"
        );
    }

    /// The kept buffer grows past the first read's size and shrinks back to what the file
    /// holds now; a file larger than a seq_file's page comes whole.
    #[test]
    fn kept_files_read_to_the_end_whatever_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&path, &big).unwrap();
        let mut kept = KeptFile::new(path.clone());
        assert_eq!(kept.read_bytes(), Some(&big[..]));
        fs::write(&path, b"short").unwrap();
        assert_eq!(kept.read_bytes(), Some(&b"short"[..]));
        fs::write(&path, &big[..9000]).unwrap();
        assert_eq!(kept.read_bytes(), Some(&big[..9000]));
        // The kernel's crypto algorithms, one seq_file record each: about 11 KB here, more than
        // one seq_file round hands out.
        let mut crypto = KeptFile::new(PathBuf::from("/proc/crypto"));
        let expected = fs::read("/proc/crypto").unwrap();
        assert!(expected.len() > 4096, "{} bytes", expected.len());
        assert_eq!(crypto.read_bytes(), Some(&expected[..]));
        assert_eq!(crypto.read_bytes(), Some(&expected[..]));
    }

    /// The per-tick scanners take what the kernel writes: digits only (no sign), any run of
    /// spaces or tabs between fields, nothing that overflows.
    #[test]
    fn counters_are_whole_unsigned_numbers() {
        let mut out = [0u64; 3];
        assert_eq!(counters(b"  1 22\t333  4444 ", &mut out), Some(4));
        assert_eq!(out, [1, 22, 333]);
        assert_eq!(counters(b"", &mut out), Some(0));
        assert_eq!(counters(b"1 -2", &mut out), None);
        assert_eq!(counters(b"1 2x", &mut out), None);
        assert_eq!(counters(b"18446744073709551615", &mut out), Some(1));
        assert_eq!(out[0], u64::MAX);
        assert_eq!(counters(b"18446744073709551616", &mut out), None);

        assert_eq!(leading_number(b"    3884 kB"), Some(3884));
        assert_eq!(leading_number(b"7"), Some(7));
        assert_eq!(leading_number(b" 12kB"), None);
        assert_eq!(leading_number(b"  kB"), None);
        assert_eq!(leading_number(b" 99999999999999999999 kB"), None);
        // MemAvailable is malformed, so it is estimated from the free memory.
        let text = "MemTotal: 1000 kB\nMemFree:\t200 kB\nMemAvailable: 12kB\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(
            (m.total, m.free, m.available),
            (1000 * 1024, 200 * 1024, 200 * 1024)
        );
    }

    /// The real mount table is parsed once and measured on every call, with the same result
    /// as reading it afresh; a plain file (a fixture) is read again on every call.
    #[test]
    fn mount_table_is_reread_only_when_it_changes() {
        let mut table = MountTable::new(PathBuf::from("/proc/self/mounts"));
        let fresh = || measure_mounts(&fs::read("/proc/self/mounts").unwrap());
        let names = |p: Vec<Partition>| -> Vec<String> {
            p.iter().map(|p| p.mountpoint.to_string()).collect()
        };
        assert_eq!(names(table.measure().unwrap()), names(fresh()));
        assert!(table.watched, "/proc/self/mounts is procfs's");
        assert!(table.unchanged());
        assert_eq!(names(table.measure().unwrap()), names(fresh()));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mounts");
        fs::write(&path, "proc /proc proc rw 0 0\n").unwrap();
        let mut fixture = MountTable::new(path.clone());
        assert_eq!(fixture.measure(), Some(Vec::new()));
        assert!(!fixture.watched);
        let root = fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .lines()
            .find(|l| l.split(' ').nth(1) == Some("/") && l.starts_with("/dev/"))
            .map(str::to_owned);
        if let Some(root) = root {
            fs::write(&path, format!("{root}\n")).unwrap();
            assert_eq!(names(fixture.measure().unwrap()), ["/"]);
        }
        fs::remove_file(&path).unwrap();
        drop(fixture.file.file.take());
        assert_eq!(fixture.measure(), None, "unreadable: unknown, not empty");
    }

    /// A mount made after the table was read is noticed by the poll.
    #[test]
    #[ignore = "needs root: mounts a tmpfs"]
    fn mount_table_sees_a_new_mount() {
        let mut table = MountTable::new(PathBuf::from("/proc/self/mounts"));
        table.measure().unwrap();
        assert!(table.unchanged());
        let dir = tempfile::tempdir().unwrap();
        let mount = |args: &[&std::ffi::OsStr]| {
            let status = std::process::Command::new(args[0])
                .args(&args[1..])
                .status();
            assert!(status.unwrap().success(), "{args:?}");
        };
        let target = dir.path().as_os_str();
        mount(&[
            "mount".as_ref(),
            "-t".as_ref(),
            "tmpfs".as_ref(),
            "none".as_ref(),
            target,
        ]);
        let changed = !table.unchanged();
        mount(&["umount".as_ref(), target]);
        assert!(changed, "the poll did not report the new mount");
        table.measure().unwrap();
        // The unmount is a change too; after it was read, quiet again.
        table.measure().unwrap();
        assert!(table.unchanged());
    }

    /// On the real /sys: a kept-open attribute (as the SoC zone's `temp` is kept) shows the
    /// kernel's current value on each read, here loopback's received bytes around a datagram.
    #[test]
    fn kept_sysfs_attribute_tracks_the_kernel() {
        let mut rx = KeptFile::new(PathBuf::from("/sys/class/net/lo/statistics/rx_bytes"));
        let mut bytes = || -> u64 { rx.read_text().unwrap().trim().parse().unwrap() };
        let before = bytes();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .send_to(&[0u8; 1000], socket.local_addr().unwrap())
            .unwrap();
        let mut buf = [0u8; 1000];
        socket.recv(&mut buf).unwrap();
        assert!(bytes() >= before + 1000);
    }

    /// On the real /proc: a kept-open seq file re-reads fresh content after seeking back.
    #[test]
    fn kept_proc_file_tracks_the_kernel() {
        let mut stat = KeptFile::new(PathBuf::from("/proc/self/stat"));
        let first = stat.read_text().unwrap().into_owned();
        let second = stat.read_text().unwrap().into_owned();
        assert!(
            first.starts_with(&format!("{} ", std::process::id())),
            "{first}"
        );
        assert_eq!(
            first.split_whitespace().next(),
            second.split_whitespace().next()
        );
        let mut uptime = KeptFile::new(PathBuf::from("/proc/uptime"));
        let a = parse_uptime(&uptime.read_text().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let b = parse_uptime(&uptime.read_text().unwrap()).unwrap();
        assert!(b > a, "{a:?} then {b:?}");
    }

    /// The read system calls this thread has made (`/proc/thread-self/io`'s `syscr`), read
    /// through a kept file of its own: two reads each time, once its buffer has grown.
    fn reads_so_far(io: &mut KeptFile) -> u64 {
        let text = io.read_text().unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix("syscr: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// On the real /proc: a file of one record comes whole in one `pread` a tick, every line
    /// of it, also when it is larger than the first read's room (`/proc/stat` is); a small
    /// file of many records too, with the room a seq_file leaves; any file can be read until a
    /// read returns nothing.
    #[test]
    fn whole_files_take_one_read_a_tick() {
        let mut io = KeptFile::new(PathBuf::from("/proc/thread-self/io"));
        reads_so_far(&mut io);
        let base = reads_so_far(&mut io);
        let own = reads_so_far(&mut io) - base;
        let mut reads_per_tick = |file: &mut KeptFile| {
            file.read_bytes().unwrap();
            let before = reads_so_far(&mut io);
            for _ in 0..10 {
                file.read_bytes().unwrap();
            }
            (reads_so_far(&mut io) - before - own) / 10
        };
        let mut stat = KeptFile::whole(PathBuf::from("/proc/stat"));
        assert_eq!(reads_per_tick(&mut stat), 1);
        let text = stat.read_text().unwrap().into_owned();
        assert!(text.len() > SMALL_FILE / 4, "{} bytes", text.len());
        assert!(text.starts_with("cpu "), "{text}");
        assert!(
            text.lines().last().unwrap().starts_with("softirq "),
            "{text}"
        );
        for name in ["meminfo", "loadavg", "uptime"] {
            let mut whole = KeptFile::whole(Path::new("/proc").join(name));
            assert_eq!(reads_per_tick(&mut whole), 1, "{name}");
            let mut plain = KeptFile::new(Path::new("/proc").join(name));
            assert_eq!(reads_per_tick(&mut plain), 2, "{name}");
            assert_eq!(
                whole.read_text().unwrap().lines().count(),
                plain.read_text().unwrap().lines().count(),
                "{name}"
            );
        }
        for name in ["diskstats", "net/dev"] {
            let mut records = KeptFile::records(Path::new("/proc").join(name));
            let mut plain = KeptFile::new(Path::new("/proc").join(name));
            let len = plain.read_bytes().unwrap().len();
            let expected = if len + LONGEST_RECORD <= SEQ_BUFFER_MIN {
                1
            } else {
                2
            };
            assert_eq!(
                reads_per_tick(&mut records),
                expected,
                "{name}, {len} bytes"
            );
            assert_eq!(reads_per_tick(&mut plain), 2, "{name}");
            assert_eq!(
                records.read_text().unwrap().lines().count(),
                plain.read_text().unwrap().lines().count(),
                "{name}"
            );
        }
        // A seq_file of short records longer than a page: read on to its end, every record.
        let mut long = KeptFile::records(PathBuf::from("/proc/self/maps"));
        let mut plain = KeptFile::new(PathBuf::from("/proc/self/maps"));
        let (text, all) = (long.read_text().unwrap(), plain.read_text().unwrap());
        assert!(all.len() > SEQ_BUFFER_MIN, "{} bytes", all.len());
        let (a, b) = (text.lines().count(), all.lines().count());
        assert!(a.abs_diff(b) <= 2, "{a} and {b} lines");
        let mut rx = KeptFile::whole(PathBuf::from("/sys/class/net/lo/statistics/rx_bytes"));
        assert_eq!(reads_per_tick(&mut rx), 1);
        // A fixture file larger than the room, read whole.
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(dir.path().join("big"), &big).unwrap();
        let mut fixture = KeptFile::whole(dir.path().join("big"));
        assert_eq!(fixture.read_bytes(), Some(&big[..]));
        fs::write(dir.path().join("big"), &big[..5000]).unwrap();
        assert_eq!(fixture.read_bytes(), Some(&big[..5000]));
    }

    #[test]
    fn non_utf8_files_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("loadavg"), b"0.5 0.4 0.3 1/99 \xff\n").unwrap();
        assert_eq!(read_loadavg(dir.path()), Some([0.5, 0.4, 0.3]));
        fs::write(
            dir.path().join("meminfo"),
            b"Junk\xff: 1 kB\nMemTotal: 2 kB\n",
        )
        .unwrap();
        assert_eq!(read_meminfo(dir.path()).map(|m| m.total), Some(2048));
    }

    /// Each CPU's current frequency is re-read through its kept file (a Pi 4's cpufreq
    /// files: `tests/fixtures/pi4/sys/devices/system/cpu/cpu0/cpufreq`, in kHz), a CPU
    /// without a figure is left out of the mean, and the limits are read once.
    #[test]
    fn cpufreq_is_reread_through_kept_files() {
        let dir = tempfile::tempdir().unwrap();
        let cpufreq = |cpu: usize| {
            dir.path()
                .join(format!("devices/system/cpu/cpu{cpu}/cpufreq"))
        };
        for cpu in 0..2 {
            fs::create_dir_all(cpufreq(cpu)).unwrap();
            fs::write(cpufreq(cpu).join("scaling_cur_freq"), "600000\n").unwrap();
        }
        fs::write(cpufreq(0).join("cpuinfo_min_freq"), "600000\n").unwrap();
        fs::write(cpufreq(0).join("cpuinfo_max_freq"), "1500000\n").unwrap();
        let mut freq = CpuFreq::new(dir.path(), 3);
        assert_eq!(freq.read(), (Some(600.0), Some(600.0), Some(1500.0)));
        fs::write(cpufreq(1).join("scaling_cur_freq"), "1500000\n").unwrap();
        fs::remove_file(cpufreq(0).join("cpuinfo_max_freq")).unwrap();
        assert_eq!(freq.read(), (Some(1050.0), Some(600.0), Some(1500.0)));
        assert_eq!(
            CpuFreq::new(Path::new("/nonexistent"), 2).read(),
            (None, None, None)
        );
    }

    /// A directory is listed once within [`LISTINGS_MAX_AGE`], however often it is walked;
    /// `forget` (or the age) lists it again.
    #[test]
    fn listings_are_kept_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let hwmon = dir.path().join("class/hwmon");
        fs::create_dir_all(hwmon.join("hwmon0")).unwrap();
        let mut listings = Listings::default();
        assert_eq!(&*listings.entries(&hwmon), [hwmon.join("hwmon0")]);
        fs::create_dir(hwmon.join("hwmon1")).unwrap();
        assert_eq!(&*listings.entries(&hwmon), [hwmon.join("hwmon0")], "kept");
        listings.forget();
        assert_eq!(
            &*listings.entries(&hwmon),
            [hwmon.join("hwmon0"), hwmon.join("hwmon1")]
        );
        fs::remove_dir(hwmon.join("hwmon0")).unwrap();
        listings.listed_at = Some(Instant::now() - LISTINGS_MAX_AGE);
        assert_eq!(
            &*listings.entries(&hwmon),
            [hwmon.join("hwmon1")],
            "aged out"
        );
        assert!(listings.entries(&dir.path().join("nonexistent")).is_empty());
    }
}
