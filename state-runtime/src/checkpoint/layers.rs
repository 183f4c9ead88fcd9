//! The layers of an incremental keyed section: a subtask's keyed state in a
//! checkpoint is a chain of data files, one per checkpoint, applied in
//! order. In each file a key group is written either whole or as a delta
//! on top of the files before it ([`Parts`]). A restore reads, for each key
//! group it receives, the last file that holds it whole and every delta
//! after that one.

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
    /// Which of its key groups are whole.
    pub(crate) parts: Parts,
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

    /// Whether it holds delta sections (some key groups not written whole).
    pub fn is_delta(&self) -> bool {
        self.parts.any_delta()
    }

    /// How many of its key groups it holds whole.
    pub fn whole_key_groups(&self) -> usize {
        self.parts.whole_count(self.crcs.len())
    }

    /// The bytes of its keyed sections.
    pub fn bytes(&self) -> u64 {
        self.bounds.last().copied().unwrap_or(0) - self.bounds.first().copied().unwrap_or(0)
    }
}

/// Which key groups of one layer are written whole; the others are deltas
/// on top of the layers before it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Parts {
    /// Every key group whole: a full section.
    #[default]
    Whole,
    /// Every key group a delta.
    Delta,
    /// Per key group of the section, in order: whether it is whole.
    Mixed(Vec<bool>),
}

impl Parts {
    /// From one flag per key group: [`Parts::Whole`] or [`Parts::Delta`]
    /// when they agree.
    pub(crate) fn from_flags(whole: Vec<bool>) -> Self {
        if whole.iter().all(|&w| w) {
            Parts::Whole
        } else if whole.iter().all(|&w| !w) {
            Parts::Delta
        } else {
            Parts::Mixed(whole)
        }
    }

    /// Whether the `g`-th key group of the section is whole.
    pub(crate) fn is_whole(&self, g: usize) -> bool {
        match self {
            Parts::Whole => true,
            Parts::Delta => false,
            Parts::Mixed(whole) => whole.get(g).copied().unwrap_or(false),
        }
    }

    /// Whether some key group is a delta.
    pub(crate) fn any_delta(&self) -> bool {
        !matches!(self, Parts::Whole)
    }

    /// How many of `key_groups` key groups are whole.
    pub(crate) fn whole_count(&self, key_groups: usize) -> usize {
        (0..key_groups).filter(|&g| self.is_whole(g)).count()
    }
}

/// Where a keyed section's entries come from: the section itself, full, or
/// partly deltas on top of earlier layers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Layers {
    /// Which of the section's own key groups are whole.
    pub(crate) parts: Parts,
    /// The layers it builds on, oldest first; empty for a full section.
    pub(crate) earlier: Vec<KeyedLayer>,
}

impl Layers {
    /// Per key group of the section (by index), the layer a restore starts
    /// from: the last one holding it whole (`None`: the section's own).
    /// `None` in the outer option if some key group is whole in no layer.
    pub(crate) fn starts(&self, key_groups: usize) -> Option<Vec<Option<usize>>> {
        (0..key_groups)
            .map(|g| {
                if self.parts.is_whole(g) {
                    return Some(None);
                }
                let i = self.earlier.iter().rposition(|l| l.parts.is_whole(g))?;
                Some(Some(i))
            })
            .collect()
    }
}

/// The offsets of one layer of a keyed section: the section's own, or an
/// earlier layer's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerView<'a> {
    /// `None`: the section's own data; `Some(i)`: earlier layer `i`.
    pub(crate) layer: Option<usize>,
    parts: &'a Parts,
    key_groups: KeyGroupRange,
    states: usize,
    bounds: &'a [u64],
}

impl<'a> LayerView<'a> {
    pub(crate) fn new(
        layer: Option<usize>,
        parts: &'a Parts,
        key_groups: KeyGroupRange,
        states: usize,
        bounds: &'a [u64],
    ) -> Self {
        Self {
            layer,
            parts,
            key_groups,
            states,
            bounds,
        }
    }

    /// Whether `key_group` is whole in this layer (else a delta).
    pub(crate) fn is_whole(&self, key_group: KeyGroup) -> bool {
        self.key_groups
            .index_of(key_group)
            .is_some_and(|g| self.parts.is_whole(g))
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
        self.layers.parts.any_delta()
    }

    /// How many of its own key groups it holds whole (all of them unless
    /// [`is_delta`](Self::is_delta)).
    pub fn whole_key_groups(&self) -> usize {
        self.layers
            .parts
            .whole_count(self.key_groups.len() as usize)
    }

    /// The keyed bytes a restore of every key group reads, over all layers:
    /// [`total_bytes`](Self::total_bytes) for a full section.
    pub fn restore_bytes(&self) -> u64 {
        self.layer_runs(self.key_groups)
            .iter()
            .filter_map(|(view, run)| view.key_groups_bytes(*run))
            .map(|r| r.end - r.start)
            .sum()
    }

    /// The data files of earlier checkpoints this section builds on, oldest
    /// first; empty for a full section.
    pub fn earlier_layers(&self) -> &[KeyedLayer] {
        &self.layers.earlier
    }

    /// Every layer, in the order a restore applies them: the earlier ones,
    /// then the section's own.
    pub(crate) fn views(&self) -> impl Iterator<Item = LayerView<'_>> + '_ {
        let states = self.states.len();
        let key_groups = self.key_groups;
        self.layers
            .earlier
            .iter()
            .enumerate()
            .map(move |(i, l)| LayerView::new(Some(i), &l.parts, key_groups, states, &l.bounds))
            .chain(std::iter::once(self.own_view()))
    }

    /// What a restore of the key groups `wanted` (within the section's)
    /// reads, in the order it applies them: per layer, the runs of
    /// consecutive key groups that layer contributes (those it holds whole
    /// or whose whole section is in an earlier layer). Key groups a later
    /// layer holds whole are not read from the layers before it.
    pub(crate) fn layer_runs(&self, wanted: KeyGroupRange) -> Vec<(LayerView<'_>, KeyGroupRange)> {
        let starts = self
            .layers
            .starts(self.key_groups.len() as usize)
            .unwrap_or_default();
        // A layer's position in application order: earlier layers first.
        let order = |l: Option<usize>| l.unwrap_or(self.layers.earlier.len());
        let mut runs = Vec::new();
        for view in self.views() {
            let at = order(view.layer);
            let mut run: Option<(KeyGroup, KeyGroup)> = None;
            for kg in wanted {
                let Some(g) = self.key_groups.index_of(kg) else {
                    continue;
                };
                let start = starts.get(g).map_or(0, |&s| order(s));
                if start <= at {
                    run = match run {
                        Some((first, _)) => Some((first, kg)),
                        None => Some((kg, kg)),
                    };
                } else if let Some((first, last)) = run.take() {
                    runs.push((view, KeyGroupRange::new(first, last)));
                }
            }
            if let Some((first, last)) = run {
                runs.push((view, KeyGroupRange::new(first, last)));
            }
        }
        runs
    }

    /// Layer `layer` (`None`: the section's own).
    pub(crate) fn view(&self, layer: Option<usize>) -> Option<LayerView<'_>> {
        match layer {
            None => Some(self.own_view()),
            Some(i) => {
                let l = self.layers.earlier.get(i)?;
                Some(LayerView::new(
                    Some(i),
                    &l.parts,
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
            &self.layers.parts,
            self.key_groups,
            self.states.len(),
            &self.bounds,
        )
    }
}

/// Checks the layers a manifest gives a subtask of checkpoint
/// `checkpoint_id` whose keyed section has `key_groups` and `states` keyed
/// states: older checkpoints in ascending order, one flag per key group
/// where the kinds are mixed, every key group whole in some layer,
/// complete and ordered offsets inside each file.
pub(crate) fn check_layers(
    layers: &Layers,
    checkpoint_id: u64,
    key_groups: KeyGroupRange,
    states: usize,
    header_len: u64,
) -> Result<(), String> {
    let n = key_groups.len() as usize;
    let flags_fit = |parts: &Parts| match parts {
        Parts::Mixed(whole) => whole.len() == n,
        _ => true,
    };
    if !flags_fit(&layers.parts) {
        return Err(format!(
            "the section's kinds are not one per {n} key groups"
        ));
    }
    if layers.parts.any_delta() == layers.earlier.is_empty() {
        return Err(if layers.earlier.is_empty() {
            "a delta section with no earlier layer".into()
        } else {
            "a full section with earlier layers".into()
        });
    }
    let want = n * states + 1;
    let mut previous = None;
    for (i, l) in layers.earlier.iter().enumerate() {
        let at = format!("earlier layer {i} (chk-{}/{})", l.checkpoint_id, l.file);
        if !flags_fit(&l.parts) {
            return Err(format!("{at}: kinds not one per {n} key groups"));
        }
        if l.checkpoint_id >= checkpoint_id || previous.is_some_and(|p| p >= l.checkpoint_id) {
            return Err(format!(
                "{at}: layers must be of older checkpoints, in ascending order"
            ));
        }
        previous = Some(l.checkpoint_id);
        crate::storage::validate_file_name(&l.file).map_err(|e| format!("{at}: {e}"))?;
        if l.bounds.len() != want || l.crcs.len() != n {
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
    match layers.starts(n) {
        Some(_) => Ok(()),
        None => Err("a key group is whole in no layer".into()),
    }
}
