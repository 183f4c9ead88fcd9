//! `#[derive(Keyed)]` on the shapes it supports, and its use with keyed state.
#![allow(dead_code)] // some event fields exist only to show that they are not the key

use state_runtime::prelude::*;

#[derive(Keyed)]
struct Purchase {
    #[key]
    customer: u64,
    cents: i64,
}

#[derive(Keyed)]
struct Tuple(i64, #[key] String);

#[derive(Keyed)]
struct Click {
    #[key]
    site: String,
    page: u32,
    #[key]
    region: u16,
}

#[derive(StableHash, Clone, PartialEq, Eq, Debug)]
struct Customer {
    region: u16,
    id: u64,
}

#[derive(Keyed)]
enum Event {
    Buy {
        cents: i64,
        #[key]
        customer: Customer,
    },
    Refund(i64, #[key] Customer),
    Tagged {
        #[key]
        customer: Customer,
    },
}

#[derive(Keyed)]
struct Generic<'a, T: Clone> {
    #[key]
    key: T,
    #[allow(dead_code)]
    label: &'a str,
}

#[derive(Keyed)]
struct Borrowing<'a> {
    #[key]
    name: &'a str,
}

mod renamed {
    pub use state_runtime as rt;
}

#[derive(Keyed)]
#[keyed(crate = renamed::rt)]
struct ViaPath {
    #[key]
    id: i32,
}

fn key_of<E: Keyed>(e: &E) -> E::Key {
    e.owned_key()
}

#[test]
fn single_field_keys_are_borrowed_not_cloned() {
    let p = Purchase {
        customer: 7,
        cents: 1,
    };
    let k: &u64 = p.key();
    assert!(std::ptr::eq(k, &p.customer), "a reference into the event");
    let t = Tuple(1, "x".to_string());
    assert!(std::ptr::eq(t.key(), &t.1));
    assert_eq!(key_of(&t), "x");
    assert_eq!(*ViaPath { id: -3 }.key(), -3);
    let b = Borrowing { name: "n" };
    assert_eq!(*b.key(), "n");
}

#[test]
fn several_fields_make_a_tuple_in_field_order() {
    let c = Click {
        site: "shop".into(),
        page: 3,
        region: 9,
    };
    let (site, region) = c.key();
    assert!(std::ptr::eq(site, &c.site) && std::ptr::eq(region, &c.region));
    assert_eq!(key_of(&c), ("shop".to_string(), 9u16));
    assert_eq!(c.page, 3);
}

#[test]
fn enums_and_generics() {
    let cust = Customer { region: 1, id: 2 };
    for e in [
        Event::Buy {
            cents: 5,
            customer: cust.clone(),
        },
        Event::Refund(-5, cust.clone()),
        Event::Tagged {
            customer: cust.clone(),
        },
    ] {
        assert_eq!(e.key(), &cust);
    }
    let g = Generic {
        key: 5u8,
        label: "l",
    };
    assert_eq!(*g.key(), 5);
}

#[test]
fn events_drive_keyed_state_by_their_borrowed_key() {
    let a = KeyGroupAssigner::native(MaxParallelism::new(128).unwrap());
    let all = a.max_parallelism().all_key_groups();
    let mut sums = KeyedValue::<u64, i64>::new(a, all).unwrap();
    let mut by_click = KeyedList::<(String, u16), u32>::new(a, all).unwrap();
    let mut by_customer = KeyedMap::<Customer, String, u32>::new(a, all).unwrap();
    for i in 0..10 {
        let p = Purchase {
            customer: i % 3,
            cents: 10,
        };
        sums.update(p.key(), || 0, |s| *s += p.cents).unwrap();
        let c = Click {
            site: "s".into(),
            page: i as u32,
            region: 1,
        };
        by_click.push(c.key(), c.page).unwrap();
        let e = Event::Refund(
            1,
            Customer {
                region: 0,
                id: i % 2,
            },
        );
        by_customer
            .update(e.key(), "refunds".to_string(), || 0, |n| *n += 1)
            .unwrap();
    }
    assert_eq!(sums.get(0).unwrap(), Some(&40));
    assert_eq!(
        by_click.get(("s".to_string(), 1)).unwrap().unwrap().len(),
        10
    );
    assert_eq!(
        by_customer
            .get(&Customer { region: 0, id: 1 }, "refunds")
            .unwrap(),
        Some(&5)
    );
    // Flink mode: the key type check happens once, at construction.
    let f = KeyGroupAssigner::flink(MaxParallelism::new(128).unwrap());
    let mut flink_sums = KeyedValue::<i32, i64>::new(f, all).unwrap();
    let v = ViaPath { id: 42 };
    flink_sums.insert(v.key(), 1).unwrap();
    assert_eq!(
        flink_sums.key_group_of(v.key()).unwrap(),
        state_runtime::flink::assign_to_key_group(&42i32, 128).unwrap()
    );
}
