//! The fixture protocol parser on arbitrary bytes: never panics, always
//! makes progress, and every line it accepts encodes back to itself. The
//! same bytes, as a station's debug output relayed in `DEBUG` events,
//! cross the relay unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rig::protocol::{encode, parse_next, DebugBytes, Event, Line, Parsed, MAX_LINE};

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
    // Any bytes, chunked as the fixture chunks them, encode into lines that
    // fit and read back to the same bytes.
    let mut rest = data;
    let mut relayed = Vec::new();
    while !rest.is_empty() {
        let mut d = DebugBytes::new();
        let n = d.fill(rest);
        assert!(n > 0);
        rest = &rest[n..];
        let line = Line::Event {
            seq: u32::MAX,
            t_us: u64::MAX,
            event: Event::Debug { ch: u8::MAX, data: d },
        };
        let mut s = heapless::String::<MAX_LINE>::new();
        assert!(encode(&line, &mut s).is_ok(), "a DEBUG line always fits");
        match parse_next(s.as_bytes()) {
            Parsed::Line(_, Line::Event { event: Event::Debug { data, .. }, .. }) => {
                relayed.extend_from_slice(data.as_bytes());
            }
            other => panic!("{s}: {other:?}"),
        }
    }
    assert_eq!(relayed, data);
});
