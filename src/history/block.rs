//! Compression of sealed rows: a block of up to [`BLOCK_ROWS`] rows coded column by column.
//!
//! Each column (the timelines, the throttle flags, then every code of the row) is turned into
//! small unsigned numbers by a predictor and written with a Rice code whose parameter is chosen
//! per block and column (the cheapest, found by stepping from log₂ of the mean):
//!
//! - timelines: the change of the step between rows (aggregate rows are one bucket apart, so
//!   almost always 0);
//! - flags: the first row's whole, then XOR with the previous row (0 while nothing changes);
//! - codes: each column is first, when cheaper (a bit says so), replaced by its distance to
//!   the row's previous code: of an aggregate's min / mean / max, the mean's distance to the
//!   minimum and the maximum's to the mean, which follow each other and cancel much of a
//!   level's movement. Then the cheapest of three kinds (two bits) turns it into numbers:
//!   - delta: the difference to the previous row as a wrapping 16-bit number, zigzag-mapped,
//!     so that a series that barely moves costs a few bits and a constant one nothing;
//!   - around: the distance to a 16-bit level near the block's mean, since a difference
//!     carries the noise of two samples and a distance only one's;
//!   - two-level: one bit a row for "at the column's most frequent value", and the other rows'
//!     distances to a level near their mean. A rate that flips between 0 and a few hundred
//!     bytes a second, or a core's per-minute maximum that is either idle or a spike, costs
//!     about a bit on the common level instead of an escape or a wide parameter.
//!
//!   In every kind, distances that share a divisor (whole-percent core loads are multiples of
//!   100 codes) are divided by it (a bit, and 16 bits when it is not 1).
//!
//! A column whose numbers are all 0 costs only its 7-bit Rice header (plus its column header,
//! about 20 bits); one that is 0 but for a few rows is written as those rows (8 bits each)
//! and their values when that is cheaper than a bit a row; a number too large for its Rice parameter is escaped (a run of [`ESCAPE`]
//! ones and the raw value); since the parameter can be as large as 15, a column of pure noise
//! costs at most 17 bits per 16-bit code. Decoding is the exact inverse: the codes that come
//! out are the codes that went in. The coding lives only in memory: the state file stores the
//! rows' plain codes ([`store`](super::store)), so it can change without a format version.
//!
//! Why this and not XOR coding of floats (Gorilla): the values are already 16-bit codes on a
//! fixed step (see [`Series`](super::Series)), so their differences are small integers; on the
//! benchmark's year of history, differences + Rice take about a quarter of the raw size (25
//! bytes a row instead of 105), where byte-aligned varints cannot go below one byte per value
//! (half the raw size).

use super::shelf::{Shelf, Slot};

/// Rows per sealed block: large enough that the per-column headers (7 bits) are noise, small
/// enough that decoding one for a query is cheap and that retention overshoots by little.
pub(crate) const BLOCK_ROWS: usize = 256;

/// Unary run length that marks an escaped (raw) value.
const ESCAPE: u32 = 24;

/// Column header meaning "every number is 0".
const ZERO_COLUMN: u64 = 0x7f;

/// Column header meaning "the numbers that are not 0, each with its row".
const SPARSE_COLUMN: u64 = 0x7e;

/// One block of sealed rows.
#[derive(Debug)]
pub(crate) struct Block {
    /// Timeline of the first and last row.
    pub first: u64,
    pub last: u64,
    pub rows: usize,
    stored: Stored,
}

/// Where a block's coded bytes are.
#[derive(Debug)]
enum Stored {
    /// Exactly the coded bytes, or (a recycled buffer, [`Block::encode`]) at most 1/16 more.
    Heap(Vec<u8>),
    /// In the aggregate tiers' block file ([`Shelf`]).
    Shelf(Slot),
}

/// Buffers reused from one block to the next while compressing.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    numbers: Vec<u64>,
    /// One column (after the relative step), a sorted copy, and which rows are at its level.
    ys: Vec<u16>,
    sorted: Vec<u16>,
    level: Vec<bool>,
    bytes: Vec<u8>,
}

impl Scratch {
    pub fn heap_bytes(&self) -> usize {
        self.numbers.capacity() * 8
            + (self.ys.capacity() + self.sorted.capacity()) * 2
            + self.level.capacity()
            + self.bytes.capacity()
    }
}

/// Rows of a decoded block, row-major codes (`n` per row).
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub timeline: Vec<u64>,
    pub flags: Vec<u8>,
    pub codes: Vec<u16>,
    /// One column while it is decoded, and which rows are at its level.
    ys: Vec<u16>,
    level: Vec<bool>,
    /// A shelved block's bytes while it is decoded.
    bytes: Vec<u8>,
}

impl Block {
    pub fn heap_bytes(&self) -> usize {
        match &self.stored {
            Stored::Heap(bytes) => bytes.capacity(),
            Stored::Shelf(_) => 0,
        }
    }

    /// Bytes of a shelved block in the block file.
    pub fn shelved_bytes(&self) -> usize {
        match &self.stored {
            Stored::Heap(_) => 0,
            Stored::Shelf(slot) => slot.len(),
        }
    }

    /// Moves the coded bytes to `shelf`, freeing them on the heap; they stay when it cannot
    /// take them (logged by the shelf).
    pub fn shelve(&mut self, shelf: &Shelf) {
        if let Stored::Heap(bytes) = &self.stored {
            if let Some(slot) = shelf.put(bytes) {
                self.stored = Stored::Shelf(slot);
            }
        }
    }

    /// Gives a dropped block's bytes back: a heap buffer for [`Block::encode`] to reuse, or the
    /// block file's range to `shelf`.
    pub fn into_buffer(self, shelf: Option<&Shelf>) -> Option<Vec<u8>> {
        match self.stored {
            Stored::Heap(bytes) => Some(bytes),
            Stored::Shelf(slot) => {
                if let Some(shelf) = shelf {
                    shelf.release(slot);
                }
                None
            }
        }
    }

    /// Codes `rows` rows (`codes` row-major, `n` per row; `span` = the expected step between
    /// timelines). `scratch` is reused between calls. With `recycle` (a dropped block's buffer,
    /// [`Block::into_buffer`]) the bytes go into that buffer when they fit, and a new buffer
    /// gets 1/16 spare room so that the next block of about the same size fits in it: a tier
    /// that drops and makes a block every few minutes (the raw one) then allocates nothing,
    /// where a fresh allocation each time leaves holes between the long-lived blocks. Without,
    /// the buffer is exactly the size. With `shelf` the bytes go to the block file instead,
    /// when it takes them.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        timeline: &[u64],
        flags: &[u8],
        codes: &[u16],
        n: usize,
        span: u64,
        scratch: &mut Scratch,
        recycle: Option<&mut Option<Vec<u8>>>,
        shelf: Option<&Shelf>,
    ) -> Block {
        let rows = timeline.len();
        debug_assert!(rows > 0 && flags.len() == rows && codes.len() == rows * n);
        let Scratch {
            numbers,
            ys,
            sorted,
            level,
            bytes,
        } = scratch;
        bytes.clear();
        let mut w = BitWriter {
            out: bytes,
            acc: 0,
            held: 0,
        };
        numbers.clear();
        let mut step = span;
        let mut prev = timeline[0];
        for &t in &timeline[1..] {
            let d = t.wrapping_sub(prev);
            numbers.push(zigzag64(d.wrapping_sub(step) as i64));
            step = d;
            prev = t;
        }
        w.column(numbers, 64);
        // The first row's flags whole, then changes: a column that never changes is all 0.
        numbers.clear();
        w.put(u64::from(flags[0]), 8);
        numbers.extend(flags.windows(2).map(|f| u64::from(f[1] ^ f[0])));
        w.column(numbers, 8);
        for c in 0..n {
            // The cheapest of: the column itself or its distance to the row's previous code (a
            // mean's to its minimum, a maximum's to its mean), each in every kind.
            let mut best = None;
            for relative in [false, true] {
                if relative && c == 0 {
                    continue;
                }
                relative_column(codes, n, c, relative, ys);
                for kind in [Kind::Delta, Kind::Around, Kind::TwoLevel] {
                    let plan = prepare(ys, relative, kind, sorted, numbers, level);
                    let bits = plan.header_bits(rows) + column_cost(numbers, 16);
                    if best.is_none_or(|(_, b)| bits < b) {
                        best = Some((plan, bits));
                    }
                }
            }
            let (plan, _) = best.expect("at least one candidate");
            relative_column(codes, n, c, plan.relative, ys);
            prepare(ys, plan.relative, plan.kind, sorted, numbers, level);
            w.put(u64::from(plan.relative), 1);
            w.put(plan.kind as u64, 2);
            if plan.g > 1 {
                w.put(1, 1);
                w.put(u64::from(plan.g), 16);
            } else {
                w.put(0, 1);
            }
            w.put(u64::from(plan.anchor), 16);
            if plan.kind == Kind::TwoLevel {
                w.put(u64::from(plan.z), 16);
                for &at_level in level.iter() {
                    w.put(u64::from(at_level), 1);
                }
            }
            w.column(numbers, 16);
        }
        w.finish();
        if let Some(slot) = shelf.and_then(|shelf| shelf.put(bytes)) {
            return Block {
                first: timeline[0],
                last: timeline[rows - 1],
                rows,
                stored: Stored::Shelf(slot),
            };
        }
        Block {
            first: timeline[0],
            last: timeline[rows - 1],
            rows,
            stored: Stored::Heap(match recycle {
                // One allocation of the exact size: blocks live long, so no slack and no holes.
                None => bytes.to_vec(),
                Some(spare) => match spare.take() {
                    Some(mut buffer) if buffer.capacity() >= bytes.len() => {
                        buffer.clear();
                        buffer.extend_from_slice(bytes);
                        buffer
                    }
                    _ => {
                        let mut buffer = Vec::with_capacity(bytes.len() + bytes.len() / 16);
                        buffer.extend_from_slice(bytes);
                        buffer
                    }
                },
            }),
        }
    }

    /// Decodes into `out` (cleared first); `n` and `span` as given to [`Block::encode`]. A
    /// shelved block is read from `shelf` first: false when it cannot be (logged by the shelf;
    /// `out` is then empty).
    pub fn decode(&self, shelf: Option<&Shelf>, n: usize, span: u64, out: &mut Decoded) -> bool {
        let mut bytes = std::mem::take(&mut out.bytes);
        let read = match &self.stored {
            Stored::Heap(heap) => {
                self.decode_bytes(heap, n, span, out);
                true
            }
            Stored::Shelf(slot) => match shelf {
                Some(shelf) if shelf.get(slot, &mut bytes) => {
                    self.decode_bytes(&bytes, n, span, out);
                    true
                }
                _ => {
                    out.timeline.clear();
                    out.flags.clear();
                    out.codes.clear();
                    false
                }
            },
        };
        out.bytes = bytes;
        read
    }

    fn decode_bytes(&self, bytes: &[u8], n: usize, span: u64, out: &mut Decoded) {
        let rows = self.rows;
        let mut r = BitReader::new(bytes);
        out.timeline.clear();
        out.timeline.push(self.first);
        let (mut step, mut prev) = (span, self.first);
        r.column(rows - 1, 64, |z| {
            step = step.wrapping_add(unzigzag64(z) as u64);
            prev = prev.wrapping_add(step);
            out.timeline.push(prev);
        });
        out.flags.clear();
        let mut prev = r.get(8) as u8;
        out.flags.push(prev);
        r.column(rows - 1, 8, |x| {
            prev ^= x as u8;
            out.flags.push(prev);
        });
        out.codes.clear();
        out.codes.resize(rows * n, 0);
        let Decoded {
            codes, ys, level, ..
        } = out;
        for c in 0..n {
            let relative = r.get(1) == 1;
            let kind = r.get(2);
            let g = if r.get(1) == 1 { r.get(16) as u16 } else { 1 };
            let anchor = r.get(16) as u16;
            let step = |z: u64| g.wrapping_mul(unzigzag16(z as u16) as u16);
            ys.clear();
            match kind {
                0 => {
                    let mut prev = anchor;
                    ys.push(prev);
                    r.column(rows - 1, 16, |z| {
                        prev = prev.wrapping_add(step(z));
                        ys.push(prev);
                    });
                }
                2 => {
                    let z = r.get(16) as u16;
                    level.clear();
                    level.extend((0..rows).map(|_| r.get(1) == 1));
                    let others = level.iter().filter(|&&l| !l).count();
                    ys.resize(rows, z);
                    let mut at = 0;
                    r.column(others, 16, |q| {
                        while level[at] {
                            at += 1;
                        }
                        ys[at] = anchor.wrapping_add(step(q));
                        at += 1;
                    });
                }
                _ => r.column(rows, 16, |z| ys.push(anchor.wrapping_add(step(z)))),
            }
            let mut at = c;
            for &y in ys.iter() {
                codes[at] = if relative {
                    y.wrapping_add(codes[at - 1])
                } else {
                    y
                };
                at += n;
            }
        }
    }
}

/// How a code column is turned into numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The change from the previous row (after the first, written whole).
    Delta = 0,
    /// The distance to a level near the column's mean.
    Around = 1,
    /// One bit a row for "at the column's most frequent value", the other rows as distances
    /// to a level near their mean: a rate that flips between 0 and a packet's worth.
    TwoLevel = 2,
}

/// A code column's header: what [`prepare`] chose and the decoder needs.
#[derive(Debug, Clone, Copy)]
struct Plan {
    relative: bool,
    kind: Kind,
    /// Every distance is a multiple of this (whole percents are multiples of 100 codes).
    g: u16,
    /// The first row (delta) or the level distances are taken from.
    anchor: u16,
    /// The most frequent value (two-level).
    z: u16,
}

impl Plan {
    fn header_bits(&self, rows: usize) -> u64 {
        let g = if self.g > 1 { 17 } else { 1 };
        let two = if self.kind == Kind::TwoLevel {
            16 + rows as u64
        } else {
            0
        };
        3 + g + 16 + two
    }
}

/// Column `c` of row-major `codes`, or (`relative`) its distance to column `c - 1`, into `ys`.
fn relative_column(codes: &[u16], n: usize, c: usize, relative: bool, ys: &mut Vec<u16>) {
    ys.clear();
    ys.extend(codes.chunks_exact(n).map(|row| {
        if relative {
            row[c].wrapping_sub(row[c - 1])
        } else {
            row[c]
        }
    }));
}

/// Greatest common divisor of the distances (1 when all are 0).
fn divisor(distances: impl Iterator<Item = i32>) -> u16 {
    let mut g = 0u32;
    for d in distances {
        let (mut a, mut b) = (g, d.unsigned_abs());
        while b != 0 {
            (a, b) = (b, a % b);
        }
        g = a;
    }
    // Distances are 16-bit, so g ≤ 32768.
    g.max(1) as u16
}

/// The number for distance `d` (a multiple of `g`).
fn scaled(d: i16, g: u16) -> u64 {
    u64::from(zigzag16((i32::from(d) / i32::from(g)) as i16))
}

/// Numbers for `ys` coded as `kind` (into `numbers`; `level` for two-level) and the header.
fn prepare(
    ys: &[u16],
    relative: bool,
    kind: Kind,
    sorted: &mut Vec<u16>,
    numbers: &mut Vec<u64>,
    level: &mut Vec<bool>,
) -> Plan {
    numbers.clear();
    let mut plan = Plan {
        relative,
        kind,
        g: 1,
        anchor: 0,
        z: 0,
    };
    match kind {
        Kind::Delta => {
            let distance = |w: &[u16]| w[1].wrapping_sub(w[0]) as i16;
            plan.anchor = ys[0];
            plan.g = divisor(ys.windows(2).map(|w| i32::from(distance(w))));
            numbers.extend(ys.windows(2).map(|w| scaled(distance(w), plan.g)));
        }
        Kind::Around => (plan.anchor, plan.g) = around(ys, None, numbers),
        Kind::TwoLevel => {
            sorted.clear();
            sorted.extend_from_slice(ys);
            sorted.sort_unstable();
            let (mut z, mut most, mut run) = (sorted[0], 0, 0);
            for (i, &v) in sorted.iter().enumerate() {
                run = if i > 0 && sorted[i - 1] == v {
                    run + 1
                } else {
                    1
                };
                if run > most {
                    (z, most) = (v, run);
                }
            }
            plan.z = z;
            level.clear();
            level.extend(ys.iter().map(|&y| y == z));
            (plan.anchor, plan.g) = around(ys, Some(z), numbers);
        }
    }
    plan
}

/// Distances of `ys` (but `skip`) to a level near their mean, as numbers; the level and the
/// distances' common divisor. The level is moved onto the values' grid (a multiple of the
/// divisor away from them), so that the divisor survives.
fn around(ys: &[u16], skip: Option<u16>, numbers: &mut Vec<u64>) -> (u16, u16) {
    let values = || ys.iter().copied().filter(move |&y| Some(y) != skip);
    let Some(first) = values().next() else {
        return (0, 1);
    };
    let (count, sum) = values().fold((0u64, 0u64), |(n, s), y| (n + 1, s + u64::from(y)));
    let grid = divisor(values().map(|y| i32::from(y.wrapping_sub(first) as i16)));
    let mean = (sum / count) as u16;
    let off = f64::from(mean.wrapping_sub(first) as i16) / f64::from(grid);
    let base = first.wrapping_add((off.round() as i32 * i32::from(grid)) as u16);
    let g = divisor(values().map(|y| i32::from(y.wrapping_sub(base) as i16)));
    numbers.extend(values().map(|y| scaled(y.wrapping_sub(base) as i16, g)));
    (base, g)
}

fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag64(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

fn zigzag16(v: i16) -> u16 {
    ((v << 1) ^ (v >> 15)) as u16
}

fn unzigzag16(z: u16) -> i16 {
    ((z >> 1) as i16) ^ -((z & 1) as i16)
}

/// Bits one number costs with Rice parameter `k` (`bits` = its raw width).
fn cost(v: u64, k: u32, bits: u32) -> u64 {
    let q = v >> k;
    if q < u64::from(ESCAPE) {
        q + 1 + u64::from(k)
    } else {
        u64::from(ESCAPE + bits)
    }
}

/// Bits [`BitWriter::column`] spends on `numbers`.
fn column_cost(numbers: &[u64], bits: u32) -> u64 {
    match column_coding(numbers, bits) {
        Coding::Zero => 7,
        Coding::Sparse(count) => 7 + sparse_cost(count, bits),
        Coding::Rice(_, cost) => 7 + cost,
    }
}

/// How a column of numbers is written.
enum Coding {
    /// All 0.
    Zero,
    /// This many are not 0: each as its row (8 bits) and its raw value.
    Sparse(usize),
    /// Rice parameter and the bits it costs.
    Rice(u32, u64),
}

/// Bits of a sparse column with `count` numbers that are not 0.
fn sparse_cost(count: usize, bits: u32) -> u64 {
    9 + count as u64 * u64::from(8 + bits)
}

/// The cheaper of Rice and sparse: a column that is 0 but for a few rows (a series that
/// steps once in a block, a flag set for a bucket) costs per change instead of a bit a row.
fn column_coding(numbers: &[u64], bits: u32) -> Coding {
    let Some((k, cost)) = rice_parameter(numbers, bits) else {
        return Coding::Zero;
    };
    let count = numbers.iter().filter(|&&v| v != 0).count();
    if sparse_cost(count, bits) < cost {
        Coding::Sparse(count)
    } else {
        Coding::Rice(k, cost)
    }
}

// Rows of a sparse column are written in 8 bits, their count in 9.
const _: () = assert!(BLOCK_ROWS <= 256);

/// The Rice parameter for `numbers` and the bits they cost with it; `None` when all are 0.
///
/// The cost falls and then rises with the parameter, but for the escapes: a column of mostly
/// zeros with a few large jumps (a rate flipping between 0 and a packet's worth) has a second
/// minimum at 0, where the zeros cost a bit each and the jumps are escaped. So the search steps
/// downhill from log₂ of the numbers' mean, and 0 is tried too: a few passes over the column
/// instead of one per possible parameter (16 for codes), which matters for the raw tier, coded
/// every 256 ticks.
fn rice_parameter(numbers: &[u64], bits: u32) -> Option<(u32, u64)> {
    if numbers.iter().all(|&v| v == 0) {
        return None;
    }
    let total = |k: u32| numbers.iter().map(|&v| cost(v, k, bits)).sum::<u64>();
    let descend = |mut k: u32| {
        let mut best = total(k);
        let mut moved = false;
        while k > 0 {
            let down = total(k - 1);
            if down >= best {
                break;
            }
            (k, best, moved) = (k - 1, down, true);
        }
        if !moved {
            while k + 1 < bits {
                let up = total(k + 1);
                if up >= best {
                    break;
                }
                (k, best) = (k + 1, up);
            }
        }
        (k, best)
    };
    let mean = numbers.iter().map(|&v| u128::from(v)).sum::<u128>() / numbers.len() as u128;
    let from_mean = descend((128 - mean.leading_zeros()).min(bits - 1));
    let zero = total(0);
    Some(if zero < from_mean.1 {
        (0, zero)
    } else {
        from_mean
    })
}

struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    /// Bits held in `acc` (< 8 between calls).
    held: u32,
}

impl BitWriter<'_> {
    /// Writes the low `count` (≤ 57) bits of `v`.
    fn put(&mut self, v: u64, count: u32) {
        debug_assert!(count <= 57);
        if count == 0 {
            return;
        }
        self.acc |= (v & ((1u64 << count) - 1)) << self.held;
        self.held += count;
        while self.held >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.held -= 8;
        }
    }

    fn put_wide(&mut self, v: u64, count: u32) {
        if count > 32 {
            self.put(v, 32);
            self.put(v >> 32, count - 32);
        } else {
            self.put(v, count);
        }
    }

    /// A header (7 bits: the Rice parameter, or [`ZERO_COLUMN`]) and the numbers.
    fn column(&mut self, numbers: &[u64], bits: u32) {
        let k = match column_coding(numbers, bits) {
            Coding::Zero => {
                self.put(ZERO_COLUMN, 7);
                return;
            }
            Coding::Sparse(count) => {
                self.put(SPARSE_COLUMN, 7);
                self.put(count as u64, 9);
                for (row, &v) in numbers.iter().enumerate().filter(|(_, &v)| v != 0) {
                    self.put(row as u64, 8);
                    self.put_wide(v, bits);
                }
                return;
            }
            Coding::Rice(k, _) => k,
        };
        self.put(u64::from(k), 7);
        for &v in numbers {
            let q = v >> k;
            if q < u64::from(ESCAPE) {
                // q ones and a zero (q < ESCAPE, so this fits one call).
                let q = q as u32;
                self.put((1u64 << q) - 1, q + 1);
                self.put_wide(v, k);
            } else {
                self.put((1u64 << ESCAPE) - 1, ESCAPE);
                self.put_wide(v, bits);
            }
        }
    }

    fn finish(self) {
        if self.held > 0 {
            self.out.push(self.acc as u8);
        }
    }
}

/// Reads bits least significant first through a 64-bit window.
struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next byte to load into `acc`.
    next: usize,
    acc: u64,
    /// Valid bits in `acc`.
    held: u32,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            next: 0,
            acc: 0,
            held: 0,
        }
    }

    /// Tops the window up to at least 57 bits (past the end reads zeros: blocks are only
    /// decoded from what `encode` wrote).
    fn refill(&mut self) {
        while self.held <= 56 {
            let byte = self.bytes.get(self.next).copied().unwrap_or(0);
            self.acc |= u64::from(byte) << self.held;
            self.next += 1;
            self.held += 8;
        }
    }

    /// Reads `count` (≤ 64) bits.
    fn get(&mut self, count: u32) -> u64 {
        if count > 32 {
            let low = self.get(32);
            return low | (self.get(count - 32) << 32);
        }
        if count == 0 {
            return 0;
        }
        if self.held < count {
            self.refill();
        }
        let v = self.acc & ((1u64 << count) - 1);
        self.acc >>= count;
        self.held -= count;
        v
    }

    /// Counts ones up to [`ESCAPE`], consuming them and the zero that ends a shorter run.
    fn unary(&mut self) -> u32 {
        if self.held < ESCAPE + 1 {
            self.refill();
        }
        let q = self.acc.trailing_ones().min(ESCAPE);
        let used = if q == ESCAPE { q } else { q + 1 };
        self.acc >>= used;
        self.held -= used;
        q
    }

    fn column(&mut self, rows: usize, bits: u32, mut each: impl FnMut(u64)) {
        let k = self.get(7);
        if k == ZERO_COLUMN {
            (0..rows).for_each(|_| each(0));
            return;
        }
        if k == SPARSE_COLUMN {
            let mut at = 0;
            for _ in 0..self.get(9) {
                let row = self.get(8) as usize;
                (at..row).for_each(|_| each(0));
                each(self.get(bits));
                at = row + 1;
            }
            (at..rows).for_each(|_| each(0));
            return;
        }
        let k = k as u32;
        for _ in 0..rows {
            let q = self.unary();
            if q == ESCAPE {
                each(self.get(bits));
            } else {
                each((u64::from(q) << k) | self.get(k));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One column's shape: the kinds of series the codings are chosen for, and their edges.
    fn column(rows: usize) -> impl Strategy<Value = Vec<u16>> {
        prop_oneof![
            any::<u16>().prop_map(move |c| vec![c; rows]),
            proptest::collection::vec(any::<u16>(), rows),
            (
                any::<u16>(),
                any::<u16>(),
                proptest::collection::vec(any::<bool>(), rows)
            )
                .prop_map(|(a, b, pick)| pick.iter().map(|&p| if p { a } else { b }).collect()),
            proptest::collection::vec(prop_oneof![9 => Just(0u16), 1 => any::<u16>()], rows),
            (1u16..2000, proptest::collection::vec(0u16..32, rows))
                .prop_map(|(k, m)| m.iter().map(|&m| m.wrapping_mul(k)).collect()),
            proptest::collection::vec(prop_oneof![Just(0u16), Just(u16::MAX), Just(0x8000)], rows),
            (any::<u16>(), proptest::collection::vec(-3i32..=3, rows)).prop_map(
                |(start, steps)| {
                    let mut v = start;
                    steps
                        .iter()
                        .map(|&d| {
                            v = v.wrapping_add(d as u16);
                            v
                        })
                        .collect()
                }
            ),
        ]
    }

    fn block_input() -> impl Strategy<Value = (Vec<u64>, Vec<u8>, Vec<u16>, usize, u64)> {
        (1..=BLOCK_ROWS, 1usize..=9, prop_oneof![Just(1_000u64), Just(60_000), Just(900_000)])
            .prop_flat_map(|(rows, n, span)| {
                (
                    proptest::collection::vec(prop_oneof![8 => Just(1u64), 1 => 0u64..5, 1 => any::<u32>().prop_map(u64::from)], rows),
                    proptest::collection::vec(prop_oneof![8 => Just(0u8), 2 => any::<u8>()], rows),
                    proptest::collection::vec(column(rows), n),
                    Just(n),
                    Just(span),
                )
            })
            .prop_map(|(gaps, flags, columns, n, span)| {
                let mut t = 1_700_000_000_000u64;
                let timeline = gaps
                    .iter()
                    .map(|&g| {
                        t += g * span;
                        t
                    })
                    .collect();
                let rows = flags.len();
                let codes = (0..rows)
                    .flat_map(|r| columns.iter().map(move |c| c[r]))
                    .collect();
                (timeline, flags, codes, n, span)
            })
    }

    proptest! {
        /// Whatever the columns look like, a block decodes to exactly what went in.
        #[test]
        fn any_block_decodes_to_what_was_encoded((timeline, flags, codes, n, span) in block_input()) {
            roundtrip(&timeline, &flags, &codes, n, span);
        }
    }

    fn roundtrip(timeline: &[u64], flags: &[u8], codes: &[u16], n: usize, span: u64) -> usize {
        let mut scratch = Scratch::default();
        let block = Block::encode(timeline, flags, codes, n, span, &mut scratch, None, None);
        let mut out = Decoded::default();
        assert!(block.decode(None, n, span, &mut out));
        assert_eq!(out.timeline, timeline);
        assert_eq!(out.flags, flags);
        assert_eq!(out.codes, codes);
        block.heap_bytes()
    }

    #[test]
    fn blocks_decode_to_exactly_what_was_encoded() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            seed >> 33
        };
        for rows in [1, 2, 17, BLOCK_ROWS] {
            let n = 5;
            let mut timeline = Vec::new();
            let mut t = 1_700_000_000_000u64;
            for i in 0..rows {
                // Mostly one bucket apart, sometimes a gap (a restart) or a jump back in width.
                t += if i % 50 == 49 {
                    60_000 * (next() % 1000)
                } else {
                    60_000
                };
                timeline.push(t);
            }
            let flags: Vec<u8> = (0..rows)
                .map(|i| if i % 7 == 0 { 0x85 } else { 0x80 })
                .collect();
            let mut codes = Vec::new();
            for i in 0..rows {
                codes.push(3000 + (next() % 40) as u16); // noisy
                codes.push(u16::MAX); // missing throughout
                codes.push(if i % 3 == 0 { u16::MAX } else { 12 }); // appears and disappears
                codes.push(next() as u16); // white noise over the full range
                codes.push(0); // constant
            }
            roundtrip(&timeline, &flags, &codes, n, 60_000);
        }
    }

    #[test]
    fn grids_levels_and_relative_columns_decode_exactly() {
        let mut seed = 3u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            seed >> 33
        };
        for rows in [1, 2, 3, 100, BLOCK_ROWS] {
            let n = 9;
            let timeline: Vec<u64> = (0..rows as u64).map(|i| i * 60_000).collect();
            let flags = vec![0x80; rows];
            let mut codes = Vec::new();
            for i in 0..rows {
                // A min / mean / max triple of whole percents (multiples of 100 codes).
                let min = (next() % 3) as u16 * 100;
                let max = min + (next() % 30) as u16 * 100;
                codes.extend([min, min + (next() % 700) as u16, max]);
                // A rate flipping between 0 and a packet's worth (bfloat16-like codes).
                codes.push(if next() % 3 == 0 {
                    0
                } else {
                    17_000 + (next() % 500) as u16
                });
                // Extremes that wrap: 0, 65535 and 32768 apart.
                codes.push([0, u16::MAX, 32_768, 32_767][(next() % 4) as usize]);
                codes.push(if i % 2 == 0 { 0 } else { 32_768 });
                // A grid of 7 with noise on it, and one on an odd grid around a far level.
                codes.push(7 * (next() % 9000) as u16);
                codes.push(65_000u16.wrapping_add(13 * (next() % 40) as u16));
                // Missing, then present.
                codes.push(if i < rows / 2 {
                    crate::history::series::MISSING
                } else {
                    4242
                });
            }
            roundtrip(&timeline, &flags, &codes, n, 60_000);
        }
    }

    #[test]
    fn two_level_and_whole_percent_columns_cost_less_than_their_spread() {
        let rows = BLOCK_ROWS;
        let timeline: Vec<u64> = (0..rows as u64).map(|i| i * 1000).collect();
        let flags = vec![0x80; rows];
        let mut seed = 5u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            seed >> 33
        };
        // 0 two times in three, else one of 512 codes: about 1 + 9 / 3 bits a row.
        let flipping: Vec<u16> = (0..rows)
            .map(|_| {
                if next() % 3 != 0 {
                    0
                } else {
                    17_000 + (next() % 512) as u16
                }
            })
            .collect();
        let size = roundtrip(&timeline, &flags, &flipping, 1, 1000);
        assert!(size * 8 < rows * 5, "{size} bytes for a flipping rate");
        // Whole percents 0–29: 5 bits a row, not the 12 of their spread in codes.
        let percents: Vec<u16> = (0..rows).map(|_| (next() % 30) as u16 * 100).collect();
        let size = roundtrip(&timeline, &flags, &percents, 1, 1000);
        assert!(size * 8 < rows * 7, "{size} bytes for whole percents");
    }

    #[test]
    fn a_column_that_steps_once_costs_its_step_not_a_bit_a_row() {
        let rows = BLOCK_ROWS;
        let timeline: Vec<u64> = (0..rows as u64).map(|i| i * 900_000).collect();
        // Flags set for one bucket; a series that steps up once and a wide jump back.
        let flags: Vec<u8> = (0..rows)
            .map(|i| if i == 40 { 0x85 } else { 0x80 })
            .collect();
        let codes: Vec<u16> = (0..rows)
            .flat_map(|i| {
                [
                    if i < 100 { 3750 } else { 3751 },
                    if (10..20).contains(&i) { 60_000 } else { 0 },
                ]
            })
            .collect();
        let size = roundtrip(&timeline, &flags, &codes, 2, 900_000);
        assert!(size < 40, "{size} bytes for two steps and a flag");
        // Every row a multiple of 255 apart from the first and the last: sparse at both ends.
        let mut ends = vec![0u16; rows];
        ends[0] = u16::MAX;
        ends[rows - 1] = 1;
        roundtrip(&timeline, &flags, &ends, 1, 900_000);
    }

    #[test]
    fn slowly_moving_columns_cost_a_few_bits_and_noise_is_bounded() {
        let rows = BLOCK_ROWS;
        let timeline: Vec<u64> = (0..rows as u64).map(|i| i * 900_000).collect();
        let flags = vec![0x80; rows];
        let calm: Vec<u16> = (0..rows).map(|i| 4000 + (i % 4) as u16).collect();
        let size = roundtrip(&timeline, &flags, &calm, 1, 900_000);
        assert!(
            size < rows,
            "{size} bytes for a calm column (raw: {})",
            rows * 2
        );
        let mut seed = 1u64;
        let noise: Vec<u16> = (0..rows)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (seed >> 48) as u16
            })
            .collect();
        let size = roundtrip(&timeline, &flags, &noise, 1, 900_000);
        assert!(size < rows * 2 * 14 / 10, "{size} bytes for noise");
    }

    #[test]
    fn the_stepped_rice_parameter_costs_what_trying_all_would() {
        let mut seed = 11u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            seed >> 33
        };
        let columns: Vec<Vec<u64>> = vec![
            (0..256).map(|_| next() % 4).collect(),
            (0..256).map(|_| next() % 3000).collect(),
            (0..256).map(|_| next() % 65_536).collect(),
            // Mostly zero with a few large jumps (a rate flipping between 0 and a packet).
            (0..256)
                .map(|i| {
                    if i % 9 == 0 {
                        30_000 + next() % 4000
                    } else {
                        0
                    }
                })
                .collect(),
            (0..256).map(|i| if i == 7 { 1 } else { 0 }).collect(),
        ];
        for (i, numbers) in columns.iter().enumerate() {
            let exhaustive = (0..16)
                .map(|k| numbers.iter().map(|&v| cost(v, k, 16)).sum::<u64>())
                .min()
                .unwrap();
            let (k, stepped) = rice_parameter(numbers, 16).unwrap();
            assert_eq!(
                stepped,
                numbers.iter().map(|&v| cost(v, k, 16)).sum::<u64>(),
                "column {i}"
            );
            assert!(
                stepped <= exhaustive + exhaustive / 50,
                "column {i}: {stepped} bits against {exhaustive}"
            );
        }
        assert_eq!(rice_parameter(&[0; 8], 16), None);
    }
}

#[cfg(test)]
mod shelved {
    use super::*;

    #[test]
    fn a_shelved_block_decodes_as_it_did_on_the_heap_and_a_bad_one_to_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let shelf = Shelf::create(dir.path()).unwrap();
        let n = 3;
        let timeline: Vec<u64> = (0..BLOCK_ROWS as u64).map(|i| i * 60_000).collect();
        let flags = vec![0u8; BLOCK_ROWS];
        let codes: Vec<u16> = (0..BLOCK_ROWS * n)
            .map(|i| (i * 37 % 1000) as u16)
            .collect();
        let mut scratch = Scratch::default();
        let mut encode = |to: Option<&Shelf>| {
            Block::encode(&timeline, &flags, &codes, n, 60_000, &mut scratch, None, to)
        };
        let mut on_heap = encode(None);
        let shelved = encode(Some(&shelf));
        assert!(on_heap.heap_bytes() > 0);
        assert_eq!(
            (shelved.heap_bytes(), shelved.shelved_bytes()),
            (0, on_heap.heap_bytes())
        );
        let mut out = Decoded::default();
        assert!(shelved.decode(Some(&shelf), n, 60_000, &mut out));
        assert_eq!(
            (out.timeline.as_slice(), out.codes.as_slice()),
            (&timeline[..], &codes[..])
        );
        // Without the shelf it cannot be read.
        assert!(!shelved.decode(None, n, 60_000, &mut out));
        assert!(out.codes.is_empty());
        // Moved to the shelf later: the same.
        on_heap.shelve(&shelf);
        assert_eq!(on_heap.heap_bytes(), 0);
        assert!(on_heap.decode(Some(&shelf), n, 60_000, &mut out));
        assert_eq!(out.codes, codes);
        // Damaged in the file: refused, nothing half-decoded.
        use std::os::unix::fs::FileExt;
        shelf.file().write_all_at(&[0x55; 8], 0).unwrap();
        assert!(!shelved.decode(Some(&shelf), n, 60_000, &mut out));
        assert!(out.timeline.is_empty() && out.codes.is_empty());
        let held = shelf.held_bytes();
        assert!(shelved.into_buffer(Some(&shelf)).is_none());
        assert!(shelf.held_bytes() < held);
    }
}
