//! Persistence of the aggregate tiers and the events in `state_dir`, written so that an SD card
//! barely notices and a bad file never stops the daemon.
//!
//! # Files
//!
//! - `history.bin`: a snapshot of the fine and coarse tiers (with their open buckets), the
//!   timeline clock, the events and the boot id. Raw points are not kept: an hour of 1-second
//!   values is what would wear the card, and the 1-minute tier covers the gap after a restart.
//!   It is replaced atomically: written to `history.bin.tmp`, `fsync`ed, renamed over, and the
//!   directory `fsync`ed, so a power cut leaves the old file or the new one, never half of each.
//! - `history.journal`: what each later save adds (the buckets sealed since, the open buckets,
//!   new events), appended as one checksummed record and `fdatasync`ed: a few KiB per save
//!   instead of the whole snapshot (about 5 MiB with a year loaded). When the journal reaches
//!   1 MiB the next save writes a new snapshot and empties it. A record cut short by a power
//!   failure fails its checksum and ends the replay; the next save then writes a snapshot.
//!   Records carry the snapshot's generation, so a journal left over from an older snapshot is
//!   never replayed onto a newer one.
//! - A save is two steps: [`Store::encode_save`] copies what is new into a buffer while the
//!   caller holds the history's and the events' locks, [`Store::write`] writes and syncs it
//!   after they are released. Only a write that succeeded advances what the store knows to be
//!   on disk; after a failed one the next save is a whole snapshot, so nothing is lost.
//! - `running`: created at start (holding the boot id), removed after the final save of a clean
//!   stop. Found at start, it means the last run did not stop cleanly.
//!
//! # Format (version 2)
//!
//! Hand-rolled, little-endian, no new dependency: the content is a few flat arrays of `u16`
//! codes that are already the in-memory layout, so a serde format (bincode, postcard) would add
//! a crate without making it simpler, and would still need the checksum and version around it.
//! The snapshot is one frame; the journal is a sequence of frames whose payloads hold only new
//! rows and events.
//!
//! ```text
//! frame   "PISTATSH" | version u16 | 0 u16 | payload length u32 | CRC-32 (IEEE) of payload u32
//! payload generation u64 | saved at (unix ms u64) | boot id (str)
//!         | clock present u8 [timeline ms u64, wall ms u64]
//!         | cores u16 | tiers u8 × { bucket ms u64 | rows u32 × { timeline ms u64 | flags u8 |
//!         (12 + cores) × (min, mean, max) u16 } | open u8 [bucket u64 | flags u8 | (12 + cores) ×
//!         { count u32 | sum f64 | min f32 | max f32 }] } | next event seq u64 | events u32 ×
//!         { seq u64 | t unix ms u64 | kind (str) | severity u8 | message (str) |
//!         values u8 × { key (str) | 0 f64 or 1 (str) } }
//!         | disk days length u32 | disk days (version 2 on)
//! disk days  day present u8 [local day i32] | devices u8 × { name length u8 | name
//!         | counter present u8 [counter u64] | today u64 | closed days u8 × { day i32 | bytes u64 } }
//! str     length u16 | UTF-8 bytes
//! ```
//!
//! Version 2 added the disk days section (bytes written per disk per day, see
//! [`super::disk_days`]); every frame carries the whole ledger (at most 16 devices × 31 days, a
//! few hundred bytes on a Pi), and the newest frame's wins. Version 1 files are still read, with
//! an empty ledger. The section is length-prefixed and decoded on its own: content that does not
//! decode is logged and the ledger starts empty, the tiers and events are kept.
//!
//! A file that is truncated, fails its checksum, has a foreign magic or a newer version is
//! logged, renamed to `history.bin.corrupt-<unix seconds>` (the newest three are kept for a
//! post-mortem) and replaced by the next save. The decoder checks every length against what is
//! left, so no input can make it allocate more than the file's size or panic (property-tested).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::series::MISSING;
use super::tier::Acc;
use super::{
    unix_ms, DiskDays, History, HistoryConfig, HistoryConfigError, MAX_CORES, SCALAR_SERIES,
};
use crate::events::{Event, EventKind, EventLog, EventValue, PreviousRun, Severity};

const MAGIC: &[u8; 8] = b"PISTATSH";
/// Version written; files of a newer one are not read (moved aside).
pub const FORMAT_VERSION: u16 = 2;
const HEADER_LEN: usize = 20;
const STATE_FILE: &str = "history.bin";
const JOURNAL_FILE: &str = "history.journal";
/// A journal this long is folded into a new snapshot (about four days of 15-minute saves).
const COMPACT_AT: u64 = 1 << 20;
const MARKER_FILE: &str = "running";
const KEEP_CORRUPT: usize = 3;

/// A state directory could not be used; the caller logs it and runs RAM-only.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Config(#[from] HistoryConfigError),
    /// A journal record encoded against files that changed before it was written (two saves
    /// interleaved): it is not written, and the next save writes a snapshot.
    #[error("the encoded save no longer matches the state files; a snapshot follows")]
    Stale,
}

/// Why a state file was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not a pistats state file")]
    Foreign,
    #[error("written by a newer pistats (format version {0})")]
    FutureVersion(u16),
    #[error("truncated")]
    Truncated,
    #[error("checksum mismatch")]
    Checksum,
    #[error("invalid content: {0}")]
    Invalid(&'static str),
}

/// What [`Store::load`] found.
#[derive(Debug)]
pub struct Restored {
    pub history: History,
    pub events: EventLog,
    /// The last run, for the start-up events; `None` on a first start.
    pub previous: Option<PreviousRun>,
    /// Where a bad state file was moved, and why.
    pub moved_aside: Option<(PathBuf, DecodeError)>,
}

/// What the files in the state directory hold, so that a save appends only what is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OnDisk {
    generation: u64,
    /// Newest persisted row of the fine and coarse tiers.
    rows: [Option<u64>; 2],
    events_seq: u64,
    journal_len: u64,
}

impl OnDisk {
    fn of(generation: u64, history: &History, events: &EventLog, journal_len: u64) -> OnDisk {
        let tiers = history.tiers();
        OnDisk {
            generation,
            rows: [tiers[1].newest(), tiers[2].newest()],
            events_seq: events.iter().next_back().map_or(0, |e| e.seq),
            journal_len,
        }
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    /// `None` until a snapshot is known good: the next save writes one.
    on_disk: Option<OnDisk>,
    #[cfg(test)]
    write_hook: Option<WriteHook>,
}

/// A save encoded by [`Store::encode_save`], to be written by [`Store::write`] once the
/// history's and the events' locks are released.
#[derive(Debug)]
pub struct Encoded {
    bytes: Vec<u8>,
    kind: Kind,
    /// What the files hold once this is written.
    after: OnDisk,
}

impl Encoded {
    /// Bytes the write will put on disk.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A whole snapshot; the journal is emptied after it.
    Snapshot,
    /// A record of what is new since `base`, which must still be what is on disk.
    Journal { base: OnDisk },
}

#[cfg(test)]
#[derive(Clone)]
struct WriteHook(std::sync::Arc<dyn Fn() + Send + Sync>);

#[cfg(test)]
impl std::fmt::Debug for WriteHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteHook")
    }
}

impl Store {
    /// No I/O happens until [`Store::load`].
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store {
            dir: dir.into(),
            on_disk: None,
            #[cfg(test)]
            write_hook: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Reads the state (a missing directory or file is a first start). A bad file is moved aside
    /// and the history starts empty; only an unreadable directory is an error.
    pub fn load(
        &mut self,
        config: HistoryConfig,
        cores: usize,
        event_capacity: usize,
    ) -> Result<Restored, StoreError> {
        self.on_disk = None;
        let mut history = self.empty_history(config, cores)?;
        let mut events = EventLog::new(event_capacity);
        let marker = match fs::read_to_string(self.dir.join(MARKER_FILE)) {
            Ok(text) => Some(text.trim().to_owned()).filter(|s| !s.is_empty()),
            Err(e) if nothing_stored(&e) => None,
            // Present but unreadable: still a sign of an unclean stop.
            Err(_) => Some(String::new()),
        };
        let unclean = marker.is_some();
        let path = self.state_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if nothing_stored(&e) => None,
            Err(source) => {
                return Err(StoreError::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        let mut moved_aside = None;
        let mut previous = marker.map(|boot_id| PreviousRun {
            clean: false,
            boot_id: Some(boot_id).filter(|s| !s.is_empty()),
            last_saved: None,
        });
        if let Some(bytes) = bytes {
            match decode(&bytes, &mut history, &mut events) {
                Ok(meta) => {
                    let meta = self.replay_journal(meta, &mut history, &mut events);
                    previous = Some(PreviousRun {
                        clean: !unclean,
                        boot_id: meta.boot_id.or(previous.and_then(|p| p.boot_id)),
                        last_saved: Some(meta.saved_at),
                    });
                }
                Err(why) => {
                    // Whatever was decoded before the fault is dropped with the file.
                    history = self.empty_history(config, cores)?;
                    events = EventLog::new(event_capacity);
                    let aside = self.move_aside(&path);
                    tracing::warn!(
                        "state file {} is unusable ({why}); {}; starting with empty history",
                        path.display(),
                        match &aside {
                            Some(p) => format!("moved to {}", p.display()),
                            None => "it will be replaced".into(),
                        }
                    );
                    moved_aside = Some((aside.unwrap_or_else(|| path.clone()), why));
                    previous.get_or_insert(PreviousRun {
                        clean: true,
                        boot_id: None,
                        last_saved: None,
                    });
                }
            }
        }
        Ok(Restored {
            history,
            events,
            previous,
            moved_aside,
        })
    }

    /// An empty history whose aggregate tiers keep their sealed blocks in a file in the state
    /// directory ([`History::shelve_in`]), or on the heap when one cannot be made there.
    fn empty_history(&self, config: HistoryConfig, cores: usize) -> Result<History, StoreError> {
        let mut history = History::new(config, cores)?;
        if let Err(e) = history.shelve_in(&self.dir) {
            tracing::warn!(
                "history: cannot keep older rows in a file in {} ({e}); they stay in RAM",
                self.dir.display()
            );
        }
        Ok(history)
    }

    /// Applies the journal's records of the snapshot's generation. A damaged tail (power cut
    /// mid-append) or a stale journal ends the replay; the next save then writes a snapshot.
    fn replay_journal(
        &mut self,
        mut meta: Meta,
        history: &mut History,
        events: &mut EventLog,
    ) -> Meta {
        let path = self.dir.join(JOURNAL_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::warn!(
                    "cannot read {}: {e}; using the snapshot alone",
                    path.display()
                );
                return meta;
            }
        };
        let mut at = 0;
        let mut good = true;
        while at < bytes.len() {
            let record = frame(&bytes[at..]).and_then(|(payload, len, version)| {
                if generation_of(payload)? != meta.generation {
                    return Err(DecodeError::Invalid("journal of an older snapshot"));
                }
                Ok((apply(payload, version, history, events)?, len))
            });
            match record {
                Ok((m, len)) => {
                    meta = m;
                    at += len;
                }
                Err(why) => {
                    tracing::warn!(
                        "{}: record at byte {at} dropped ({why}); a new snapshot follows",
                        path.display()
                    );
                    good = false;
                    break;
                }
            }
        }
        self.on_disk = good.then(|| OnDisk::of(meta.generation, history, events, at as u64));
        meta
    }

    fn move_aside(&self, path: &Path) -> Option<PathBuf> {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let aside = self.dir.join(format!("{STATE_FILE}.corrupt-{secs}"));
        if let Err(e) = fs::rename(path, &aside) {
            tracing::warn!("cannot move {} aside: {e}", path.display());
            return None;
        }
        // Keep only the newest few.
        if let Ok(dir) = fs::read_dir(&self.dir) {
            let prefix = format!("{STATE_FILE}.corrupt-");
            let mut old: Vec<(u64, PathBuf)> = dir
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let secs = name.strip_prefix(&prefix)?.parse().ok()?;
                    Some((secs, e.path()))
                })
                .collect();
            old.sort();
            let excess = old.len().saturating_sub(KEEP_CORRUPT);
            for (_, p) in old.into_iter().take(excess) {
                let _ = fs::remove_file(p);
            }
        }
        Some(aside)
    }

    /// Creates the directory if needed and the running marker: call after [`Store::load`]. Its
    /// failure is the sign of an unusable directory (read-only file system, permissions).
    pub fn mark_running(&self, boot_id: Option<&str>) -> Result<(), StoreError> {
        fs::create_dir_all(&self.dir).map_err(|source| StoreError::Io {
            action: "create",
            path: self.dir.clone(),
            source,
        })?;
        let mut text = boot_id.unwrap_or_default().to_owned();
        text.push('\n');
        self.write_atomically(MARKER_FILE, text.as_bytes())
    }

    /// Persists the aggregate tiers and events; returns the bytes written. Appends to the
    /// journal what is new since the last save (a few KiB); writes a whole snapshot on the first
    /// save of a run without a good one, and when the journal reaches 1 MiB. The same as
    /// [`Store::encode_save`] then [`Store::write`], for callers that hold nothing locked.
    pub fn save(
        &mut self,
        history: &History,
        events: &EventLog,
        boot_id: Option<&str>,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        let encoded = self.encode_save(history, events, boot_id, now);
        self.write(encoded)
    }

    /// Writes a whole snapshot of a new generation and empties the journal.
    pub fn snapshot(
        &mut self,
        history: &History,
        events: &EventLog,
        boot_id: Option<&str>,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        let encoded = self.encode_snapshot(history, events, boot_id, now);
        self.write(encoded)
    }

    /// The first half of a save, in memory only: encodes what the next [`Store::write`] puts on
    /// disk (a journal record of what is new, or a whole snapshot). This is the only part that
    /// needs the history and the events, so their locks are held for an encode (microseconds
    /// for a record, milliseconds for a snapshot), never for a disk write or an `fsync`.
    pub fn encode_save(
        &self,
        history: &History,
        events: &EventLog,
        boot_id: Option<&str>,
        now: SystemTime,
    ) -> Encoded {
        match self.on_disk {
            Some(base) if base.journal_len < COMPACT_AT => {
                let bytes =
                    encode_frame(history, events, boot_id, now, base.generation, Some(&base));
                let after = OnDisk::of(
                    base.generation,
                    history,
                    events,
                    base.journal_len + bytes.len() as u64,
                );
                Encoded {
                    bytes,
                    kind: Kind::Journal { base },
                    after,
                }
            }
            _ => self.encode_snapshot(history, events, boot_id, now),
        }
    }

    /// Encodes a whole snapshot of a new generation, for [`Store::write`].
    pub fn encode_snapshot(
        &self,
        history: &History,
        events: &EventLog,
        boot_id: Option<&str>,
        now: SystemTime,
    ) -> Encoded {
        // Distinct from any earlier snapshot's, so that an old journal can never be replayed on it.
        let generation =
            (unix_ms(now) << 16).max(self.on_disk.map_or(0, |d| d.generation.wrapping_add(1))) | 1;
        let bytes = encode_frame(history, events, boot_id, now, generation, None);
        Encoded {
            bytes,
            kind: Kind::Snapshot,
            after: OnDisk::of(generation, history, events, 0),
        }
    }

    /// The second half of a save: writes and syncs what [`Store::encode_save`] encoded, with
    /// no lock held; returns the bytes written. Only a write that fully succeeded advances what
    /// the store knows to be on disk. After any failure the store knows nothing, so the next
    /// save is a whole snapshot: everything this one failed to write, and what came since, is
    /// in it.
    pub fn write(&mut self, encoded: Encoded) -> Result<usize, StoreError> {
        #[cfg(test)]
        if let Some(hook) = &self.write_hook {
            (hook.0)();
        }
        let Encoded { bytes, kind, after } = encoded;
        // Whatever happens below, a half-done write must not be built on.
        let known = self.on_disk.take();
        match kind {
            Kind::Snapshot => {
                self.write_atomically(STATE_FILE, &bytes)?;
                self.empty_journal()?;
            }
            Kind::Journal { base } => {
                if known != Some(base) {
                    return Err(StoreError::Stale);
                }
                self.append_journal(&bytes, base.journal_len == 0)?;
            }
        }
        self.on_disk = Some(after);
        Ok(bytes.len())
    }

    /// Sets a hook that runs at the start of every [`Store::write`], with no lock held (tests
    /// hold a write there to check that nothing else waits for it).
    #[cfg(test)]
    pub(crate) fn before_write(&mut self, hook: impl Fn() + Send + Sync + 'static) {
        self.write_hook = Some(WriteHook(std::sync::Arc::new(hook)));
    }

    fn empty_journal(&self) -> Result<(), StoreError> {
        let journal = self.dir.join(JOURNAL_FILE);
        match OpenOptions::new().write(true).open(&journal) {
            Ok(file) => file
                .set_len(0)
                .and_then(|()| file.sync_all())
                .map_err(|source| StoreError::Io {
                    action: "truncate",
                    path: journal,
                    source,
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io {
                action: "open",
                path: journal,
                source,
            }),
        }
    }

    /// Appends one record and syncs it (and, for the journal's first record, the directory).
    /// On failure, whether a part reached the disk is unknown: the caller starts over with a
    /// snapshot.
    fn append_journal(&self, bytes: &[u8], first: bool) -> Result<(), StoreError> {
        let path = self.dir.join(JOURNAL_FILE);
        let result = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(bytes)?;
                file.sync_data()
            });
        if let Err(source) = result {
            return Err(StoreError::Io {
                action: "append to",
                path,
                source,
            });
        }
        if first {
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Removes the running marker: the last step of a clean stop, after the final save.
    pub fn mark_stopped(&self) -> Result<(), StoreError> {
        let path = self.dir.join(MARKER_FILE);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io {
                action: "remove",
                path,
                source,
            }),
        }
    }

    fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io {
                action,
                path,
                source,
            }
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        file.write_all(bytes).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("fsync", &tmp))?;
        drop(file);
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(io("rename", &path)(e));
        }
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::Io {
                action: "fsync",
                path: self.dir.clone(),
                source,
            })
    }
}

/// Serializes the aggregate tiers, the clock and the events as a snapshot (format in the module
/// docs).
pub fn encode(
    history: &History,
    events: &EventLog,
    boot_id: Option<&str>,
    now: SystemTime,
) -> Vec<u8> {
    encode_frame(history, events, boot_id, now, 0, None)
}

/// A snapshot (`since` = `None`) or a journal record of what is newer than `since`.
fn encode_frame(
    history: &History,
    events: &EventLog,
    boot_id: Option<&str>,
    now: SystemTime,
    generation: u64,
    since: Option<&OnDisk>,
) -> Vec<u8> {
    let tiers = &history.tiers()[1..];
    let width = history.tiers()[0].width();
    let estimate = if since.is_some() {
        4096
    } else {
        HEADER_LEN
            + 64
            + tiers
                .iter()
                .map(|t| 32 + t.len() * (9 + width * 6) + width * 20)
                .sum::<usize>()
            + events.len() * 96
    };
    let mut out = Vec::with_capacity(estimate);
    out.extend_from_slice(MAGIC);
    put_u16(&mut out, FORMAT_VERSION);
    put_u16(&mut out, 0);
    out.extend_from_slice(&[0; 8]); // length and CRC, filled in below
    put_u64(&mut out, generation);
    put_u64(&mut out, unix_ms(now));
    put_str(&mut out, boot_id.unwrap_or_default());
    match history.clock() {
        Some((timeline, wall)) => {
            out.push(1);
            put_u64(&mut out, timeline);
            put_u64(&mut out, wall);
        }
        None => out.push(0),
    }
    put_u16(&mut out, history.cores() as u16);
    out.push(tiers.len() as u8);
    for (i, tier) in tiers.iter().enumerate() {
        let after = since.and_then(|s| s.rows[i]);
        put_u64(&mut out, tier.bucket_ms());
        // The count is the rows written, patched in after them: a block in the block file
        // read once, so a read that fails (the block is then left out) cannot make the count
        // disagree with the rows.
        let count_at = out.len();
        put_u32(&mut out, 0);
        let mut rows = 0u32;
        tier.for_each_row_after(after, |timeline, flags, codes| {
            rows += 1;
            put_u64(&mut out, timeline);
            out.push(flags);
            for code in codes {
                put_u16(&mut out, *code);
            }
        });
        out[count_at..count_at + 4].copy_from_slice(&rows.to_le_bytes());
        match tier.open_bucket() {
            Some((bucket, flags, accs)) => {
                out.push(1);
                put_u64(&mut out, bucket);
                out.push(flags);
                for acc in accs {
                    put_u32(&mut out, acc.count);
                    out.extend_from_slice(&acc.sum.to_le_bytes());
                    out.extend_from_slice(&acc.min.to_le_bytes());
                    out.extend_from_slice(&acc.max.to_le_bytes());
                }
            }
            None => out.push(0),
        }
    }
    let after = since.map_or(0, |s| s.events_seq);
    put_u64(&mut out, events.next_seq());
    put_u32(&mut out, events.after(after).count() as u32);
    for event in events.after(after) {
        put_u64(&mut out, event.seq);
        put_u64(&mut out, unix_ms(event.t));
        put_str(&mut out, event.kind.as_str());
        out.push(event.severity.code());
        put_str(&mut out, &event.message);
        out.push(event.values.len().min(255) as u8);
        for (key, value) in event.values.iter().take(255) {
            put_str(&mut out, key);
            match value {
                EventValue::Number(v) => {
                    out.push(0);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                EventValue::Text(s) => {
                    out.push(1);
                    put_str(&mut out, s);
                }
            }
        }
    }
    let at = out.len();
    put_u32(&mut out, 0);
    history.disk_days().encode(&mut out);
    let section = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&section.to_le_bytes());
    let payload_len = (out.len() - HEADER_LEN) as u32;
    let crc = crc32(&out[HEADER_LEN..]);
    out[12..16].copy_from_slice(&payload_len.to_le_bytes());
    out[16..20].copy_from_slice(&crc.to_le_bytes());
    out
}

/// What the file says besides the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub saved_at: SystemTime,
    pub boot_id: Option<String>,
    /// Snapshot this belongs to: journal records of another generation are stale.
    pub generation: u64,
}

/// Reads a state file into `history` and `events` (fresh ones, made for the current config).
/// Tiers whose bucket length changed in the config are skipped; a changed core count keeps the
/// cores both have; more rows than the ring holds keep the newest.
pub fn decode(
    bytes: &[u8],
    history: &mut History,
    events: &mut EventLog,
) -> Result<Meta, DecodeError> {
    let (payload, used, version) = frame(bytes)?;
    if used != bytes.len() {
        return Err(DecodeError::Invalid("trailing bytes"));
    }
    apply(payload, version, history, events)
}

/// Checks one frame (header + payload) at the start of `bytes`; returns its payload and length.
fn frame(bytes: &[u8]) -> Result<(&[u8], usize, u16), DecodeError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(DecodeError::Foreign);
    }
    let mut r = Reader(&bytes[MAGIC.len()..]);
    let version = r.u16()?;
    if version > FORMAT_VERSION {
        return Err(DecodeError::FutureVersion(version));
    }
    if version == 0 {
        return Err(DecodeError::Invalid("version 0"));
    }
    r.u16()?;
    let len = r.u32()? as usize;
    let crc = r.u32()?;
    let payload = r.take(len)?;
    if crc32(payload) != crc {
        return Err(DecodeError::Checksum);
    }
    Ok((payload, HEADER_LEN + len, version))
}

/// The generation a payload belongs to (its first field).
fn generation_of(payload: &[u8]) -> Result<u64, DecodeError> {
    Reader(payload).u64()
}

/// Applies one payload: a snapshot to fresh tiers, or a journal record on top of what is there
/// (its rows must come after the tier's newest).
fn apply(
    payload: &[u8],
    version: u16,
    history: &mut History,
    events: &mut EventLog,
) -> Result<Meta, DecodeError> {
    let mut r = Reader(payload);
    let generation = r.u64()?;
    let saved_at = UNIX_EPOCH + Duration::from_millis(r.u64()?);
    let boot_id = Some(r.str()?.to_owned()).filter(|s| !s.is_empty());
    let clock = match r.u8()? {
        0 => None,
        1 => Some((r.u64()?, r.u64()?)),
        _ => return Err(DecodeError::Invalid("clock flag")),
    };
    let file_cores = usize::from(r.u16()?);
    if file_cores > MAX_CORES {
        return Err(DecodeError::Invalid("core count"));
    }
    let file_width = SCALAR_SERIES.len() + file_cores;
    let width = SCALAR_SERIES.len() + history.cores();
    // Which file column feeds each of ours.
    let column = |s: usize| (s < file_width).then_some(s);
    let tier_count = r.u8()?;
    let mut codes = vec![MISSING; width * 3];
    let mut accs = vec![Acc::EMPTY; width];
    for _ in 0..tier_count {
        let bucket_ms = r.u64()?;
        let rows = r.u32()? as usize;
        let row_len = 9 + file_width * 6;
        if rows > r.0.len() / row_len {
            return Err(DecodeError::Truncated);
        }
        let mut tier = history.tiers_mut()[1..]
            .iter_mut()
            .find(|t| t.bucket_ms() == bucket_ms);
        if tier.is_none() {
            tracing::info!("history tier of {bucket_ms} ms is no longer configured; dropped");
        }
        let newest = tier.as_ref().and_then(|t| t.newest());
        let mut last = newest.unwrap_or(0);
        for j in 0..rows {
            let timeline = r.u64()?;
            let flags = r.u8()?;
            let raw = r.take(file_width * 6)?;
            if timeline < last || (timeline == last && (j > 0 || newest.is_some())) {
                return Err(DecodeError::Invalid("rows out of order"));
            }
            last = timeline;
            if let Some(tier) = tier.as_mut() {
                for (s, triple) in codes.chunks_exact_mut(3).enumerate() {
                    for (m, code) in triple.iter_mut().enumerate() {
                        *code = column(s).map_or(MISSING, |c| {
                            let at = (c * 3 + m) * 2;
                            u16::from_le_bytes([raw[at], raw[at + 1]])
                        });
                    }
                }
                tier.restore_row(timeline, flags, &codes);
            }
        }
        match r.u8()? {
            0 => {
                if let Some(tier) = tier.as_mut() {
                    tier.clear_open();
                }
            }
            1 => {
                let bucket = r.u64()?;
                let flags = r.u8()?;
                accs.fill(Acc::EMPTY);
                for s in 0..file_width {
                    let acc = Acc {
                        count: r.u32()?,
                        sum: f64::from_le_bytes(r.array()?),
                        min: f32::from_le_bytes(r.array()?),
                        max: f32::from_le_bytes(r.array()?),
                    };
                    if let Some(slot) = accs.get_mut(s) {
                        *slot = acc;
                    }
                }
                if let Some(tier) = tier.as_mut() {
                    if bucket.checked_mul(bucket_ms).is_none_or(|t| t < last) {
                        return Err(DecodeError::Invalid("open bucket before its rows"));
                    }
                    tier.restore_open(bucket, flags, &accs);
                }
            }
            _ => return Err(DecodeError::Invalid("open bucket flag")),
        }
    }
    let next_seq = r.u64()?;
    let count = r.u32()? as usize;
    // The smallest event is 8 + 8 + 2 + 1 + 2 + 1 bytes.
    if count > r.0.len() / 22 {
        return Err(DecodeError::Truncated);
    }
    for _ in 0..count {
        let seq = r.u64()?;
        let t = UNIX_EPOCH + Duration::from_millis(r.u64()?);
        let kind = r.str()?;
        let severity = r.u8()?;
        let message = r.str()?.to_owned();
        let mut event = Event {
            t,
            seq,
            // A kind this version does not know (written by a newer one) is dropped below.
            kind: EventKind::from_name(kind).unwrap_or(EventKind::Started),
            severity: Severity::from_code(severity).ok_or(DecodeError::Invalid("severity"))?,
            message,
            values: Default::default(),
        };
        let known = EventKind::from_name(kind).is_some();
        for _ in 0..r.u8()? {
            let key = r.str()?.to_owned();
            let value = match r.u8()? {
                0 => EventValue::Number(f64::from_le_bytes(r.array()?)),
                1 => EventValue::Text(r.str()?.to_owned()),
                _ => return Err(DecodeError::Invalid("event value tag")),
            };
            event.values.insert(key, value);
        }
        if seq >= next_seq {
            return Err(DecodeError::Invalid("event seq"));
        }
        if known {
            events.restore(event);
        }
    }
    events.set_next_seq(next_seq);
    if version >= 2 {
        let len = r.u32()? as usize;
        let section = r.take(len)?;
        match DiskDays::decode(section) {
            Ok(days) => *history.disk_days_mut() = days,
            Err(why) => {
                tracing::warn!("state file: disk days section unusable ({why}); starting it empty");
                *history.disk_days_mut() = DiskDays::new();
            }
        }
    }
    if !r.0.is_empty() {
        return Err(DecodeError::Invalid("trailing bytes"));
    }
    if let Some((timeline, wall)) = clock {
        history.restore_clock(timeline, wall);
    }
    Ok(Meta {
        saved_at,
        boot_id,
        generation,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u16()?);
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::Invalid("UTF-8"))
    }
}

/// The file or its directory does not exist: nothing was stored yet, which is no error.
fn nothing_stored(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Strings longer than 65,535 bytes are cut at a character boundary.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    put_u16(out, end as u16);
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// CRC-32 (IEEE 802.3, as zlib and PNG), table-driven.
pub(super) fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |c, b| {
        TABLE[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8)
    })
}

#[cfg(test)]
mod tests;
