//! Provisioning: what the harness gives a station before a run. Today: its
//! site plan (commissioning), authenticated with the bench commissioning
//! key. Flashing and power control belong here too (issue on the real-bench
//! path).
//!
//! The message format is `firmware::commission`'s (one definition); this
//! module only picks the key and builds each station's message from the
//! scenario.

use firmware::commission::{self, Commission, DEFAULT_BENCH_KEY};
use firmware::sharing::frame::Key;

use crate::scenario::Scenario;

/// The environment variable that sets the bench commissioning key: 64 hex
/// digits, the same key the station images were built with.
pub const KEY_ENV: &str = "SHAREBENCH_COMMISSION_KEY";

/// The bench commissioning key: `SHAREBENCH_COMMISSION_KEY`, or the default
/// key of the virtual bench and the QEMU images.
pub fn bench_key() -> Result<Key, String> {
    match std::env::var(KEY_ENV) {
        Err(_) => Ok(DEFAULT_BENCH_KEY),
        Ok(hex) => parse_key(&hex).ok_or_else(|| {
            format!(
                "{KEY_ENV} must be 64 hex digits (a 32-byte key), got {} characters",
                hex.len()
            )
        }),
    }
}

fn parse_key(hex: &str) -> Option<Key> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(k)
}

/// Station `i`'s commissioning message: its id and the scenario's site plan.
#[must_use]
pub fn commission_text(sc: &Scenario, i: usize, key: &Key) -> String {
    let c = Commission {
        id: sc.stations[i].id,
        group: sc.group_config(),
    };
    let mut text = String::new();
    commission::encode(&c, key, |l| text.push_str(l));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_64_hex_digits() {
        assert_eq!(parse_key(&"ab".repeat(32)), Some([0xAB; 32]));
        assert_eq!(parse_key("abc"), None);
        assert_eq!(parse_key(&"zz".repeat(32)), None);
        assert_eq!(parse_key(&"é".repeat(32)), None);
    }
}
