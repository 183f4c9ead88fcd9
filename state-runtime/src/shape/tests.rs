//! Shapes of non-recursive types, canonical text, errors.

// The types are only ever deserialized, never read.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::*;

fn text<T: DeserializeOwned>() -> String {
    let shape = shape_of::<T>().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shape.to_string(), shape.canonical());
    shape.canonical()
}

#[test]
fn primitives() {
    assert_eq!(text::<bool>(), "bool");
    assert_eq!(text::<i8>(), "i8");
    assert_eq!(text::<i16>(), "i16");
    assert_eq!(text::<i32>(), "i32");
    assert_eq!(text::<i64>(), "i64");
    assert_eq!(text::<i128>(), "i128");
    assert_eq!(text::<u8>(), "u8");
    assert_eq!(text::<u16>(), "u16");
    assert_eq!(text::<u32>(), "u32");
    assert_eq!(text::<u64>(), "u64");
    assert_eq!(text::<u128>(), "u128");
    assert_eq!(text::<f32>(), "f32");
    assert_eq!(text::<f64>(), "f64");
    assert_eq!(text::<char>(), "char");
    assert_eq!(text::<String>(), "str");
    assert_eq!(text::<()>(), "unit");
    assert_eq!(text::<NonZeroU64>(), "u64");
    assert_eq!(text::<Option<NonZeroU32>>(), "option(u32)");
}

#[test]
fn options_seqs_maps_tuples() {
    assert_eq!(text::<Option<u8>>(), "option(u8)");
    assert_eq!(text::<Option<Option<bool>>>(), "option(option(bool))");
    assert_eq!(text::<Vec<String>>(), "seq(str)");
    assert_eq!(text::<HashSet<u32>>(), "seq(u32)");
    assert_eq!(text::<BTreeSet<u32>>(), "seq(u32)");
    assert_eq!(text::<BTreeMap<String, Vec<u64>>>(), "map(str,seq(u64))");
    assert_eq!(text::<HashMap<u8, i8>>(), "map(u8,i8)");
    assert_eq!(text::<(u8, i16, bool)>(), "tuple(u8,i16,bool)");
    assert_eq!(text::<[u32; 3]>(), "tuple(u32,u32,u32)");
    assert_eq!(text::<Box<[(u8, char)]>>(), "seq(tuple(u8,char))");
    assert_eq!(text::<std::time::Duration>(), "struct{secs:u64,nanos:u32}");
}

#[derive(Deserialize)]
struct Marker;

#[derive(Deserialize)]
struct Meters(f64);

#[derive(Deserialize)]
struct Pair(u8, char);

#[derive(Deserialize)]
struct Config {
    id: u64,
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct Outer {
    config: Config,
    flag: Option<bool>,
    #[serde(skip)]
    _cache: Vec<u8>,
    pair: Pair,
    meters: Meters,
    marker: Marker,
}

#[derive(Deserialize)]
#[serde(transparent)]
struct Transparent {
    _inner: u16,
}

#[test]
fn containers() {
    assert_eq!(text::<Marker>(), "unit_struct");
    assert_eq!(text::<Meters>(), "newtype(f64)");
    assert_eq!(text::<Pair>(), "tuple_struct(u8,char)");
    assert_eq!(text::<Config>(), "struct{id:u64,tags:seq(str)}");
    assert_eq!(
        text::<Outer>(),
        "struct{config:struct{id:u64,tags:seq(str)},flag:option(bool),\
         pair:tuple_struct(u8,char),meters:newtype(f64),marker:unit_struct}"
    );
    assert_eq!(text::<Transparent>(), "u16");
}

#[derive(Deserialize)]
enum Op {
    Stop,
    Add(u32),
    Move(i32, i32),
    Set { key: String, value: Option<u8> },
}

#[test]
fn all_four_variant_kinds() {
    assert_eq!(
        text::<Op>(),
        "enum{Stop,Add:newtype(u32),Move:tuple(i32,i32),Set:struct{key:str,value:option(u8)}}"
    );
}

#[derive(Deserialize, PartialEq, Eq, PartialOrd, Ord)]
enum Color {
    Red,
    Green(u8),
    Blue { b: u8 },
}

#[derive(Deserialize)]
struct Holder {
    one: Option<Color>,
    many: Vec<Color>,
    keyed: BTreeMap<Color, Option<Color>>,
}

#[test]
fn enums_behind_option_seq_and_map_have_all_variants() {
    let color = "enum{Red,Green:newtype(u8),Blue:struct{b:u8}}";
    assert_eq!(
        text::<Holder>(),
        format!(
            "struct{{one:option({color}),many:seq({color}),keyed:map({color},option({color}))}}"
        )
    );
}

/// A `Deserialize` calling `deserialize_bytes` (borrowed: false) or
/// `deserialize_byte_buf` (true), like `serde_bytes`.
struct Bytes<const OWNED: bool>(Vec<u8>);

struct BytesVisitor;

impl Visitor<'_> for BytesVisitor {
    type Value = Vec<u8>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
}

impl<'de, const OWNED: bool> Deserialize<'de> for Bytes<OWNED> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = if OWNED {
            d.deserialize_byte_buf(BytesVisitor)
        } else {
            d.deserialize_bytes(BytesVisitor)
        };
        bytes.map(Bytes)
    }
}

/// Bytes that must be 16 long, like a UUID (its visitor checks).
struct Id16;

impl<'de> Deserialize<'de> for Id16 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id16;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("16 bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Id16, E> {
                match v.len() {
                    16 => Ok(Id16),
                    n => Err(E::invalid_length(n, &self)),
                }
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A `Deserialize` calling `deserialize_str`, like `&str`.
struct Borrowed;

impl<'de> Deserialize<'de> for Borrowed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Borrowed;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Borrowed, E> {
                Ok(Borrowed)
            }
        }
        d.deserialize_str(V)
    }
}

#[test]
fn bytes_and_strings_are_canonicalised() {
    assert_eq!(text::<Vec<u8>>(), "seq(u8)");
    assert_eq!(text::<Bytes<false>>(), "seq(u8)");
    assert_eq!(text::<Bytes<true>>(), "seq(u8)");
    assert_eq!(text::<Id16>(), "seq(u8)");
    assert_eq!(text::<Borrowed>(), "str");
    assert_eq!(text::<Box<str>>(), "str");
    assert_eq!(text::<std::borrow::Cow<'static, str>>(), "str");
}

mod v1 {
    #[derive(serde::Deserialize)]
    pub struct Config {
        pub x: u32,
        pub y: u32,
    }
    #[derive(serde::Deserialize)]
    pub enum Event {
        Start,
        Stop(u8),
    }
}

mod v2 {
    #[derive(serde::Deserialize)]
    pub struct Settings {
        pub x: u32,
        pub y: u32,
    }
    #[derive(serde::Deserialize)]
    pub enum Happening {
        Start,
        Stop(u8),
    }
}

mod changed {
    #[derive(serde::Deserialize)]
    pub struct Swapped {
        y: u32,
        x: u32,
    }
    #[derive(serde::Deserialize)]
    pub struct Wider {
        x: u64,
        y: u32,
    }
    #[derive(serde::Deserialize)]
    pub struct Added {
        x: u32,
        y: u32,
        z: u32,
    }
    #[derive(serde::Deserialize)]
    pub enum AddedVariant {
        Start,
        Stop(u8),
        Pause,
    }
    #[derive(serde::Deserialize)]
    pub enum RenamedVariant {
        Begin,
        Stop(u8),
    }
    #[derive(serde::Deserialize)]
    pub enum Reordered {
        Stop(u8),
        Start,
    }
    #[derive(serde::Deserialize)]
    pub enum VariantKind {
        Start,
        Stop(u8, u8),
    }
}

#[test]
fn names_of_types_do_not_matter_and_everything_else_does() {
    assert_eq!(text::<v1::Config>(), text::<v2::Settings>());
    assert_eq!(text::<v1::Event>(), text::<v2::Happening>());
    let config = text::<v1::Config>();
    let event = text::<v1::Event>();
    let others = [
        text::<changed::Swapped>(),
        text::<changed::Wider>(),
        text::<changed::Added>(),
        text::<(u32, u32)>(),
    ];
    for other in &others {
        assert_ne!(*other, config);
    }
    for other in [
        text::<changed::AddedVariant>(),
        text::<changed::RenamedVariant>(),
        text::<changed::Reordered>(),
        text::<changed::VariantKind>(),
    ] {
        assert_ne!(other, event);
    }
}

mod a {
    #[derive(serde::Deserialize)]
    pub struct Config {
        pub x: u32,
    }
}

mod b {
    #[derive(serde::Deserialize)]
    pub struct Config {
        pub x: u64,
    }
}

#[derive(Deserialize)]
struct Wrap<T> {
    inner: T,
}

#[derive(Deserialize)]
struct SameNames {
    a: a::Config,
    b: b::Config,
    small: Wrap<Vec<u32>>,
    large: Wrap<Vec<u64>>,
    again: Option<a::Config>,
}

#[test]
fn same_named_and_generic_types_each_get_their_own_shape() {
    assert_eq!(
        text::<SameNames>(),
        "struct{a:struct{x:u32},b:struct{x:u64},small:struct{inner:seq(u32)},\
         large:struct{inner:seq(u64)},again:option(struct{x:u32})}"
    );
}

#[derive(Deserialize)]
struct Renamed {
    #[serde(rename = "a:u8,b")]
    a: u8,
    #[serde(rename = "quote\"back\\")]
    q: u8,
    #[serde(rename = "")]
    e: u8,
}

#[derive(Deserialize)]
struct Forged {
    a: u8,
    b: u8,
    #[serde(rename = "quote\"back\\")]
    q: u8,
    #[serde(rename = "")]
    e: u8,
}

#[test]
fn odd_names_are_quoted() {
    assert_eq!(
        text::<Renamed>(),
        r#"struct{"a:u8,b":u8,"quote\"back\\":u8,"":u8}"#
    );
    assert_ne!(text::<Renamed>(), text::<Forged>());
}

#[test]
fn fingerprint_is_xxh3_of_the_text() {
    let config = canonical_shape::<Config>().unwrap();
    assert_eq!(config, "struct{id:u64,tags:seq(str)}");
    // Independently: libxxhash's XXH3_64bits of the same bytes.
    assert_eq!(fingerprint(&config), 1_342_015_039_685_054_539);
    assert_ne!(
        fingerprint("struct{id:u64,tags:seq(u8)}"),
        fingerprint(&config)
    );
}

/// The standard library's serde types that states commonly hold all trace,
/// each to the shape bincode reads.
#[test]
fn common_std_types_trace() {
    use std::borrow::Cow;
    use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
    use std::net::{IpAddr, SocketAddr};
    use std::time::{Duration, SystemTime};

    assert_eq!(text::<Duration>(), "struct{secs:u64,nanos:u32}");
    assert_eq!(
        text::<SystemTime>(),
        "struct{secs_since_epoch:u64,nanos_since_epoch:u32}"
    );
    assert_eq!(
        text::<Result<u32, String>>(),
        "enum{Ok:newtype(u32),Err:newtype(str)}"
    );
    assert_eq!(text::<[u8; 4]>(), "tuple(u8,u8,u8,u8)");
    assert_eq!(text::<Box<str>>(), "str");
    assert_eq!(text::<Cow<'static, str>>(), "str");
    assert_eq!(text::<std::marker::PhantomData<u64>>(), "unit_struct");
    assert_eq!(text::<VecDeque<i16>>(), "seq(i16)");
    assert_eq!(text::<BTreeSet<u8>>(), "seq(u8)");
    assert_eq!(text::<HashSet<String>>(), "seq(str)");
    assert_eq!(
        text::<HashMap<String, Vec<Option<(u8, String)>>>>(),
        "map(str,seq(option(tuple(u8,str))))"
    );
    assert_eq!(text::<BTreeMap<u64, Box<[u8]>>>(), "map(u64,seq(u8))");
    assert!(
        text::<IpAddr>().starts_with("enum{V4:newtype("),
        "{}",
        text::<IpAddr>()
    );
    assert!(
        text::<SocketAddr>().starts_with("enum{V4:newtype("),
        "{}",
        text::<SocketAddr>()
    );
    assert_eq!(text::<std::num::NonZeroU64>(), "u64");
    assert_eq!(
        text::<(char, i128, u128, f32, bool, ())>(),
        "tuple(char,i128,u128,f32,bool,unit)"
    );
}

/// Serde attributes that keep the encoding fixed trace to what bincode reads:
/// a renamed field or variant by its new name, a skipped field not at all.
#[test]
fn serde_attributes_are_followed() {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Order {
        order_id: u64,
        #[serde(skip)]
        cache: Vec<u8>,
        #[serde(default)]
        note: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    enum Side {
        #[serde(rename = "buy")]
        Buy,
        Sell {
            limit: u32,
        },
    }
    assert_eq!(text::<Order>(), "struct{orderId:u64,note:option(str)}");
    assert_eq!(text::<Side>(), "enum{buy,Sell:struct{limit:u32}}");
}
