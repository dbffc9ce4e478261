//! CPU usage from `/proc/stat`'s `cpu` lines, read on every tick from a kept-open file.
//!
//! sysinfo's CPU refresh opens `/proc/stat` on each call, reads it through an 8 KiB
//! `BufReader` and allocates a `Vec` per line it splits; on an unwatched tick that was the
//! collector's only file not kept open. The figures here are computed exactly as sysinfo 0.37
//! computes them (same fields, same `f32` arithmetic, same 200 ms minimum between samples), so
//! the aggregate and per-core percentages do not change. The process scan
//! ([`super::processes`]) takes its span of system time from the same aggregate line.

use std::time::{Duration, Instant};

use super::procfs::split_line;

/// Samples closer together than this are not taken (the figures of the last one stay): at
/// `USER_HZ` = 100 a shorter window holds too few clock ticks to mean anything. sysinfo's
/// `MINIMUM_CPU_UPDATE_INTERVAL` on Linux.
const MINIMUM_INTERVAL: Duration = Duration::from_millis(200);

/// The ten counters of one `cpu` line, in `USER_HZ` ticks: user, nice, system, idle, iowait,
/// irq, softirq, steal, guest, guest_nice. Fields missing on older kernels are 0.
pub type CpuTimes = [u64; 10];

/// Parses the `cpu` (aggregate) line and the `cpuN` lines that follow it into `per_core`
/// (cleared first, then one entry per line, in file order). `None` when the file does not start
/// with the aggregate line. A field that is not a number counts as 0; one too large for `u64`
/// saturates.
pub fn parse_cpu_lines(text: &[u8], per_core: &mut Vec<CpuTimes>) -> Option<CpuTimes> {
    per_core.clear();
    let (first, mut rest) = split_line(text.strip_prefix(b"cpu ")?);
    let total = parse_fields(first);
    // Each line is looked at only as far as its name: the one after the last `cpuN` is the
    // `intr` line, most of the file, which is never scanned.
    while let Some(line) = rest.strip_prefix(b"cpu") {
        let (line, next) = split_line(line);
        per_core.push(parse_fields(skip_name(line)));
        rest = next;
    }
    Some(total)
}

/// The line after `cpuN`'s digits.
fn skip_name(rest: &[u8]) -> &[u8] {
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    &rest[end..]
}

/// The first ten space-separated fields, in one pass over the bytes: one that is not a number
/// as 0, one too large as `u64::MAX`.
fn parse_fields(line: &[u8]) -> CpuTimes {
    let mut times = [0; 10];
    let mut index = 0;
    // The field being read: its value, saturated, and whether each of its bytes was a digit.
    let (mut value, mut digits_only, mut in_field) = (0u64, true, false);
    for &b in line {
        if b == b' ' {
            if in_field {
                times[index] = if digits_only { value } else { 0 };
                index += 1;
                if index == times.len() {
                    return times;
                }
                (value, digits_only, in_field) = (0, true, false);
            }
            continue;
        }
        in_field = true;
        let digit = b.wrapping_sub(b'0');
        digits_only &= digit < 10;
        value = value.saturating_mul(10).saturating_add(u64::from(digit));
    }
    if in_field {
        times[index] = if digits_only { value } else { 0 };
    }
    times
}

/// One CPU's (or the aggregate's) last sample and the usage between it and the one before.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUsage {
    last: Option<Counters>,
    percent: f32,
}

/// A sample with guest time taken out of user and nice (where the kernel already counts it).
#[derive(Debug, Clone, Copy)]
struct Counters {
    user: u64,
    nice: u64,
    system: u64,
    idle: u64,
    iowait: u64,
    irq: u64,
    softirq: u64,
    steal: u64,
    guest: u64,
    guest_nice: u64,
}

impl Counters {
    fn new(t: &CpuTimes) -> Counters {
        Counters {
            user: t[0].saturating_sub(t[8]),
            nice: t[1].saturating_sub(t[9]),
            system: t[2],
            idle: t[3],
            iowait: t[4],
            irq: t[5],
            softirq: t[6],
            steal: t[7],
            guest: t[8],
            guest_nice: t[9],
        }
    }

    fn system_time(&self) -> u64 {
        self.system
            .saturating_add(self.irq)
            .saturating_add(self.softirq)
    }

    fn virtual_time(&self) -> u64 {
        self.guest.saturating_add(self.guest_nice)
    }

    fn total_time(&self) -> u64 {
        self.user
            .saturating_add(self.nice)
            .saturating_add(self.system_time())
            .saturating_add(self.idle.saturating_add(self.iowait))
            .saturating_add(self.virtual_time())
            .saturating_add(self.steal)
    }
}

impl CpuUsage {
    /// Takes a sample; the usage is then the busy share of the time since the previous one,
    /// 0 after the first.
    pub fn update(&mut self, times: &CpuTimes) {
        let new = Counters::new(times);
        let old = self.last.replace(new);
        let Some(old) = old else {
            return;
        };
        let (total, old_total) = (new.total_time(), old.total_time());
        let total = if total > old_total {
            (total - old_total) as f32
        } else {
            1.0
        };
        let nice = new.nice.saturating_sub(old.nice) as f32 / total;
        let user = new.user.saturating_sub(old.user) as f32 / total;
        let system = new.system_time().saturating_sub(old.system_time()) as f32 / total;
        let steal_guest = (new.steal.saturating_sub(old.steal))
            .saturating_add(new.virtual_time().saturating_sub(old.virtual_time()))
            as f32
            / total;
        self.percent = ((nice + user + system + steal_guest) * 100.0).min(100.0);
    }

    /// Percent busy between the last two samples.
    pub fn percent(&self) -> f32 {
        self.percent
    }

    /// The last sample's ticks, busy and idle.
    pub fn total_ticks(&self) -> Option<u64> {
        self.last.map(|c| c.total_time())
    }
}

/// The aggregate and per-core usage, fed from `/proc/stat`. The number of cores is fixed at
/// the first sample (as sysinfo's list is): cores that appear later are ignored. As in
/// sysinfo, lines are matched to cores by position, so while a core is offline (the kernel
/// leaves its line out) the cores after it show their neighbour's figures and the last one
/// keeps its last figure; Raspberry Pi OS does not take cores offline.
#[derive(Debug, Default)]
pub struct CpuMeter {
    total: CpuUsage,
    cores: Vec<CpuUsage>,
    sampled: Option<Instant>,
    /// Scratch for a sample's per-core lines, kept so a tick allocates nothing.
    lines: Vec<CpuTimes>,
}

impl CpuMeter {
    /// Takes a sample from `/proc/stat`'s text, unless the last one is under 200 ms old;
    /// unreadable text leaves the figures as they were.
    pub fn sample(&mut self, stat: Option<&[u8]>, now: Instant) {
        if self
            .sampled
            .is_some_and(|at| now.duration_since(at) < MINIMUM_INTERVAL)
        {
            return;
        }
        self.sampled = Some(now);
        let Some(total) = stat.and_then(|text| parse_cpu_lines(text, &mut self.lines)) else {
            return;
        };
        if self.cores.is_empty() {
            // As sysinfo does, the aggregate's first figure is the average since boot (the
            // first document may come within 200 ms of the collector's start) and each core's
            // is 0.
            self.total.last = Some(Counters::new(&[0; 10]));
            self.cores = vec![CpuUsage::default(); self.lines.len()];
        }
        self.total.update(&total);
        for (core, times) in self.cores.iter_mut().zip(&self.lines) {
            core.update(times);
        }
    }

    /// The aggregate's percent busy.
    pub fn usage_percent(&self) -> f32 {
        self.total.percent()
    }

    /// All cores' ticks, busy and idle, at the last sample: the span the per-process shares
    /// are taken over.
    pub fn total_ticks(&self) -> Option<u64> {
        self.total.total_ticks()
    }

    /// Each core's percent busy, in `/proc/stat` order.
    pub fn per_core(&self) -> impl ExactSizeIterator<Item = f32> + '_ {
        self.cores.iter().map(CpuUsage::percent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/stat` of a 4-core Raspberry Pi 4 (kernel 6.6, 64-bit), two samples a second
    /// apart, trimmed after `procs_blocked`.
    const PI4_BEFORE: &str = "cpu  10132153 290696 3084719 46828483 16683 0 25195 0 0 0
cpu0 2531035 72667 785530 11700109 4139 0 12087 0 0 0
cpu1 2538112 72680 767003 11709320 4184 0 4525 0 0 0
cpu2 2529541 72672 766101 11709524 4180 0 4298 0 0 0
cpu3 2533465 72677 766085 11709530 4180 0 4285 0 0 0
intr 1462898 0 0 0
ctxt 2937341
btime 1752395215
processes 32441
procs_running 1
procs_blocked 0
";
    const PI4_AFTER: &str = "cpu  10132253 290696 3084739 46828763 16683 0 25199 0 0 0
cpu0 2531035 72667 785535 11700204 4139 0 12089 0 0 0
cpu1 2538212 72680 767008 11709320 4184 0 4525 0 0 0
cpu2 2529541 72672 766106 11709619 4180 0 4299 0 0 0
cpu3 2533465 72677 766089 11709620 4180 0 4286 0 0 0
intr 1463012 0 0 0
ctxt 2937901
btime 1752395215
processes 32445
procs_running 2
procs_blocked 0
";

    #[test]
    fn parses_the_aggregate_and_each_core() {
        let mut cores = Vec::new();
        let total = parse_cpu_lines(PI4_BEFORE.as_bytes(), &mut cores).unwrap();
        assert_eq!(
            total,
            [10132153, 290696, 3084719, 46828483, 16683, 0, 25195, 0, 0, 0]
        );
        assert_eq!(cores.len(), 4);
        assert_eq!(
            cores[3],
            [2533465, 72677, 766085, 11709530, 4180, 0, 4285, 0, 0, 0]
        );
    }

    #[test]
    fn short_lines_and_garbage_give_zeros_not_a_panic() {
        let mut cores = Vec::new();
        // A 2.6.11 kernel's eight fields, a core with a non-number, an overflowing field.
        let text = b"cpu  1 2 3 4 5 6 7 8\ncpu0 1 x 3\ncpu1 99999999999999999999999 1\nintr 1\n";
        let total = parse_cpu_lines(text, &mut cores).unwrap();
        assert_eq!(total, [1, 2, 3, 4, 5, 6, 7, 8, 0, 0]);
        assert_eq!(cores[0], [1, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(cores[1][0], u64::MAX);
        assert_eq!(cores.len(), 2);
        assert!(parse_cpu_lines(b"intr 1\ncpu  1 2\n", &mut cores).is_none());
        // The cores are the `cpuN` lines right after the aggregate, fields beyond ten ignored.
        let total = parse_cpu_lines(
            b"cpu  1 x 3\ncpu0 4 5 6 7 8 9 10 11 12 13 14\nintr 9\ncpu1 7\n",
            &mut cores,
        );
        assert_eq!(total, Some([1, 0, 3, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(cores, [[4, 5, 6, 7, 8, 9, 10, 11, 12, 13]]);
        assert!(parse_cpu_lines(b"", &mut cores).is_none());
    }

    #[test]
    fn usage_is_the_busy_share_between_samples() {
        let mut meter = CpuMeter::default();
        let start = Instant::now();
        meter.sample(Some(PI4_BEFORE.as_bytes()), start);
        // The first figure: busy since boot, and 0 for each core.
        let since_boot = (10132153.0f32 + 290696.0 + 3084719.0 + 25195.0)
            / (10132153.0 + 290696.0 + 3084719.0 + 46828483.0 + 16683.0 + 25195.0)
            * 100.0;
        assert!((meter.usage_percent() - since_boot).abs() < 1e-3);
        assert!(meter.per_core().all(|p| p == 0.0));
        assert_eq!(meter.per_core().len(), 4);
        meter.sample(Some(PI4_AFTER.as_bytes()), start + Duration::from_secs(1));
        // Aggregate: user 100 + system 20 + softirq 4 busy of 404 ticks.
        let expected = (100.0f32 / 404.0 + 24.0 / 404.0) * 100.0;
        assert!((meter.usage_percent() - expected).abs() < 1e-4);
        let cores: Vec<f32> = meter.per_core().collect();
        // cpu0: system 5 + softirq 2 busy, idle 95.
        assert!((cores[0] - 7.0 / 102.0 * 100.0).abs() < 1e-4, "{cores:?}");
        // cpu1: user 100 + system 5, no idle.
        assert_eq!(cores[1], 100.0);
    }

    #[test]
    fn samples_under_200_ms_apart_and_unreadable_files_keep_the_figures() {
        let mut meter = CpuMeter::default();
        let start = Instant::now();
        meter.sample(Some(PI4_BEFORE.as_bytes()), start);
        let first = meter.usage_percent();
        meter.sample(
            Some(PI4_AFTER.as_bytes()),
            start + Duration::from_millis(100),
        );
        assert_eq!(meter.usage_percent(), first);
        assert!(meter.per_core().all(|p| p == 0.0));
        meter.sample(Some(PI4_AFTER.as_bytes()), start + Duration::from_secs(1));
        let busy = meter.usage_percent();
        assert!(busy > 30.0);
        meter.sample(None, start + Duration::from_secs(2));
        meter.sample(Some(b"garbage"), start + Duration::from_secs(3));
        assert_eq!(meter.usage_percent(), busy);
    }

    #[test]
    fn guest_time_is_not_counted_twice() {
        let mut usage = CpuUsage::default();
        usage.update(&[100, 0, 0, 100, 0, 0, 0, 0, 50, 0]);
        // 100 user ticks of which 50 guest, and 100 idle.
        usage.update(&[200, 0, 0, 200, 0, 0, 0, 0, 100, 0]);
        assert!((usage.percent() - 50.0).abs() < 1e-4);
    }

    #[test]
    fn a_core_list_is_fixed_at_the_first_sample() {
        let mut meter = CpuMeter::default();
        let start = Instant::now();
        meter.sample(Some(b"cpu  1 0 0 1\ncpu0 1 0 0 1\n"), start);
        meter.sample(
            Some(b"cpu  3 0 0 3\ncpu0 2 0 0 2\ncpu1 1 0 0 1\n"),
            start + Duration::from_secs(1),
        );
        assert_eq!(meter.per_core().len(), 1);
        assert!((meter.per_core().next().unwrap() - 50.0).abs() < 1e-4);
    }
}
