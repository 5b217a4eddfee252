//! Convergence and failover: after each step, what it expects (offers,
//! sums under a node, the spread between stations, what the car does)
//! holds within the deadline and stays so to the end of its window; and
//! nothing flaps.

use rig::iec::PilotState;

use super::breaker::node_sums;
use super::{s, when, CheckResult};
use crate::scenario::{
    Action, Bound, CarState, EnergyBound, Expectation, NodeExpectation, Quantity, Scenario,
};
use crate::trace::{at, Series};
use crate::units::amps;

/// Offers per station, named by the scenario's ids: `[st1 16.0, st2 0.0] A`.
fn fmt_list(sc: &Scenario, v: &[u16]) -> String {
    let parts: Vec<String> = v
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let id = sc.stations.get(i).map_or(i, |st| usize::from(st.id));
            format!("st{id} {}", amps(i64::from(d)))
        })
        .collect();
    format!("[{}] A", parts.join(", "))
}

/// Per node, its per-phase sums as change points.
type NodeSeries = Vec<Vec<(u64, [u32; 3])>>;

/// Node sums per quantity, computed once and only when a step asks.
struct Sums {
    offered: Option<NodeSeries>,
    measured: Option<NodeSeries>,
}

impl Sums {
    fn new(sc: &Scenario, series: &Series) -> Self {
        let wants = |q: Quantity| {
            sc.timeline
                .iter()
                .filter_map(|st| st.expect.as_ref())
                .any(|x| x.nodes.iter().any(|n| n.of == q))
        };
        Self {
            offered: wants(Quantity::Offered).then(|| node_sums(sc, series, false)),
            measured: wants(Quantity::Measured).then(|| node_sums(sc, series, true)),
        }
    }

    fn at(&self, q: Quantity, node: usize, t: u64) -> [u32; 3] {
        let s = match q {
            Quantity::Offered => &self.offered,
            Quantity::Measured => &self.measured,
        };
        s.as_ref()
            .and_then(|s| s.get(node))
            .map_or([0; 3], |points| at(points, t, [0; 3]))
    }
}

/// Watts per deciamp per phase at the nominal 230 V: power in W is 23
/// times the sum of the phases' deciamps.
const W_PER_DA: u64 = 23;

/// Watt-microseconds in a watt-hour.
const WUS_PER_WH: u64 = 3_600_000_000;

/// From `t_us` on, the car on a station has taken `e_wus` watt-microseconds
/// since it was plugged in, and takes `p_w` watts.
#[derive(Debug, Clone, Copy)]
struct EnergyPoint {
    t_us: u64,
    e_wus: u64,
    p_w: u64,
}

/// The energy a station's car took since it was plugged in (its pilot
/// last left state A, or was first seen out of it), from the fixture's
/// measured current at 230 V on each phase: back to 0 at each plug-in,
/// kept after the car leaves until the next one plugs in.
fn energy_series(series: &Series, i: usize) -> Vec<EnergyPoint> {
    let measured = &series.measured[i];
    let pilot = &series.pilot[i];
    let mut times: Vec<u64> = measured
        .iter()
        .map(|p| p.0)
        .chain(pilot.iter().map(|p| p.0))
        .collect();
    times.sort_unstable();
    times.dedup();
    let plugged = |t: u64| {
        let k = pilot.partition_point(|p| p.0 <= t);
        k.checked_sub(1)
            .and_then(|k| pilot[k].1)
            .is_some_and(|s| s != PilotState::A)
    };
    let mut out: Vec<EnergyPoint> = Vec::with_capacity(times.len());
    let mut was_plugged = false;
    for t in times {
        let now = plugged(t);
        let e_wus = match out.last() {
            Some(p) if was_plugged || !now => p
                .e_wus
                .saturating_add(p.p_w.saturating_mul(t.saturating_sub(p.t_us))),
            _ => 0,
        };
        let da: u64 = at(measured, t, [0; 3]).iter().map(|&d| u64::from(d)).sum();
        out.push(EnergyPoint {
            t_us: t,
            e_wus,
            p_w: da.saturating_mul(W_PER_DA),
        });
        was_plugged = now;
    }
    out
}

/// The energy at `t`, watt-microseconds.
fn energy_at(points: &[EnergyPoint], t: u64) -> u64 {
    match points.partition_point(|p| p.t_us <= t) {
        0 => 0,
        k => {
            let p = points[k - 1];
            p.e_wus
                .saturating_add(p.p_w.saturating_mul(t.saturating_sub(p.t_us)))
        }
    }
}

/// The instants in `(start, end)` where the energy crosses into or out of
/// `b`: the first microsecond at or over its minimum and over its maximum.
fn energy_crossings(points: &[EnergyPoint], b: EnergyBound, start: u64, end: u64) -> Vec<u64> {
    let lo = u64::from(b.min_wh).saturating_mul(WUS_PER_WH);
    let hi = u64::from(b.max_wh)
        .saturating_mul(WUS_PER_WH)
        .saturating_add(1);
    let mut out = Vec::new();
    for (k, p) in points.iter().enumerate() {
        if p.p_w == 0 {
            continue;
        }
        let next = points.get(k + 1).map_or(end, |n| n.t_us);
        for target in [lo, hi] {
            if p.e_wus < target {
                let t = p.t_us.saturating_add((target - p.e_wus).div_ceil(p.p_w));
                if t < next && t > start && t < end {
                    out.push(t);
                }
            }
        }
    }
    out
}

fn kwh(e_wus: u64) -> String {
    format!("{:.3}", e_wus as f64 / WUS_PER_WH as f64 / 1_000.0)
}

/// The car's state at `t`, from its pilot and contactor.
fn car_state(series: &Series, i: usize, t: u64) -> Option<CarState> {
    let pilot = &series.pilot[i];
    let k = pilot.partition_point(|p| p.0 <= t);
    let state = k.checked_sub(1).and_then(|k| pilot[k].1)?;
    let closed = at(&series.contactor[i], t, false);
    match state {
        PilotState::A => Some(CarState::Unplugged),
        PilotState::B => Some(CarState::Connected),
        PilotState::C | PilotState::D if closed => Some(CarState::Charging),
        PilotState::C | PilotState::D => Some(CarState::Waiting),
        _ => None,
    }
}

fn state_word(s: Option<CarState>) -> &'static str {
    s.map_or(
        "in no car state (pilot E or F, or not seen yet)",
        CarState::word,
    )
}

/// One part of an expectation: what it asks for, and what is seen at `t`
/// (`Err` with the seen text when it does not hold).
struct Judge<'a> {
    sc: &'a Scenario,
    series: &'a Series,
    sums: &'a Sums,
    /// Per station, its car's energy, when a step asks.
    energy: Vec<Option<Vec<EnergyPoint>>>,
}

impl Judge<'_> {
    fn station(&self, i: usize) -> String {
        format!("st{}", self.sc.stations[i].id)
    }

    fn node_phase(&self, n: &NodeExpectation) -> String {
        let name = &self.sc.nodes[n.node].name;
        match n.phase {
            Some(p) => format!("node {name} L{}", p + 1),
            None => format!("node {name} (most loaded phase)"),
        }
    }

    fn offer(&self, i: usize, t: u64) -> u32 {
        u32::from(at(&self.series.offered[i], t, 0))
    }

    /// What `x` asks for, in words.
    fn wanted(&self, x: &Expectation) -> String {
        let mut parts = Vec::new();
        if !x.offers.is_empty() {
            if let Some(v) = x.exact_offers() {
                let v: Vec<u16> = v
                    .iter()
                    .map(|&d| u16::try_from(d).unwrap_or(u16::MAX))
                    .collect();
                parts.push(fmt_list(self.sc, &v));
            } else {
                let b: Vec<String> = x
                    .offers
                    .iter()
                    .enumerate()
                    .map(|(i, b)| format!("{} {}", self.station(i), b.text()))
                    .collect();
                parts.push(format!("[{}] A", b.join(", ")));
            }
        }
        for n in &x.nodes {
            parts.push(format!(
                "{} {} sum {} A",
                self.node_phase(n),
                n.of.word(),
                n.bound.text()
            ));
        }
        if let Some(sp) = &x.spread {
            let ids: Vec<String> = sp.stations.iter().map(|&i| self.station(i)).collect();
            parts.push(format!(
                "spread of {} at most {} A",
                ids.join(", "),
                amps(i64::from(sp.max_da))
            ));
        }
        for c in &x.cars {
            let mut p = format!("{} car", self.station(c.station));
            if !c.draw.is_any() {
                p.push_str(&format!(" draw {} A", c.draw.text()));
            }
            if let Some(s) = c.state {
                p.push_str(&format!(" {}", s.word()));
            }
            if let Some(e) = c.energy {
                p.push_str(&format!(" energy {} kWh since plug-in", e.text()));
            }
            parts.push(p);
        }
        parts.join("; ")
    }

    /// What is seen at `t`, in the same order as [`Judge::wanted`].
    fn seen(&self, x: &Expectation, t: u64) -> String {
        let mut parts = Vec::new();
        if !x.offers.is_empty() {
            let v: Vec<u16> = (0..x.offers.len())
                .map(|i| at(&self.series.offered[i], t, 0))
                .collect();
            parts.push(fmt_list(self.sc, &v));
        }
        for n in &x.nodes {
            parts.push(format!(
                "{} {} sum {} A",
                self.node_phase(n),
                n.of.word(),
                amps(i64::from(self.node_value(n, t)))
            ));
        }
        if let Some(sp) = &x.spread {
            parts.push(format!(
                "spread {} A",
                amps(i64::from(self.spread(&sp.stations, t)))
            ));
        }
        for c in &x.cars {
            let mut p = format!(
                "{} car draw {} A {}",
                self.station(c.station),
                amps(i64::from(self.draw(c.station, t))),
                state_word(car_state(self.series, c.station, t))
            );
            if c.energy.is_some() {
                p.push_str(&format!(
                    " energy {} kWh",
                    kwh(self.energy_wus(c.station, t))
                ));
            }
            parts.push(p);
        }
        parts.join("; ")
    }

    fn node_value(&self, n: &NodeExpectation, t: u64) -> u32 {
        let v = self.sums.at(n.of, n.node, t);
        n.phase.map_or_else(
            || v.into_iter().max().unwrap_or(0),
            |p| v[usize::from(p % 3)],
        )
    }

    fn spread(&self, stations: &[usize], t: u64) -> u32 {
        let v: Vec<u32> = stations.iter().map(|&i| self.offer(i, t)).collect();
        let hi = v.iter().copied().max().unwrap_or(0);
        let lo = v.iter().copied().min().unwrap_or(0);
        hi - lo
    }

    /// The car's draw: its station's measured current, most loaded phase.
    fn draw(&self, i: usize, t: u64) -> u32 {
        let m = at(&self.series.measured[i], t, [0; 3]);
        u32::from(m.into_iter().max().unwrap_or(0))
    }

    /// The car's energy since plug-in at `t`, watt-microseconds.
    fn energy_wus(&self, i: usize, t: u64) -> u64 {
        self.energy
            .get(i)
            .and_then(Option::as_ref)
            .map_or(0, |p| energy_at(p, t))
    }

    /// Whether all of `x` holds at `t` (`tol`: the reference's give).
    fn holds(&self, x: &Expectation, t: u64, tol: u32) -> bool {
        let widen = |b: &Bound| Bound {
            min_da: b.min_da.saturating_sub(tol),
            max_da: b.max_da.saturating_add(tol),
        };
        x.offers
            .iter()
            .enumerate()
            .all(|(i, b)| widen(b).contains(self.offer(i, t)))
            && x.nodes
                .iter()
                .all(|n| n.bound.contains(self.node_value(n, t)))
            && x.spread
                .as_ref()
                .is_none_or(|sp| self.spread(&sp.stations, t) <= sp.max_da)
            && x.cars.iter().all(|c| {
                c.draw.contains(self.draw(c.station, t))
                    && c.state
                        .is_none_or(|s| car_state(self.series, c.station, t) == Some(s))
                    && c.energy.is_none_or(|b| {
                        let e = self.energy_wus(c.station, t);
                        e >= u64::from(b.min_wh).saturating_mul(WUS_PER_WH)
                            && e <= u64::from(b.max_wh).saturating_mul(WUS_PER_WH)
                    })
            })
    }

    /// Every time in `(start, end)` where something `x` reads changes.
    fn change_points(&self, x: &Expectation, start: u64, end: u64) -> Vec<u64> {
        let inside = |t: &u64| *t > start && *t < end;
        let mut times: Vec<u64> = vec![start];
        for offers in &self.series.offered {
            times.extend(offers.iter().map(|p| p.0).filter(inside));
        }
        let measured = !x.cars.is_empty() || x.nodes.iter().any(|n| n.of == Quantity::Measured);
        if measured {
            for m in &self.series.measured {
                times.extend(m.iter().map(|p| p.0).filter(inside));
            }
            times.extend(self.series.meter.iter().map(|p| p.0).filter(inside));
        }
        for c in &x.cars {
            if let (Some(b), Some(Some(points))) = (c.energy, self.energy.get(c.station)) {
                times.extend(energy_crossings(points, b, start, end));
            }
            times.extend(
                self.series.pilot[c.station]
                    .iter()
                    .map(|p| p.0)
                    .filter(inside),
            );
            times.extend(
                self.series.contactor[c.station]
                    .iter()
                    .map(|p| p.0)
                    .filter(inside),
            );
        }
        times.sort_unstable();
        times.dedup();
        times
    }
}

/// `failover = false`: expectations after ordinary steps; `true`: after
/// faults and repairs. Each must hold from at most `within` after its step
/// to the end of its window (the next step, or `until`).
pub fn convergence(sc: &Scenario, series: &Series, failover: bool) -> CheckResult {
    let name = if failover { "failover" } else { "convergence" };
    let mut c = CheckResult::new(name);
    let sums = Sums::new(sc, series);
    let energy = (0..sc.stations.len())
        .map(|i| {
            sc.timeline
                .iter()
                .filter_map(|st| st.expect.as_ref())
                .any(|x| x.cars.iter().any(|c| c.station == i && c.energy.is_some()))
                .then(|| energy_series(series, i))
        })
        .collect();
    let judge = Judge {
        sc,
        series,
        sums: &sums,
        energy,
    };
    let mut slowest: Option<(u64, usize)> = None;
    let mut checked = 0;
    let mut settle_times = Vec::new();
    for (k, step) in sc.timeline.iter().enumerate() {
        let Some(exp) = &step.expect else { continue };
        let is_failover = step.action.is_fault()
            || matches!(
                step.action,
                Action::Repair | Action::Reboot(_) | Action::Meter(_)
            );
        if is_failover != failover {
            continue;
        }
        checked += 1;
        let start = step.at_us;
        let end = exp
            .until_us
            .unwrap_or_else(|| sc.timeline.get(k + 1).map_or(series.end_us, |nx| nx.at_us))
            .min(series.end_us)
            .max(start);
        let tol = u32::from(exp.from_reference);
        let times = judge.change_points(exp, start, end);
        // The settle time: after the last change point that did not match.
        let last_bad = times
            .iter()
            .rev()
            .find(|&&t| !judge.holds(exp, t, tol))
            .copied();
        let settled_at = match last_bad {
            None => Some(start),
            Some(b) => times.iter().find(|&&t| t > b).copied(),
        };
        let window = match exp.until_us {
            Some(u) => format!(", held until {}", when(u)),
            None => String::new(),
        };
        match settled_at {
            Some(t) if t - start <= exp.within_us => {
                settle_times.push(s(t - start));
                if slowest.is_none_or(|(d, _)| t - start > d) {
                    slowest = Some((t - start, step.line));
                }
            }
            Some(t) => c.fail(format!(
                "step at {} (line {}, {}): settled only after {:.1} s, deadline {:.1} s; expected {}{window}; seen {} at {}",
                when(start),
                step.line,
                crate::runner::describe(sc, &step.action),
                s(t - start),
                s(exp.within_us),
                judge.wanted(exp),
                judge.seen(exp, last_bad.unwrap_or(start)),
                when(last_bad.unwrap_or(start)),
            )),
            None => {
                let bad = last_bad.unwrap_or(start);
                c.fail(format!(
                    "step at {} (line {}, {}): never settled before {}; expected {}{window}, seen {}{}",
                    when(start),
                    step.line,
                    crate::runner::describe(sc, &step.action),
                    when(end),
                    judge.wanted(exp),
                    judge.seen(exp, end.saturating_sub(1)),
                    if bad > start {
                        format!(" (last broken at {})", when(bad))
                    } else {
                        String::new()
                    }
                ));
            }
        }
    }
    if checked == 0 {
        return CheckResult::skip(
            name,
            if failover {
                "no fault step has an expectation"
            } else {
                "no step has an expectation"
            },
        );
    }
    c.figure("steps_checked", checked);
    c.figure("slowest_s", slowest.map_or(0.0, |(d, _)| s(d)));
    c.figure("settle_s", settle_times);
    c
}

/// No offer moves by more than 0.5 A and back within two sharing cycles.
pub fn no_flapping(sc: &Scenario, series: &Series) -> CheckResult {
    let mut c = CheckResult::new("no-flapping");
    let window = 2 * sc.sharing.cycle_us;
    let mut reversals = 0usize;
    for (i, offers) in series.offered.iter().enumerate() {
        for w in offers.windows(3) {
            let ((_, a), (t1, b), (t2, c3)) = (w[0], w[1], w[2]);
            let out = i32::from(b) - i32::from(a);
            let back = i32::from(c3) - i32::from(b);
            // Pausing (to 0) and resuming is not flapping: the pause has its
            // own minimum; faults take the offer to 0 too.
            let nonzero = a > 0 && b > 0 && c3 > 0;
            if nonzero
                && out.abs() > 5
                && back.abs() > 5
                && out.signum() != back.signum()
                && t2 - t1 <= window
            {
                reversals += 1;
                c.fail(format!(
                    "st{} offer moved {} -> {} -> {} A within {:.1} s (at {})",
                    sc.stations[i].id,
                    amps(i64::from(a)),
                    amps(i64::from(b)),
                    amps(i64::from(c3)),
                    s(t2 - t1),
                    when(t1)
                ));
            }
        }
    }
    c.figure("reversals", reversals);
    c
}
