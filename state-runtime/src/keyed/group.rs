//! One key group's entries, in pages: the key group's hash interval cut
//! into parts, each an [`OrderedTable`] behind an `Arc`.
//!
//! A page is the unit a snapshot in flight shares with the live state
//! (see [`frozen`](super::frozen)): taking a snapshot clones the page
//! pointers, and the first write to a page the snapshot has not written yet
//! encodes that page for it first. Pages are small, so that write costs
//! little; concatenated in order they are the key group in stable-hash
//! order, the order of its snapshot section.
//!
//! A key group grows one page at a time, in the manner of linear hashing:
//! in a round that starts with `n` pages (a power of two), each of the
//! `n` equal parts of the interval is cut in two in turn, left to right,
//! until there are `2n`. Splitting a page moves only its own entries, so no
//! insert pays for the whole key group, and key groups that grow alike do
//! not all stop for a rebuild at once.

use std::sync::Arc;

use super::ordered::{HashSpan, OrderedTable};

/// A page with this many entries has the next page of its key group split
/// (when no snapshot shares the pages and they are half full on average).
pub(crate) const PAGE_SPLIT: usize = 512;

/// How the hashes of a key group map to its pages: kept by a frozen
/// snapshot, whose key group may split after it was taken.
#[derive(Clone, Copy)]
pub(crate) struct PageLayout {
    span: HashSpan,
    /// `span.unit()`.
    unit: u64,
    /// Pages when this round started: a power of two.
    round: usize,
    /// Pages of this round cut in two so far: the first `2 * split` pages
    /// are halves, the rest whole parts of the round.
    split: usize,
    /// `64 - log2(2 * round)`: a hash's half-part is the top bits of its
    /// fraction of the span.
    half_shift: u32,
}

impl PageLayout {
    fn new(span: HashSpan, round: usize) -> Self {
        debug_assert!(round.is_power_of_two());
        Self {
            span,
            unit: span.unit(),
            round,
            split: 0,
            half_shift: 64 - (2 * round).trailing_zeros(),
        }
    }

    fn pages(&self) -> usize {
        self.round + self.split
    }

    /// The page of a key whose stable hash is `hash`.
    #[inline]
    pub(crate) fn page_of(&self, hash: u64) -> usize {
        if self.round == 1 && self.split == 0 {
            return 0;
        }
        // By the hash as tables keep it (lowest bit set), so that hashes a
        // table orders as equal share a page.
        let half = (self.span.fraction(hash | 1, self.unit) >> self.half_shift) as usize;
        let part = half / 2;
        if part < self.split {
            half
        } else {
            self.split + part
        }
    }
}

/// The pages of one key group.
pub(crate) struct Group<K, T> {
    layout: PageLayout,
    pub(crate) pages: Vec<Arc<OrderedTable<K, T>>>,
    /// Inserts to come before a full page checks again whether the pages
    /// are half full on average: counting the entries costs a pass over
    /// the pages, and at most one entry comes with each insert.
    pub(crate) inserts_before_split_check: usize,
}

impl<K: Clone, T: Clone> Clone for Group<K, T> {
    /// A deep copy: the clone shares no page.
    fn clone(&self) -> Self {
        Self {
            layout: self.layout,
            inserts_before_split_check: self.inserts_before_split_check,
            pages: self
                .pages
                .iter()
                .map(|p| Arc::new(OrderedTable::clone(p)))
                .collect(),
        }
    }
}

impl<K, T> Group<K, T> {
    /// An empty key group of `pages` pages (rounded up to a power of two).
    pub(crate) fn new(span: HashSpan, pages: usize) -> Self {
        let n = pages.max(1).next_power_of_two();
        Self {
            layout: PageLayout::new(span, n),
            inserts_before_split_check: 0,
            pages: (0..n)
                .map(|i| Arc::new(OrderedTable::new(span.part(i, n))))
                .collect(),
        }
    }

    /// The number of pages for `entries` entries: about half of
    /// [`PAGE_SPLIT`] each.
    pub(crate) fn pages_for(entries: usize) -> usize {
        entries.div_ceil(PAGE_SPLIT / 2).max(1).next_power_of_two()
    }

    /// The page of a key whose stable hash is `hash`.
    #[inline]
    pub(crate) fn page_of(&self, hash: u64) -> usize {
        self.layout().page_of(hash)
    }

    /// How hashes map to the pages as they are now.
    #[inline]
    pub(crate) fn layout(&self) -> PageLayout {
        self.layout
    }

    pub(crate) fn len(&self) -> usize {
        super::ordered::count_steps(self.pages.len());
        self.pages.iter().map(|p| p.len()).sum()
    }

    /// The slots allocated over the pages (for tests of what a restore
    /// reserves).
    #[cfg(test)]
    pub(crate) fn slot_count(&self) -> usize {
        self.pages.iter().map(|p| p.slot_count()).sum()
    }

    /// Whether the key group is as bound: one empty page.
    pub(crate) fn is_fresh(&self) -> bool {
        self.pages.len() == 1 && self.pages[0].len() == 0
    }

    /// Lays the key group out anew in `pages` pages (rounded up to a power
    /// of two), each with room for `per_page` entries, and moves its
    /// entries there. Pages that hold entries must not be shared.
    pub(crate) fn relayout(&mut self, pages: usize, per_page: usize) {
        let old = std::mem::replace(self, Group::new(self.layout.span, pages));
        for page in &mut self.pages {
            Arc::get_mut(page).expect("a new page").reserve(per_page);
        }
        for page in old.pages.into_iter().filter(|p| p.len() > 0) {
            let table = Arc::try_unwrap(page).ok().expect("an unshared page");
            super::ordered::count_steps(table.len());
            for (hash, key, value) in table.into_entries() {
                let p = self.layout.page_of(hash);
                Arc::get_mut(&mut self.pages[p])
                    .expect("a new page")
                    .insert_unique(hash, key, value);
            }
        }
    }

    /// Every entry with its hash as kept, in hash order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &K, &T)> + '_ {
        self.pages.iter().flat_map(|p| p.iter())
    }

    /// Cuts the next page of the round in two, moving its entries; it must
    /// not be shared. Returns false, changing nothing, if it is.
    pub(crate) fn split_next_page(&mut self) -> bool {
        let at = 2 * self.layout.split;
        if Arc::strong_count(&self.pages[at]) > 1 {
            return false;
        }
        let halves = 2 * self.layout.round;
        let span = self.layout.span;
        let low = Arc::new(OrderedTable::new(span.part(at, halves)));
        let high = Arc::new(OrderedTable::new(span.part(at + 1, halves)));
        let old = std::mem::replace(&mut self.pages[at], low);
        self.pages.insert(at + 1, high);
        self.layout.split += 1;
        let Ok(table) = Arc::try_unwrap(old) else {
            unreachable!("checked unshared above");
        };
        super::ordered::count_steps(table.len());
        for (hash, key, value) in table.into_entries() {
            let p = self.layout.page_of(hash);
            debug_assert!(p == at || p == at + 1, "an entry of the page split");
            Arc::get_mut(&mut self.pages[p])
                .expect("a new page")
                .insert_unique(hash, key, value);
        }
        if self.layout.split == self.layout.round {
            // Every part is halved: the halves are the next round's parts
            // (the same pages under the same fractions' top bits).
            self.layout = PageLayout::new(span, halves);
        }
        debug_assert_eq!(self.layout.pages(), self.pages.len());
        true
    }

    /// Every entry, consuming the pages; they must not be shared.
    pub(crate) fn into_entries(self) -> impl Iterator<Item = (u64, K, T)> {
        self.pages.into_iter().flat_map(|p| {
            Arc::try_unwrap(p)
                .ok()
                .expect("an unshared page")
                .into_entries()
        })
    }
}
