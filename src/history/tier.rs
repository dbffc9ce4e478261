//! One tier: a ring of rows allocated once, plus (for aggregate tiers) the open bucket.

use super::series::{Series, MISSING};
use super::HistoryView;

/// Running min / sum / max of one series in the open bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Acc {
    pub count: u32,
    pub sum: f64,
    pub min: f32,
    pub max: f32,
}

impl Acc {
    pub const EMPTY: Acc = Acc {
        count: 0,
        sum: 0.0,
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
    };

    fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v as f32);
        self.max = self.max.max(v as f32);
    }

    fn triple(&self) -> [f32; 3] {
        if self.count == 0 {
            [f32::NAN; 3]
        } else {
            [
                self.min,
                (self.sum / f64::from(self.count)) as f32,
                self.max,
            ]
        }
    }
}

#[derive(Debug)]
pub(crate) struct Tier {
    /// 0 for the raw tier (one row per sample), else the bucket length.
    bucket_ms: u64,
    cap: usize,
    width: usize,
    /// Codes per series and row: 1 (raw) or 3 (min, mean, max).
    k: usize,
    /// Next row to write.
    head: usize,
    len: usize,
    /// Timeline position of each row (bucket start for aggregates), ms.
    timeline: Vec<u64>,
    flags: Vec<u8>,
    codes: Vec<u16>,
    /// Bucket number of the open bucket.
    open: Option<u64>,
    open_flags: u8,
    acc: Vec<Acc>,
}

impl Tier {
    pub fn new(bucket_ms: u64, cap: usize, width: usize) -> Tier {
        let k = if bucket_ms == 0 { 1 } else { 3 };
        Tier {
            bucket_ms,
            cap,
            width,
            k,
            head: 0,
            len: 0,
            timeline: vec![0; cap],
            flags: vec![0; cap],
            codes: vec![MISSING; cap * width * k],
            open: None,
            open_flags: 0,
            acc: if bucket_ms == 0 {
                Vec::new()
            } else {
                vec![Acc::EMPTY; width]
            },
        }
    }

    pub fn bucket_ms(&self) -> u64 {
        self.bucket_ms
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn heap_bytes(&self) -> usize {
        self.timeline.capacity() * 8
            + self.flags.capacity()
            + self.codes.capacity() * 2
            + self.acc.capacity() * std::mem::size_of::<Acc>()
    }

    pub fn push(&mut self, timeline: u64, values: &[Option<f64>], flags: Option<u8>) {
        if self.bucket_ms == 0 {
            let row = self.next_row(timeline, flags.unwrap_or(0));
            for (s, v) in values.iter().enumerate() {
                self.codes[row + s] = v.map_or(MISSING, |v| Series::of_column(s).encode(v));
            }
            return;
        }
        let bucket = timeline / self.bucket_ms;
        if self.open != Some(bucket) {
            self.seal();
            self.open = Some(bucket);
        }
        self.open_flags |= flags.unwrap_or(0);
        for (acc, v) in self.acc.iter_mut().zip(values) {
            if let Some(v) = v {
                acc.add(*v);
            }
        }
    }

    /// Moves the open bucket into the ring.
    fn seal(&mut self) {
        let Some(bucket) = self.open.take() else {
            return;
        };
        let row = self.next_row(bucket * self.bucket_ms, self.open_flags);
        for (s, acc) in self.acc.iter_mut().enumerate() {
            let series = Series::of_column(s);
            let codes = &mut self.codes[row + s * 3..row + s * 3 + 3];
            for (code, v) in codes.iter_mut().zip(acc.triple()) {
                *code = series.encode(f64::from(v));
            }
            *acc = Acc::EMPTY;
        }
        self.open_flags = 0;
    }

    /// Claims the next row (evicting the oldest when full); returns its first code's index.
    fn next_row(&mut self, timeline: u64, flags: u8) -> usize {
        let slot = self.head;
        self.head = (self.head + 1) % self.cap;
        self.len = (self.len + 1).min(self.cap);
        self.timeline[slot] = timeline;
        self.flags[slot] = flags;
        slot * self.width * self.k
    }

    fn slot(&self, j: usize) -> usize {
        (self.head + self.cap - self.len + j) % self.cap
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Timeline position of the newest row (the open bucket not included).
    pub fn newest(&self) -> Option<u64> {
        (self.len > 0).then(|| self.timeline[self.slot(self.len - 1)])
    }

    /// Timeline position of the oldest data, open bucket included.
    pub fn oldest(&self) -> Option<u64> {
        if self.len > 0 {
            Some(self.timeline[self.slot(0)])
        } else {
            self.open.map(|b| b * self.bucket_ms)
        }
    }

    /// Appends to `view` the rows (and the open bucket) that end after `from` and before
    /// `until` (where a finer tier's data begins: a bucket reaching past it would repeat it).
    pub fn collect(&self, from: u64, until: u64, view: &mut HistoryView) {
        let span = self.bucket_ms.max(1);
        // Rows are in timeline order: find the first one that ends after `from`.
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.timeline[self.slot(mid)] + span <= from {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for j in lo..self.len {
            let slot = self.slot(j);
            let t = self.timeline[slot];
            if t.saturating_add(span) > until {
                return;
            }
            let base = slot * self.width * self.k;
            let codes = &self.codes[base..base + self.width * self.k];
            let k = self.k;
            view.push_point(
                t,
                self.flags[slot],
                (0..self.width * 3).map(|i| {
                    let (s, m) = (i / 3, i % 3);
                    let code = if k == 1 { codes[s] } else { codes[s * 3 + m] };
                    Series::of_column(s).decode(code)
                }),
            );
        }
        if let Some(bucket) = self.open {
            let t = bucket * self.bucket_ms;
            if t + span > from && t.saturating_add(span) <= until {
                view.push_point(t, self.open_flags, self.acc.iter().flat_map(Acc::triple));
            }
        }
    }

    /// Rows oldest first: timeline, flags, `width × k` codes.
    pub fn rows(&self) -> impl Iterator<Item = (u64, u8, &[u16])> + '_ {
        let n = self.width * self.k;
        (0..self.len).map(move |j| {
            let slot = self.slot(j);
            (
                self.timeline[slot],
                self.flags[slot],
                &self.codes[slot * n..slot * n + n],
            )
        })
    }

    /// Appends a restored row (aggregate tiers: `width × 3` codes).
    pub fn restore_row(&mut self, timeline: u64, flags: u8, codes: &[u16]) {
        let row = self.next_row(timeline, flags);
        let n = self.width * self.k;
        self.codes[row..row + n].copy_from_slice(&codes[..n]);
    }

    pub fn open_bucket(&self) -> Option<(u64, u8, &[Acc])> {
        self.open.map(|b| (b, self.open_flags, &self.acc[..]))
    }

    pub fn clear_open(&mut self) {
        self.open = None;
        self.open_flags = 0;
        self.acc.fill(Acc::EMPTY);
    }

    pub fn restore_open(&mut self, bucket: u64, flags: u8, accs: &[Acc]) {
        self.open = Some(bucket);
        self.open_flags = flags;
        self.acc[..accs.len()].copy_from_slice(accs);
    }
}
