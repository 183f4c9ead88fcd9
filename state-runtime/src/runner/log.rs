//! A partitioned, append-only input log on local files: the runner's
//! Kafka-like source.
//!
//! A log is a folder with one file per partition, `partition-00000.log`, ...
//! Each file starts with the 8 magic bytes `RSLOG\0\0\x01` (format version 1),
//! then records, each framed as
//!
//! | bytes | field |
//! |---|---|
//! | 4 | payload length `n`, `u32` little-endian |
//! | 4 | CRC-32C of the payload, `u32` little-endian |
//! | n | the payload: one record encoded with the crate's codec (bincode 2) |
//!
//! A record's **offset** is the byte position of its frame in the file, so a
//! source resumes by seeking to the offset it checkpointed. A reader reports
//! a frame that is cut short or whose checksum does not match as a
//! [`LogError::Corrupt`] naming the file and the offset.
//!
//! ```
//! use state_runtime::runner::log::{LogReader, LogWriter};
//!
//! let dir = std::env::temp_dir().join(format!("rslog-doc-{}", std::process::id()));
//! let mut w = LogWriter::<(u32, i64)>::create(&dir, 2)?;
//! w.append(0, &(7, 100))?;
//! w.append(1, &(8, 5))?;
//! w.append(0, &(7, -40))?;
//! w.finish()?;
//!
//! let mut r = LogReader::<(u32, i64)>::open(&dir, 0, 0)?;
//! let (first_offset, first) = r.next_record()?.unwrap();
//! assert_eq!((first_offset, first), (8, (7, 100)));
//! let resume_at = r.offset(); // what a source checkpoints
//! let mut r = LogReader::<(u32, i64)>::open(&dir, 0, resume_at)?;
//! assert_eq!(r.next_record()?.map(|(_, rec)| rec), Some((7, -40)));
//! assert!(r.next_record()?.is_none());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), state_runtime::runner::log::LogError>(())
//! ```

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::StateError;

/// What can go wrong reading or writing an input log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A file of the log could not be read or written.
    #[error("input log {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A record of the log is cut short, fails its checksum, or does not
    /// decode as the record type.
    #[error("corrupt log {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The partition file (or the log folder).
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What was expected and what was found.
        reason: String,
    },

    /// A record was appended to a partition the log does not have.
    #[error("log {dir} has {partitions} partitions; there is no partition {partition}")]
    NoSuchPartition {
        /// The log's folder.
        dir: PathBuf,
        /// The partition asked for.
        partition: u32,
        /// How many partitions the log has.
        partitions: u32,
    },

    /// A record could not be encoded, or its encoding exceeds 64 MiB.
    #[error("log {path}: could not append a record: {message}")]
    Encode {
        /// The partition file.
        path: PathBuf,
        /// The codec's message.
        message: String,
    },
}

/// The magic bytes (and format version) at the start of every partition file.
pub const LOG_MAGIC: [u8; 8] = *b"RSLOG\0\0\x01";

/// Offset of the first record in a partition file.
pub const FIRST_OFFSET: u64 = LOG_MAGIC.len() as u64;

/// Largest record payload a reader accepts; a larger length is corruption.
const MAX_RECORD: u32 = 64 << 20;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The file of partition `partition` in the log folder `dir`.
pub fn partition_path(dir: &Path, partition: u32) -> PathBuf {
    dir.join(format!("partition-{partition:05}.log"))
}

/// The number of partitions of the log in `dir` (files `partition-*.log`
/// numbered from 0 without gaps).
pub fn partition_count(dir: &Path) -> Result<u32, LogError> {
    let mut n = 0;
    while partition_path(dir, n).exists() {
        n += 1;
    }
    if n == 0 {
        return Err(LogError::Corrupt {
            path: dir.to_path_buf(),
            offset: 0,
            reason: "no partition files (partition-00000.log, ...)".into(),
        });
    }
    Ok(n)
}

/// Writes a new log: creates the folder and one file per partition.
pub struct LogWriter<T> {
    dir: PathBuf,
    files: Vec<(PathBuf, BufWriter<File>)>,
    payload: Vec<u8>,
    _record: PhantomData<fn(&T)>,
}

impl<T: Serialize> LogWriter<T> {
    /// Creates `dir` (and parents) with `partitions` empty partition files,
    /// replacing files of the same names.
    pub fn create(dir: &Path, partitions: u32) -> Result<Self, LogError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut files = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let path = partition_path(dir, p);
            let mut w = BufWriter::new(File::create(&path).map_err(io_err(&path))?);
            w.write_all(&LOG_MAGIC).map_err(io_err(&path))?;
            files.push((path, w));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            payload: Vec::new(),
            _record: PhantomData,
        })
    }

    /// Appends `record` to `partition`. A partition the log does not have
    /// is [`LogError::NoSuchPartition`]; a record that does not encode,
    /// or whose encoding exceeds 64 MiB, is [`LogError::Encode`] naming
    /// the partition file.
    pub fn append(&mut self, partition: u32, record: &T) -> Result<(), LogError> {
        let partitions = self.files.len() as u32;
        let Some((path, w)) = self.files.get_mut(partition as usize) else {
            return Err(LogError::NoSuchPartition {
                dir: self.dir.clone(),
                partition,
                partitions,
            });
        };
        let encode_err = |message: String| LogError::Encode {
            path: path.clone(),
            message,
        };
        self.payload.clear();
        codec::encode_into(record, &mut self.payload, "log record").map_err(|e| match e {
            StateError::Encode { message, .. } => encode_err(message),
            other => encode_err(other.to_string()),
        })?;
        let len = u32::try_from(self.payload.len())
            .ok()
            .filter(|&l| l <= MAX_RECORD)
            .ok_or_else(|| {
                encode_err(format!(
                    "the record encodes to {} bytes, more than the limit of {MAX_RECORD}",
                    self.payload.len()
                ))
            })?;
        w.write_all(&len.to_le_bytes()).map_err(io_err(path))?;
        w.write_all(&crc32c::crc32c(&self.payload).to_le_bytes())
            .map_err(io_err(path))?;
        w.write_all(&self.payload).map_err(io_err(path))?;
        Ok(())
    }

    /// Flushes and fsyncs every partition file.
    pub fn finish(self) -> Result<(), LogError> {
        for (path, w) in self.files {
            let file = w.into_inner().map_err(|e| LogError::Io {
                path: path.clone(),
                source: e.into_error(),
            })?;
            file.sync_all().map_err(io_err(&path))?;
        }
        Ok(())
    }
}

/// Reads one partition from a given offset.
pub struct LogReader<T> {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
    len: u64,
    payload: Vec<u8>,
    _record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> LogReader<T> {
    /// Opens partition `partition` of the log in `dir` at byte `offset`
    /// (`0` or [`FIRST_OFFSET`] for the beginning).
    pub fn open(dir: &Path, partition: u32, offset: u64) -> Result<Self, LogError> {
        let path = partition_path(dir, partition);
        let mut file = File::open(&path).map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        let mut magic = [0u8; 8];
        if len < FIRST_OFFSET || file.read_exact(&mut magic).is_err() || magic != LOG_MAGIC {
            return Err(LogError::Corrupt {
                path,
                offset: 0,
                reason: format!(
                    "missing log magic {LOG_MAGIC:?} (not a rescale log, or a newer version)"
                ),
            });
        }
        let offset = offset.max(FIRST_OFFSET);
        if offset > len {
            return Err(LogError::Corrupt {
                path,
                offset,
                reason: format!("offset is past the end of the partition ({len} bytes)"),
            });
        }
        file.seek(SeekFrom::Start(offset)).map_err(io_err(&path))?;
        Ok(Self {
            path,
            reader: BufReader::with_capacity(1 << 16, file),
            offset,
            len,
            payload: Vec::new(),
            _record: PhantomData,
        })
    }

    /// The offset of the next record: where a restored source resumes.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next record and its offset, or `None` at the end of the partition.
    pub fn next_record(&mut self) -> Result<Option<(u64, T)>, LogError> {
        if self.offset == self.len {
            return Ok(None);
        }
        let at = self.offset;
        let corrupt = |reason: String| LogError::Corrupt {
            path: self.path.clone(),
            offset: at,
            reason,
        };
        if self.len - at < 8 {
            return Err(corrupt(format!(
                "record header cut short ({} bytes left)",
                self.len - at
            )));
        }
        let mut header = [0u8; 8];
        self.reader
            .read_exact(&mut header)
            .map_err(io_err(&self.path))?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len > MAX_RECORD || u64::from(len) > self.len - at - 8 {
            return Err(corrupt(format!(
                "record length {len} runs past the end of the partition ({} bytes left)",
                self.len - at - 8
            )));
        }
        self.payload.resize(len as usize, 0);
        self.reader
            .read_exact(&mut self.payload)
            .map_err(io_err(&self.path))?;
        let actual = crc32c::crc32c(&self.payload);
        if actual != crc {
            return Err(corrupt(format!(
                "checksum mismatch: expected CRC-32C {crc:#010x}, found {actual:#010x}"
            )));
        }
        // The checksum matched: a record that does not decode was written
        // as another type.
        let record = codec::decode_exact(&self.payload, "log record").map_err(|e| {
            corrupt(match e {
                StateError::Decode { message, .. } => format!(
                    "the record does not decode as `{}`: {message}",
                    std::any::type_name::<T>()
                ),
                other => other.to_string(),
            })
        })?;
        self.offset = at + 8 + u64::from(len);
        Ok(Some((at, record)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rslog-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn write_log(dir: &Path, records: &[(u32, u64)]) {
        let mut w = LogWriter::create(dir, 2).unwrap();
        for (p, r) in records {
            w.append(*p, r).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn misuse_and_foreign_records_are_typed_errors_naming_where() {
        let dir = temp_dir("misuse");
        let mut w = LogWriter::<String>::create(&dir, 2).unwrap();
        match w.append(5, &"x".to_string()).unwrap_err() {
            LogError::NoSuchPartition {
                dir: d,
                partition,
                partitions,
            } => assert_eq!((d, partition, partitions), (dir.clone(), 5, 2)),
            other => panic!("{other:?}"),
        }
        w.append(1, &"hello".to_string()).unwrap();
        w.finish().unwrap();
        // Read back as another type: the checksum holds, the record does
        // not decode; the error names the file, the offset and the type.
        let mut r = LogReader::<u64>::open(&dir, 1, 0).unwrap();
        match r.next_record().unwrap_err() {
            LogError::Corrupt {
                path,
                offset,
                reason,
            } => {
                assert_eq!(path, partition_path(&dir, 1));
                assert_eq!(offset, LOG_MAGIC.len() as u64);
                assert!(reason.contains("does not decode as `u64`"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn resume_from_every_offset_reads_the_rest_exactly() {
        let dir = temp_dir("resume");
        let records: Vec<(u32, u64)> = (0..50).map(|i| ((i % 2) as u32, i as u64 * 1000)).collect();
        write_log(&dir, &records);
        assert_eq!(partition_count(&dir).unwrap(), 2);
        let mut all = Vec::new();
        let mut r = LogReader::<u64>::open(&dir, 1, 0).unwrap();
        while let Some((off, rec)) = r.next_record().unwrap() {
            all.push((off, rec));
        }
        let expected: Vec<u64> = records
            .iter()
            .filter(|(p, _)| *p == 1)
            .map(|(_, r)| *r)
            .collect();
        assert_eq!(all.iter().map(|(_, r)| *r).collect::<Vec<_>>(), expected);
        for (i, (off, _)) in all.iter().enumerate() {
            let mut r = LogReader::<u64>::open(&dir, 1, *off).unwrap();
            let mut rest = Vec::new();
            while let Some((_, rec)) = r.next_record().unwrap() {
                rest.push(rec);
            }
            assert_eq!(rest, expected[i..]);
        }
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn corruption_and_truncation_are_errors_with_offset() {
        let dir = temp_dir("corrupt");
        write_log(&dir, &[(0, 1), (0, 2), (0, 3)]);
        let path = partition_path(&dir, 0);
        let good = fs::read(&path).unwrap();
        // Flip every byte after the magic: an error or the same records, never a panic.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            fs::write(&path, &bad).unwrap();
            let res = LogReader::<u64>::open(&dir, 0, 0).and_then(|mut r| {
                let mut v = Vec::new();
                while let Some((_, rec)) = r.next_record()? {
                    v.push(rec);
                }
                Ok(v)
            });
            match res {
                Ok(v) => panic!("flipping byte {i} went unnoticed: {v:?}"),
                Err(e) => assert!(e.to_string().contains("partition-00000.log"), "{e}"),
            }
        }
        // Truncate at every length: an error naming the offset, or a clean prefix at a frame boundary.
        for cut in FIRST_OFFSET as usize..good.len() {
            fs::write(&path, &good[..cut]).unwrap();
            let mut r = LogReader::<u64>::open(&dir, 0, 0).unwrap();
            let mut n = 0;
            let res = loop {
                match r.next_record() {
                    Ok(Some(_)) => n += 1,
                    Ok(None) => break Ok(n),
                    Err(e) => break Err(e),
                }
            };
            match res {
                Ok(n) => assert!(n < 3, "cut at {cut} still read all records"),
                Err(e) => assert!(matches!(e, LogError::Corrupt { .. }), "{e}"),
            }
        }
        fs::remove_dir_all(&dir).ok();
    }
}
