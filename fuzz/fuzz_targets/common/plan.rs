//! Site plans from fuzz bytes, for the targets that commission a station.
//!
//! Mostly plans the validator accepts (a tree whose parents come first,
//! distinct ids, 1 or 3 phases, fallbacks of 0 or 6 A..=cap), with every
//! field sometimes taken raw, so invalid plans are reached too.

use firmware::sharing::config::{
    DynamicConfig, DynamicMode, GroupConfig, NodeConfig, Phase, StationConfig, Timing,
};
use firmware::sharing::meter::MeterConfig;
use firmware::time::Duration;
use libfuzzer_sys::arbitrary::{Result, Unstructured};

/// A plausible value most of the time, a raw one sometimes.
fn pick<T: for<'a> libfuzzer_sys::arbitrary::Arbitrary<'a>>(
    u: &mut Unstructured<'_>,
    plausible: impl FnOnce(&mut Unstructured<'_>) -> Result<T>,
) -> Result<T> {
    if u.ratio(1u8, 16)? {
        u.arbitrary()
    } else {
        plausible(u)
    }
}

fn us(u: &mut Unstructured<'_>, lo: u64, hi: u64) -> Result<Duration> {
    Ok(Duration::from_ticks(pick(u, |u| u.int_in_range(lo..=hi))?))
}

/// A plan of at most `S` stations and `N` nodes with station ids from
/// `ids` first (so a caller can make sure its stations are in it).
pub fn plan<const S: usize, const N: usize>(
    u: &mut Unstructured<'_>,
    ids: &[u8],
) -> Result<GroupConfig<S, N>> {
    let mut g = GroupConfig::<S, N> {
        group: u.arbitrary()?,
        key: u.arbitrary()?,
        enabled: !u.ratio(1u8, 8)?,
        leader: 0,
        nodes: heapless::Vec::new(),
        stations: heapless::Vec::new(),
        timing: Timing::default(),
        dynamic: None,
    };
    let nodes = u.int_in_range(1..=N)?;
    for i in 0..nodes {
        let parent = if i == 0 {
            None
        } else {
            Some(pick(u, |u| u.int_in_range(0..=i as u16 - 1))?)
        };
        let _ = g.nodes.push(NodeConfig {
            parent,
            limit_da: pick(u, |u| u.int_in_range(60..=4000))?,
            breaker_da: if u.arbitrary()? {
                Some(pick(u, |u| u.int_in_range(60..=5000))?)
            } else {
                None
            },
        });
    }
    let stations = u.int_in_range(ids.len().max(1)..=S)?;
    for i in 0..stations {
        let id = match ids.get(i) {
            Some(&id) => id,
            None => pick(u, |_| Ok(i as u8 + 10))?,
        };
        let nameplate_da = pick(u, |u| u.int_in_range(60..=800))?;
        let breaker_da = if u.ratio(1u8, 4)? {
            Some(pick(u, |u| u.int_in_range(60..=800))?)
        } else {
            None
        };
        let cap = breaker_da.map_or(nameplate_da, |b: u16| b.min(nameplate_da));
        let fallback_da = if u.arbitrary()? {
            0
        } else {
            pick(u, |u| u.int_in_range(60..=cap.max(60)))?
        };
        let _ = g.stations.push(StationConfig {
            id,
            node: pick(u, |u| u.int_in_range(0..=nodes as u16 - 1))?,
            nameplate_da,
            breaker_da,
            phases: pick(u, |u| Ok(if u.arbitrary()? { 3 } else { 1 }))?,
            rotation: *u.choose(&[Phase::L1, Phase::L2, Phase::L3])?,
            fallback_da,
            priority: u.int_in_range(0..=3)?,
            weight: pick(u, |u| u.int_in_range(1..=4))?,
        });
    }
    g.leader = pick(u, |_| Ok(g.stations[0].id))?;
    let cycle = us(u, 100_000, 2_000_000)?;
    // Sums saturate: a raw value may be near u64::MAX.
    let silent_after = Duration::from_ticks(
        cycle
            .ticks()
            .saturating_mul(2)
            .saturating_add(us(u, 0, 2_000_000)?.ticks()),
    );
    g.timing = Timing {
        cycle,
        silent_after: pick(u, |_| Ok(silent_after.ticks())).map(Duration::from_ticks)?,
        leader_timeout: Duration::from_ticks(
            silent_after
                .ticks()
                .saturating_add(us(u, 1, 3_000_000)?.ticks()),
        ),
        car_allowance: us(u, 1_000_000, 5_000_000)?,
        join_interval: us(u, 100_000, 2_000_000)?,
        overcurrent_retry: if u.arbitrary()? {
            Some(us(u, 10_000_000, 600_000_000)?)
        } else {
            None
        },
        rotation_period: if u.arbitrary()? {
            Some(us(u, 1_000_000, 1_800_000_000)?)
        } else {
            None
        },
    };
    if u.ratio(1u8, 3)? {
        g.dynamic = Some(DynamicConfig {
            mode: if u.arbitrary()? {
                DynamicMode::Headroom
            } else {
                DynamicMode::SolarSurplus
            },
            node: pick(u, |u| u.int_in_range(0..=nodes as u16 - 1))?,
            // The commissioning message does not carry the meter's client
            // settings: a station takes the defaults.
            meter: MeterConfig::default(),
            worst_case_other_da: pick(u, |u| u.int_in_range(0..=2000))?,
            margin_da: pick(u, |u| u.int_in_range(0..=200))?,
            resume_margin_da: pick(u, |u| u.int_in_range(0..=100))?,
            min_pause: us(u, 0, 600_000_000)?,
            peak_hold_readings: pick(u, |u| u.int_in_range(1..=10))?,
            solar_start_margin_da: pick(u, |u| u.int_in_range(0..=100))?,
            solar_start_delay: us(u, 0, 600_000_000)?,
            solar_stop_margin_da: pick(u, |u| u.int_in_range(0..=100))?,
            solar_stop_delay: us(u, 0, 600_000_000)?,
        });
    }
    Ok(g)
}
