//! The scenario loader (`harness::scenario::Scenario::parse`) on arbitrary
//! text: never panics, and every error names a place inside the text (a
//! line and column of it, or none at all) and says what is wrong.
#![no_main]

use std::path::Path;

use harness::scenario::Scenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Scenario::parse(Path::new("fuzz.toml"), text) {
        assert!(!e.message.trim().is_empty(), "an error without a message");
        let lines = text.split('\n').count();
        assert!(
            e.line <= lines,
            "error at line {} of a {lines}-line text: {e}",
            e.line
        );
        if e.line > 0 {
            let line = text.split('\n').nth(e.line - 1).unwrap_or_default();
            // Columns count bytes from 1; one past the end is the end of the line.
            assert!(
                e.column >= 1 && e.column <= line.len() + 1,
                "error at column {} of a {}-byte line: {e}",
                e.column,
                line.len()
            );
        }
    }
});
