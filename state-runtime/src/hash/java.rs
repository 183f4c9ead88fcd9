//! Java's hashing, as Flink assigns keys with it: [`JavaHashCode`] (Java's
//! `hashCode()` for the Rust types of Java's boxed types) and [`murmur_hash`]
//! (Flink's `MathUtils.murmurHash(int)`).

/// Flink's `MathUtils.murmurHash(int)`: the murmur3 32-bit mix of one int
/// (seed 0, length 4), then the absolute value, with `i32::MIN` mapped to 0.
/// The result is never negative.
#[inline]
pub const fn murmur_hash(code: i32) -> i32 {
    let mut h = code as u32;
    h = h.wrapping_mul(0xcc9e_2d51);
    h = h.rotate_left(15);
    h = h.wrapping_mul(0x1b87_3593);
    h = h.rotate_left(13);
    h = h.wrapping_mul(5).wrapping_add(0xe654_6b64);
    h ^= 4;
    // fmix32
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    // |h|, with i32::MIN (whose wrapping absolute value is itself, 2^31)
    // mapped to 0 by the mask: branch-free, so batches vectorize.
    (h as i32).wrapping_abs() & i32::MAX
}

/// Java's `Object.hashCode()` for the Rust type that corresponds to a Java
/// boxed type.
pub trait JavaHashCode {
    /// The value Java's `hashCode()` returns for the equivalent Java object.
    fn java_hash_code(&self) -> i32;
}

impl JavaHashCode for i32 {
    /// `Integer.hashCode()`: the value itself.
    #[inline]
    fn java_hash_code(&self) -> i32 {
        *self
    }
}

impl JavaHashCode for i64 {
    /// `Long.hashCode()`: `(int) (value ^ (value >>> 32))`.
    #[inline]
    fn java_hash_code(&self) -> i32 {
        let v = *self as u64;
        (v ^ (v >> 32)) as i32
    }
}

impl JavaHashCode for str {
    /// `String.hashCode()`: `s[0]*31^(n-1) + ... + s[n-1]` over the UTF-16
    /// code units, in wrapping 32-bit arithmetic.
    #[inline]
    fn java_hash_code(&self) -> i32 {
        java_string_hash(self)
    }
}

impl JavaHashCode for String {
    #[inline]
    fn java_hash_code(&self) -> i32 {
        java_string_hash(self)
    }
}

impl<T: JavaHashCode + ?Sized> JavaHashCode for &T {
    #[inline]
    fn java_hash_code(&self) -> i32 {
        (**self).java_hash_code()
    }
}

const P1: u32 = 31;
const P2: u32 = P1.wrapping_mul(31);
const P3: u32 = P2.wrapping_mul(31);
const P4: u32 = P3.wrapping_mul(31);
const P5: u32 = P4.wrapping_mul(31);
const P6: u32 = P5.wrapping_mul(31);
const P7: u32 = P6.wrapping_mul(31);
const P8: u32 = P7.wrapping_mul(31);

/// `b0 * 31^7 + b1 * 31^6 + ... + b7` (wrapping) for the eight ASCII bytes of
/// `word`, `b0` its lowest byte, in SWAR lanes: adjacent bytes are combined
/// in 16-bit lanes (`b0 * 31 + b1`, at most 127 * 32), adjacent pairs of those
/// in 32-bit lanes (`t0 * 31^2 + t1`, below 2^22), and the two halves with one
/// 32-bit multiply. Three multiplies instead of eight, and no byte extraction.
#[inline(always)]
const fn ascii_block8(word: u64) -> u32 {
    const BYTES: u64 = 0x00ff_00ff_00ff_00ff;
    const PAIRS: u64 = 0x0000_ffff_0000_ffff;
    let even = word & BYTES; // b0, b2, b4, b6
    let odd = (word >> 8) & BYTES; // b1, b3, b5, b7
    let t = even * 31 + odd;
    let u = (t & PAIRS) * P2 as u64 + ((t >> 16) & PAIRS);
    (u as u32).wrapping_mul(P4).wrapping_add((u >> 32) as u32)
}

/// `b0 * 31^3 + b1 * 31^2 + b2 * 31 + b3` for the four ASCII bytes of `word`,
/// `b0` its lowest byte (as [`ascii_block8`]).
#[inline(always)]
const fn ascii_block4(word: u32) -> u32 {
    const BYTES: u32 = 0x00ff_00ff;
    let t = (word & BYTES) * 31 + ((word >> 8) & BYTES);
    (t & 0xffff) * P2 + (t >> 16)
}

/// Java's `String.hashCode()` of `s`.
///
/// ASCII runs (one UTF-16 unit per byte) are hashed eight bytes at a time,
/// `h * 31^8 + b0 * 31^7 + ... + b7`, then four, then one by one: the
/// products are independent, which breaks the serial `* 31` dependency chain.
/// Anything after the first non-ASCII byte goes through `encode_utf16`.
#[inline]
fn java_string_hash(s: &str) -> i32 {
    let bytes = s.as_bytes();
    #[cfg(target_arch = "x86_64")]
    if (9..=16).contains(&bytes.len()) {
        if let Some(h) = ascii_9_to_16_sse2(bytes) {
            return h as i32;
        }
    }
    let mut h: u32 = 0;
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        if word & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        h = h.wrapping_mul(P8).wrapping_add(ascii_block8(word));
        i += 8;
    }
    if let Some(chunk) = bytes.get(i..i + 4) {
        let word = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        if word & 0x8080_8080 == 0 {
            h = h.wrapping_mul(P4).wrapping_add(ascii_block4(word));
            i += 4;
        }
    }
    while let Some(&b) = bytes.get(i) {
        if b >= 0x80 {
            // Everything before `i` was ASCII, so `i` is a char boundary.
            for unit in s[i..].encode_utf16() {
                h = h.wrapping_mul(31).wrapping_add(unit as u32);
            }
            return h as i32;
        }
        h = h.wrapping_mul(31).wrapping_add(b as u32);
        i += 1;
    }
    h as i32
}

/// Per string length `n` in `9..=16`, the weights `31^(n - 1 - p)` of the
/// characters as [`ascii_9_to_16_sse2`] lays them out: lanes 0..8 hold
/// characters 0..8, lanes 8..16 characters `n - 8..n` (weight 0 where they
/// repeat one of the first eight). Each weight `w` (mod 2^32) is split into
/// 16-bit halves `lo + hi * 2^16` with `lo` signed, for `pmaddwd`:
/// `[lanes 0..8 lo, lanes 8..16 lo, lanes 0..8 hi, lanes 8..16 hi]`.
#[cfg(target_arch = "x86_64")]
static ASCII_9_TO_16_WEIGHTS: [[[i16; 8]; 4]; 8] = {
    let mut table = [[[0i16; 8]; 4]; 8];
    let mut n = 9;
    while n <= 16 {
        let mut lane = 0;
        while lane < 16 {
            let (position, counted) = if lane < 8 {
                (lane, true)
            } else {
                let p = n + lane - 16;
                (p, p >= 8)
            };
            let mut w: u32 = 0;
            if counted {
                w = 1;
                let mut e = 0;
                while e < n - 1 - position {
                    w = w.wrapping_mul(31);
                    e += 1;
                }
            }
            let lo = w as u16 as i16;
            let hi = (w.wrapping_sub(lo as i32 as u32) >> 16) as u16 as i16;
            table[n - 9][lane / 8][lane % 8] = lo;
            table[n - 9][2 + lane / 8][lane % 8] = hi;
            lane += 1;
        }
        n += 1;
    }
    table
};

/// Java's string hash of 9 to 16 ASCII bytes with SSE2 (every x86-64 has it),
/// `None` if a byte is not ASCII. The first and the last eight bytes are
/// widened to 16-bit lanes and multiplied by their weights with `pmaddwd`
/// (each weight as two signed 16-bit halves, the high half's products shifted
/// up by 16), then the four 32-bit sums are added: about twenty instructions,
/// no dependency chain through the characters.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn ascii_9_to_16_sse2(bytes: &[u8]) -> Option<u32> {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_cvtsi128_si32, _mm_loadu_si128, _mm_madd_epi16, _mm_set_epi64x,
        _mm_setzero_si128, _mm_shuffle_epi32, _mm_slli_epi32, _mm_unpackhi_epi8, _mm_unpacklo_epi8,
    };
    let n = bytes.len();
    debug_assert!((9..=16).contains(&n));
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let (first, last) = (word(0), word(n - 8));
    if (first | last) & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    let weights = &ASCII_9_TO_16_WEIGHTS[n - 9];
    // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 CPU runs
    // these intrinsics; each weight row is 8 i16 = 16 bytes, and
    // `_mm_loadu_si128` allows any alignment.
    let sum = unsafe {
        let w = |i: usize| _mm_loadu_si128(weights[i].as_ptr().cast::<__m128i>());
        let chars = _mm_set_epi64x(last as i64, first as i64);
        let zero = _mm_setzero_si128();
        let (head, tail) = (
            _mm_unpacklo_epi8(chars, zero),
            _mm_unpackhi_epi8(chars, zero),
        );
        let lo = _mm_add_epi32(_mm_madd_epi16(head, w(0)), _mm_madd_epi16(tail, w(1)));
        let hi = _mm_add_epi32(_mm_madd_epi16(head, w(2)), _mm_madd_epi16(tail, w(3)));
        let sum = _mm_add_epi32(lo, _mm_slli_epi32::<16>(hi));
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32::<0b01_00_11_10>(sum));
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32::<0b10_11_00_01>(sum));
        _mm_cvtsi128_si32(sum)
    };
    Some(sum as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_string_hash(s: &str) -> i32 {
        s.encode_utf16()
            .fold(0u32, |h, u| h.wrapping_mul(31).wrapping_add(u as u32)) as i32
    }

    /// Every length through the 8- and 4-byte blocks and the SSE2 path for
    /// 9 to 16 bytes, over the whole ASCII range (0 and 0x7f included), and a
    /// non-ASCII character at every position of the 9-to-16-byte strings.
    #[test]
    fn string_hash_equals_utf16_definition_for_every_length() {
        let mut seed = 9u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as u8 & 0x7f
        };
        for len in 0..=40usize {
            let mut cases = vec!["\0".repeat(len), "\x7f".repeat(len)];
            cases.extend((0..50).map(|_| (0..len).map(|_| next() as char).collect::<String>()));
            if (9..=16).contains(&len) {
                for at in 0..len {
                    let mut chars: Vec<char> = (0..len).map(|_| next() as char).collect();
                    chars[at] = if at % 2 == 0 { 'é' } else { '😀' };
                    cases.push(chars.into_iter().collect());
                }
            }
            for s in cases {
                assert_eq!(java_string_hash(&s), reference_string_hash(&s), "{s:?}");
            }
        }
    }

    #[test]
    fn string_fast_path_matches_utf16_loop() {
        for s in [
            "",
            "a",
            "abcdefgh",
            "abcdefghi",
            "customer-000042",
            "héllo wörld, ascii again and again",
            "12345678é",
            "😀 astral",
            "abcdefgh😀abcdefgh",
        ] {
            assert_eq!(java_string_hash(s), reference_string_hash(s), "{s:?}");
        }
    }
}
