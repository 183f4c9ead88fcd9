//! Formats v1 to v4: byte-level encoding and decoding of the manifest and
//! of the data files' header (see `state-runtime/FORMAT.md`). Version 2 adds
//! each state's recorded type, version 3 the layers of incremental keyed
//! sections, version 4 layers whose key groups are partly whole and partly
//! deltas; older manifests still decode (their states have no recorded
//! type, their keyed sections are full).
//!
//! Decoding never trusts a count or a length: each is checked against the
//! bytes that remain before anything is allocated or sliced, so a corrupt or
//! hostile manifest gives an error, never a panic or a large allocation.

use crate::checkpoint::{KeyedLayer, Layers, Parts};
use crate::error::StateError;
use crate::keygroup::{AssignerKind, KeyGroupAssigner, KeyGroupRange, MaxParallelism};
use crate::operator::StateMode;
use crate::schema::StateType;

/// The format version this build writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 4;

/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// First 8 bytes of a manifest.
pub(crate) const MANIFEST_MAGIC: [u8; 8] = *b"RSCLMANI";

/// First 8 bytes of a data file.
pub(crate) const DATA_MAGIC: [u8; 8] = *b"RSCLDATA";

/// Length of a data file's header; the payload starts here, and every offset
/// in the manifest is relative to it.
pub const DATA_HEADER_LEN: u64 = 16;

/// Length of the manifest's fixed header (magic, version, flags).
const MANIFEST_HEADER_LEN: usize = 16;

/// The decoded manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// The version it was written in (encoding always writes
    /// [`FORMAT_VERSION`]).
    pub(crate) format_version: u32,
    pub(crate) checkpoint_id: u64,
    pub(crate) created_unix_ms: u64,
    pub(crate) operators: Vec<OperatorManifest>,
}

/// One operator in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OperatorManifest {
    pub(crate) name: String,
    /// `None`: the operator has no keyed state.
    pub(crate) assigner: Option<KeyGroupAssigner>,
    /// Operator states: name, mode, item type name, recorded type.
    pub(crate) states: Vec<(String, StateMode, String, Option<StateType>)>,
    /// Keyed states: name, container type name, recorded type.
    pub(crate) keyed_states: Vec<(String, String, Option<StateType>)>,
    /// One per subtask; its length is the parallelism.
    pub(crate) subtasks: Vec<SubtaskManifest>,
}

/// One subtask's data file in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubtaskManifest {
    pub(crate) file: String,
    /// Whole file, header included.
    pub(crate) file_len: u64,
    /// CRC-32C of the whole payload.
    pub(crate) payload_crc: u32,
    /// Per operator state: the `len + 1` item offsets and the `len` item CRCs.
    pub(crate) items: Vec<(Vec<u64>, Vec<u32>)>,
    /// The keyed section: owned key groups, `kgs * S + 1` offsets, one CRC
    /// per key group.
    pub(crate) keyed: Option<(KeyGroupRange, Vec<u64>, Vec<u32>)>,
    /// Version 3: whether the keyed sections are deltas, and the earlier
    /// layers they build on (always full before version 3).
    pub(crate) layers: Layers,
}

fn mode_code(mode: StateMode) -> u8 {
    match mode {
        StateMode::Split => 1,
        StateMode::Union => 2,
        StateMode::Broadcast => 3,
        StateMode::Keyed => 4,
    }
}

fn assigner_code(kind: AssignerKind) -> u8 {
    match kind {
        AssignerKind::Native => 1,
        AssignerKind::Flink => 2,
    }
}

struct Writer(Vec<u8>);

impl Writer {
    /// A layer's kinds: 0 (every key group whole), 1 (every one a delta),
    /// or 2 and one bit per key group, set when whole (least significant
    /// first).
    fn parts(&mut self, parts: &Parts) {
        match parts {
            Parts::Whole => self.u8(0),
            Parts::Delta => self.u8(1),
            Parts::Mixed(whole) => {
                self.u8(2);
                for chunk in whole.chunks(8) {
                    let byte = chunk
                        .iter()
                        .enumerate()
                        .fold(0u8, |b, (i, &w)| b | (u8::from(w) << i));
                    self.u8(byte);
                }
            }
        }
    }

    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, v: usize) {
        self.u32(u32::try_from(v).expect("counts checked by the writer"));
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    /// A recorded type: version (0: none), item shape, key shape (empty:
    /// none).
    /// Per key group, the end of each of `states` sections, then its CRC.
    fn key_groups(&mut self, bounds: &[u64], crcs: &[u32], states: usize) {
        for (g, crc) in crcs.iter().enumerate() {
            for end in &bounds[g * states + 1..(g + 1) * states + 1] {
                self.u64(*end);
            }
            self.u32(*crc);
        }
    }

    fn state_type(&mut self, ty: Option<&StateType>) {
        self.u32(ty.map_or(0, StateType::version));
        self.str(ty.and_then(StateType::shape).unwrap_or(""));
        self.str(ty.and_then(StateType::key_shape).unwrap_or(""));
    }
}

impl Manifest {
    /// The manifest's bytes. Counts and string lengths must fit in a `u32`
    /// (the writer checks).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.0.extend_from_slice(&MANIFEST_MAGIC);
        w.u32(FORMAT_VERSION);
        w.u32(0); // flags
        w.u64(self.checkpoint_id);
        w.u64(self.created_unix_ms);
        w.len(self.operators.len());
        for op in &self.operators {
            w.str(&op.name);
            w.len(op.subtasks.len());
            match op.assigner {
                Some(a) => {
                    w.u8(assigner_code(a.kind()));
                    w.u32(a.max_parallelism().get());
                }
                None => {
                    w.u8(0);
                    w.u32(0);
                }
            }
            w.len(op.states.len());
            for (name, mode, item_type, ty) in &op.states {
                w.str(name);
                w.u8(mode_code(*mode));
                w.str(item_type);
                w.state_type(ty.as_ref());
            }
            w.len(op.keyed_states.len());
            for (name, container, ty) in &op.keyed_states {
                w.str(name);
                w.str(container);
                w.state_type(ty.as_ref());
            }
            for sub in &op.subtasks {
                w.str(&sub.file);
                w.u64(sub.file_len);
                w.u32(sub.payload_crc);
                for (bounds, crcs) in &sub.items {
                    w.u64(crcs.len() as u64);
                    w.u64(bounds[0]);
                    for (end, crc) in bounds[1..].iter().zip(crcs) {
                        w.u64(*end);
                        w.u32(*crc);
                    }
                }
                if let Some((range, bounds, crcs)) = &sub.keyed {
                    w.u32(range.start());
                    w.u32(range.end_exclusive());
                    w.u64(bounds[0]);
                    let s = op.keyed_states.len();
                    w.key_groups(bounds, crcs, s);
                    w.parts(&sub.layers.parts);
                    w.len(sub.layers.earlier.len());
                    for layer in &sub.layers.earlier {
                        w.u64(layer.checkpoint_id);
                        w.str(&layer.file);
                        w.u64(layer.file_len);
                        w.parts(&layer.parts);
                        w.u64(layer.bounds[0]);
                        w.key_groups(&layer.bounds, &layer.crcs, s);
                    }
                }
            }
        }
        let crc = crc32c::crc32c(&w.0);
        w.u32(crc);
        w.0
    }

    /// Decodes and checks a manifest read from `path` (named in errors).
    pub(crate) fn decode(bytes: &[u8], path: &str) -> Result<Manifest, StateError> {
        Self::decode_inner(bytes, path, true)
    }

    /// [`decode`](Self::decode), optionally without checking the CRC (for
    /// fuzzing the structure behind it).
    pub(crate) fn decode_inner(
        bytes: &[u8],
        path: &str,
        check_crc: bool,
    ) -> Result<Manifest, StateError> {
        let corrupt = |offset: u64, expected: &str, found: String| StateError::Corrupt {
            path: path.to_owned(),
            offset,
            expected: expected.to_owned(),
            found,
        };
        if bytes.len() < MANIFEST_HEADER_LEN + 4 {
            return Err(corrupt(
                0,
                "a manifest of at least 20 bytes",
                format!("{} bytes", bytes.len()),
            ));
        }
        if bytes[..8] != MANIFEST_MAGIC {
            return Err(corrupt(
                0,
                "magic bytes \"RSCLMANI\"",
                format!("{:?}", String::from_utf8_lossy(&bytes[..8])),
            ));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let body_end = bytes.len() - 4;
        let stored_crc = u32::from_le_bytes(bytes[body_end..].try_into().expect("4 bytes"));
        let actual_crc = crc32c::crc32c(&bytes[..body_end]);
        let crc_ok = stored_crc == actual_crc;
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            // Header and trailing CRC keep their meaning in every version: a
            // valid CRC means a genuinely newer file, not a flipped byte.
            if version > FORMAT_VERSION && crc_ok {
                return Err(StateError::UnsupportedFormatVersion {
                    path: path.to_owned(),
                    found: version,
                    supported: FORMAT_VERSION,
                });
            }
            return Err(corrupt(
                8,
                &format!("format version {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}"),
                format!("version {version} (and a CRC-32C mismatch)"),
            ));
        }
        if check_crc && !crc_ok {
            return Err(corrupt(
                0,
                &format!(
                    "CRC-32C {stored_crc:#010x} (stored at offset {body_end}) of the manifest's first {body_end} bytes"
                ),
                format!("{actual_crc:#010x}"),
            ));
        }
        let mut r = Reader {
            bytes: &bytes[..body_end],
            pos: 8 + 4,
            path,
            version,
        };
        let flags = r.u32()?;
        if flags != 0 {
            return Err(corrupt(12, "flags 0", format!("{flags:#x}")));
        }
        let checkpoint_id = r.u64()?;
        let created_unix_ms = r.u64()?;
        let n_ops = r.count(1, "operators")?;
        let mut operators = Vec::new();
        for _ in 0..n_ops {
            operators.push(r.operator()?);
        }
        if r.pos != r.bytes.len() {
            return Err(corrupt(
                r.pos as u64,
                "the end of the manifest's body",
                format!("{} more bytes", r.bytes.len() - r.pos),
            ));
        }
        Ok(Manifest {
            format_version: version,
            checkpoint_id,
            created_unix_ms,
            operators,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a str,
    /// The manifest's format version.
    version: u32,
}

impl Reader<'_> {
    fn err(&self, expected: String, found: String) -> StateError {
        StateError::Corrupt {
            path: self.path.to_owned(),
            offset: self.pos as u64,
            expected,
            found,
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], StateError> {
        if self.remaining() < n {
            return Err(self.err(
                format!("{n} bytes of {what}"),
                format!("only {} bytes left in the manifest", self.remaining()),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1, "a u8")?[0])
    }

    fn u32(&mut self) -> Result<u32, StateError> {
        Ok(u32::from_le_bytes(
            self.take(4, "a u32")?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(
            self.take(8, "a u64")?.try_into().expect("8 bytes"),
        ))
    }

    /// A `u32` count of things that take at least `min_size` bytes each,
    /// checked against the remaining bytes.
    fn count(&mut self, min_size: usize, what: &str) -> Result<usize, StateError> {
        let at = self.pos;
        let n = self.u32()? as usize;
        self.check_count(at, n as u64, min_size, what)
    }

    fn check_count(
        &mut self,
        at: usize,
        n: u64,
        min_size: usize,
        what: &str,
    ) -> Result<usize, StateError> {
        let left = self.remaining() as u64;
        if n.saturating_mul(min_size as u64) > left {
            self.pos = at;
            return Err(self.err(
                format!("a count of {what} that fits the {left} bytes left"),
                format!("{n} {what}"),
            ));
        }
        Ok(n as usize)
    }

    fn str(&mut self, what: &str) -> Result<String, StateError> {
        let at = self.pos;
        let n = self.count(1, what)?;
        let bytes = self.take(n, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => {
                self.pos = at;
                Err(self.err(format!("{what} in UTF-8"), e.to_string()))
            }
        }
    }

    /// A recorded type (format v2; none in v1).
    fn state_type(&mut self) -> Result<Option<StateType>, StateError> {
        if self.version < 2 {
            return Ok(None);
        }
        let version = self.u32()?;
        let shape = self.str("a shape")?;
        let key_shape = self.str("a key shape")?;
        Ok((version > 0).then(|| StateType::recorded(version, shape, key_shape)))
    }

    fn operator(&mut self) -> Result<OperatorManifest, StateError> {
        let name = self.str("an operator name")?;
        // A subtask takes at least 16 bytes (file name length, length, CRC).
        let at = self.pos;
        let parallelism = self.count(16, "subtasks")?;
        if parallelism == 0 {
            self.pos = at;
            return Err(self.err("a parallelism of at least 1".into(), "0".into()));
        }
        let at = self.pos;
        let kind = self.u8()?;
        let max_p = self.u32()?;
        let assigner = match (kind, max_p) {
            (0, 0) => None,
            (1 | 2, m) => {
                let max = MaxParallelism::new(m).map_err(|e| {
                    self.err("a max parallelism in 1..=32768".into(), e.to_string())
                })?;
                Some(if kind == 1 {
                    KeyGroupAssigner::native(max)
                } else {
                    KeyGroupAssigner::flink(max)
                })
            }
            (k, m) => {
                self.pos = at;
                return Err(self.err(
                    "assigner 0 (none, max parallelism 0), 1 (native) or 2 (flink)".into(),
                    format!("assigner {k}, max parallelism {m}"),
                ));
            }
        };
        let n_states = self.count(9, "operator states")?;
        let mut states = Vec::new();
        for _ in 0..n_states {
            let name = self.str("a state name")?;
            let at = self.pos;
            let mode = match self.u8()? {
                1 => StateMode::Split,
                2 => StateMode::Union,
                3 => StateMode::Broadcast,
                m => {
                    self.pos = at;
                    return Err(self.err(
                        "mode 1 (split), 2 (union) or 3 (broadcast)".into(),
                        format!("mode {m}"),
                    ));
                }
            };
            let item_type = self.str("an item type")?;
            let ty = self.state_type()?;
            states.push((name, mode, item_type, ty));
        }
        let at = self.pos;
        let n_keyed = self.count(8, "keyed states")?;
        if assigner.is_none() && n_keyed > 0 {
            self.pos = at;
            return Err(self.err(
                "no keyed states for an operator without assigner".into(),
                format!("{n_keyed} keyed states"),
            ));
        }
        let mut keyed_states = Vec::new();
        for _ in 0..n_keyed {
            let name = self.str("a keyed state name")?;
            let container = self.str("a keyed state type")?;
            let ty = self.state_type()?;
            keyed_states.push((name, container, ty));
        }
        let mut subtasks = Vec::new();
        for _ in 0..parallelism {
            subtasks.push(self.subtask(states.len(), assigner.is_some(), n_keyed)?);
        }
        Ok(OperatorManifest {
            name,
            assigner,
            states,
            keyed_states,
            subtasks,
        })
    }

    fn subtask(
        &mut self,
        n_states: usize,
        keyed: bool,
        n_keyed: usize,
    ) -> Result<SubtaskManifest, StateError> {
        let file = self.str("a file name")?;
        let file_len = self.u64()?;
        let payload_crc = self.u32()?;
        let mut items = Vec::with_capacity(n_states.min(self.remaining() / 16));
        for _ in 0..n_states {
            let at = self.pos;
            let n = self.u64()?;
            let _ = self.u64()?; // the first offset, re-read below
            let n = self.check_count(at, n, 12, "items")?;
            self.pos = at + 8;
            let mut bounds = Vec::with_capacity(n + 1);
            let mut crcs = Vec::with_capacity(n);
            bounds.push(self.u64()?);
            for _ in 0..n {
                bounds.push(self.u64()?);
                crcs.push(self.u32()?);
            }
            items.push((bounds, crcs));
        }
        let keyed = if keyed {
            let at = self.pos;
            let start = self.u32()?;
            let end = self.u32()?;
            if start > end {
                self.pos = at;
                return Err(self.err(
                    "a key-group range with start <= end".into(),
                    format!("{start}..{end}"),
                ));
            }
            let range = KeyGroupRange::from_exclusive(start, end);
            let (bounds, crcs) = self.key_groups(at + 8, end - start, n_keyed)?;
            Some((range, bounds, crcs))
        } else {
            None
        };
        let layers = match &keyed {
            Some((range, ..)) if self.version >= 3 => self.layers(range.len(), n_keyed)?,
            _ => Layers::default(),
        };
        Ok(SubtaskManifest {
            file,
            file_len,
            payload_crc,
            items,
            keyed,
            layers,
        })
    }

    /// The first offset, then per key group the end of each of `n_keyed`
    /// sections and a CRC (`count_at`: where the key-group count was).
    fn key_groups(
        &mut self,
        count_at: usize,
        key_groups: u32,
        n_keyed: usize,
    ) -> Result<(Vec<u64>, Vec<u32>), StateError> {
        let first = self.u64()?;
        let kgs = self.check_count(
            count_at,
            u64::from(key_groups),
            n_keyed * 8 + 4,
            "key groups",
        )?;
        let mut bounds = Vec::with_capacity(kgs * n_keyed + 1);
        let mut crcs = Vec::with_capacity(kgs);
        bounds.push(first);
        for _ in 0..kgs {
            for _ in 0..n_keyed {
                bounds.push(self.u64()?);
            }
            crcs.push(self.u32()?);
        }
        Ok((bounds, crcs))
    }

    /// Version 3: the keyed sections' kind and earlier layers.
    fn layers(&mut self, key_groups: u32, n_keyed: usize) -> Result<Layers, StateError> {
        let parts = self.parts(key_groups, "the section's kinds")?;
        let n = self.count(8 + 4 + 8 + 1 + 8, "earlier layers")?;
        let mut earlier = Vec::with_capacity(n);
        for _ in 0..n {
            let checkpoint_id = self.u64()?;
            let file = self.str("a layer's file name")?;
            let file_len = self.u64()?;
            let layer_parts = self.parts(key_groups, "a layer's kinds")?;
            let at = self.pos;
            let (bounds, crcs) = self.key_groups(at, key_groups, n_keyed)?;
            earlier.push(KeyedLayer {
                checkpoint_id,
                file,
                file_len,
                parts: layer_parts,
                bounds,
                crcs,
            });
        }
        Ok(Layers { parts, earlier })
    }

    /// A layer's kinds (see the writer's `parts`); mixed kinds only from
    /// version 4.
    fn parts(&mut self, key_groups: u32, what: &str) -> Result<Parts, StateError> {
        let at = self.pos;
        match self.u8()? {
            0 => Ok(Parts::Whole),
            1 => Ok(Parts::Delta),
            2 if self.version >= 4 => {
                let n = key_groups as usize;
                let bits = self.take(n.div_ceil(8), what)?;
                let whole = (0..n).map(|g| bits[g / 8] >> (g % 8) & 1 == 1).collect();
                Ok(Parts::Mixed(whole))
            }
            other => {
                self.pos = at;
                let kinds = if self.version >= 4 {
                    "0, 1 or 2"
                } else {
                    "0 or 1"
                };
                Err(self.err(format!("{what}: {kinds}"), other.to_string()))
            }
        }
    }
}

/// The 16-byte header of a data file.
pub(crate) fn data_header() -> [u8; DATA_HEADER_LEN as usize] {
    let mut h = [0u8; DATA_HEADER_LEN as usize];
    h[..8].copy_from_slice(&DATA_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a data file's header (its first bytes, possibly fewer than 16).
pub(crate) fn check_data_header(bytes: &[u8], path: &str) -> Result<(), StateError> {
    let corrupt = |offset: u64, expected: String, found: String| StateError::Corrupt {
        path: path.to_owned(),
        offset,
        expected,
        found,
    };
    let Some(h) = bytes.get(..DATA_HEADER_LEN as usize) else {
        return Err(corrupt(
            0,
            "a 16-byte data file header".into(),
            format!("{} bytes", bytes.len()),
        ));
    };
    if h[..8] != DATA_MAGIC {
        return Err(corrupt(
            0,
            "magic bytes \"RSCLDATA\"".into(),
            format!("{:?}", String::from_utf8_lossy(&h[..8])),
        ));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    let stored = u32::from_le_bytes(h[12..16].try_into().expect("4 bytes"));
    let actual = crc32c::crc32c(&h[..12]);
    if stored != actual {
        return Err(corrupt(
            0,
            format!("CRC-32C {stored:#010x} of the 12 header bytes"),
            format!("{actual:#010x}"),
        ));
    }
    if version > FORMAT_VERSION {
        return Err(StateError::UnsupportedFormatVersion {
            path: path.to_owned(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version < OLDEST_FORMAT_VERSION {
        return Err(corrupt(
            8,
            format!("format version {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}"),
            format!("version {version}"),
        ));
    }
    Ok(())
}
