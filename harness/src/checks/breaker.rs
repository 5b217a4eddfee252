//! Breaker safety, three ways: offered currents under every node never over
//! its limit (strict); measured currents over it only by a just-reduced
//! station's own excess within its car's allowance, or within a load step's
//! allowance; and a thermal trip model
//! (IEC 60898-1, UL 489) that says whether a real breaker would have tripped.

use super::{s, when, CheckResult};
use crate::scenario::{limit_in, Action, BreakerStandard, Scenario};
use crate::trace::{at, Series};
use crate::units::amps;

/// After a reduction the car has 5 s (IEC 61851-1), plus 1 s for the
/// fixture to see the current settle.
const CAR_ALLOWANCE_US: u64 = 6_000_000;
/// After another load switches on, the meter, the leader and the car need
/// their periods plus the car's allowance.
const LOAD_STEP_ALLOWANCE_US: u64 = 10_000_000;

/// A station's current per grid phase, from its per-station-phase values.
fn to_grid(sc: &Scenario, i: usize, per_station_phase: [u16; 3]) -> [u32; 3] {
    let st = &sc.stations[i];
    let mut g = [0u32; 3];
    if st.phases >= 3 {
        for k in 0..3 {
            g[(k + usize::from(st.rotation)) % 3] += u32::from(per_station_phase[k]);
        }
    } else {
        g[usize::from(st.rotation % 3)] += u32::from(per_station_phase[0]);
    }
    g
}

fn offered_grid(sc: &Scenario, i: usize, o: u16) -> [u32; 3] {
    let mut g = [0u32; 3];
    for (p, on) in sc.stations[i].loads().into_iter().enumerate() {
        if on {
            g[p] = u32::from(o);
        }
    }
    g
}

/// Per node, its per-phase sum as change points `(t, sums)`, built by one
/// sweep over the stations' changes (each change walks its station's path).
/// With `measured`, the metered node follows the meter, which sees every load.
pub(crate) fn node_sums(
    sc: &Scenario,
    series: &Series,
    measured: bool,
) -> Vec<Vec<(u64, [u32; 3])>> {
    let paths: Vec<Vec<usize>> = sc
        .stations
        .iter()
        .map(|st| {
            let mut v = Vec::new();
            let mut cur = Some(st.node);
            while let Some(c) = cur {
                v.push(c);
                cur = sc.nodes[c].parent;
            }
            v
        })
        .collect();
    let metered = if measured {
        sc.meter
            .as_ref()
            .map(|m| m.node)
            .filter(|_| !series.meter.is_empty())
    } else {
        None
    };
    // (t, station, grid value); the meter as station usize::MAX.
    let mut changes: Vec<(u64, usize, [u32; 3])> = Vec::new();
    for i in 0..sc.stations.len() {
        if measured {
            changes.extend(
                series.measured[i]
                    .iter()
                    .map(|&(t, m)| (t, i, to_grid(sc, i, m))),
            );
        } else {
            changes.extend(
                series.offered[i]
                    .iter()
                    .map(|&(t, o)| (t, i, offered_grid(sc, i, o))),
            );
        }
    }
    if metered.is_some() {
        changes.extend(series.meter.iter().map(|&(t, m)| {
            (
                t,
                usize::MAX,
                m.map(|x| u32::try_from(x.max(0)).unwrap_or(0)),
            )
        }));
    }
    changes.sort_by_key(|c| c.0);
    let mut value = vec![[0u32; 3]; sc.stations.len()];
    let mut sums = vec![[0u32; 3]; sc.nodes.len()];
    let mut out: Vec<Vec<(u64, [u32; 3])>> = vec![vec![(0, [0; 3])]; sc.nodes.len()];
    let mut k = 0;
    while k < changes.len() {
        let t = changes[k].0;
        let mut touched: Vec<usize> = Vec::new();
        while k < changes.len() && changes[k].0 == t {
            let (_, i, v) = changes[k];
            if i == usize::MAX {
                if let Some(m) = metered {
                    sums[m] = v;
                    touched.push(m);
                }
            } else {
                // The metered node follows the meter alone.
                for &n in paths[i].iter().filter(|&&n| Some(n) != metered) {
                    for p in 0..3 {
                        sums[n][p] = sums[n][p] + v[p] - value[i][p];
                    }
                    touched.push(n);
                }
                value[i] = v;
            }
            k += 1;
        }
        touched.sort_unstable();
        touched.dedup();
        for n in touched {
            out[n].push((t, sums[n]));
        }
    }
    out
}

/// `points` (a node's sums) with one more at each change of its limit in
/// `schedule` ([`Scenario::limit_schedule`]), carrying the sum as it stands
/// then: between two points both the sum and the limit hold still.
fn split_at_limits(points: Vec<(u64, [u32; 3])>, schedule: &[(u64, u32)]) -> Vec<(u64, [u32; 3])> {
    let mut out: Vec<(u64, [u32; 3])> = Vec::with_capacity(points.len() + schedule.len());
    let mut limits = schedule.iter().map(|p| p.0).filter(|&t| t > 0).peekable();
    for (t, sum) in points {
        while let Some(&tl) = limits.peek() {
            if tl >= t {
                break;
            }
            if let Some(&(_, last)) = out.last() {
                out.push((tl, last));
            }
            limits.next();
        }
        out.push((t, sum));
    }
    if let Some(&(_, last)) = out.last() {
        out.extend(limits.map(|tl| (tl, last)));
    }
    out
}

/// Sum of offered currents under each node, at every change.
pub fn offered(sc: &Scenario, series: &Series) -> CheckResult {
    let mut c = CheckResult::new("breaker-offered");
    if !sc.expect.breaker_safe {
        return CheckResult::skip("breaker-offered", "breaker_safe = false in the scenario");
    }
    let mut peak = 0.0f64;
    for (ni, points) in node_sums(sc, series, false).into_iter().enumerate() {
        let node = &sc.nodes[ni];
        let schedule = sc.limit_schedule(ni);
        for (t, sum) in split_at_limits(points, &schedule) {
            let limit_da = limit_in(&schedule, t);
            for p in 0..3 {
                peak = peak.max(f64::from(sum[p]) / f64::from(node.limit_da.max(1)));
                if sum[p] > limit_da {
                    let who: Vec<String> = sc
                        .stations
                        .iter()
                        .enumerate()
                        .filter(|(i, st)| {
                            sc.is_under(st.node, ni) && at(&series.offered[*i], t, 0) > 0
                        })
                        .map(|(i, st)| {
                            format!(
                                "st{} {}",
                                st.id,
                                amps(i64::from(at(&series.offered[i], t, 0)))
                            )
                        })
                        .collect();
                    c.fail(format!(
                        "{}: node {} L{} offered {} A, limit {} A ({})",
                        when(t),
                        node.name,
                        p + 1,
                        amps(i64::from(sum[p])),
                        amps(i64::from(limit_da)),
                        who.join(", ")
                    ));
                }
            }
        }
    }
    c.figure("peak_ratio", (peak * 1_000.0).round() / 1_000.0);
    c
}

/// The windows in which any over-limit under the metered `node` is
/// excused: a load step's allowance after another load (which no station
/// offers for) switched on, merged and in time order. Only the time inside
/// a window is excused: an overload that starts in one and outlasts it is
/// unexcused from the window's end.
fn load_windows(sc: &Scenario, node: usize) -> Vec<(u64, u64)> {
    let mut w: Vec<(u64, u64)> = Vec::new();
    if sc.meter.as_ref().is_some_and(|m| m.node == node) {
        w.extend(
            sc.timeline
                .iter()
                .filter(|st| matches!(st.action, Action::Load { on: true, .. }))
                .map(|st| (st.at_us, st.at_us.saturating_add(LOAD_STEP_ALLOWANCE_US))),
        );
    }
    w.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in w {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// Each reduction of station `i`'s offer: `(when, offer before)`.
fn reductions(series: &Series, i: usize) -> Vec<(u64, u16)> {
    series.offered[i]
        .windows(2)
        .filter(|p| p[1].1 < p[0].1)
        .map(|p| (p[1].0, p[0].1))
        .collect()
}

/// What the stations under `node` that were reduced within their car's
/// allowance before `t` may draw above their new offer, per grid phase: for
/// each, its measured current above its new offer, up to the offer it had
/// before the reduction (a car may take up to 5 s to follow a cut; it was
/// never allowed more than its old offer). A station that was not reduced
/// excuses nothing, and neither does a reduced one's allowance excuse
/// another station's draw.
fn reduced_excess(
    sc: &Scenario,
    series: &Series,
    cuts: &[Vec<(u64, u16)>],
    node: usize,
    t: u64,
) -> [u32; 3] {
    let mut excess = [0u32; 3];
    for (i, st) in sc.stations.iter().enumerate() {
        if !sc.is_under(st.node, node) {
            continue;
        }
        let before = cuts[i]
            .iter()
            .filter(|&&(r, _)| r <= t && t < r.saturating_add(CAR_ALLOWANCE_US))
            .map(|&(_, old)| old)
            .max();
        let Some(old) = before else {
            continue;
        };
        let now = offered_grid(sc, i, at(&series.offered[i], t, 0));
        let ceiling = offered_grid(sc, i, old);
        let drawn = to_grid(sc, i, at(&series.measured[i], t, [0; 3]));
        for p in 0..3 {
            excess[p] = excess[p].saturating_add(drawn[p].min(ceiling[p]).saturating_sub(now[p]));
        }
    }
    excess
}

/// The part of `[from, to)` outside every window: its length, and where it
/// starts.
fn unexcused(windows: &[(u64, u64)], from: u64, to: u64) -> (u64, Option<u64>) {
    let mut total = 0;
    let mut first = None;
    let mut at = from;
    for &(a, b) in windows.iter().filter(|w| w.1 > from && w.0 < to) {
        if a > at {
            total += a - at;
            first.get_or_insert(at);
        }
        at = at.max(b);
    }
    if to > at {
        total += to - at;
        first.get_or_insert(at);
    }
    (total, first)
}

/// Measured currents under each node: over the limit only by what a station
/// that was just reduced still draws above its new offer, within its car's
/// allowance (see [`reduced_excess`]), or within a load step's allowance
/// on the metered node.
pub fn measured(sc: &Scenario, series: &Series) -> CheckResult {
    let mut c = CheckResult::new("breaker-measured");
    if !sc.expect.breaker_safe {
        return CheckResult::skip("breaker-measured", "breaker_safe = false in the scenario");
    }
    let cuts: Vec<Vec<(u64, u16)>> = (0..sc.stations.len())
        .map(|i| reductions(series, i))
        .collect();
    let mut peak = 0.0f64;
    let mut overload_us = 0u64;
    let mut unexcused_us = 0u64;
    // (from, node, phase, measured, excused, limit)
    let mut worst: Option<(u64, usize, usize, u32, u32, u32)> = None;
    for (ni, points) in node_sums(sc, series, true).into_iter().enumerate() {
        let node = &sc.nodes[ni];
        let schedule = sc.limit_schedule(ni);
        let points = split_at_limits(points, &schedule);
        let windows = load_windows(sc, ni);
        let under: Vec<usize> = (0..sc.stations.len())
            .filter(|&i| sc.is_under(sc.stations[i].node, ni))
            .collect();
        for (k, &(t, sum)) in points.iter().enumerate() {
            let next = points.get(k + 1).map_or(series.end_us, |p| p.0).max(t);
            let hottest = (0..3).max_by_key(|&p| sum[p]).unwrap_or(0);
            peak = peak.max(f64::from(sum[hottest]) / f64::from(node.limit_da.max(1)));
            let limit_da = limit_in(&schedule, t);
            if sum[hottest] <= limit_da {
                continue;
            }
            overload_us += next - t;
            // Within [t, next) the excusable excess changes where a station
            // under the node changes its offer or draw, or an allowance ends.
            let mut cut_at: Vec<u64> = vec![t, next];
            for &i in &under {
                let inside = |x: u64| x > t && x < next;
                cut_at.extend(series.offered[i].iter().map(|p| p.0).filter(|&x| inside(x)));
                cut_at.extend(
                    series.measured[i]
                        .iter()
                        .map(|p| p.0)
                        .filter(|&x| inside(x)),
                );
                cut_at.extend(
                    cuts[i]
                        .iter()
                        .map(|p| p.0.saturating_add(CAR_ALLOWANCE_US))
                        .filter(|&x| inside(x)),
                );
            }
            cut_at.sort_unstable();
            cut_at.dedup();
            for w in cut_at.windows(2) {
                let (a, b) = (w[0], w[1]);
                let excused = reduced_excess(sc, series, &cuts, ni, a);
                let over = (0..3)
                    .filter(|&p| sum[p].saturating_sub(excused[p]) > limit_da)
                    .max_by_key(|&p| sum[p].saturating_sub(excused[p]));
                let Some(p) = over else {
                    continue;
                };
                let (out, from) = unexcused(&windows, a, b);
                unexcused_us += out;
                if let Some(from) = from {
                    if worst.is_none_or(|w| sum[p].saturating_sub(excused[p]) > w.3 - w.4) {
                        worst = Some((from, ni, p, sum[p], excused[p], limit_da));
                    }
                }
            }
        }
    }
    c.figure("peak_ratio", (peak * 1_000.0).round() / 1_000.0);
    c.figure("overload_s", s(overload_us));
    c.figure("unexcused_overload_s", s(unexcused_us));
    if unexcused_us > sc.expect.measured_overload_max_us {
        if let Some((t, ni, p, sum, excused, limit_da)) = worst {
            let excused_text = if excused > 0 {
                format!(
                    " ({} A of it a just-reduced station's excess, excused)",
                    amps(i64::from(excused))
                )
            } else {
                String::new()
            };
            c.fail(format!(
                "node {} L{} carried more than its {} A limit for {:.1} s beyond what a just-reduced station may still draw in its car's allowance, or a load step's (allowed {:.1} s); worst {} A{excused_text} at {}",
                sc.nodes[ni].name,
                p + 1,
                amps(i64::from(limit_da)),
                s(unexcused_us),
                s(sc.expect.measured_overload_max_us),
                amps(i64::from(sum)),
                when(t)
            ));
        }
    }
    c
}

/// Which curve a trip model follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripModel {
    /// IEC 60898-1 (type C magnetic at 5 In), rating in deciamps.
    Iec { rating_da: u32 },
    /// UL 489.
    Ul { rating_da: u32 },
}

/// Seconds to trip at `multiple` of the rating (infinite below the
/// conventional non-tripping current). A fast curve through the standard's
/// points, interpolated log-log: IEC 60898-1 never below 1.13 In, 1 h at
/// 1.45 In, 60 s (In <= 32 A) or 120 s at 2.55 In, instant at 5 In; UL 489
/// holds 100 %, 1 h at 1.35 In, 120 s at 2 In, instant at 10 In.
#[must_use]
pub fn trip_time_s(model: TripModel, multiple: f64) -> f64 {
    let (no_trip, pts): (f64, Vec<(f64, f64)>) = match model {
        TripModel::Iec { rating_da } => {
            let t255 = if rating_da <= 320 { 60.0 } else { 120.0 };
            (
                1.13,
                vec![(1.13, 1.0e7), (1.45, 3_600.0), (2.55, t255), (5.0, 0.01)],
            )
        }
        TripModel::Ul { .. } => (
            1.0,
            vec![(1.0, 1.0e7), (1.35, 3_600.0), (2.0, 120.0), (10.0, 0.01)],
        ),
    };
    if multiple <= no_trip {
        return f64::INFINITY;
    }
    for w in pts.windows(2) {
        let ((x0, t0), (x1, t1)) = (w[0], w[1]);
        if multiple <= x1 {
            let f = (multiple.ln() - x0.ln()) / (x1.ln() - x0.ln());
            return (t0.ln() + f * (t1.ln() - t0.ln())).exp();
        }
    }
    0.01
}

/// A thermal integrator per node with a breaker rating.
pub fn thermal(sc: &Scenario, series: &Series) -> CheckResult {
    let mut c = CheckResult::new("breaker-thermal");
    let rated: Vec<usize> = (0..sc.nodes.len())
        .filter(|&n| sc.nodes[n].breaker_da.is_some())
        .collect();
    if rated.is_empty() {
        return CheckResult::skip("breaker-thermal", "no node has a breaker rating");
    }
    let sums = node_sums(sc, series, true);
    let mut worst = 0.0f64;
    for ni in rated {
        let node = &sc.nodes[ni];
        let rating = node.breaker_da.unwrap_or(node.limit_da);
        let model = match node.standard {
            BreakerStandard::Iec60898 => TripModel::Iec { rating_da: rating },
            BreakerStandard::Ul489 => TripModel::Ul { rating_da: rating },
        };
        let mut heat = 0.0f64;
        let mut tripped_at = None;
        let points = &sums[ni];
        for (k, &(t, sum)) in points.iter().enumerate() {
            let next = points.get(k + 1).map_or(series.end_us, |p| p.0).max(t);
            let dt = (next - t) as f64 / 1e6;
            let hottest = sum.into_iter().max().unwrap_or(0);
            let multiple = f64::from(hottest) / f64::from(rating.max(1));
            let tt = trip_time_s(model, multiple);
            if tt.is_finite() {
                heat += dt / tt;
            } else {
                // Cools over an hour below the non-tripping current.
                heat = (heat - dt / 3_600.0).max(0.0);
            }
            if heat >= 1.0 && tripped_at.is_none() {
                tripped_at = Some((t, hottest));
            }
            worst = worst.max(heat);
        }
        if let Some((t, cur)) = tripped_at {
            c.fail(format!(
                "breaker of node {} ({} A, {}) would have tripped at {} carrying {} A",
                node.name,
                amps(i64::from(rating)),
                node.standard,
                when(t),
                amps(i64::from(cur))
            ));
        }
    }
    c.figure("max_trip_fraction", (worst * 1_000.0).round() / 1_000.0);
    c
}
