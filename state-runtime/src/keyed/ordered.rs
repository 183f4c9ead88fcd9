//! The hash table of one key group: ordered linear probing (Amble and Knuth,
//! "Ordered hash tables", 1974), which keeps its entries sorted by stable
//! hash in memory.
//!
//! An entry's home position is its hash's place in the key group's hash
//! interval, scaled to the table's capacity: a monotone map. Every entry sits
//! at or after its home, with no empty slot in between, and the entries are
//! sorted by hash from the first slot to the last. So:
//!
//! * a lookup starts at the key's home and stops at the first empty slot or
//!   larger hash (a miss is as short as a hit);
//! * an insert shifts the rest of its cluster one slot to the right, a
//!   removal shifts it back (no tombstones);
//! * growing is one sequential pass, placing each entry at its new home or
//!   right after the previous one;
//! * iteration is in hash order, which is the order a snapshot writes: a
//!   snapshot is one sequential pass, with no sort and no cache of a
//!   previous order to keep in step.
//!
//! Slots past the last home position (where the last cluster overflows) are
//! appended as needed, so positions never wrap around.
//!
//! Lookups are filtered by a tag byte per slot (see [`OrderedTable`]).

/// The interval of stable hashes a table holds (a key group's, in native
/// mode; all of them in Flink mode): `lo ..= lo + width_minus_1`. Hashes
/// outside it are still stored correctly, only less evenly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HashSpan {
    lo: u64,
    width_minus_1: u64,
}

impl HashSpan {
    /// Every 64-bit hash.
    pub(crate) const ALL: Self = Self {
        lo: 0,
        width_minus_1: u64::MAX,
    };

    /// `lo ..= hi`; `None` if `hi < lo`.
    pub(crate) fn new(lo: u64, hi: u64) -> Option<Self> {
        (lo <= hi).then_some(Self {
            lo,
            width_minus_1: hi - lo,
        })
    }

    /// The highest hash of the span.
    pub(crate) fn hi(&self) -> u64 {
        self.lo + self.width_minus_1
    }

    /// The factor that maps the span onto 64-bit fractions of it: see
    /// [`fraction`](Self::fraction).
    pub(crate) fn unit(&self) -> u64 {
        let width = u128::from(self.width_minus_1) + 1;
        ((1u128 << 64) / width).min(u128::from(u64::MAX)) as u64
    }

    /// Where `hash` lies in the span, as a fraction of 2^64, with
    /// `unit = self.unit()`: monotone in the hash (hashes outside the span
    /// go to its ends). Its top `k` bits are its part of `2^k` equal parts,
    /// so the parts of `2^(k+1)` halve those of `2^k` exactly.
    #[inline]
    pub(crate) fn fraction(&self, hash: u64, unit: u64) -> u64 {
        // offset <= width - 1 and unit <= 2^64 / width: no overflow.
        hash.saturating_sub(self.lo).min(self.width_minus_1) * unit
    }

    /// About the `i`-th of `parts` equal parts of the span (a table of
    /// hashes from it is even; the parts need not meet exactly).
    pub(crate) fn part(&self, i: usize, parts: usize) -> HashSpan {
        let width = u128::from(self.width_minus_1) + 1;
        let at = |j: usize| (width * j as u128 / parts.max(1) as u128) as u64;
        let lo = self.lo.wrapping_add(at(i));
        let end = at(i + 1);
        let hi = self.lo.wrapping_add(end.wrapping_sub(1).max(at(i)));
        HashSpan::new(lo, hi.max(lo)).unwrap_or(*self)
    }
}

use std::num::NonZeroU64;

/// Where a missing key goes: [`OrderedTable::find_or_vacancy`].
pub(crate) struct Vacancy {
    at: usize,
    hash: u64,
}

/// Tables grow at this load, 7/8, so the load stays between 7/16 and 7/8.
/// Ordered linear probing shifts about `(1 + 1 / (1 - load)^2) / 2` entries
/// per insert (2.5 at 1/2, 32.5 at 7/8); a lookup reads one tag word
/// whatever the load.
const MAX_LOAD_NUM: usize = 7;
const MAX_LOAD_DEN: usize = 8;

/// Tags read at once by a lookup (one `u64`); every table has this many
/// slots past its last home position.
const WINDOW: usize = 8;

/// Home positions of the first allocation.
const MIN_CAPACITY: usize = 8;

/// The tag of an empty slot.
const EMPTY_TAG: u8 = 0;

/// The tag of an entry: the high bit set, then bits 1 to 7 of its hash
/// (bits that do not decide its home; bit 0 is not kept). A filter only:
/// the slot has the hash.
#[inline]
fn tag(hash: u64) -> u8 {
    0x80 | ((hash >> 1) as u8 & 0x7f)
}

const LOW_BYTES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// A stable hash as a table keeps it: with its lowest bit set. Never zero,
/// so an `Option` of a slot costs no tag of its own (24 bytes for a `u64`
/// key and an `i64` value, not 32); sorting by it sorts by hash except
/// between hashes that differ only in that bit, which the snapshot orders
/// itself (it sorts entries of equal kept hashes by hash, then bytes).
#[inline]
fn kept(hash: u64) -> NonZeroU64 {
    NonZeroU64::MIN | hash
}

/// One entry: the key's stable hash (as [`kept`]), the key, the value.
#[derive(Clone)]
struct Slot<K, T> {
    hash: NonZeroU64,
    key: K,
    value: T,
}

/// Entries of one key group, sorted by stable hash, found by hash and key.
///
/// Beside the slots, one tag byte per slot, as hashbrown keeps control
/// bytes: a lookup reads the eight tags from the key's home as one word,
/// picks the slots whose tag matches without a branch per slot, and touches
/// only those (usually one). The tags are a kilobyte per thousand slots, so
/// they stay cached; the one slot read is the lookup's only likely miss,
/// and no branch depends on how far the key sits from its home.
#[derive(Clone)]
pub(crate) struct OrderedTable<K, T> {
    /// `capacity` home positions, then `WINDOW` more, and the overflow of
    /// the last cluster.
    slots: Vec<Option<Slot<K, T>>>,
    /// Per slot, [`tag`] of its entry's hash, or [`EMPTY_TAG`].
    tags: Vec<u8>,
    /// Number of home positions (0 before the first insert).
    capacity: usize,
    span: HashSpan,
    /// `home(h) = ((h - span.lo) * scale) >> 64`: `capacity * 2^64 / width`.
    scale: u64,
    len: usize,
    /// The position of the entry of the greatest hash, when known: lets
    /// [`push_greatest`](Self::push_greatest) append without a search.
    /// Pushes, inserts and rebuilds keep it; removals and clears forget it.
    last: Option<usize>,
}

/// The entries of an [`OrderedTable`] in slot order, with their hashes as
/// kept: [`OrderedTable::iter`]. Found by the tags, eight at a time, so
/// that empty slots are skipped without a branch on each (a loop over the
/// entries would mispredict about once per empty slot).
pub(crate) struct Entries<'a, K, T> {
    slots: &'a [Option<Slot<K, T>>],
    tags: &'a [u8],
    /// The slot of the lowest byte of `occupied`.
    base: usize,
    /// The high bit of each occupied slot's tag among the eight at `base`
    /// not yet returned.
    occupied: u64,
}

impl<'a, K, T> Iterator for Entries<'a, K, T> {
    type Item = (u64, &'a K, &'a T);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        while self.occupied == 0 {
            self.base = self.base.wrapping_add(8);
            let tags = self.tags.get(self.base..).filter(|t| !t.is_empty())?;
            let word = match tags.first_chunk::<8>() {
                Some(word) => *word,
                None => {
                    let mut word = [EMPTY_TAG; 8];
                    word[..tags.len()].copy_from_slice(tags);
                    word
                }
            };
            self.occupied = u64::from_le_bytes(word) & HIGH_BITS;
        }
        let at = self.base + (self.occupied.trailing_zeros() / 8) as usize;
        self.occupied &= self.occupied - 1;
        let s = self.slots[at]
            .as_ref()
            .expect("a tagged slot holds an entry");
        Some((s.hash.get(), &s.key, &s.value))
    }
}

// Slots visited by searches, shifts and rebuilds on this thread, pages
// visited to count a key group's entries, and entries moved by page splits:
// tests bound the work of an operation with it, without timing anything.
#[cfg(test)]
thread_local! {
    pub(crate) static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[inline]
pub(crate) fn count_steps(n: usize) {
    #[cfg(test)]
    STEPS.with(|s| s.set(s.get() + n as u64));
    let _ = n;
}

impl<K, T> OrderedTable<K, T> {
    pub(crate) fn new(span: HashSpan) -> Self {
        Self {
            slots: Vec::new(),
            tags: Vec::new(),
            capacity: 0,
            span,
            scale: 0,
            len: 0,
            last: None,
        }
    }

    /// An empty table over the same span.
    pub(crate) fn empty_like(&self) -> Self {
        Self::new(self.span)
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The home position of `hash`: monotone in the hash, below `capacity`.
    #[inline]
    fn home(&self, hash: u64) -> usize {
        let offset = hash.saturating_sub(self.span.lo);
        let h = ((u128::from(offset) * u128::from(self.scale)) >> 64) as usize;
        h.min(self.capacity.saturating_sub(1))
    }

    /// Where `hash` and a key `eq` accepts is, if there.
    ///
    /// The key is in its home's cluster, at or after its home: within the
    /// window of eight slots, unless the window holds no empty slot.
    #[inline]
    fn find_index(&self, hash: u64, mut eq: impl FnMut(&K) -> bool) -> Option<usize> {
        let hash = kept(hash).get();
        let home = self.home(hash);
        let window = self.tags.get(home..home + WINDOW)?;
        let word = u64::from_le_bytes(window.try_into().expect("WINDOW bytes"));
        // Bytes equal to the tag: exact for the lowest, perhaps false
        // positives above it (every candidate is checked against the slot).
        let x = word ^ (u64::from(tag(hash)) * LOW_BYTES);
        let mut matches = x.wrapping_sub(LOW_BYTES) & !x & HIGH_BITS;
        while matches != 0 {
            let i = home + (matches.trailing_zeros() / 8) as usize;
            if let Some(s) = &self.slots[i] {
                if s.hash.get() == hash && eq(&s.key) {
                    return Some(i);
                }
            }
            matches &= matches - 1;
        }
        // An empty slot in the window ends the cluster: the key is absent.
        // (Empty tags have a clear high bit.)
        if !word & HIGH_BITS != 0 {
            return None;
        }
        self.search_from(home + WINDOW, hash, eq).ok()
    }

    /// Where `hash` (kept) and a key `eq` accepts is (`Ok`), or where it
    /// would be inserted (`Err`): after every entry of a smaller or equal
    /// hash in its cluster. Slot by slot: for inserts.
    fn search(&self, hash: u64, eq: impl FnMut(&K) -> bool) -> Result<usize, usize> {
        self.search_from(self.home(hash), hash, eq)
    }

    /// [`search`](Self::search), from a slot at or after the home of
    /// `hash` whose predecessors from the home hold smaller hashes or other
    /// keys.
    fn search_from(
        &self,
        mut i: usize,
        hash: u64,
        mut eq: impl FnMut(&K) -> bool,
    ) -> Result<usize, usize> {
        while let Some(Some(s)) = self.slots.get(i) {
            count_steps(1);
            if s.hash.get() > hash {
                break;
            }
            if s.hash.get() == hash && eq(&s.key) {
                return Ok(i);
            }
            i += 1;
        }
        Err(i)
    }

    /// The value at a position [`find_or_vacancy`](Self::find_or_vacancy)
    /// gave.
    #[inline]
    pub(crate) fn value_at(&mut self, i: usize) -> &mut T {
        &mut self.slots[i].as_mut().expect("an entry").value
    }

    #[inline]
    pub(crate) fn find(&self, hash: u64, eq: impl FnMut(&K) -> bool) -> Option<&T> {
        let i = self.find_index(hash, eq)?;
        self.slots[i].as_ref().map(|s| &s.value)
    }

    #[inline]
    pub(crate) fn find_mut(&mut self, hash: u64, eq: impl FnMut(&K) -> bool) -> Option<&mut T> {
        let i = self.find_index(hash, eq)?;
        Some(self.value_at(i))
    }

    /// Where the key `eq` accepts is (`Ok`, for
    /// [`value_at`](Self::value_at)), or a vacancy for it (`Err`, for
    /// [`fill`](Self::fill), with room made: the table may have grown). Fill
    /// a vacancy before any other change.
    #[inline]
    pub(crate) fn find_or_vacancy(
        &mut self,
        hash: u64,
        mut eq: impl FnMut(&K) -> bool,
    ) -> Result<usize, Vacancy> {
        if let Some(i) = self.find_index(hash, &mut eq) {
            return Ok(i);
        }
        Err(self.vacancy(hash))
    }

    /// Where an absent key of hash `hash` goes, after making room.
    #[cold]
    #[inline(never)]
    fn vacancy(&mut self, hash: u64) -> Vacancy {
        let hash = kept(hash).get();
        if self.len >= self.max_len() {
            self.grow();
        }
        let at = self
            .search(hash, |_| false)
            .expect_err("eq accepts nothing");
        Vacancy { at, hash }
    }

    /// Puts the key (of the vacancy's hash) and value in the vacancy.
    #[inline]
    pub(crate) fn fill(&mut self, vacancy: Vacancy, key: K, value: T) -> &mut T {
        let Vacancy { at, hash } = vacancy;
        let hash = kept(hash);
        self.put(at, Slot { hash, key, value });
        self.value_at(at)
    }

    /// Inserts an entry whose key is known to be absent (appended without a
    /// search when its hash is the greatest).
    pub(crate) fn insert_unique(&mut self, hash: u64, key: K, value: T) {
        if let Err((key, value)) = self.push_greatest(hash, key, value) {
            let v = self.vacancy(hash);
            self.fill(v, key, value);
        }
    }

    /// Inserts an entry unless an equal key is present; whether it did.
    pub(crate) fn insert_if_absent(&mut self, hash: u64, key: K, value: T) -> bool
    where
        K: PartialEq,
    {
        match self.find_or_vacancy(hash, |k| *k == key) {
            Ok(_) => false,
            Err(v) => {
                self.fill(v, key, value);
                true
            }
        }
    }

    /// Inserts an entry unless an equal key is present, as
    /// [`insert_if_absent`](Self::insert_if_absent), in O(1) amortized when
    /// its hash is greater than every entry's: entries given in hash order
    /// (a restored section) are appended, each at its home or right after
    /// the previous one, with no search and no shift.
    pub(crate) fn insert_sorted_if_absent(&mut self, hash: u64, key: K, value: T) -> bool
    where
        K: PartialEq,
    {
        match self.push_greatest(hash, key, value) {
            Ok(()) => true,
            Err((key, value)) => self.insert_if_absent(hash, key, value),
        }
    }

    /// Appends an entry whose hash (as kept) is greater than every entry's;
    /// gives it back, changing nothing, if it is not.
    fn push_greatest(&mut self, hash: u64, key: K, value: T) -> Result<(), (K, T)> {
        let hash = kept(hash);
        let mut last = self.last_index();
        if let Some(i) = last {
            let greatest = self.slots[i].as_ref().expect("the last entry").hash;
            if hash <= greatest {
                return Err((key, value));
            }
        }
        if self.len >= self.max_len() {
            self.grow();
            last = self.last_index();
        }
        // Every slot from the greatest entry's home to it is taken, and the
        // new home is at or after that home: so the entry goes to its home
        // or right after the greatest, with no gap before it.
        let at = self.home(hash.get()).max(last.map_or(0, |i| i + 1));
        if at == self.slots.len() {
            self.slots.push(None);
            self.tags.push(EMPTY_TAG);
        }
        self.tags[at] = tag(hash.get());
        self.slots[at] = Some(Slot { hash, key, value });
        self.len += 1;
        self.last = Some(at);
        Ok(())
    }

    /// The position of the entry of the greatest hash: remembered, or found
    /// from the end (once after each change other than a push).
    fn last_index(&mut self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        if self.last.is_none() {
            let i = self.slots.iter().rposition(Option::is_some);
            count_steps(self.slots.len() - i.unwrap_or(0));
            self.last = i;
        }
        self.last
    }

    /// Removes and returns the entry of the key `eq` accepts.
    pub(crate) fn remove(&mut self, hash: u64, eq: impl FnMut(&K) -> bool) -> Option<(K, T)> {
        let at = self.find_index(hash, eq)?;
        Some(self.remove_at(at))
    }

    /// Finds the entry of the key `eq` accepts, lets `f` change its value,
    /// and removes the entry if `f` says so.
    pub(crate) fn modify_or_remove<R>(
        &mut self,
        hash: u64,
        eq: impl FnMut(&K) -> bool,
        f: impl FnOnce(&mut T) -> (R, bool),
    ) -> Option<R> {
        let at = self.find_index(hash, eq)?;
        let (r, remove) = f(self.value_at(at));
        if remove {
            self.remove_at(at);
        }
        Some(r)
    }

    /// The entries whose hash as kept equals `hash`'s (usually one), in
    /// table order: what a delta record of that hash holds.
    pub(crate) fn kept_run(&self, hash: u64) -> impl Iterator<Item = (u64, &K, &T)> + '_ {
        let hash = kept(hash).get();
        let mut i = self.home(hash);
        while let Some(Some(s)) = self.slots.get(i) {
            if s.hash.get() >= hash {
                break;
            }
            count_steps(1);
            i += 1;
        }
        self.slots
            .get(i..)
            .unwrap_or_default()
            .iter()
            .map_while(move |s| s.as_ref().filter(|s| s.hash.get() == hash))
            .map(|s| (s.hash.get(), &s.key, &s.value))
    }

    /// Removes every entry whose hash as kept equals `hash`'s; how many.
    pub(crate) fn remove_kept_run(&mut self, hash: u64) -> usize {
        let mut removed = 0;
        while let Some(at) = self.find_index(hash, |_| true) {
            self.remove_at(at);
            removed += 1;
        }
        removed
    }

    /// Keeps the entries `f` accepts (in one pass, order kept).
    pub(crate) fn retain(&mut self, mut f: impl FnMut(&K, &mut T) -> bool) {
        let old = std::mem::take(&mut self.slots);
        let kept = old
            .into_iter()
            .flatten()
            .filter_map(|mut s| f(&s.key, &mut s.value).then_some(s));
        self.rebuild(self.capacity, kept);
    }

    pub(crate) fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
        self.tags.iter_mut().for_each(|t| *t = EMPTY_TAG);
        self.len = 0;
        self.last = None;
    }

    /// Makes room for `additional` more entries without growing: the table
    /// is then at most 3/4 full (a restore reserves a key group's entries,
    /// so a restored table holds no more slots than that needs).
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = self.len.saturating_add(additional);
        if needed > self.max_len() {
            // 4/3 of the entries, a whole number of load units: at most
            // 7/8 of it is `needed * 7 / 6`, so it holds them.
            let capacity = needed
                .saturating_add(needed / 3)
                .max(MIN_CAPACITY)
                .div_ceil(MAX_LOAD_DEN)
                .saturating_mul(MAX_LOAD_DEN);
            self.resize(capacity);
        }
    }

    /// The entries with their hashes as kept (lowest bit set), in that
    /// order (see [`Entries`]).
    pub(crate) fn iter(&self) -> Entries<'_, K, T> {
        // The first call to `next` moves to slot 0.
        Entries {
            slots: &self.slots,
            tags: &self.tags,
            base: 0usize.wrapping_sub(8),
            occupied: 0,
        }
    }

    /// The entries, in hash order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut T)> + '_ {
        self.slots
            .iter_mut()
            .flatten()
            .map(|s| (&s.key, &mut s.value))
    }

    /// The entries with their hashes as kept (lowest bit set), in that
    /// order.
    pub(crate) fn into_entries(self) -> impl Iterator<Item = (u64, K, T)> {
        self.slots
            .into_iter()
            .flatten()
            .map(|s| (s.hash.get(), s.key, s.value))
    }

    /// The slots allocated (for tests of what a restore reserves).
    #[cfg(test)]
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    fn max_len(&self) -> usize {
        self.capacity / MAX_LOAD_DEN * MAX_LOAD_NUM
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        self.resize((self.capacity * 2).max(MIN_CAPACITY));
    }

    fn resize(&mut self, capacity: usize) {
        let old = std::mem::take(&mut self.slots);
        self.rebuild(capacity, old.into_iter().flatten());
    }

    /// Refills the (taken, empty) slots with `entries`, given in hash order,
    /// for `capacity` home positions: each at its home or right after the
    /// entry before it.
    fn rebuild(&mut self, capacity: usize, entries: impl Iterator<Item = Slot<K, T>>) {
        self.capacity = capacity;
        let width = u128::from(self.span.width_minus_1) + 1;
        // floor(capacity * 2^64 / width): the largest hash of the span
        // lands below `capacity`.
        self.scale = (((capacity as u128) << 64) / width).min(u128::from(u64::MAX)) as u64;
        self.slots.clear();
        self.slots.resize_with(capacity + WINDOW, || None);
        self.tags.clear();
        self.tags.resize(capacity + WINDOW, EMPTY_TAG);
        // Counted as placed: a `retain` predicate that panics (and is
        // caught) leaves a smaller table, never a count above its entries.
        self.len = 0;
        self.last = None;
        let mut next = 0;
        for s in entries {
            count_steps(1);
            let at = self.home(s.hash.get()).max(next);
            if at == self.slots.len() {
                self.slots.push(None);
                self.tags.push(EMPTY_TAG);
            }
            self.tags[at] = tag(s.hash.get());
            self.slots[at] = Some(s);
            next = at + 1;
            self.len += 1;
            self.last = Some(at);
        }
    }

    /// Puts `slot` at `at` (a position [`search`](Self::search) gave),
    /// shifting the rest of the cluster right by one.
    fn put(&mut self, at: usize, slot: Slot<K, T>) {
        let end = self.slots[at..]
            .iter()
            .position(Option::is_none)
            .map_or(self.slots.len(), |p| at + p);
        if end == self.slots.len() {
            self.slots.push(None);
            self.tags.push(EMPTY_TAG);
        }
        count_steps(end - at + 1);
        self.slots[at..=end].rotate_right(1);
        self.tags[at..=end].rotate_right(1);
        // The greatest entry, if known: the new one if it goes after it
        // (every entry before `at` is smaller), else one slot further if the
        // shift moved it.
        self.last = match self.last {
            Some(l) if l < at => Some(at),
            Some(l) if l < end => Some(l + 1),
            known => known,
        };
        self.tags[at] = tag(slot.hash.get());
        self.slots[at] = Some(slot);
        self.len += 1;
    }

    /// Removes the entry at `at`, shifting the entries after it that are
    /// not at their home left by one.
    fn remove_at(&mut self, at: usize) -> (K, T) {
        let removed = self.slots[at].take().expect("an entry");
        self.tags[at] = EMPTY_TAG;
        self.len -= 1;
        self.last = None;
        let mut hole = at;
        while let Some(Some(s)) = self.slots.get(hole + 1) {
            if self.home(s.hash.get()) > hole {
                break;
            }
            count_steps(1);
            self.slots.swap(hole, hole + 1);
            self.tags.swap(hole, hole + 1);
            hole += 1;
        }
        (removed.key, removed.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    impl<K, T> OrderedTable<K, T> {
        /// Sorted by hash; each entry at or after its home with no empty
        /// slot between; `len` counts the entries.
        fn check(&self) {
            let mut prev = None;
            let mut count = 0;
            assert_eq!(self.slots.len(), self.tags.len());
            assert!(self.slots.is_empty() || self.slots.len() >= self.capacity + WINDOW);
            for (i, (s, &t)) in self.slots.iter().zip(&self.tags).enumerate() {
                let Some(s) = s else {
                    assert_eq!(t, EMPTY_TAG, "an empty slot's tag at {i}");
                    continue;
                };
                let h = s.hash.get();
                assert_eq!(t, tag(h), "tag at {i}");
                count += 1;
                assert!(prev <= Some(h), "sorted at {i}");
                prev = Some(h);
                let home = self.home(h);
                assert!(home <= i, "at or after its home at {i}");
                assert!(
                    self.slots[home..i].iter().all(Option::is_some),
                    "no gap before {i}"
                );
            }
            assert_eq!(count, self.len);
            assert!(self.len <= self.max_len());
            if let Some(l) = self.last {
                let greatest = self.slots.iter().rposition(Option::is_some);
                assert_eq!(Some(l), greatest, "the remembered greatest entry");
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u16, i32),
        Remove(u16),
        Modify(u16, bool),
        Retain(u16),
        Clear,
        Reserve(u8),
        /// Keys `start..start + n`, inserted with
        /// `insert_sorted_if_absent` in hash order (as a restore does).
        SortedRun(u16, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (any::<u16>(), any::<i32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => any::<u16>().prop_map(Op::Remove),
            2 => (any::<u16>(), any::<bool>()).prop_map(|(k, r)| Op::Modify(k, r)),
            1 => (1u16..8).prop_map(Op::Retain),
            1 => Just(Op::Clear),
            1 => any::<u8>().prop_map(Op::Reserve),
            2 => (any::<u16>(), any::<u8>()).prop_map(|(s, n)| Op::SortedRun(s, n)),
        ]
    }

    /// Runs `ops` on a table (keys `k % domain`, hashes from `hash`) and on a
    /// `HashMap`, checking the table against the map and its invariants.
    fn run(ops: &[Op], span: HashSpan, domain: u16, hash: impl Fn(u16) -> u64) {
        let mut t = OrderedTable::<u16, i32>::new(span);
        let mut m = HashMap::new();
        for op in ops {
            match *op {
                Op::Insert(k, v) => {
                    let k = k % domain;
                    match t.find_or_vacancy(hash(k), |x| *x == k) {
                        Ok(i) => {
                            assert!(m.contains_key(&k));
                            *t.value_at(i) = v;
                        }
                        Err(vacancy) => {
                            assert!(!m.contains_key(&k));
                            t.fill(vacancy, k, v);
                        }
                    }
                    m.insert(k, v);
                }
                Op::Remove(k) => {
                    let k = k % domain;
                    let got = t.remove(hash(k), |x| *x == k);
                    assert_eq!(got, m.remove(&k).map(|v| (k, v)));
                }
                Op::Modify(k, rm) => {
                    let k = k % domain;
                    let got = t.modify_or_remove(
                        hash(k),
                        |x| *x == k,
                        |v| {
                            *v += 1;
                            (*v, rm)
                        },
                    );
                    let want = m.get_mut(&k).map(|v| {
                        *v += 1;
                        *v
                    });
                    if rm && want.is_some() {
                        m.remove(&k);
                    }
                    assert_eq!(got, want);
                }
                Op::Retain(d) => {
                    t.retain(|k, _| k % d != 0);
                    m.retain(|k, _| k % d != 0);
                }
                Op::Clear => {
                    t.clear();
                    m.clear();
                }
                Op::SortedRun(start, n) => {
                    let mut keys: Vec<u16> = (0..u16::from(n))
                        .map(|i| start.wrapping_add(i) % domain)
                        .collect();
                    keys.sort_by_key(|k| (kept(hash(*k)), *k));
                    keys.dedup();
                    for k in keys {
                        let inserted = t.insert_sorted_if_absent(hash(k), k, i32::from(k));
                        assert_eq!(inserted, !m.contains_key(&k));
                        m.entry(k).or_insert(i32::from(k));
                    }
                }
                Op::Reserve(n) => {
                    t.reserve(n.into());
                    let cap = t.capacity;
                    for k in 0..n.into() {
                        let k: u16 = 60_000 + k;
                        let k = k % domain;
                        if let std::collections::hash_map::Entry::Vacant(e) = m.entry(k) {
                            t.insert_unique(hash(k), k, 0);
                            e.insert(0);
                        }
                    }
                    assert_eq!(t.capacity, cap, "reserve made room for all");
                }
            }
            t.check();
            for (k, v) in &m {
                assert_eq!(t.find(hash(*k), |x| x == k).copied(), Some(*v));
            }
            assert_eq!(t.len(), m.len());
        }
        let mut keys: Vec<u16> = t.iter().map(|(_, k, _)| *k).collect();
        keys.sort_unstable();
        let mut want: Vec<u16> = m.keys().copied().collect();
        want.sort_unstable();
        assert_eq!(keys, want);
    }

    fn spread(k: u16) -> u64 {
        u64::from(k).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x1234_5678
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn behaves_as_a_map_with_uniform_hashes(ops in proptest::collection::vec(op(), 1..300)) {
            run(&ops, HashSpan::ALL, 500, spread);
        }

        #[test]
        fn behaves_as_a_map_with_colliding_hashes(ops in proptest::collection::vec(op(), 1..300)) {
            // Fourteen hash values, in pairs that differ only in the lowest
            // bit (which the table does not keep), two of them 0 and
            // u64::MAX.
            run(&ops, HashSpan::ALL, 300, |k| match k % 7 {
                0 => u64::from(k % 2),
                1 => u64::MAX - u64::from(k % 2),
                r => spread(r) ^ u64::from(k % 2),
            });
        }

        #[test]
        fn behaves_as_a_map_within_a_narrow_span(ops in proptest::collection::vec(op(), 1..300)) {
            // A native key group's interval, and hashes at both of its ends
            // and (wrongly) outside it.
            let span = HashSpan::new(5 << 40, (6 << 40) - 1).unwrap();
            run(&ops, span, 400, |k| match k % 10 {
                0 => 5 << 40,
                1 => (6 << 40) - 1,
                2 => u64::from(k),
                3 => u64::MAX - u64::from(k),
                4 => 0,
                5 => u64::MAX,
                _ => (5 << 40) + (spread(k) >> 24),
            });
        }
    }

    #[test]
    fn a_slot_of_a_u64_key_and_an_i64_value_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Option<Slot<u64, i64>>>(), 24);
    }

    #[test]
    fn iterates_in_hash_order_after_growth_and_removal() {
        let mut t = OrderedTable::<u64, u64>::new(HashSpan::ALL);
        for k in 0..10_000u64 {
            t.insert_unique(spread(k as u16) ^ (k << 32), k, k);
        }
        for k in (0..10_000u64).step_by(3) {
            assert!(
                t.remove(spread(k as u16) ^ (k << 32), |x| *x == k)
                    .is_some()
            );
        }
        t.check();
        let hashes: Vec<u64> = t.iter().map(|(h, _, _)| h).collect();
        assert!(hashes.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(hashes.len(), 10_000 - 3334);
    }

    #[test]
    fn a_one_hash_span_holds_every_hash() {
        let mut t = OrderedTable::<u64, ()>::new(HashSpan::new(7, 7).unwrap());
        for k in 0..100u64 {
            t.insert_unique(k * 3, k, ());
        }
        t.check();
        assert!((0..100u64).all(|k| t.find(k * 3, |x| *x == k).is_some()));
    }
}
