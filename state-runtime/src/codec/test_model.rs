//! The serde data model as the codec tests exercise it: a value of every
//! kind, and integers near every varint boundary. Shared by the encoder's
//! and the decoder's tests.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Unit;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Newtype(i32);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct TupleStruct(u8, String, Option<u16>);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    Empty,
    Circle(f64),
    Rect(u32, u32),
    Named { name: String, sides: i16 },
}

/// A byte string through `serialize_bytes` and `deserialize_byte_buf`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Everything {
    b: bool,
    u8_: u8,
    u16_: u16,
    u32_: u32,
    u64_: u64,
    u128_: u128,
    usize_: usize,
    i8_: i8,
    i16_: i16,
    i32_: i32,
    i64_: i64,
    i128_: i128,
    isize_: isize,
    f32_: f32,
    f64_: f64,
    c: char,
    s: String,
    bytes: Bytes,
    opt: Option<Option<u64>>,
    unit: (),
    unit_struct: Unit,
    newtype: Newtype,
    tuple: (u8, i64, String),
    tuple_struct: TupleStruct,
    seq: Vec<i32>,
    map: BTreeMap<String, Vec<u16>>,
    shapes: Vec<Shape>,
    vec_u8: Vec<u8>,
    array: [u16; 3],
}

pub(crate) fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Empty),
        any::<f64>().prop_map(Shape::Circle),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Shape::Rect(a, b)),
        (".{0,8}", any::<i16>()).prop_map(|(name, sides)| Shape::Named { name, sides }),
    ]
}

pub(crate) fn edgy_u64() -> impl Strategy<Value = u64> {
    let edges = [
        0u64,
        1,
        250,
        251,
        252,
        255,
        256,
        65_535,
        65_536,
        u32::MAX as u64,
        1 << 32,
        u64::MAX,
    ];
    prop_oneof![
        proptest::sample::select(edges.to_vec()),
        any::<u64>(),
        0u64..300,
        0u64..70_000,
    ]
}

prop_compose! {
    pub(crate) fn everything()(
        b in any::<bool>(),
        u8_ in any::<u8>(),
        u16_ in edgy_u64(),
        u32_ in edgy_u64(),
        u64_ in edgy_u64(),
        u128_ in prop_oneof![any::<u128>(), edgy_u64().prop_map(u128::from)],
        usize_ in edgy_u64(),
        i8_ in any::<i8>(),
        i16_ in any::<i16>(),
        i32_ in any::<i32>(),
        i64_ in prop_oneof![any::<i64>(), edgy_u64().prop_map(|v| v as i64), -300i64..300],
        i128_ in any::<i128>(),
        isize_ in any::<i64>(),
        f32_ in any::<f32>(),
        f64_ in any::<f64>(),
        c in any::<char>(),
        s in ".{0,20}",
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        opt in any::<Option<Option<u64>>>(),
        newtype in any::<i32>(),
        tuple in (any::<u8>(), any::<i64>(), ".{0,5}"),
        ts in (any::<u8>(), ".{0,5}", any::<Option<u16>>()),
        seq in proptest::collection::vec(any::<i32>(), 0..300),
        map in proptest::collection::btree_map(".{0,4}", proptest::collection::vec(any::<u16>(), 0..4), 0..6),
        shapes in proptest::collection::vec(shape(), 0..6),
        vec_u8 in proptest::collection::vec(any::<u8>(), 0..100),
        array in any::<[u16; 3]>(),
    ) -> Everything {
        Everything {
            b, u8_, u16_: u16_ as u16, u32_: u32_ as u32, u64_, u128_, usize_: usize_ as usize,
            i8_, i16_, i32_, i64_, i128_, isize_: isize_ as isize, f32_, f64_, c, s,
            bytes: Bytes(bytes), opt, unit: (), unit_struct: Unit, newtype: Newtype(newtype),
            tuple, tuple_struct: TupleStruct(ts.0, ts.1, ts.2), seq, map, shapes, vec_u8, array,
        }
    }
}
