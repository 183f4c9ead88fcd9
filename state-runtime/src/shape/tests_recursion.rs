//! Shapes of recursive types: finite, deterministic, and sensitive to any
//! change inside.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;

/// Traces twice: the text must be the same.
fn text<T: DeserializeOwned>() -> String {
    let first = canonical_shape::<T>().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(canonical_shape::<T>().unwrap(), first, "not deterministic");
    first
}

#[derive(Deserialize)]
struct Node {
    value: u32,
    next: Option<Box<Node>>,
}

#[derive(Deserialize)]
struct NodeI64 {
    value: i64,
    next: Option<Box<NodeI64>>,
}

#[test]
fn linked_node() {
    assert_eq!(text::<Node>(), "struct{value:u32,next:option(ref(1))}");
    assert_ne!(text::<NodeI64>(), text::<Node>());
    assert_eq!(
        text::<Vec<Node>>(),
        "seq(struct{value:u32,next:option(ref(1))})"
    );
}

#[derive(Deserialize)]
enum List {
    Cons(u32, Box<List>),
    Nil,
}

#[derive(Deserialize)]
enum ListU8 {
    Cons(u8, Box<ListU8>),
    Nil,
}

#[test]
fn list_whose_first_variant_recurses() {
    assert_eq!(text::<List>(), "enum{Cons:tuple(u32,ref(0)),Nil}");
    assert_ne!(text::<ListU8>(), text::<List>());
    assert_eq!(
        text::<Option<List>>(),
        "option(enum{Cons:tuple(u32,ref(0)),Nil})"
    );
}

#[derive(Deserialize)]
enum Expr {
    Lit(i64),
    Add(Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
}

#[derive(Deserialize)]
enum ExprF64 {
    Lit(f64),
    Add(Box<ExprF64>, Box<ExprF64>),
    Neg(Box<ExprF64>),
}

#[test]
fn expression_tree() {
    assert_eq!(
        text::<Expr>(),
        "enum{Lit:newtype(i64),Add:tuple(ref(0),ref(0)),Neg:newtype(ref(0))}"
    );
    assert_ne!(text::<ExprF64>(), text::<Expr>());
}

#[derive(Deserialize)]
struct Tree {
    children: Vec<Tree>,
    label: String,
}

#[derive(Deserialize)]
struct TreeU32 {
    children: Vec<TreeU32>,
    label: u32,
}

#[test]
fn tree() {
    assert_eq!(text::<Tree>(), "struct{children:seq(ref(1)),label:str}");
    assert_eq!(text::<TreeU32>(), "struct{children:seq(ref(1)),label:u32}");
}

#[derive(Deserialize)]
enum Json {
    Null,
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

#[test]
fn json_like() {
    assert_eq!(
        text::<Json>(),
        "enum{Null,Arr:newtype(seq(ref(1))),Obj:newtype(map(str,ref(1)))}"
    );
}

#[derive(Deserialize)]
struct A {
    b: Option<Box<B>>,
}

#[derive(Deserialize)]
struct B {
    a: Vec<A>,
    n: u8,
}

#[test]
fn mutual_recursion_through_structs() {
    assert_eq!(text::<A>(), "struct{b:option(struct{a:seq(ref(3)),n:u8})}");
    assert_eq!(text::<B>(), "struct{a:seq(struct{b:option(ref(3))}),n:u8}");
}

/// Every first variant leads back, and `K` only ends through `Y`.
#[derive(Deserialize)]
enum J {
    A(Box<K>),
    B,
}

#[derive(Deserialize)]
enum K {
    X(Box<J>),
    Y(Box<K>, u8),
    Z,
}

#[derive(Deserialize)]
struct Prog {
    first: K,
    body: Vec<J>,
    last: u16,
}

#[test]
fn mutual_recursion_through_enums() {
    let k = "enum{X:newtype(enum{A:newtype(ref(1)),B}),Y:tuple(ref(0),u8),Z}";
    assert_eq!(text::<K>(), k);
    let j = "enum{A:newtype(enum{X:newtype(ref(1)),Y:tuple(ref(0),u8),Z}),B}";
    assert_eq!(text::<J>(), j);
    assert_eq!(
        text::<Prog>(),
        format!("struct{{first:{k},body:seq({j}),last:u16}}")
    );
}

#[derive(Deserialize)]
struct Chain(Option<Box<Chain>>);

#[derive(Deserialize)]
struct Rose(u8, Vec<Rose>);

#[test]
fn recursion_through_newtypes_and_tuple_structs() {
    assert_eq!(text::<Chain>(), "newtype(option(ref(1)))");
    assert_eq!(text::<Rose>(), "tuple_struct(u8,seq(ref(1)))");
}

/// No finite value exists, but `Option<Box<Inf>>` can be `None`.
#[derive(Deserialize)]
struct Inf {
    next: Box<Inf>,
}

#[derive(Deserialize)]
struct HoldsInf {
    inf: Option<Box<Inf>>,
    after: u8,
}

/// No finite value, and a field after the recursion that can never be
/// reached.
#[derive(Deserialize)]
struct Unreachable {
    next: Box<Unreachable>,
    after: u8,
}

#[derive(Deserialize)]
enum OnlyUnreachable {
    U(Unreachable),
    Other(u8),
}

#[test]
fn uninhabited_types() {
    assert_eq!(
        text::<HoldsInf>(),
        "struct{inf:option(struct{next:ref(0)}),after:u8}"
    );
    let e = shape_of::<OnlyUnreachable>().unwrap_err();
    let expected = ShapeError::Unexplored {
        ty: std::any::type_name::<OnlyUnreachable>().to_owned(),
        at: "variant U > field after".to_owned(),
    };
    assert_eq!(e, expected);
}
