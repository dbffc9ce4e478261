//! The per-process scan: CPU time of every process from `/proc/PID/stat`, with each `stat`
//! file kept open and re-read with one `pread` a scan.
//!
//! sysinfo's scan (which this replaces) kept the files open too, but re-read each with a
//! `lseek`, std's `read_to_end` (a `statx`, another `lseek`, two reads) and two allocations per
//! process and scan, and every 10 s opened each process's `statm` for the memory ranking. Here a
//! scan is one directory listing and one `pread` per process into a shared buffer, and the
//! resident size for the ranking comes from the same `stat` line (its `rss` field is the figure
//! `statm` reports). The figures are sysinfo 0.37's: a process's CPU share is its user + system
//! ticks since the last scan over the system's ticks in the same span per core, capped at
//! cores × 100; a process seen for the first time, or that had used no CPU time at all by the
//! last scan, shows 0; a PID whose start time changed is a new process.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many `stat` files may be kept open, shared by all tables (see [`set_kept_files_limit`]).
static KEPT_FILES_LIMIT: AtomicUsize = AtomicUsize::new(256);

/// Sets how many `/proc/PID/stat` files the scan keeps open; processes beyond it are opened
/// and closed on each scan. The daemon sets its file descriptor budget's share at start, so
/// WebSocket connections keep theirs.
pub fn set_kept_files_limit(limit: usize) {
    KEPT_FILES_LIMIT.store(limit, Ordering::Relaxed);
}

/// What a scan knows of one process.
#[derive(Debug)]
pub struct Process {
    pub pid: u32,
    /// The kernel's `comm` (at most 15 bytes, as `/proc/PID/stat` has it).
    pub name: String,
    /// Percent of one core since the last scan.
    pub cpu_usage: f32,
    /// Resident pages at the last scan.
    pub rss_pages: u64,
    start_time: u64,
    utime: u64,
    stime: u64,
    old_utime: u64,
    old_stime: u64,
    stat: Option<File>,
    seen: u64,
}

/// The fields of a `stat` line a scan uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatLine<'a> {
    pub comm: &'a [u8],
    pub utime: u64,
    pub stime: u64,
    pub start_time: u64,
    pub rss_pages: u64,
}

/// Parses a `/proc/PID/stat` line. `comm` may hold spaces and parentheses, so it is what lies
/// between the first `(` and the last `)`; the numbered fields follow. `None` if the line is
/// cut short; a field that is not a number is 0.
pub fn parse_stat_line(line: &[u8]) -> Option<StatLine<'_>> {
    let open = line.iter().position(|&b| b == b'(')?;
    let close = line.iter().rposition(|&b| b == b')')?;
    let comm = line.get(open + 1..close)?;
    // After `)`: state (field 3), ppid, … utime (14), stime (15), … starttime (22), vsize,
    // rss (24).
    let mut fields = line[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let mut nth = |n: usize| fields.nth(n).map(number);
    let utime = nth(11)?;
    let stime = nth(0)?;
    let start_time = nth(6)?;
    let rss_pages = nth(1)?;
    Some(StatLine {
        comm,
        utime,
        stime,
        start_time,
        rss_pages,
    })
}

fn number(field: &[u8]) -> u64 {
    field
        .iter()
        .try_fold(0u64, |n, &c| {
            c.is_ascii_digit()
                .then(|| n.saturating_mul(10).saturating_add(u64::from(c - b'0')))
        })
        .unwrap_or(0)
}

/// All processes (not their threads; kernel threads count), refreshed by [`Self::scan`].
#[derive(Debug)]
pub struct ProcessTable {
    proc_root: PathBuf,
    processes: HashMap<u32, Process>,
    /// The system's CPU ticks (all cores) at the last scan.
    last_total: Option<u64>,
    scans: u64,
    kept: usize,
    buf: super::procfs::ReadBuf,
}

impl ProcessTable {
    pub fn new(proc_root: &Path) -> ProcessTable {
        ProcessTable {
            proc_root: proc_root.to_owned(),
            processes: HashMap::new(),
            last_total: None,
            scans: 0,
            kept: 0,
            buf: super::procfs::ReadBuf::with_capacity(1024),
        }
    }

    /// Lists `/proc` and reads each process's `stat`. `total_ticks` is the system's CPU time
    /// (all cores, `/proc/stat`'s aggregate line) now, `cores` the number of cores. Processes
    /// gone since the last scan are dropped. `false` if `/proc` could not be listed (the table
    /// is then left as it was).
    pub fn scan(&mut self, total_ticks: Option<u64>, cores: usize) -> bool {
        let Ok(dir) = std::fs::read_dir(&self.proc_root) else {
            return false;
        };
        self.scans += 1;
        let limit = KEPT_FILES_LIMIT.load(Ordering::Relaxed);
        for entry in dir.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            self.read(pid, limit);
        }
        let scans = self.scans;
        let kept = &mut self.kept;
        self.processes.retain(|_, p| {
            let alive = p.seen == scans;
            if !alive && p.stat.is_some() {
                *kept -= 1;
            }
            alive
        });
        // Ticks per core since the last scan: the span each process's share is taken over.
        // Without one (the first scan, or the CPU meter kept its last sample because this scan
        // came less than 200 ms after it) the shares stay as they were: a process's ticks
        // over a made-up span would show it at up to every core's 100 %.
        let span = match (total_ticks, self.last_total) {
            (Some(now), Some(before)) if now > before => {
                (now - before) as f32 / cores.max(1) as f32
            }
            _ => {
                self.last_total = total_ticks.or(self.last_total);
                return true;
            }
        };
        self.last_total = total_ticks;
        let max = cores as f32 * 100.0;
        for p in self.processes.values_mut() {
            if p.old_utime == 0 && p.old_stime == 0 {
                continue;
            }
            let used = p
                .utime
                .saturating_sub(p.old_utime)
                .saturating_add(p.stime.saturating_sub(p.old_stime));
            p.cpu_usage = (used as f32 / span * 100.0).min(max);
        }
        true
    }

    /// Reads one process's `stat`, through its kept file when it has one.
    fn read(&mut self, pid: u32, limit: usize) {
        let kept_read = self
            .processes
            .get(&pid)
            .and_then(|p| p.stat.as_ref())
            .map(|file| read_at_start(file, &mut self.buf));
        if kept_read == Some(false) {
            // The process ended (its descriptor reads ESRCH): whoever has the PID now is
            // opened afresh.
            if let Some(p) = self.processes.get_mut(&pid) {
                p.stat = None;
                self.kept -= 1;
            }
        }
        let mut fresh_file = None;
        if kept_read != Some(true) {
            let path = self.proc_root.join(pid.to_string()).join("stat");
            let Ok(file) = File::open(path) else {
                return;
            };
            if !read_at_start(&file, &mut self.buf) {
                return;
            }
            fresh_file = Some(file);
        }
        let Some(line) = parse_stat_line(self.buf.bytes()) else {
            return;
        };
        let scans = self.scans;
        match self.processes.get_mut(&pid) {
            // The same process (a reused PID has another start time).
            Some(p) if p.start_time == line.start_time => {
                p.old_utime = p.utime;
                p.old_stime = p.stime;
                p.utime = line.utime;
                p.stime = line.stime;
                p.rss_pages = line.rss_pages;
                p.seen = scans;
                if let Some(file) = fresh_file {
                    if p.stat.is_none() && self.kept < limit {
                        p.stat = Some(file);
                        self.kept += 1;
                    }
                }
            }
            mut slot => {
                // A new process, or a reused PID: a kept file that still reads is the new
                // process's (a descriptor of an ended process reads nothing).
                let stat = match fresh_file {
                    None => slot.as_mut().and_then(|p| p.stat.take()),
                    Some(file) if self.kept < limit => {
                        self.kept += 1;
                        Some(file)
                    }
                    Some(_) => None,
                };
                let process = Process {
                    pid,
                    name: String::from_utf8_lossy(line.comm).into_owned(),
                    cpu_usage: 0.0,
                    rss_pages: line.rss_pages,
                    start_time: line.start_time,
                    utime: line.utime,
                    stime: line.stime,
                    old_utime: 0,
                    old_stime: 0,
                    stat,
                    seen: scans,
                };
                match slot {
                    Some(p) => *p = process,
                    None => {
                        self.processes.insert(pid, process);
                    }
                }
            }
        }
    }

    pub fn processes(&self) -> impl ExactSizeIterator<Item = &Process> {
        self.processes.values()
    }

    pub fn get(&self, pid: u32) -> Option<&Process> {
        self.processes.get(&pid)
    }

    pub fn len(&self) -> usize {
        self.processes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }
}

/// Reads a `stat` file from its start into `buf`; `false` if it reads nothing (the process
/// ended) or fails. The kernel renders it in one piece, so a read that does not fill its room
/// has it all.
fn read_at_start(file: &File, buf: &mut super::procfs::ReadBuf) -> bool {
    super::procfs::pread_from_start(file, buf, 1024, true).is_ok() && !buf.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/PID/stat` lines from a Raspberry Pi 4 (kernel 6.6): a user process, a kernel
    /// thread, and a process whose name has a space and a parenthesis.
    const SSHD: &[u8] = b"812 (sshd) S 1 812 812 0 -1 4194560 1622 3049 3 0 41 27 2 5 20 0 1 0 1730 12095488 1733 18446744073709551615 1 1 0 0 0 0 0 4096 81923 0 0 0 17 2 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
    const KTHREAD: &[u8] = b"14 (ksoftirqd/0) S 2 0 0 0 -1 69238848 0 0 0 0 0 310 0 0 20 0 1 0 4 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
    const ODD: &[u8] = b"4242 (a) b (c)) R 1 4242 4242 0 -1 4194304 90 0 0 0 7 3 0 0 20 0 1 0 99999 2142208 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn parses_the_fields_a_scan_uses() {
        let sshd = parse_stat_line(SSHD).unwrap();
        assert_eq!(
            sshd,
            StatLine {
                comm: b"sshd",
                utime: 41,
                stime: 27,
                start_time: 1730,
                rss_pages: 1733,
            }
        );
        let k = parse_stat_line(KTHREAD).unwrap();
        assert_eq!(
            (k.comm, k.utime, k.stime, k.rss_pages),
            (&b"ksoftirqd/0"[..], 0, 310, 0)
        );
        let odd = parse_stat_line(ODD).unwrap();
        assert_eq!(odd.comm, b"a) b (c)");
        assert_eq!((odd.utime, odd.stime, odd.start_time), (7, 3, 99999));
    }

    #[test]
    fn cut_or_garbled_lines_are_refused_or_zero() {
        assert!(parse_stat_line(b"812 (sshd) S 1 812").is_none());
        assert!(parse_stat_line(b"").is_none());
        assert!(parse_stat_line(b"812 sshd S 1").is_none());
        let garbled = b"1 (x) S 1 1 1 0 -1 0 0 0 0 0 zz 5 0 0 20 0 1 0 7 0 9 0";
        let line = parse_stat_line(garbled).unwrap();
        assert_eq!((line.utime, line.stime, line.rss_pages), (0, 5, 9));
    }

    /// A `/proc`-shaped tree with one `stat` per process, rewritten between scans.
    fn write(root: &Path, pid: u32, utime: u64, stime: u64, start: u64) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let line = format!(
            "{pid} (p{pid}) S 1 1 1 0 -1 0 0 0 0 0 {utime} {stime} 0 0 20 0 1 0 {start} 0 100 0\n"
        );
        // Rewritten in place, as the kernel's file is: a kept descriptor sees the new line.
        std::fs::write(dir.join("stat"), line).unwrap();
    }

    #[test]
    fn shares_are_ticks_since_the_last_scan_per_core_span() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("stat"), "not a process").unwrap();
        std::fs::create_dir(root.join("self")).unwrap();
        write(root, 10, 100, 50, 7);
        write(root, 11, 0, 0, 8);
        let mut table = ProcessTable::new(root);
        assert!(table.scan(Some(1_000), 4));
        assert_eq!(table.len(), 2);
        assert!(table.processes().all(|p| p.cpu_usage == 0.0));

        // 400 system ticks over 4 cores = 100 ticks a core; pid 10 used 60.
        write(root, 10, 140, 70, 7);
        write(root, 11, 5, 0, 8);
        assert!(table.scan(Some(1_400), 4));
        assert!((table.get(10).unwrap().cpu_usage - 60.0).abs() < 1e-4);
        // Had used no time by the last scan: 0 this time (as sysinfo).
        assert_eq!(table.get(11).unwrap().cpu_usage, 0.0);
        assert_eq!(table.get(10).unwrap().name, "p10");
        assert_eq!(table.get(10).unwrap().rss_pages, 100);

        // The CPU meter kept its last sample (this scan came under 200 ms after it): no span,
        // so the shares stay as they were instead of one tick reading as 400 %.
        write(root, 10, 141, 70, 7);
        assert!(table.scan(Some(1_400), 4));
        assert!((table.get(10).unwrap().cpu_usage - 60.0).abs() < 1e-4);

        // Capped at cores × 100.
        write(root, 10, 100_000, 70, 7);
        assert!(table.scan(Some(1_800), 4));
        assert_eq!(table.get(10).unwrap().cpu_usage, 400.0);
    }

    #[test]
    fn gone_and_reused_pids_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, 20, 10, 10, 5);
        write(root, 21, 10, 10, 6);
        let mut table = ProcessTable::new(root);
        table.scan(Some(100), 1);
        write(root, 20, 20, 10, 5);
        table.scan(Some(200), 1);
        assert!((table.get(20).unwrap().cpu_usage - 10.0).abs() < 1e-4);

        std::fs::remove_dir_all(root.join("21")).unwrap();
        // PID 20 is another process now (another start time): it starts over at 0.
        write(root, 20, 500, 500, 9);
        table.scan(Some(300), 1);
        assert!(table.get(21).is_none());
        assert_eq!(table.get(20).unwrap().cpu_usage, 0.0);
        assert_eq!(table.len(), 1);
        assert_eq!(table.kept, 1);
    }

    #[test]
    fn beyond_the_kept_files_limit_files_are_opened_each_scan() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for pid in 1..=5 {
            write(root, pid, 10, 10, 1);
        }
        let mut table = ProcessTable::new(root);
        table.read_all(2);
        assert_eq!(table.kept, 2);
        assert_eq!(table.processes().filter(|p| p.stat.is_some()).count(), 2);
        for pid in 1..=5 {
            write(root, pid, 30, 10, 1);
        }
        table.read_all(2);
        assert!(table
            .processes()
            .all(|p| p.utime == 30 && p.old_utime == 10));
    }

    impl ProcessTable {
        /// A scan with its own kept-files limit (the global one is shared between tests).
        fn read_all(&mut self, limit: usize) {
            self.scans += 1;
            let mut pids: Vec<u32> = std::fs::read_dir(&self.proc_root)
                .unwrap()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            pids.sort();
            for pid in pids {
                self.read(pid, limit);
            }
        }
    }

    #[test]
    fn the_running_system_is_listed_with_this_process() {
        let mut table = ProcessTable::new(Path::new("/proc"));
        assert!(table.scan(None, 1));
        let me = table.get(std::process::id()).expect("this process");
        assert!(!me.name.is_empty());
        assert!(me.rss_pages > 0);
        assert!(!ProcessTable::new(Path::new("/nonexistent/proc")).scan(None, 1));
    }
}
