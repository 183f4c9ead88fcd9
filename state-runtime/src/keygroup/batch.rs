//! Key groups of many keys at once: [`KeyGroupAssigner::key_groups_into`].
//!
//! The per-key formulas are the same as [`KeyGroupAssigner::key_group`]'s;
//! a batch only lets them run as straight loops the compiler vectorizes.
//! The loops are compiled twice, for the baseline target and with AVX2
//! (chosen once per call by runtime CPU detection), so one binary runs on
//! every x86-64 and uses 256-bit lanes where the CPU has them: 32-bit
//! multiplies eight lanes at a time for Flink's murmur mix, the 64-bit
//! multiplies of XXH3 four lanes at a time for native integer keys.
//!
//! Flink mode takes two passes per chunk: the Java hash codes (scalar for
//! strings), then murmur and the modulo over the chunk (vectorized). The
//! modulo by a non-power-of-two max parallelism is a multiply and a shift
//! (Granlund and Montgomery; exact because murmur's output has 31 bits),
//! which, unlike the 128-bit product of the per-key fastmod, vectorizes.

use super::{AssignerKind, KeyGroup, KeyGroupAssigner, MaxParallelism, NativeScale};
use crate::error::StateError;
use crate::hash::murmur_hash;
use crate::hash::{StableHash, StateKey, prefetch_read};
use crate::key::Keyed;

/// Keys per chunk in Flink mode: the hash codes of one chunk stay in L1.
const CHUNK: usize = 256;

impl KeyGroupAssigner {
    /// Appends the key group of every key in `keys` to `out`, in order: the
    /// same values as [`key_group`](Self::key_group) key by key, computed a
    /// batch at a time (vectorized where the CPU allows; see the
    /// `keygroup` benchmark). Use it where events arrive in batches, e.g.
    /// to route a batch to the subtasks owning its keys.
    ///
    /// Errors, before appending anything, in Flink mode for a key type that
    /// has no Java `hashCode()`.
    ///
    /// ```
    /// use state_runtime::keygroup::{KeyGroupAssigner, MaxParallelism};
    ///
    /// let flink = KeyGroupAssigner::flink(MaxParallelism::new(128)?);
    /// let keys: Vec<i64> = (0..1000).collect();
    /// let mut groups = Vec::new();
    /// flink.key_groups_into(&keys, &mut groups)?;
    /// assert_eq!(groups.len(), 1000);
    /// for (key, kg) in keys.iter().zip(&groups) {
    ///     assert_eq!(*kg, flink.key_group(key)?);
    /// }
    /// # Ok::<(), state_runtime::StateError>(())
    /// ```
    pub fn key_groups_into<K: StateKey>(
        &self,
        keys: &[K],
        out: &mut Vec<KeyGroup>,
    ) -> Result<(), StateError> {
        self.check_key_type::<K>()?;
        dispatch::<K, _>(self, keys, key_access::<K>(), out)
    }

    /// Appends the key group of every event's key
    /// ([`Keyed::key`]) to `out`, in order: what
    /// [`key_groups_into`](Self::key_groups_into) does for keys, without
    /// collecting the keys first. The job runner routes each polled batch of
    /// events with it.
    ///
    /// ```
    /// use state_runtime::prelude::*;
    ///
    /// #[derive(Keyed)]
    /// struct Payment {
    ///     #[key]
    ///     customer: u64,
    ///     cents: i64,
    /// }
    ///
    /// let native = KeyGroupAssigner::native(MaxParallelism::new(128)?);
    /// let events: Vec<Payment> = (0..10).map(|c| Payment { customer: c, cents: 1 }).collect();
    /// let mut groups = Vec::new();
    /// native.event_key_groups_into(&events, &mut groups)?;
    /// assert_eq!(groups[3], native.key_group(&3u64)?);
    /// # Ok::<(), state_runtime::StateError>(())
    /// ```
    pub fn event_key_groups_into<E: Keyed>(
        &self,
        events: &[E],
        out: &mut Vec<KeyGroup>,
    ) -> Result<(), StateError> {
        self.check_key_type::<E::Key>()?;
        let access = KeyAccess {
            stable_hash: |e: &E| e.key().stable_hash(),
            java_hash_code: |e: &E| e.key().java_hash_code(),
            prefetch: |e: &E| e.key().prefetch(),
            indirect: <E::Key as StableHash>::INDIRECT,
        };
        dispatch::<E::Key, _>(self, events, access, out)
    }
}

/// How a batch gets at the keys of its items (keys, or events holding them).
struct KeyAccess<H, J, P> {
    stable_hash: H,
    java_hash_code: J,
    /// [`StableHash::prefetch`] of the item's key.
    prefetch: P,
    /// [`StableHash::INDIRECT`] of the key type.
    indirect: bool,
}

/// The access to keys that are the items themselves. (The functions keep
/// their own types, not function pointers, so that they inline into the
/// AVX2 build of the loops.)
#[allow(clippy::type_complexity)] // three `impl Fn`s, as `dispatch` takes them
fn key_access<K: StateKey>()
-> KeyAccess<impl Fn(&K) -> u64, impl Fn(&K) -> Option<i32>, impl Fn(&K)> {
    KeyAccess {
        stable_hash: K::stable_hash,
        java_hash_code: K::java_hash_code,
        prefetch: K::prefetch,
        indirect: K::INDIRECT,
    }
}

/// Items ahead of the one being hashed whose key memory is prefetched
/// ([`StableHash::prefetch`]), for keys that hash memory behind a pointer.
const PREFETCH_KEYS_AHEAD: usize = 64;
/// Items ahead whose own memory (a `String`'s pointer and length, say) is
/// prefetched, so that reading the pointer `PREFETCH_KEYS_AHEAD` items ahead
/// does not wait for memory.
const PREFETCH_ITEMS_AHEAD: usize = 4 * PREFETCH_KEYS_AHEAD;

/// Appends the key groups of `items` (keys of type `K`) to `out` with the
/// best build of [`assign`] for this CPU. If an item in Flink mode had no
/// Java hash code (a key type that claims one but returned none), appends
/// nothing and errors.
fn dispatch<K, T>(
    assigner: &KeyGroupAssigner,
    items: &[T],
    access: KeyAccess<impl Fn(&T) -> u64, impl Fn(&T) -> Option<i32>, impl Fn(&T)>,
    out: &mut Vec<KeyGroup>,
) -> Result<(), StateError> {
    let start = out.len();
    out.resize(start + items.len(), 0);
    let dst = &mut out[start..];
    let complete = 'assigned: {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `assign_avx2` only needs AVX2, which the CPU has
            // (detected just above).
            break 'assigned unsafe { assign_avx2(assigner, items, &access, dst) };
        }
        assign_portable(assigner, items, &access, dst)
    };
    if complete {
        Ok(())
    } else {
        out.truncate(start);
        Err(StateError::KeyNotFlinkCompatible {
            key_type: std::any::type_name::<K>(),
        })
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn assign_avx2<T>(
    assigner: &KeyGroupAssigner,
    items: &[T],
    access: &KeyAccess<impl Fn(&T) -> u64, impl Fn(&T) -> Option<i32>, impl Fn(&T)>,
    out: &mut [KeyGroup],
) -> bool {
    assign(assigner, items, access, out)
}

/// The baseline-target build of [`assign`] (also the one tests compare).
fn assign_portable<T>(
    assigner: &KeyGroupAssigner,
    items: &[T],
    access: &KeyAccess<impl Fn(&T) -> u64, impl Fn(&T) -> Option<i32>, impl Fn(&T)>,
    out: &mut [KeyGroup],
) -> bool {
    assign(assigner, items, access, out)
}

/// Writes the key group of `items[i]` to `out[i]`. False if an item in Flink
/// mode had no Java hash code.
#[inline(always)]
fn assign<T>(
    assigner: &KeyGroupAssigner,
    items: &[T],
    access: &KeyAccess<impl Fn(&T) -> u64, impl Fn(&T) -> Option<i32>, impl Fn(&T)>,
    out: &mut [KeyGroup],
) -> bool {
    debug_assert_eq!(items.len(), out.len());
    let max_p = assigner.max_parallelism();
    let hash = &access.stable_hash;
    match assigner.kind() {
        // One loop per form of the scaling, so that neither tests the form
        // per key.
        AssignerKind::Native => {
            match NativeScale::new(max_p) {
                NativeScale::TopBits { shift } => map_ahead(items, 0, out, access, |item| {
                    NativeScale::top_bits(hash(item), shift)
                }),
                NativeScale::Multiply { max_p } => map_ahead(items, 0, out, access, |item| {
                    NativeScale::multiply(hash(item), max_p)
                }),
            }
            true
        }
        AssignerKind::Flink => {
            let modulo = Modulo31::new(max_p);
            let mut codes = [0i32; CHUNK];
            let mut complete = true;
            for (n, out) in out.chunks_mut(CHUNK).enumerate() {
                let codes = &mut codes[..out.len()];
                map_ahead(items, n * CHUNK, codes, access, |item| {
                    let code = (access.java_hash_code)(item);
                    complete &= code.is_some();
                    code.unwrap_or(0)
                });
                match modulo {
                    Modulo31::Mask(mask) => {
                        for (o, &c) in out.iter_mut().zip(codes.iter()) {
                            *o = murmur_hash(c) as u32 & mask;
                        }
                    }
                    Modulo31::MulShift {
                        divisor,
                        magic,
                        shift,
                    } => {
                        for (o, &c) in out.iter_mut().zip(codes.iter()) {
                            let x = murmur_hash(c) as u32;
                            let q = ((u64::from(x) * u64::from(magic)) >> shift) as u32;
                            *o = x - q * divisor;
                        }
                    }
                }
            }
            complete
        }
    }
}

/// Writes `f(&items[start + i])` to `out[i]` for every `i` in `out`.
///
/// For keys that hash memory behind a pointer
/// ([`StableHash::INDIRECT`]), each step also prefetches what a later step
/// reads: the item `PREFETCH_ITEMS_AHEAD` ahead, and the key memory of the
/// item `PREFETCH_KEYS_AHEAD` ahead. The hardware prefetcher follows the
/// items, but not the pointers in them. For plain keys the loop is
/// unchanged, so it still vectorizes.
#[inline(always)]
fn map_ahead<T, R, P: Fn(&T)>(
    items: &[T],
    start: usize,
    out: &mut [R],
    access: &KeyAccess<impl Fn(&T) -> u64, impl Fn(&T) -> Option<i32>, P>,
    mut f: impl FnMut(&T) -> R,
) {
    let chunk = &items[start..start + out.len()];
    if !access.indirect {
        for (o, item) in out.iter_mut().zip(chunk) {
            *o = f(item);
        }
        return;
    }
    // The first `m` steps have an item `PREFETCH_KEYS_AHEAD` ahead.
    let ahead = items.get(start + PREFETCH_KEYS_AHEAD..).unwrap_or(&[]);
    let m = ahead.len().min(out.len());
    let (out_ahead, out_rest) = out.split_at_mut(m);
    for ((o, item), next) in out_ahead.iter_mut().zip(chunk).zip(ahead) {
        prefetch_read(std::ptr::from_ref(item).wrapping_add(PREFETCH_ITEMS_AHEAD));
        (access.prefetch)(next);
        *o = f(item);
    }
    for (o, item) in out_rest.iter_mut().zip(&chunk[m..]) {
        *o = f(item);
    }
}

/// `x % max_parallelism` for `x < 2^31` (murmur's output) in a form that
/// vectorizes.
#[derive(Clone, Copy, Debug)]
enum Modulo31 {
    /// A power of two: `x & mask`.
    Mask(u32),
    /// `x - ((x * magic) >> shift) * divisor`, with `l = ceil(log2 d)`,
    /// `shift = 31 + l` and `magic = ceil(2^shift / d)`. Then
    /// `2^shift <= magic * d <= 2^shift + d - 1 < 2^shift + 2^l`, which makes
    /// the quotient exact for every 31-bit `x` (Granlund and Montgomery,
    /// "Division by invariant integers using multiplication", theorem 4.2).
    /// For `d` not a power of two, `magic < 2^32`.
    MulShift {
        divisor: u32,
        magic: u32,
        shift: u32,
    },
}

impl Modulo31 {
    fn new(max_parallelism: MaxParallelism) -> Self {
        let d = max_parallelism.get();
        if d.is_power_of_two() {
            return Modulo31::Mask(d - 1);
        }
        let l = 32 - (d - 1).leading_zeros();
        let shift = 31 + l;
        let magic = (1u64 << shift).div_ceil(u64::from(d));
        Modulo31::MulShift {
            divisor: d,
            magic: u32::try_from(magic).expect("magic < 2^32 for a non-power-of-two divisor"),
            shift,
        }
    }

    #[cfg(test)]
    fn apply(self, x: u32) -> u32 {
        match self {
            Modulo31::Mask(mask) => x & mask,
            Modulo31::MulShift {
                divisor,
                magic,
                shift,
            } => x - ((u64::from(x) * u64::from(magic)) >> shift) as u32 * divisor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulo31_is_exact_for_every_max_parallelism() {
        let mut seed = 3u64;
        for d in 1..=super::super::UPPER_BOUND_MAX_PARALLELISM {
            let m = Modulo31::new(MaxParallelism::new(d).unwrap());
            let top = (1u32 << 31) - 1;
            // The edges of the quotient steps near 0 and near 2^31, and random
            // points in between.
            let q_top = top / d;
            let probes = [
                0,
                1,
                d - 1,
                d,
                d + 1,
                top,
                top - 1,
                q_top * d,
                q_top * d - 1,
            ];
            for x in probes.into_iter().chain((0..24).map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (seed >> 33) as u32
            })) {
                assert_eq!(m.apply(x), x % d, "{x} % {d}");
            }
        }
    }

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *seed
    }

    /// Every build of the batch (portable, AVX2 where the CPU has it, and
    /// the public entry) equals the per-key assignment.
    fn check_batch_equals_per_key<K: StateKey + std::fmt::Debug>(keys: &[K]) {
        for max_p in [1, 2, 3, 100, 128, 129, 1000, 4096, 32767, 32768] {
            let max_p = MaxParallelism::new(max_p).unwrap();
            // Flink mode only for key types with a Java hash code.
            let flink = K::HAS_JAVA_HASH_CODE.then(|| KeyGroupAssigner::flink(max_p));
            for assigner in [KeyGroupAssigner::native(max_p)].into_iter().chain(flink) {
                let expected: Vec<KeyGroup> = keys
                    .iter()
                    .map(|k| assigner.key_group(k).unwrap())
                    .collect();
                let access = key_access::<K>();
                let mut portable = vec![0; keys.len()];
                assert!(assign_portable(&assigner, keys, &access, &mut portable));
                assert_eq!(portable, expected, "portable, {assigner:?}");
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    let mut avx2 = vec![0; keys.len()];
                    // SAFETY: the CPU has AVX2.
                    assert!(unsafe { assign_avx2(&assigner, keys, &access, &mut avx2) });
                    assert_eq!(avx2, expected, "avx2, {assigner:?}");
                }
                let mut appended = vec![7];
                assigner.key_groups_into(keys, &mut appended).unwrap();
                assert_eq!(appended[0], 7);
                assert_eq!(
                    &appended[1..],
                    &expected[..],
                    "key_groups_into, {assigner:?}"
                );
            }
        }
    }

    #[test]
    fn batches_equal_per_key_assignment() {
        let mut seed = 5u64;
        // Lengths around the chunk size and the vector widths.
        for n in [0, 1, 7, 8, 9, 255, 256, 257, 1000] {
            let ints: Vec<i64> = (0..n).map(|_| lcg(&mut seed) as i64).collect();
            check_batch_equals_per_key(&ints);
            let ints32: Vec<i32> = ints.iter().map(|&v| v as i32).collect();
            check_batch_equals_per_key(&ints32);
        }
        let edges = [0i64, 1, -1, i64::MIN, i64::MAX, i32::MIN as i64, 1 << 31];
        check_batch_equals_per_key(&edges);
        let strings: Vec<String> = (0..600)
            .map(|i| {
                let len = i % 40;
                let r = lcg(&mut seed);
                let mut s: String = (0..len)
                    .map(|j| (b'a' + ((r >> (j % 60)) % 26) as u8) as char)
                    .collect();
                if i % 7 == 0 {
                    s.push('é');
                }
                s
            })
            .collect();
        check_batch_equals_per_key(&strings);
    }

    /// Keys whose hash reads behind a pointer take the look-ahead loop; it
    /// must visit every key once, in order, whatever the count around the
    /// look-ahead distances and the Flink chunk.
    #[test]
    fn indirect_keys_of_every_shape_batch_as_key_by_key() {
        let mut seed = 9u64;
        for n in [
            0,
            1,
            PREFETCH_KEYS_AHEAD - 1,
            PREFETCH_KEYS_AHEAD,
            PREFETCH_KEYS_AHEAD + 1,
            PREFETCH_ITEMS_AHEAD + 1,
            CHUNK + PREFETCH_KEYS_AHEAD,
            3 * CHUNK - 1,
        ] {
            let strings: Vec<String> = (0..n)
                .map(|_| format!("k{:x}", lcg(&mut seed) >> (lcg(&mut seed) % 64)))
                .collect();
            check_batch_equals_per_key(&strings);
            let boxed: Vec<Box<str>> = strings.iter().map(|s| s.as_str().into()).collect();
            check_batch_equals_per_key(&boxed);
            let shared: Vec<std::sync::Arc<str>> =
                strings.iter().map(|s| s.as_str().into()).collect();
            check_batch_equals_per_key(&shared);
            let borrowed: Vec<&str> = strings.iter().map(String::as_str).collect();
            check_batch_equals_per_key(&borrowed);
            let borrowed_strings: Vec<&String> = strings.iter().collect();
            check_batch_equals_per_key(&borrowed_strings);
            let bytes: Vec<Vec<u8>> = strings.iter().map(|s| s.clone().into_bytes()).collect();
            check_batch_equals_per_key(&bytes);
            let optional: Vec<Option<String>> = strings
                .iter()
                .enumerate()
                .map(|(i, s)| (i % 3 != 0).then(|| s.clone()))
                .collect();
            check_batch_equals_per_key(&optional);
            let pairs: Vec<(u16, String)> = strings
                .iter()
                .enumerate()
                .map(|(i, s)| (i as u16, s.clone()))
                .collect();
            check_batch_equals_per_key(&pairs);
        }
    }

    thread_local! {
        /// What [`Logged`] keys saw: `(prefetched, id)`, in order.
        static LOG: std::cell::RefCell<Vec<(bool, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// A key that logs its prefetches and its hashing.
    #[derive(Debug)]
    struct Logged(usize);

    impl StableHash for Logged {
        fn stable_hash_into(&self, h: &mut crate::hash::StableHasher) {
            LOG.with(|l| l.borrow_mut().push((false, self.0)));
            h.write_u64(self.0 as u64);
        }
        const INDIRECT: bool = true;
        fn prefetch(&self) {
            LOG.with(|l| l.borrow_mut().push((true, self.0)));
        }
    }

    impl StateKey for Logged {
        const HAS_JAVA_HASH_CODE: bool = true;
        fn java_hash_code(&self) -> Option<i32> {
            LOG.with(|l| l.borrow_mut().push((false, self.0)));
            Some(self.0 as i32)
        }
    }

    /// Each key is prefetched once, `PREFETCH_KEYS_AHEAD` keys before it is
    /// hashed, across the Flink chunks; every key is hashed once, in order.
    #[test]
    fn the_look_ahead_prefetches_each_key_a_fixed_distance_ahead() {
        for n in [10, PREFETCH_KEYS_AHEAD + 1, 3 * CHUNK + 7] {
            let keys: Vec<Logged> = (0..n).map(Logged).collect();
            let max_p = MaxParallelism::new(128).unwrap();
            for assigner in [
                KeyGroupAssigner::native(max_p),
                KeyGroupAssigner::flink(max_p),
            ] {
                LOG.with(|l| l.borrow_mut().clear());
                let mut groups = Vec::new();
                assigner.key_groups_into(&keys, &mut groups).unwrap();
                let log = LOG.with(|l| std::mem::take(&mut *l.borrow_mut()));
                let mut hashed = 0;
                let mut prefetched = Vec::new();
                for (is_prefetch, id) in log {
                    if is_prefetch {
                        assert_eq!(id, hashed + PREFETCH_KEYS_AHEAD, "{assigner:?}, n {n}");
                        prefetched.push(id);
                    } else {
                        assert_eq!(id, hashed, "{assigner:?}, n {n}");
                        hashed += 1;
                    }
                }
                assert_eq!(hashed, n, "{assigner:?}");
                let expected: Vec<usize> = (PREFETCH_KEYS_AHEAD..n).collect();
                assert_eq!(prefetched, expected, "{assigner:?}, n {n}");
            }
        }
    }

    #[test]
    fn flink_batch_refuses_keys_without_java_hash_code() {
        #[derive(Debug)]
        struct NoJava(u8);
        impl StableHash for NoJava {
            fn stable_hash_into(&self, h: &mut crate::hash::StableHasher) {
                h.write_u8(self.0);
            }
        }
        impl StateKey for NoJava {}
        let flink = KeyGroupAssigner::flink(MaxParallelism::new(128).unwrap());
        let mut out = vec![1, 2];
        let err = flink.key_groups_into(&[NoJava(1)], &mut out).unwrap_err();
        assert!(
            matches!(err, StateError::KeyNotFlinkCompatible { .. }),
            "{err}"
        );
        assert_eq!(out, [1, 2]);
        // A key type that claims a Java hash code but returns none.
        #[derive(Debug)]
        struct Liar(u8);
        impl StableHash for Liar {
            fn stable_hash_into(&self, h: &mut crate::hash::StableHasher) {
                h.write_u8(self.0);
            }
        }
        impl StateKey for Liar {
            const HAS_JAVA_HASH_CODE: bool = true;
        }
        let err = flink
            .key_groups_into(&[Liar(1), Liar(2)], &mut out)
            .unwrap_err();
        assert!(
            matches!(err, StateError::KeyNotFlinkCompatible { .. }),
            "{err}"
        );
        assert_eq!(out, [1, 2]);
        let native = KeyGroupAssigner::native(MaxParallelism::new(128).unwrap());
        native.key_groups_into(&[NoJava(1)], &mut out).unwrap();
        assert_eq!(out.len(), 3);
    }
}
