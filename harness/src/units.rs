//! Quantities as scenario files write them: `"48A"`, `"12.5 A"`, `"60kWh"`,
//! `"90s"`, `"5min"`. Durations are parsed by `humantime`; currents and
//! energies here. Each parser says what it expected.

use std::time::Duration;

/// A current in deciamps from `"48A"`, `"12.5A"` or `"0.5 A"`.
pub fn deciamps(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let num = t
        .strip_suffix('A')
        .ok_or_else(|| format!("expected a current such as \"16A\" or \"12.5A\", found \"{s}\""))?
        .trim();
    tenths(num).ok_or_else(|| {
        format!("expected a current with at most one decimal such as \"12.5A\", found \"{s}\"")
    })
}

/// A signed current in deciamps (generation is negative).
pub fn signed_deciamps(s: &str) -> Result<i32, String> {
    let t = s.trim();
    match t.strip_prefix('-') {
        Some(rest) => deciamps(rest).map(|v| -(v as i32)),
        None => deciamps(t).map(|v| v as i32),
    }
}

/// Energy in watt-hours from `"60kWh"` or `"800Wh"`.
pub fn watt_hours(s: &str) -> Result<u32, String> {
    let t = s.trim();
    if let Some(k) = t.strip_suffix("kWh") {
        return tenths(k.trim())
            .map(|v| v * 100)
            .ok_or_else(|| format!("expected an energy such as \"60kWh\", found \"{s}\""));
    }
    if let Some(w) = t.strip_suffix("Wh") {
        return w
            .trim()
            .parse()
            .map_err(|_| format!("expected an energy such as \"800Wh\", found \"{s}\""));
    }
    Err(format!(
        "expected an energy such as \"60kWh\" or \"800Wh\", found \"{s}\""
    ))
}

/// A duration from `"90s"`, `"5min"`, `"1h 30min"`, `"110ms"`.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("expected a duration such as \"90s\" or \"5min\", found \"{s}\" ({e})")
    })
}

/// Microseconds of a duration string.
pub fn micros(s: &str) -> Result<u64, String> {
    duration(s).map(|d| d.as_micros() as u64)
}

fn tenths(num: &str) -> Option<u32> {
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
    let i: u32 = int.parse().ok()?;
    let f: u32 = frac.parse().ok()?;
    i.checked_mul(10)?.checked_add(f)
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
    }
}
