//! The arrivals generator (`[[arrivals]]`): sessions of cars drawn from a
//! seed, written into the scenario at load time as ordinary cars and
//! timeline steps (`arrive`, `unplug`, and `car` for each later session's
//! new car), so a run, its trace and its checks see nothing but plain
//! steps. Owns the keys, their validation and the draw; runs nothing.
//!
//! The draw is part of the file format: the same file and seed give the
//! same sessions on every machine and in every release. It uses
//! [`SplitMix64`] (`rig::rng`, not for cryptography) seeded with the
//! block's `seed`, and draws in this order, station by station in the
//! order of `stations` (default: the file's order):
//!
//! 1. the station's first car: `max`, then `capacity`, then `soc`, each
//!    one of its choices (`choices[below(len)]`);
//! 2. the first arrival, uniform in whole milliseconds over
//!    `from ..= from + (until - from) / (sessions + 1)`;
//! 3. per session: its stay (uniform in `stay`, whole milliseconds), then,
//!    if another session follows, the gap before it (uniform in `gap`)
//!    and that session's car (as in 1).
//!
//! A session that would start at or after `until` is not made; a car whose
//! stay runs to `until` or past it stays plugged in to the end of the run.
//! `below(n)` is SplitMix64's multiply-shift `(next * n) >> 64`.

use serde::Deserialize;
use toml::Spanned;

use super::{Action, Car, Ctx, ScenarioError, Station, Step, S};
use crate::units;
use rig::protocol::CarSetting;
use rig::rng::SplitMix64;

/// Most sessions per station in one block.
pub const MAX_SESSIONS: u32 = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArrivals {
    /// Station ids (default: every station).
    stations: Option<Spanned<Vec<Spanned<u8>>>>,
    /// Sessions per station.
    sessions: Spanned<u32>,
    from: Option<S>,
    until: Option<S>,
    /// `[shortest, longest]` stay.
    stay: Spanned<Vec<S>>,
    /// `[shortest, longest]` time between a car leaving and the next arriving.
    gap: Option<Spanned<Vec<S>>>,
    /// The car mix: each session's car takes one of each list.
    max: Option<Spanned<Vec<S>>>,
    capacity: Option<Spanned<Vec<S>>>,
    soc: Option<Spanned<Vec<Spanned<u16>>>>,
    phases: Option<Spanned<u8>>,
    delay_max: Option<S>,
    seed: Option<u64>,
}

/// One car drawn from a block's mix.
#[derive(Debug, Clone, Copy)]
struct Drawn {
    max_da: u16,
    capacity_wh: u32,
    soc_permille: u16,
}

/// A block, validated.
struct Block {
    stations: Vec<usize>,
    sessions: u32,
    from_us: u64,
    until_us: u64,
    stay_ms: (u64, u64),
    gap_ms: (u64, u64),
    max_da: Vec<u16>,
    capacity_wh: Vec<u32>,
    soc_permille: Vec<u16>,
    phases: u8,
    delay_max_ms: Option<u32>,
    seed: u64,
    line: usize,
}

impl Block {
    fn car(&self, rng: &mut SplitMix64) -> Drawn {
        let pick = |rng: &mut SplitMix64, n: usize| rng.below(n as u64) as usize;
        let max_da = self.max_da[pick(rng, self.max_da.len())];
        let capacity_wh = self.capacity_wh[pick(rng, self.capacity_wh.len())];
        let soc_permille = self.soc_permille[pick(rng, self.soc_permille.len())];
        Drawn {
            max_da,
            capacity_wh,
            soc_permille,
        }
    }
}

/// Uniform in `lo..=hi` milliseconds, as microseconds.
fn uniform_ms(rng: &mut SplitMix64, (lo, hi): (u64, u64)) -> u64 {
    lo.saturating_add(rng.below(hi.saturating_sub(lo).saturating_add(1)))
        .saturating_mul(1_000)
}

impl Ctx<'_> {
    /// Expand every `[[arrivals]]` block: the cars of their first sessions
    /// and the steps of all, in time order. A station may be in one block
    /// only and must have no `[[car]]` of its own.
    pub(super) fn arrivals(
        &self,
        raw: &[RawArrivals],
        stations: &[Station],
        written_cars: &[Car],
        duration_us: u64,
        seed: u64,
    ) -> Result<(Vec<Car>, Vec<Step>), ScenarioError> {
        let mut cars = Vec::new();
        let mut steps = Vec::new();
        let mut taken: Vec<Option<usize>> = vec![None; stations.len()];
        for (k, r) in raw.iter().enumerate() {
            let b = self.block(r, stations, duration_us, seed)?;
            for (n, &i) in b.stations.iter().enumerate() {
                let at = r
                    .stations
                    .as_ref()
                    .and_then(|v| v.get_ref().get(n))
                    .map_or(r.sessions.span().start, |s| s.span().start);
                if let Some(other) = taken[i] {
                    return Err(self.err_at(
                        at,
                        format!(
                            "station {} is in [[arrivals]] {} and {}: expected each station in one block at most",
                            stations[i].id,
                            other + 1,
                            k + 1
                        ),
                    ));
                }
                taken[i] = Some(k);
                if written_cars.iter().any(|c| c.station == i) {
                    return Err(self.err_at(
                        at,
                        format!(
                            "station {} has a [[car]] of its own: expected the cars of the stations in [[arrivals]] to come from its mix (max, capacity, soc)",
                            stations[i].id
                        ),
                    ));
                }
            }
            let mut rng = SplitMix64::new(b.seed);
            for &i in &b.stations {
                let first = b.car(&mut rng);
                cars.push(Car {
                    station: i,
                    max_da: first.max_da,
                    phases: b.phases,
                    capacity_wh: first.capacity_wh,
                    soc_permille: first.soc_permille,
                    knee_permille: 800,
                    target_permille: 1_000,
                    delay_ms: 2_000,
                    delay_max_ms: b.delay_max_ms,
                    ramp_da_per_s: 200,
                    ventilation: false,
                    aux_da: 0,
                });
                let span_ms = (b.until_us - b.from_us) / 1_000;
                let mut t =
                    b.from_us + uniform_ms(&mut rng, (0, span_ms / u64::from(b.sessions + 1)));
                let step = |at_us: u64, action: Action| Step {
                    at_us,
                    action,
                    expect: None,
                    line: b.line,
                };
                for s in 0..b.sessions {
                    if t >= b.until_us {
                        break;
                    }
                    steps.push(step(t, Action::Arrive(i)));
                    let leave = t.saturating_add(uniform_ms(&mut rng, b.stay_ms));
                    if leave >= b.until_us {
                        break;
                    }
                    steps.push(step(leave, Action::Unplug(i)));
                    if s + 1 < b.sessions {
                        t = leave.saturating_add(uniform_ms(&mut rng, b.gap_ms));
                        let next = b.car(&mut rng);
                        if t < b.until_us {
                            // The next car, set before it arrives (its SoC
                            // last: the charge of the battery as set).
                            steps.push(step(
                                t,
                                Action::Car(
                                    i,
                                    vec![
                                        CarSetting::MaxDa(next.max_da),
                                        CarSetting::CapacityWh(next.capacity_wh),
                                        CarSetting::SocPermille(next.soc_permille),
                                    ],
                                ),
                            ));
                        }
                    }
                }
            }
        }
        // Stable: a station's car step stays before its arrival.
        steps.sort_by_key(|s| s.at_us);
        Ok((cars, steps))
    }

    fn block(
        &self,
        r: &RawArrivals,
        stations: &[Station],
        duration_us: u64,
        seed: u64,
    ) -> Result<Block, ScenarioError> {
        let sessions = *r.sessions.get_ref();
        if !(1..=MAX_SESSIONS).contains(&sessions) {
            return Err(self.err(
                &r.sessions,
                format!(
                    "expected sessions from 1 to {MAX_SESSIONS} (per station), found {sessions}"
                ),
            ));
        }
        let ids: Vec<usize> = match &r.stations {
            None => (0..stations.len()).collect(),
            Some(v) if v.get_ref().is_empty() => {
                return Err(self.err(
                    v,
                    "expected at least one station id (or leave stations out: every station)",
                ))
            }
            Some(v) => {
                let mut ids = Vec::new();
                for id in v.get_ref() {
                    let i = stations
                        .iter()
                        .position(|s| s.id == *id.get_ref())
                        .ok_or_else(|| self.err(id, format!("unknown station {}", id.get_ref())))?;
                    if ids.contains(&i) {
                        return Err(
                            self.err(id, format!("station {} is listed twice", id.get_ref()))
                        );
                    }
                    ids.push(i);
                }
                ids
            }
        };
        let from_us = r.from.as_ref().map_or(Ok(0), |v| self.us(v))?;
        let until_us = r.until.as_ref().map_or(Ok(duration_us), |v| self.us(v))?;
        if until_us > duration_us {
            let at = r
                .until
                .as_ref()
                .map_or(r.sessions.span().start, |u| u.span().start);
            return Err(self.err_at(
                at,
                format!(
                    "expected until at most the scenario's duration ({})",
                    crate::checks::when(duration_us)
                ),
            ));
        }
        if from_us >= until_us {
            let at = r
                .from
                .as_ref()
                .map_or(r.sessions.span().start, |f| f.span().start);
            return Err(self.err_at(
                at,
                format!(
                    "expected from before until ({}), found {}",
                    crate::checks::when(until_us),
                    crate::checks::when(from_us)
                ),
            ));
        }
        let stay_ms = self.ms_range(&r.stay, "stay")?;
        let gap_ms = match &r.gap {
            Some(g) => self.ms_range(g, "gap")?,
            None => (10 * 60 * 1_000, 60 * 60 * 1_000),
        };
        let max_da = match &r.max {
            None => vec![320],
            Some(v) => {
                self.choices(v, "max")?;
                v.get_ref()
                    .iter()
                    .map(|m| self.da16(m))
                    .collect::<Result<_, _>>()?
            }
        };
        let capacity_wh = match &r.capacity {
            None => vec![60_000],
            Some(v) => {
                self.choices(v, "capacity")?;
                v.get_ref()
                    .iter()
                    .map(|c| self.q(c, units::watt_hours))
                    .collect::<Result<_, _>>()?
            }
        };
        let soc_permille = match &r.soc {
            None => vec![200],
            Some(v) => {
                self.choices(v, "soc")?;
                v.get_ref()
                    .iter()
                    .map(|p| self.permille(Some(p), "soc", 200))
                    .collect::<Result<_, _>>()?
            }
        };
        let phases = r.phases.as_ref().map_or(1, |p| *p.get_ref());
        if phases != 1 && phases != 3 {
            let at = r
                .phases
                .as_ref()
                .map_or(r.sessions.span().start, |p| p.span().start);
            return Err(self.err_at(at, "expected phases = 1 or 3"));
        }
        Ok(Block {
            stations: ids,
            sessions,
            from_us,
            until_us,
            stay_ms,
            gap_ms,
            max_da,
            capacity_wh,
            soc_permille,
            phases,
            delay_max_ms: r.delay_max.as_ref().map(|d| self.ms(d)).transpose()?,
            seed: r.seed.unwrap_or(seed),
            line: self.line_col(r.sessions.span().start).0,
        })
    }

    /// `[shortest, longest]`, in whole milliseconds, at least 1 s.
    fn ms_range(&self, v: &Spanned<Vec<S>>, key: &str) -> Result<(u64, u64), ScenarioError> {
        let [lo, hi] = v.get_ref().as_slice() else {
            return Err(self.err(
                v,
                format!(
                    "expected {key} = [shortest, longest], two durations such as [\"30min\", \"4h\"], found {} values",
                    v.get_ref().len()
                ),
            ));
        };
        let (a, b) = (self.us(lo)? / 1_000, self.us(hi)? / 1_000);
        if a < 1_000 {
            return Err(self.err(lo, format!("expected the shortest {key} to be at least 1s")));
        }
        if b < a {
            return Err(self.err(
                hi,
                format!(
                    "expected the longest {key} at least the shortest (\"{}\")",
                    lo.get_ref()
                ),
            ));
        }
        Ok((a, b))
    }

    fn choices<T>(&self, v: &Spanned<Vec<T>>, key: &str) -> Result<(), ScenarioError> {
        if v.get_ref().is_empty() {
            return Err(self.err(
                v,
                format!("expected at least one {key} to choose from (repeat a value to weight it)"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Action, Scenario, ScenarioError};
    use crate::scenario::tests::TINY;
    use rig::protocol::CarSetting;

    const BLOCK: &str = r#"
[[arrivals]]
sessions = 3
from = "1min"
until = "2h"
stay = ["10min", "20min"]
gap = ["5min", "10min"]
max = ["16A", "32A"]
capacity = ["40kWh", "80kWh"]
soc = [10, 50]
delay_max = "4s"
"#;

    /// TINY's site (two stations on a 32 A circuit) for 3 h, no steps.
    fn site() -> String {
        TINY.split("[expect]")
            .next()
            .unwrap_or_default()
            .replace("duration = \"2min\"", "duration = \"3h\"")
    }

    fn load(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(Path::new("gen.toml"), text)
    }

    const MIN: u64 = 60_000_000;

    #[test]
    fn sessions_follow_the_window_stay_gap_and_mix() {
        let sc = load(&(site() + BLOCK)).unwrap();
        assert_eq!(sc.cars.len(), 2, "one first car per station");
        for c in &sc.cars {
            assert!([160, 320].contains(&c.max_da), "{c:?}");
            assert!([40_000, 80_000].contains(&c.capacity_wh), "{c:?}");
            assert!([100, 500].contains(&c.soc_permille), "{c:?}");
            assert_eq!(c.delay_max_ms, Some(4_000));
        }
        assert!(sc.timeline.windows(2).all(|w| w[0].at_us <= w[1].at_us));
        for i in 0..2 {
            let mine: Vec<_> = sc
                .timeline
                .iter()
                .filter(|s| {
                    matches!(s.action, Action::Arrive(j) | Action::Unplug(j) | Action::Car(j, _) if j == i)
                })
                .collect();
            // Three whole sessions fit in 2 h (at most 31 min to the first
            // arrival, 3 x 20 min stays, 2 x 10 min gaps).
            let kinds: Vec<&str> = mine
                .iter()
                .map(|s| match s.action {
                    Action::Arrive(_) => "arrive",
                    Action::Unplug(_) => "unplug",
                    _ => "car",
                })
                .collect();
            assert_eq!(
                kinds,
                ["arrive", "unplug", "car", "arrive", "unplug", "car", "arrive", "unplug"]
            );
            let first = mine[0].at_us;
            assert!((MIN..=MIN + 119 * MIN / 4).contains(&first), "{first}");
            for s in mine.chunks(3) {
                let stay = s[1].at_us - s[0].at_us;
                assert!((10 * MIN..=20 * MIN).contains(&stay), "stay {stay}");
                if let [_, unplug, car] = s {
                    let next_arrival = sc
                        .timeline
                        .iter()
                        .find(|x| {
                            x.at_us >= car.at_us && matches!(x.action, Action::Arrive(j) if j == i)
                        })
                        .unwrap();
                    assert_eq!(
                        next_arrival.at_us, car.at_us,
                        "the car is set as it arrives"
                    );
                    let gap = car.at_us - unplug.at_us;
                    assert!((5 * MIN..=10 * MIN).contains(&gap), "gap {gap}");
                    let Action::Car(_, settings) = &car.action else {
                        unreachable!()
                    };
                    assert!(matches!(settings[0], CarSetting::MaxDa(160 | 320)));
                    assert!(matches!(
                        settings[1],
                        CarSetting::CapacityWh(40_000 | 80_000)
                    ));
                    assert!(matches!(settings[2], CarSetting::SocPermille(100 | 500)));
                }
            }
        }
        // The scenario's seed by default; the block's own when given.
        assert_eq!(load(&(site() + BLOCK)).unwrap(), sc);
        let seeded = load(&(site() + BLOCK + "seed = 0\n")).unwrap();
        assert_eq!(seeded.timeline, sc.timeline, "seed 0 is the scenario's");
        let other = load(&(site() + BLOCK + "seed = 9\n")).unwrap();
        assert_ne!(other.timeline, sc.timeline);
    }

    /// The draw is part of the format: these times are what SplitMix64
    /// seeded with 0 gives in the documented order. A change here changes
    /// every file's sessions (and their goldens).
    #[test]
    fn the_draw_is_pinned() {
        let sc = load(&(site() + BLOCK)).unwrap();
        let arrivals: Vec<(usize, u64)> = sc
            .timeline
            .iter()
            .filter_map(|s| match s.action {
                Action::Arrive(i) => Some((i, s.at_us / 1_000)),
                _ => None,
            })
            .collect();
        assert_eq!(arrivals, PINNED);
        let firsts: Vec<(u16, u32, u16)> = sc
            .cars
            .iter()
            .map(|c| (c.max_da, c.capacity_wh, c.soc_permille))
            .collect();
        assert_eq!(firsts, PINNED_CARS);
    }

    const PINNED: [(usize, u64); 6] = [
        (1, 425_381),
        (0, 1_793_025),
        (1, 2_088_521),
        (0, 2_855_031),
        (1, 3_680_323),
        (0, 4_445_190),
    ];
    const PINNED_CARS: [(u16, u32, u16); 2] = [(320, 40_000, 100), (320, 40_000, 500)];

    #[test]
    fn a_stay_past_until_stays_to_the_end_and_late_sessions_are_not_made() {
        let text = site()
            + "[[arrivals]]\nstations = [1]\nsessions = 5\nuntil = \"1h\"\nstay = [\"50min\", \"55min\"]\n";
        let sc = load(&text).unwrap();
        assert_eq!(sc.cars.len(), 1);
        assert_eq!(sc.cars[0].station, 1);
        let acts: Vec<&Action> = sc.timeline.iter().map(|s| &s.action).collect();
        // The first arrival is in the first 10 min (1 h / 6), the stay at
        // least 50 min: it unplugs after 1 h or not at all, so one session.
        assert!(
            matches!(
                acts.as_slice(),
                [Action::Arrive(1)] | [Action::Arrive(1), Action::Unplug(1)]
            ),
            "{acts:?}"
        );
    }

    #[test]
    fn written_and_generated_steps_merge_in_time_order() {
        let text = site()
            + "[[at]]\ntime = \"2h 30min\"\ndo = \"check\"\n[[at]]\ntime = \"2h 40min\"\ndo = \"check\"\n"
            + BLOCK;
        let sc = load(&text).unwrap();
        assert!(sc.timeline.windows(2).all(|w| w[0].at_us <= w[1].at_us));
        assert_eq!(
            sc.timeline
                .iter()
                .filter(|s| s.action == Action::Check)
                .count(),
            2
        );
        assert_eq!(sc.timeline.last().map(|s| &s.action), Some(&Action::Check));
    }

    #[test]
    fn bad_blocks_are_refused_at_their_key() {
        let cases: [(&str, &str, &str, &str); 9] = [
            (
                "sessions = 3",
                "sessions = 0",
                "expected sessions from 1 to 1000",
                "0\n",
            ),
            (
                "sessions = 3",
                "stations = [1, 7]\nsessions = 3",
                "unknown station 7",
                "7]",
            ),
            (
                "sessions = 3",
                "stations = [1, 1]\nsessions = 3",
                "station 1 is listed twice",
                "1]",
            ),
            (
                "until = \"2h\"",
                "until = \"4h\"",
                "expected until at most the scenario's duration",
                "\"4h\"",
            ),
            (
                "from = \"1min\"",
                "from = \"3h\"",
                "expected from before until",
                "\"3h\"",
            ),
            (
                "stay = [\"10min\", \"20min\"]",
                "stay = [\"20min\", \"11min\"]",
                "expected the longest stay at least the shortest",
                "\"11min\"",
            ),
            (
                "gap = [\"5min\", \"10min\"]",
                "gap = [\"5min\"]",
                "expected gap = [shortest, longest]",
                "[\"5min\"]",
            ),
            (
                "max = [\"16A\", \"32A\"]",
                "max = []",
                "expected at least one max",
                "[]",
            ),
            (
                "soc = [10, 50]",
                "soc = [10, 150]",
                "expected soc from 0 to 100",
                "150",
            ),
        ];
        for (from, to, message, needle) in cases {
            let text = site() + &BLOCK.replace(from, to);
            let e = load(&text).unwrap_err();
            assert!(e.message.contains(message), "{to}: {e}");
            let off = text.rfind(needle).unwrap();
            let before = &text[..off];
            let at = (
                before.matches('\n').count() + 1,
                off - before.rfind('\n').map_or(0, |i| i + 1) + 1,
            );
            assert_eq!((e.line, e.column), at, "{to}: {e}");
        }
        // A station with its own car, or in two blocks.
        let text = site() + "[[car]]\nstation = 1\n" + BLOCK;
        let e = load(&text).unwrap_err();
        assert!(
            e.message.contains("station 1 has a [[car]] of its own"),
            "{e}"
        );
        let text = site()
            + BLOCK
            + "[[arrivals]]\nstations = [0]\nsessions = 1\nstay = [\"1min\", \"2min\"]\n";
        let e = load(&text).unwrap_err();
        assert!(
            e.message.contains("station 0 is in [[arrivals]] 1 and 2"),
            "{e}"
        );
        assert_eq!(
            (e.line, e.column),
            (text.matches('\n').count() - 2, 13),
            "{e}"
        );
    }
}
