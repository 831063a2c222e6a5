//! Random operation sequences against `std::collections::HashMap` as the model.

mod common;

use std::collections::HashMap;

use common::{map, new_map};
use proptest::prelude::*;
use shared_map_engine::{Error, MapKind, OwnedValue, Ttl, Value};

#[derive(Clone, Debug)]
enum Op {
    Get(Vec<u8>),
    Put(Vec<u8>, OwnedValue),
    PutIfAbsent(Vec<u8>, OwnedValue),
    Replace(Vec<u8>, OwnedValue),
    Remove(Vec<u8>),
    Add(Vec<u8>, i64, i64),
    Clear,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // A small key space so that operations collide often.
    prop_oneof![
        (0u8..24).prop_map(|k| vec![k]),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

fn value() -> impl Strategy<Value = OwnedValue> {
    prop_oneof![
        any::<i32>().prop_map(OwnedValue::Int),
        prop_oneof![any::<i64>(), -3i64..3, Just(i64::MAX), Just(i64::MIN)].prop_map(OwnedValue::Long),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(OwnedValue::Str),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => key().prop_map(Op::Get),
        4 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (key(), value()).prop_map(|(k, v)| Op::PutIfAbsent(k, v)),
        1 => (key(), value()).prop_map(|(k, v)| Op::Replace(k, v)),
        2 => key().prop_map(Op::Remove),
        4 => (key(), prop_oneof![-2i64..3, any::<i64>()], prop_oneof![Just(0i64), any::<i64>()])
            .prop_map(|(k, d, i)| Op::Add(k, d, i)),
        1 => Just(Op::Clear),
    ]
}

fn model_add(model: &mut HashMap<Vec<u8>, OwnedValue>, k: &[u8], d: i64, init: i64) -> Result<i64, Error> {
    match model.get(k) {
        None => {
            let v = init.checked_add(d).ok_or(Error::Overflow)?;
            model.insert(k.to_vec(), OwnedValue::Long(v));
            Ok(v)
        }
        Some(OwnedValue::Long(v)) => {
            let v = v.checked_add(d).ok_or(Error::Overflow)?;
            model.insert(k.to_vec(), OwnedValue::Long(v));
            Ok(v)
        }
        Some(OwnedValue::Int(v)) => {
            let v = (*v as i64)
                .checked_add(d)
                .and_then(|v| i32::try_from(v).ok())
                .ok_or(Error::Overflow)?;
            model.insert(k.to_vec(), OwnedValue::Int(v));
            Ok(v as i64)
        }
        Some(OwnedValue::Str(_)) => Err(Error::TypeConflict),
    }
}

fn run(kind: MapKind, ops: Vec<Op>) {
    let mut heap = new_map(kind, 4 << 20, 4096, 0, false);
    let mut m = map(&mut heap);
    let mut model: HashMap<Vec<u8>, OwnedValue> = HashMap::new();
    for op in ops {
        match op {
            Op::Get(k) => assert_eq!(m.get(&k, 0).map(|v| v.to_owned()), model.get(&k).cloned()),
            Op::Put(k, v) => {
                assert_eq!(m.put(&k, v.as_value(), Ttl::Default, 0), Ok(model.insert(k, v)));
            }
            Op::PutIfAbsent(k, v) => {
                let expect = if model.contains_key(&k) {
                    Err(Error::Exists)
                } else {
                    Ok(())
                };
                assert_eq!(m.put_if_absent(&k, v.as_value(), Ttl::Default, 0), expect);
                model.entry(k).or_insert(v);
            }
            Op::Replace(k, v) => {
                let expect = match model.get_mut(&k) {
                    Some(slot) => Ok(std::mem::replace(slot, v.clone())),
                    None => Err(Error::NotFound),
                };
                assert_eq!(m.replace(&k, v.as_value(), Ttl::Default, 0), expect);
            }
            Op::Remove(k) => assert_eq!(m.remove(&k, 0), model.remove(&k)),
            Op::Add(k, d, i) => assert_eq!(m.add(&k, d, i, Ttl::Default, 0), model_add(&mut model, &k, d, i)),
            Op::Clear => {
                m.clear();
                model.clear();
            }
        }
        assert_eq!(m.len(), model.len() as u64);
    }
    let mut listed = HashMap::new();
    m.for_each(b"", 0, |k, v, _| {
        listed.insert(k.to_vec(), v.to_owned());
        true
    });
    assert_eq!(listed, model);
    let _ = Value::Int(0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn tinymap_behaves_like_a_hashmap(ops in proptest::collection::vec(op(), 1..300)) {
        run(MapKind::Tiny, ops);
    }

    #[test]
    fn hashmap_behaves_like_a_hashmap(ops in proptest::collection::vec(op(), 1..300)) {
        run(MapKind::Hash, ops);
    }
}
