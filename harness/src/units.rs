//! Quantities as scenario files write them: `"48A"`, `"12.5 A"`, `"60kWh"`,
//! `"90s"`, `"5min"`. Durations are parsed by `humantime`; currents and
//! energies here. Each parser says what it expected, and a value too large
//! for its unit is refused with the accepted range, never wrapped.

use std::time::Duration;

/// The most energy a car's battery may hold, watt-hours (1 MWh).
pub const MAX_WH: u32 = 1_000_000;

/// A current in deciamps from `"48A"`, `"12.5A"` or `"0.5 A"`, at most
/// `max_da`.
pub fn deciamps_upto(s: &str, max_da: u32) -> Result<u32, String> {
    let t = s.trim();
    let num = t
        .strip_suffix('A')
        .ok_or_else(|| format!("expected a current such as \"16A\" or \"12.5A\", found \"{s}\""))?
        .trim();
    match tenths(num) {
        Some(Ok(da)) if da <= u64::from(max_da) => Ok(da as u32),
        Some(_) => Err(format!(
            "expected a current from 0A to {}, found \"{s}\"",
            amps_text(i64::from(max_da))
        )),
        None => Err(format!(
            "expected a current with at most one decimal such as \"12.5A\", found \"{s}\""
        )),
    }
}

/// A current in deciamps from `"48A"`, `"12.5A"` or `"0.5 A"`.
pub fn deciamps(s: &str) -> Result<u32, String> {
    deciamps_upto(s, u32::MAX)
}

/// A signed current in deciamps (generation is negative), from `-max_da`
/// to `max_da`.
pub fn signed_deciamps_within(s: &str, max_da: u32) -> Result<i32, String> {
    let max_da = max_da.min(i32::MAX as u32);
    let t = s.trim();
    let (sign, rest) = match t.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, t),
    };
    let da = deciamps_upto(rest, max_da).map_err(|e| {
        if e.starts_with("expected a current from") {
            format!(
                "expected a current from -{m} to {m}, found \"{s}\"",
                m = amps_text(i64::from(max_da))
            )
        } else {
            e
        }
    })?;
    // In range: at most i32::MAX.
    Ok(sign * da as i32)
}

/// A signed current in deciamps (generation is negative).
pub fn signed_deciamps(s: &str) -> Result<i32, String> {
    signed_deciamps_within(s, i32::MAX as u32)
}

/// Energy in watt-hours from `"60kWh"` or `"800Wh"`, at most [`MAX_WH`].
pub fn watt_hours(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let wh = if let Some(k) = t.strip_suffix("kWh") {
        match tenths(k.trim()) {
            Some(Ok(v)) => v.checked_mul(100),
            Some(Err(TooLarge)) => None,
            None => {
                return Err(format!(
                    "expected an energy such as \"60kWh\", found \"{s}\""
                ))
            }
        }
    } else if let Some(w) = t.strip_suffix("Wh") {
        let w = w.trim();
        if w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "expected an energy such as \"800Wh\", found \"{s}\""
            ));
        }
        w.parse::<u64>().ok()
    } else {
        return Err(format!(
            "expected an energy such as \"60kWh\" or \"800Wh\", found \"{s}\""
        ));
    };
    wh.and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v <= MAX_WH)
        .ok_or_else(|| format!("expected an energy from 0Wh to 1000kWh, found \"{s}\""))
}

/// A duration from `"90s"`, `"5min"`, `"1h 30min"`, `"110ms"`.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("expected a duration such as \"90s\" or \"5min\", found \"{s}\" ({e})")
    })
}

/// Microseconds of a duration string (refused, not wrapped, beyond `u64`).
pub fn micros(s: &str) -> Result<u64, String> {
    let d = duration(s)?;
    u64::try_from(d.as_micros())
        .map_err(|_| format!("expected a duration that fits 2^64 microseconds, found \"{s}\""))
}

/// A number too large for 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TooLarge;

/// Tenths from `"12"` or `"12.5"`: `None` if it is not such a number,
/// `Some(Err(TooLarge))` if it is one beyond 64 bits.
fn tenths(num: &str) -> Option<Result<u64, TooLarge>> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, "0"),
    };
    if int.is_empty()
        || frac.len() != 1
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut v: u64 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        match v
            .checked_mul(10)
            .and_then(|x| x.checked_add(u64::from(b - b'0')))
        {
            Some(x) => v = x,
            None => return Some(Err(TooLarge)),
        }
    }
    Some(Ok(v))
}

/// Deciamps as a scenario file writes them: `"16A"`, `"6553.5A"`.
#[must_use]
pub fn amps_text(da: i64) -> String {
    if da % 10 == 0 {
        format!("{}A", da / 10)
    } else {
        format!("{}A", amps(da))
    }
}

/// Deciamps as `"16.0"`.
#[must_use]
pub fn amps(da: i64) -> String {
    let sign = if da < 0 { "-" } else { "" };
    format!("{sign}{}.{}", da.abs() / 10, da.abs() % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currents_energies_durations() {
        assert_eq!(deciamps("48A"), Ok(480));
        assert_eq!(deciamps("12.5 A"), Ok(125));
        assert!(deciamps("12.55A").is_err());
        assert!(deciamps("12").unwrap_err().contains("expected a current"));
        assert_eq!(signed_deciamps("-6A"), Ok(-60));
        assert_eq!(watt_hours("60kWh"), Ok(60_000));
        assert_eq!(watt_hours("1.5kWh"), Ok(1_500));
        assert_eq!(watt_hours("800Wh"), Ok(800));
        assert_eq!(micros("90s"), Ok(90_000_000));
        assert_eq!(micros("5min"), Ok(300_000_000));
        assert_eq!(micros("110ms"), Ok(110_000));
        assert!(micros("soon").unwrap_err().contains("expected a duration"));
        assert_eq!(amps(160), "16.0");
        assert_eq!(amps(-5), "-0.5");
        assert_eq!(amps_text(65_535), "6553.5A");
        assert_eq!(amps_text(100_000), "10000A");
    }

    #[test]
    fn values_beyond_their_unit_are_refused_with_the_range() {
        // Once "too large" read as "at most one decimal".
        let e = deciamps("4294967295A").unwrap_err();
        assert!(
            e.starts_with("expected a current from 0A to 429496729.5A"),
            "{e}"
        );
        let e = deciamps("99999999999999999999999A").unwrap_err();
        assert!(e.starts_with("expected a current from 0A to"), "{e}");
        assert_eq!(deciamps_upto("6553.5A", 65_535), Ok(65_535));
        let e = deciamps_upto("6553.6A", 65_535).unwrap_err();
        assert!(
            e.starts_with("expected a current from 0A to 6553.5A"),
            "{e}"
        );
        // Once wrapped to a negative load.
        let e = signed_deciamps("300000000A").unwrap_err();
        assert!(
            e.starts_with("expected a current from -214748364.7A to 214748364.7A"),
            "{e}"
        );
        assert_eq!(signed_deciamps_within("-10000A", 100_000), Ok(-100_000));
        assert!(signed_deciamps_within("-10000.1A", 100_000).is_err());
        // Once an arithmetic overflow.
        let e = watt_hours("4294967kWh").unwrap_err();
        assert!(
            e.starts_with("expected an energy from 0Wh to 1000kWh"),
            "{e}"
        );
        assert_eq!(watt_hours("1000kWh"), Ok(1_000_000));
        // Once truncated to 64 bits.
        let e = micros("100000000000000s").unwrap_err();
        assert!(e.contains("fits 2^64 microseconds"), "{e}");
    }
}
