use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;
use crate::events::{Detector, DetectorConfig, EventLog, StartupFacts, EVENT_CAPACITY};
use crate::history::{Range, Sample, Series, TierConfig};

const T0: u64 = 1_700_000_040;

fn wall(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

/// Two hours and a bit of varied samples, and the events of a start.
fn populated(cores: usize) -> (History, EventLog) {
    let mut h = History::new(HistoryConfig::default(), cores).unwrap();
    for i in 0..7300 {
        let mut s = Sample::new(Duration::from_secs(i), wall(T0 + i));
        s.cpu = Some((i % 97) as f64);
        s.cores = (0..cores)
            .map(|c| (i as usize * (c + 1) % 100) as f64)
            .collect();
        s.temperature = Some(45.0 + (i % 13) as f64 / 2.0);
        s.net_recv = Some((i * 1013) as f64);
        s.throttled = Some(if i % 1000 == 7 { 0x50005 } else { 0x50000 });
        s.disk_writes = vec![("mmcblk0".into(), i * 4096), ("sda".into(), 7)];
        h.push(&s);
    }
    let mut events = EventLog::new(EVENT_CAPACITY);
    let facts = StartupFacts {
        wall: wall(T0),
        version: "0.1.0".into(),
        boot_id: Some("b1".into()),
        previous: None,
    };
    for e in Detector::new(DetectorConfig::default()).startup(&facts) {
        events.push(e);
    }
    (h, events)
}

fn json(h: &History, range: Range) -> serde_json::Value {
    serde_json::to_value(h.query(range, 100_000)).unwrap()
}

fn load(store: &mut Store) -> Restored {
    store
        .load(HistoryConfig::default(), 4, EVENT_CAPACITY)
        .unwrap()
}

#[test]
fn aggregates_and_events_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(dir.path().join("state"));
    let first = load(&mut store);
    assert!(first.previous.is_none(), "first start");
    assert!(first.history.query(Range::Year, 10).is_empty());
    store.mark_running(Some("b1")).unwrap();
    let (h, events) = populated(4);
    let written = store
        .save(&h, &events, Some("b1"), wall(T0 + 7300))
        .unwrap();
    assert_eq!(
        written as u64,
        fs::metadata(store.state_path()).unwrap().len()
    );
    store.mark_stopped().unwrap();

    let restored = load(&mut store);
    assert!(restored.moved_aside.is_none());
    assert_eq!(
        restored.previous,
        Some(PreviousRun {
            clean: true,
            boot_id: Some("b1".into()),
            last_saved: Some(wall(T0 + 7300)),
        })
    );
    for range in [Range::Day, Range::Week, Range::Year] {
        assert_eq!(json(&restored.history, range), json(&h, range), "{range}");
    }
    assert!(restored.history.query(Range::Day, 10_000).len() > 120);
    let before: Vec<_> = events.iter().cloned().collect();
    let after: Vec<_> = restored.events.iter().cloned().collect();
    assert_eq!(after, before);
    assert_eq!(restored.events.next_seq(), events.next_seq());
    assert_same_disk_days(&restored.history, &h);
    // Raw points are not persisted: the last hour now comes from the minute tier.
    assert_eq!(
        restored.history.query(Range::Hour, 10_000).resolution_ms,
        1000
    );
    assert!(restored.history.query(Range::Hour, 10_000).len() <= 61);
}

#[test]
fn a_run_without_a_clean_stop_is_reported_with_its_boot_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(dir.path());
    store.mark_running(Some("boot-a")).unwrap();
    let (h, events) = populated(4);
    store
        .save(&h, &events, Some("boot-a"), wall(T0 + 7300))
        .unwrap();
    // Killed here: no mark_stopped.
    let restored = load(&mut store);
    let previous = restored.previous.unwrap();
    assert!(!previous.clean);
    assert_eq!(previous.boot_id.as_deref(), Some("boot-a"));

    // Killed before the first save: the marker alone tells.
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(dir.path());
    store.mark_running(Some("boot-b")).unwrap();
    let previous = load(&mut store).previous.unwrap();
    assert!(!previous.clean);
    assert_eq!(previous.boot_id.as_deref(), Some("boot-b"));
    assert_eq!(previous.last_saved, None);
}

#[test]
fn the_timeline_continues_across_a_restart_whatever_the_clock_says() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(dir.path());
    let (h, events) = populated(4);
    store.save(&h, &events, None, wall(T0 + 7300)).unwrap();
    let last = json(&h, Range::Day)["points"].as_array().unwrap().len();

    // Down for an hour.
    let mut later = load(&mut store).history;
    let mut s = Sample::new(Duration::from_secs(5), wall(T0 + 7299 + 3600));
    s.cpu = Some(50.0);
    later.push(&s);
    let view = later.query(Range::Day, 100_000);
    // The newest point is the open minute that holds the new sample.
    assert_eq!(view.t(view.len() - 1), (T0 + 7299 + 3600) / 60 * 60 * 1000);
    let hour = later.query(Range::Hour, 100_000);
    assert_eq!(hour.t(hour.len() - 1), (T0 + 7299 + 3600) * 1000);
    assert_eq!(view.t(0), T0 * 1000, "old points keep their time");

    // Back with a clock an hour behind (fake-hwclock): continues right after, never before.
    let mut behind = load(&mut store).history;
    behind.push(&Sample::new(Duration::from_secs(5), wall(T0 + 7299 - 3600)));
    let view = behind.query(Range::Day, 100_000);
    for i in 1..view.len() {
        assert!(view.t(i) > view.t(i - 1), "order kept at {i}");
    }
    assert!(view.len() >= last);
}

#[test]
fn a_changed_core_count_or_tier_keeps_what_still_fits() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(dir.path());
    let (h, events) = populated(4);
    store.save(&h, &events, None, wall(T0 + 7300)).unwrap();
    let two = store.load(HistoryConfig::default(), 2, 100).unwrap();
    let view = two.history.query(Range::Day, 100_000);
    let original = h.query(Range::Day, 100_000);
    assert_eq!(view.len(), original.len());
    assert_eq!(view.core(0, 1), original.core(0, 1));
    assert_eq!(view.core(0, 2), None);
    let eight = store.load(HistoryConfig::default(), 8, 100).unwrap();
    let view = eight.history.query(Range::Day, 100_000);
    assert_eq!(view.core(0, 3), original.core(0, 3));
    assert_eq!(view.core(0, 4), None, "a core the file did not have");

    let config = HistoryConfig {
        fine: TierConfig {
            bucket: Duration::from_secs(120),
            keep: Duration::from_secs(86_400),
        },
        ..HistoryConfig::default()
    };
    let changed = store.load(config, 4, 100).unwrap();
    assert!(changed.moved_aside.is_none());
    let view = changed.history.query(Range::Year, 100_000);
    assert_eq!(
        view.get(0, Series::Cpu),
        h.query(Range::Year, 100_000).get(0, Series::Cpu)
    );
}

#[test]
fn a_file_saved_with_other_retentions_keeps_what_fits() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(dir.path());
    let (h, events) = populated(4);
    store.save(&h, &events, None, wall(T0 + 7300)).unwrap();
    let saved = h.tiers()[1].len();
    assert!(saved > 30, "{saved} minute rows");
    // Shorter: the newest 30 minutes of the minute tier, the quarter tier whole.
    let short = HistoryConfig {
        fine: TierConfig {
            keep: Duration::from_secs(30 * 60),
            ..HistoryConfig::default().fine
        },
        ..HistoryConfig::default()
    };
    let restored = store.load(short, 4, 100).unwrap();
    assert!(restored.moved_aside.is_none());
    let tiers = restored.history.tiers();
    assert_eq!(tiers[1].len(), 30);
    assert_eq!(
        tiers[1].newest(),
        h.tiers()[1].newest(),
        "the newest rows are kept"
    );
    assert_eq!(tiers[2].len(), h.tiers()[2].len());
    // Longer: everything, with room to grow.
    let long = HistoryConfig {
        fine: TierConfig {
            keep: Duration::from_secs(30 * 86_400),
            ..HistoryConfig::default().fine
        },
        ..HistoryConfig::default()
    };
    let restored = store.load(long, 4, 100).unwrap();
    assert_eq!(restored.history.tiers()[1].len(), saved);
    let a = serde_json::to_string(&restored.history.query(Range::Week, 100_000)).unwrap();
    let b = serde_json::to_string(&h.query(Range::Week, 100_000)).unwrap();
    assert!(a == b, "the same week comes back");
}

fn valid_file() -> &'static [u8] {
    static FILE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let (h, events) = populated(4);
        encode(&h, &events, Some("b1"), wall(T0 + 7300))
    })
}

fn decode_fresh(bytes: &[u8]) -> Result<Meta, DecodeError> {
    // The same buckets as the file, shorter rings: quick enough for many cases.
    let defaults = HistoryConfig::default();
    let config = HistoryConfig {
        fine: TierConfig {
            keep: Duration::from_secs(86_400),
            ..defaults.fine
        },
        coarse: TierConfig {
            keep: Duration::from_secs(7 * 86_400),
            ..defaults.coarse
        },
        ..defaults
    };
    let mut h = History::new(config, 4).unwrap();
    let mut e = EventLog::new(EVENT_CAPACITY);
    decode(bytes, &mut h, &mut e)
}

#[test]
fn bad_files_are_told_apart() {
    let good = valid_file().to_vec();
    assert!(decode_fresh(&good).is_ok());
    assert_eq!(decode_fresh(b"{\"json\": true}"), Err(DecodeError::Foreign));
    assert_eq!(decode_fresh(b""), Err(DecodeError::Foreign));
    let mut future = good.clone();
    future[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert_eq!(
        decode_fresh(&future),
        Err(DecodeError::FutureVersion(FORMAT_VERSION + 1))
    );
    assert_eq!(
        decode_fresh(&good[..good.len() - 1]),
        Err(DecodeError::Truncated)
    );
    assert_eq!(decode_fresh(&good[..10]), Err(DecodeError::Truncated));
    let mut flipped = good.clone();
    let mid = good.len() / 2;
    flipped[mid] ^= 0x10;
    assert_eq!(decode_fresh(&flipped), Err(DecodeError::Checksum));
}

#[test]
fn a_corrupt_file_is_moved_aside_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(dir.path());
    let mut bytes = valid_file().to_vec();
    bytes.truncate(bytes.len() / 3);
    fs::write(store.state_path(), &bytes).unwrap();
    let restored = load(&mut store);
    let (aside, why) = restored.moved_aside.unwrap();
    assert_eq!(why, DecodeError::Truncated);
    assert!(aside
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("history.bin.corrupt-"));
    assert_eq!(fs::read(&aside).unwrap(), bytes, "kept for a post-mortem");
    assert!(!store.state_path().exists());
    assert!(restored.history.query(Range::Year, 10).is_empty());
    assert!(restored.previous.unwrap().clean);
    // The next save replaces it.
    store
        .save(&restored.history, &restored.events, None, SystemTime::now())
        .unwrap();
    assert!(load(&mut store).moved_aside.is_none());

    // Only the newest three are kept.
    for secs in [10, 11, 12, 13] {
        fs::write(dir.path().join(format!("history.bin.corrupt-{secs}")), b"x").unwrap();
    }
    fs::write(store.state_path(), b"garbage").unwrap();
    assert!(load(&mut store).moved_aside.is_some());
    let mut left: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("corrupt"))
        .collect();
    left.sort();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(!left
        .iter()
        .any(|n| n.ends_with("-10") || n.ends_with("-11")));
}

#[test]
fn an_unusable_directory_is_a_typed_error_and_history_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"").unwrap();
    let mut store = Store::new(file.join("state"));
    let restored = load(&mut store);
    assert!(restored.previous.is_none());
    let err = store.mark_running(Some("b")).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Io {
                action: "create",
                ..
            }
        ),
        "{err}"
    );
    let (h, events) = populated(0);
    let err = store
        .save(&h, &events, None, SystemTime::now())
        .unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }));
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
#[ignore = "needs root: mounts a read-only tmpfs"]
fn a_read_only_file_system_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let store = Store::new(dir.path());
    let result = store.mark_running(None);
    let _ = std::process::Command::new("umount")
        .arg(dir.path())
        .status();
    match result {
        Err(StoreError::Io { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EROFS));
        }
        other => panic!("expected EROFS, got {other:?}"),
    }
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
}

/// A header with the right magic, version, length and checksum around `payload`, so that the
/// decoder's inner parsing is exercised rather than the checksum.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        prop_assert!(decode_fresh(&bytes).is_err());
        let _ = decode_fresh(&framed(&bytes));
    }

    #[test]
    fn truncations_are_errors(cut in 0usize..1_000_000) {
        let good = valid_file();
        let cut = cut % good.len();
        prop_assert!(decode_fresh(&good[..cut]).is_err());
    }

    #[test]
    fn mutated_payloads_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let good = valid_file();
        let mut payload = good[HEADER_LEN..].to_vec();
        for (at, byte) in edits {
            let at = at % payload.len();
            payload[at] = byte;
        }
        let _ = decode_fresh(&framed(&payload));
        let cut = cut % payload.len();
        let _ = decode_fresh(&framed(&payload[..cut]));
    }
}

#[test]
fn later_saves_append_only_what_is_new_and_replay_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(dir.path());
    let mut h = History::new(HistoryConfig::default(), 4).unwrap();
    let mut events = EventLog::new(EVENT_CAPACITY);
    let d = Detector::new(DetectorConfig::default());
    let mut sizes = Vec::new();
    // Ten saves, 15 minutes apart, with an event between each.
    for save in 0..10u64 {
        for i in save * 900..(save + 1) * 900 {
            let mut s = Sample::new(Duration::from_secs(i), wall(T0 + i));
            s.cpu = Some((i % 50) as f64);
            h.push(&s);
        }
        events.push(d.stopping(wall(T0 + save * 900)));
        sizes.push(
            store
                .save(&h, &events, Some("b"), wall(T0 + save * 900))
                .unwrap(),
        );
    }
    let snapshot = fs::metadata(store.state_path()).unwrap().len() as usize;
    assert_eq!(sizes[0], snapshot, "the first save of a run is a snapshot");
    let journal = fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len() as usize;
    assert_eq!(journal, sizes[1..].iter().sum::<usize>());
    // 15 minute rows, one quarter row, two open buckets and an event: a few KiB.
    assert!(sizes[1..].iter().all(|s| *s < 3000), "{sizes:?}");

    let restored = load(&mut store);
    for range in [Range::Day, Range::Year] {
        assert_eq!(json(&restored.history, range), json(&h, range), "{range}");
    }
    let seqs: Vec<u64> = restored.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    assert_eq!(
        restored.previous.unwrap().last_saved,
        Some(wall(T0 + 9 * 900))
    );

    // After a restore the next save appends again.
    let before = fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len();
    store.save(&h, &events, None, wall(T0 + 9000)).unwrap();
    assert!(fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len() > before);
    assert_eq!(
        fs::metadata(store.state_path()).unwrap().len() as usize,
        snapshot
    );
}

#[test]
fn a_torn_journal_record_is_dropped_and_a_snapshot_follows() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(dir.path());
    let mut h = History::new(HistoryConfig::default(), 0).unwrap();
    let events = EventLog::new(10);
    let mut expected = None;
    for save in 0..3u64 {
        for i in save * 900..(save + 1) * 900 {
            let mut s = Sample::new(Duration::from_secs(i), wall(T0 + i));
            s.memory = Some(save as f64);
            h.push(&s);
        }
        store.save(&h, &events, None, wall(T0)).unwrap();
        if save == 1 {
            expected = Some(json(&h, Range::Day));
        }
    }
    // Power cut in the middle of the third append.
    let path = dir.path().join(JOURNAL_FILE);
    let journal = fs::read(&path).unwrap();
    fs::write(&path, &journal[..journal.len() - 7]).unwrap();
    let restored = store.load(HistoryConfig::default(), 0, 10).unwrap();
    assert!(restored.moved_aside.is_none(), "the snapshot is fine");
    assert_eq!(json(&restored.history, Range::Day), expected.unwrap());
    // The next save does not append behind the damage: it writes a snapshot, empties the journal.
    let written = store
        .save(&restored.history, &restored.events, None, wall(T0))
        .unwrap();
    assert_eq!(
        written as u64,
        fs::metadata(store.state_path()).unwrap().len()
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn a_journal_from_an_older_snapshot_is_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(dir.path());
    let (h, events) = populated(0);
    store.save(&h, &events, None, wall(T0)).unwrap();
    store.save(&h, &events, None, wall(T0 + 1)).unwrap();
    let old_journal = fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
    assert!(!old_journal.is_empty());
    // A new snapshot, then the old journal comes back (say, a crash before it was emptied).
    let mut other = Store::new(dir.path());
    let fresh = History::new(HistoryConfig::default(), 0).unwrap();
    other
        .snapshot(&fresh, &EventLog::new(10), None, wall(T0 + 2))
        .unwrap();
    fs::write(dir.path().join(JOURNAL_FILE), &old_journal).unwrap();
    let restored = store.load(HistoryConfig::default(), 0, 10).unwrap();
    assert!(restored.history.query(Range::Year, 10).is_empty());
    assert!(restored.events.is_empty());
}

fn assert_same_disk_days(a: &History, b: &History) {
    let (a, b) = (a.disk_days(), b.disk_days());
    assert!(!b.is_empty());
    assert_eq!(a.day(), b.day());
    assert_eq!(a.names().collect::<Vec<_>>(), b.names().collect::<Vec<_>>());
    for name in b.names() {
        assert_eq!(a.written(name), b.written(name), "{name}");
    }
}

/// `bytes` (one version 2 frame) as version 1 wrote it: without the disk days section.
fn as_version_1(bytes: &[u8], history: &History) -> Vec<u8> {
    let mut section = Vec::new();
    history.disk_days().encode(&mut section);
    let payload = &bytes[HEADER_LEN..bytes.len() - 4 - section.len()];
    let mut out = framed(payload);
    out[8..10].copy_from_slice(&1u16.to_le_bytes());
    out
}

#[test]
fn disk_days_survive_the_snapshot_and_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(dir.path());
    let (mut h, events) = populated(4);
    let before = h.disk_days().written("mmcblk0").unwrap();
    store.save(&h, &events, None, wall(T0 + 7300)).unwrap();
    // More writes, saved as a journal record: the newest ledger wins.
    let mut s = Sample::new(Duration::from_secs(7300), wall(T0 + 7300));
    s.disk_writes = vec![("mmcblk0".into(), 7299 * 4096 + 1_000_000)];
    h.push(&s);
    store.save(&h, &events, None, wall(T0 + 7301)).unwrap();
    assert!(fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len() > 0);
    let restored = load(&mut Store::new(dir.path()));
    assert_same_disk_days(&restored.history, &h);
    assert_eq!(
        restored
            .history
            .disk_days()
            .written("mmcblk0")
            .unwrap()
            .today,
        before.today + 1_000_000
    );
}

#[test]
fn a_version_1_file_restores_with_an_empty_ledger() {
    let (h, events) = populated(4);
    let v2 = encode(&h, &events, Some("b1"), wall(T0 + 7300));
    let v1 = as_version_1(&v2, &h);
    assert_eq!(&v1[8..10], &1u16.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(STATE_FILE), &v1).unwrap();
    let mut store = Store::new(dir.path());
    let restored = load(&mut store);
    assert!(restored.moved_aside.is_none());
    assert!(restored.history.disk_days().is_empty());
    for range in [Range::Day, Range::Week] {
        assert_eq!(json(&restored.history, range), json(&h, range), "{range}");
    }
    assert_eq!(restored.events.len(), events.len());
    // The next save writes version 2 with the ledger.
    let mut h2 = restored.history;
    let mut s = Sample::new(Duration::from_secs(7300), wall(T0 + 7300));
    s.disk_writes = vec![("mmcblk0".into(), 5)];
    h2.push(&s);
    store
        .save(&h2, &restored.events, None, wall(T0 + 7301))
        .unwrap();
    let again = load(&mut Store::new(dir.path()));
    assert_eq!(
        again.history.disk_days().names().collect::<Vec<_>>(),
        ["mmcblk0"]
    );
}

#[test]
fn a_corrupt_disk_days_section_empties_the_ledger_only() {
    let (h, events) = populated(4);
    let good = encode(&h, &events, None, wall(T0 + 7300));
    let mut section = Vec::new();
    h.disk_days().encode(&mut section);
    // Garbage of the same length in place of the section, with a valid frame checksum.
    let mut payload = good[HEADER_LEN..].to_vec();
    let at = payload.len() - section.len();
    payload[at] = 7; // not a day flag
    let bad = framed(&payload);
    let mut fresh = History::new(HistoryConfig::default(), 4).unwrap();
    let mut e = EventLog::new(EVENT_CAPACITY);
    decode(&bad, &mut fresh, &mut e).unwrap();
    assert!(fresh.disk_days().is_empty());
    assert_eq!(json(&fresh, Range::Week), json(&h, Range::Week));
}

/// Pushes 15 minutes of samples from `from` seconds and records an event.
fn a_quarter_hour(h: &mut History, events: &mut EventLog, from: u64) {
    for i in from..from + 900 {
        let mut s = Sample::new(Duration::from_secs(i), wall(T0 + i));
        s.cpu = Some((i % 61) as f64);
        h.push(&s);
    }
    events.push(Detector::new(DetectorConfig::default()).stopping(wall(T0 + from)));
}

#[test]
fn a_failed_write_loses_nothing_the_next_save_writes_it() {
    for broken in [JOURNAL_FILE, "history.bin.tmp"] {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::new(dir.path());
        let mut h = History::new(HistoryConfig::default(), 2).unwrap();
        let mut events = EventLog::new(EVENT_CAPACITY);
        a_quarter_hour(&mut h, &mut events, 0);
        store.save(&h, &events, None, wall(T0)).unwrap();
        a_quarter_hour(&mut h, &mut events, 900);
        // The file a save needs cannot be written (a directory in its place; root-proof): a
        // journal record when `broken` is the journal, a snapshot when it is the temp file.
        if broken != JOURNAL_FILE {
            store.on_disk = None;
        }
        fs::create_dir(dir.path().join(broken)).unwrap();
        let err = store.save(&h, &events, None, wall(T0 + 900)).unwrap_err();
        assert!(err.to_string().contains(broken), "{err}");
        a_quarter_hour(&mut h, &mut events, 1800);
        fs::remove_dir(dir.path().join(broken)).unwrap();
        let written = store.save(&h, &events, None, wall(T0 + 1800)).unwrap();
        assert_eq!(
            written as u64,
            fs::metadata(store.state_path()).unwrap().len(),
            "after a failure the next save is a whole snapshot"
        );
        let restored = Store::new(dir.path())
            .load(HistoryConfig::default(), 2, EVENT_CAPACITY)
            .unwrap();
        for range in [Range::Day, Range::Year] {
            assert_eq!(json(&restored.history, range), json(&h, range), "{broken}");
        }
        let seqs: Vec<u64> = restored.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3], "{broken}");
    }
}

#[test]
fn a_record_encoded_against_older_files_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(dir.path());
    let mut h = History::new(HistoryConfig::default(), 0).unwrap();
    let mut events = EventLog::new(EVENT_CAPACITY);
    a_quarter_hour(&mut h, &mut events, 0);
    store.save(&h, &events, None, wall(T0)).unwrap();
    a_quarter_hour(&mut h, &mut events, 900);
    let first = store.encode_save(&h, &events, None, wall(T0 + 900));
    let second = store.encode_save(&h, &events, None, wall(T0 + 900));
    store.write(first).unwrap();
    let journal = fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len();
    assert!(matches!(store.write(second), Err(StoreError::Stale)));
    assert_eq!(
        fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len(),
        journal,
        "the duplicate record would end a replay"
    );
    let written = store.save(&h, &events, None, wall(T0 + 901)).unwrap();
    assert_eq!(
        written as u64,
        fs::metadata(store.state_path()).unwrap().len()
    );
}
