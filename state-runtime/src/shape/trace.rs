//! The tracer's state and its passes.
//!
//! # How a type is traced
//!
//! `T::deserialize` runs against [`De`](super::de::De), a `Deserializer`
//! that hands out sample values (`1` for integers, so `NonZero*` works,
//! `false`, `'a'`, `""`; `Some` for options, one element per sequence, one
//! entry per map, one element per field) and records, per *position* (the
//! path from the root, so nothing is looked up by name: two `Config`s from two
//! modules, or `Wrap<Vec<u32>>` beside `Wrap<Vec<u64>>`, each get their own
//! shape), what `T`'s `Deserialize` asked for there. A leaf visitor that
//! rejects its sample string or byte buffer (a UUID's wants 16 bytes) is
//! offered the next one of a short list in the next pass.
//!
//! * **Enums.** A visitor takes one variant per call, so the whole trace is
//!   re-run in passes. Each pass chooses, at every enum position, a variant
//!   not tried yet there, else one whose part of the shape is still
//!   incomplete, else one that finished before. The passes' records are
//!   merged (they differ only in the variants they reached). Tracing stops
//!   when the merged shape is complete, or when a pass learned nothing and
//!   made no new choice (then some part is [`Unexplored`]).
//! * **Recursion.** A compound position's identity is the visitor's type
//!   name (`std::any::type_name`: it names the type, generic arguments
//!   included) with the serde kind, name and field or variant list. Entering
//!   a compound whose identity is already on the stack of enclosing ones
//!   records `ref(n)` and builds the value in *sink* mode, which records
//!   nothing: options are `None`, sequences and maps empty, and an enum takes
//!   a variant known to finish in sink mode (learnt per identity, by trying
//!   variants in order over the passes). If no value can be built, a *cut*
//!   ends the pass there (a sequence or map key catches it as "no more
//!   elements"; an option remembers it and is `None` until something new is
//!   learnt), and the next pass chooses differently.
//! * **Bounds.** Nesting deeper than [`MAX_DEPTH`] is an error (never a stack
//!   overflow), so are more than [`MAX_NODES`] positions and more than
//!   [`MAX_STEPS`] calls in all.
//!
//! [`Unexplored`]: ShapeError::Unexplored

use std::any::type_name;
use std::collections::{HashMap, HashSet};

use serde::de::DeserializeOwned;

use super::de::{De, TraceError};
use super::tree::{Kind, Seg, render};
use super::{MAX_DEPTH, MAX_NODES, MAX_STEPS, Shape, ShapeError};

/// A position in the shape tree (interned path from the root).
pub(super) type NodeId = u32;

/// The root position.
pub(super) const ROOT: NodeId = 0;

/// Extra nesting allowed for sink mode below [`MAX_DEPTH`]; past it a sink
/// trace is cut.
const SINK_DEPTH: usize = 64;

/// Bound on the passes (the other bounds normally stop a trace first).
const MAX_PASSES: usize = 10_000;

/// The identity of a compound position, for recursion detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Frame {
    visitor: &'static str,
    kind: &'static str,
    name: &'static str,
    fields: &'static [&'static str],
    len: usize,
}

impl Frame {
    pub(super) fn of<V>(
        kind: &'static str,
        name: &'static str,
        fields: &'static [&'static str],
        len: usize,
    ) -> Self {
        Frame {
            visitor: type_name::<V>(),
            kind,
            name,
            fields,
            len,
        }
    }
}

/// Where a compound call records, and what it must undo.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    /// The position to trace at; `None` in sink mode (also after a `ref`).
    pub(super) node: Option<NodeId>,
    pushed: bool,
}

/// What is known of one variant at one enum position.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct VarState {
    pub(super) tried: bool,
    pub(super) terminated: bool,
    /// The knowledge version at which it was last chosen.
    pub(super) chosen_at: Option<u64>,
}

/// The state of one trace: merged records, what was learnt, and the current
/// pass.
pub(super) struct Tracer {
    pub(super) ty: &'static str,
    pub(super) parents: Vec<(NodeId, usize)>,
    pub(super) children: HashMap<(NodeId, usize), NodeId>,
    pub(super) kinds: HashMap<NodeId, Kind>,
    /// This pass's records, merged into `kinds` at its end.
    pub(super) pass: HashMap<NodeId, Kind>,
    pub(super) incomplete: HashSet<NodeId>,
    pub(super) variants: HashMap<NodeId, VarState>,
    /// Options and maps whose content was cut, with the knowledge version.
    pub(super) cut_memo: HashMap<NodeId, u64>,
    /// Per enum identity, a variant that finishes in sink mode.
    pub(super) term: HashMap<Frame, usize>,
    /// Per enum identity, variants that failed in sink mode (since the last
    /// new `term`).
    pub(super) sink_failed: HashMap<Frame, Vec<usize>>,
    /// Per leaf visitor type, which sample value it gets.
    pub(super) samples: HashMap<&'static str, usize>,
    /// Incremented after every pass that learnt something.
    pub(super) know: u64,
    pub(super) steps: usize,
    pub(super) stack: Vec<Frame>,
    pub(super) sink_stack: Vec<Frame>,
    pub(super) segs: Vec<Seg>,
    pub(super) depth: usize,
    pub(super) progress: bool,
    pub(super) fresh: bool,
    pub(super) fatal: Option<ShapeError>,
}

/// Traces `T`'s shape.
pub(super) fn trace<T: DeserializeOwned>() -> Result<Shape, ShapeError> {
    let mut t = Tracer::new(type_name::<T>());
    for _ in 0..MAX_PASSES {
        t.begin_pass();
        let result = T::deserialize(De::new(&mut t, Some(ROOT))).map(drop);
        let result = t.finish(false, result);
        if let Some(error) = t.fatal.take() {
            return Err(error);
        }
        t.merge()?;
        if let Err(TraceError::Custom { message, at }) = result {
            return Err(ShapeError::Rejected {
                ty: t.ty.to_owned(),
                at: at.unwrap_or_else(|| render(&[])),
                message,
            });
        }
        match t.build(ROOT) {
            Ok(shape) => return Ok(shape),
            Err(at) if !t.progress && !t.fresh => {
                return Err(ShapeError::Unexplored {
                    ty: t.ty.to_owned(),
                    at,
                });
            }
            Err(_) => {}
        }
    }
    let at = t.build(ROOT).err().unwrap_or_default();
    Err(ShapeError::Unexplored {
        ty: t.ty.to_owned(),
        at,
    })
}

impl Tracer {
    fn new(ty: &'static str) -> Self {
        Tracer {
            ty,
            parents: vec![(ROOT, 0)],
            children: HashMap::new(),
            kinds: HashMap::new(),
            pass: HashMap::new(),
            incomplete: HashSet::new(),
            variants: HashMap::new(),
            cut_memo: HashMap::new(),
            term: HashMap::new(),
            sink_failed: HashMap::new(),
            samples: HashMap::new(),
            know: 0,
            steps: 0,
            stack: Vec::new(),
            sink_stack: Vec::new(),
            segs: Vec::new(),
            depth: 0,
            progress: false,
            fresh: false,
            fatal: None,
        }
    }

    fn begin_pass(&mut self) {
        if self.progress {
            self.know += 1;
        }
        self.progress = false;
        self.fresh = false;
        self.pass.clear();
        self.stack.clear();
        self.sink_stack.clear();
        self.segs.clear();
        self.depth = 0;
        let mut incomplete = HashSet::new();
        self.mark_incomplete(ROOT, &mut incomplete);
        self.incomplete = incomplete;
    }

    /// The position below `parent` at `step`.
    pub(super) fn child(&mut self, parent: NodeId, step: usize) -> NodeId {
        if let Some(&id) = self.children.get(&(parent, step)) {
            return id;
        }
        let id = self.parents.len() as NodeId;
        if self.parents.len() > MAX_NODES {
            self.fail(ShapeError::TooLarge {
                ty: self.ty.to_owned(),
                what: "shape positions",
                limit: MAX_NODES,
            });
        }
        self.parents.push((parent, step));
        self.children.insert((parent, step), id);
        id
    }

    /// Records `kind` at `node` for this pass.
    pub(super) fn record(&mut self, node: NodeId, kind: Kind) {
        self.pass.insert(node, kind);
    }

    /// Stores a fatal error (the first one wins) and returns its marker.
    pub(super) fn fail(&mut self, error: ShapeError) -> TraceError {
        self.fatal.get_or_insert(error);
        TraceError::Fatal
    }

    /// The readable path of the current call.
    pub(super) fn at(&self) -> String {
        render(&self.segs)
    }

    pub(super) fn not_traceable(&mut self, method: &'static str) -> TraceError {
        let error = ShapeError::NotTraceable {
            ty: self.ty.to_owned(),
            at: self.at(),
            method,
        };
        self.fail(error)
    }

    /// Counts one call; errors once any bound was passed.
    pub(super) fn step(&mut self) -> Result<(), TraceError> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            let error = ShapeError::TooLarge {
                ty: self.ty.to_owned(),
                what: "Deserializer calls",
                limit: MAX_STEPS,
            };
            return Err(self.fail(error));
        }
        match self.fatal {
            Some(_) => Err(TraceError::Fatal),
            None => Ok(()),
        }
    }

    /// Starts a compound call at `node` (`None`: sink mode): records `kind`,
    /// or `ref(n)` (and continues in sink mode) if `frame` encloses it.
    pub(super) fn enter(
        &mut self,
        node: Option<NodeId>,
        frame: Frame,
        kind: Kind,
    ) -> Result<Entry, TraceError> {
        self.step()?;
        match node {
            Some(_) if self.depth >= MAX_DEPTH => {
                let error = ShapeError::TooDeep {
                    ty: self.ty.to_owned(),
                    at: self.at(),
                    limit: MAX_DEPTH,
                };
                return Err(self.fail(error));
            }
            None if self.depth >= MAX_DEPTH + SINK_DEPTH => {
                return Err(TraceError::Cut { blamed: false });
            }
            _ => {}
        }
        self.depth += 1;
        let Some(node) = node else {
            return Ok(Entry {
                node: None,
                pushed: false,
            });
        };
        if let Some(n) = self.stack.iter().rev().position(|f| *f == frame) {
            self.record(node, Kind::Ref(n));
            return Ok(Entry {
                node: None,
                pushed: false,
            });
        }
        self.record(node, kind);
        self.stack.push(frame);
        Ok(Entry {
            node: Some(node),
            pushed: true,
        })
    }

    /// Ends a compound call.
    pub(super) fn exit(&mut self, entry: Entry) {
        self.depth -= 1;
        if entry.pushed {
            self.stack.pop();
        }
    }

    /// Places a serde error: in sink mode it only means no value could be
    /// built (a cut); otherwise it gets the current path.
    pub(super) fn finish<T>(
        &mut self,
        sink: bool,
        result: Result<T, TraceError>,
    ) -> Result<T, TraceError> {
        match result {
            Err(TraceError::Custom { .. }) if sink => Err(TraceError::Cut { blamed: false }),
            Err(TraceError::Custom { message, at: None }) => Err(TraceError::Custom {
                message,
                at: Some(self.at()),
            }),
            result => result,
        }
    }

    /// Whether the option or map at `node` was cut with nothing learnt since.
    pub(super) fn is_cut(&self, node: NodeId) -> bool {
        self.cut_memo.get(&node) == Some(&self.know)
    }

    /// Remembers that the content of the option or map at `node` was cut:
    /// until something new is learnt, it is empty (a new choice, not
    /// progress).
    pub(super) fn memo_cut(&mut self, node: NodeId) {
        if self.cut_memo.insert(node, self.know) != Some(self.know) {
            self.fresh = true;
        }
    }

    /// The index of the sample value for the leaf visitor `V`.
    pub(super) fn sample<V>(&self) -> usize {
        self.samples.get(type_name::<V>()).copied().unwrap_or(0)
    }

    /// After a leaf visitor `V` got sample `index` of `count`: if it rejected
    /// it and there is another, the next pass offers that one.
    pub(super) fn resample<V, T>(
        &mut self,
        index: usize,
        count: usize,
        result: Result<T, TraceError>,
    ) -> Result<T, TraceError> {
        match result {
            Err(TraceError::Custom { .. }) if index + 1 < count => {
                self.samples.insert(type_name::<V>(), index + 1);
                self.progress = true;
                Err(TraceError::Retry)
            }
            result => result,
        }
    }

    /// The variant to trace at the enum position `node` of `count` variants
    /// (`None`: the enum has none): one not tried yet, else one whose part is
    /// incomplete and that was not chosen since the last pass that learnt
    /// something, else one that finished before.
    pub(super) fn choose(&mut self, node: NodeId, count: usize) -> Option<usize> {
        let ids: Vec<NodeId> = (0..count).map(|v| self.child(node, v)).collect();
        let states: Vec<VarState> = ids
            .iter()
            .map(|id| self.variants.get(id).copied().unwrap_or_default())
            .collect();
        let untried = states.iter().position(|s| !s.tried);
        let incomplete = || {
            (0..count).find(|&v| {
                states[v].chosen_at != Some(self.know)
                    && (self.incomplete.contains(&ids[v]) || !self.kinds.contains_key(&ids[v]))
            })
        };
        let picked = untried.or_else(incomplete);
        self.fresh |= picked.is_some();
        let v = picked
            .or_else(|| states.iter().position(|s| s.terminated))
            .or(
                // Nothing finished yet: the first, again.
                (count > 0).then_some(0),
            )?;
        let know = self.know;
        let state = self.variants.entry(ids[v]).or_default();
        if !state.tried {
            state.tried = true;
            self.progress = true;
        }
        state.chosen_at = Some(know);
        Some(v)
    }

    /// After the variant `v` at `node` was traced.
    pub(super) fn variant_done<T>(
        &mut self,
        node: NodeId,
        v: usize,
        result: &Result<T, TraceError>,
    ) {
        if result.is_ok() {
            let id = self.child(node, v);
            let s = self.variants.entry(id).or_default();
            if !s.terminated {
                s.terminated = true;
                self.progress = true;
            }
        }
    }

    /// The variant to build in sink mode for the enum `frame` of `count`
    /// variants, and whether it is a trial (not yet known to finish).
    pub(super) fn sink_choice(
        &mut self,
        frame: Frame,
        count: usize,
    ) -> Result<(usize, bool), TraceError> {
        if let Some(&v) = self.term.get(&frame) {
            return Ok((v, false));
        }
        if self.sink_stack.contains(&frame) {
            return Err(TraceError::Cut { blamed: false });
        }
        let failed = self.sink_failed.get(&frame);
        (0..count)
            .find(|v| failed.is_none_or(|f| !f.contains(v)))
            .map(|v| (v, true))
            .ok_or(TraceError::Cut { blamed: false })
    }

    /// After a sink-mode trial of variant `v` of `frame`: learns that it
    /// finishes, or (if this is the innermost trial that failed) that it
    /// does not.
    pub(super) fn sink_done<T>(
        &mut self,
        frame: Frame,
        v: usize,
        trial: bool,
        result: Result<T, TraceError>,
    ) -> Result<T, TraceError> {
        let result = self.finish(true, result);
        if !trial {
            return result;
        }
        match result {
            Ok(value) => {
                self.term.insert(frame, v);
                // Failures may have come from not knowing this yet.
                self.sink_failed.clear();
                self.progress = true;
                Ok(value)
            }
            Err(TraceError::Cut { blamed: false }) => {
                self.sink_failed.entry(frame).or_default().push(v);
                self.progress = true;
                Err(TraceError::Cut { blamed: true })
            }
            Err(error) => Err(error),
        }
    }
}
