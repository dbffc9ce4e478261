//! Compression of sealed rows: a block of up to [`BLOCK_ROWS`] rows coded column by column.
//!
//! Each column (the timelines, the throttle flags, then every code of the row) is turned into
//! small unsigned numbers by a predictor and written with a Rice code whose parameter is chosen
//! per block and column (the cheapest, found by stepping from log₂ of the mean):
//!
//! - timelines: the change of the step between rows (aggregate rows are one bucket apart, so
//!   almost always 0);
//! - flags: XOR with the previous row (0 while nothing changes);
//! - codes: the difference to the previous row as a wrapping 16-bit number, zigzag-mapped, so
//!   that a series that barely moves costs a few bits and a constant one nothing; or, when it
//!   is cheaper (a mode bit and a 16-bit level say so), the distance to the block's mean value,
//!   since a difference carries the noise of two samples and a distance only one's. On the
//!   benchmark the second mode saved 8 % (1.40 → 1.29 MiB).
//!
//! A column whose numbers are all 0 costs only its 7-bit header; a number too large for its
//! Rice parameter is escaped (a run of [`ESCAPE`] ones and the raw value); since the parameter
//! can be as large as 15, a column of pure noise costs at most 17 bits per 16-bit code. Decoding is the exact inverse: the codes
//! that come out are the codes that went in.
//!
//! Why this and not XOR coding of floats (Gorilla): the values are already 16-bit codes on a
//! fixed step (see [`Series`](super::Series)), so their differences are small integers; on the
//! benchmark's year of history, differences + Rice take about a quarter of the raw size (25
//! bytes a row instead of 105), where byte-aligned varints cannot go below one byte per value
//! (half the raw size).

/// Rows per sealed block: large enough that the per-column headers (7 bits) are noise, small
/// enough that decoding one for a query is cheap and that retention overshoots by little.
pub(crate) const BLOCK_ROWS: usize = 256;

/// Unary run length that marks an escaped (raw) value.
const ESCAPE: u32 = 24;

/// Column header meaning "every number is 0".
const ZERO_COLUMN: u64 = 0x7f;

/// One block of sealed rows.
#[derive(Debug)]
pub(crate) struct Block {
    /// Timeline of the first and last row.
    pub first: u64,
    pub last: u64,
    pub rows: usize,
    /// Exactly the coded bytes, or (a recycled buffer, [`Block::encode`]) at most 1/16 more.
    bytes: Vec<u8>,
}

/// Buffers reused from one block to the next while compressing.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    numbers: Vec<u64>,
    around: Vec<u64>,
    bytes: Vec<u8>,
}

impl Scratch {
    pub fn heap_bytes(&self) -> usize {
        (self.numbers.capacity() + self.around.capacity()) * 8 + self.bytes.capacity()
    }
}

/// Rows of a decoded block, row-major codes (`n` per row).
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub timeline: Vec<u64>,
    pub flags: Vec<u8>,
    pub codes: Vec<u16>,
}

impl Block {
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// The block's buffer, for [`Block::encode`] to reuse once the block is dropped.
    pub fn into_buffer(self) -> Vec<u8> {
        self.bytes
    }

    /// Codes `rows` rows (`codes` row-major, `n` per row; `span` = the expected step between
    /// timelines). `scratch` is reused between calls. With `recycle` (a dropped block's buffer,
    /// [`Block::into_buffer`]) the bytes go into that buffer when they fit, and a new buffer
    /// gets 1/16 spare room so that the next block of about the same size fits in it: a tier
    /// that drops and makes a block every few minutes (the raw one) then allocates nothing,
    /// where a fresh allocation each time leaves holes between the long-lived blocks. Without,
    /// the buffer is exactly the size.
    pub fn encode(
        timeline: &[u64],
        flags: &[u8],
        codes: &[u16],
        n: usize,
        span: u64,
        scratch: &mut Scratch,
        recycle: Option<&mut Option<Vec<u8>>>,
    ) -> Block {
        let rows = timeline.len();
        debug_assert!(rows > 0 && flags.len() == rows && codes.len() == rows * n);
        let Scratch {
            numbers,
            around,
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
        numbers.clear();
        let mut prev = 0u8;
        for &f in flags {
            numbers.push(u64::from(f ^ prev));
            prev = f;
        }
        w.column(numbers, 8);
        for c in 0..n {
            numbers.clear();
            around.clear();
            let mut prev = 0u16;
            let mut sum = 0u64;
            for row in codes.chunks_exact(n) {
                let v = row[c];
                numbers.push(u64::from(zigzag16(v.wrapping_sub(prev) as i16)));
                prev = v;
                sum += u64::from(v);
            }
            // Noise around a level costs less as distances to that level than as differences
            // (which add two samples' noise): the cheaper of the two is written, with a mode bit.
            let base = (sum / rows as u64) as u16;
            around.extend(
                codes
                    .chunks_exact(n)
                    .map(|row| u64::from(zigzag16(row[c].wrapping_sub(base) as i16))),
            );
            if column_cost(around, 16) + 16 < column_cost(numbers, 16) {
                w.put(1, 1);
                w.put(u64::from(base), 16);
                w.column(around, 16);
            } else {
                w.put(0, 1);
                w.column(numbers, 16);
            }
        }
        w.finish();
        Block {
            first: timeline[0],
            last: timeline[rows - 1],
            rows,
            bytes: match recycle {
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
            },
        }
    }

    /// Decodes into `out` (cleared first); `n` and `span` as given to [`Block::encode`].
    pub fn decode(&self, n: usize, span: u64, out: &mut Decoded) {
        let rows = self.rows;
        let mut r = BitReader::new(&self.bytes);
        out.timeline.clear();
        out.timeline.push(self.first);
        let (mut step, mut prev) = (span, self.first);
        r.column(rows - 1, 64, |z| {
            step = step.wrapping_add(unzigzag64(z) as u64);
            prev = prev.wrapping_add(step);
            out.timeline.push(prev);
        });
        out.flags.clear();
        let mut prev = 0u8;
        r.column(rows, 8, |x| {
            prev ^= x as u8;
            out.flags.push(prev);
        });
        out.codes.clear();
        out.codes.resize(rows * n, 0);
        for c in 0..n {
            let mut at = c;
            if r.get(1) == 1 {
                let base = r.get(16) as u16;
                r.column(rows, 16, |z| {
                    out.codes[at] = base.wrapping_add(unzigzag16(z as u16) as u16);
                    at += n;
                });
            } else {
                let mut prev = 0u16;
                r.column(rows, 16, |z| {
                    prev = prev.wrapping_add(unzigzag16(z as u16) as u16);
                    out.codes[at] = prev;
                    at += n;
                });
            }
        }
    }
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
    rice_parameter(numbers, bits).map_or(7, |(_, cost)| 7 + cost)
}

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
        let Some((k, _)) = rice_parameter(numbers, bits) else {
            self.put(ZERO_COLUMN, 7);
            return;
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

    fn roundtrip(timeline: &[u64], flags: &[u8], codes: &[u16], n: usize, span: u64) -> usize {
        let mut scratch = Scratch::default();
        let block = Block::encode(timeline, flags, codes, n, span, &mut scratch, None);
        let mut out = Decoded::default();
        block.decode(n, span, &mut out);
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
