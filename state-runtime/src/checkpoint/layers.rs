//! The layers of an incremental keyed section: a subtask's keyed state in a
//! checkpoint is a full section in some data file, then the delta sections
//! of later checkpoints, each in its own file, applied in order. A restore
//! reads, for the key groups it receives, every layer's sections.

use std::ops::Range;

use super::KeyedSection;
use crate::keygroup::{KeyGroup, KeyGroupRange};

/// A data file of an earlier checkpoint that a keyed section builds on.
///
/// ```
/// use state_runtime::checkpoint::KeyedLayer;
/// fn describe(layer: &KeyedLayer) -> String {
///     let kind = if layer.is_delta() { "delta" } else { "full" };
///     format!("chk-{}/{}: {} bytes {kind}", layer.checkpoint_id(), layer.file(), layer.bytes())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedLayer {
    pub(crate) checkpoint_id: u64,
    pub(crate) file: String,
    /// The whole file, header included.
    pub(crate) file_len: u64,
    pub(crate) delta: bool,
    /// As [`KeyedSection`]'s: `key groups * states + 1` payload offsets.
    pub(crate) bounds: Vec<u64>,
    /// One CRC-32C per key group (every state's section).
    pub(crate) crcs: Vec<u32>,
}

impl KeyedLayer {
    /// The checkpoint whose folder holds the file.
    pub fn checkpoint_id(&self) -> u64 {
        self.checkpoint_id
    }

    /// The file's name in that folder.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Whether it holds delta sections (the first layer is full).
    pub fn is_delta(&self) -> bool {
        self.delta
    }

    /// The bytes of its keyed sections.
    pub fn bytes(&self) -> u64 {
        self.bounds.last().copied().unwrap_or(0) - self.bounds.first().copied().unwrap_or(0)
    }
}

/// Where a keyed section's entries come from: the section itself, full, or
/// a delta on top of earlier layers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Layers {
    /// Whether the section itself holds delta sections.
    pub(crate) delta: bool,
    /// The layers it builds on, oldest (the full one) first; empty for a
    /// full section.
    pub(crate) earlier: Vec<KeyedLayer>,
}

/// The offsets of one layer of a keyed section: the section's own, or an
/// earlier layer's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerView<'a> {
    /// `None`: the section's own data; `Some(i)`: earlier layer `i`.
    pub(crate) layer: Option<usize>,
    pub(crate) delta: bool,
    key_groups: KeyGroupRange,
    states: usize,
    bounds: &'a [u64],
}

impl<'a> LayerView<'a> {
    pub(crate) fn new(
        layer: Option<usize>,
        delta: bool,
        key_groups: KeyGroupRange,
        states: usize,
        bounds: &'a [u64],
    ) -> Self {
        Self {
            layer,
            delta,
            key_groups,
            states,
            bounds,
        }
    }

    /// The byte range of every state's section of `key_group`.
    pub(crate) fn key_group_range(&self, key_group: KeyGroup) -> Option<Range<u64>> {
        let g = self.key_groups.index_of(key_group)?;
        let s = self.states;
        Some(*self.bounds.get(g * s)?..*self.bounds.get((g + 1) * s)?)
    }

    /// The byte range of the key groups `key_groups` (all states).
    pub(crate) fn key_groups_bytes(&self, key_groups: KeyGroupRange) -> Option<Range<u64>> {
        let first = self.key_group_range(key_groups.start())?;
        let last = self.key_group_range(key_groups.last()?)?;
        Some(first.start..last.end)
    }

    /// The byte range of state `state`'s section of `key_group`.
    pub(crate) fn state_range(&self, key_group: KeyGroup, state: usize) -> Option<Range<u64>> {
        let g = self.key_groups.index_of(key_group)?;
        let i = g * self.states + state;
        Some(*self.bounds.get(i)?..*self.bounds.get(i + 1)?)
    }
}

impl KeyedSection {
    /// Whether the section holds delta sections, applied on top of
    /// [`earlier_layers`](Self::earlier_layers) (an incremental checkpoint).
    pub fn is_delta(&self) -> bool {
        self.layers.delta
    }

    /// The data files of earlier checkpoints this section builds on, oldest
    /// (a full one) first; empty for a full section.
    pub fn earlier_layers(&self) -> &[KeyedLayer] {
        &self.layers.earlier
    }

    /// Every layer a restore applies, in order: the earlier ones, then the
    /// section's own.
    pub(crate) fn views(&self) -> impl Iterator<Item = LayerView<'_>> + '_ {
        let states = self.states.len();
        let key_groups = self.key_groups;
        self.layers
            .earlier
            .iter()
            .enumerate()
            .map(move |(i, l)| LayerView::new(Some(i), l.delta, key_groups, states, &l.bounds))
            .chain(std::iter::once(self.own_view()))
    }

    /// Layer `layer` (`None`: the section's own).
    pub(crate) fn view(&self, layer: Option<usize>) -> Option<LayerView<'_>> {
        match layer {
            None => Some(self.own_view()),
            Some(i) => {
                let l = self.layers.earlier.get(i)?;
                Some(LayerView::new(
                    Some(i),
                    l.delta,
                    self.key_groups,
                    self.states.len(),
                    &l.bounds,
                ))
            }
        }
    }

    /// The section's own layer.
    pub(crate) fn own_view(&self) -> LayerView<'_> {
        LayerView::new(
            None,
            self.layers.delta,
            self.key_groups,
            self.states.len(),
            &self.bounds,
        )
    }
}

/// Checks the layers a manifest gives a subtask of checkpoint
/// `checkpoint_id` whose keyed section has `key_groups` and `states` keyed
/// states: a full first layer, deltas after it, older checkpoints in
/// ascending order, complete and ordered offsets inside each file.
pub(crate) fn check_layers(
    layers: &Layers,
    checkpoint_id: u64,
    key_groups: KeyGroupRange,
    states: usize,
    header_len: u64,
) -> Result<(), String> {
    if layers.delta == layers.earlier.is_empty() {
        return Err(if layers.delta {
            "a delta section with no earlier layer".into()
        } else {
            "a full section with earlier layers".into()
        });
    }
    let want = key_groups.len() as usize * states + 1;
    let mut previous = None;
    for (i, l) in layers.earlier.iter().enumerate() {
        let at = format!("earlier layer {i} (chk-{}/{})", l.checkpoint_id, l.file);
        if l.delta != (i > 0) {
            return Err(format!("{at}: only the first layer is full"));
        }
        if l.checkpoint_id >= checkpoint_id || previous.is_some_and(|p| p >= l.checkpoint_id) {
            return Err(format!(
                "{at}: layers must be of older checkpoints, in ascending order"
            ));
        }
        previous = Some(l.checkpoint_id);
        crate::storage::validate_file_name(&l.file).map_err(|e| format!("{at}: {e}"))?;
        if l.bounds.len() != want || l.crcs.len() != key_groups.len() as usize {
            return Err(format!(
                "{at}: {} offsets and {} checksums for {} key groups",
                l.bounds.len(),
                l.crcs.len(),
                key_groups.len()
            ));
        }
        if l.bounds.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!("{at}: offsets out of order"));
        }
        let end = l.bounds[l.bounds.len() - 1];
        if end.saturating_add(header_len) > l.file_len {
            return Err(format!(
                "{at}: sections end at payload byte {end}, past its {} bytes",
                l.file_len
            ));
        }
    }
    Ok(())
}
