//! The commissioning receiver (`firmware::commission`), two ways.
//!
//! Input starting with a printable byte: raw debug-channel bytes; the
//! receiver never panics, and anything it accepts validates and names its
//! own station. Starting with a control byte (below 0x20): the rest makes a
//! site plan, which is encoded with the bench key and
//! fed whole (accepted exactly when the plan is valid for its station, and
//! then equal to it), then again with one byte flipped: a mutated message
//! the receiver accepts must equal the original (the CRC and MAC guard it).
#![no_main]

#[path = "common/plan.rs"]
mod plan;

use firmware::commission::{encode, Commission, Receiver, DEFAULT_BENCH_KEY};
use firmware::station::point_config;
use firmware::telemetry::Refusal;
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

type Rx = Receiver<8, 4>;
type Plan = Commission<8, 4>;

/// Check what a receiver accepted.
fn accepted_is_sound(c: &Plan) {
    assert!(
        c.group.validate().is_ok(),
        "accepted an invalid plan: {c:?}"
    );
    assert!(
        c.group.index_of(c.id).is_some(),
        "accepted a plan without its id"
    );
    assert!(point_config(&c.group, c.id).is_ok());
}

/// Every outcome of feeding `bytes` to a fresh receiver.
fn feed(bytes: &[u8]) -> Vec<Result<Plan, Refusal>> {
    let mut rx = Rx::new(DEFAULT_BENCH_KEY);
    let out: Vec<_> = bytes.iter().filter_map(|&b| rx.handle_byte(b)).collect();
    for c in out.iter().flatten() {
        accepted_is_sound(c);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode >= 0x20 {
        feed(data);
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(id) = u.arbitrary::<u8>() else {
        return;
    };
    let Ok(group) = plan::plan::<8, 4>(&mut u, &[]) else {
        return;
    };
    let c = Plan { id, group };
    let mut msg = Vec::new();
    encode(&c, &DEFAULT_BENCH_KEY, |line| {
        msg.extend_from_slice(line.as_bytes())
    });

    let valid = c.group.validate().is_ok()
        && c.group.index_of(id).is_some()
        && point_config(&c.group, id).is_ok();
    match feed(&msg).as_slice() {
        [Ok(got)] => {
            assert!(valid);
            assert_eq!(got, &c, "the receiver changed the plan");
        }
        [Err(r)] => assert!(!valid, "a valid plan was refused: {r:?} {c:?}"),
        other => panic!("one message, {} outcomes: {other:?}", other.len()),
    }

    // One byte flipped.
    let (Ok(at), Ok(x)) = (u.choose_index(msg.len()), u.int_in_range(1..=255u8)) else {
        return;
    };
    let mut bad = msg.clone();
    bad[at] ^= x;
    for got in feed(&bad).iter().flatten() {
        assert_eq!(got, &c, "a mutated message was accepted as another plan");
    }
});
