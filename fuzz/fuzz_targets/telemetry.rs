//! The telemetry parser (`firmware::telemetry::parse_line`) on arbitrary
//! text: never panics, and every line it reads encodes back to a line that
//! reads as the same value.
#![no_main]

use firmware::telemetry::parse_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.split_inclusive('\n') {
        let Ok(t) = parse_line(line) else {
            continue;
        };
        let again = t.encode();
        assert!(
            again.ends_with('\n'),
            "encoded without its newline: {again:?}"
        );
        assert_eq!(
            parse_line(&again),
            Ok(t),
            "{line:?} re-encoded as {again:?}"
        );
        // A line that is not telemetry is never read as telemetry.
        assert!(line.starts_with("T "));
    }
    // The whole buffer as one line (newlines inside it included).
    if let Ok(t) = parse_line(&text) {
        assert_eq!(parse_line(&t.encode()), Ok(t));
    }
});
