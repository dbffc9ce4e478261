//! Sealed blocks of the aggregate tiers kept in a file in `state_dir` rather than on the heap.
//!
//! # Why
//!
//! With the defaults, a year of 15-minute rows and a week of 1-minute rows are about 1 MiB
//! even compressed ([`block`](super::block)), and almost all of it is read only when someone
//! asks for an older range or a snapshot is written. On the heap it is resident all year, on a
//! Pi Zero with 512 MiB and no swap. In a file it lives in the page cache, which the kernel
//! gives back under memory pressure, and one `pread` per block (a few KiB) brings it back
//! when a query needs it. So RAM no longer grows with the retention: a longer coarse tier
//! costs disk, not memory.
//!
//! # The file
//!
//! It is unnamed: opened with `O_TMPFILE` in the state directory (where the file system lacks
//! it, a named file removed at once). It is the blocks' memory, not state: the state file and
//! its journal keep the rows themselves ([`store`](super::store)), so the shelf starts empty
//! every run, no later run can find it, and a crash or power cut leaves nothing behind to
//! clean up.
//!
//! # Writes
//!
//! A block is written once, when it is sealed: the 1-minute tier seals one every 256 minutes,
//! the 15-minute tier every 64 hours, about 30 KiB a day together. A restored year is written
//! once at start (about 1 MiB). The raw tier stays on the heap: it seals a block every 256
//! samples, which would write more than the state file's journal does. New blocks go after
//! the last one, each starting on a file-system block, so the file's length grows by what is
//! sealed (about 15 MiB a year with the defaults); a dropped block's file-system blocks are
//! punched out (`fallocate`), so its disk use stays what it holds, rounded up to whole
//! file-system blocks (where the file system cannot punch, it is its length). At [`MAX_LEN`],
//! decades at that rate, new blocks stay on the heap until the next start.
//!
//! # Faults
//!
//! Every block carries a CRC-32. A write that fails is logged once and that block, and every
//! later one, stays on the heap. A read that fails or does not match is logged and the block
//! is marked bad: its rows (at most 256 of one tier) are left out of queries and of later saves
//! from then on, consistently, never a panic or a half-decoded block.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::store::crc32;

/// The longest the file may grow (its length, not its disk use where dropped ranges are
/// punched out): the bound on its disk use where they cannot be.
pub const MAX_LEN: u64 = 256 << 20;

/// Where a block's bytes are in the file.
#[derive(Debug)]
pub(crate) struct Slot {
    offset: u64,
    len: u32,
    crc: u32,
    /// Set once a read failed or did not match: the block is left out from then on.
    bad: AtomicBool,
}

impl Slot {
    pub fn len(&self) -> usize {
        self.len as usize
    }
}

/// The file the aggregate tiers' sealed blocks are kept in; shared by the tiers.
#[derive(Debug)]
pub struct Shelf {
    file: File,
    dir: PathBuf,
    /// Where the next block goes (the file only grows; dropped ranges are punched out).
    end: AtomicU64,
    /// Blocks start on a multiple of this, the file system's block size: a punch frees only
    /// the file-system blocks wholly inside its range, and a block of a few KiB sharing them
    /// with its neighbours would free none.
    align: u64,
    /// Bytes in blocks not dropped.
    held: AtomicU64,
    /// Set by the first failed write: later blocks stay on the heap, and it is logged once.
    broken: AtomicBool,
    /// Cleared when the file system refuses to punch a hole (logged once).
    punches: AtomicBool,
}

impl Shelf {
    /// Opens an unnamed file in `dir` (created if missing).
    pub fn create(dir: &Path) -> io::Result<Shelf> {
        std::fs::create_dir_all(dir)?;
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)
        {
            Ok(file) => file,
            // Not supported by this file system or kernel: a named file, removed at once.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
                let path = dir.join(format!(".history-blocks.{}", std::process::id()));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)?;
                std::fs::remove_file(&path)?;
                file
            }
            Err(e) => return Err(e),
        };
        let align = file
            .metadata()?
            .blksize()
            .clamp(512, 1 << 16)
            .next_power_of_two();
        Ok(Shelf {
            file,
            dir: dir.to_owned(),
            end: AtomicU64::new(0),
            align,
            held: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            punches: AtomicBool::new(true),
        })
    }

    /// Bytes in the blocks it holds.
    #[cfg(test)]
    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Writes a block's bytes; `None` (logged on the first failure) means keep them on the heap.
    pub(crate) fn put(&self, bytes: &[u8]) -> Option<Slot> {
        if self.broken.load(Ordering::Relaxed) {
            return None;
        }
        let len = bytes.len() as u64;
        let offset = self.end.fetch_add(self.span(len), Ordering::Relaxed);
        let result = if offset + len > MAX_LEN {
            Err(io::Error::other(format!(
                "it reached its {} MiB bound",
                MAX_LEN >> 20
            )))
        } else {
            self.file.write_all_at(bytes, offset)
        };
        if let Err(e) = result {
            self.broken.store(true, Ordering::Relaxed);
            tracing::warn!(
                "history: cannot write to the block file in {} ({e}); older rows stay in RAM",
                self.dir.display()
            );
            return None;
        }
        self.held.fetch_add(len, Ordering::Relaxed);
        Some(Slot {
            offset,
            len: bytes.len() as u32,
            crc: crc32(bytes),
            bad: AtomicBool::new(false),
        })
    }

    /// Reads a block's bytes into `out`; false (logged the first time) when they cannot be
    /// read or do not match what was written.
    pub(crate) fn get(&self, slot: &Slot, out: &mut Vec<u8>) -> bool {
        if slot.bad.load(Ordering::Relaxed) {
            return false;
        }
        out.clear();
        out.resize(slot.len(), 0);
        let result =
            self.file
                .read_exact_at(out, slot.offset)
                .and_then(|()| match crc32(out) == slot.crc {
                    true => Ok(()),
                    false => Err(io::Error::other("checksum mismatch")),
                });
        if let Err(e) = result {
            slot.bad.store(true, Ordering::Relaxed);
            tracing::error!(
                "history: a block of older rows in the block file in {} cannot be read ({e}); \
                 its rows are left out from now on",
                self.dir.display()
            );
            return false;
        }
        true
    }

    /// Room a block of `len` bytes takes in the file: whole file-system blocks.
    fn span(&self, len: u64) -> u64 {
        len.div_ceil(self.align) * self.align
    }

    /// Gives a dropped block's range back to the file system.
    pub(crate) fn release(&self, slot: Slot) {
        self.held.fetch_sub(u64::from(slot.len), Ordering::Relaxed);
        if !self.punches.load(Ordering::Relaxed) {
            return;
        }
        // `off_t` is 32 bits on 32-bit glibc targets (armhf), 64 elsewhere.
        #[allow(clippy::unnecessary_fallible_conversions)]
        let (Ok(offset), Ok(len)) = (
            libc::off_t::try_from(slot.offset),
            libc::off_t::try_from(self.span(u64::from(slot.len))),
        ) else {
            return;
        };
        // SAFETY: fallocate on a descriptor this struct owns; no memory is passed.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            )
        };
        if rc != 0 {
            self.punches.store(false, Ordering::Relaxed);
            tracing::info!(
                "history: the file system of {} cannot punch out dropped blocks ({}); the \
                 block file grows by what is sealed, up to {} MiB",
                self.dir.display(),
                io::Error::last_os_error(),
                MAX_LEN >> 20
            );
        }
    }

    /// The file, for tests that damage it.
    #[cfg(test)]
    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_come_back_as_written_and_dropped_ranges_are_punched_out() {
        // A Pi's 1-minute blocks are a few KiB, smaller than a file-system block: each must
        // still free its own when dropped.
        for size in [3_000, 20_000] {
            let dir = tempfile::tempdir().unwrap();
            let shelf = Shelf::create(dir.path()).unwrap();
            // Unnamed: nothing appears in the directory.
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
            // Incompressible bytes, so that a compressing file system allocates what is written.
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            let blocks: Vec<Vec<u8>> = (0..8usize)
                .map(|i| {
                    (0..size + i)
                        .map(|_| {
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            seed as u8
                        })
                        .collect()
                })
                .collect();
            let slots: Vec<Slot> = blocks.iter().map(|b| shelf.put(b).unwrap()).collect();
            let total: u64 = blocks.iter().map(|b| b.len() as u64).sum();
            assert_eq!(shelf.held_bytes(), total);
            let mut out = Vec::new();
            for (block, slot) in blocks.iter().zip(&slots) {
                assert!(shelf.get(slot, &mut out));
                assert_eq!(&out, block);
            }
            let allocated = |s: &Shelf| s.file().metadata().unwrap().blocks() * 512;
            let before = allocated(&shelf);
            assert!(before >= total, "{before} < {total}");
            let mut slots = slots.into_iter();
            for slot in slots.by_ref().take(6) {
                shelf.release(slot);
            }
            assert_eq!(
                shelf.held_bytes(),
                blocks[6].len() as u64 + blocks[7].len() as u64
            );
            if shelf.punches.load(Ordering::Relaxed) {
                let dropped: u64 = blocks[..6].iter().map(|b| b.len() as u64).sum();
                let after = allocated(&shelf);
                assert!(
                    before - after >= dropped,
                    "{size}: {after} of {before} allocated after dropping {dropped} bytes"
                );
            }
            let rest: Vec<Slot> = slots.collect();
            assert!(shelf.get(&rest[1], &mut out));
            assert_eq!(out, blocks[7]);
        }
    }

    #[test]
    fn a_damaged_block_is_refused_from_then_on_and_others_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let shelf = Shelf::create(dir.path()).unwrap();
        let a = shelf.put(&[1; 3000]).unwrap();
        let b = shelf.put(&[2; 3000]).unwrap();
        shelf.file().write_all_at(&[0xff; 16], 100).unwrap();
        let mut out = Vec::new();
        assert!(!shelf.get(&a, &mut out));
        // Even once the bytes are right again, the block stays out: queries and saves agree.
        shelf.file().write_all_at(&[1; 16], 100).unwrap();
        assert!(!shelf.get(&a, &mut out));
        assert!(shelf.get(&b, &mut out));
        assert_eq!(out, vec![2; 3000]);
        // Cut short: the read fails, nothing panics.
        shelf.file().set_len(4000).unwrap();
        assert!(!shelf.get(&b, &mut out));
    }

    #[test]
    fn a_file_that_cannot_take_more_keeps_blocks_on_the_heap() {
        let dir = tempfile::tempdir().unwrap();
        let shelf = Shelf::create(dir.path()).unwrap();
        assert!(shelf.put(&[7; 100]).is_some());
        shelf.end.store(MAX_LEN - 50, Ordering::Relaxed);
        assert!(shelf.put(&[7; 100]).is_none());
        // Broken from then on, even for a block that would fit.
        shelf.end.store(0, Ordering::Relaxed);
        assert!(shelf.put(&[7; 10]).is_none());
    }

    #[test]
    fn a_directory_that_cannot_be_written_is_an_error() {
        // A path under a regular file can never be a directory, even for root.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(Shelf::create(&file.join("state")).is_err());
    }
}
