//! The scenario's own assertions over time (`[[assert]]`): each judged over
//! its window from what the fixture measured and what the stations
//! reported, and on failure reported with the time, the station and the
//! values seen.

use rig::iec::{read_duty, DutyReading, PilotState};

use super::breaker::node_sums;
use super::{s, when, CheckResult};
use crate::scenario::{AssertKind, Assertion, Scenario};
use crate::trace::{at, Series, Trace, What};
use crate::units::amps;

fn a(da: u32) -> String {
    amps(i64::from(da))
}

/// Every change time of some series inside `[from, to)`, with `from`.
fn times_in(all: &[&[u64]], from: u64, to: u64) -> Vec<u64> {
    let mut v: Vec<u64> = vec![from];
    for s in all {
        v.extend(s.iter().copied().filter(|&t| t > from && t < to));
    }
    v.sort_unstable();
    v.dedup();
    v
}

fn pilot_at(series: &Series, i: usize, t: u64) -> Option<PilotState> {
    let p = &series.pilot[i];
    let k = p.partition_point(|x| x.0 <= t);
    k.checked_sub(1).and_then(|k| p[k].1)
}

struct Ctx<'a> {
    sc: &'a Scenario,
    series: &'a Series,
    trace: &'a Trace,
}

impl Ctx<'_> {
    fn st(&self, i: usize) -> String {
        format!("st{}", self.sc.stations[i].id)
    }

    fn offer_times(&self, i: usize) -> Vec<u64> {
        self.series.offered[i].iter().map(|p| p.0).collect()
    }

    /// Change times of what [`Ctx::charging`] reads, per station.
    fn charging_times(&self) -> Vec<Vec<u64>> {
        let mut v: Vec<Vec<u64>> = self
            .series
            .contactor
            .iter()
            .map(|c| c.iter().map(|p| p.0).collect())
            .collect();
        v.extend((0..self.sc.stations.len()).map(|i| self.offer_times(i)));
        v
    }

    /// A station charges while its contactor is closed and it offers
    /// current (after PWM is removed the car stops drawing before the
    /// contactor opens).
    fn charging(&self, i: usize, t: u64) -> bool {
        at(&self.series.contactor[i], t, false) && at(&self.series.offered[i], t, 0) > 0
    }

    /// The failure of `x` over `[from, to)`, if it fails.
    #[allow(clippy::too_many_lines)]
    fn judge(&self, x: &Assertion, from: u64, to: u64) -> Option<String> {
        let series = self.series;
        match &x.kind {
            AssertKind::NoOfferBetween {
                above_da,
                below_da,
                stations,
            } => {
                for &i in stations {
                    let times = times_in(&[&self.offer_times(i)], from, to);
                    // The offer from a duty is 0 or at least 6 A: below 6 A
                    // is PWM that gives no current the car can read.
                    if *above_da == 0 {
                        for &t in &times {
                            let Some((bp, _)) = at(&series.duty[i], t, None) else {
                                continue;
                            };
                            if read_duty(bp) == DutyReading::Error {
                                return Some(format!(
                                    "{} PWM at {}.{:02} % duty from {} offers no valid current (IEC 61851-1 Annex A): neither 0 A nor at least 6 A",
                                    self.st(i),
                                    bp / 100,
                                    bp % 100,
                                    when(t)
                                ));
                            }
                        }
                    }
                    for t in times {
                        let o = u32::from(at(&series.offered[i], t, 0));
                        if o > *above_da && o < *below_da {
                            return Some(format!(
                                "{} offered {} A at {}, between {} A and {} A (both excluded)",
                                self.st(i),
                                a(o),
                                when(t),
                                a(*above_da),
                                a(*below_da)
                            ));
                        }
                    }
                }
                None
            }
            AssertKind::AtMostCharging { count } => {
                let ct = self.charging_times();
                let refs: Vec<&[u64]> = ct.iter().map(Vec::as_slice).collect();
                for t in times_in(&refs, from, to) {
                    let closed: Vec<usize> = (0..self.sc.stations.len())
                        .filter(|&i| self.charging(i, t))
                        .collect();
                    if closed.len() > *count {
                        let ids: Vec<String> = closed.iter().map(|&i| self.st(i)).collect();
                        return Some(format!(
                            "{} stations charging at {} ({}), at most {count} allowed",
                            closed.len(),
                            when(t),
                            ids.join(", ")
                        ));
                    }
                }
                None
            }
            AssertKind::SomeoneCharging { longer_than_us } => {
                let mut all: Vec<Vec<u64>> = self.charging_times();
                all.extend(series.pilot.iter().map(|p| p.iter().map(|x| x.0).collect()));
                let refs: Vec<&[u64]> = all.iter().map(Vec::as_slice).collect();
                let times = times_in(&refs, from, to);
                let n = self.sc.stations.len();
                let asking = |t: u64| -> Vec<usize> {
                    (0..n)
                        .filter(|&i| {
                            matches!(pilot_at(series, i, t), Some(PilotState::C | PilotState::D))
                        })
                        .collect()
                };
                let stopped = |t: u64| -> bool {
                    !asking(t).is_empty() && (0..n).all(|i| !self.charging(i, t))
                };
                let mut gap: Option<u64> = None;
                for (k, &t) in times.iter().enumerate() {
                    let next = times.get(k + 1).copied().unwrap_or(to);
                    if stopped(t) {
                        let start = *gap.get_or_insert(t);
                        if next - start > *longer_than_us {
                            let ids: Vec<String> = asking(t).iter().map(|&i| self.st(i)).collect();
                            return Some(format!(
                                "every waiting car stopped from {} for {:.1} s (allowed {:.1} s); asking: {}",
                                when(start),
                                s(next - start),
                                s(*longer_than_us),
                                ids.join(", ")
                            ));
                        }
                    } else {
                        gap = None;
                    }
                }
                None
            }
            AssertKind::NodeWithinLimit {
                node,
                longer_than_us,
            } => {
                let sums = node_sums(self.sc, series, true);
                let points = sums.get(*node)?;
                let schedule = self.sc.limit_schedule(*node);
                let times = times_in(
                    &[
                        &points.iter().map(|p| p.0).collect::<Vec<_>>(),
                        &schedule.iter().map(|p| p.0).collect::<Vec<_>>(),
                    ],
                    from,
                    to,
                );
                let mut over: Option<(u64, u32, usize)> = None;
                for (k, &t) in times.iter().enumerate() {
                    let next = times.get(k + 1).copied().unwrap_or(to);
                    let v = at(points, t, [0; 3]);
                    let limit = crate::scenario::limit_in(&schedule, t);
                    let (ph, hot) = (0..3)
                        .map(|p| (p, v[p]))
                        .max_by_key(|x| x.1)
                        .unwrap_or((0, 0));
                    if hot > limit {
                        let o = over.get_or_insert((t, hot, ph));
                        if hot > o.1 {
                            o.1 = hot;
                            o.2 = ph;
                        }
                        if next - o.0 > *longer_than_us {
                            return Some(format!(
                                "node {} measured over its {} A limit from {} for {:.1} s (allowed {:.1} s); peak {} A on L{}",
                                self.sc.nodes[*node].name,
                                a(limit),
                                when(o.0),
                                s(next - o.0),
                                s(*longer_than_us),
                                a(o.1),
                                o.2 + 1
                            ));
                        }
                    } else {
                        over = None;
                    }
                }
                None
            }
            AssertKind::FirstOfferAfterDrop { station, after } => {
                let offers = &series.offered[*station];
                let first = times_in(&[&self.offer_times(*station)], from, to)
                    .into_iter()
                    .find(|&t| at(offers, t, 0) > 0);
                let Some(first) = first else {
                    return Some(format!(
                        "{} never offered current from {} to {}",
                        self.st(*station),
                        when(from),
                        when(to)
                    ));
                };
                let other = &series.offered[*after];
                let drop = other
                    .windows(2)
                    .find(|w| w[1].0 >= from && w[1].0 < to && w[1].1 < w[0].1)
                    .map(|w| (w[1].0, w[0].1, w[1].1));
                match drop {
                    Some((t, _, _)) if t <= first => None,
                    Some((t, was, now)) => Some(format!(
                        "{} first offered {} A at {}, before {}'s offer dropped ({} -> {} A at {})",
                        self.st(*station),
                        amps(i64::from(at(offers, first, 0))),
                        when(first),
                        self.st(*after),
                        amps(i64::from(was)),
                        amps(i64::from(now)),
                        when(t)
                    )),
                    None => Some(format!(
                        "{} first offered {} A at {}, but {}'s offer never dropped",
                        self.st(*station),
                        amps(i64::from(at(offers, first, 0))),
                        when(first),
                        self.st(*after)
                    )),
                }
            }
            AssertKind::IncreaseAfterFall {
                station,
                after,
                margin_da,
            } => self.increase_after_fall(*station, *after, *margin_da, from, to),
            AssertKind::AllChargedWithin {
                stations,
                within_us,
            } => self.all_charged_within(stations, *within_us, from, to),
            AssertKind::OpensAfterOvercurrent {
                station,
                min_us,
                max_us,
                margin_da,
            } => {
                let i = *station;
                let measured: Vec<u64> = series.measured[i].iter().map(|p| p.0).collect();
                let contactor: Vec<u64> = series.contactor[i].iter().map(|p| p.0).collect();
                let times = times_in(&[&self.offer_times(i), &measured, &contactor], from, to);
                let over = |t: u64| {
                    let m = at(&series.measured[i], t, [0; 3])
                        .into_iter()
                        .max()
                        .unwrap_or(0);
                    let o = at(&series.offered[i], t, 0);
                    (u32::from(m) > u32::from(o).saturating_add(*margin_da)).then_some((m, o))
                };
                let mut start: Option<(u64, u16, u16)> = None;
                let mut prev_closed = at(&series.contactor[i], from, false);
                let mut opened = 0usize;
                for &t in &times {
                    let closed = at(&series.contactor[i], t, false);
                    if let Some((t0, m, o)) = start {
                        if prev_closed && !closed {
                            let d = t - t0;
                            if d < *min_us || d > *max_us {
                                return Some(format!(
                                    "{} contactor opened {:.3} s after an overcurrent began at {} ({} A measured against {} A offered); expected between {:.3} s and {:.3} s",
                                    self.st(i), s(d), when(t0), amps(i64::from(m)), amps(i64::from(o)), s(*min_us), s(*max_us)
                                ));
                            }
                            opened += 1;
                            start = None;
                        } else if t - t0 > *max_us {
                            // Closed past the deadline: judged below.
                            break;
                        } else if over(t).is_none() {
                            start = None;
                        }
                    }
                    if start.is_none() && closed {
                        start = over(t).map(|(m, o)| (t, m, o));
                    }
                    prev_closed = closed;
                }
                if let Some((t0, m, o)) = start {
                    if to.saturating_sub(t0) > *max_us && prev_closed {
                        return Some(format!(
                            "{} overcurrent from {} ({} A measured against {} A offered): contactor still closed after {:.3} s; expected it open between {:.3} s and {:.3} s",
                            self.st(i), when(t0), amps(i64::from(m)), amps(i64::from(o)), s(*max_us), s(*min_us), s(*max_us)
                        ));
                    }
                }
                (opened == 0).then(|| {
                    format!(
                        "{} contactor never opened on an overcurrent from {} to {}",
                        self.st(i),
                        when(from),
                        when(to)
                    )
                })
            }
            AssertKind::PausesAtLeast {
                stations,
                at_least_us,
            } => {
                for &i in stations {
                    let pilot: Vec<u64> = series.pilot[i].iter().map(|p| p.0).collect();
                    let times = times_in(&[&self.offer_times(i), &pilot], from, to);
                    let asks = |t: u64| {
                        matches!(pilot_at(series, i, t), Some(PilotState::C | PilotState::D))
                    };
                    let mut paused: Option<u64> = None;
                    let mut last = u32::from(at(&series.offered[i], from, 0));
                    for &t in &times {
                        let o = u32::from(at(&series.offered[i], t, 0));
                        if !asks(t) {
                            // It left or stopped asking: no pause to time.
                            paused = None;
                        } else if o == 0 && last > 0 {
                            paused = Some(t);
                        } else if o > 0 {
                            if let Some(p) = paused.take() {
                                if t - p < *at_least_us {
                                    return Some(format!(
                                        "{} paused at {} and was offered {} A again at {}, after {:.1} s (at least {:.1} s)",
                                        self.st(i),
                                        when(p),
                                        a(o),
                                        when(t),
                                        s(t - p),
                                        s(*at_least_us)
                                    ));
                                }
                            }
                        }
                        last = o;
                    }
                }
                None
            }
            AssertKind::Reported {
                station,
                says,
                exactly_once,
            } => {
                let id = self.sc.stations[*station].id;
                let seen: Vec<u64> = self
                    .trace
                    .entries
                    .iter()
                    .filter(|e| e.t_us >= from && e.t_us < to)
                    .filter(|e| matches!(&e.what, What::Telemetry { station, text } if *station == id && text.contains(says.as_str())))
                    .map(|e| e.t_us)
                    .collect();
                let ok = if *exactly_once {
                    seen.len() == 1
                } else {
                    !seen.is_empty()
                };
                (!ok).then(|| {
                    let at: Vec<String> = seen.iter().take(5).map(|&t| when(t)).collect();
                    format!(
                        "st{id} reported \"{says}\" {} times from {} to {}{}; expected {}",
                        seen.len(),
                        when(from),
                        when(to),
                        if at.is_empty() {
                            String::new()
                        } else {
                            format!(" (at {})", at.join(", "))
                        },
                        if *exactly_once {
                            "exactly once"
                        } else {
                            "at least once"
                        }
                    )
                })
            }
        }
    }
}

impl Ctx<'_> {
    /// The most loaded phase of `i`'s measured current at `t`.
    fn drawn(&self, i: usize, t: u64) -> u32 {
        u32::from(
            at(&self.series.measured[i], t, [0; 3])
                .into_iter()
                .max()
                .unwrap_or(0),
        )
    }

    /// `increase-after-fall`: see [`AssertKind::IncreaseAfterFall`].
    fn increase_after_fall(
        &self,
        x: usize,
        y: usize,
        margin_da: u32,
        from: u64,
        to: u64,
    ) -> Option<String> {
        let series = self.series;
        let offer = |i: usize, t: u64| u32::from(at(&series.offered[i], t, 0));
        let fallen = |t: u64| self.drawn(y, t) <= offer(y, t).saturating_add(margin_da);
        // The rises of X's offer in the window: (time, before, after).
        let mut rises = Vec::new();
        let mut last = offer(x, from.saturating_sub(1));
        for &(t, o) in series.offered[x].iter().filter(|p| p.0 >= from && p.0 < to) {
            let o = u32::from(o);
            if o > last {
                rises.push((t, last, o));
            }
            last = o;
        }
        let measured: Vec<u64> = series.measured[y].iter().map(|p| p.0).collect();
        let checkpoints = times_in(&[&self.offer_times(y), &measured], from, to);
        let mut shown = false;
        let mut was = offer(y, from.saturating_sub(1));
        for (t_cut, now) in series.offered[y]
            .iter()
            .filter(|p| p.0 >= from && p.0 < to)
            .map(|p| (p.0, u32::from(p.1)))
        {
            let before = was;
            was = now;
            // A cut the car had to come down from.
            if now >= before || fallen(t_cut) {
                continue;
            }
            let fell = checkpoints
                .iter()
                .copied()
                .find(|&t| t > t_cut && fallen(t));
            if let Some(&(t, o0, o1)) = rises
                .iter()
                .find(|r| r.0 >= t_cut && fell.is_none_or(|f| r.0 < f))
            {
                return Some(format!(
                    "{} offer rose {} -> {} A at {}, while {} (cut {} -> {} A at {}) still drew {} A, over its offer by more than {} A; it fell {}",
                    self.st(x),
                    a(o0),
                    a(o1),
                    when(t),
                    self.st(y),
                    a(before),
                    a(now),
                    when(t_cut),
                    a(self.drawn(y, t)),
                    a(margin_da),
                    fell.map_or_else(
                        || format!("not before the window's end at {}", when(to)),
                        |f| format!("only at {}", when(f))
                    )
                ));
            }
            shown |= rises.iter().any(|r| r.0 >= t_cut);
        }
        (!shown).then(|| {
            format!(
                "nothing to order from {} to {}: no cut of {}'s offer below its car's draw was followed by a rise of {}'s offer",
                when(from),
                when(to),
                self.st(y),
                self.st(x)
            )
        })
    }

    /// `all-charged-within`: see [`AssertKind::AllChargedWithin`].
    fn all_charged_within(
        &self,
        stations: &[usize],
        within_us: u64,
        from: u64,
        to: u64,
    ) -> Option<String> {
        let mut waits = 0usize;
        for &i in stations {
            let pilot: Vec<u64> = self.series.pilot[i].iter().map(|p| p.0).collect();
            let contactor: Vec<u64> = self.series.contactor[i].iter().map(|p| p.0).collect();
            let times = times_in(&[&self.offer_times(i), &pilot, &contactor], from, to);
            let asks = |t: u64| {
                matches!(
                    pilot_at(self.series, i, t),
                    Some(PilotState::C | PilotState::D)
                )
            };
            let mut since: Option<u64> = None;
            for &t in times.iter().chain(std::iter::once(&to)) {
                let end = t == to;
                let waiting = !end && asks(t) && !self.charging(i, t);
                match (since, waiting) {
                    (None, true) => {
                        since = Some(t);
                        waits += 1;
                    }
                    (Some(w), false) => {
                        since = None;
                        if t - w > within_us {
                            let how = if end {
                                format!("was still waiting at {}", when(to))
                            } else if asks(t) {
                                format!("charged only at {}", when(t))
                            } else {
                                format!("stopped asking at {} without having charged", when(t))
                            };
                            return Some(format!(
                                "{} waited from {} and {how}: {:.1} s, more than {:.1} s",
                                self.st(i),
                                when(w),
                                s(t - w),
                                s(within_us)
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        (waits == 0).then(|| {
            format!(
                "no car waited from {} to {}: nothing to time",
                when(from),
                when(to)
            )
        })
    }
}

/// Every `[[assert]]` of the scenario.
pub fn assertions(sc: &Scenario, series: &Series, trace: &Trace) -> CheckResult {
    let name = "assertions";
    if sc.assertions.is_empty() {
        return CheckResult::skip(name, "the scenario states no [[assert]]");
    }
    let mut c = CheckResult::new(name);
    let cx = Ctx { sc, series, trace };
    let mut failed = 0usize;
    for x in &sc.assertions {
        let to = x.until_us.unwrap_or(series.end_us).min(series.end_us);
        let from = x.from_us.min(to);
        if let Some(why) = cx.judge(x, from, to) {
            failed += 1;
            c.fail(format!("{} (line {}): {why}", x.kind.word(), x.line));
        }
    }
    c.figure("assertions", sc.assertions.len());
    c.figure("failed", failed);
    c
}
