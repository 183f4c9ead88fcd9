//! Restoring a key group's delta section: what an incremental checkpoint
//! writes for a key group on top of an earlier one
//! ([`FrozenKeyGroups::write_key_group_delta`](crate::keyed::FrozenKeyGroups::write_key_group_delta)).
//!
//! Delta section layout (varints through [`codec`]): empty if nothing
//! changed; otherwise `removed`, then `removed` stable hashes as tables keep
//! them (lowest bit set, 8 bytes little-endian, ascending): keys removed,
//! whose hash has no entry left; then `count`, and `count` entries encoded
//! as in a full section (key, then the container's encoding of the value),
//! by ascending kept hash. Applying it removes every entry of each removed
//! hash, and for each run of entries of one kept hash replaces every entry
//! of that hash by the run.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Tables, decode_context, key_group_of};
use crate::codec;
use crate::error::StateError;
use crate::hash::StateKey;
use crate::keygroup::{AssignerKind, KeyGroup, native_key_group_for_hash};

impl<K: StateKey + Eq + Serialize + DeserializeOwned, T> Tables<K, T> {
    /// [`read_key_group_delta`](Self::read_key_group_delta) if `delta`,
    /// else [`read_key_group`](Self::read_key_group).
    pub(crate) fn read_section(
        &mut self,
        delta: bool,
        key_group: KeyGroup,
        bytes: &[u8],
        filter: Option<&dyn Fn(KeyGroup) -> bool>,
        read_value: impl FnMut(&[u8], &str) -> Result<(T, usize), StateError>,
    ) -> Result<usize, StateError> {
        if delta {
            self.read_key_group_delta(key_group, bytes, filter, read_value)
        } else {
            self.read_key_group(key_group, bytes, filter, read_value)
        }
    }

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
        let (removed, mut pos) =
            codec::decode_prefix::<u64>(bytes, &name).map_err(|e| ctx(0, e))?;
        let left = (bytes.len() - pos) as u64;
        if removed > left / 8 {
            return Err(self.decode_error(
                key_group,
                0,
                format!("{removed} removed keys do not fit the {left} bytes left"),
            ));
        }
        let mut previous = None;
        for _ in 0..removed {
            let at = pos;
            let hash = u64::from_le_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
            pos += 8;
            if hash & 1 == 0 || previous.is_some_and(|p| p >= hash) {
                return Err(self.decode_error(
                    key_group,
                    at,
                    format!("removed hash {hash:#018x} is not a kept hash in ascending order"),
                ));
            }
            previous = Some(hash);
            if let Some(g) = self.delta_target(key_group, hash, filter)? {
                let p = self.groups[g].page_of(hash);
                self.page_mut(g, p).remove_kept_run(hash);
            }
        }
        let (count, used) =
            codec::decode_prefix::<u64>(&bytes[pos..], &name).map_err(|e| ctx(pos, e))?;
        pos += used;
        let left = (bytes.len() - pos) as u64;
        if count > left + 1 || (removed == 0 && count == 0) {
            return Err(self.decode_error(
                key_group,
                pos,
                format!("entry count {count} of a delta with {left} bytes left"),
            ));
        }
        let mut inserted = 0;
        let mut run: Option<u64> = None;
        for _ in 0..count {
            let entry_pos = pos;
            let (key, value) = self.decode_entry(key_group, bytes, &mut pos, &mut read_value)?;
            let hash = key.stable_hash();
            let kept = hash | 1;
            if run.is_some_and(|r| r > kept) {
                return Err(self.decode_error(
                    key_group,
                    entry_pos,
                    "entries out of hash order".to_owned(),
                ));
            }
            let kg = key_group_of(&self.assigner, hash, &key)?;
            if kg != self.delta_key_group(key_group, kept) {
                return Err(self.decode_error(
                    key_group,
                    entry_pos,
                    format!("an entry of key group {kg} in key group {key_group}'s delta"),
                ));
            }
            let Some(g) = self.delta_target(key_group, kept, filter)? else {
                run = Some(kept);
                continue;
            };
            if run != Some(kept) {
                // The first entry of its hash: the hash's entries so far go.
                let p = self.groups[g].page_of(kept);
                self.page_mut(g, p).remove_kept_run(kept);
                run = Some(kept);
            }
            if !self
                .page_to_insert(g, hash)
                .insert_if_absent(hash, key, value)
            {
                return Err(self.decode_error(
                    key_group,
                    entry_pos,
                    "duplicate key in a delta".to_owned(),
                ));
            }
            inserted += 1;
        }
        self.check_consumed(key_group, bytes, pos)?;
        Ok(inserted)
    }

    /// The key group a delta's hash belongs to under the bound assigner: by
    /// the hash in native mode; in Flink mode the max parallelism never
    /// changes, so it is the section's.
    fn delta_key_group(&self, key_group: KeyGroup, kept: u64) -> KeyGroup {
        match self.assigner.kind() {
            AssignerKind::Native => {
                native_key_group_for_hash(kept, self.assigner.max_parallelism())
            }
            AssignerKind::Flink => key_group,
        }
    }

    /// The owned key group (its index) a delta's hash applies to, `None` if
    /// `filter` rejects it; a key group outside the owned range that the
    /// filter keeps is an error, as in a full section.
    fn delta_target(
        &self,
        key_group: KeyGroup,
        kept: u64,
        filter: Option<&dyn Fn(KeyGroup) -> bool>,
    ) -> Result<Option<usize>, StateError> {
        let target = self.delta_key_group(key_group, kept);
        if filter.is_some_and(|f| !f(target)) {
            return Ok(None);
        }
        match self.range.index_of(target) {
            Some(g) => Ok(Some(g)),
            None => Err(self.outside(target)),
        }
    }
}
