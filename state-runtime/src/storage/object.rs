//! Checkpoints in an object store (S3-compatible), behind the `object-store`
//! feature.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, WriteMultipart};

use super::{
    CheckpointStorage, FileSink, FolderListing, MANIFEST_NAME, Pending, ReadCounter, ReadStats,
    ReferencedFiles, RetentionReport, check_increasing, check_range, checkpoint_folder_name,
    parse_checkpoint_folder_name, plan_retention, validate_file_name,
};
use crate::error::StateError;

/// Connection settings of an S3-compatible bucket for [`ObjectStorage::s3`].
///
/// ```
/// use state_runtime::storage::S3Config;
/// let config = S3Config::new("my-bucket", "jobs/wordcount")
///     .with_endpoint("http://127.0.0.1:9000")
///     .with_credentials("key", "secret");
/// assert_eq!(config.region, "us-east-1");
/// assert!(config.allow_http);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket (it must exist).
    pub bucket: String,
    /// Key prefix under which the `chk-<id>/` folders live (may be empty).
    pub prefix: String,
    /// Endpoint URL for S3-compatible servers (MinIO, moto, ...); `None` for
    /// AWS itself.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` unless set).
    pub region: String,
    /// Access key id; `None` takes credentials from the environment (instance
    /// metadata, ...).
    pub access_key_id: Option<String>,
    /// Secret access key, with `access_key_id`.
    pub secret_access_key: Option<String>,
    /// Whether a plain `http://` endpoint is allowed (set by
    /// [`with_endpoint`](Self::with_endpoint) for `http://` URLs).
    pub allow_http: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl S3Config {
    /// A bucket on AWS in `us-east-1` with credentials from the environment.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        S3Config {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: None,
            region: "us-east-1".to_owned(),
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
        }
    }

    /// Uses an S3-compatible server at `endpoint` (path-style requests);
    /// an `http://` endpoint also sets [`allow_http`](Self::allow_http).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        let endpoint = endpoint.into();
        self.allow_http |= endpoint.starts_with("http://");
        self.endpoint = Some(endpoint);
        self
    }

    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Sets static credentials.
    pub fn with_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret_access_key.into());
        self
    }
}

/// Checkpoints in an object store: objects `<prefix>/chk-<id>/<name>` plus
/// `<prefix>/chk-<id>/_MANIFEST`.
///
/// Commit protocol: every data object is put (and acknowledged) before the
/// manifest object is put; a PUT is atomic per object and S3 lists and reads
/// its own writes, so a listed manifest implies its data objects. Reads are
/// range GETs of exactly the bytes asked for.
///
/// The API is synchronous: the handle owns a private tokio runtime of two
/// worker threads (which carry a multipart upload's parts while the caller
/// writes on) and blocks on it. Do not call it from inside an async runtime (it
/// returns a [`StateError::Storage`] error instead of blocking there); use
/// `spawn_blocking`.
///
/// ```
/// use std::sync::Arc;
/// use state_runtime::storage::{CheckpointStorage, ObjectStorage};
/// use state_runtime::storage::object_store::memory::InMemory;
///
/// let storage = ObjectStorage::new(Arc::new(InMemory::new()), "jobs/a", "memory://")?;
/// storage.write_checkpoint(1, &[("state.bin", b"hello")], b"manifest")?;
/// assert_eq!(storage.latest()?, Some(1));
/// assert_eq!(storage.read_range(1, "state.bin", 1..4)?, b"ell");
/// # Ok::<(), state_runtime::StateError>(())
/// ```
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// `s3://bucket` or what the caller gave.
    base_url: String,
    /// `base_url` plus the prefix.
    url: String,
    runtime: tokio::runtime::Runtime,
    pending: Pending,
    reads: ReadCounter,
}

impl fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("url", &self.url)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn storage_err(
    operation: &'static str,
    location: impl Into<String>,
) -> impl FnOnce(object_store::Error) -> StateError {
    let location = location.into();
    move |source| StateError::Storage {
        operation,
        location,
        source: Box::new(source),
    }
}

impl ObjectStorage {
    /// Checkpoints under `prefix` of any object store. `url` is only used in
    /// messages (e.g. `s3://bucket`).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        url: impl Into<String>,
    ) -> Result<Self, StateError> {
        let prefix_str = prefix.trim_matches('/');
        let base_url = url.into().trim_end_matches('/').to_owned();
        let location = format!("{base_url}/{prefix_str}");
        let prefix = Path::parse(prefix_str).map_err(|e| StateError::Storage {
            operation: "parse prefix",
            location: location.clone(),
            source: Box::new(e),
        })?;
        // Two workers: the parts of a multipart upload go out while the
        // writer encodes the next ones.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rescale-object-store")
            .enable_all()
            .build()
            .map_err(|source| StateError::Storage {
                operation: "start runtime",
                location: location.clone(),
                source: Box::new(source),
            })?;
        Ok(ObjectStorage {
            store,
            prefix,
            base_url,
            url: location,
            runtime,
            pending: Pending::default(),
            reads: ReadCounter::default(),
        })
    }

    /// Checkpoints in an S3 (or S3-compatible) bucket.
    pub fn s3(config: &S3Config) -> Result<Self, StateError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_allow_http(config.allow_http);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let url = format!("s3://{}", config.bucket);
        let store = builder
            .build()
            .map_err(storage_err("configure S3", url.clone()))?;
        Self::new(Arc::new(store), &config.prefix, url)
    }

    /// Runs `fut` on the private runtime.
    fn block_on<F: Future>(
        &self,
        operation: &'static str,
        fut: F,
    ) -> Result<F::Output, StateError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(StateError::Storage {
                operation,
                location: self.url.clone(),
                source: "the synchronous ObjectStorage API was called from inside an async runtime; call it from spawn_blocking or a plain thread".into(),
            });
        }
        Ok(self.runtime.block_on(fut))
    }

    fn folder_path(&self, checkpoint_id: u64) -> Path {
        self.prefix
            .clone()
            .join(checkpoint_folder_name(checkpoint_id).as_str())
    }

    fn object_path(&self, checkpoint_id: u64, name: &str) -> Path {
        self.folder_path(checkpoint_id).join(name)
    }

    /// A data file to write in pieces; with `create_only`, a file that fits
    /// in one put refuses an existing object.
    fn object_file(
        &self,
        checkpoint_id: u64,
        name: &str,
        create_only: bool,
    ) -> Result<Box<dyn FileSink + '_>, StateError> {
        validate_file_name(name)?;
        Ok(Box::new(ObjectFile {
            storage: self,
            path: self.object_path(checkpoint_id, name),
            buffer: Vec::new(),
            upload: None,
            create_only,
        }))
    }

    fn display(&self, path: &Path) -> String {
        format!("{}/{}", self.base_url, path)
    }

    /// Every object under `prefix` (recursively).
    fn list_objects(&self, prefix: &Path) -> Result<Vec<Path>, StateError> {
        let stream = if prefix.as_ref().is_empty() {
            self.store.list(None)
        } else {
            self.store.list(Some(prefix))
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .block_on("list", stream.try_collect())?
            .map_err(storage_err("list", self.display(prefix)))?;
        Ok(metas.into_iter().map(|m| m.location).collect())
    }

    /// Every checkpoint folder (complete or not), ascending.
    fn folders(&self) -> Result<Vec<FolderListing>, StateError> {
        let mut folders: BTreeMap<u64, FolderListing> = BTreeMap::new();
        for path in self.list_objects(&self.prefix)? {
            let Some(parts) = path.prefix_match(&self.prefix) else {
                continue;
            };
            let parts: Vec<String> = parts.map(|p| p.as_ref().to_owned()).collect();
            let [folder, name] = parts.as_slice() else {
                continue;
            };
            let Some(id) = parse_checkpoint_folder_name(folder) else {
                continue;
            };
            let entry = folders.entry(id).or_insert_with(|| FolderListing {
                id,
                complete: false,
                files: Vec::new(),
            });
            if name == MANIFEST_NAME {
                entry.complete = true;
            } else {
                entry.files.push(name.clone());
            }
        }
        let mut out: Vec<FolderListing> = folders.into_values().collect();
        for f in &mut out {
            f.files.sort();
        }
        Ok(out)
    }

    fn delete(&self, path: &Path) -> Result<(), StateError> {
        match self.block_on("delete", self.store.delete(path))? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_err("delete", self.display(path))(e)),
        }
    }

    fn delete_folder(&self, checkpoint_id: u64) -> Result<(), StateError> {
        for path in self.list_objects(&self.folder_path(checkpoint_id))? {
            self.delete(&path)?;
        }
        Ok(())
    }

    fn head_len(&self, path: &Path) -> Result<u64, StateError> {
        match self.block_on("head", self.store.head(path))? {
            Ok(meta) => Ok(meta.size),
            Err(object_store::Error::NotFound { .. }) => Err(StateError::FileNotFound {
                location: self.display(path),
            }),
            Err(e) => Err(storage_err("head", self.display(path))(e)),
        }
    }
}

/// Size of each part of a multipart upload (S3 wants at least 5 MiB for
/// every part but the last).
const PART_BYTES: usize = 8 << 20;

/// Multipart uploads of one file in flight at once: with the part being
/// filled, at most three parts of memory.
const PARTS_IN_FLIGHT: usize = 2;

/// A data file written in pieces: one put if it stays under a part, else a
/// multipart upload of [`PART_BYTES`] parts, [`PARTS_IN_FLIGHT`] at a time.
struct ObjectFile<'s> {
    storage: &'s ObjectStorage,
    path: Path,
    /// Bytes not yet handed to the upload.
    buffer: Vec<u8>,
    upload: Option<WriteMultipart>,
    /// A staged file: a single-part file is put create-only.
    create_only: bool,
}

impl ObjectFile<'_> {
    fn error(&self, operation: &'static str) -> impl FnOnce(object_store::Error) -> StateError {
        storage_err(operation, self.storage.display(&self.path))
    }
}

impl FileSink for ObjectFile<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() < PART_BYTES {
            return Ok(());
        }
        let storage = self.storage;
        if self.upload.is_none() {
            let upload = storage
                .block_on("put multipart", storage.store.put_multipart(&self.path))?
                .map_err(self.error("start multipart upload"))?;
            self.upload = Some(WriteMultipart::new_with_chunk_size(upload, PART_BYTES));
        }
        let buffer = std::mem::take(&mut self.buffer);
        let upload = self.upload.as_mut().expect("started above");
        let written = storage.block_on("put part", async {
            upload.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            upload.write(&buffer);
            Ok(())
        })?;
        self.buffer = buffer;
        self.buffer.clear();
        written.map_err(self.error("upload part"))
    }

    fn finish(mut self: Box<Self>) -> Result<(), StateError> {
        let storage = self.storage;
        let buffer = std::mem::take(&mut self.buffer);
        match self.upload.take() {
            None if self.create_only => {
                let payload = PutPayload::from(buffer);
                let put = storage.block_on(
                    "put",
                    storage
                        .store
                        .put_opts(&self.path, payload, PutMode::Create.into()),
                )?;
                match put {
                    Ok(_) => {}
                    Err(object_store::Error::AlreadyExists { .. }) => {
                        return Err(StateError::FileExists {
                            location: storage.display(&self.path),
                        });
                    }
                    Err(e) => return Err(self.error("put")(e)),
                }
            }
            None => {
                let payload = PutPayload::from(buffer);
                storage
                    .block_on("put", storage.store.put(&self.path, payload))?
                    .map_err(self.error("put"))?;
            }
            Some(mut upload) => {
                storage
                    .block_on("complete multipart upload", async move {
                        upload.write(&buffer);
                        upload.finish().await
                    })?
                    .map_err(self.error("complete multipart upload"))?;
            }
        }
        Ok(())
    }
}

impl Drop for ObjectFile<'_> {
    /// An unfinished multipart upload is aborted (best effort), so that its
    /// parts do not linger in the bucket.
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            let _ = self
                .storage
                .block_on("abort multipart upload", upload.abort());
        }
    }
}

impl CheckpointStorage for ObjectStorage {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn begin(&self, checkpoint_id: u64) -> Result<(), StateError> {
        check_increasing(checkpoint_id, &self.list()?, &self.location())?;
        // Leftovers of an interrupted attempt.
        self.delete_folder(checkpoint_id)?;
        self.pending.insert(checkpoint_id);
        tracing::debug!(checkpoint_id, url = %self.url, "checkpoint begun");
        Ok(())
    }

    fn write_file(&self, checkpoint_id: u64, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        self.pending.check(checkpoint_id, &self.location())?;
        validate_file_name(name)?;
        let path = self.object_path(checkpoint_id, name);
        let payload = PutPayload::from(bytes.to_vec());
        self.block_on("put", self.store.put(&path, payload))?
            .map_err(storage_err("put", self.display(&path)))?;
        Ok(())
    }

    fn create_file<'s>(
        &'s self,
        checkpoint_id: u64,
        name: &str,
    ) -> Result<Box<dyn FileSink + 's>, StateError> {
        self.pending.check(checkpoint_id, &self.location())?;
        self.object_file(checkpoint_id, name, false)
    }

    fn create_staged_file<'s>(
        &'s self,
        checkpoint_id: u64,
        name: &str,
    ) -> Result<Box<dyn FileSink + 's>, StateError> {
        self.object_file(checkpoint_id, name, true)
    }

    fn commit_create_only(&self, checkpoint_id: u64, manifest: &[u8]) -> Result<(), StateError> {
        let path = self.object_path(checkpoint_id, MANIFEST_NAME);
        let payload = PutPayload::from(manifest.to_vec());
        let put = self.block_on(
            "put",
            self.store.put_opts(&path, payload, PutMode::Create.into()),
        )?;
        match put {
            Ok(_) => {
                tracing::debug!(checkpoint_id, url = %self.url, "checkpoint committed (create-only)");
                Ok(())
            }
            Err(object_store::Error::AlreadyExists { .. }) => {
                Err(StateError::CheckpointAlreadyCommitted {
                    checkpoint_id,
                    location: self.location(),
                })
            }
            Err(e) => Err(storage_err("put manifest", self.display(&path))(e)),
        }
    }

    fn commit(&self, checkpoint_id: u64, manifest: &[u8]) -> Result<(), StateError> {
        self.pending.check(checkpoint_id, &self.location())?;
        let path = self.object_path(checkpoint_id, MANIFEST_NAME);
        let payload = PutPayload::from(manifest.to_vec());
        self.block_on("put", self.store.put(&path, payload))?
            .map_err(storage_err("put manifest", self.display(&path)))?;
        self.pending.remove(checkpoint_id);
        tracing::debug!(checkpoint_id, url = %self.url, "checkpoint committed");
        Ok(())
    }

    fn abort(&self, checkpoint_id: u64) -> Result<(), StateError> {
        self.pending.check(checkpoint_id, &self.location())?;
        self.delete_folder(checkpoint_id)?;
        self.pending.remove(checkpoint_id);
        Ok(())
    }

    fn list(&self) -> Result<Vec<u64>, StateError> {
        Ok(self
            .folders()?
            .into_iter()
            .filter(|f| f.complete)
            .map(|f| f.id)
            .collect())
    }

    fn read_manifest(&self, checkpoint_id: u64) -> Result<Vec<u8>, StateError> {
        let path = self.object_path(checkpoint_id, MANIFEST_NAME);
        let fetched = self.block_on("get", async { self.store.get(&path).await?.bytes().await })?;
        let bytes = match fetched {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StateError::CheckpointNotFound {
                    checkpoint_id,
                    location: self.display(&self.folder_path(checkpoint_id)),
                });
            }
            Err(e) => return Err(storage_err("get manifest", self.display(&path))(e)),
        };
        self.reads.manifest(bytes.len());
        Ok(Vec::from(bytes))
    }

    fn list_files(&self, checkpoint_id: u64) -> Result<Vec<String>, StateError> {
        let folder = self.folder_path(checkpoint_id);
        let objects = self.list_objects(&folder)?;
        if objects.is_empty() {
            return Err(StateError::CheckpointNotFound {
                checkpoint_id,
                location: self.display(&folder),
            });
        }
        let mut files: Vec<String> = objects
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .filter(|name| name != MANIFEST_NAME)
            .collect();
        files.sort();
        Ok(files)
    }

    fn file_len(&self, checkpoint_id: u64, name: &str) -> Result<u64, StateError> {
        validate_file_name(name)?;
        self.head_len(&self.object_path(checkpoint_id, name))
    }

    fn read_range(
        &self,
        checkpoint_id: u64,
        name: &str,
        range: Range<u64>,
    ) -> Result<Vec<u8>, StateError> {
        validate_file_name(name)?;
        let path = self.object_path(checkpoint_id, name);
        if range.start >= range.end {
            // No GET for an empty (or reversed) range: check it against the length.
            check_range(&self.display(&path), &range, self.head_len(&path)?)?;
            self.reads.range(0);
            return Ok(Vec::new());
        }
        let bytes = match self.block_on("get range", self.store.get_range(&path, range.clone()))? {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StateError::FileNotFound {
                    location: self.display(&path),
                });
            }
            Err(e) => {
                // A range past the end fails in the store; say so plainly.
                let len = self.head_len(&path)?;
                check_range(&self.display(&path), &range, len)?;
                return Err(storage_err("get range", self.display(&path))(e));
            }
        };
        if bytes.len() as u64 != range.end - range.start {
            let len = self.head_len(&path)?;
            check_range(&self.display(&path), &range, len)?;
            return Err(StateError::Storage {
                operation: "get range",
                location: self.display(&path),
                source: format!(
                    "asked for {} bytes, got {}",
                    range.end - range.start,
                    bytes.len()
                )
                .into(),
            });
        }
        self.reads.range(bytes.len());
        Ok(Vec::from(bytes))
    }

    fn read_stats(&self) -> ReadStats {
        self.reads.get()
    }

    fn retain_last(
        &self,
        keep: usize,
        referenced: ReferencedFiles<'_>,
    ) -> Result<RetentionReport, StateError> {
        let folders = self.folders()?;
        let plan = plan_retention(
            &folders,
            keep,
            &self.pending.snapshot(),
            &|id| self.read_manifest(id),
            referenced,
        )?;
        for &id in &plan.drop_manifests {
            self.delete(&self.object_path(id, MANIFEST_NAME))?;
        }
        for file in &plan.delete_files {
            self.delete(&self.object_path(file.checkpoint_id, &file.name))?;
        }
        for folder in &plan.remove_folders {
            for name in &folder.files {
                self.delete(&self.object_path(folder.id, name))?;
            }
        }
        tracing::debug!(
            url = %self.url,
            retained = ?plan.report.retained,
            removed = ?plan.report.removed_checkpoints,
            removed_incomplete = ?plan.report.removed_incomplete,
            "checkpoint retention"
        );
        Ok(plan.report)
    }
}
