//! Key groups: the atomic unit in which keyed state is redistributed.
//!
//! Keys are hashed into `max_parallelism` key groups. Each of `p` parallel
//! instances (subtasks) owns one contiguous [`KeyGroupRange`]; on a rescale
//! from `p` to `q` instances whole key groups move, never single keys.
//!
//! The range formulas are Apache Flink's (`KeyGroupRangeAssignment`), so that
//! the same max parallelism and parallelism give the same ranges as Flink:
//!
//! * range of subtask `i` of `p`: `start = ceil(i * maxP / p)`,
//!   `end = ceil((i + 1) * maxP / p) - 1`;
//! * subtask owning key group `kg`: `kg * p / maxP`.
//!
//! How a *key* maps to a key group is the job of a [`KeyGroupAssigner`]: the
//! native one scales the key's [`StableHash`](crate::hash::StableHash) into
//! the key-group space, the Flink one reproduces Flink's
//! `murmurHash(key.hashCode()) % maxP` (see [`crate::flink`]).
//!
//! ```
//! use state_runtime::keygroup::{MaxParallelism, key_group_range_for_subtask, subtask_for_key_group};
//!
//! let max_p = MaxParallelism::new(128)?;
//! let range = key_group_range_for_subtask(max_p, 3, 1)?;
//! assert_eq!((range.start(), range.last()), (43, Some(85)));
//! assert_eq!(subtask_for_key_group(max_p, 3, 85)?, 1);
//! # Ok::<(), state_runtime::StateError>(())
//! ```

use std::fmt;
use std::ops::Range;

mod batch;

use crate::error::StateError;
use crate::hash::StateKey;

/// The largest max parallelism (number of key groups) there can be: `2^15`.
pub const UPPER_BOUND_MAX_PARALLELISM: u32 = 1 << 15;

/// The smallest max parallelism the default formula picks.
pub const DEFAULT_LOWER_BOUND_MAX_PARALLELISM: u32 = 1 << 7;

/// A key group index, in `0..max_parallelism`.
pub type KeyGroup = u32;

/// A contiguous, possibly empty, range of key groups.
///
/// ```
/// use state_runtime::keygroup::KeyGroupRange;
///
/// let r = KeyGroupRange::new(10, 19); // inclusive, as in Flink
/// assert_eq!(r.len(), 10);
/// assert!(r.contains(19) && !r.contains(20));
/// let i = r.intersection(KeyGroupRange::new(15, 40));
/// assert_eq!(i.iter().collect::<Vec<_>>(), vec![15, 16, 17, 18, 19]);
/// assert!(r.intersection(KeyGroupRange::new(30, 40)).is_empty());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(from = "RawKeyGroupRange")]
pub struct KeyGroupRange {
    start: u32,
    end_exclusive: u32,
}

/// [`KeyGroupRange`]'s fields as read from a checkpoint, before the range
/// is normalized (an end before the start is the empty range), so that a
/// corrupt or hand-made range can never make `len` underflow.
#[derive(serde::Deserialize)]
struct RawKeyGroupRange {
    start: u32,
    end_exclusive: u32,
}

impl From<RawKeyGroupRange> for KeyGroupRange {
    fn from(raw: RawKeyGroupRange) -> Self {
        KeyGroupRange::from_exclusive(raw.start, raw.end_exclusive)
    }
}

impl KeyGroupRange {
    /// The range `start..=end_inclusive`. If `end_inclusive < start` the range
    /// is empty (Flink writes the empty range as `[0, -1]`). Key groups are
    /// below 32768; an `end_inclusive` of `u32::MAX` ends the range at
    /// `u32::MAX - 1`, as the end is stored exclusive.
    pub const fn new(start: u32, end_inclusive: u32) -> Self {
        Self::from_exclusive(start, end_inclusive.saturating_add(1))
    }

    /// The range `range.start..range.end` (end exclusive).
    pub const fn from_exclusive(start: u32, end_exclusive: u32) -> Self {
        if end_exclusive <= start {
            Self::EMPTY
        } else {
            Self {
                start,
                end_exclusive,
            }
        }
    }

    /// The empty range.
    pub const EMPTY: Self = Self {
        start: 0,
        end_exclusive: 0,
    };

    /// The first key group (0 for the empty range).
    pub const fn start(&self) -> u32 {
        self.start
    }

    /// One past the last key group.
    pub const fn end_exclusive(&self) -> u32 {
        self.end_exclusive
    }

    /// The last key group, `None` for the empty range.
    pub const fn last(&self) -> Option<u32> {
        if self.is_empty() {
            None
        } else {
            Some(self.end_exclusive - 1)
        }
    }

    /// Number of key groups in the range.
    pub const fn len(&self) -> u32 {
        self.end_exclusive - self.start
    }

    /// Whether the range holds no key group.
    pub const fn is_empty(&self) -> bool {
        self.end_exclusive == self.start
    }

    /// Whether `key_group` is in the range.
    pub const fn contains(&self, key_group: KeyGroup) -> bool {
        key_group >= self.start && key_group < self.end_exclusive
    }

    /// The key groups in both ranges (possibly empty).
    pub fn intersection(&self, other: KeyGroupRange) -> KeyGroupRange {
        KeyGroupRange::from_exclusive(
            self.start.max(other.start),
            self.end_exclusive.min(other.end_exclusive),
        )
    }

    /// The key groups in order.
    pub fn iter(&self) -> Range<u32> {
        self.start..self.end_exclusive
    }

    /// The position of `key_group` inside this range, if it is in it.
    pub fn index_of(&self, key_group: KeyGroup) -> Option<usize> {
        self.contains(key_group)
            .then(|| (key_group - self.start) as usize)
    }
}

impl IntoIterator for KeyGroupRange {
    type Item = u32;
    type IntoIter = Range<u32>;
    fn into_iter(self) -> Range<u32> {
        self.iter()
    }
}

impl fmt::Debug for KeyGroupRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that width and alignment flags work in tables.
        match self.last() {
            Some(last) => f.pad(&format!("[{}..={}]", self.start, last)),
            None => f.pad("[empty]"),
        }
    }
}

/// A validated max parallelism: the number of key groups, in `1..=32768`.
///
/// ```
/// use state_runtime::keygroup::MaxParallelism;
///
/// assert_eq!(MaxParallelism::default_for(100)?.get(), 256);
/// assert!(MaxParallelism::new(0).is_err());
/// # Ok::<(), state_runtime::StateError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MaxParallelism {
    value: u32,
    /// `ceil(2^64 / value)`, for a division-free `x % value` (Lemire's fastmod).
    mod_magic: u64,
}

impl MaxParallelism {
    /// Checks that `value` is in `1..=32768`.
    pub const fn new(value: u32) -> Result<Self, StateError> {
        if value == 0 || value > UPPER_BOUND_MAX_PARALLELISM {
            Err(StateError::InvalidMaxParallelism { got: value as u64 })
        } else {
            Ok(Self::new_unchecked(value))
        }
    }

    /// 128 key groups: Flink's default for any parallelism up to 85
    /// ([`default_for`](Self::default_for)), and a good choice for a job
    /// that will not run on more than 128 instances.
    ///
    /// ```
    /// use state_runtime::keygroup::{KeyGroupAssigner, MaxParallelism};
    ///
    /// let assigner = KeyGroupAssigner::native(MaxParallelism::DEFAULT);
    /// assert_eq!(assigner.max_parallelism().get(), 128);
    /// assert_eq!(MaxParallelism::DEFAULT, MaxParallelism::default_for(85).unwrap());
    /// ```
    pub const DEFAULT: Self = Self::new_unchecked(DEFAULT_LOWER_BOUND_MAX_PARALLELISM);

    const fn new_unchecked(value: u32) -> Self {
        Self {
            value,
            mod_magic: (u64::MAX / value as u64).wrapping_add(1),
        }
    }

    /// `x % max_parallelism` without a division instruction (exact for every
    /// `u32`; Lemire, Kaser & Kurz, "Faster remainder by direct computation").
    #[inline]
    pub const fn reduce(self, x: u32) -> u32 {
        if self.value.is_power_of_two() {
            // The default max parallelism (128) and most chosen ones.
            return x & (self.value - 1);
        }
        let low = self.mod_magic.wrapping_mul(x as u64);
        ((low as u128 * self.value as u128) >> 64) as u32
    }

    /// Flink's default for an operator of the given parallelism:
    /// `min(max(next_power_of_two(p + p / 2), 128), 32768)`.
    ///
    /// Errors for a parallelism of 0 or above 32768, as Flink does.
    pub fn default_for(parallelism: usize) -> Result<Self, StateError> {
        if parallelism == 0 {
            return Err(StateError::ZeroParallelism);
        }
        if parallelism > UPPER_BOUND_MAX_PARALLELISM as usize {
            return Err(StateError::ParallelismAboveMax {
                parallelism,
                max_parallelism: UPPER_BOUND_MAX_PARALLELISM,
            });
        }
        let wanted = (parallelism as u64 + parallelism as u64 / 2).next_power_of_two();
        let clamped = wanted.clamp(
            DEFAULT_LOWER_BOUND_MAX_PARALLELISM as u64,
            UPPER_BOUND_MAX_PARALLELISM as u64,
        );
        Ok(Self::new_unchecked(clamped as u32))
    }

    /// The number of key groups.
    pub const fn get(self) -> u32 {
        self.value
    }

    /// Checks that `parallelism` is in `1..=self`.
    pub fn check_parallelism(self, parallelism: usize) -> Result<(), StateError> {
        if parallelism == 0 {
            Err(StateError::ZeroParallelism)
        } else if parallelism > self.value as usize {
            Err(StateError::ParallelismAboveMax {
                parallelism,
                max_parallelism: self.value,
            })
        } else {
            Ok(())
        }
    }

    /// All key groups: `[0, max_parallelism)`.
    pub const fn all_key_groups(self) -> KeyGroupRange {
        KeyGroupRange::from_exclusive(0, self.value)
    }
}

impl serde::Serialize for MaxParallelism {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for MaxParallelism {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        MaxParallelism::new(v).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for MaxParallelism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.value, f)
    }
}

/// The key groups owned by subtask `subtask` of `parallelism` instances.
///
/// Errors, not panics, for parallelism 0, parallelism above the max
/// parallelism, and `subtask >= parallelism` (Flink does not check the last
/// and returns a range past the end).
pub fn key_group_range_for_subtask(
    max_parallelism: MaxParallelism,
    parallelism: usize,
    subtask: usize,
) -> Result<KeyGroupRange, StateError> {
    max_parallelism.check_parallelism(parallelism)?;
    if subtask >= parallelism {
        return Err(StateError::SubtaskOutOfRange {
            subtask,
            parallelism,
        });
    }
    let max_p = max_parallelism.get() as u64;
    let p = parallelism as u64;
    let i = subtask as u64;
    let start = (i * max_p).div_ceil(p);
    let end_exclusive = ((i + 1) * max_p).div_ceil(p);
    Ok(KeyGroupRange::from_exclusive(
        start as u32,
        end_exclusive as u32,
    ))
}

/// The subtask of `parallelism` instances that owns `key_group`:
/// `key_group * parallelism / max_parallelism`.
pub fn subtask_for_key_group(
    max_parallelism: MaxParallelism,
    parallelism: usize,
    key_group: KeyGroup,
) -> Result<usize, StateError> {
    max_parallelism.check_parallelism(parallelism)?;
    if key_group >= max_parallelism.get() {
        return Err(StateError::KeyGroupOutOfRange {
            key_group,
            max_parallelism: max_parallelism.get(),
        });
    }
    // `check_parallelism` bounds it by the max parallelism, a u32.
    Ok(
        subtask_for_key_group_unchecked(max_parallelism.get(), parallelism as u32, key_group)
            as usize,
    )
}

#[inline]
pub(crate) const fn subtask_for_key_group_unchecked(max_p: u32, parallelism: u32, kg: u32) -> u32 {
    ((kg as u64 * parallelism as u64) / max_p as u64) as u32
}

/// The native key group of a 64-bit stable hash: the key's place in the hash
/// space scaled to `max_parallelism`, `((hash >> 32) * max_p) >> 32`.
///
/// Every key group is therefore a contiguous interval of the hash space, and
/// so is every subtask's range: the assignment is monotone in the hash.
#[inline]
pub const fn native_key_group_for_hash(hash: u64, max_parallelism: MaxParallelism) -> KeyGroup {
    NativeScale::new(max_parallelism).apply(hash)
}

/// [`native_key_group_for_hash`] for one max parallelism, with the choice
/// between its two forms made once (a batch makes it outside its loop).
#[derive(Clone, Copy, Debug)]
pub(crate) enum NativeScale {
    /// `2^k` key groups, `k >= 1` (the default 128 and most chosen ones):
    /// the top `k` bits, `hash >> shift` with `shift = 64 - k`. The same
    /// value as the product, in one shift.
    TopBits { shift: u32 },
    /// Any other max parallelism (and 1): `((hash >> 32) * max_p) >> 32`.
    Multiply { max_p: u64 },
}

impl NativeScale {
    #[inline]
    pub(crate) const fn new(max_parallelism: MaxParallelism) -> Self {
        let m = max_parallelism.get();
        if m.is_power_of_two() && m > 1 {
            NativeScale::TopBits {
                shift: 64 - m.trailing_zeros(),
            }
        } else {
            NativeScale::Multiply { max_p: m as u64 }
        }
    }

    #[inline(always)]
    pub(crate) const fn apply(self, hash: u64) -> KeyGroup {
        match self {
            NativeScale::TopBits { shift } => Self::top_bits(hash, shift),
            NativeScale::Multiply { max_p } => Self::multiply(hash, max_p),
        }
    }

    #[inline(always)]
    pub(crate) const fn top_bits(hash: u64, shift: u32) -> KeyGroup {
        (hash >> shift) as u32
    }

    #[inline(always)]
    pub(crate) const fn multiply(hash: u64, max_p: u64) -> KeyGroup {
        (((hash >> 32) * max_p) >> 32) as u32
    }
}

/// The half-open interval `[lo, hi)` of the upper 32 hash bits that native
/// assignment maps to `key_group` (as `u64`, `hi` can be `2^32`).
///
/// This is what lets a native job change its max parallelism: an old key
/// group overlaps a new one exactly when their hash intervals overlap.
pub const fn native_hash_interval(
    key_group: KeyGroup,
    max_parallelism: MaxParallelism,
) -> (u64, u64) {
    let m = max_parallelism.get() as u64;
    // Smallest h with (h * m) >> 32 >= kg is ceil(kg * 2^32 / m).
    let lo = ((key_group as u64) << 32).div_ceil(m);
    let hi = ((key_group as u64 + 1) << 32).div_ceil(m);
    (lo, hi)
}

/// Which hash and formula map a key to its key group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AssignerKind {
    /// [`StableHash`](crate::hash::StableHash) scaled into the key-group space
    /// ([`native_key_group_for_hash`]). Max parallelism can change between
    /// checkpoints.
    Native,
    /// Flink's `murmurHash(key.hashCode()) % maxP` (see [`crate::flink`]).
    /// Max parallelism is fixed after the first checkpoint, as in Flink.
    Flink,
}

impl fmt::Display for AssignerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AssignerKind::Native => "native",
            AssignerKind::Flink => "flink",
        })
    }
}

/// The assigner an operator uses: the kind of hashing plus the max
/// parallelism. Checkpoints record it, so a restore can check that keys still
/// land where they did.
///
/// ```
/// use state_runtime::keygroup::{KeyGroupAssigner, MaxParallelism};
///
/// let native = KeyGroupAssigner::native(MaxParallelism::new(128)?);
/// let kg = native.key_group(&"customer-42")?;
/// assert!(kg < 128);
/// // Flink mode agrees with Flink's KeyGroupRangeAssignment.assignToKeyGroup:
/// let flink = KeyGroupAssigner::flink(MaxParallelism::new(128)?);
/// assert_eq!(flink.key_group(&0i32)?, 94);
/// # Ok::<(), state_runtime::StateError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyGroupAssigner {
    kind: AssignerKind,
    max_parallelism: MaxParallelism,
}

impl KeyGroupAssigner {
    /// Native assignment with `max_parallelism` key groups.
    pub const fn native(max_parallelism: MaxParallelism) -> Self {
        Self {
            kind: AssignerKind::Native,
            max_parallelism,
        }
    }

    /// Flink-compatible assignment with `max_parallelism` key groups.
    pub const fn flink(max_parallelism: MaxParallelism) -> Self {
        Self {
            kind: AssignerKind::Flink,
            max_parallelism,
        }
    }

    /// An assigner of the given kind.
    pub const fn new(kind: AssignerKind, max_parallelism: MaxParallelism) -> Self {
        Self {
            kind,
            max_parallelism,
        }
    }

    /// Native or Flink.
    pub const fn kind(&self) -> AssignerKind {
        self.kind
    }

    /// The number of key groups.
    pub const fn max_parallelism(&self) -> MaxParallelism {
        self.max_parallelism
    }

    /// Checks, once, that keys of type `K` can be assigned by this assigner:
    /// Flink mode needs a Java `hashCode()` (see
    /// [`JavaHashCode`](crate::hash::JavaHashCode)).
    pub fn check_key_type<K: StateKey + ?Sized>(&self) -> Result<(), StateError> {
        if self.kind == AssignerKind::Flink && !K::HAS_JAVA_HASH_CODE {
            return Err(StateError::KeyNotFlinkCompatible {
                key_type: std::any::type_name::<K>(),
            });
        }
        Ok(())
    }

    /// The key group of `key`. Errors only in Flink mode for a key type that
    /// has no Java `hashCode()`.
    #[inline]
    pub fn key_group<K: StateKey + ?Sized>(&self, key: &K) -> Result<KeyGroup, StateError> {
        match self.kind {
            AssignerKind::Native => Ok(native_key_group_for_hash(
                key.stable_hash(),
                self.max_parallelism,
            )),
            AssignerKind::Flink => match key.java_hash_code() {
                Some(code) => Ok(self
                    .max_parallelism
                    .reduce(crate::hash::murmur_hash(code) as u32)),
                None => Err(StateError::KeyNotFlinkCompatible {
                    key_type: std::any::type_name::<K>(),
                }),
            },
        }
    }

    /// Checks that state assigned by `self` can be restored under `new`: the
    /// same kind, and in Flink mode the same max parallelism (Flink's
    /// `murmur % max_parallelism` would move nearly every key). A native
    /// assigner may change its max parallelism.
    ///
    /// ```
    /// use state_runtime::prelude::*;
    ///
    /// let native = |m| KeyGroupAssigner::native(MaxParallelism::new(m).unwrap());
    /// let flink = |m| KeyGroupAssigner::flink(MaxParallelism::new(m).unwrap());
    /// assert!(native(128).check_restore_as(native(256)).is_ok());
    /// assert!(matches!(
    ///     flink(128).check_restore_as(flink(256)),
    ///     Err(StateError::MaxParallelismChanged { old: 128, new: 256 })
    /// ));
    /// assert!(matches!(
    ///     native(128).check_restore_as(flink(128)),
    ///     Err(StateError::AssignerKindChanged { .. })
    /// ));
    /// ```
    pub fn check_restore_as(&self, new: KeyGroupAssigner) -> Result<(), StateError> {
        if self.kind != new.kind {
            return Err(StateError::AssignerKindChanged {
                old: self.kind,
                new: new.kind,
            });
        }
        if self.kind == AssignerKind::Flink && self.max_parallelism != new.max_parallelism {
            return Err(StateError::MaxParallelismChanged {
                old: self.max_parallelism.get(),
                new: new.max_parallelism.get(),
            });
        }
        Ok(())
    }

    /// The key groups subtask `subtask` of `parallelism` owns.
    pub fn range_for_subtask(
        &self,
        parallelism: usize,
        subtask: usize,
    ) -> Result<KeyGroupRange, StateError> {
        key_group_range_for_subtask(self.max_parallelism, parallelism, subtask)
    }

    /// The subtask of `parallelism` that owns `key_group`.
    pub fn subtask_for_key_group(
        &self,
        parallelism: usize,
        key_group: KeyGroup,
    ) -> Result<usize, StateError> {
        subtask_for_key_group(self.max_parallelism, parallelism, key_group)
    }
}

impl fmt::Display for KeyGroupAssigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (max parallelism {})",
            self.kind, self.max_parallelism
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shift taken for a power-of-two max parallelism is the documented
    /// formula, `((hash >> 32) * max_p) >> 32`, for every max parallelism.
    #[test]
    fn native_assignment_is_the_scaling_formula_for_every_max_parallelism() {
        let mut seed = 3u64;
        let mut hashes: Vec<u64> = (0..200)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                seed
            })
            .collect();
        hashes.extend([
            0,
            1,
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
            (1 << 63) - 1,
            1 << 32,
        ]);
        for m in 1..=UPPER_BOUND_MAX_PARALLELISM {
            let mp = MaxParallelism::new(m).unwrap();
            for &h in &hashes {
                let want = (((h >> 32) * u64::from(m)) >> 32) as u32;
                assert_eq!(
                    native_key_group_for_hash(h, mp),
                    want,
                    "max_p {m}, hash {h:#x}"
                );
            }
        }
    }

    #[test]
    fn native_interval_matches_assignment_at_edges() {
        for m in [1u32, 3, 7, 100, 128, 1000, 32768] {
            let mp = MaxParallelism::new(m).unwrap();
            let mut prev_hi = 0;
            for kg in 0..m {
                let (lo, hi) = native_hash_interval(kg, mp);
                assert_eq!(lo, prev_hi, "intervals are contiguous");
                assert!(lo < hi);
                assert_eq!(native_key_group_for_hash(lo << 32, mp), kg);
                assert_eq!(
                    native_key_group_for_hash(((hi - 1) << 32) | 0xffff_ffff, mp),
                    kg
                );
                prev_hi = hi;
            }
            assert_eq!(prev_hi, 1u64 << 32);
        }
    }

    #[test]
    fn reduce_equals_remainder() {
        let probes = [
            0u32,
            1,
            2,
            127,
            128,
            129,
            1000,
            32767,
            32768,
            1 << 31,
            u32::MAX - 1,
            u32::MAX,
        ];
        for m in (1..=300).chain([1000, 4095, 4096, 32767, 32768]) {
            let mp = MaxParallelism::new(m).unwrap();
            for x in probes
                .iter()
                .copied()
                .chain((0..2000u32).map(|i| i.wrapping_mul(2_654_435_761)))
            {
                assert_eq!(mp.reduce(x), x % m, "{x} % {m}");
            }
        }
    }

    #[test]
    fn errors_instead_of_panics() {
        let mp = MaxParallelism::new(128).unwrap();
        assert!(matches!(
            key_group_range_for_subtask(mp, 0, 0),
            Err(StateError::ZeroParallelism)
        ));
        assert!(matches!(
            key_group_range_for_subtask(mp, 129, 0),
            Err(StateError::ParallelismAboveMax {
                parallelism: 129,
                max_parallelism: 128
            })
        ));
        assert!(matches!(
            key_group_range_for_subtask(mp, 3, 3),
            Err(StateError::SubtaskOutOfRange {
                subtask: 3,
                parallelism: 3
            })
        ));
        assert!(matches!(
            subtask_for_key_group(mp, 3, 128),
            Err(StateError::KeyGroupOutOfRange { key_group: 128, .. })
        ));
        assert!(MaxParallelism::new(32769).is_err());
        assert!(MaxParallelism::default_for(0).is_err());
        assert!(MaxParallelism::default_for(32769).is_err());
    }

    #[test]
    fn ranges_never_underflow_from_an_extreme_or_decoded_end() {
        let r = KeyGroupRange::new(5, u32::MAX);
        assert_eq!((r.start(), r.len()), (5, u32::MAX - 5));
        assert!(KeyGroupRange::new(u32::MAX, u32::MAX).is_empty());
        // A decoded range whose end is before its start (corrupt input) is
        // the empty range, not one whose length underflows.
        let mut bytes = Vec::new();
        crate::codec::encode_into(&(9u32, 3u32), &mut bytes, "range").unwrap();
        let r: KeyGroupRange = crate::codec::decode_exact(&bytes, "range").unwrap();
        assert!(r.is_empty());
        assert_eq!(r.len(), 0);
        let mut ok = Vec::new();
        crate::codec::encode_into(&KeyGroupRange::new(3, 9), &mut ok, "range").unwrap();
        let back: KeyGroupRange = crate::codec::decode_exact(&ok, "range").unwrap();
        assert_eq!(back, KeyGroupRange::new(3, 9));
    }

    #[test]
    fn empty_range_behaves() {
        let e = KeyGroupRange::new(5, 4);
        assert!(e.is_empty());
        assert_eq!(e, KeyGroupRange::EMPTY);
        assert_eq!(e.len(), 0);
        assert_eq!(e.last(), None);
        assert_eq!(e.iter().count(), 0);
        assert!(!e.contains(0));
        assert_eq!(format!("{e}"), "[empty]");
    }
}
