//! Stable key hashing: a 64-bit hash that is the same on every machine,
//! endianness, process, build and Rust version.
//!
//! # Specification
//!
//! The stable hash of a value is **XXH3-64 with seed 0** (as implemented by
//! `xxhash-rust`, matching the reference `XXH3_64bits`) of the value's
//! *canonical encoding*, defined here byte for byte. Changing any of these
//! rules changes which key group a key lands in, so it is a format break; the
//! golden values in the tests pin them.
//!
//! | type | canonical encoding |
//! |---|---|
//! | `u8 u16 u32 u64 u128`, `i8 .. i128` | the value, little-endian, fixed width |
//! | `usize` / `isize` | as `u64` / `i64` (the same on 32- and 64-bit targets) |
//! | `bool` | one byte, `0` or `1` |
//! | `char` | its scalar value as `u32` |
//! | `str`, `String` | length in bytes as `u64`, then the UTF-8 bytes |
//! | `[T]`, `Vec<T>`, `VecDeque<T>` | length as `u64`, then each element |
//! | `[T; N]` | each element (the length is part of the type) |
//! | `Option<T>` | `0u8` for `None`; `1u8` then the value for `Some` |
//! | tuples, `()` | each element in order (nothing for `()`) |
//! | `&T`, `Box<T>`, `Rc<T>`, `Arc<T>` | as `T` |
//! | `#[derive(StableHash)]` struct | each field in declaration order (names are not hashed) |
//! | `#[derive(StableHash)]` enum | variant index in declaration order as `u32`, then its fields |
//!
//! Renaming a field or a variant keeps hashes; reordering fields or variants,
//! or changing a field's type, changes them.
//!
//! `std`'s `DefaultHasher`, `ahash` and `foldhash` are never used: their output
//! may change between versions or processes.
//!
//! ```
//! use state_runtime::hash::StableHash;
//!
//! // Pinned by the specification: the same on every machine, forever.
//! assert_eq!(42u64.stable_hash(), xxhash_rust::xxh3::xxh3_64(&42u64.to_le_bytes()));
//! assert_eq!(("a", 1u8).stable_hash(), {
//!     let mut bytes = 1u64.to_le_bytes().to_vec();
//!     bytes.extend_from_slice(b"a");
//!     bytes.push(1);
//!     xxhash_rust::xxh3::xxh3_64(&bytes)
//! });
//! ```

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use xxhash_rust::xxh3::{Xxh3, xxh3_64};

mod java;

pub use java::{JavaHashCode, murmur_hash};
/// The derive of [`StableHash`] (the trait and the derive share the name).
#[cfg(feature = "derive")]
pub use state_macros::StableHash;

/// Size of the hasher's inline buffer: encodings up to this many bytes are
/// hashed in one shot from the stack, longer ones are streamed.
const INLINE: usize = 128;

/// Collects a canonical encoding and hashes it with XXH3-64 (seed 0).
///
/// Short encodings (up to 128 bytes, which covers nearly every key) stay in a
/// stack buffer and are hashed in one call; longer ones spill into a streaming
/// XXH3 state, which gives the same result. Nothing is allocated.
pub struct StableHasher {
    buf: [u8; INLINE],
    len: usize,
    stream: Option<Xxh3>,
}

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl StableHasher {
    /// An empty hasher.
    #[inline]
    pub fn new() -> Self {
        Self {
            buf: [0; INLINE],
            len: 0,
            stream: None,
        }
    }

    /// Appends raw bytes to the canonical encoding.
    #[inline]
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        if self.stream.is_none() && self.len + bytes.len() <= INLINE {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            self.spill().update(bytes);
        }
    }

    #[cold]
    fn spill(&mut self) -> &mut Xxh3 {
        if self.stream.is_none() {
            let mut s = Xxh3::new();
            s.update(&self.buf[..self.len]);
            self.len = 0;
            self.stream = Some(s);
        }
        self.stream.as_mut().expect("just set")
    }

    /// Appends a `u8`.
    #[inline]
    pub fn write_u8(&mut self, v: u8) {
        self.write_bytes(&[v]);
    }

    /// Appends a `u32`, little-endian.
    #[inline]
    pub fn write_u32(&mut self, v: u32) {
        self.write_bytes(&v.to_le_bytes());
    }

    /// Appends a `u64`, little-endian.
    #[inline]
    pub fn write_u64(&mut self, v: u64) {
        self.write_bytes(&v.to_le_bytes());
    }

    /// Appends a length (as `u64`), as written before strings and sequences.
    #[inline]
    pub fn write_len(&mut self, len: usize) {
        self.write_u64(len as u64);
    }

    /// The XXH3-64 hash of everything written.
    #[inline]
    pub fn finish(&self) -> u64 {
        match &self.stream {
            None => xxh3_64(&self.buf[..self.len]),
            Some(s) => s.digest(),
        }
    }
}

/// A type with a stable 64-bit hash, specified in the [module docs](self).
///
/// Derive it for your key types with `#[derive(StableHash)]`; implement
/// [`stable_hash_into`](StableHash::stable_hash_into) by hand only if you
/// document your encoding as carefully.
///
/// ```
/// use state_runtime::hash::StableHash; // the trait and the derive
///
/// #[derive(StableHash)]
/// struct CustomerKey { region: u16, id: u64 }
///
/// let k = CustomerKey { region: 3, id: 77 };
/// assert_eq!(k.stable_hash(), (3u16, 77u64).stable_hash());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no stable hash",
    label = "`{Self}` does not implement `StableHash`",
    note = "derive it with `#[derive(StableHash)]`; std's `Hash` is not stable across processes, and floats have no stable hash on purpose (NaN and -0.0 have several encodings)"
)]
pub trait StableHash {
    /// Writes this value's canonical encoding.
    fn stable_hash_into(&self, hasher: &mut StableHasher);

    /// The stable hash: XXH3-64 of the canonical encoding.
    ///
    /// Override it only with the same value computed faster (as the
    /// integer and string impls do). The value decides a key's key group in
    /// native mode and its place in keyed state's tables and snapshots,
    /// which read its high bits: values that are not spread over all 64
    /// bits (an identity hash, say) pile keys into a few key groups and slow
    /// their tables down to a linear scan.
    #[inline]
    fn stable_hash(&self) -> u64 {
        let mut h = StableHasher::new();
        self.stable_hash_into(&mut h);
        h.finish()
    }

    /// Whether hashing this value reads memory behind a pointer (a
    /// string's bytes, a vector's items, a box's contents). Batch assignment
    /// ([`KeyGroupAssigner::key_groups_into`](crate::keygroup::KeyGroupAssigner::key_groups_into))
    /// then calls [`prefetch`](StableHash::prefetch) some keys ahead of the
    /// one it hashes, so that the loads overlap; for plain values it does
    /// not, and its loops stay vectorized.
    ///
    /// The derive sets it to whether any field's type sets it.
    ///
    /// ```
    /// use state_runtime::hash::StableHash;
    ///
    /// #[derive(StableHash)]
    /// struct Account { region: u16, id: u64 }
    /// #[derive(StableHash)]
    /// struct Customer { region: u16, name: String }
    ///
    /// assert!(!<Account as StableHash>::INDIRECT);
    /// assert!(<Customer as StableHash>::INDIRECT);
    /// ```
    const INDIRECT: bool = false;

    /// Asks the CPU to start loading the memory behind a pointer that
    /// hashing this value will read. Only a hint: it never changes a hash
    /// and never faults. It is a `prefetcht0` on x86-64 and does nothing on
    /// other targets. Types whose hash reads behind a pointer override it and
    /// set [`INDIRECT`](StableHash::INDIRECT); the derive forwards it to each
    /// field.
    #[inline(always)]
    fn prefetch(&self) {}
}

/// Asks the CPU to load the cache line at `address` into its caches: a hint
/// that never faults, whatever the address.
#[inline(always)]
pub(crate) fn prefetch_read<T: ?Sized>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is a hint; it dereferences nothing and never
    // faults, even for an invalid address. SSE is part of x86-64's baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// A type that can key keyed state: it has a [`StableHash`] for the native
/// assigner and, optionally, a Java `hashCode()` for the Flink-compatible one.
///
/// `#[derive(StableHash)]` implements it (without a Java hash code); `i32`,
/// `i64` and `String` have both.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as a key of keyed state",
    label = "`{Self}` does not implement `StateKey`",
    note = "derive `StableHash` for it (`#[derive(StableHash)]`), which implements `StateKey`"
)]
pub trait StateKey: StableHash {
    /// Whether [`java_hash_code`](StateKey::java_hash_code) returns `Some`.
    const HAS_JAVA_HASH_CODE: bool = false;

    /// Java's `Object.hashCode()` of the equivalent Java value, if there is one.
    #[inline]
    fn java_hash_code(&self) -> Option<i32> {
        None
    }
}

macro_rules! int_impls {
    // `xxh3_64` of the little-endian bytes.
    (@hash bytes, $as:ty, $v:expr) => {
        xxh3_64(&($v as $as).to_le_bytes())
    };
    // The same value through `xxh3_4_or_8`, for 4- and 8-byte integers.
    (@hash word, $as:ty, $v:expr) => {
        xxh3_4_or_8::<{ std::mem::size_of::<$as>() }>($v as $as as u64)
    };
    ($how:ident: $($t:ty => $as:ty),* $(,)?) => {$(
        impl StableHash for $t {
            #[inline]
            fn stable_hash_into(&self, h: &mut StableHasher) {
                h.write_bytes(&(*self as $as).to_le_bytes());
            }
            #[inline(always)]
            fn stable_hash(&self) -> u64 {
                int_impls!(@hash $how, $as, *self)
            }
        }
    )*};
}

int_impls!(bytes:
    u8 => u8, u16 => u16, u128 => u128,
    i8 => i8, i16 => i16, i128 => i128,
);
// Integers of 4 and 8 bytes hash through [`xxh3_4_or_8`]: the same value as
// `xxh3_64` of their little-endian bytes, in straight-line code that inlines
// and vectorizes (the batch assignment of
// `KeyGroupAssigner::key_groups_into`).
int_impls!(word:
    u32 => u32, u64 => u64, usize => u64,
    i32 => u32, i64 => u64, isize => u64,
);

/// XXH3-64 (seed 0) of the `LEN`-byte little-endian encoding of `word` (its
/// low `LEN` bytes), `LEN` 4 or 8: XXH3's 4-to-8-byte path with the input
/// words taken from the integer instead of memory.
#[inline(always)]
const fn xxh3_4_or_8<const LEN: usize>(word: u64) -> u64 {
    // Bytes 8..16 and 16..24 of XXH3's default secret, little-endian.
    const BITFLIP: u64 = 0x1cad_21f7_2c81_017c ^ 0xdb97_9083_e96d_d4de;
    const PRIME_MX2: u64 = 0x9FB2_1C65_1E98_DF25;
    // input1 = the first four bytes, input2 = the last four;
    // input64 = input2 + (input1 << 32).
    let input64 = if LEN == 8 {
        word.rotate_left(32)
    } else {
        let w = word & 0xffff_ffff;
        w | (w << 32)
    };
    let mut h = input64 ^ BITFLIP;
    // rrmxmx
    h ^= h.rotate_left(49) ^ h.rotate_left(24);
    h = h.wrapping_mul(PRIME_MX2);
    h ^= (h >> 35).wrapping_add(LEN as u64);
    h = h.wrapping_mul(PRIME_MX2);
    h ^ (h >> 28)
}

impl StableHash for bool {
    #[inline]
    fn stable_hash_into(&self, h: &mut StableHasher) {
        h.write_u8(*self as u8);
    }
}

impl StableHash for char {
    #[inline]
    fn stable_hash_into(&self, h: &mut StableHasher) {
        h.write_u32(*self as u32);
    }
}

impl StableHash for str {
    #[inline]
    fn stable_hash_into(&self, h: &mut StableHasher) {
        h.write_len(self.len());
        h.write_bytes(self.as_bytes());
    }

    /// The same value as the generic path. Strings of 9 to 24 bytes (names,
    /// short identifiers) are hashed inline from registers; others (a UUID's
    /// 36) in one call.
    #[inline(always)]
    fn stable_hash(&self) -> u64 {
        let bytes = self.as_bytes();
        if (9..=24).contains(&bytes.len()) {
            return xxh3_len_prefixed_9_to_24(bytes);
        }
        str_hash_outside_9_to_24(self)
    }

    const INDIRECT: bool = true;
    #[inline(always)]
    fn prefetch(&self) {
        prefetch_read(self.as_ptr());
    }
}

/// [`StableHash::stable_hash`] of a string that is not 9 to 24 bytes long:
/// short strings are laid out in a small stack buffer and hashed in one
/// call. Kept out of line so that the common case inlines into loops.
#[inline(never)]
fn str_hash_outside_9_to_24(s: &str) -> u64 {
    const SHORT: usize = 56;
    let bytes = s.as_bytes();
    {
        if bytes.len() <= SHORT {
            let mut buf = [0u8; SHORT + 8];
            buf[..8].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            buf[8..8 + bytes.len()].copy_from_slice(bytes);
            xxh3_64(&buf[..8 + bytes.len()])
        } else {
            let mut h = StableHasher::new();
            s.stable_hash_into(&mut h);
            h.finish()
        }
    }
}

/// XXH3-64 (seed 0) of `len as u64 (LE) ++ bytes` for 9 to 24 bytes: the
/// 17-to-128-byte path of XXH3 over that 17-to-32-byte input, with its four
/// 64-bit input words assembled in registers. Copying the prefix and the
/// bytes into a buffer and reading it back at other offsets stalls on store
/// forwarding, which cost more than the hash; the result is the same
/// (checked against `xxh3_64` for every length in the tests).
#[inline]
fn xxh3_len_prefixed_9_to_24(bytes: &[u8]) -> u64 {
    // The first 32 bytes of XXH3's default secret, as little-endian words.
    const S: [u64; 4] = [
        0xbe4b_a423_396c_feb8,
        0x1cad_21f7_2c81_017c,
        0xdb97_9083_e96d_d4de,
        0x1f67_b3b7_a4a4_4072,
    ];
    const PRIME64_1: u64 = 0x9E37_79B1_85EB_CA87;
    let len = bytes.len();
    debug_assert!((9..=24).contains(&len));
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let n = len as u64 + 8; // the length of the hashed input
    // Input words at offsets 0, 8, n - 16 and n - 8 of `len ++ bytes`.
    let w0 = len as u64;
    let w1 = word(0);
    let w2 = if len >= 16 {
        word(len - 16)
    } else {
        // Spans the end of the length prefix and the start of the bytes:
        // the prefix's bytes there are its high bytes, all zero (len < 256).
        w1 << (8 * (16 - len))
    };
    let w3 = word(len - 8);
    let mix = |lo: u64, hi: u64, s_lo: u64, s_hi: u64| {
        let product = u128::from(lo ^ s_lo) * u128::from(hi ^ s_hi);
        (product as u64) ^ ((product >> 64) as u64)
    };
    let mut acc = n.wrapping_mul(PRIME64_1);
    acc = acc.wrapping_add(mix(w0, w1, S[0], S[1]));
    acc = acc.wrapping_add(mix(w2, w3, S[2], S[3]));
    // XXH3's avalanche.
    acc ^= acc >> 37;
    acc = acc.wrapping_mul(0x1656_6791_9E37_79F9);
    acc ^ (acc >> 32)
}

impl StableHash for String {
    #[inline]
    fn stable_hash_into(&self, h: &mut StableHasher) {
        self.as_str().stable_hash_into(h);
    }
    #[inline(always)]
    fn stable_hash(&self) -> u64 {
        self.as_str().stable_hash()
    }
    const INDIRECT: bool = true;
    #[inline(always)]
    fn prefetch(&self) {
        self.as_str().prefetch();
    }
}

impl<T: StableHash> StableHash for [T] {
    #[inline]
    fn stable_hash_into(&self, h: &mut StableHasher) {
        h.write_len(self.len());
        for item in self {
            item.stable_hash_into(h);
        }
    }
    // Where a slice is a key's field, the field is a reference or a box,
    // whose impls prefetch the items.
}

impl<T: StableHash> StableHash for Vec<T> {
    #[inline]
    fn stable_hash_into(&self, h: &mut StableHasher) {
        self.as_slice().stable_hash_into(h);
    }
    const INDIRECT: bool = true;
    #[inline(always)]
    fn prefetch(&self) {
        prefetch_read(self.as_ptr());
    }
}

impl<T: StableHash> StableHash for VecDeque<T> {
    fn stable_hash_into(&self, h: &mut StableHasher) {
        h.write_len(self.len());
        for item in self {
            item.stable_hash_into(h);
        }
    }
    const INDIRECT: bool = true;
    #[inline(always)]
    fn prefetch(&self) {
        prefetch_read(self.as_slices().0.as_ptr());
    }
}

impl<T: StableHash, const N: usize> StableHash for [T; N] {
    #[inline]
    fn stable_hash_into(&self, h: &mut StableHasher) {
        for item in self {
            item.stable_hash_into(h);
        }
    }
    const INDIRECT: bool = T::INDIRECT;
    #[inline(always)]
    fn prefetch(&self) {
        if T::INDIRECT {
            self.iter().for_each(T::prefetch);
        }
    }
}

impl<T: StableHash> StableHash for Option<T> {
    #[inline]
    fn stable_hash_into(&self, h: &mut StableHasher) {
        match self {
            None => h.write_u8(0),
            Some(v) => {
                h.write_u8(1);
                v.stable_hash_into(h);
            }
        }
    }
    const INDIRECT: bool = T::INDIRECT;
    #[inline(always)]
    fn prefetch(&self) {
        if let Some(v) = self {
            v.prefetch();
        }
    }
}

// Pointers hash and key as their pointee: `&str`, `Box<str>`, `Arc<str>` as
// `str`. The pointee is behind the pointer, so they are `INDIRECT`: if the
// pointee's own hash reads behind a pointer (a `&String`, the key of an
// event), its prefetch asks for that memory (reading the pointer, which is
// where this points); otherwise the pointee's first line (a `&u64`, or a
// `Box<str>`'s bytes).
macro_rules! deref_impls {
    ($($t:ty),*) => {$(
        impl<T: StableHash + ?Sized> StableHash for $t {
            #[inline]
            fn stable_hash_into(&self, h: &mut StableHasher) {
                (**self).stable_hash_into(h);
            }
            #[inline]
            fn stable_hash(&self) -> u64 {
                (**self).stable_hash()
            }
            const INDIRECT: bool = true;
            #[inline(always)]
            fn prefetch(&self) {
                if T::INDIRECT {
                    (**self).prefetch();
                } else {
                    prefetch_read::<T>(&**self);
                }
            }
        }
        impl<T: StateKey + ?Sized> StateKey for $t {
            const HAS_JAVA_HASH_CODE: bool = T::HAS_JAVA_HASH_CODE;
            #[inline]
            fn java_hash_code(&self) -> Option<i32> {
                (**self).java_hash_code()
            }
        }
    )*};
}
deref_impls!(&T, Box<T>, Rc<T>, Arc<T>);

impl StableHash for () {
    #[inline]
    fn stable_hash_into(&self, _: &mut StableHasher) {}
}

macro_rules! tuple_impls {
    ($(($($n:tt $t:ident),+))*) => {$(
        impl<$($t: StableHash),+> StableHash for ($($t,)+) {
            #[inline]
            fn stable_hash_into(&self, h: &mut StableHasher) {
                $(self.$n.stable_hash_into(h);)+
            }
            const INDIRECT: bool = $($t::INDIRECT)||+;
            #[inline(always)]
            fn prefetch(&self) {
                $(self.$n.prefetch();)+
            }
        }
        impl<$($t: StableHash),+> StateKey for ($($t,)+) {}
    )*};
}
tuple_impls! {
    (0 A)
    (0 A, 1 B)
    (0 A, 1 B, 2 C)
    (0 A, 1 B, 2 C, 3 D)
    (0 A, 1 B, 2 C, 3 D, 4 E)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H)
}

macro_rules! plain_state_keys {
    ($($t:ty),*) => {$( impl StateKey for $t {} )*};
}
plain_state_keys!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i128,
    isize,
    bool,
    char,
    ()
);

impl<T: StableHash> StateKey for Vec<T> {}
impl<T: StableHash> StateKey for Option<T> {}
impl<T: StableHash, const N: usize> StateKey for [T; N] {}

macro_rules! java_state_keys {
    ($($t:ty),*) => {$(
        impl StateKey for $t {
            const HAS_JAVA_HASH_CODE: bool = true;
            #[inline]
            fn java_hash_code(&self) -> Option<i32> {
                Some(JavaHashCode::java_hash_code(self))
            }
        }
    )*};
}
java_state_keys!(i32, i64, str, String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_spill_equals_one_shot() {
        for len in [
            0usize, 1, 100, 119, 120, 121, 128, 129, 240, 241, 1000, 10_000,
        ] {
            let s = "x".repeat(len);
            let mut bytes = (len as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(s.as_bytes());
            assert_eq!(s.stable_hash(), xxh3_64(&bytes), "len {len}");
            // Split over many small writes, crossing the inline boundary.
            let mut h = StableHasher::new();
            for chunk in bytes.chunks(7) {
                h.write_bytes(chunk);
            }
            assert_eq!(h.finish(), xxh3_64(&bytes), "chunked len {len}");
        }
    }

    #[test]
    fn register_path_for_9_to_24_bytes_is_xxh3_of_the_encoding() {
        let mut seed = 7u64;
        for len in 0..=64usize {
            for round in 0..20 {
                let s: String = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        let c = (seed >> 33) as u8;
                        if round % 2 == 0 {
                            (b'!' + c % 90) as char
                        } else {
                            char::from(c & 0x7f)
                        }
                    })
                    .collect();
                let mut bytes = (s.len() as u64).to_le_bytes().to_vec();
                bytes.extend_from_slice(s.as_bytes());
                assert_eq!(s.stable_hash(), xxh3_64(&bytes), "len {len} round {round}");
            }
        }
    }

    #[test]
    fn word_integers_hash_as_xxh3_of_their_bytes() {
        let mut seed = 11u64;
        let mut values = vec![0u64, 1, u32::MAX as u64, 1 << 32, u64::MAX, i64::MIN as u64];
        values.extend((0..5000).map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1442695040888963407);
            seed
        }));
        for v in values {
            assert_eq!(v.stable_hash(), xxh3_64(&v.to_le_bytes()), "u64 {v:#x}");
            assert_eq!(
                (v as i64).stable_hash(),
                xxh3_64(&v.to_le_bytes()),
                "i64 {v:#x}"
            );
            let w = v as u32;
            assert_eq!(w.stable_hash(), xxh3_64(&w.to_le_bytes()), "u32 {w:#x}");
            assert_eq!(
                (w as i32).stable_hash(),
                xxh3_64(&w.to_le_bytes()),
                "i32 {w:#x}"
            );
        }
    }

    #[test]
    fn overridden_fast_paths_match_generic_path() {
        fn generic<T: StableHash + ?Sized>(v: &T) -> u64 {
            let mut h = StableHasher::new();
            v.stable_hash_into(&mut h);
            h.finish()
        }
        assert_eq!(7u8.stable_hash(), generic(&7u8));
        assert_eq!((-9i64).stable_hash(), generic(&-9i64));
        assert_eq!((-9i32).stable_hash(), generic(&-9i32));
        assert_eq!(9u32.stable_hash(), generic(&9u32));
        assert_eq!(5usize.stable_hash(), 5u64.stable_hash());
        assert_eq!((-5isize).stable_hash(), (-5i64).stable_hash());
        assert_eq!(u128::MAX.stable_hash(), generic(&u128::MAX));
        assert_eq!(Box::new(3u32).stable_hash(), 3u32.stable_hash());
        assert_eq!((&"k").stable_hash(), "k".stable_hash());
        assert_eq!(String::from("k").stable_hash(), "k".stable_hash());
        for len in [0, 1, 12, 55, 56, 57, 200] {
            let s = "é".repeat(len / 2) + &"a".repeat(len % 2);
            assert_eq!(s.stable_hash(), generic(s.as_str()), "len {len}");
        }
        assert_eq!(vec![1u8, 2].stable_hash(), [1u8, 2][..].stable_hash());
    }
}
