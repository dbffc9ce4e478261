//! One tier: the recent rows in a ring of plain codes, older rows (aggregate tiers) in
//! compressed blocks, plus (aggregate tiers) the open bucket.
//!
//! A tier longer than two blocks keeps a ring of one block's worth of rows ([`BLOCK_ROWS`]);
//! when it is full its rows are compressed into a [`Block`] (see [`block`](super::block) for
//! the coding and why) and the ring starts over. That holds for the raw tier too: an hour of
//! 1-second rows is 3,600 × (8 + 1 + 2 × series) bytes plain (148 KiB with 4 cores), and a
//! Pi's per-second values (whole-percent core loads, a temperature in sensor steps, rates
//! that are mostly 0) code in a few bits each; its timeline steps by the interval, which
//! codes in about nothing. The oldest block
//! is dropped as soon as the rest still covers the retention; rows beyond the newest `keep`
//! (up to `BLOCK_ROWS - 1` of them, in the oldest block) are skipped, so that a compressed tier
//! shows and saves exactly the rows an uncompressed one would.

use std::collections::VecDeque;
use std::sync::Arc;

use super::block::{Block, Decoded, Scratch, BLOCK_ROWS};
use super::series::{Series, MISSING};
use super::shelf::Shelf;
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
    /// Rows kept (the retention); `cap` is the ring's size.
    keep: usize,
    /// Sealed rows older than the ring, oldest first (empty when the ring holds `keep`).
    blocks: VecDeque<Block>,
    block_rows: usize,
    /// Scratch for compressing.
    scratch: Scratch,
    /// The raw tier's last dropped block's buffer, for the next block ([`Block::encode`]).
    spare: Option<Vec<u8>>,
    /// Where sealed blocks go instead of the heap (aggregate tiers with a state directory).
    shelf: Option<Arc<Shelf>>,
}

impl Tier {
    /// A tier keeping `keep` rows. Tiers longer than two blocks compress.
    pub fn new(bucket_ms: u64, keep: usize, width: usize) -> Tier {
        let cap = if keep <= 2 * BLOCK_ROWS {
            keep
        } else {
            BLOCK_ROWS
        };
        Tier::with_ring(bucket_ms, keep, cap, width)
    }

    /// A tier that never compresses (for comparisons in tests).
    #[cfg(test)]
    pub fn plain(bucket_ms: u64, keep: usize, width: usize) -> Tier {
        Tier::with_ring(bucket_ms, keep, keep, width)
    }

    fn with_ring(bucket_ms: u64, keep: usize, cap: usize, width: usize) -> Tier {
        let k = if bucket_ms == 0 { 1 } else { 3 };
        Tier {
            keep,
            blocks: VecDeque::new(),
            block_rows: 0,
            scratch: Scratch::default(),
            spare: None,
            shelf: None,
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

    /// Keeps sealed blocks, those already sealed and those to come, in `shelf`. A tier keeps the
    /// first shelf it is given: its blocks' places are in that file.
    pub fn shelve_in(&mut self, shelf: Arc<Shelf>) {
        if self.shelf.is_some() {
            return;
        }
        for block in &mut self.blocks {
            block.shelve(&shelf);
        }
        self.shelf = Some(shelf);
    }

    /// Whether sealed blocks go to a block file.
    pub fn shelved(&self) -> bool {
        self.shelf.is_some()
    }

    /// Bytes of this tier's blocks in the block file.
    pub fn shelved_bytes(&self) -> usize {
        self.blocks.iter().map(Block::shelved_bytes).sum()
    }

    pub fn heap_bytes(&self) -> usize {
        self.timeline.capacity() * 8
            + self.flags.capacity()
            + self.codes.capacity() * 2
            + self.acc.capacity() * std::mem::size_of::<Acc>()
            + self.blocks.capacity() * std::mem::size_of::<Block>()
            + self.blocks.iter().map(Block::heap_bytes).sum::<usize>()
            + self.scratch.heap_bytes()
            + self.spare.as_ref().map_or(0, Vec::capacity)
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
        if self.cap < self.keep && self.len == self.cap {
            self.compress_ring();
        }
        let slot = self.head;
        self.head = (self.head + 1) % self.cap;
        self.len = (self.len + 1).min(self.cap);
        self.evict_blocks();
        self.timeline[slot] = timeline;
        self.flags[slot] = flags;
        slot * self.width * self.k
    }

    /// Moves the (full) ring into a block and drops blocks the retention no longer needs.
    fn compress_ring(&mut self) {
        // A full ring's oldest row is at `head`: rotate it to the front, then code it.
        let n = self.width * self.k;
        self.timeline.rotate_left(self.head);
        self.flags.rotate_left(self.head);
        self.codes.rotate_left(self.head * n);
        let block = Block::encode(
            &self.timeline,
            &self.flags,
            &self.codes,
            n,
            self.bucket_ms,
            &mut self.scratch,
            // The raw tier drops and makes a block every 256 ticks; the aggregate tiers a few
            // times a day at most, and keep exact-size blocks.
            (self.bucket_ms == 0).then_some(&mut self.spare),
            self.shelf.as_deref(),
        );
        self.block_rows += block.rows;
        self.blocks.push_back(block);
        self.head = 0;
        self.len = 0;
    }

    /// Drops the oldest block once the newer rows alone cover the retention; what remains
    /// beyond it (fewer rows than the oldest block has) is [`hidden`](Tier::hidden).
    fn evict_blocks(&mut self) {
        while let Some(front) = self.blocks.front() {
            if self.block_rows - front.rows + self.len < self.keep {
                break;
            }
            self.block_rows -= front.rows;
            let dropped = self.blocks.pop_front().expect("front exists");
            let buffer = dropped.into_buffer(self.shelf.as_deref());
            if self.bucket_ms == 0 {
                self.spare = buffer;
            }
        }
    }

    /// Decodes one of this tier's blocks; false (and `decoded` empty) when it is shelved and
    /// cannot be read.
    fn decode(&self, block: &Block, decoded: &mut Decoded) -> bool {
        block.decode(
            self.shelf.as_deref(),
            self.width * self.k,
            self.bucket_ms,
            decoded,
        )
    }

    fn slot(&self, j: usize) -> usize {
        (self.head + self.cap - self.len + j) % self.cap
    }

    pub fn len(&self) -> usize {
        (self.block_rows + self.len).min(self.keep)
    }

    /// Rows at the start of the oldest block that are beyond the retention.
    fn hidden(&self) -> usize {
        (self.block_rows + self.len).saturating_sub(self.keep)
    }

    /// Timeline position of the newest row (the open bucket not included).
    pub fn newest(&self) -> Option<u64> {
        if self.len > 0 {
            Some(self.timeline[self.slot(self.len - 1)])
        } else {
            self.blocks.back().map(|b| b.last)
        }
    }

    /// Timeline position of the oldest data, open bucket included.
    pub fn oldest(&self) -> Option<u64> {
        if let Some(block) = self.blocks.front() {
            if self.hidden() == 0 {
                return Some(block.first);
            }
            let mut decoded = Decoded::default();
            if !self.decode(block, &mut decoded) {
                return Some(block.first);
            }
            Some(decoded.timeline[self.hidden()])
        } else if self.len > 0 {
            Some(self.timeline[self.slot(0)])
        } else {
            self.open.map(|b| b * self.bucket_ms)
        }
    }

    /// Appends to `view` the rows (and the open bucket) that end after `from` and before
    /// `until` (where a finer tier's data begins: a bucket reaching past it would repeat it).
    pub fn collect(&self, from: u64, until: u64, view: &mut HistoryView) {
        let span = self.bucket_ms.max(1);
        let n = self.width * self.k;
        let mut decoded = Decoded::default();
        let mut skip = self.hidden();
        for block in &self.blocks {
            let hidden = std::mem::take(&mut skip);
            if block.last + span <= from {
                continue;
            }
            if block.first.saturating_add(span) > until {
                return;
            }
            // A block that cannot be read is left out (logged once by the shelf).
            self.decode(block, &mut decoded);
            for (j, &t) in decoded.timeline.iter().enumerate().skip(hidden) {
                if t + span <= from {
                    continue;
                }
                if t.saturating_add(span) > until {
                    return;
                }
                self.push_row(view, t, decoded.flags[j], &decoded.codes[j * n..j * n + n]);
            }
        }
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
            let base = slot * n;
            self.push_row(view, t, self.flags[slot], &self.codes[base..base + n]);
        }
        if let Some(bucket) = self.open {
            let t = bucket * self.bucket_ms;
            if t + span > from && t.saturating_add(span) <= until {
                let samples = self.acc.iter().map(|a| a.count).max().unwrap_or(0);
                view.push_open_point(
                    t,
                    self.open_flags,
                    samples,
                    self.acc.iter().flat_map(Acc::triple),
                );
            }
        }
    }

    fn push_row(&self, view: &mut HistoryView, t: u64, flags: u8, codes: &[u16]) {
        let k = self.k;
        view.push_point(
            t,
            flags,
            (0..self.width * 3).map(|i| {
                let (s, m) = (i / 3, i % 3);
                let code = if k == 1 { codes[s] } else { codes[s * 3 + m] };
                Series::of_column(s).decode(code)
            }),
        );
    }

    /// Calls `f` with the rows newer than `after` (all when `None`), oldest first: timeline,
    /// flags, `width × k` codes. Only blocks that hold such rows are decoded.
    pub fn for_each_row_after(&self, after: Option<u64>, mut f: impl FnMut(u64, u8, &[u16])) {
        let n = self.width * self.k;
        let new = |t: u64| after.is_none_or(|a| t > a);
        let mut decoded = Decoded::default();
        let mut skip = self.hidden();
        for block in &self.blocks {
            let hidden = std::mem::take(&mut skip);
            if !new(block.last) {
                continue;
            }
            self.decode(block, &mut decoded);
            for (j, &t) in decoded.timeline.iter().enumerate().skip(hidden) {
                if new(t) {
                    f(t, decoded.flags[j], &decoded.codes[j * n..j * n + n]);
                }
            }
        }
        for j in 0..self.len {
            let slot = self.slot(j);
            let t = self.timeline[slot];
            if new(t) {
                f(t, self.flags[slot], &self.codes[slot * n..slot * n + n]);
            }
        }
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
