//! A local data file written in pieces, fsynced when finished.
//!
//! Where the file system allows it (Linux, `O_DIRECT`), the file is written
//! straight from aligned chunks to the disk, past the page cache: the
//! kernel neither copies the bytes nor allocates a cache page for each of
//! them, and the job's page cache is left alone. A full chunk is written by
//! the process's I/O thread while the writer fills the next one. Elsewhere
//! the file is written through the page cache, and the I/O thread syncs it
//! in the background while it is written.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, mpsc};

use super::io_err;
use crate::error::StateError;
use crate::storage::FileSink;

/// A data file written in pieces, fsynced when finished: direct
/// ([`DirectWrites`]) where the file system allows it, through the page
/// cache otherwise.
pub(super) struct LocalFile {
    file: Arc<File>,
    path: PathBuf,
    mode: Mode,
}

enum Mode {
    /// Through the page cache. Every [`WRITEBACK_BYTES`] it asks the I/O
    /// thread for an `fdatasync` of what it has written (one request in
    /// flight per file), so that the disk writes while the snapshot is
    /// still being encoded and the final fsync has little left.
    Buffered {
        /// Bytes written since the last writeback was requested.
        unsynced: u64,
        /// The answer to the writeback request in flight, if any.
        writeback: Option<mpsc::Receiver<io::Result<()>>>,
    },
    Direct(DirectWrites),
}

/// How much a buffered [`LocalFile`] writes between two background
/// writebacks.
const WRITEBACK_BYTES: u64 = 64 << 20;

/// The alignment of direct writes: of their memory, length and file offset
/// (the largest logical block size of common disks).
const ALIGN: usize = 4096;

/// The bytes of a direct write: one chunk, a multiple of [`ALIGN`].
const CHUNK_BYTES: usize = 8 << 20;

/// Chunks kept for reuse by later files (see [`Chunk::take`]): two per file
/// for two files written at once.
const POOLED_CHUNKS: usize = 4;

/// A buffer of [`CHUNK_BYTES`] at an [`ALIGN`]ed address, filled from the
/// start.
struct Chunk {
    /// `CHUNK_BYTES + ALIGN` bytes, of which `start ..` is aligned.
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

/// Chunks of finished files, so that a checkpoint maps no new memory for
/// its buffers and faults in none.
static CHUNK_POOL: Mutex<Vec<Chunk>> = Mutex::new(Vec::new());

impl Chunk {
    /// A chunk from the pool, or a new one.
    fn take() -> Chunk {
        let pooled = CHUNK_POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
        pooled.unwrap_or_else(|| {
            let bytes = vec![0u8; CHUNK_BYTES + ALIGN];
            let start = bytes.as_ptr().align_offset(ALIGN);
            Chunk {
                bytes,
                start,
                len: 0,
            }
        })
    }

    /// Back to the pool, emptied, unless it holds enough.
    fn give_back(mut self) {
        self.len = 0;
        let mut pool = CHUNK_POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOLED_CHUNKS {
            pool.push(self);
        }
    }

    /// Appends as much of `bytes` as fits; how much that was.
    fn fill(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(CHUNK_BYTES - self.len);
        let at = self.start + self.len;
        self.bytes[at..at + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        n
    }

    fn is_full(&self) -> bool {
        self.len == CHUNK_BYTES
    }

    fn filled(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }
}

/// The state of a file written directly.
struct DirectWrites {
    /// The chunk being filled, taken at the first byte it gets.
    filling: Option<Chunk>,
    /// Where `filling` starts in the file.
    offset: u64,
    /// The answer to the chunk the I/O thread is writing, if any: its
    /// result and the chunk, to reuse.
    in_flight: Option<mpsc::Receiver<(io::Result<()>, Chunk)>>,
}

/// Work for the I/O thread: a write or an `fdatasync`, which sends its
/// result back on a channel.
type IoJob = Box<dyn FnOnce() + Send>;

/// The process's I/O thread, started by the first file that needs it and
/// kept for the life of the process: every [`LocalFile`] of every
/// checkpoint sends it its writes and `fdatasync`s, so writing a
/// checkpoint starts no thread (starting one took the address-space lock
/// for the new stack, which every allocating thread of the job waits on).
/// `None` if the thread could not be started.
fn io_thread() -> Option<&'static mpsc::Sender<IoJob>> {
    static THREAD: OnceLock<Option<mpsc::Sender<IoJob>>> = OnceLock::new();
    THREAD
        .get_or_init(|| {
            let (jobs, inbox) = mpsc::channel::<IoJob>();
            std::thread::Builder::new()
                // Linux keeps 15 bytes of a thread name.
                .name("rescale-io".into())
                .spawn(move || inbox.into_iter().for_each(|job| job()))
                .ok()
                .map(|_| jobs)
        })
        .as_ref()
}

/// Runs `job` on the I/O thread, or here if there is none.
fn in_background(job: IoJob) {
    match io_thread() {
        Some(thread) => {
            if let Err(mpsc::SendError(job)) = thread.send(job) {
                job();
            }
        }
        None => job(),
    }
}

/// Sets or clears `O_DIRECT` on `file`; an error where the file system (or
/// the platform) does not allow it.
#[cfg(target_os = "linux")]
fn set_direct(file: &File, direct: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl with F_GETFL/F_SETFL on a descriptor `file` owns reads
    // and sets its status flags; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if direct {
            flags | libc::O_DIRECT
        } else {
            flags & !libc::O_DIRECT
        };
        if libc::fcntl(fd, libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_direct(_file: &File, direct: bool) -> io::Result<()> {
    if direct {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    } else {
        Ok(())
    }
}

/// Writes `bytes` at `offset` of a file opened for direct writes. A file
/// system that took `O_DIRECT` but refuses the write (`EINVAL`, for a block
/// size larger than [`ALIGN`]) gets the file back to writes through the
/// page cache, and the write again.
fn write_direct(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    match write_at(file, bytes, offset) {
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            set_direct(file, false)?;
            write_at(file, bytes, offset)
        }
        written => written,
    }
}

/// Writes all of `bytes` at `offset` of `file`.
#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(not(unix))]
fn write_at(mut file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

impl LocalFile {
    /// A file just created, written directly if its file system allows it.
    pub(super) fn new(file: File, path: PathBuf) -> Self {
        match set_direct(&file, true) {
            Ok(()) => LocalFile {
                file: Arc::new(file),
                path,
                mode: Mode::Direct(DirectWrites {
                    filling: None,
                    offset: 0,
                    in_flight: None,
                }),
            },
            Err(_) => Self::buffered(file, path),
        }
    }

    /// A file just created, written through the page cache.
    fn buffered(file: File, path: PathBuf) -> Self {
        LocalFile {
            file: Arc::new(file),
            path,
            mode: Mode::Buffered {
                unsynced: 0,
                writeback: None,
            },
        }
    }

    /// The error of the I/O thread ending without answering.
    fn io_thread_ended(&self) -> StateError {
        StateError::Io {
            path: self.path.clone(),
            source: io::Error::other("the I/O thread ended"),
        }
    }

    /// Hands the full chunk being filled to the I/O thread, once the chunk
    /// it is writing is written.
    fn submit_chunk(&mut self) -> Result<(), StateError> {
        self.wait_for_chunk_in_flight()?;
        let Mode::Direct(direct) = &mut self.mode else {
            return Ok(());
        };
        let Some(chunk) = direct.filling.take() else {
            return Ok(());
        };
        let offset = direct.offset;
        direct.offset += chunk.len as u64;
        let (done, answer) = mpsc::sync_channel(1);
        let file = Arc::clone(&self.file);
        in_background(Box::new(move || {
            let written = write_direct(&file, chunk.filled(), offset);
            // The file's writer may be gone (an aborted checkpoint).
            let _ = done.send((written, chunk));
        }));
        direct.in_flight = Some(answer);
        Ok(())
    }

    /// Waits for the chunk the I/O thread is writing, if any.
    fn wait_for_chunk_in_flight(&mut self) -> Result<(), StateError> {
        let Mode::Direct(DirectWrites { in_flight, .. }) = &mut self.mode else {
            return Ok(());
        };
        let Some(answer) = in_flight.take() else {
            return Ok(());
        };
        let (written, chunk) = answer.recv().map_err(|_| self.io_thread_ended())?;
        chunk.give_back();
        written.map_err(io_err(&self.path))
    }

    /// The result of the background writeback in flight (buffered mode):
    /// `Some` once it has ended (and then none is in flight any more),
    /// `None` while it runs or if none is. With `wait`, waits for it.
    fn poll_writeback(&mut self, wait: bool) -> Option<Result<(), StateError>> {
        let Mode::Buffered { writeback, .. } = &mut self.mode else {
            return None;
        };
        let answer = writeback.as_ref()?;
        // `None`: the I/O thread ended without answering.
        let synced = if wait {
            answer.recv().ok()
        } else {
            match answer.try_recv() {
                Err(mpsc::TryRecvError::Empty) => return None,
                received => received.ok(),
            }
        };
        *writeback = None;
        Some(match synced {
            Some(synced) => synced.map_err(io_err(&self.path)),
            None => Err(self.io_thread_ended()),
        })
    }

    /// Asks the I/O thread to sync what has been written so far (buffered
    /// mode), unless it is syncing this file already, and counts the bytes
    /// unsynced from zero again.
    fn request_writeback(&mut self) {
        let Mode::Buffered {
            unsynced,
            writeback,
        } = &mut self.mode
        else {
            return;
        };
        if writeback.is_some() {
            return;
        }
        *unsynced = 0;
        let (done, answer) = mpsc::sync_channel(1);
        let file = Arc::clone(&self.file);
        in_background(Box::new(move || {
            // The file's writer may be gone (an aborted checkpoint).
            let _ = done.send(file.sync_data());
        }));
        *writeback = Some(answer);
    }

    fn write_buffered(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        (&*self.file).write_all(bytes).map_err(io_err(&self.path))?;
        let Mode::Buffered { unsynced, .. } = &mut self.mode else {
            return Ok(());
        };
        *unsynced += bytes.len() as u64;
        if *unsynced >= WRITEBACK_BYTES {
            if let Some(ended) = self.poll_writeback(false) {
                ended?;
            }
            self.request_writeback();
        }
        Ok(())
    }

    /// Writes the bytes of the last, partly filled chunk: its aligned part
    /// directly, the rest through the page cache.
    fn write_last_chunk(&mut self) -> Result<(), StateError> {
        let Mode::Direct(direct) = &mut self.mode else {
            return Ok(());
        };
        let Some(chunk) = direct.filling.take() else {
            return Ok(());
        };
        let bytes = chunk.filled();
        let aligned = bytes.len() - bytes.len() % ALIGN;
        let offset = direct.offset;
        let written = write_direct(&self.file, &bytes[..aligned], offset)
            .and_then(|()| set_direct(&self.file, false))
            .and_then(|()| write_at(&self.file, &bytes[aligned..], offset + aligned as u64));
        direct.offset += bytes.len() as u64;
        chunk.give_back();
        written.map_err(io_err(&self.path))
    }

    /// Whether the file is written past the page cache.
    #[cfg(test)]
    fn is_direct(&self) -> bool {
        matches!(self.mode, Mode::Direct(_))
    }
}

impl FileSink for LocalFile {
    fn write(&mut self, mut bytes: &[u8]) -> Result<(), StateError> {
        while !bytes.is_empty() {
            let Mode::Direct(direct) = &mut self.mode else {
                return self.write_buffered(bytes);
            };
            let chunk = direct.filling.get_or_insert_with(Chunk::take);
            bytes = &bytes[chunk.fill(bytes)..];
            if chunk.is_full() {
                self.submit_chunk()?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), StateError> {
        if let Some(ended) = self.poll_writeback(true) {
            ended?;
        }
        self.wait_for_chunk_in_flight()?;
        self.write_last_chunk()?;
        self.file.sync_all().map_err(io_err(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;

    /// `len` bytes of a pattern that differs at every offset of a chunk.
    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
            .collect()
    }

    /// Writes `len` bytes to a new file in `dir` in pieces of `piece`
    /// bytes, directly if `direct` and its file system allows it, finishes
    /// it, and checks what the file holds.
    fn write_and_check(dir: &Path, len: usize, piece: usize, direct: bool) {
        let path = dir.join(format!("{len}-{piece}-{direct}"));
        let file = File::create(&path).unwrap();
        let mut file = if direct {
            LocalFile::new(file, path.clone())
        } else {
            LocalFile::buffered(file, path.clone())
        };
        assert_eq!(file.is_direct(), direct && allows_direct(dir));
        let bytes = pattern(len, piece as u32);
        for part in bytes.chunks(piece) {
            file.write(part).unwrap();
        }
        Box::new(file).finish().unwrap();
        let written = fs::read(&path).unwrap();
        assert_eq!(written.len(), len, "{len} bytes in pieces of {piece}");
        assert!(
            written == bytes,
            "{len} bytes in pieces of {piece}: content"
        );
    }

    /// Whether files in `dir` can be opened for direct writes.
    fn allows_direct(dir: &Path) -> bool {
        let probe = File::create(dir.join("probe")).unwrap();
        set_direct(&probe, true).is_ok()
    }

    /// Every length around the alignment and the chunk boundaries, written
    /// in pieces that do not divide them, reads back exactly, written
    /// directly (where the file system allows it) and through the page
    /// cache.
    #[test]
    fn files_read_back_exactly_written_directly_or_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        for direct in [true, false] {
            for len in [
                0,
                1,
                ALIGN - 1,
                ALIGN,
                ALIGN + 1,
                CHUNK_BYTES - 1,
                CHUNK_BYTES,
                CHUNK_BYTES + ALIGN + 3,
                3 * CHUNK_BYTES + 17,
            ] {
                for piece in [1 << 20, 1_000_003, 8 << 20] {
                    write_and_check(dir.path(), len, piece, direct);
                }
            }
        }
    }

    /// A direct write the file system refuses (here: one not aligned) is
    /// written through the page cache instead, and so is the rest.
    #[test]
    fn a_refused_direct_write_is_written_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        if !allows_direct(dir.path()) {
            return;
        }
        let path = dir.path().join("refused");
        let file = File::create(&path).unwrap();
        set_direct(&file, true).unwrap();
        write_direct(&file, b"not aligned", 0).unwrap();
        write_direct(&file, b" at all", 11).unwrap();
        drop(file);
        assert_eq!(fs::read(&path).unwrap(), b"not aligned at all");
    }

    /// Files written through the page cache past [`WRITEBACK_BYTES`] are
    /// synced in the background while they are written, and direct files
    /// are written in the background: by one thread that every file shares.
    #[test]
    fn large_files_are_written_in_the_background_on_one_shared_thread() {
        let dir = tempfile::tempdir().unwrap();
        let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| i as u8).collect();
        let chunks = (WRITEBACK_BYTES / chunk.len() as u64) * 2 + 1;
        for name in ["first", "second", "buffered"] {
            let path = dir.path().join(name);
            let file = File::create(&path).unwrap();
            let mut file = if name == "buffered" {
                LocalFile::buffered(file, path.clone())
            } else {
                LocalFile::new(file, path.clone())
            };
            let mut background = 0;
            for _ in 0..chunks {
                file.write(&chunk).unwrap();
                background += usize::from(match &file.mode {
                    Mode::Buffered { unsynced, .. } => *unsynced == 0,
                    Mode::Direct(direct) => direct.in_flight.is_some(),
                });
            }
            assert!(background >= 1, "{name}: nothing done in the background");
            Box::new(file).finish().unwrap();
            let written = fs::read(&path).unwrap();
            assert_eq!(written.len() as u64, chunks * chunk.len() as u64);
            assert!(written.chunks(chunk.len()).all(|c| c == chunk));
        }
        // Threads are listed by name only on Linux.
        #[cfg(target_os = "linux")]
        let io_threads = fs::read_dir("/proc/self/task")
            .unwrap()
            .filter(|task| {
                let comm = fs::read_to_string(task.as_ref().unwrap().path().join("comm"));
                comm.is_ok_and(|comm| comm.trim() == "rescale-io")
            })
            .count();
        #[cfg(target_os = "linux")]
        assert_eq!(io_threads, 1);
    }
}
