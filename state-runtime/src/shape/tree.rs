//! The merged records of a trace: positions, what was recorded at them, and
//! building the [`Shape`] from them.

use std::collections::HashSet;

use super::trace::{NodeId, ROOT, Tracer};
use super::{Prim, Shape, ShapeError, Variant, write_name};

/// What was recorded at one position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Prim(Prim),
    UnitStruct,
    Option,
    Seq,
    Map,
    Tuple(usize),
    Newtype,
    TupleStruct(usize),
    Struct(&'static [&'static str]),
    Enum(&'static [&'static str]),
    /// The variant positions below an enum.
    VUnit,
    VNewtype,
    VTuple(usize),
    VStruct(&'static [&'static str]),
    Ref(usize),
}

impl Kind {
    /// How many child positions it has.
    fn arity(self) -> usize {
        match self {
            Kind::Option | Kind::Seq | Kind::Newtype | Kind::VNewtype => 1,
            Kind::Map => 2,
            Kind::Tuple(n) | Kind::TupleStruct(n) | Kind::VTuple(n) => n,
            Kind::Struct(f) | Kind::Enum(f) | Kind::VStruct(f) => f.len(),
            Kind::Prim(_) | Kind::UnitStruct | Kind::VUnit | Kind::Ref(_) => 0,
        }
    }

    /// The path segment to its child `step`.
    pub(super) fn seg(self, step: usize) -> Option<Seg> {
        Some(match self {
            Kind::Struct(f) | Kind::VStruct(f) => Seg::Field(f[step]),
            Kind::Enum(v) => Seg::Variant(v[step]),
            Kind::Option => Seg::Some,
            Kind::Seq => Seg::Element,
            Kind::Map if step == 0 => Seg::Key,
            Kind::Map => Seg::Value,
            Kind::VNewtype => return None,
            _ => Seg::Index(step),
        })
    }
}

/// One step of a readable path.
#[derive(Clone, Copy, Debug)]
pub(super) enum Seg {
    Field(&'static str),
    Index(usize),
    Variant(&'static str),
    Some,
    Element,
    Key,
    Value,
}

pub(super) fn render(segs: &[Seg]) -> String {
    if segs.is_empty() {
        return "the root".to_owned();
    }
    let mut out = String::new();
    for (i, seg) in segs.iter().enumerate() {
        if i > 0 {
            out.push_str(" > ");
        }
        match *seg {
            Seg::Field(name) => {
                out.push_str("field ");
                write_name(&mut out, name);
            }
            Seg::Index(i) => out.push_str(&format!("field {i}")),
            Seg::Variant(name) => {
                out.push_str("variant ");
                write_name(&mut out, name);
            }
            Seg::Some => out.push_str("some"),
            Seg::Element => out.push_str("element"),
            Seg::Key => out.push_str("key"),
            Seg::Value => out.push_str("value"),
        }
    }
    out
}

impl Tracer {
    /// Merges this pass's records.
    pub(super) fn merge(&mut self) -> Result<(), ShapeError> {
        let mut records: Vec<(NodeId, Kind)> = self.pass.drain().collect();
        records.sort_by_key(|&(id, _)| id);
        for (id, kind) in records {
            match self.kinds.get(&id) {
                None => {
                    self.kinds.insert(id, kind);
                    self.progress = true;
                }
                Some(&known) if known == kind => {}
                Some(_) => {
                    return Err(ShapeError::Nondeterministic {
                        ty: self.ty.to_owned(),
                        at: self.location(id),
                    });
                }
            }
        }
        Ok(())
    }

    /// The readable path of a position.
    fn location(&self, mut id: NodeId) -> String {
        let mut segs = Vec::new();
        while id != ROOT {
            let (parent, step) = self.parents[id as usize];
            if let Some(seg) = self.kinds.get(&parent).and_then(|k| k.seg(step)) {
                segs.push(seg);
            }
            id = parent;
        }
        segs.reverse();
        render(&segs)
    }

    /// The children of `id` (recorded as `kind`), `None` where never reached.
    fn child_ids(&self, id: NodeId, kind: Kind) -> Vec<Option<NodeId>> {
        (0..kind.arity())
            .map(|step| self.children.get(&(id, step)).copied())
            .collect()
    }

    /// Whether the subtree at `id` is complete; collects the incomplete
    /// positions.
    pub(super) fn mark_incomplete(&self, id: NodeId, out: &mut HashSet<NodeId>) -> bool {
        let Some(&kind) = self.kinds.get(&id) else {
            out.insert(id);
            return false;
        };
        let mut complete = true;
        for child in self.child_ids(id, kind) {
            complete &= child.is_some_and(|c| self.mark_incomplete(c, out));
        }
        if !complete {
            out.insert(id);
        }
        complete
    }

    /// The shape at `id`, or the location of its first unreached part.
    pub(super) fn build(&self, id: NodeId) -> Result<Shape, String> {
        let kind = *self.kinds.get(&id).ok_or_else(|| self.location(id))?;
        let one = |step: usize| self.build_child(id, kind, step).map(Box::new);
        Ok(match kind {
            Kind::Prim(p) => Shape::Prim(p),
            Kind::UnitStruct => Shape::UnitStruct,
            Kind::Ref(n) => Shape::Ref(n),
            Kind::Option => Shape::Option(one(0)?),
            Kind::Seq => Shape::Seq(one(0)?),
            Kind::Newtype => Shape::Newtype(one(0)?),
            Kind::Map => Shape::Map(one(0)?, one(1)?),
            Kind::Tuple(_) => Shape::Tuple(self.build_children(id, kind)?),
            Kind::TupleStruct(_) => Shape::TupleStruct(self.build_children(id, kind)?),
            Kind::Struct(fields) => Shape::Struct(named(fields, self.build_children(id, kind)?)),
            Kind::Enum(names) => {
                let mut variants = Vec::with_capacity(names.len());
                for (v, name) in names.iter().enumerate() {
                    let child = self.child_id(id, kind, v)?;
                    variants.push(((*name).to_owned(), self.build_variant(child)?));
                }
                Shape::Enum(variants)
            }
            Kind::VUnit | Kind::VNewtype | Kind::VTuple(_) | Kind::VStruct(_) => {
                unreachable!("variant positions are only below enums")
            }
        })
    }

    /// The variant body at `id`.
    fn build_variant(&self, id: NodeId) -> Result<Variant, String> {
        let kind = *self.kinds.get(&id).ok_or_else(|| self.location(id))?;
        Ok(match kind {
            Kind::VUnit => Variant::Unit,
            Kind::VNewtype => Variant::Newtype(self.build_child(id, kind, 0)?),
            Kind::VTuple(_) => Variant::Tuple(self.build_children(id, kind)?),
            Kind::VStruct(fields) => Variant::Struct(named(fields, self.build_children(id, kind)?)),
            _ => unreachable!("only variant positions are below enums"),
        })
    }

    fn build_children(&self, id: NodeId, kind: Kind) -> Result<Vec<Shape>, String> {
        (0..kind.arity())
            .map(|step| self.build_child(id, kind, step))
            .collect()
    }

    fn build_child(&self, id: NodeId, kind: Kind, step: usize) -> Result<Shape, String> {
        self.build(self.child_id(id, kind, step)?)
    }

    /// The child position `step` of `id`, or the location where it would be.
    fn child_id(&self, id: NodeId, kind: Kind, step: usize) -> Result<NodeId, String> {
        self.children.get(&(id, step)).copied().ok_or_else(|| {
            let at = self.location(id);
            match kind.seg(step) {
                Some(seg) => render_more(at, seg),
                None => at,
            }
        })
    }
}

fn named(fields: &[&str], shapes: Vec<Shape>) -> Vec<(String, Shape)> {
    fields.iter().map(|f| (*f).to_owned()).zip(shapes).collect()
}

fn render_more(at: String, seg: Seg) -> String {
    let more = render(&[seg]);
    if at == render(&[]) {
        more
    } else {
        format!("{at} > {more}")
    }
}
