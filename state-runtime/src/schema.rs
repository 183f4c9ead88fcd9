//! State types: what a checkpoint records of each state's types, and the
//! migrations an operator declares for older ones.
//!
//! The encoding is not self-describing, so a value decoded with another type
//! than it was written with could come back wrong without any error. Each
//! checkpoint therefore records, per state, a [`StateType`]: the state's
//! version and the *shape* of its item type (keyed state: its value type, and
//! the key's shape), as serde's data model sees it. A restore compares them
//! with the operator's types before it decodes anything, and refuses a
//! difference with [`StateError::TypeChanged`] unless the operator declares a
//! migration from the recorded version ([`Migrations`]).
//!
//! # Shapes
//!
//! A shape is a canonical text of the type's structure: field names and
//! order, field types, enum variants and their contents. It does not contain
//! the Rust names of types, so renaming a type or moving it to another module
//! is not a change. `Vec<u8>` and `serde_bytes` byte buffers have the same
//! shape (they encode identically), and so do `String` and `&str`.
//!
//! ```
//! use state_runtime::schema::StateType;
//!
//! #[derive(serde::Deserialize)]
//! struct Order { id: u64, qty: i64 }
//!
//! let ty = StateType::of::<Order>(1)?;
//! assert_eq!(ty.shape(), Some("struct{id:u64,qty:i64}"));
//! assert_eq!(ty.version(), 1);
//! # Ok::<(), state_runtime::StateError>(())
//! ```
//!
//! # Evolution
//!
//! Every change of a state's shape needs a declared migration: a newer type
//! cannot read bytes written by an older one, even one with just an added
//! `Option` field, because the encoding carries no field names or lengths. A
//! migration names the older type, which decodes the old bytes, and a
//! conversion into the current type. Keys never change type: a key decides
//! the key group, so a changed key type is always refused.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::StateError;
use crate::shape;

/// What a checkpoint records of one state's types.
///
/// Checkpoints of format version 1 record none; their states restore
/// unchecked, as before shapes were recorded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateType {
    version: u32,
    shape: Option<String>,
    key_shape: Option<String>,
}

impl StateType {
    /// Version `version` of a state whose items (or keyed values) are `T`.
    /// Errors if `T`'s shape cannot be traced ([`StateError::UntraceableType`]).
    ///
    /// ```
    /// use state_runtime::schema::StateType;
    ///
    /// let ty = StateType::of::<Vec<(u32, i64)>>(2)?;
    /// assert_eq!((ty.version(), ty.shape()), (2, Some("seq(tuple(u32,i64))")));
    /// # Ok::<(), state_runtime::StateError>(())
    /// ```
    pub fn of<T: DeserializeOwned>(version: u32) -> Result<Self, StateError> {
        Ok(Self {
            version,
            shape: Some(shape_text::<T>()?),
            key_shape: None,
        })
    }

    /// Like [`of`](Self::of), with the shape of the key type `K` too (keyed
    /// state).
    ///
    /// ```
    /// use state_runtime::schema::StateType;
    ///
    /// let ty = StateType::keyed::<String, u64>(1)?;
    /// assert_eq!((ty.key_shape(), ty.shape()), (Some("str"), Some("u64")));
    /// # Ok::<(), state_runtime::StateError>(())
    /// ```
    pub fn keyed<K: DeserializeOwned, V: DeserializeOwned>(
        version: u32,
    ) -> Result<Self, StateError> {
        Ok(Self {
            key_shape: Some(shape_text::<K>()?),
            ..Self::of::<V>(version)?
        })
    }

    /// A recorded type (as a manifest stores it: empty shapes are absent).
    pub(crate) fn recorded(version: u32, shape: String, key_shape: String) -> Self {
        let some = |s: String| (!s.is_empty()).then_some(s);
        Self {
            version,
            shape: some(shape),
            key_shape: some(key_shape),
        }
    }

    /// Version `version` of a type whose shape could not be traced.
    pub(crate) fn untraced(version: u32) -> Self {
        Self {
            version,
            shape: None,
            key_shape: None,
        }
    }

    /// The same type with another version.
    pub(crate) fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// The state's version: 1, or the version its operator declared with
    /// [`Migrations`].
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The canonical shape of the item type (keyed state: of the value
    /// type).
    pub fn shape(&self) -> Option<&str> {
        self.shape.as_deref()
    }

    /// The canonical shape of the key type (keyed state only).
    pub fn key_shape(&self) -> Option<&str> {
        self.key_shape.as_deref()
    }

    /// A 64-bit fingerprint (xxh3) of the shapes, to compare at a glance.
    ///
    /// ```
    /// use state_runtime::schema::StateType;
    ///
    /// let a = StateType::of::<(u32, i64)>(1)?;
    /// let b = StateType::of::<(u64, u64)>(1)?;
    /// assert_ne!(a.fingerprint(), b.fingerprint());
    /// # Ok::<(), state_runtime::StateError>(())
    /// ```
    pub fn fingerprint(&self) -> u64 {
        let text = format!(
            "{};{}",
            self.key_shape.as_deref().unwrap_or(""),
            self.shape.as_deref().unwrap_or("")
        );
        shape::fingerprint(&text)
    }
}

impl fmt::Display for StateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{} ", self.version)?;
        if let Some(key) = &self.key_shape {
            write!(f, "key {key}, value ")?;
        }
        f.write_str(self.shape.as_deref().unwrap_or("(untraced)"))
    }
}

/// The canonical shape of `T`, as a state error.
pub(crate) fn shape_text<T: DeserializeOwned>() -> Result<String, StateError> {
    shape::canonical_shape::<T>().map_err(|e| StateError::UntraceableType {
        type_name: std::any::type_name::<T>().to_owned(),
        message: e.to_string(),
    })
}

/// Decodes one older item from the front of the bytes and converts it.
type DecodeOlder<T> = dyn Fn(&[u8], &str) -> Result<(T, usize), StateError> + Send + Sync;

/// One older version of a state's item type.
struct Older<T> {
    type_name: &'static str,
    shape: fn() -> Result<String, StateError>,
    decode: Box<DecodeOlder<T>>,
}

/// The older versions of a state's item type `T` (keyed state: value type),
/// oldest first, each with its conversion into `T`.
///
/// Version `i` (from 1) is the `i`-th type added with
/// [`from`](Self::from); the current type `T` is version
/// [`current_version`](Self::current_version). A restore decodes an item of
/// an older version with that version's type, then converts it. The derive
/// builds this from `#[state(.., migrate_from(V1, V2))]`.
///
/// ```
/// use state_runtime::schema::Migrations;
///
/// #[derive(serde::Deserialize)]
/// struct OrderV1 { id: u32 }
/// #[derive(serde::Deserialize)]
/// struct Order { id: u64, note: Option<String> }
///
/// let m = Migrations::<Order>::new().from(|old: OrderV1| Order { id: old.id.into(), note: None });
/// assert_eq!(m.current_version(), 2);
/// ```
pub struct Migrations<T> {
    older: Vec<Older<T>>,
}

impl<T> Default for Migrations<T> {
    fn default() -> Self {
        Self { older: Vec::new() }
    }
}

impl<T> fmt::Debug for Migrations<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.older.iter().map(|o| o.type_name))
            .finish()
    }
}

impl<T: 'static> Migrations<T> {
    /// No older versions: the current type is version 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next version after those already added: its items have
    /// type `O`, and `convert` turns one into a `T`.
    pub fn from<O: DeserializeOwned + 'static>(
        mut self,
        convert: impl Fn(O) -> T + Send + Sync + 'static,
    ) -> Self {
        self.older.push(Older {
            type_name: std::any::type_name::<O>(),
            shape: shape_text::<O>,
            decode: Box::new(move |bytes, state| {
                let (old, used) = codec::decode_prefix::<O>(bytes, state)?;
                Ok((convert(old), used))
            }),
        });
        self
    }
}

impl<T> Migrations<T> {
    /// The current type's version: one more than the older versions.
    pub fn current_version(&self) -> u32 {
        self.older.len() as u32 + 1
    }
}

impl<T> Migrations<T> {
    /// Decodes one item of older version `version` from the front of
    /// `bytes`, converted.
    pub(crate) fn decode_older(
        &self,
        version: u32,
        bytes: &[u8],
        state: &str,
    ) -> Result<(T, usize), StateError> {
        (self.older[version as usize - 1].decode)(bytes, state)
    }
}

/// How a restore decodes one state's items, chosen by [`check`].
pub(crate) enum Decoder<'m, T> {
    /// As the current type.
    Current,
    /// As an older version (its number, and its decoder), converted.
    Older(u32, &'m DecodeOlder<T>),
}

impl<T: DeserializeOwned> Decoder<'_, T> {
    /// The older version decoded, if not the current one.
    pub(crate) fn older_version(&self) -> Option<u32> {
        match self {
            Decoder::Current => None,
            Decoder::Older(v, _) => Some(*v),
        }
    }

    /// Decodes one item that must span all of `bytes`.
    pub(crate) fn decode_exact(&self, bytes: &[u8], state: &str) -> Result<T, StateError> {
        match self {
            Decoder::Current => codec::decode_exact::<T>(bytes, state),
            Decoder::Older(_, decode) => {
                let (item, used) = decode(bytes, state)?;
                if used != bytes.len() {
                    return Err(StateError::Decode {
                        state: state.to_owned(),
                        message: format!("{} trailing bytes after the item", bytes.len() - used),
                    });
                }
                Ok(item)
            }
        }
    }
}

/// What a state's items are called in errors: "items", "values".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// Operator state's items.
    Items,
    /// Keyed state's values.
    Values,
}

/// Checks the type `recorded` in a checkpoint against the current type `T`
/// (with key type shape `key`, for keyed state) and its declared
/// `migrations`, and says how to decode. A checkpoint without a recorded type
/// (format version 1) decodes as `T`, unchecked.
pub(crate) fn check<'m, T: DeserializeOwned>(
    state: &str,
    part: Part,
    recorded: Option<&StateType>,
    key: Option<fn() -> Result<String, StateError>>,
    migrations: Option<&'m Migrations<T>>,
) -> Result<Decoder<'m, T>, StateError> {
    let Some(recorded) = recorded else {
        return Ok(Decoder::Current);
    };
    let current = migrations.map_or(1, Migrations::current_version);
    let changed = |declared: String| StateError::TypeChanged {
        state: state.to_owned(),
        what: match part {
            Part::Items => "items",
            Part::Values => "values",
        },
        recorded: recorded.to_string(),
        declared,
    };
    if let (Some(key), Some(recorded_key)) = (key, recorded.key_shape()) {
        let declared = key()?;
        if declared != recorded_key {
            return Err(StateError::KeyTypeChanged {
                state: state.to_owned(),
                recorded: recorded_key.to_owned(),
                declared,
            });
        }
    }
    let version = recorded.version();
    let (shape, decoder): (fn() -> Result<String, StateError>, _) = if version == current {
        (shape_text::<T>, Decoder::Current)
    } else if version >= 1 && version < current {
        let older =
            &migrations.expect("versions below the current one").older[version as usize - 1];
        (older.shape, Decoder::Older(version, &*older.decode))
    } else {
        let declared = StateType::of::<T>(current)
            .map(|t| format!("{t} (and no version {version})"))
            .unwrap_or_else(|e| format!("v{current} ({e})"));
        return Err(changed(declared));
    };
    let Some(recorded_shape) = recorded.shape() else {
        // Untraceable when written: nothing to compare.
        return Ok(decoder);
    };
    let declared = shape()?;
    if declared != recorded_shape {
        return Err(changed(format!("v{version} {declared}")));
    }
    Ok(decoder)
}

/// A shared, optional set of migrations, as keyed states hold them.
pub(crate) type SharedMigrations<T> = Option<Arc<Migrations<T>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct V1 {
        a: u32,
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct V2 {
        a: u64,
        b: bool,
    }

    fn recorded<T: DeserializeOwned>(version: u32) -> StateType {
        StateType::of::<T>(version).unwrap()
    }

    #[test]
    fn the_same_type_decodes_as_itself() {
        let d = check::<V2>("s", Part::Items, Some(&recorded::<V2>(1)), None, None).unwrap();
        assert!(matches!(d, Decoder::Current));
    }

    #[test]
    fn a_checkpoint_without_types_is_unchecked() {
        assert!(matches!(
            check::<V2>("s", Part::Items, None, None, None).unwrap(),
            Decoder::Current
        ));
    }

    #[test]
    fn a_changed_type_without_migration_is_refused() {
        let err = check::<V2>("s", Part::Items, Some(&recorded::<V1>(1)), None, None)
            .err()
            .unwrap();
        let StateError::TypeChanged {
            state,
            recorded,
            declared,
            ..
        } = err
        else {
            panic!("{err}")
        };
        assert_eq!(state, "s");
        assert_eq!(recorded, "v1 struct{a:u32}");
        assert_eq!(declared, "v1 struct{a:u64,b:bool}");
    }

    #[test]
    fn an_older_version_decodes_with_its_type_and_converts() {
        let m = Migrations::<V2>::new().from(|v: V1| V2 {
            a: v.a.into(),
            b: true,
        });
        let d = check("s", Part::Items, Some(&recorded::<V1>(1)), None, Some(&m)).unwrap();
        let mut bytes = Vec::new();
        codec::encode_into(&7u32, &mut bytes, "s").unwrap();
        assert_eq!(d.decode_exact(&bytes, "s").unwrap(), V2 { a: 7, b: true });
    }

    #[test]
    fn an_older_version_whose_type_differs_from_the_declared_one_is_refused() {
        let m = Migrations::<V2>::new().from(|v: V1| V2 {
            a: v.a.into(),
            b: true,
        });
        // Version 1 was written with `u8` items, not `V1`.
        let err = check("s", Part::Items, Some(&recorded::<u8>(1)), None, Some(&m))
            .err()
            .unwrap();
        assert!(matches!(err, StateError::TypeChanged { .. }), "{err}");
    }

    #[test]
    fn a_version_newer_than_the_operator_knows_is_refused() {
        let err = check::<V2>("s", Part::Items, Some(&recorded::<V2>(3)), None, None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("no version 3"), "{err}");
    }

    #[test]
    fn a_changed_key_type_is_refused_even_with_migrations() {
        let m = Migrations::<V2>::new().from(|v: V1| V2 {
            a: v.a.into(),
            b: true,
        });
        let rec = StateType::keyed::<u32, V1>(1).unwrap();
        let err = check(
            "s",
            Part::Values,
            Some(&rec),
            Some(shape_text::<u64>),
            Some(&m),
        )
        .err()
        .unwrap();
        assert!(matches!(err, StateError::KeyTypeChanged { .. }), "{err}");
    }
}
