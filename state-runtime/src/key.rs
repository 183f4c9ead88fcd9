//! Keys of keyed state: [`Keyed`] events and [`KeyQuery`], the forms in which
//! a key can be handed to a keyed container.

use crate::hash::StateKey;

/// An event that carries the key of the keyed state it updates.
///
/// Derive it with `#[derive(Keyed)]` and mark the key with `#[key]`:
///
/// * one `#[key]` field: [`Key`](Keyed::Key) is that field's type and
///   [`key`](Keyed::key) returns a reference to the field;
/// * several `#[key]` fields: `Key` is the tuple of their types in field
///   order, and `key` returns the tuple of references;
/// * an enum: every variant marks its key field(s), all of the same type(s).
///
/// # Why `key` returns a borrowed key
///
/// `key` is called once per event on the hot path. Returning
/// [`KeyRef<'_>`](Keyed::KeyRef) (`&T`, or a tuple of `&T`s) costs nothing:
/// no clone, no allocation, whatever the key type (`u64` or `String`). The
/// containers take any [`KeyQuery<Key>`](KeyQuery), which `&T` and tuples of
/// references are, so a lookup hashes and compares the borrowed key in
/// place; only an insertion of a new key converts it into an owned `Key`
/// (a copy for `u64`, a clone for `String`). [`owned_key`](Keyed::owned_key)
/// gives the owned key when one is needed.
///
/// ```
/// use state_runtime::prelude::*;
///
/// #[derive(Keyed)]
/// struct Purchase {
///     #[key]
///     customer: u64,
///     cents: i64,
/// }
///
/// #[derive(Keyed)]
/// struct Click {
///     #[key]
///     site: String,
///     #[key]
///     page: u32,
/// }
///
/// #[derive(Keyed)]
/// enum Event {
///     Buy { #[key] customer: u64, cents: i64 },
///     Refund(#[key] u64, i64),
/// }
///
/// let p = Purchase { customer: 7, cents: 250 };
/// let k: &u64 = p.key();
/// assert_eq!(*k, 7);
///
/// let c = Click { site: "shop".into(), page: 3 };
/// assert_eq!(c.key(), (&"shop".to_string(), &3));
/// assert_eq!(c.owned_key(), ("shop".to_string(), 3));
///
/// assert_eq!(*Event::Refund(9, -5).key(), 9);
///
/// // Keyed state takes the borrowed key directly.
/// let assigner = KeyGroupAssigner::native(MaxParallelism::new(128)?);
/// let mut sums = KeyedValue::<u64, i64>::new(assigner, assigner.max_parallelism().all_key_groups())?;
/// *sums.get_or_insert_with(p.key(), || 0)? += p.cents;
/// assert_eq!(sums.get(&7)?, Some(&250));
/// # Ok::<(), StateError>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a keyed event",
    label = "`{Self}` does not implement `Keyed`",
    note = "derive it with `#[derive(Keyed)]` and mark the key field(s) with `#[key]`"
)]
pub trait Keyed {
    /// The owned key type, as stored in keyed state.
    type Key: StateKey + Eq + Clone;

    /// The borrowed key [`key`](Keyed::key) returns: `&'a Key` for a single
    /// key field, a tuple of references for several.
    type KeyRef<'a>: KeyQuery<Self::Key> + Copy
    where
        Self: 'a;

    /// The event's key, borrowed from the event.
    fn key(&self) -> Self::KeyRef<'_>;

    /// The event's key, owned (clones the key fields).
    fn owned_key(&self) -> Self::Key {
        self.key().into_key()
    }
}

/// A form in which a key of type `K` can be given to a keyed container:
/// `K` itself, `&K`, `&str` for `String`, and tuples of references for
/// tuple keys.
///
/// # Contract
///
/// An implementation must have the same [`StableHash`](crate::hash::StableHash)
/// and the same [`java_hash_code`](StateKey::java_hash_code) as the `K` it
/// stands for, [`is_key`](KeyQuery::is_key) must be `K`'s equality, and
/// [`into_key`](KeyQuery::into_key) must give the equal `K`. The containers
/// find a key's key group and slot from the query's hash, so a query that
/// hashes differently from its key would not find it.
///
/// ```
/// use state_runtime::hash::StableHash;
/// use state_runtime::KeyQuery;
///
/// let key = ("eu".to_string(), 7u32);
/// let query = (&key.0, &key.1);
/// assert_eq!(query.stable_hash(), key.stable_hash());
/// assert!(query.is_key(&key));
/// let owned: (String, u32) = query.into_key();
/// assert_eq!(owned, key);
/// assert!(KeyQuery::<String>::is_key(&"eu", &"eu".to_string()));
/// ```
pub trait KeyQuery<K>: StateKey {
    /// Whether this query denotes the stored key `stored`.
    fn is_key(&self, stored: &K) -> bool;

    /// The owned key, for inserting a new entry.
    fn into_key(self) -> K;
}

impl<K: StateKey + Eq> KeyQuery<K> for K {
    #[inline]
    fn is_key(&self, stored: &K) -> bool {
        self == stored
    }

    #[inline]
    fn into_key(self) -> K {
        self
    }
}

impl<K: StateKey + Eq + Clone> KeyQuery<K> for &K {
    #[inline]
    fn is_key(&self, stored: &K) -> bool {
        *self == stored
    }

    #[inline]
    fn into_key(self) -> K {
        self.clone()
    }
}

impl KeyQuery<String> for &str {
    #[inline]
    fn is_key(&self, stored: &String) -> bool {
        *self == stored.as_str()
    }

    #[inline]
    fn into_key(self) -> String {
        self.to_owned()
    }
}

macro_rules! tuple_queries {
    ($(($($n:tt $t:ident),+))*) => {$(
        impl<'a, $($t: crate::hash::StableHash + Eq + Clone),+> KeyQuery<($($t,)+)> for ($(&'a $t,)+) {
            #[inline]
            fn is_key(&self, stored: &($($t,)+)) -> bool {
                $(*self.$n == stored.$n)&&+
            }

            #[inline]
            fn into_key(self) -> ($($t,)+) {
                ($(self.$n.clone(),)+)
            }
        }
    )*};
}
tuple_queries! {
    (0 A, 1 B)
    (0 A, 1 B, 2 C)
    (0 A, 1 B, 2 C, 3 D)
    (0 A, 1 B, 2 C, 3 D, 4 E)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::StableHash;

    #[test]
    fn queries_hash_like_their_keys() {
        let s = "customer-1".to_string();
        assert_eq!(s.as_str().stable_hash(), s.stable_hash());
        assert_eq!(
            s.as_str().java_hash_code(),
            StateKey::java_hash_code(&s),
            "&str and String agree in Flink mode"
        );
        let k = (s.clone(), 9u64, -1i32);
        let q = (&k.0, &k.1, &k.2);
        assert_eq!(q.stable_hash(), k.stable_hash());
        assert!(q.is_key(&k));
        assert!(!(&k.0, &10u64, &k.2).is_key(&k));
        assert_eq!(KeyQuery::<(String, u64, i32)>::into_key(q), k);
        assert!(KeyQuery::<u64>::is_key(&&5u64, &5));
        assert!(!KeyQuery::<u64>::is_key(&6u64, &5));
    }
}
