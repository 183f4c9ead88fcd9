//! The tracing `Deserializer` and its accessors.
//!
//! Each call records at its position what was asked for and hands the
//! visitor a sample value, mirroring bincode's `Deserializer` (not human
//! readable; `deserialize_any`, `deserialize_ignored_any` and
//! `deserialize_identifier` unsupported; structs and tuples as sequences;
//! enum variants by their `u32` index).

use std::fmt;

use serde::de::value::U32Deserializer;
use serde::de::{
    DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::Prim;
use super::trace::{Frame, NodeId, Tracer};
use super::tree::{Kind, Seg};

/// Strings offered in turn to a visitor that rejects the previous one.
const STRS: [&str; 3] = ["", "1", "a"];
/// Byte buffer lengths offered in turn (16 fits a UUID, 32 a digest).
const BYTE_LENS: [usize; 7] = [0, 16, 32, 1, 8, 20, 64];

/// The tracer's error.
#[derive(Debug)]
pub(super) enum TraceError {
    /// No value could be built here (recursion, in sink mode). `blamed`: a
    /// sink-mode trial already learnt from it.
    Cut { blamed: bool },
    /// A leaf rejected its sample; the next pass offers another.
    Retry,
    /// The error is in [`Tracer`]'s `fatal`.
    Fatal,
    /// The type's `Deserialize` rejected something.
    Custom { message: String, at: Option<String> },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Custom { message, .. } => f.write_str(message),
            other => write!(f, "{other:?}"),
        }
    }
}

impl std::error::Error for TraceError {}

impl serde::de::Error for TraceError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        TraceError::Custom {
            message: message.to_string(),
            at: None,
        }
    }
}

type Result<T> = std::result::Result<T, TraceError>;

/// The tracing `Deserializer` at one position (`None`: sink mode).
pub(super) struct De<'t> {
    t: &'t mut Tracer,
    node: Option<NodeId>,
}

impl<'t> De<'t> {
    pub(super) fn new(t: &'t mut Tracer, node: Option<NodeId>) -> Self {
        De { t, node }
    }

    fn leaf<'de, V: Visitor<'de>>(
        self,
        prim: Prim,
        visitor: V,
        visit: impl FnOnce(V) -> Result<V::Value>,
    ) -> Result<V::Value> {
        self.t.step()?;
        if let Some(node) = self.node {
            self.t.record(node, Kind::Prim(prim));
        }
        let result = visit(visitor);
        self.t.finish(self.node.is_none(), result)
    }

    fn string<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.t.step()?;
        if let Some(node) = self.node {
            self.t.record(node, Kind::Prim(Prim::Str));
        }
        let i = self.t.sample::<V>();
        let result = visitor.visit_string(STRS[i].to_owned());
        let result = self.t.resample::<V, _>(i, STRS.len(), result);
        self.t.finish(self.node.is_none(), result)
    }

    /// Bytes are `seq(u8)`.
    fn bytes<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.t.step()?;
        if let Some(node) = self.node {
            self.t.record(node, Kind::Seq);
            let element = self.t.child(node, 0);
            self.t.record(element, Kind::Prim(Prim::U8));
        }
        let i = self.t.sample::<V>();
        let result = visitor.visit_byte_buf(vec![0; BYTE_LENS[i]]);
        let result = self.t.resample::<V, _>(i, BYTE_LENS.len(), result);
        self.t.finish(self.node.is_none(), result)
    }

    /// A struct, tuple or tuple struct: one element per field.
    fn fixed<'de, V: Visitor<'de>>(
        self,
        frame: Frame,
        kind: Kind,
        names: Option<&'static [&'static str]>,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        let entry = self.t.enter(self.node, frame, kind)?;
        let result = visit_fixed(self.t, entry.node, kind, names, len, visitor);
        self.t.exit(entry);
        self.t.finish(entry.node.is_none(), result)
    }
}

/// Visits `len` elements at `node`; if the visitor read fewer, records the
/// kind with only those.
fn visit_fixed<'de, V: Visitor<'de>>(
    t: &mut Tracer,
    node: Option<NodeId>,
    kind: Kind,
    names: Option<&'static [&'static str]>,
    len: usize,
    visitor: V,
) -> Result<V::Value> {
    let mut elements = Elements {
        t,
        node,
        len,
        read: 0,
        catch: false,
        names,
    };
    let result = visitor.visit_seq(&mut elements);
    let read = elements.read;
    if let (Ok(_), Some(node), true) = (&result, node, read < len) {
        let truncated = match kind {
            Kind::Struct(f) => Kind::Struct(&f[..read]),
            Kind::VStruct(f) => Kind::VStruct(&f[..read]),
            Kind::Tuple(_) => Kind::Tuple(read),
            Kind::TupleStruct(_) => Kind::TupleStruct(read),
            Kind::VTuple(_) => Kind::VTuple(read),
            other => other,
        };
        elements.t.record(node, truncated);
    }
    result
}

macro_rules! leaves {
    ($($method:ident $prim:ident $visit:ident $value:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            self.leaf(Prim::$prim, visitor, |v| v.$visit($value))
        }
    )*};
}

macro_rules! unsupported {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
            Err(self.t.not_traceable(stringify!($method)))
        }
    )*};
}

impl<'de> Deserializer<'de> for De<'_> {
    type Error = TraceError;

    leaves! {
        deserialize_bool Bool visit_bool false;
        deserialize_i8 I8 visit_i8 1;
        deserialize_i16 I16 visit_i16 1;
        deserialize_i32 I32 visit_i32 1;
        deserialize_i64 I64 visit_i64 1;
        deserialize_i128 I128 visit_i128 1;
        deserialize_u8 U8 visit_u8 1;
        deserialize_u16 U16 visit_u16 1;
        deserialize_u32 U32 visit_u32 1;
        deserialize_u64 U64 visit_u64 1;
        deserialize_u128 U128 visit_u128 1;
        deserialize_f32 F32 visit_f32 1.0;
        deserialize_f64 F64 visit_f64 1.0;
        deserialize_char Char visit_char 'a';
    }

    unsupported! { deserialize_any deserialize_ignored_any deserialize_identifier }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.leaf(Prim::Unit, visitor, |v| v.visit_unit())
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.string(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.bytes(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.bytes(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.t.step()?;
        if let Some(node) = self.node {
            self.t.record(node, Kind::UnitStruct);
        }
        let result = visitor.visit_unit();
        self.t.finish(self.node.is_none(), result)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let frame = Frame::of::<V>("option", "", &[], 0);
        let entry = self.t.enter(self.node, frame, Kind::Option)?;
        let result = match entry.node {
            Some(node) if !self.t.is_cut(node) => {
                let inner = self.t.child(node, 0);
                self.t.segs.push(Seg::Some);
                let result = visitor.visit_some(De {
                    t: &mut *self.t,
                    node: Some(inner),
                });
                let result = self.t.finish(false, result);
                self.t.segs.pop();
                if let Err(TraceError::Cut { .. }) = result {
                    self.t.memo_cut(node);
                }
                result
            }
            _ => visitor.visit_none(),
        };
        self.t.exit(entry);
        self.t.finish(entry.node.is_none(), result)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        let frame = Frame::of::<V>("newtype", name, &[], 1);
        let entry = self.t.enter(self.node, frame, Kind::Newtype)?;
        let inner = entry.node.map(|node| self.t.child(node, 0));
        self.t.segs.push(Seg::Index(0));
        let result = visitor.visit_newtype_struct(De {
            t: &mut *self.t,
            node: inner,
        });
        self.t.segs.pop();
        self.t.exit(entry);
        self.t.finish(entry.node.is_none(), result)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let frame = Frame::of::<V>("seq", "", &[], 0);
        let entry = self.t.enter(self.node, frame, Kind::Seq)?;
        let len = usize::from(entry.node.is_some());
        let elements = Elements {
            t: &mut *self.t,
            node: entry.node,
            len,
            read: 0,
            catch: true,
            names: None,
        };
        let result = visitor.visit_seq(elements);
        self.t.exit(entry);
        self.t.finish(entry.node.is_none(), result)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        let frame = Frame::of::<V>("tuple", "", &[], len);
        self.fixed(frame, Kind::Tuple(len), None, len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        let frame = Frame::of::<V>("tuple_struct", name, &[], len);
        self.fixed(frame, Kind::TupleStruct(len), None, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let frame = Frame::of::<V>("struct", name, fields, fields.len());
        self.fixed(
            frame,
            Kind::Struct(fields),
            Some(fields),
            fields.len(),
            visitor,
        )
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let frame = Frame::of::<V>("map", "", &[], 0);
        let entry = self.t.enter(self.node, frame, Kind::Map)?;
        let node = entry.node.filter(|&node| !self.t.is_cut(node));
        let result = visitor.visit_map(Entries {
            t: &mut *self.t,
            node,
            key: false,
        });
        if let (Some(node), Err(TraceError::Cut { .. })) = (node, &result) {
            self.t.memo_cut(node);
        }
        self.t.exit(entry);
        self.t.finish(entry.node.is_none(), result)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let frame = Frame::of::<V>("enum", name, variants, variants.len());
        let entry = self.t.enter(self.node, frame, Kind::Enum(variants))?;
        let result = match entry.node {
            Some(node) => match self.t.choose(node, variants.len()) {
                None => Err(TraceError::Cut { blamed: false }),
                Some(v) => {
                    let access = Variants {
                        t: &mut *self.t,
                        node: Some(node),
                        v,
                        names: variants,
                    };
                    let result = visitor.visit_enum(access);
                    self.t.variant_done(node, v, &result);
                    result
                }
            },
            None => match self.t.sink_choice(frame, variants.len()) {
                Err(error) => Err(error),
                Ok((v, trial)) => {
                    if trial {
                        self.t.sink_stack.push(frame);
                    }
                    let access = Variants {
                        t: &mut *self.t,
                        node: None,
                        v,
                        names: variants,
                    };
                    let result = visitor.visit_enum(access);
                    if trial {
                        self.t.sink_stack.pop();
                    }
                    self.t.sink_done(frame, v, trial, result)
                }
            },
        };
        self.t.exit(entry);
        self.t.finish(entry.node.is_none(), result)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence (`catch`: a cut element ends it), tuple or
/// struct.
struct Elements<'t> {
    t: &'t mut Tracer,
    node: Option<NodeId>,
    len: usize,
    read: usize,
    catch: bool,
    names: Option<&'static [&'static str]>,
}

impl<'de> SeqAccess<'de> for Elements<'_> {
    type Error = TraceError;

    fn next_element_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>> {
        if self.read >= self.len {
            return Ok(None);
        }
        let i = self.read;
        self.read += 1;
        let node = self.node.map(|node| self.t.child(node, i));
        self.t.segs.push(match self.names {
            Some(names) => Seg::Field(names[i]),
            None if self.catch => Seg::Element,
            None => Seg::Index(i),
        });
        let result = seed.deserialize(De {
            t: &mut *self.t,
            node,
        });
        let result = self.t.finish(node.is_none(), result);
        self.t.segs.pop();
        match result {
            Ok(value) => Ok(Some(value)),
            Err(TraceError::Cut { .. }) if self.catch => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len - self.read)
    }
}

/// The one entry of a map (none in sink mode or once cut).
struct Entries<'t> {
    t: &'t mut Tracer,
    node: Option<NodeId>,
    key: bool,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = TraceError;

    fn next_key_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>> {
        let Some(node) = self.node.filter(|_| !self.key) else {
            return Ok(None);
        };
        self.key = true;
        let key = self.t.child(node, 0);
        self.t.segs.push(Seg::Key);
        let result = seed.deserialize(De {
            t: &mut *self.t,
            node: Some(key),
        });
        let result = self.t.finish(false, result);
        self.t.segs.pop();
        match result {
            Ok(value) => Ok(Some(value)),
            Err(TraceError::Cut { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value> {
        let node = self.node.map(|node| self.t.child(node, 1));
        self.t.segs.push(Seg::Value);
        let result = seed.deserialize(De {
            t: &mut *self.t,
            node,
        });
        let result = self.t.finish(node.is_none(), result);
        self.t.segs.pop();
        result
    }

    fn size_hint(&self) -> Option<usize> {
        Some(usize::from(self.node.is_some() && !self.key))
    }
}

/// An enum value of the chosen variant `v`.
struct Variants<'t> {
    t: &'t mut Tracer,
    node: Option<NodeId>,
    v: usize,
    names: &'static [&'static str],
}

impl<'de, 't> EnumAccess<'de> for Variants<'t> {
    type Error = TraceError;
    type Variant = Body<'t>;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Body<'t>)> {
        let index: U32Deserializer<TraceError> = (self.v as u32).into_deserializer();
        let value = seed.deserialize(index)?;
        let node = self.node.map(|node| self.t.child(node, self.v));
        Ok((
            value,
            Body {
                t: self.t,
                node,
                name: self.names[self.v],
            },
        ))
    }
}

/// The body of the chosen variant.
struct Body<'t> {
    t: &'t mut Tracer,
    node: Option<NodeId>,
    name: &'static str,
}

impl Body<'_> {
    fn record(&mut self, kind: Kind) {
        if let Some(node) = self.node {
            self.t.record(node, kind);
        }
    }
}

impl<'de> VariantAccess<'de> for Body<'_> {
    type Error = TraceError;

    fn unit_variant(mut self) -> Result<()> {
        self.record(Kind::VUnit);
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(mut self, seed: S) -> Result<S::Value> {
        self.record(Kind::VNewtype);
        let inner = self.node.map(|node| self.t.child(node, 0));
        self.t.segs.push(Seg::Variant(self.name));
        let result = seed.deserialize(De {
            t: &mut *self.t,
            node: inner,
        });
        let result = self.t.finish(inner.is_none(), result);
        self.t.segs.pop();
        result
    }

    fn tuple_variant<V: Visitor<'de>>(mut self, len: usize, visitor: V) -> Result<V::Value> {
        self.record(Kind::VTuple(len));
        self.t.segs.push(Seg::Variant(self.name));
        let result = visit_fixed(self.t, self.node, Kind::VTuple(len), None, len, visitor);
        self.t.segs.pop();
        result
    }

    fn struct_variant<V: Visitor<'de>>(
        mut self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.record(Kind::VStruct(fields));
        self.t.segs.push(Seg::Variant(self.name));
        let kind = Kind::VStruct(fields);
        let result = visit_fixed(self.t, self.node, kind, Some(fields), fields.len(), visitor);
        self.t.segs.pop();
        result
    }
}
