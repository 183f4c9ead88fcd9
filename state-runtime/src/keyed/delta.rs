//! Restoring a key group's delta section: what an incremental checkpoint
//! writes for a key group on top of an earlier one
//! ([`FrozenKeyGroups::write_key_group_delta`](crate::keyed::FrozenKeyGroups::write_key_group_delta)).
//!
//! Delta section layout (varints through [`codec`]): empty if nothing
//! changed; otherwise `records`, then per record, by ascending hash: the
//! stable hash as tables keep it (lowest bit set, 8 bytes little-endian),
//! `count`, and `count` entries encoded as in a full section (key, then the
//! container's encoding of the value). A record replaces every entry whose
//! kept hash is the record's by its entries; a record of no entries is a
//! removal.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Tables, decode_context, key_group_of};
use crate::codec;
use crate::error::StateError;
use crate::hash::StateKey;
use crate::keygroup::{AssignerKind, KeyGroup, native_key_group_for_hash};

/// Bytes a record takes at least: its hash and a one-byte count.
const MIN_RECORD: usize = 9;

impl<K: StateKey + Eq + Serialize + DeserializeOwned, T> Tables<K, T> {
    /// Applies a delta section written for `key_group` of the checkpoint to
    /// the entries restored so far: each record's hash loses its entries and
    /// gets the record's. Records and entries whose new key group `filter`
    /// rejects are skipped. Returns the number of entries inserted.
    pub(crate) fn read_key_group_delta(
        &mut self,
        key_group: KeyGroup,
        bytes: &[u8],
        filter: Option<&dyn Fn(KeyGroup) -> bool>,
        mut read_value: impl FnMut(&[u8], &str) -> Result<(T, usize), StateError>,
    ) -> Result<usize, StateError> {
        if !self.bound {
            return Err(self.outside(key_group));
        }
        self.forget_changes();
        if bytes.is_empty() {
            return Ok(0);
        }
        let name = self.name.clone();
        let ctx = |pos: usize, e: StateError| decode_context(e, &name, key_group, pos);
        let (records, mut pos) =
            codec::decode_prefix::<u64>(bytes, &name).map_err(|e| ctx(0, e))?;
        let left = (bytes.len() - pos) as u64;
        if records == 0 || records > left / MIN_RECORD as u64 {
            return Err(self.decode_error(
                key_group,
                0,
                format!("delta record count {records} does not fit the {left} bytes left"),
            ));
        }
        let mut inserted = 0;
        let mut previous = None;
        for _ in 0..records {
            let record_pos = pos;
            let Some(hash) = bytes
                .get(pos..pos + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            else {
                return Err(self.decode_error(key_group, pos, "a truncated record".into()));
            };
            pos += 8;
            if hash & 1 == 0 || previous.is_some_and(|p| p >= hash) {
                return Err(self.decode_error(
                    key_group,
                    record_pos,
                    format!("record hash {hash:#018x} is not a kept hash in ascending order"),
                ));
            }
            previous = Some(hash);
            let (count, used) =
                codec::decode_prefix::<u64>(&bytes[pos..], &name).map_err(|e| ctx(pos, e))?;
            pos += used;
            let left = (bytes.len() - pos) as u64;
            if count > left + 1 {
                return Err(self.decode_error(
                    key_group,
                    pos,
                    format!("entry count {count} exceeds the {left} bytes left"),
                ));
            }
            // The record's key group: by its hash in native mode; in Flink
            // mode the max parallelism never changes, so it is the section's.
            let target = match self.assigner.kind() {
                AssignerKind::Native => {
                    native_key_group_for_hash(hash, self.assigner.max_parallelism())
                }
                AssignerKind::Flink => key_group,
            };
            let keep = filter.is_none_or(|f| f(target));
            let idx = match self.range.index_of(target) {
                Some(idx) if keep => {
                    let p = self.groups[idx].page_of(hash);
                    self.page_mut(idx, p).remove_kept_run(hash);
                    Some(idx)
                }
                None if keep => return Err(self.outside(target)),
                _ => None,
            };
            for _ in 0..count {
                let entry_pos = pos;
                let (key, used) =
                    codec::decode_prefix::<K>(&bytes[pos..], &name).map_err(|e| ctx(pos, e))?;
                pos += used;
                let (value, used) = read_value(&bytes[pos..], &name).map_err(|e| ctx(pos, e))?;
                pos += used;
                let key_hash = key.stable_hash();
                if key_hash | 1 != hash || key_group_of(&self.assigner, key_hash, &key)? != target {
                    return Err(self.decode_error(
                        key_group,
                        entry_pos,
                        format!("an entry whose key does not belong to record {hash:#018x}"),
                    ));
                }
                let Some(idx) = idx else { continue };
                if !self
                    .page_to_insert(idx, key_hash)
                    .insert_if_absent(key_hash, key, value)
                {
                    return Err(self.decode_error(
                        key_group,
                        entry_pos,
                        "duplicate key in a delta record".to_owned(),
                    ));
                }
                inserted += 1;
            }
        }
        if pos != bytes.len() {
            return Err(self.decode_error(
                key_group,
                pos,
                format!("{} trailing bytes after the last record", bytes.len() - pos),
            ));
        }
        Ok(inserted)
    }
}
