//! Memory-mapped segment files and the directory of equally sized segments that forms one log
//! (RocketMQ's MappedFile / MappedFileQueue), shared by the commit log and the consume queues.
//!
//! Concurrency contract: each log has exactly one writer thread. The writer fills bytes at and
//! beyond a file's published write position and then advances it with a release store; readers
//! only look below a position they loaded with acquire. Writer and readers therefore never touch
//! the same bytes at the same time, which is why the mapping is kept as a raw pointer
//! ([`memmap2::MmapRaw`]) instead of a `&mut` slice. Deleted files stay mapped while any reader
//! still holds their `Arc`, so slices handed out as `Bytes` remain valid.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use memmap2::MmapRaw;
use parking_lot::RwLock;

use crate::error::{IoContext, Result, StoreError};

const PAGE: usize = 4096;

/// One fixed-size segment named by the 20-digit offset of its first byte.
pub struct MappedFile {
    path: PathBuf,
    file_from_offset: i64,
    size: usize,
    map: MmapRaw,
    file: File,
    wrote_position: AtomicUsize,
    flushed_position: AtomicUsize,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("path", &self.path)
            .field("wrote", &self.wrote_position())
            .finish()
    }
}

/// `String.format("%020d", offset)`.
pub fn file_name(offset: i64) -> String {
    format!("{offset:020}")
}

impl MappedFile {
    /// Creates (or reuses a leftover) segment and reserves its blocks so later writes through
    /// the mapping cannot hit ENOSPC as SIGBUS. Warming is the allocator's job
    /// ([`MappedFile::warm_range`]).
    pub fn create(dir: &Path, offset: i64, size: usize) -> Result<MappedFile> {
        MappedFile::create_with(dir, offset, size, true)
    }

    /// Creates a segment left sparse, as Java does: consume-queue files take disk only for
    /// the entries written (a 1024-queue topic would otherwise reserve 5.7 MiB per queue up
    /// front). Their writes are small and stop with the commit log's when the disk-full guard
    /// refuses sends, long before the file system is full.
    pub fn create_sparse(dir: &Path, offset: i64, size: usize) -> Result<MappedFile> {
        MappedFile::create_with(dir, offset, size, false)
    }

    fn create_with(dir: &Path, offset: i64, size: usize, reserve: bool) -> Result<MappedFile> {
        let path = dir.join(file_name(offset));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .context(|| format!("create {}", path.display()))?;
        file.set_len(size as u64)
            .context(|| format!("size {}", path.display()))?;
        if reserve {
            preallocate(&file, size);
        }
        let map = MmapRaw::map_raw(&file).context(|| format!("map {}", path.display()))?;
        Ok(MappedFile {
            path,
            file_from_offset: offset,
            size,
            map,
            file,
            wrote_position: AtomicUsize::new(0),
            flushed_position: AtomicUsize::new(0),
        })
    }

    /// Maps an existing segment, which must have exactly `size` bytes. Positions start at the
    /// end (full); recovery lowers them for the tail.
    pub fn open(path: &Path, offset: i64, size: usize) -> Result<MappedFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .context(|| format!("open {}", path.display()))?;
        let len = file
            .metadata()
            .context(|| format!("stat {}", path.display()))?
            .len();
        if len != size as u64 {
            return Err(StoreError::FileSize {
                path: path.to_owned(),
                expected: size,
                actual: len,
            });
        }
        let map = MmapRaw::map_raw(&file).context(|| format!("map {}", path.display()))?;
        Ok(MappedFile {
            path: path.to_owned(),
            file_from_offset: offset,
            size,
            map,
            file,
            wrote_position: AtomicUsize::new(size),
            flushed_position: AtomicUsize::new(size),
        })
    }

    /// Maps a file read-only-in-spirit for offline tools (any size, nothing is written).
    pub fn open_any_size(path: &Path, offset: i64) -> Result<MappedFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .context(|| format!("open {}", path.display()))?;
        let len = file
            .metadata()
            .context(|| format!("stat {}", path.display()))?
            .len() as usize;
        let map = MmapRaw::map_raw(&file).context(|| format!("map {}", path.display()))?;
        Ok(MappedFile {
            path: path.to_owned(),
            file_from_offset: offset,
            size: len,
            map,
            file,
            wrote_position: AtomicUsize::new(len),
            flushed_position: AtomicUsize::new(len),
        })
    }

    /// Fills the page cache for the whole file by reading it through the file descriptor: the
    /// blocks are reserved but unwritten, so this costs no disk I/O, and the appender's first
    /// touch of each page becomes a cheap minor fault instead of a page allocation. Reading (not
    /// writing zeros) leaves the pages clean, so no zeros are ever written back to disk, and going
    /// through `pread` rather than the mapping keeps them out of this process's resident set
    /// until they are really used (an idle broker stays small).
    /// Reads `[start, end)` so its pages are in the page cache before the appender writes them:
    /// its first touch is then a cheap minor fault instead of a read-around from disk.
    pub(crate) fn warm_range(&self, start: usize, end: usize) {
        use std::os::unix::fs::FileExt;
        // Small reads with a yield between them: a read of never-used pages zero-fills each one
        // in the kernel, where a low-priority thread may not be preempted until the call returns
        // (tens of microseconds a page on a VM), so one large read could hold a core for tens
        // of milliseconds while request threads wait for it.
        const CHUNK: usize = 64 << 10;
        // A descriptor of its own with readahead off: otherwise each small sequential read
        // grows the readahead window and zero-fills megabytes in one go.
        let Ok(file) = File::open(&self.path) else {
            return;
        };
        {
            use std::os::fd::AsRawFd;
            // SAFETY: plain advice on an open descriptor; failure only leaves readahead on.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
        }
        let end = end.min(self.size);
        let mut buf = vec![0u8; CHUNK.min(end.saturating_sub(start))];
        let mut pos = start;
        while pos < end {
            let n = CHUNK.min(end - pos);
            match file.read_at(&mut buf[..n], pos as u64) {
                Ok(0) => return,
                Ok(read) => {
                    pos += read;
                    std::thread::yield_now();
                }
                Err(e) => {
                    tracing::debug!("warming {} failed: {e}", self.path.display());
                    return;
                }
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn file_from_offset(&self) -> i64 {
        self.file_from_offset
    }
    pub fn file_size(&self) -> usize {
        self.size
    }
    pub fn end_offset(&self) -> i64 {
        self.file_from_offset + self.size as i64
    }
    pub fn wrote_position(&self) -> usize {
        self.wrote_position.load(Ordering::Acquire)
    }
    /// Publishes bytes up to `pos` to readers (writer only).
    pub fn set_wrote_position(&self, pos: usize) {
        self.wrote_position
            .store(pos.min(self.size), Ordering::Release);
    }
    pub fn flushed_position(&self) -> usize {
        self.flushed_position.load(Ordering::Acquire)
    }
    pub fn set_flushed_position(&self, pos: usize) {
        self.flushed_position
            .store(pos.min(self.size), Ordering::Release);
    }
    pub fn is_full(&self) -> bool {
        self.wrote_position() >= self.size
    }

    /// Bytes `[pos, pos + len)` clamped to the file. Callers read only published data (or own
    /// the file exclusively, as recovery and the offline tools do).
    pub fn bytes(&self, pos: usize, len: usize) -> &[u8] {
        let start = pos.min(self.size);
        let end = pos.saturating_add(len).min(self.size);
        // SAFETY: in bounds of the live mapping; see the module comment for the aliasing rule.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(start), end - start) }
    }

    /// Published bytes from `pos` to the write position.
    pub fn published_from(&self, pos: usize) -> &[u8] {
        let wrote = self.wrote_position();
        self.bytes(pos, wrote.saturating_sub(pos))
    }

    /// Writable bytes `[pos, pos + len)`.
    ///
    /// # Safety
    /// Only the single writer may call this, only for unpublished bytes (at or after the write
    /// position), and the slice must be dropped before those bytes are published.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn write_area(&self, pos: usize, len: usize) -> &mut [u8] {
        let start = pos.min(self.size);
        let end = pos.saturating_add(len).min(self.size);
        std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(start), end - start)
    }

    /// Writes `data` at `pos` (writer only, unpublished bytes).
    pub fn write_at(&self, pos: usize, data: &[u8]) -> bool {
        if pos + data.len() > self.size {
            return false;
        }
        // SAFETY: single writer, unpublished region per the caller contract of the owning log.
        unsafe { self.write_area(pos, data.len()) }.copy_from_slice(data);
        true
    }

    /// Flushes `[flushed, wrote)` to disk; returns the new flushed position.
    pub fn flush(&self) -> io::Result<usize> {
        let wrote = self.wrote_position();
        let flushed = self.flushed_position();
        if wrote > flushed {
            let start = flushed / PAGE * PAGE;
            self.map.flush_range(start, wrote - start)?;
            self.set_flushed_position(wrote);
        }
        Ok(wrote)
    }

    /// Flushes the whole mapping regardless of positions (shutdown, tools).
    pub fn flush_all(&self) -> io::Result<()> {
        self.map.flush()
    }

    /// Zeroes `[pos, size)` without dirtying pages that are already zero, then sets both
    /// positions to `pos`. Stale bytes past a truncation point must go: a later record of a
    /// different size could otherwise be followed by an old, valid-looking record.
    pub fn truncate_to(&self, pos: usize) {
        let mut at = pos.min(self.size);
        while at < self.size {
            let end = ((at / PAGE) + 1) * PAGE;
            let end = end.min(self.size);
            if self.bytes(at, end - at).iter().any(|&b| b != 0) {
                // SAFETY: recovery and truncation run before the file is shared with readers.
                unsafe { self.write_area(at, end - at) }.fill(0);
            }
            at = end;
        }
        self.set_wrote_position(pos);
        self.set_flushed_position(pos);
    }

    /// [`MappedFile::truncate_to`] for a running log: only `[pos, wrote_position)` can hold
    /// bytes (everything past the writer's position is still zero), so only that is cleared,
    /// instead of reading a whole segment of mostly untouched pages.
    /// The zeroes are written back at once: the flusher only syncs up to the written
    /// position, and a cut tail must not come back after a power loss.
    pub fn truncate_written_to(&self, pos: usize) -> io::Result<()> {
        let pos = pos.min(self.size);
        let end = self.wrote_position().min(self.size);
        if end > pos {
            // SAFETY: the caller holds the writer, and nobody reads past the published end.
            unsafe { self.write_area(pos, end - pos) }.fill(0);
            self.map.flush_range(pos, end - pos)?;
        }
        self.set_wrote_position(pos);
        self.set_flushed_position(pos.min(self.flushed_position()));
        Ok(())
    }

    pub fn last_modified(&self) -> Option<SystemTime> {
        self.file.metadata().and_then(|m| m.modified()).ok()
    }

    /// Removes the file from disk; the mapping lives on until the last `Arc` is dropped.
    pub fn destroy(&self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).context(|| format!("delete {}", self.path.display())),
        }
    }

    /// Zero-copy `Bytes` over `[pos, pos + len)` that keeps the file mapped.
    pub fn slice_bytes(self: &Arc<Self>, pos: usize, len: usize) -> Bytes {
        Bytes::from_owner(MappedSlice {
            file: self.clone(),
            pos,
            len,
        })
    }
}

fn preallocate(file: &File, size: usize) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an open descriptor. Failure (e.g. EOPNOTSUPP on tmpfs) only means
    // the file stays sparse, which is still correct.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t) };
    if rc != 0 {
        tracing::debug!("fallocate failed: {}", io::Error::last_os_error());
    }
}

struct MappedSlice {
    file: Arc<MappedFile>,
    pos: usize,
    len: usize,
}

impl AsRef<[u8]> for MappedSlice {
    fn as_ref(&self) -> &[u8] {
        self.file.bytes(self.pos, self.len)
    }
}

/// A directory of equally sized segments forming one contiguous log.
pub struct MappedFileQueue {
    dir: PathBuf,
    file_size: usize,
    files: RwLock<Vec<Arc<MappedFile>>>,
}

/// A crash between creating the newest segment and sizing it leaves it short (often empty).
/// Sizing happens before anything is written, so such a file holds no records: give it its full
/// size (zero-filled, which recovery reads as the end of data) instead of refusing to start.
fn complete_interrupted_allocation(path: &Path, size: usize) -> Result<()> {
    let len = fs::metadata(path)
        .context(|| format!("stat {}", path.display()))?
        .len();
    if len < size as u64 {
        tracing::warn!(path = %path.display(), len, "completing a commit-log file whose allocation was interrupted");
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .context(|| format!("open {}", path.display()))?;
        file.set_len(size as u64)
            .context(|| format!("size {}", path.display()))?;
    }
    Ok(())
}

impl MappedFileQueue {
    pub fn new(dir: PathBuf, file_size: usize) -> MappedFileQueue {
        MappedFileQueue {
            dir,
            file_size,
            files: RwLock::new(Vec::new()),
        }
    }

    /// Maps every segment in the directory (creating it if missing). Names that are not 20-digit
    /// offsets are ignored; segment sizes must match.
    pub fn load(&self) -> Result<()> {
        fs::create_dir_all(&self.dir).context(|| format!("create {}", self.dir.display()))?;
        let mut found = list_segments(&self.dir)?;
        found.sort_by_key(|(off, _)| *off);
        let mut files = Vec::with_capacity(found.len());
        let last = found.len().saturating_sub(1);
        for (i, (off, path)) in found.into_iter().enumerate() {
            if i == last {
                complete_interrupted_allocation(&path, self.file_size)?;
            }
            files.push(Arc::new(MappedFile::open(&path, off, self.file_size)?));
        }
        *self.files.write() = files;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn file_size(&self) -> usize {
        self.file_size
    }
    pub fn files(&self) -> Vec<Arc<MappedFile>> {
        self.files.read().clone()
    }
    pub fn is_empty(&self) -> bool {
        self.files.read().is_empty()
    }
    pub fn first_file(&self) -> Option<Arc<MappedFile>> {
        self.files.read().first().cloned()
    }
    pub fn last_file(&self) -> Option<Arc<MappedFile>> {
        self.files.read().last().cloned()
    }
    /// Start offset of the first segment (0 when empty).
    pub fn min_offset(&self) -> i64 {
        self.first_file().map_or(0, |f| f.file_from_offset())
    }
    /// Published end of the log.
    pub fn max_offset(&self) -> i64 {
        self.last_file()
            .map_or(0, |f| f.file_from_offset() + f.wrote_position() as i64)
    }

    /// The segment containing `offset`.
    pub fn find(&self, offset: i64) -> Option<Arc<MappedFile>> {
        let files = self.files.read();
        let first = files.first()?.file_from_offset();
        if offset < first {
            return None;
        }
        let idx = ((offset - first) / self.file_size as i64) as usize;
        let f = files.get(idx)?;
        // Segments are contiguous; anything else means a hole, and then search linearly.
        if f.file_from_offset() <= offset && offset < f.end_offset() {
            return Some(f.clone());
        }
        files
            .iter()
            .find(|f| f.file_from_offset() <= offset && offset < f.end_offset())
            .cloned()
    }

    /// Appends a segment the writer created (it must start where the last one ends).
    pub fn push(&self, file: Arc<MappedFile>) {
        self.files.write().push(file);
    }

    /// Creates and appends a sparse segment at `offset` (used by consume queues, which are
    /// small and many).
    pub fn create_file(&self, offset: i64) -> Result<Arc<MappedFile>> {
        fs::create_dir_all(&self.dir).context(|| format!("create {}", self.dir.display()))?;
        let f = Arc::new(MappedFile::create_sparse(
            &self.dir,
            offset,
            self.file_size,
        )?);
        self.push(f.clone());
        Ok(f)
    }

    /// Drops everything at or after `offset`: later segments are deleted, the segment holding
    /// `offset` is zeroed from there on.
    pub fn truncate_dirty(&self, offset: i64) -> Result<()> {
        let mut files = self.files.write();
        let mut keep = Vec::with_capacity(files.len());
        for f in files.drain(..) {
            if f.end_offset() <= offset {
                keep.push(f);
            } else if f.file_from_offset() <= offset {
                f.truncate_to((offset - f.file_from_offset()) as usize);
                keep.push(f);
            } else {
                f.destroy()?;
            }
        }
        *files = keep;
        Ok(())
    }

    /// [`MappedFileQueue::truncate_dirty`] for a running log, where each segment's written
    /// position bounds its data ([`MappedFile::truncate_written_to`]).
    pub fn truncate_written(&self, offset: i64) -> Result<()> {
        let mut files = self.files.write();
        let mut keep = Vec::with_capacity(files.len());
        for f in files.drain(..) {
            if f.end_offset() <= offset {
                keep.push(f);
            } else if f.file_from_offset() <= offset {
                f.truncate_written_to((offset - f.file_from_offset()) as usize)
                    .context(|| format!("cut {}", f.path().display()))?;
                keep.push(f);
            } else {
                f.destroy()?;
            }
        }
        *files = keep;
        Ok(())
    }

    /// Removes the first `n` segments from the queue and deletes their files.
    pub fn delete_first(&self, n: usize) -> Result<Vec<Arc<MappedFile>>> {
        let removed: Vec<_> = {
            let mut files = self.files.write();
            let n = n.min(files.len());
            files.drain(..n).collect()
        };
        for f in &removed {
            f.destroy()?;
        }
        Ok(removed)
    }

    /// Removes the last segment and deletes its file.
    pub fn delete_last(&self) -> Result<()> {
        let last = self.files.write().pop();
        if let Some(f) = last {
            f.destroy()?;
        }
        Ok(())
    }

    /// Flushes every segment with unflushed bytes; returns the flushed end of the log.
    pub fn flush(&self) -> Result<i64> {
        let files = self.files();
        for f in &files {
            if f.wrote_position() > f.flushed_position() {
                f.flush()
                    .context(|| format!("flush {}", f.path().display()))?;
            }
        }
        Ok(files
            .last()
            .map_or(0, |f| f.file_from_offset() + f.flushed_position() as i64))
    }

    /// Deletes every segment and the directory (topic deletion).
    pub fn destroy(&self) -> Result<()> {
        let files: Vec<_> = self.files.write().drain(..).collect();
        for f in files {
            f.destroy()?;
        }
        let _ = fs::remove_dir(&self.dir);
        Ok(())
    }
}

/// `(start offset, path)` of every 20-digit-named file in `dir`.
pub fn list_segments(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).context(|| format!("list {}", dir.display())),
    };
    for entry in rd {
        let entry = entry.context(|| format!("list {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(off) = name.parse::<i64>() {
            out.push((off, entry.path()));
        }
    }
    out.sort_by_key(|(o, _)| *o);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_segments_are_sparse_and_commit_log_segments_reserved() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let size = 4 * 1024 * 1024;
        let q = MappedFileQueue::new(dir.path().join("cq"), size);
        let sparse = q.create_file(0).unwrap();
        assert!(sparse.write_at(0, &[1u8; 20]));
        let used = fs::metadata(&sparse.path).unwrap().blocks() * 512;
        assert!(
            used < size as u64 / 4,
            "a fresh queue segment uses {used} bytes"
        );
        let reserved = MappedFile::create(dir.path(), 0, size).unwrap();
        let used = fs::metadata(&reserved.path).unwrap().blocks() * 512;
        // Where the file system cannot fallocate (tmpfs) the file stays sparse too.
        if used > 0 {
            assert!(
                used >= size as u64,
                "a commit-log segment reserves only {used} bytes"
            );
        }
    }

    #[test]
    fn create_write_reopen_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let q = MappedFileQueue::new(dir.path().to_owned(), 8192);
        q.load().unwrap();
        let f = q.create_file(0).unwrap();
        assert!(f.write_at(0, b"hello"));
        f.set_wrote_position(5);
        let b = f.slice_bytes(1, 3);
        assert_eq!(&b[..], b"ell");
        f.flush().unwrap();
        q.create_file(8192).unwrap();
        assert_eq!(q.find(8200).unwrap().file_from_offset(), 8192);
        assert!(q.find(20000).is_none());
        drop(q);

        let q = MappedFileQueue::new(dir.path().to_owned(), 8192);
        q.load().unwrap();
        assert_eq!(q.files().len(), 2);
        q.truncate_dirty(3).unwrap();
        assert_eq!(q.files().len(), 1);
        let f = q.first_file().unwrap();
        assert_eq!(f.bytes(0, 5), b"hel\0\0");
        assert_eq!(q.max_offset(), 3);
    }

    #[test]
    fn wrong_size_is_rejected_but_an_interrupted_last_allocation_is_completed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(file_name(0)), b"short").unwrap();
        fs::write(dir.path().join(file_name(8192)), b"").unwrap();
        let q = MappedFileQueue::new(dir.path().to_owned(), 8192);
        assert!(matches!(q.load(), Err(StoreError::FileSize { .. })));

        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(file_name(0)), vec![0u8; 8192]).unwrap();
        fs::write(dir.path().join(file_name(8192)), b"").unwrap();
        let q = MappedFileQueue::new(dir.path().to_owned(), 8192);
        q.load().unwrap();
        let len = fs::metadata(dir.path().join(file_name(8192)))
            .unwrap()
            .len();
        assert_eq!(len, 8192);
    }
}
