//! Prefetching the heap memory a value owns, ahead of encoding it.
//!
//! A snapshot reads the entries of a page in hash order, but a value that
//! owns heap memory (a `Vec`, a `String`, a `Box`) points wherever it was
//! allocated, in the order the job inserted it: each such read misses the
//! caches and the TLB. The encoding of one entry depends on nothing read for
//! the next, so asking for the memory of an entry a few places ahead lets
//! those misses overlap instead of coming one after another. (Keys say
//! where their memory is themselves, with `StableHash::prefetch`; values
//! are any serde type.)
//!
//! A value's owned memory is found without knowing its type: each of its
//! first [`WORDS`] machine words is used as an address to prefetch. Only
//! types that need dropping are looked at (plain data owns no memory). A
//! prefetch is a hint: it never faults, whatever the address, and reads
//! nothing the program sees, so a word that is not a pointer costs only a
//! wasted hint.

use crate::hash::prefetch_read;

/// The words of a value looked at: `Vec`, `String` and `Box<[T]>` keep
/// their pointer in their first three.
const WORDS: usize = 3;

/// Asks the CPU to fetch the memory that `value`'s first words point to,
/// if `T` owns any, with [`prefetch_read`] (which prefetches on x86-64
/// only, so the words are read there only).
#[inline(always)]
pub(crate) fn owned_memory<T>(value: &T) {
    if !std::mem::needs_drop::<T>() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let words = (std::mem::size_of::<T>() / std::mem::size_of::<usize>()).min(WORDS);
        let base = (value as *const T).cast::<usize>();
        for w in 0..words {
            // SAFETY: `base + w` words lies inside `*value` (at most its
            // size), which is borrowed for this call.
            let address = unsafe { word_at(base.add(w)) };
            prefetch_read(address as *const u8);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// The word at `word`, read by the assembly: possibly unaligned, possibly
/// padding, its output is an integer whatever the bytes held.
///
/// # Safety
/// `word` must point to `size_of::<usize>()` readable bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn word_at(word: *const usize) -> usize {
    let value: usize;
    // SAFETY: the caller gives readable bytes; the load changes no memory
    // or flag.
    unsafe {
        std::arch::asm!(
            "mov {value}, qword ptr [{word}]",
            word = in(reg) word,
            value = out(reg) value,
            options(nostack, readonly, pure, preserves_flags)
        );
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of every shape, including ones whose words are not pointers
    /// or are padding, are prefetched without effect on them.
    #[test]
    fn prefetching_any_value_leaves_it_unchanged() {
        let vec = vec![7u8; 56];
        let text = String::from("a key");
        let boxed: Box<[u64]> = vec![1, 2, 3].into_boxed_slice();
        let padded = (1u8, String::from("padding after the byte"));
        let empty: Vec<u64> = Vec::new();
        let small = 3u16;
        owned_memory(&vec);
        owned_memory(&text);
        owned_memory(&boxed);
        owned_memory(&padded);
        owned_memory(&empty);
        owned_memory(&small);
        owned_memory(&());
        assert_eq!(vec, vec![7u8; 56]);
        assert_eq!(text, "a key");
        assert_eq!(&*boxed, &[1, 2, 3]);
        assert_eq!(padded.1, "padding after the byte");
        assert!(empty.is_empty());
        assert_eq!(small, 3);
    }
}
