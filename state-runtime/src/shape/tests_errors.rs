//! Types that cannot be traced, and the bounds.

// The types are only ever deserialized, never read.
#![allow(dead_code)]

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::*;

fn error<T: DeserializeOwned>() -> ShapeError {
    match shape_of::<T>() {
        Ok(shape) => panic!("traced {shape}"),
        Err(error) => error,
    }
}

#[derive(Deserialize)]
struct Config {
    _id: u64,
}

#[derive(Deserialize)]
enum Op {
    Stop,
    Add(u32),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Untagged {
    A(u32),
    B(String),
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Internal {
    A { x: u32 },
}

#[derive(Deserialize)]
#[serde(tag = "t", content = "c")]
enum Adjacent {
    A(u32),
    B,
}

#[derive(Deserialize)]
struct WithUntagged {
    _id: u32,
    _value: Vec<Untagged>,
}

#[derive(Deserialize)]
struct Flattened {
    _id: u32,
    #[serde(flatten)]
    _rest: Config,
}

#[test]
fn self_describing_only_types_are_not_traceable() {
    let e = error::<WithUntagged>();
    let expected = ShapeError::NotTraceable {
        ty: std::any::type_name::<WithUntagged>().to_owned(),
        at: "field _value > element".to_owned(),
        method: "deserialize_any",
    };
    assert_eq!(e, expected);
    assert!(e.to_string().contains("WithUntagged"), "{e}");
    assert!(matches!(
        error::<Internal>(),
        ShapeError::NotTraceable { .. }
    ));
    assert!(matches!(
        error::<Flattened>(),
        ShapeError::NotTraceable { .. }
    ));
    assert!(matches!(
        error::<serde_json::Value>(),
        ShapeError::NotTraceable {
            method: "deserialize_any",
            ..
        }
    ));
}

/// A type whose `Deserialize` always fails.
struct Never;

impl<'de> Deserialize<'de> for Never {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(de::Error::custom("never valid"))
    }
}

/// An integer that must be even (the sample, 1, is not).
struct Even;

impl<'de> Deserialize<'de> for Even {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            n if n % 2 == 0 => Ok(Even),
            _ => Err(de::Error::custom("odd")),
        }
    }
}

#[derive(Deserialize)]
struct HoldsNever {
    _ok: u8,
    _op: Op,
    _never: Option<Never>,
}

#[test]
fn rejected_samples_are_errors() {
    let ty = |t: &str| t.to_owned();
    assert_eq!(
        error::<Never>(),
        ShapeError::Rejected {
            ty: ty(std::any::type_name::<Never>()),
            at: ty("the root"),
            message: ty("never valid")
        }
    );
    assert_eq!(
        error::<HoldsNever>(),
        ShapeError::Rejected {
            ty: ty(std::any::type_name::<HoldsNever>()),
            at: ty("field _never > some"),
            message: ty("never valid"),
        }
    );
    let e = error::<Vec<Even>>();
    assert!(
        matches!(&e, ShapeError::Rejected { at, message, .. } if at == "element" && message == "odd"),
        "{e}"
    );
}

/// Deserializes as `u32`, then `u64`, then `u32` ...
struct Flaky;

static FLAKY: AtomicUsize = AtomicUsize::new(0);

impl<'de> Deserialize<'de> for Flaky {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if FLAKY.fetch_add(1, Ordering::Relaxed) % 2 == 0 {
            u32::deserialize(d).map(|_| Flaky)
        } else {
            u64::deserialize(d).map(|_| Flaky)
        }
    }
}

#[derive(Deserialize)]
struct HoldsFlaky {
    _flaky: Flaky,
    _op: Op,
}

#[test]
fn nondeterministic_types_are_errors() {
    assert!(
        matches!(error::<HoldsFlaky>(), ShapeError::Nondeterministic { at, .. } if at == "field _flaky")
    );
}

/// `N` nested tuples: level `l` is `tuple(<level l+1>, u8 × l)`, so every
/// level has another identity (no recursion), and the innermost is `u8`.
struct Deep<const N: usize>;

struct Level(usize, usize);

impl<'de> de::DeserializeSeed<'de> for Level {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.0 == self.1 {
            return u8::deserialize(d).map(drop);
        }
        d.deserialize_tuple(self.0 + 1, self)
    }
}

impl<'de> Visitor<'de> for Level {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a level")
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        seq.next_element_seed(Level(self.0 + 1, self.1))?;
        for _ in 0..self.0 {
            seq.next_element::<u8>()?;
        }
        Ok(())
    }
}

impl<'de, const N: usize> Deserialize<'de> for Deep<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de::DeserializeSeed::deserialize(Level(0, N), d).map(|()| Deep)
    }
}

type T10<T> = (T, T, T, T, T, T, T, T, T, T);

#[test]
fn bounds() {
    let deep = shape_of::<Deep<{ MAX_DEPTH }>>().unwrap().canonical();
    assert_eq!(deep.matches("tuple(").count(), MAX_DEPTH);
    assert!(deep.starts_with("tuple(tuple(tuple(") && deep.ends_with("),u8))"));
    let e = error::<Deep<{ MAX_DEPTH + 1 }>>();
    assert!(
        matches!(
            &e,
            ShapeError::TooDeep {
                limit: MAX_DEPTH,
                ..
            }
        ),
        "{e}"
    );
    // 10^5 leaves and their tuples.
    let e = error::<T10<T10<T10<T10<T10<u8>>>>>>();
    assert!(
        matches!(
            &e,
            ShapeError::TooLarge {
                limit: MAX_NODES,
                ..
            }
        ),
        "{e}"
    );
}
