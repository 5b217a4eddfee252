//! The fixture protocol parser on arbitrary bytes: never panics, always
//! makes progress, and every line it accepts encodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rig::protocol::{encode, parse_next, Parsed, MAX_LINE};

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        match parse_next(&data[at..]) {
            Parsed::Incomplete => break,
            Parsed::Line(n, line) => {
                assert!(n > 0);
                at += n;
                let mut s = heapless::String::<MAX_LINE>::new();
                if encode(&line, &mut s).is_ok() {
                    assert_eq!(parse_next(s.as_bytes()), Parsed::Line(s.len(), line));
                }
            }
            Parsed::Garbled(n, _) => {
                assert!(n > 0);
                at += n;
            }
        }
    }
});
