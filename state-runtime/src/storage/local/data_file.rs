//! A local data file written in pieces, synced in the background while it
//! is written, and fsynced when finished.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{OnceLock, mpsc};

use super::io_err;
use crate::error::StateError;
use crate::storage::FileSink;

/// A data file written in pieces, fsynced when finished. Every
/// [`WRITEBACK_BYTES`] it asks the process's writeback thread for an
/// `fdatasync` of what it has written (one request in flight per file), so
/// that the disk writes while the snapshot is still being encoded and the
/// final fsync has little left.
pub(super) struct LocalFile {
    file: File,
    path: PathBuf,
    /// Bytes written since the last writeback was requested.
    unsynced: u64,
    /// The answer to the writeback request in flight, if any.
    writeback: Option<mpsc::Receiver<io::Result<()>>>,
}

/// How much a [`LocalFile`] writes between two background writebacks.
const WRITEBACK_BYTES: u64 = 64 << 20;

/// One `fdatasync` for the writeback thread: the file (a duplicate of the
/// writer's descriptor) and where to send the result.
struct WritebackRequest {
    file: File,
    done: mpsc::SyncSender<io::Result<()>>,
}

/// The process's writeback thread, started by the first file that needs
/// it and kept for the life of the process: every [`LocalFile`] of every
/// checkpoint sends it its `fdatasync`s, so writing a checkpoint starts no
/// thread (starting one per writeback took the address-space lock for the
/// new stack, which every allocating thread of the job waits on).
/// `None` if the thread could not be started; files then leave all the
/// syncing to their final fsync.
fn writeback_thread() -> Option<&'static mpsc::Sender<WritebackRequest>> {
    static THREAD: OnceLock<Option<mpsc::Sender<WritebackRequest>>> = OnceLock::new();
    THREAD
        .get_or_init(|| {
            let (requests, inbox) = mpsc::channel::<WritebackRequest>();
            std::thread::Builder::new()
                // Linux keeps 15 bytes of a thread name.
                .name("rescale-fsync".into())
                .spawn(move || {
                    for WritebackRequest { file, done } in inbox {
                        // The file's writer may be gone (an aborted
                        // checkpoint); its result is then of no use.
                        let _ = done.send(file.sync_data());
                    }
                })
                .ok()
                .map(|_| requests)
        })
        .as_ref()
}

impl LocalFile {
    pub(super) fn new(file: File, path: PathBuf) -> Self {
        LocalFile {
            file,
            path,
            unsynced: 0,
            writeback: None,
        }
    }

    /// The result of the writeback in flight: `Some` once it has ended
    /// (and then none is in flight any more), `None` while it runs. With
    /// `wait`, waits for it to end.
    fn poll_writeback(&mut self, wait: bool) -> Option<Result<(), StateError>> {
        let answer = self.writeback.as_ref()?;
        // `None`: the writeback thread ended without answering.
        let synced = if wait {
            answer.recv().ok()
        } else {
            match answer.try_recv() {
                Err(mpsc::TryRecvError::Empty) => return None,
                received => received.ok(),
            }
        };
        self.writeback = None;
        Some(match synced {
            Some(synced) => synced.map_err(io_err(&self.path)),
            None => Err(StateError::Io {
                path: self.path.clone(),
                source: io::Error::other("the writeback thread ended"),
            }),
        })
    }

    /// Asks the writeback thread to sync what has been written so far.
    fn request_writeback(&mut self) -> Result<(), StateError> {
        let Some(thread) = writeback_thread() else {
            return Ok(());
        };
        let file = self.file.try_clone().map_err(io_err(&self.path))?;
        let (done, answer) = mpsc::sync_channel(1);
        if thread.send(WritebackRequest { file, done }).is_ok() {
            self.writeback = Some(answer);
        }
        Ok(())
    }
}

impl FileSink for LocalFile {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        self.file.write_all(bytes).map_err(io_err(&self.path))?;
        self.unsynced += bytes.len() as u64;
        if self.unsynced >= WRITEBACK_BYTES {
            if let Some(ended) = self.poll_writeback(false) {
                ended?;
            }
            if self.writeback.is_none() {
                self.request_writeback()?;
                self.unsynced = 0;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), StateError> {
        if let Some(ended) = self.poll_writeback(true) {
            ended?;
        }
        self.file.sync_all().map_err(io_err(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// Files past [`WRITEBACK_BYTES`] are synced in the background while
    /// they are written, by one thread that every file shares.
    #[test]
    fn large_files_sync_in_the_background_on_one_shared_thread() {
        let dir = tempfile::tempdir().unwrap();
        let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| i as u8).collect();
        let chunks = (WRITEBACK_BYTES / chunk.len() as u64) * 2 + 1;
        for name in ["first", "second"] {
            let path = dir.path().join(name);
            let mut file = LocalFile::new(File::create(&path).unwrap(), path.clone());
            let mut requests = 0;
            for _ in 0..chunks {
                file.write(&chunk).unwrap();
                requests += usize::from(file.unsynced == 0);
            }
            assert!(requests >= 1, "{name}: no writeback requested");
            Box::new(file).finish().unwrap();
            let written = fs::read(&path).unwrap();
            assert_eq!(written.len() as u64, chunks * chunk.len() as u64);
            assert!(written.chunks(chunk.len()).all(|c| c == chunk));
        }
        // Threads are listed by name only on Linux.
        #[cfg(target_os = "linux")]
        let writeback_threads = fs::read_dir("/proc/self/task")
            .unwrap()
            .filter(|task| {
                let comm = fs::read_to_string(task.as_ref().unwrap().path().join("comm"));
                comm.is_ok_and(|comm| comm.trim() == "rescale-fsync")
            })
            .count();
        #[cfg(target_os = "linux")]
        assert_eq!(writeback_threads, 1);
    }
}
