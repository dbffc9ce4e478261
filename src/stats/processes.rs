//! The per-process scan: CPU time of every process from `/proc/PID/stat`, with each `stat`
//! file kept open and re-read with one `pread` a scan.
//!
//! sysinfo's scan (which this replaces) kept the files open too, but re-read each with a
//! `lseek`, std's `read_to_end` (a `statx`, another `lseek`, two reads) and two allocations per
//! process and scan, and every 10 s opened each process's `statm` for the memory ranking. Here a
//! scan is at most one directory listing and one `pread` per process into a shared buffer, and the
//! resident size for the ranking comes from the same `stat` line (its `rss` field is the figure
//! `statm` reports). The figures are sysinfo 0.37's: a process's CPU share is its user + system
//! ticks since the last scan over the system's ticks in the same span per core, capped at
//! cores × 100; a process seen for the first time, or that had used no CPU time at all by the
//! last scan, shows 0; a PID whose start time changed is a new process.
//!
//! Listing `/proc` is most of a scan's kernel time after the `pread`s (each entry is looked up
//! in the dentry cache), so a scan lists it only when a process may have been created since
//! the last listing: `/proc/loadavg`'s last field is the last PID the kernel handed out in the
//! reader's PID namespace (threads included), and while it stays the same the set of processes
//! can only shrink (except for PIDs set explicitly, `clone3`'s `set_tid` or `ns_last_pid`, as
//! a checkpoint restore does: those are found within [`LISTING_MAX_AGE`]). The kernel hands out
//! the PID before the process shows in `/proc`, so a listing is relied on only when the value
//! had not changed since the scan before it. Such a scan reads the PIDs it already knows; one that ended reads nothing
//! (or `ESRCH`) and is dropped as a listing would drop it. A scan lists anyway when that field
//! cannot be read, when the last listing is over [`LISTING_MAX_AGE`] old (the counter could
//! have wrapped around to the same value), when the table is empty, and after a scan that
//! could not open a process's `stat` for a reason other than the process having ended.
//!
//! The scan does not read `/proc/loadavg` itself: the collector reads that file on every tick
//! for the load averages, and hands the last PID of the same read to [`ProcessTable::scan`].

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How many `stat` files may be kept open, shared by all tables (see [`set_kept_files_limit`]).
static KEPT_FILES_LIMIT: AtomicUsize = AtomicUsize::new(256);

/// Sets how many `/proc/PID/stat` files the scan keeps open; processes beyond it are opened
/// and closed on each scan. The daemon sets its file descriptor budget's share at start, so
/// WebSocket connections keep theirs.
pub fn set_kept_files_limit(limit: usize) {
    KEPT_FILES_LIMIT.store(limit, Ordering::Relaxed);
}

/// The longest a scan relies on an unchanged last PID without listing `/proc`: a safety net
/// should the PID counter go all the way round to the same number between two scans.
pub const LISTING_MAX_AGE: Duration = Duration::from_secs(60);

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
    /// Whether `/proc/loadavg`'s last PID counts the processes under `proc_root`: not when
    /// `/proc` is another PID namespace's than this process's (see [`last_pid_counts`]).
    last_pid_counts: bool,
    /// The last PID allocated when `proc_root` was last listed, and when that was; `None` to
    /// have the next scan list it.
    listed: Option<(u32, Instant)>,
    /// How many scans listed `proc_root` (the others read the PIDs already known).
    listings: u64,
    /// The last PID the previous scan read: a listing is trusted only when this had not
    /// changed, because the kernel hands out a PID before the new process shows in `/proc`.
    previous_last_pid: Option<u32>,
    /// The known PIDs, for a scan that does not list (kept to allocate nothing per scan).
    pids: Vec<u32>,
}

/// How reading one process's `stat` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Read and recorded.
    Done,
    /// The process has ended (or its line is not a `stat` line).
    Gone,
    /// `stat` could not be opened although the process may run (no descriptor left, say).
    Failed,
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
            last_pid_counts: last_pid_counts(proc_root),
            listed: None,
            listings: 0,
            previous_last_pid: None,
            pids: Vec::new(),
        }
    }

    /// Reads each process's `stat`, listing `/proc` first when a process may have been
    /// created since the last listing (see the module's docs). `last_pid` is `/proc/loadavg`'s
    /// last field ([`super::procfs::parse_last_pid`]) read before this call, `None` when it
    /// could not be read: a process created after that read changes it for the next scan.
    /// `total_ticks` is the system's CPU time (all cores, `/proc/stat`'s aggregate line) now,
    /// `cores` the number of cores. Processes gone since the last scan are dropped. `false` if
    /// `/proc` could not be listed (the table is then left as it was).
    pub fn scan(&mut self, last_pid: Option<u32>, total_ticks: Option<u64>, cores: usize) -> bool {
        let limit = KEPT_FILES_LIMIT.load(Ordering::Relaxed);
        self.scan_with_limit(last_pid, total_ticks, cores, limit)
    }

    /// How many scans listed `/proc`; the others read only the processes already known.
    pub fn listings(&self) -> u64 {
        self.listings
    }

    /// [`Self::scan`] with a kept-files limit of its own (tests pass theirs: the global one
    /// is shared between them).
    fn scan_with_limit(
        &mut self,
        last_pid: Option<u32>,
        total_ticks: Option<u64>,
        cores: usize,
        limit: usize,
    ) -> bool {
        // Another PID namespace's `/proc`: this namespace's counter does not see its processes.
        let last_pid = last_pid.filter(|_| self.last_pid_counts);
        let now = Instant::now();
        let unchanged = match (last_pid, self.listed) {
            (Some(pid), Some((listed_pid, at))) => {
                pid == listed_pid && now.saturating_duration_since(at) < LISTING_MAX_AGE
            }
            _ => false,
        };
        let mut failed = false;
        if unchanged && !self.processes.is_empty() {
            self.scans += 1;
            let mut pids = std::mem::take(&mut self.pids);
            pids.clear();
            pids.extend(self.processes.keys());
            for &pid in &pids {
                failed |= self.read(pid, limit) == Read::Failed;
            }
            self.pids = pids;
        } else {
            let Ok(dir) = std::fs::read_dir(&self.proc_root) else {
                return false;
            };
            self.scans += 1;
            self.listings += 1;
            for entry in dir {
                // A listing cut short is not trusted: the next scan lists again.
                let Ok(entry) = entry else {
                    failed = true;
                    break;
                };
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
                failed |= self.read(pid, limit) == Read::Failed;
            }
            // A PID handed out just before this listing may belong to a process not yet in
            // `/proc`: only a value that held since the previous scan is relied on.
            self.listed = last_pid
                .filter(|pid| self.previous_last_pid == Some(*pid))
                .map(|pid| (pid, now));
        }
        self.previous_last_pid = last_pid;
        if failed {
            // A process left out may still run: the next scan lists `/proc` again.
            self.listed = None;
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
    fn read(&mut self, pid: u32, limit: usize) -> Read {
        let kept_read = self
            .processes
            .get(&pid)
            .and_then(|p| p.stat.as_ref())
            .map(|file| read_at_start(file, &mut self.buf));
        if matches!(kept_read, Some(Read::Gone | Read::Failed)) {
            // The process ended (its descriptor reads ESRCH) or the read failed: whoever has
            // the PID now is opened afresh.
            if let Some(p) = self.processes.get_mut(&pid) {
                p.stat = None;
                self.kept -= 1;
            }
        }
        let mut fresh_file = None;
        if kept_read != Some(Read::Done) {
            let path = self.proc_root.join(pid.to_string()).join("stat");
            let file = match File::open(path) {
                Ok(file) => file,
                // ENOENT or ESRCH: the process has ended. EACCES or EPERM: it is hidden from
                // this user (`hidepid=1`), which no later scan changes (a process whose
                // credentials change is found by the listing within LISTING_MAX_AGE).
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.kind() == std::io::ErrorKind::PermissionDenied
                        || e.raw_os_error() == Some(libc::ESRCH) =>
                {
                    return Read::Gone;
                }
                Err(_) => return Read::Failed,
            };
            match read_at_start(&file, &mut self.buf) {
                Read::Done => {}
                other => return other,
            }
            fresh_file = Some(file);
        }
        let Some(line) = parse_stat_line(self.buf.bytes()) else {
            return Read::Gone;
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
        Read::Done
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

/// Whether `/proc/loadavg`'s last PID, which counts PIDs in this process's namespace, also
/// counts those of the `/proc` at `proc_root`: not if `proc_root/self` names another PID than
/// this process's (a `/proc` of an ancestor namespace, whose new processes this namespace's
/// counter does not see). Without a readable `self` (a descendant namespace's `/proc`, whose
/// processes take a PID here too, or a fixture tree) it does.
fn last_pid_counts(proc_root: &Path) -> bool {
    std::fs::read_link(proc_root.join("self"))
        .ok()
        .and_then(|target| target.to_str()?.parse::<u32>().ok())
        .is_none_or(|pid| pid == std::process::id())
}

/// Reads a `stat` file from its start into `buf`: `Gone` if it reads nothing or `ESRCH` (the
/// process ended), `Failed` on any other error (the process may still run). The kernel
/// renders it in one piece, so a read that does not fill its room has it all.
fn read_at_start(file: &File, buf: &mut super::procfs::ReadBuf) -> Read {
    match super::procfs::pread_from_start(file, buf, 1024, super::procfs::ReadEnd::Short) {
        Ok(()) if buf.is_empty() => Read::Gone,
        Ok(()) => Read::Done,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Read::Gone,
        Err(_) => Read::Failed,
    }
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

    /// The one-pass parser reads every real `stat` line here as splitting it into fields does.
    #[test]
    fn real_stat_lines_parse_as_split_fields_say() {
        let mut compared = 0;
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(line) = std::fs::read(entry.path().join("stat")) else {
                continue;
            };
            let Some(parsed) = parse_stat_line(&line) else {
                continue;
            };
            let close = line.iter().rposition(|&b| b == b')').unwrap();
            let fields: Vec<u64> = std::str::from_utf8(&line[close + 1..])
                .unwrap()
                .split_ascii_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            assert_eq!(
                (
                    parsed.utime,
                    parsed.stime,
                    parsed.start_time,
                    parsed.rss_pages
                ),
                (fields[11], fields[12], fields[19], fields[21]),
                "{}",
                String::from_utf8_lossy(&line)
            );
            compared += 1;
        }
        assert!(compared > 1, "only {compared} processes read");
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
        assert!(table.scan(None, Some(1_000), 4));
        assert_eq!(table.len(), 2);
        assert!(table.processes().all(|p| p.cpu_usage == 0.0));

        // 400 system ticks over 4 cores = 100 ticks a core; pid 10 used 60.
        write(root, 10, 140, 70, 7);
        write(root, 11, 5, 0, 8);
        assert!(table.scan(None, Some(1_400), 4));
        assert!((table.get(10).unwrap().cpu_usage - 60.0).abs() < 1e-4);
        // Had used no time by the last scan: 0 this time (as sysinfo).
        assert_eq!(table.get(11).unwrap().cpu_usage, 0.0);
        assert_eq!(table.get(10).unwrap().name, "p10");
        assert_eq!(table.get(10).unwrap().rss_pages, 100);

        // The CPU meter kept its last sample (this scan came under 200 ms after it): no span,
        // so the shares stay as they were instead of one tick reading as 400 %.
        write(root, 10, 141, 70, 7);
        assert!(table.scan(None, Some(1_400), 4));
        assert!((table.get(10).unwrap().cpu_usage - 60.0).abs() < 1e-4);

        // Capped at cores × 100.
        write(root, 10, 100_000, 70, 7);
        assert!(table.scan(None, Some(1_800), 4));
        assert_eq!(table.get(10).unwrap().cpu_usage, 400.0);
    }

    #[test]
    fn gone_and_reused_pids_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, 20, 10, 10, 5);
        write(root, 21, 10, 10, 6);
        let mut table = ProcessTable::new(root);
        table.scan(None, Some(100), 1);
        write(root, 20, 20, 10, 5);
        table.scan(None, Some(200), 1);
        assert!((table.get(20).unwrap().cpu_usage - 10.0).abs() < 1e-4);

        std::fs::remove_dir_all(root.join("21")).unwrap();
        // PID 20 is another process now (another start time): it starts over at 0.
        write(root, 20, 500, 500, 9);
        table.scan(None, Some(300), 1);
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
        assert!(table.scan_with_limit(None, None, 1, 2));
        assert_eq!(table.kept, 2);
        assert_eq!(table.processes().filter(|p| p.stat.is_some()).count(), 2);
        for pid in 1..=5 {
            write(root, pid, 30, 10, 1);
        }
        assert!(table.scan_with_limit(None, None, 1, 2));
        assert!(table
            .processes()
            .all(|p| p.utime == 30 && p.old_utime == 10));
    }

    /// A process ends: its kept descriptor reads nothing (the kernel's reads `ESRCH`) and its
    /// directory goes.
    fn end(root: &Path, pid: u32) {
        std::fs::write(root.join(pid.to_string()).join("stat"), "").unwrap();
        std::fs::remove_dir_all(root.join(pid.to_string())).unwrap();
    }

    fn pids(table: &ProcessTable) -> Vec<u32> {
        let mut pids: Vec<u32> = table.processes().map(|p| p.pid).collect();
        pids.sort();
        pids
    }

    #[test]
    fn an_unchanged_last_pid_reads_the_known_processes_without_listing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut last = Some(300);
        write(root, 30, 10, 10, 5);
        write(root, 31, 10, 10, 6);
        let mut table = ProcessTable::new(root);
        assert!(table.scan_with_limit(last, Some(100), 1, 16));
        assert_eq!(table.listings(), 1);
        // The first value is relied on once it has held for a scan, which lists again.
        assert!(table.scan_with_limit(last, Some(150), 1, 16));
        assert_eq!(table.listings(), 2);

        // Nothing created since (same last PID): the known processes are read, not listed.
        write(root, 30, 30, 10, 5);
        write(root, 32, 10, 10, 7);
        assert!(table.scan_with_limit(last, Some(250), 1, 16));
        assert_eq!(table.listings(), 2);
        assert_eq!(pids(&table), [30, 31]);
        assert!((table.get(30).unwrap().cpu_usage - 20.0).abs() < 1e-4);

        // A new PID was handed out: listed, and the new process is found.
        last = Some(301);
        assert!(table.scan_with_limit(last, Some(300), 1, 16));
        assert_eq!(table.listings(), 3);
        assert_eq!(pids(&table), [30, 31, 32]);
        assert_eq!(table.get(32).unwrap().name, "p32");

        // The kernel hands out a PID before its process shows in `/proc`: one that shows
        // only after the listing that saw its PID is found by the next scan, which lists
        // again because the value had just changed.
        last = Some(302);
        assert!(table.scan_with_limit(last, Some(400), 1, 16));
        write(root, 33, 10, 10, 8);
        assert!(table.scan_with_limit(last, Some(500), 1, 16));
        assert_eq!(table.listings(), 5);
        assert_eq!(pids(&table), [30, 31, 32, 33]);
        assert!(table.scan_with_limit(last, Some(600), 1, 16));
        assert_eq!(table.listings(), 5);
    }

    #[test]
    fn processes_ending_without_a_listing_are_dropped_and_counted_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let last = Some(4000);
        for pid in 40..46 {
            write(root, pid, 10, 10, u64::from(pid));
        }
        // Two kept files: the other four are opened by path on every scan.
        let mut table = ProcessTable::new(root);
        assert!(table.scan_with_limit(last, Some(100), 1, 2));
        assert_eq!((table.len(), table.kept), (6, 2));
        let kept: Vec<u32> = table
            .processes()
            .filter(|p| p.stat.is_some())
            .map(|p| p.pid)
            .collect();
        let unkept: Vec<u32> = table
            .processes()
            .filter(|p| p.stat.is_none())
            .map(|p| p.pid)
            .collect();

        // Every process is read again, kept or not.
        for pid in 40..46 {
            write(root, pid, 25, 10, u64::from(pid));
        }
        assert!(table.scan_with_limit(last, Some(200), 1, 2));
        assert_eq!(
            table.listings(),
            2,
            "the first value is relied on once it held a scan"
        );
        assert!(table
            .processes()
            .all(|p| p.utime == 25 && p.old_utime == 10 && p.cpu_usage > 14.9));

        // One process with a kept file and one without end; nothing new was created.
        end(root, kept[0]);
        end(root, unkept[0]);
        assert!(table.scan_with_limit(last, Some(300), 1, 2));
        assert_eq!(table.listings(), 2);
        assert_eq!(table.len(), 4);
        assert!(table.get(kept[0]).is_none() && table.get(unkept[0]).is_none());
        // The ended process's descriptor is closed; its slot goes to a process read by path
        // (in this scan if one is read after it, else in the next).
        let kept_files = |t: &ProcessTable| t.processes().filter(|p| p.stat.is_some()).count();
        assert_eq!(table.kept, kept_files(&table));
        assert!((1..=2).contains(&table.kept));
        assert!(table.scan_with_limit(last, Some(400), 1, 2));
        assert_eq!((table.len(), table.listings()), (4, 2));
        assert_eq!((table.kept, kept_files(&table)), (2, 2));
    }

    #[test]
    fn a_process_created_unnoticed_is_found_once_the_listing_is_old() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let last = Some(500);
        write(root, 50, 10, 10, 5);
        let mut table = ProcessTable::new(root);
        table.scan_with_limit(last, None, 1, 16);
        table.scan_with_limit(last, None, 1, 16);
        // Created without the last PID moving (as after the counter went all the way round).
        write(root, 51, 10, 10, 6);
        table.scan_with_limit(last, None, 1, 16);
        assert!(table.get(51).is_none());
        let (pid, at) = table.listed.unwrap();
        let Some(long_ago) = at.checked_sub(LISTING_MAX_AGE) else {
            return; // the clock started under a minute ago: nothing to go back to
        };
        table.listed = Some((pid, long_ago));
        table.scan_with_limit(last, None, 1, 16);
        assert_eq!(table.listings(), 3);
        assert_eq!(pids(&table), [50, 51]);
    }

    #[test]
    fn without_a_readable_last_pid_every_scan_lists() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, 60, 10, 10, 5);
        let mut table = ProcessTable::new(root);
        // `/proc/loadavg` could not be read at all.
        table.scan_with_limit(None, None, 1, 16);
        write(root, 61, 10, 10, 6);
        table.scan_with_limit(None, None, 1, 16);
        assert_eq!(pids(&table), [60, 61]);
        // Read, but cut short, garbled, or with a field too many: no last PID either.
        for text in [
            "0.42 0.31 0.25 1/187\n",
            "0.42 0.31 0.25 1/187 22x0\n",
            "0.42 0.31 0.25 1/187 2210 9\n",
            "",
        ] {
            let last = crate::stats::procfs::parse_last_pid(text);
            table.scan_with_limit(last, None, 1, 16);
            table.scan_with_limit(last, None, 1, 16);
        }
        write(root, 62, 10, 10, 7);
        table.scan_with_limit(None, None, 1, 16);
        assert_eq!(table.listings(), 11);
        assert_eq!(pids(&table), [60, 61, 62]);

        // Readable again: the next two scans list (the second confirms the value), then the
        // ones after do not.
        let last = crate::stats::procfs::parse_last_pid("0.42 0.31 0.25 1/187 700\n");
        table.scan_with_limit(last, None, 1, 16);
        table.scan_with_limit(last, None, 1, 16);
        table.scan_with_limit(last, None, 1, 16);
        assert_eq!(table.listings(), 13);
        // Unreadable again: back to listing every scan.
        table.scan_with_limit(None, None, 1, 16);
        table.scan_with_limit(None, None, 1, 16);
        assert_eq!(table.listings(), 15);
    }

    #[test]
    fn a_stat_that_cannot_be_opened_has_the_next_scan_list_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let last = Some(800);
        write(root, 80, 10, 10, 5);
        // A `stat` that fails to open with something other than "no such process" (a link to
        // itself: ELOOP, as a process out of descriptors would get EMFILE).
        std::fs::create_dir(root.join("81")).unwrap();
        std::os::unix::fs::symlink("stat", root.join("81/stat")).unwrap();
        let mut table = ProcessTable::new(root);
        table.scan_with_limit(last, None, 1, 16);
        assert_eq!(pids(&table), [80]);
        std::fs::remove_file(root.join("81/stat")).unwrap();
        write(root, 81, 10, 10, 6);
        table.scan_with_limit(last, None, 1, 16);
        assert_eq!(table.listings(), 2);
        assert_eq!(pids(&table), [80, 81]);
        table.scan_with_limit(last, None, 1, 16);
        assert_eq!(table.listings(), 2);
    }

    #[test]
    fn a_proc_of_another_pid_namespace_is_always_listed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // The same value throughout: it would be relied on, did it count these processes.
        let last = Some(900);
        write(root, 90, 10, 10, 5);
        // `self` names another PID than this process's: this `/proc` is not our namespace's.
        let other = std::process::id().wrapping_add(1);
        std::os::unix::fs::symlink(other.to_string(), root.join("self")).unwrap();
        let mut table = ProcessTable::new(root);
        table.scan_with_limit(last, None, 1, 16);
        table.scan_with_limit(last, None, 1, 16);
        write(root, 91, 10, 10, 6);
        table.scan_with_limit(last, None, 1, 16);
        assert_eq!(table.listings(), 3);
        assert_eq!(pids(&table), [90, 91]);

        // Our own namespace's: the last PID is used.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, 90, 10, 10, 5);
        std::os::unix::fs::symlink(std::process::id().to_string(), root.join("self")).unwrap();
        let mut table = ProcessTable::new(root);
        for _ in 0..3 {
            table.scan_with_limit(last, None, 1, 16);
        }
        assert_eq!(table.listings(), 2);
    }

    #[test]
    fn the_running_system_is_listed_with_this_process() {
        let mut table = ProcessTable::new(Path::new("/proc"));
        assert!(table.scan(None, None, 1));
        let me = table.get(std::process::id()).expect("this process");
        assert!(!me.name.is_empty());
        assert!(me.rss_pages > 0);
        assert!(!ProcessTable::new(Path::new("/nonexistent/proc")).scan(None, None, 1));
    }

    /// The running kernel's last PID, read as the collector reads it.
    fn last_pid() -> Option<u32> {
        crate::stats::procfs::parse_last_pid(&std::fs::read_to_string("/proc/loadavg").ok()?)
    }

    #[test]
    fn a_child_started_and_reaped_is_found_and_dropped() {
        let mut table = ProcessTable::new(Path::new("/proc"));
        assert!(table.last_pid_counts);
        let before = last_pid().expect("/proc/loadavg's last PID");
        assert!(table.scan_with_limit(Some(before), None, 1, 4096));
        assert!(table.scan_with_limit(last_pid(), None, 1, 4096));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let after = last_pid();
        assert_ne!(after, Some(before));
        assert!(table.scan_with_limit(after, None, 1, 4096));
        assert_eq!(table.get(pid).expect("the child").name, "sleep");
        child.kill().unwrap();
        child.wait().unwrap();
        // Its kept descriptor now reads ESRCH, listed or not.
        assert!(table.scan_with_limit(last_pid(), None, 1, 4096));
        assert!(table.get(pid).is_none());
    }
}
