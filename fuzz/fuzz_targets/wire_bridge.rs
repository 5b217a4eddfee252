//! The wire bridge (`firmware::bridge`) on arbitrary bytes: the line
//! reader splits them, both parsers read every line, nothing panics, no
//! line it returns is longer than `MAX_LINE` with its newline, and every
//! line either parser accepts encodes back to a line that reads the same.
#![no_main]

use firmware::bridge::{LineReader, PinLine, SenseLine, MAX_LINE};
use libfuzzer_sys::fuzz_target;

fn check(line: &str) {
    if let Ok(p) = PinLine::parse(line) {
        let again = p.encode();
        assert_eq!(
            PinLine::parse(&again),
            Ok(p),
            "{line:?} re-encoded as {again:?}"
        );
    }
    if let Ok(s) = SenseLine::parse(line) {
        let again = s.encode();
        assert_eq!(
            SenseLine::parse(&again),
            Ok(s),
            "{line:?} re-encoded as {again:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = LineReader::new();
    for &b in data {
        if let Some(Ok(line)) = r.push(b) {
            assert!(line.len() < MAX_LINE, "a line of {} bytes", line.len());
            assert!(!line.contains('\n'));
            check(line);
        }
    }
    // The parsers on the raw text too (lines of any length).
    if let Ok(text) = core::str::from_utf8(data) {
        check(text);
    }
});
