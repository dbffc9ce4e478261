//! Bytes written per disk per local calendar day: today's running total and the last
//! [`KEEP_DAYS`] closed days, for SD card owners who want to know how hard the card is worked.
//!
//! # Where the figures come from
//!
//! Every sample carries each whole disk's cumulative `/proc/diskstats` write counter (bytes
//! since boot, `disk.devices[NAME].io`). The ledger adds the difference to the previous
//! reading to the current day. A counter that goes down (the system rebooted, the device was
//! removed and added again) restarted from 0, so everything it shows now was written since:
//! the delta is the new reading, never a negative or wrapped-around one. A device seen for the
//! first time only sets its baseline: what it wrote since boot may be from any earlier day.
//!
//! # Days
//!
//! A day is the local calendar date of the sample's wall time (`localtime_r`, so the system's
//! time zone and its daylight saving rules). A Pi without an RTC has its wall clock stepped by
//! NTP: a step forward closes the current day (and every device's total for it); a step
//! backwards by less than a day never reopens or rewrites a closed day, the writes keep going
//! to the current day until the clock reaches a later date. A step back by more than a day
//! means the clock had been set to a future date: those future days are undone and their
//! bytes counted today, once the clock has stayed back for over a day (see `Turn`). Days the daemon did not run are not listed; writes
//! made while it was stopped (same boot) are counted on the first reading after the restart.
//!
//! # Persistence and bounds
//!
//! The ledger is part of [`History`](super::History), so it is saved and restored with it in
//! the state file and its journal ([`super::store`], a section of its own since format
//! version 2). That reuses the store's atomic snapshot, append-only journal and checksums
//! instead of a second file with its own fsync and rename every save; the section is
//! length-prefixed and decoded on its own, so a bad section empties the ledger without
//! costing the history. At most [`MAX_DEVICES`] devices are kept (one no longer seen, or one
//! that never wrote, makes room), so hot-plugging cannot grow memory: 16 × 31 days × 12 bytes.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

/// Closed days kept per device.
pub const KEEP_DAYS: usize = 30;
/// Devices kept; beyond this a new one replaces one no longer seen or one that never wrote
/// anything, or is not kept ([`DiskDays::observe`]).
pub const MAX_DEVICES: usize = 16;
/// Longest device name kept (kernel disk names are at most 32 bytes).
const MAX_NAME: usize = 64;

/// How often the time zone is looked up again (wall-clock seconds between lookups).
const ZONE_RECHECK_SECS: i64 = 60;

/// `localtime_r` reads the time zone once per process (POSIX leaves it to `tzset`), so
/// `timedatectl set-timezone` would not apply until a restart. At most once a minute this
/// asks the C library to look again (glibc re-reads `/etc/localtime` if it changed; musl
/// follows `TZ` only).
fn reread_zone(now: i64) {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(i64::MIN);
    let last = LAST.load(Ordering::Relaxed);
    if last != i64::MIN && now.abs_diff(last) < ZONE_RECHECK_SECS as u64 {
        return;
    }
    LAST.store(now, Ordering::Relaxed);
    extern "C" {
        fn tzset();
    }
    // SAFETY: tzset takes no arguments; glibc and musl serialize it with localtime_r.
    unsafe { tzset() };
}

/// The local date of the last minute asked for. The collector asks twice a tick, and a date
/// changes only where a minute does (time zone offsets since 1972 are whole minutes), so the
/// C library's zone arithmetic runs once a minute instead. The zone is looked at again only
/// once a minute anyway ([`reread_zone`]).
static LAST_MINUTE: MinuteDay = MinuteDay(std::sync::atomic::AtomicU64::new(u64::MAX));

/// A minute since 1970 (upper 32 bits) and its date (lower 32), in one atomic so that both
/// are always read together; minutes before 1970 or past 32 bits are not kept.
struct MinuteDay(std::sync::atomic::AtomicU64);

impl MinuteDay {
    fn get(&self, minute: i64) -> Option<Day> {
        let packed = self.0.load(std::sync::atomic::Ordering::Relaxed);
        (packed != u64::MAX && i64::try_from(packed >> 32).ok() == Some(minute))
            .then_some(Day(packed as u32 as i32))
    }

    fn set(&self, minute: i64, day: Day) {
        if let Ok(minute) = u32::try_from(minute) {
            let packed = u64::from(minute) << 32 | u64::from(day.0 as u32);
            self.0.store(packed, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A local calendar date as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day(pub i32);

impl Day {
    /// The local calendar date of `wall` (UTC if the time zone cannot be applied, or if
    /// `wall` does not fit the C library's `time_t`: 32 bits on armhf's musl, past 2038).
    pub fn local(wall: SystemTime) -> Day {
        let secs = match wall.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        let utc = Day(secs.div_euclid(86_400) as i32);
        let minute = secs.div_euclid(60);
        if let Some(day) = LAST_MINUTE.get(minute) {
            return day;
        }
        // `time_t`'s width comes from `localtime_r`'s signature (the alias is deprecated on
        // 32-bit musl, where it is about to change); a conversion only where it is 32 bits.
        #[allow(clippy::useless_conversion)]
        let Some(t) = secs.try_into().ok() else {
            return utc;
        };
        reread_zone(secs);
        // SAFETY: `tm` is a plain C struct that localtime_r fills; both pointers are valid.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
            return utc;
        }
        let day = Day::from_ymd(
            i64::from(tm.tm_year) + 1900,
            tm.tm_mon as u32 + 1,
            tm.tm_mday as u32,
        );
        LAST_MINUTE.set(minute, day);
        day
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
    pub fn from_ymd(y: i64, m: u32, d: u32) -> Day {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = i64::from((m + 9) % 12);
        let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Day((era * 146_097 + doe - 719_468) as i32)
    }

    /// (year, month, day).
    pub fn ymd(self) -> (i64, u32, u32) {
        let z = i64::from(self.0) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (
            if m <= 2 {
                yoe + era * 400 + 1
            } else {
                yoe + era * 400
            },
            m,
            d,
        )
    }
}

impl serde::Serialize for Day {
    /// As `YYYY-MM-DD`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl std::fmt::Display for Day {
    /// `YYYY-MM-DD`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// One device's figures as shown: today's bytes and the closed days, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub today: u64,
    pub per_day: Vec<(Day, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Device {
    name: String,
    /// The last counter reading; `None` until the first one.
    counter: Option<u64>,
    today: u64,
    /// Closed days, oldest first, at most [`KEEP_DAYS`].
    closed: VecDeque<(Day, u64)>,
    /// Sample number of the last reading (not saved), to pick the device to drop.
    seen: u64,
}

impl Device {
    fn new(name: &str) -> Device {
        Device {
            name: name.to_owned(),
            counter: None,
            today: 0,
            closed: VecDeque::new(),
            seen: 0,
        }
    }

    /// Bytes written since the last reading.
    fn delta(&self, counter: u64) -> u64 {
        match self.counter {
            None => 0,
            Some(last) if counter >= last => counter - last,
            // Restarted from 0: all of it is new.
            Some(_) => counter,
        }
    }

    /// Applies a change of the open day to `now`.
    fn turn(&mut self, turn: Turn, now: Day) {
        match turn {
            Turn::Same => {}
            Turn::Close(day) => {
                self.closed.push_back((day, self.today));
                self.today = 0;
                if self.closed.len() > KEEP_DAYS {
                    self.closed.pop_front();
                }
            }
            Turn::UndoFuture => {
                let past = self.closed.iter().take_while(|(d, _)| *d < now).count();
                for (_, bytes) in self.closed.drain(past..) {
                    self.today = self.today.saturating_add(bytes);
                }
            }
        }
    }

    /// The closed days shown while `open` is the open day: those of the [`KEEP_DAYS`] before
    /// it. Older ones are kept (up to the count) rather than dropped, so that undoing a
    /// future date ([`Turn::UndoFuture`]) brings back the days it hid.
    fn shown(&self, open: Option<Day>) -> Vec<(Day, u64)> {
        let from = open.map_or(i32::MIN, |d| d.0.saturating_sub(KEEP_DAYS as i32));
        self.closed
            .iter()
            .copied()
            .filter(|(d, _)| d.0 >= from)
            .collect()
    }
}

/// No clock that reads before this date is taken for right (2025-01-01, before pistats had a
/// disk ledger): a Pi without an RTC that boots offline starts at 1970 or at systemd's build
/// date, and must not undo the real days it has recorded ([`Turn::UndoFuture`]).
const EARLIEST_PLAUSIBLE: Day = Day(20_089);

/// What a reading on a given day does to the open day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// The same day or a step back by less than a day: the writes keep going to the open
    /// day (or, at the first reading, the reading's day opens).
    Same,
    /// A later day: the open day (this one) is closed.
    Close(Day),
    /// The clock has said a date more than a day before the open day for over a day (two
    /// of its midnights passed): the open day was a future date (a mistyped `date -s`, a bad
    /// RTC or NTP answer) and the clock is right again. Without this the ledger would count
    /// on that date until it came. The reading's day becomes the open one, and what was
    /// counted on the future days (written lately, under the wrong date) is added to today's
    /// total rather than lost. A Pi without an RTC that boots with a stale clock has it
    /// corrected by NTP long before, so its days stay as they are; one that stays offline
    /// with a clock before [`EARLIEST_PLAUSIBLE`] never undoes them.
    UndoFuture,
}

impl Turn {
    /// For a reading on `day`, with `open` the open day and `behind_since` the first day of
    /// the readings, in a row, more than a day before it.
    fn between(open: Option<Day>, behind_since: Option<Day>, day: Day) -> Turn {
        match open {
            Some(open) if day > open => Turn::Close(open),
            Some(open)
                if day >= EARLIEST_PLAUSIBLE
                    && day.0 < open.0.saturating_sub(1)
                    && behind_since.is_some_and(|b| day.0 >= b.0.saturating_add(2)) =>
            {
                Turn::UndoFuture
            }
            _ => Turn::Same,
        }
    }
}

/// The per-device daily ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskDays {
    /// The current day: `None` before the first reading.
    day: Option<Day>,
    /// The day of the first of the latest readings, in a row, that were more than a day
    /// before `day` (see [`Turn::UndoFuture`]); not saved.
    behind_since: Option<Day>,
    devices: Vec<Device>,
    readings: u64,
}

impl DiskDays {
    pub fn new() -> DiskDays {
        DiskDays::default()
    }

    /// The current (open) day.
    pub fn day(&self) -> Option<Day> {
        self.day
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// One sample's cumulative write counters, read on `day`.
    pub fn observe<'a>(&mut self, day: Day, counters: impl IntoIterator<Item = (&'a str, u64)>) {
        let turn = Turn::between(self.day, self.behind_since, day);
        match turn {
            Turn::Same if self.day.is_some() => {}
            turn => {
                for device in &mut self.devices {
                    device.turn(turn, day);
                }
                self.day = Some(day);
            }
        }
        self.behind_since = match self.day {
            Some(open) if day.0 < open.0.saturating_sub(1) => {
                Some(self.behind_since.unwrap_or(day))
            }
            _ => None,
        };
        self.readings += 1;
        for (name, counter) in counters {
            let device = match self.devices.iter().position(|d| d.name == name) {
                Some(i) => &mut self.devices[i],
                None => {
                    if name.is_empty() || name.len() > MAX_NAME || !self.make_room(counter) {
                        continue;
                    }
                    self.devices.push(Device::new(name));
                    self.devices.last_mut().expect("just pushed")
                }
            };
            device.today = device.today.saturating_add(device.delta(counter));
            device.counter = Some(counter);
            device.seen = self.readings;
        }
    }

    /// Makes room for a device first seen with `counter`, if it should have one: the ledger
    /// is bounded by [`MAX_DEVICES`]. A device missing from this reading and the last one
    /// (unplugged, or a name no longer listed) makes room first, the longest unseen first.
    /// Otherwise, a new device that has written something takes the place of one that never
    /// has; else the new one is not kept. So 16 idle `nbd` devices neither push out the SD
    /// card nor take turns pushing out each other on every tick.
    fn make_room(&mut self, counter: u64) -> bool {
        if self.devices.len() < MAX_DEVICES {
            return true;
        }
        let recent = self.readings.saturating_sub(1);
        let gone = self
            .devices
            .iter()
            .enumerate()
            .filter(|(_, d)| d.seen < recent)
            .min_by_key(|(_, d)| d.seen)
            .map(|(i, _)| i);
        let idle = || {
            self.devices
                .iter()
                .position(|d| d.counter.unwrap_or(0) == 0 && d.today == 0 && d.closed.is_empty())
                .filter(|_| counter > 0)
        };
        match gone.or_else(idle) {
            Some(i) => {
                self.devices.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// The figures of `name` as they would be after a reading of `counter` on `day`, without
    /// recording it: the collector shows the current tick's writes before the history
    /// records them (right after the tick is published). `None` for a device the ledger does not know yet.
    pub fn preview(&self, name: &str, counter: u64, day: Day) -> Option<Written> {
        let device = self.devices.iter().find(|d| d.name == name)?;
        let delta = device.delta(counter);
        let turn = Turn::between(self.day, self.behind_since, day);
        if turn == Turn::Same {
            // Nearly every tick: the device's days as they are, without a copy to turn.
            return Some(Written {
                today: device.today.saturating_add(delta),
                per_day: device.shown(self.day.or(Some(day))),
            });
        }
        let mut after = Device {
            name: String::new(),
            counter: device.counter,
            today: device.today,
            closed: device.closed.clone(),
            seen: device.seen,
        };
        after.turn(turn, day);
        Some(Written {
            today: after.today.saturating_add(delta),
            per_day: after.shown(Some(day)),
        })
    }

    /// The recorded figures of `name`.
    pub fn written(&self, name: &str) -> Option<Written> {
        let device = self.devices.iter().find(|d| d.name == name)?;
        Some(Written {
            today: device.today,
            per_day: device.shown(self.day),
        })
    }

    /// Device names (in no particular order: a device that made room moved another).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.devices.iter().map(|d| d.name.as_str())
    }

    /// After a reboot every counter restarted from 0: the next reading counts in full.
    pub fn counters_restarted(&mut self) {
        for device in &mut self.devices {
            if device.counter.is_some() {
                device.counter = Some(0);
            }
        }
    }

    /// Appends the ledger (format in [`super::store`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self.day {
            Some(day) => {
                out.push(1);
                out.extend_from_slice(&day.0.to_le_bytes());
            }
            None => out.push(0),
        }
        out.push(self.devices.len() as u8);
        for device in &self.devices {
            out.push(device.name.len() as u8);
            out.extend_from_slice(device.name.as_bytes());
            match device.counter {
                Some(c) => {
                    out.push(1);
                    out.extend_from_slice(&c.to_le_bytes());
                }
                None => out.push(0),
            }
            out.extend_from_slice(&device.today.to_le_bytes());
            out.push(device.closed.len() as u8);
            for (day, bytes) in &device.closed {
                out.extend_from_slice(&day.0.to_le_bytes());
                out.extend_from_slice(&bytes.to_le_bytes());
            }
        }
    }

    /// Reads what [`DiskDays::encode`] wrote; all of `bytes` must be used.
    pub fn decode(mut bytes: &[u8]) -> Result<DiskDays, &'static str> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], &'static str> {
            if b.len() < n {
                return Err("truncated");
            }
            let (head, rest) = b.split_at(n);
            *b = rest;
            Ok(head)
        }
        fn u8_(b: &mut &[u8]) -> Result<u8, &'static str> {
            Ok(take(b, 1)?[0])
        }
        fn i32_(b: &mut &[u8]) -> Result<i32, &'static str> {
            Ok(i32::from_le_bytes(take(b, 4)?.try_into().expect("4 bytes")))
        }
        fn u64_(b: &mut &[u8]) -> Result<u64, &'static str> {
            Ok(u64::from_le_bytes(take(b, 8)?.try_into().expect("8 bytes")))
        }
        let b = &mut bytes;
        let day = match u8_(b)? {
            0 => None,
            1 => Some(Day(i32_(b)?)),
            _ => return Err("day flag"),
        };
        let count = usize::from(u8_(b)?);
        if count > MAX_DEVICES {
            return Err("too many devices");
        }
        let mut devices = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::from(u8_(b)?);
            let name = std::str::from_utf8(take(b, len)?).map_err(|_| "device name")?;
            if name.is_empty()
                || name.len() > MAX_NAME
                || devices.iter().any(|d: &Device| d.name == name)
            {
                return Err("device name");
            }
            let counter = match u8_(b)? {
                0 => None,
                1 => Some(u64_(b)?),
                _ => return Err("counter flag"),
            };
            let today = u64_(b)?;
            let days = usize::from(u8_(b)?);
            if days > KEEP_DAYS {
                return Err("too many days");
            }
            let mut closed = VecDeque::with_capacity(days);
            for _ in 0..days {
                let d = Day(i32_(b)?);
                if closed
                    .back()
                    .is_some_and(|(prev, _): &(Day, u64)| *prev >= d)
                    || day.is_none_or(|current| d >= current)
                {
                    return Err("days out of order");
                }
                closed.push_back((d, u64_(b)?));
            }
            devices.push(Device {
                name: name.to_owned(),
                counter,
                today,
                closed,
                seen: 0,
            });
        }
        if !b.is_empty() {
            return Err("trailing bytes");
        }
        Ok(DiskDays {
            day,
            behind_since: None,
            devices,
            readings: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1 << 30;

    /// Day `n` of the tests: from 2027-07-01 on.
    const BASE: i32 = 21_000;

    fn d(n: i32) -> Day {
        Day(BASE + n)
    }

    fn per_day(l: &DiskDays, name: &str) -> Vec<(i32, u64)> {
        l.written(name)
            .unwrap()
            .per_day
            .into_iter()
            .map(|(day, b)| (day.0 - BASE, b))
            .collect()
    }

    #[test]
    fn dates_convert_both_ways() {
        assert_eq!(Day::from_ymd(1970, 1, 1), Day(0));
        assert_eq!(Day::from_ymd(2024, 2, 29).to_string(), "2024-02-29");
        assert_eq!(
            Day(Day::from_ymd(2024, 2, 29).0 + 1).to_string(),
            "2024-03-01"
        );
        assert_eq!(Day(-1).to_string(), "1969-12-31");
        for n in [-800_000, -1, 0, 59, 365, 11_016, 20_000, 2_000_000] {
            let (y, m, dd) = Day(n).ymd();
            assert_eq!(Day::from_ymd(y, m, dd), Day(n), "{n}");
        }
    }

    #[test]
    fn the_local_date_follows_the_time_zone() {
        // The test process's zone is whatever the machine has; UTC midnight ± a day bounds it.
        let noon = UNIX_EPOCH + std::time::Duration::from_secs(20_000 * 86_400 + 43_200);
        let day = Day::local(noon);
        assert!((day.0 - 20_000).abs() <= 1, "{day}");
    }

    #[test]
    fn deltas_accumulate_and_a_new_device_only_sets_its_baseline() {
        let mut l = DiskDays::new();
        l.observe(d(0), [("mmcblk0", 500 * GB)]);
        assert_eq!(
            l.written("mmcblk0").unwrap().today,
            0,
            "writes since boot are not today's"
        );
        l.observe(d(0), [("mmcblk0", 500 * GB + 4096)]);
        l.observe(d(0), [("mmcblk0", 500 * GB + 10_000)]);
        assert_eq!(l.written("mmcblk0").unwrap().today, 10_000);
        assert_eq!(l.written("sda"), None);
    }

    #[test]
    fn a_counter_that_goes_down_starts_again_from_zero() {
        let mut l = DiskDays::new();
        l.observe(d(0), [("sda", 1_000_000)]);
        l.observe(d(0), [("sda", 1_000_100)]);
        // Unplugged and plugged in again: the counter restarted and has counted 300 bytes.
        l.observe(d(0), [("sda", 300)]);
        l.observe(d(0), [("sda", 350)]);
        assert_eq!(l.written("sda").unwrap().today, 100 + 300 + 50);
        // A reboot found after a restore: the next reading counts in full.
        l.counters_restarted();
        l.observe(d(0), [("sda", 20)]);
        assert_eq!(l.written("sda").unwrap().today, 470);
    }

    #[test]
    fn a_new_day_closes_the_old_one_for_every_device() {
        let mut l = DiskDays::new();
        l.observe(d(0), [("mmcblk0", 0), ("sda", 0)]);
        l.observe(d(0), [("mmcblk0", 700), ("sda", 5)]);
        l.observe(d(1), [("mmcblk0", 1000), ("sda", 5)]);
        assert_eq!(per_day(&l, "mmcblk0"), [(0, 700)]);
        assert_eq!(per_day(&l, "sda"), [(0, 5)]);
        assert_eq!(l.written("mmcblk0").unwrap().today, 300);
        assert_eq!(l.day(), Some(d(1)));
    }

    #[test]
    fn a_clock_stepping_back_never_reopens_a_closed_day() {
        let mut l = DiskDays::new();
        l.observe(d(0), [("mmcblk0", 0)]);
        l.observe(d(0), [("mmcblk0", 100)]);
        l.observe(d(1), [("mmcblk0", 150)]);
        // NTP steps the clock back to day 0, then the days go on from there.
        l.observe(d(0), [("mmcblk0", 170)]);
        l.observe(d(-3), [("mmcblk0", 200)]);
        assert_eq!(per_day(&l, "mmcblk0"), [(0, 100)]);
        assert_eq!(l.written("mmcblk0").unwrap().today, 100);
        assert_eq!(l.day(), Some(d(1)));
        l.observe(d(1), [("mmcblk0", 210)]);
        assert_eq!(per_day(&l, "mmcblk0"), [(0, 100)], "day 1 is still open");
        l.observe(d(2), [("mmcblk0", 210)]);
        assert_eq!(per_day(&l, "mmcblk0"), [(0, 100), (1, 110)]);
    }

    #[test]
    fn a_clock_stepping_forward_closes_the_day_and_the_window_keeps_30_days() {
        let mut l = DiskDays::new();
        l.observe(d(0), [("mmcblk0", 0)]);
        for n in 0..40u64 {
            l.observe(d(n as i32), [("mmcblk0", n * 1000 + 7)]);
        }
        let days = per_day(&l, "mmcblk0");
        assert_eq!(days.len(), KEEP_DAYS);
        assert_eq!(days.first(), Some(&(9, 1000)));
        assert_eq!(days.last(), Some(&(38, 1000)));
        // A step of 10 days forward closes day 39; the window is the 30 days before day 49.
        l.observe(d(49), [("mmcblk0", 40_000)]);
        let days = per_day(&l, "mmcblk0");
        assert_eq!(days.first(), Some(&(19, 1000)));
        assert_eq!(days.last(), Some(&(39, 1000)));
        assert_eq!(days.len(), 21);
        assert_eq!(l.written("mmcblk0").unwrap().today, 993);
        // A step of 45 days: everything closed is older than the window.
        l.observe(d(49 + 45), [("mmcblk0", 40_000)]);
        assert_eq!(per_day(&l, "mmcblk0"), []);
        assert_eq!(l.written("mmcblk0").unwrap().today, 0);
    }

    #[test]
    fn the_preview_is_what_the_next_reading_records() {
        let mut l = DiskDays::new();
        l.observe(d(0), [("mmcblk0", 0)]);
        l.observe(d(0), [("mmcblk0", 100)]);
        let mut ahead = l.clone();
        ahead.observe(d(500), [("mmcblk0", 120)]);
        ahead.observe(d(2), [("mmcblk0", 130)]);
        for (day, counter) in [(d(0), 150), (d(1), 180), (d(-1), 5)] {
            let mut next = l.clone();
            next.observe(day, [("mmcblk0", counter)]);
            assert_eq!(
                l.preview("mmcblk0", counter, day),
                next.written("mmcblk0"),
                "{day} {counter}"
            );
        }
        assert_eq!(l.preview("sda", 1, d(0)), None);
        for (day, counter) in [(d(3), 140), (d(4), 150), (d(600), 150)] {
            let mut next = ahead.clone();
            next.observe(day, [("mmcblk0", counter)]);
            assert_eq!(
                ahead.preview("mmcblk0", counter, day),
                next.written("mmcblk0"),
                "{day} {counter}"
            );
        }
    }

    #[test]
    fn a_hot_plug_storm_keeps_at_most_16_devices_and_the_busy_ones() {
        let mut l = DiskDays::new();
        for i in 0..1000u64 {
            let name = format!("sd{i}");
            l.observe(d(0), [("mmcblk0", i * 10), (name.as_str(), 1)]);
        }
        assert_eq!(l.names().count(), MAX_DEVICES);
        assert_eq!(l.written("mmcblk0").unwrap().today, 9990);
        assert!(l.written("sd999").is_some());
        assert!(l.written("sd0").is_none());
        l.observe(d(0), [("", 1), (&"x".repeat(65), 1)]);
        assert_eq!(l.names().count(), MAX_DEVICES);
    }

    /// 16 idle `nbd` devices (what `modprobe nbd` lists) and the SD card: the card is
    /// counted on every reading, and the idle devices do not push each other out.
    #[test]
    fn idle_devices_make_room_for_one_that_writes() {
        let nbd: Vec<String> = (0..16).map(|i| format!("nbd{i}")).collect();
        let mut l = DiskDays::new();
        let reading = |card: u64| {
            let mut r: Vec<(&str, u64)> = nbd.iter().map(|n| (n.as_str(), 0)).collect();
            r.push(("mmcblk0", card));
            r
        };
        for tick in 0..10u64 {
            l.observe(d(0), reading(1_000 + tick * 100));
            assert!(l.written("mmcblk0").is_some(), "tick {tick}");
            assert_eq!(l.names().count(), MAX_DEVICES);
        }
        assert_eq!(l.written("mmcblk0").unwrap().today, 900);
        let kept: Vec<String> = l.names().map(str::to_owned).collect();
        l.observe(d(0), reading(2_000));
        assert_eq!(l.names().collect::<Vec<_>>(), kept, "no turns taken");
        // Sixteen devices that all write: a newcomer is not kept until one of them goes.
        let mut full = DiskDays::new();
        let busy: Vec<(&str, u64)> = nbd.iter().map(|n| (n.as_str(), 7)).collect();
        full.observe(d(0), busy.iter().copied().chain([("sda", 9)]));
        full.observe(d(0), busy.iter().copied().chain([("sda", 9)]));
        assert_eq!(full.written("sda"), None);
        full.observe(d(0), busy[1..].iter().copied());
        full.observe(d(0), busy[1..].iter().copied().chain([("sda", 9)]));
        assert!(full.written("sda").is_some());
        assert_eq!(full.written("nbd0"), None, "gone for two readings");
    }

    /// The clock set to a future date for a while, then right again: after a day back the
    /// ledger leaves the future date, and nothing counted meanwhile is lost.
    #[test]
    fn a_future_date_is_undone_once_the_clock_stays_back_for_a_day() {
        let mut l = DiskDays::new();
        l.observe(d(0), [("mmcblk0", 0)]);
        l.observe(d(0), [("mmcblk0", 100)]);
        // `date -s` with a wrong year: day 0 closes.
        l.observe(d(15_000), [("mmcblk0", 130)]);
        l.observe(d(15_000), [("mmcblk0", 150)]);
        // Back to the right date (day 1) on the same day: still counted on the future one.
        l.observe(d(1), [("mmcblk0", 170)]);
        assert_eq!(l.day(), Some(d(15_000)));
        l.observe(d(2), [("mmcblk0", 200)]);
        assert_eq!(l.day(), Some(d(15_000)), "one midnight is not enough");
        l.observe(d(3), [("mmcblk0", 260)]);
        assert_eq!(l.day(), Some(d(3)));
        assert_eq!(per_day(&l, "mmcblk0"), [(0, 100)]);
        assert_eq!(l.written("mmcblk0").unwrap().today, 160);
        l.observe(d(4), [("mmcblk0", 300)]);
        assert_eq!(per_day(&l, "mmcblk0"), [(0, 100), (3, 160)]);
        // A future day that had closed (the wrong date crossed a midnight) is folded in too.
        let mut l = DiskDays::new();
        l.observe(d(0), [("sda", 0)]);
        l.observe(d(9_000), [("sda", 10)]);
        l.observe(d(9_001), [("sda", 30)]);
        for (day, counter) in [(d(1), 31), (d(2), 32), (d(3), 40)] {
            l.observe(day, [("sda", counter)]);
        }
        assert_eq!(per_day(&l, "sda"), [(0, 0)]);
        assert_eq!(
            l.written("sda").unwrap().today,
            40,
            "all written since day 0"
        );
        assert_eq!(l.day(), Some(d(3)));

        // A Pi without an RTC that boots offline at 1970 (or systemd's build date) and stays
        // so for days: its clock is not taken for right, the real days stay.
        let mut l = DiskDays::new();
        l.observe(d(0), [("mmcblk0", 0)]);
        l.observe(d(1), [("mmcblk0", 500)]);
        for n in 0..5 {
            l.observe(Day(n), [("mmcblk0", 600 + n as u64)]);
        }
        assert_eq!(l.day(), Some(d(1)));
        assert_eq!(per_day(&l, "mmcblk0"), [(0, 0)]);
        assert_eq!(l.written("mmcblk0").unwrap().today, 604);
    }

    /// A wall time past what a 32-bit `time_t` holds still has a date (UTC at worst).
    #[test]
    fn dates_past_2038_do_not_wrap() {
        let secs = 5_000_000_000u64; // 2128
        let day = Day::local(UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert!(
            (i64::from(day.0) - (secs / 86_400) as i64).abs() <= 1,
            "{day}"
        );
    }

    #[test]
    fn encoding_round_trips_and_bad_bytes_are_errors() {
        let mut l = DiskDays::new();
        assert_eq!(DiskDays::decode(&encoded(&l)), Ok(l.clone()));
        l.observe(d(0), [("mmcblk0", 0), ("sda", 9)]);
        l.observe(d(1), [("mmcblk0", 300), ("sda", 9)]);
        l.observe(d(2), [("mmcblk0", 400)]);
        let bytes = encoded(&l);
        let back = DiskDays::decode(&bytes).unwrap();
        assert_eq!(back.written("mmcblk0"), l.written("mmcblk0"));
        assert_eq!(back.written("sda"), l.written("sda"));
        assert_eq!(back.day(), l.day());
        for cut in 0..bytes.len() {
            assert!(DiskDays::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(DiskDays::decode(&longer), Err("trailing bytes"));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0xff;
            let _ = DiskDays::decode(&bad); // never panics
        }
    }

    fn encoded(l: &DiskDays) -> Vec<u8> {
        let mut out = Vec::new();
        l.encode(&mut out);
        out
    }
}
