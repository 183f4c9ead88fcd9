//! One key group's entries, in pages: the key group's hash interval cut
//! into a power of two of equal parts, each an [`OrderedTable`] behind an
//! `Arc`.
//!
//! A page is the unit a snapshot in flight shares with the live state
//! (see [`frozen`](super::frozen)): taking a snapshot clones the page
//! pointers, and the first write to a page the snapshot has not written yet
//! encodes that page for it first. Pages are small, so that write costs
//! little; concatenated in order they are the key group in stable-hash
//! order, the order of its snapshot section.

use std::sync::Arc;

use super::ordered::{HashSpan, OrderedTable};

/// A page with this many entries doubles its key group's pages (when no
/// snapshot shares them): pages then hold about half as many.
pub(crate) const PAGE_SPLIT: usize = 512;

/// How the hashes of a key group map to its pages: kept by a frozen
/// snapshot, whose key group may split after it was taken.
#[derive(Clone, Copy)]
pub(crate) struct PageLayout {
    span: HashSpan,
    scale: u64,
    pages: usize,
}

impl PageLayout {
    /// The page of a key whose stable hash is `hash`.
    #[inline]
    pub(crate) fn page_of(&self, hash: u64) -> usize {
        if self.pages == 1 {
            return 0;
        }
        // By the hash as tables keep it (lowest bit set), so that hashes a
        // table orders as equal share a page.
        self.span.position(hash | 1, self.scale, self.pages)
    }
}

/// The pages of one key group.
pub(crate) struct Group<K, T> {
    span: HashSpan,
    /// `span.scale(pages.len())`.
    scale: u64,
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
            span: self.span,
            scale: self.scale,
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
            span,
            scale: span.scale(n),
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
        PageLayout {
            span: self.span,
            scale: self.scale,
            pages: self.pages.len(),
        }
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

    /// Every entry with its hash as kept, in hash order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &K, &T)> + '_ {
        self.pages.iter().flat_map(|p| p.iter())
    }

    /// Doubles the pages, moving every entry; the pages must not be shared.
    /// Returns false, changing nothing, if one is.
    pub(crate) fn split(&mut self) -> bool {
        if self.pages.iter().any(|p| Arc::strong_count(p) > 1) {
            return false;
        }
        let n = self.pages.len() * 2;
        let old = std::mem::replace(self, Self::new(self.span, n));
        let mut next = 0;
        for page in old.pages {
            let Ok(table) = Arc::try_unwrap(page) else {
                unreachable!("checked unshared above");
            };
            for (hash, key, value) in table.into_entries() {
                // In hash order: pages fill in order, each appended to.
                next = next.max(self.page_of(hash));
                Arc::get_mut(&mut self.pages[next])
                    .expect("a new page")
                    .insert_unique(hash, key, value);
            }
        }
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
