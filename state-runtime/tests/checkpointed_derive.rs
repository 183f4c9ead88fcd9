//! The derive's container options and generics.

use std::collections::{BTreeSet, VecDeque};

/// The runtime re-exported under another name.
mod runtime {
    pub use state_runtime as rt;
}

use runtime::rt::StateMode;
use runtime::rt::checkpoint::{Checkpoint, Checkpointed, Restore, RestoreContext};

#[derive(runtime::rt::checkpoint::Checkpointed)]
#[checkpointed(crate = crate::runtime::rt, on_restore = "seen")]
struct Renamed<T: Clone, C> {
    #[state(union, name = "items")]
    r#type: VecDeque<T>,
    #[state(broadcast)]
    config: Option<T>,
    #[state(skip)]
    not_state: C,
    #[state(skip)]
    restores: u32,
}

impl<T: Clone, C> Renamed<T, C> {
    fn seen(&mut self, ctx: &RestoreContext) {
        assert_eq!(ctx.old_parallelism, 2);
        self.restores += 1;
    }
}

/// `C` is not serde, and needs no bound because it is only in a skip field.
struct NotSerde;

#[test]
fn crate_path_raw_identifiers_and_generics() {
    let d = Renamed::<String, NotSerde>::state_descriptors();
    let d: Vec<_> = d.iter().map(|d| (d.name, d.mode, d.item_type)).collect();
    assert_eq!(
        d,
        [
            ("items", StateMode::Union, std::any::type_name::<String>()),
            (
                "config",
                StateMode::Broadcast,
                std::any::type_name::<Option<String>>()
            ),
        ]
    );

    let make = |items: &[&str], config: Option<&str>| Renamed {
        r#type: items.iter().map(|s| s.to_string()).collect(),
        config: config.map(str::to_string),
        not_state: NotSerde,
        restores: 0,
    };
    let cp = Checkpoint::from_subtasks(vec![
        make(&["a"], Some("x")).snapshot().unwrap(),
        make(&["b", "c"], Some("x")).snapshot().unwrap(),
    ])
    .unwrap();
    let mut op = make(&[], None);
    cp.restore_into(&mut op, 2, 3).unwrap();
    assert_eq!(op.r#type, ["a", "b", "c"]);
    assert_eq!(op.config.as_deref(), Some("x"));
    assert_eq!(op.restores, 1);
    assert!(matches!(op.not_state, NotSerde));
}

/// An empty operator and sets.
#[derive(Checkpointed, Default)]
struct Empty {}

#[derive(Checkpointed, Default)]
struct Sets {
    #[state(split)]
    ordered: BTreeSet<i32>,
    #[state(union)]
    r#match: Vec<u8>,
}

#[test]
fn empty_operator_and_sets() {
    assert!(Empty::state_descriptors().is_empty());
    let names: Vec<_> = Sets::state_descriptors().iter().map(|d| d.name).collect();
    assert_eq!(names, ["ordered", "match"]);
    let cp = Checkpoint::from_subtasks(vec![Empty {}.snapshot().unwrap(); 3]).unwrap();
    let report = cp.restore_into(&mut Empty {}, 0, 2).unwrap();
    assert_eq!((report.items_restored, report.bytes_read), (0, 0));

    let a = Sets {
        ordered: [5, 1, 3].into(),
        r#match: vec![],
    };
    let b = Sets {
        ordered: [-2].into(),
        r#match: vec![],
    };
    let cp = Checkpoint::from_subtasks(vec![a.snapshot().unwrap(), b.snapshot().unwrap()]).unwrap();
    let mut parts = Vec::new();
    for j in 0..3 {
        let mut s = Sets::default();
        cp.restore_into(&mut s, j, 3).unwrap();
        parts.push(s.ordered.into_iter().collect::<Vec<_>>());
    }
    // Origin order: [1, 3, 5] from subtask 0, then [-2].
    assert_eq!(parts, [vec![1, 3], vec![5], vec![-2]]);
}
