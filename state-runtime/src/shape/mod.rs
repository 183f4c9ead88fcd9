//! The shape of a type in the serde data model, traced without a value.
//!
//! Checkpoints are bincode, which is not self-describing: bytes written by
//! one type and decoded with another can come back wrong without an error.
//! Each checkpoint therefore records the *shape* of every state's types, and
//! a restore whose types changed is refused. [`shape_of`] computes the shape
//! of `T: DeserializeOwned` by running `T`'s `Deserialize` against a tracing
//! `Deserializer` (see [`trace`] for how), never needing a value of `T`.
//!
//! # Canonical text
//!
//! [`Shape::canonical`] gives the text a checkpoint stores. Equal types give
//! equal text; any change of a field or variant name, of their order, or of
//! any type inside changes it. The Rust names of structs and enums are *not*
//! part of it (renaming a type or moving it to another module is not a
//! change), field and variant names are (as serde names them, so after
//! `#[serde(rename)]`). The grammar:
//!
//! ```text
//! shape    = prim | "unit_struct" | "ref(" digits ")"
//!          | "option(" shape ")" | "seq(" shape ")" | "map(" shape "," shape ")"
//!          | "tuple(" shapes ")" | "newtype(" shape ")" | "tuple_struct(" shapes ")"
//!          | "struct{" fields "}" | "enum{" variants "}"
//! prim     = "bool" | "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16"
//!          | "u32" | "u64" | "u128" | "f32" | "f64" | "char" | "str" | "unit"
//! shapes   = [ shape { "," shape } ]
//! fields   = [ name ":" shape { "," name ":" shape } ]
//! variants = [ variant { "," variant } ]
//! variant  = name                            (unit variant)
//!          | name ":newtype(" shape ")"      (newtype variant)
//!          | name ":tuple(" shapes ")"       (tuple variant)
//!          | name ":struct{" fields "}"      (struct variant)
//! name     = 1*[A-Za-z0-9_] | '"' { char other than '"' '\' | '\"' | '\\' } '"'
//! ```
//!
//! * `str` is both `String` and `&str`; serde's `bytes` and `byte_buf` are
//!   `seq(u8)`, because bincode encodes `Vec<u8>` and `serde_bytes` buffers
//!   identically (switching between them keeps checkpoints restorable). Sets
//!   are `seq`, fixed-size arrays `tuple`.
//! * Variants and fields are in declared order. A name outside
//!   `[A-Za-z0-9_]` (possible with `#[serde(rename = "...")]`), or empty, is
//!   quoted, with `"` and `\` escaped, so no name can forge structure.
//! * `ref(n)` is a recursive occurrence of the `n`-th enclosing compound
//!   shape (option, seq, map, tuple, newtype, tuple_struct, struct or enum;
//!   a variant's body belongs to its enum), `0` being the innermost, so
//!   `struct Node { value: u32, next: Option<Box<Node>> }` is
//!   `struct{value:u32,next:option(ref(1))}`.
//!
//! [`fingerprint`] is the xxh3-64 of the text.

mod de;
mod trace;
mod tree;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_errors;
#[cfg(test)]
mod tests_recursion;

use std::fmt::{self, Write as _};

use serde::de::DeserializeOwned;

/// Deeper nesting than this (in compound shapes) is [`ShapeError::TooDeep`].
pub(crate) const MAX_DEPTH: usize = 128;
/// More distinct shape positions than this is [`ShapeError::TooLarge`].
pub(crate) const MAX_NODES: usize = 100_000;
/// More `Deserializer` calls than this, over all passes, is
/// [`ShapeError::TooLarge`] (it bounds the time a trace takes).
pub(crate) const MAX_STEPS: usize = 4_000_000;

/// The shape of a type in the serde data model.
///
/// See the [module documentation](self) for its canonical text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A primitive: `bool`, the integers and floats, `char`, a string, `()`.
    Prim(Prim),
    /// `struct S;`.
    UnitStruct,
    /// `Option<T>`.
    Option(Box<Shape>),
    /// A sequence or set of `T` (and serde's bytes, as `seq(u8)`).
    Seq(Box<Shape>),
    /// A map from the first shape to the second.
    Map(Box<Shape>, Box<Shape>),
    /// A tuple or fixed-size array.
    Tuple(Vec<Shape>),
    /// `struct S(T);`.
    Newtype(Box<Shape>),
    /// `struct S(A, B, ..);`.
    TupleStruct(Vec<Shape>),
    /// `struct S { a: A, .. }`: serde's field names, in order.
    Struct(Vec<(String, Shape)>),
    /// An enum: serde's variant names, in declared order.
    Enum(Vec<(String, Variant)>),
    /// A recursive occurrence of the `n`-th enclosing compound shape, `0`
    /// being the innermost.
    Ref(usize),
}

/// The body of one enum variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Variant {
    /// `A`.
    Unit,
    /// `A(T)`.
    Newtype(Shape),
    /// `A(T, U, ..)`.
    Tuple(Vec<Shape>),
    /// `A { x: X, .. }`.
    Struct(Vec<(String, Shape)>),
}

/// A primitive shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prim {
    Bool,
    I8,
    I16,
    I32,
    I64,
    I128,
    U8,
    U16,
    U32,
    U64,
    U128,
    F32,
    F64,
    Char,
    /// `String`, `&str`, `Box<str>` ...
    Str,
    /// `()`.
    Unit,
}

impl Prim {
    /// Its name in the canonical text.
    fn name(self) -> &'static str {
        match self {
            Prim::Bool => "bool",
            Prim::I8 => "i8",
            Prim::I16 => "i16",
            Prim::I32 => "i32",
            Prim::I64 => "i64",
            Prim::I128 => "i128",
            Prim::U8 => "u8",
            Prim::U16 => "u16",
            Prim::U32 => "u32",
            Prim::U64 => "u64",
            Prim::U128 => "u128",
            Prim::F32 => "f32",
            Prim::F64 => "f64",
            Prim::Char => "char",
            Prim::Str => "str",
            Prim::Unit => "unit",
        }
    }
}

impl Shape {
    /// The canonical text, e.g. `struct{id:u64,tags:seq(str)}`; equal types
    /// give equal text.
    pub(crate) fn canonical(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        let prim = match self {
            Shape::Prim(p) => p.name(),
            Shape::UnitStruct => "unit_struct",
            Shape::Option(inner) => return wrap(out, "option(", inner, ")"),
            Shape::Seq(inner) => return wrap(out, "seq(", inner, ")"),
            Shape::Newtype(inner) => return wrap(out, "newtype(", inner, ")"),
            Shape::Map(key, value) => {
                out.push_str("map(");
                key.write(out);
                out.push(',');
                value.write(out);
                out.push(')');
                return;
            }
            Shape::Tuple(items) => return write_list(out, "tuple(", items),
            Shape::TupleStruct(items) => return write_list(out, "tuple_struct(", items),
            Shape::Struct(fields) => return write_fields(out, fields),
            Shape::Enum(variants) => {
                out.push_str("enum{");
                for (i, (name, variant)) in variants.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_name(out, name);
                    match variant {
                        Variant::Unit => {}
                        Variant::Newtype(inner) => wrap(out, ":newtype(", inner, ")"),
                        Variant::Tuple(items) => {
                            out.push(':');
                            write_list(out, "tuple(", items);
                        }
                        Variant::Struct(fields) => {
                            out.push(':');
                            write_fields(out, fields);
                        }
                    }
                }
                out.push('}');
                return;
            }
            Shape::Ref(n) => {
                let _ = write!(out, "ref({n})");
                return;
            }
        };
        out.push_str(prim);
    }
}

impl fmt::Display for Shape {
    /// The [canonical](Shape::canonical) text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

fn wrap(out: &mut String, open: &str, inner: &Shape, close: &str) {
    out.push_str(open);
    inner.write(out);
    out.push_str(close);
}

fn write_list(out: &mut String, open: &str, items: &[Shape]) {
    out.push_str(open);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item.write(out);
    }
    out.push(')');
}

fn write_fields(out: &mut String, fields: &[(String, Shape)]) {
    out.push_str("struct{");
    for (i, (name, shape)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_name(out, name);
        out.push(':');
        shape.write(out);
    }
    out.push('}');
}

/// A field or variant name: bare if it is a non-empty `[A-Za-z0-9_]+`,
/// otherwise quoted with `"` and `\` escaped.
pub(super) fn write_name(out: &mut String, name: &str) {
    let bare = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if bare {
        out.push_str(name);
        return;
    }
    out.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Why the shape of a type could not be traced. `ty` is the traced type
/// (`std::any::type_name`), `at` where in it the problem is, as a path from
/// the root such as `field tags > element > variant Add > field 0`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub(crate) enum ShapeError {
    /// The type's `Deserialize` asks the format what comes next
    /// (`deserialize_any`, `deserialize_ignored_any`, `deserialize_identifier`),
    /// which only a self-describing format can answer, and bincode cannot.
    #[error(
        "cannot trace the shape of `{ty}` at {at}: its Deserialize calls `{method}`, which needs \
         a self-describing format (untagged, internally or adjacently tagged enums, \
         #[serde(flatten)] and values like serde_json::Value cannot be stored in a checkpoint)"
    )]
    NotTraceable {
        /// The traced type.
        ty: String,
        /// Where in it.
        at: String,
        /// The `Deserializer` method it called.
        method: &'static str,
    },
    /// The type's `Deserialize` rejected the tracer's sample value.
    #[error(
        "cannot trace the shape of `{ty}` at {at}: its Deserialize rejected a sample value: {message}"
    )]
    Rejected {
        /// The traced type.
        ty: String,
        /// Where in it.
        at: String,
        /// Serde's message.
        message: String,
    },
    /// The type nests deeper than [`MAX_DEPTH`].
    #[error("cannot trace the shape of `{ty}` at {at}: it nests deeper than {limit} levels")]
    TooDeep {
        /// The traced type.
        ty: String,
        /// Where in it.
        at: String,
        /// The bound.
        limit: usize,
    },
    /// The shape has more than [`MAX_NODES`] positions, or tracing it takes
    /// more than [`MAX_STEPS`] calls.
    #[error("cannot trace the shape of `{ty}`: it takes more than {limit} {what}")]
    TooLarge {
        /// The traced type.
        ty: String,
        /// What was counted.
        what: &'static str,
        /// The bound.
        limit: usize,
    },
    /// A part of the type could not be reached: no value could be built for
    /// an enclosing enum variant (or the part itself), so its shape is
    /// unknown.
    #[error(
        "cannot trace the shape of `{ty}` at {at}: no value could be built to reach it, so its \
         shape is unknown"
    )]
    Unexplored {
        /// The traced type.
        ty: String,
        /// Where in it.
        at: String,
    },
    /// The type's `Deserialize` did different things in two passes.
    #[error("cannot trace the shape of `{ty}` at {at}: its Deserialize is not deterministic")]
    Nondeterministic {
        /// The traced type.
        ty: String,
        /// Where in it.
        at: String,
    },
}

/// The shape of `T`.
pub(crate) fn shape_of<T: DeserializeOwned>() -> Result<Shape, ShapeError> {
    trace::trace::<T>()
}

/// The canonical text of `T`'s shape ([`shape_of`], then
/// [`Shape::canonical`]); [`fingerprint`] hashes it.
pub(crate) fn canonical_shape<T: DeserializeOwned>() -> Result<String, ShapeError> {
    shape_of::<T>().map(|shape| shape.canonical())
}

/// The 64-bit fingerprint of a canonical text: `xxhash_rust::xxh3::xxh3_64`.
pub(crate) fn fingerprint(canonical: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(canonical.as_bytes())
}
