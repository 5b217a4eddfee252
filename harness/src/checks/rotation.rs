//! Rotation under shortage: when there is not enough current for every car
//! that asks, the cars take turns. Read from what the fixture measured
//! only: a car asks for energy while its pilot shows C or D, and charges
//! while its station offers current (PWM on, at least 6 A).
//!
//! Two rules, checked when the scenario rotates (`[sharing] rotation`):
//! - every waiting car charges within its turn: a car that starts waiting
//!   while `n` cars wait (itself included) charges within `n` rotation
//!   periods plus the handover's allowance, or stops asking first;
//! - no car charges twice before every other waiting car has charged once:
//!   when a car stops charging while it still asks, no car under the same
//!   node that was waiting then is still waiting when it charges again.

use rig::iec::PilotState;

use super::{s, when, CheckResult};
use crate::scenario::Scenario;
use crate::trace::{at, Series};

/// The handover from one car to the next: the leaving station's PWM off,
/// the arriving one's offer after its leader's next cycle and its
/// contactor (about 3 s on the virtual bench), with a margin.
const HANDOVER_US: u64 = 10_000_000;

/// One station's history: when its car waited (asking, offered nothing),
/// and when it stopped charging while it still asked (rotated out).
#[derive(Debug, Default)]
struct History {
    /// `[from, to)`; `to` is when it charged or stopped asking (or the end).
    waits: Vec<(u64, u64)>,
    /// When its charge ended while the car still asked.
    cut_while_asking: Vec<u64>,
    /// When it started charging.
    starts: Vec<u64>,
}

fn asks(p: Option<PilotState>) -> bool {
    matches!(p, Some(PilotState::C | PilotState::D))
}

fn history(series: &Series, i: usize) -> History {
    let pilot: Vec<(u64, bool)> = series.pilot[i]
        .iter()
        .map(|&(t, st, _, _)| (t, asks(st)))
        .collect();
    let offered = &series.offered[i];
    let mut times: Vec<u64> = pilot
        .iter()
        .map(|p| p.0)
        .chain(offered.iter().map(|p| p.0))
        .collect();
    times.sort_unstable();
    times.dedup();
    let mut h = History::default();
    let mut waiting_since: Option<u64> = None;
    let mut charging = false;
    for t in times {
        let asking = at(&pilot, t, false);
        let now_charging = at(offered, t, 0) > 0;
        if now_charging && !charging {
            h.starts.push(t);
        }
        if charging && !now_charging && asking {
            h.cut_while_asking.push(t);
        }
        charging = now_charging;
        let waiting = asking && !now_charging;
        match (waiting_since, waiting) {
            (None, true) => waiting_since = Some(t),
            (Some(from), false) => {
                h.waits.push((from, t));
                waiting_since = None;
            }
            _ => {}
        }
    }
    if let Some(from) = waiting_since {
        h.waits.push((from, series.end_us.max(from)));
    }
    h
}

/// Whether `h`'s car was waiting at `t`, and until when.
fn waiting_at(h: &History, t: u64) -> Option<(u64, u64)> {
    h.waits.iter().copied().find(|&(a, b)| a <= t && t < b)
}

/// The rotation check.
pub fn rotation(sc: &Scenario, series: &Series) -> CheckResult {
    let name = "rotation";
    let Some(period) = sc.sharing.rotation_us else {
        return CheckResult::skip(name, "the scenario does not rotate (rotation = \"off\")");
    };
    let mut c = CheckResult::new(name);
    let n = sc.stations.len();
    let hs: Vec<History> = (0..n).map(|i| history(series, i)).collect();
    let id = |i: usize| sc.stations[i].id;
    let mut longest: u64 = 0;
    let mut turns = 0usize;
    // Every waiting car charges within its turn.
    for (i, h) in hs.iter().enumerate() {
        for &(from, to) in &h.waits {
            longest = longest.max(to - from);
            let queue = hs
                .iter()
                .filter(|o| waiting_at(o, from).is_some())
                .count()
                .max(1);
            let allowed = period
                .saturating_mul(queue as u64)
                .saturating_add(HANDOVER_US);
            if to - from > allowed {
                let how = if to >= series.end_us {
                    "was still waiting at the end".to_string()
                } else if h.starts.contains(&to) {
                    format!("charged only at {}", when(to))
                } else {
                    format!("stopped asking at {} without having charged", when(to))
                };
                c.fail(format!(
                    "st{} waited from {} and {how}: {:.1} s, more than the {:.1} s its turn allows ({queue} car(s) waiting then, rotation every {:.1} s)",
                    id(i),
                    when(from),
                    s(to - from),
                    s(allowed),
                    s(period)
                ));
            }
        }
    }
    // No car charges twice before every other waiting car has charged.
    for (i, h) in hs.iter().enumerate() {
        for &cut in &h.cut_while_asking {
            let Some(&again) = h.starts.iter().find(|&&t| t > cut) else {
                continue;
            };
            turns += 1;
            for (j, o) in hs.iter().enumerate() {
                if j == i || sc.stations[j].node != sc.stations[i].node {
                    continue;
                }
                if let Some((since, until)) = waiting_at(o, cut) {
                    if until > again {
                        c.fail(format!(
                            "st{} charged again at {} (it stopped at {}) while st{}, waiting since {}, had not charged once",
                            id(i),
                            when(again),
                            when(cut),
                            id(j),
                            when(since)
                        ));
                    }
                }
            }
        }
    }
    c.figure("longest_wait_s", s(longest));
    c.figure("turns", turns as u64);
    c
}
