//! IEC 61851-1 conformance of every station, from what the fixture saw:
//! the timing rows of DOMAIN.md section 2, PWM frequency, valid duty and
//! offers within the station's rating. Contactor times are measured at the
//! relay sense, so each row's budget adds the contactor's own mechanical
//! time from the scenario's `[bench]`.

use rig::iec::PilotState;

use super::{s, when, CheckResult};
use crate::scenario::Scenario;
use crate::trace::{at, Series};
use crate::units::amps;

const MS: u64 = 1_000;
/// Reports of one duty change by the fixture's averaging come within this.
const CAPTURE_SETTLE_US: u64 = 100 * MS;

/// A sensed pilot state for a message: its letter, or "unclassified".
fn state_name(s: Option<PilotState>) -> String {
    s.map_or_else(|| "unclassified".into(), |s| s.to_string())
}

pub fn conformance(sc: &Scenario, series: &Series) -> CheckResult {
    let mut c = CheckResult::new("iec-61851");
    if !sc.expect.iec {
        return CheckResult::skip("iec-61851", "iec = false in the scenario");
    }
    let open_mech = sc.bench.contactor_open_us;
    let close_mech = sc.bench.contactor_close_us;
    let mut worst_open_after_b = 0u64;
    let mut worst_close_after_c = 0u64;
    let mut min_f_hold: Option<u64> = None;
    let mut freq_range = (u32::MAX, 0u32);
    for (i, st) in sc.stations.iter().enumerate() {
        let name = format!("st{}", st.id);
        let pilot = &series.pilot[i];
        let state_at = |t: u64| -> Option<PilotState> {
            match pilot.partition_point(|p| p.0 <= t) {
                0 => None,
                k => pilot[k - 1].1,
            }
        };
        let low_at = |t: u64| -> i32 {
            match pilot.partition_point(|p| p.0 <= t) {
                0 => -12_000,
                k => pilot[k - 1].3,
            }
        };

        // PWM frequency and duty.
        for &(t, d) in &series.duty[i] {
            let Some((duty, freq)) = d else { continue };
            freq_range = (freq_range.0.min(freq), freq_range.1.max(freq));
            if !(980_000..=1_020_000).contains(&freq) {
                c.fail(format!(
                    "{name} at {}: PWM at {:.1} Hz, expected 980-1020 Hz",
                    when(t),
                    f64::from(freq) / 1e3
                ));
            }
            let digital = (450..=550).contains(&duty);
            if !digital && !(800..=9_700).contains(&duty) {
                c.fail(format!(
                    "{name} at {}: duty {}.{:02} % is not a valid offer (8-97 %, or 5 % digital)",
                    when(t),
                    duty / 100,
                    duty % 100
                ));
            }
        }
        for &(t, o) in &series.offered[i] {
            if o > st.cap_da() {
                c.fail(format!(
                    "{name} at {}: offered {} A over its {} A rating",
                    when(t),
                    amps(i64::from(o)),
                    amps(i64::from(st.cap_da()))
                ));
            }
        }

        // Duty pacing: an increase comes at least 5 s after the previous
        // change. The fixture averages the duty over up to 32 periods, so a
        // small step can be reported as a few refinements within tens of
        // ms: changes closer than CAPTURE_SETTLE are one change.
        let offers = &series.offered[i];
        let mut changes: Vec<(u64, u16, u16)> = Vec::new(); // (t, from, to)
        for w in offers.windows(2) {
            let ((_, a), (t1, b)) = (w[0], w[1]);
            if a == b {
                continue; // a duty refinement that offers the same current
            }
            match changes.last_mut() {
                Some(last) if t1 - last.0 <= CAPTURE_SETTLE_US => last.2 = b,
                _ => changes.push((t1, a, b)),
            }
        }
        for w in changes.windows(2) {
            let ((t0, _, _), (t1, a, b)) = (w[0], w[1]);
            if b > a && a > 0 && t1 - t0 + 50 * MS < 5_000 * MS {
                c.fail(format!(
                    "{name} at {}: offer raised {} -> {} A only {:.2} s after the previous change; at most one change per 5 s",
                    when(t1),
                    amps(i64::from(a)),
                    amps(i64::from(b)),
                    s(t1 - t0)
                ));
            }
        }

        // Contactor closes: only with PWM on, in C (or D), diode seen, within 3 s of C.
        let cont = &series.contactor[i];
        for w in cont.windows(2) {
            let ((_, was), (t, closed)) = (w[0], w[1]);
            if closed && !was {
                let cmd = t.saturating_sub(close_mech);
                let offered = at(&series.offered[i], cmd, 0);
                let state = state_at(cmd);
                if offered == 0 {
                    c.fail(format!(
                        "{name} at {}: contactor closed with no PWM offer",
                        when(t)
                    ));
                }
                if !matches!(state, Some(PilotState::C | PilotState::D)) {
                    c.fail(format!(
                        "{name} at {}: contactor closed in pilot state {}, expected C or D",
                        when(t),
                        state_name(state)
                    ));
                }
                if low_at(cmd) > -11_000 {
                    c.fail(format!(
                        "{name} at {}: contactor closed with the diode missing (low level {} mV)",
                        when(t),
                        low_at(cmd)
                    ));
                }
                // Since when were C and PWM both present?
                let since = pilot
                    .iter()
                    .rev()
                    .find(|p| p.0 <= cmd && !matches!(p.1, Some(PilotState::C | PilotState::D)))
                    .and_then(|p| pilot.iter().find(|q| q.0 > p.0).map(|q| q.0))
                    .unwrap_or(0);
                // The start of the PWM offer that was running at the command.
                let pwm_since = series.offered[i]
                    .iter()
                    .filter(|p| p.0 <= cmd)
                    .rev()
                    .take_while(|p| p.1 > 0)
                    .last()
                    .map_or(cmd, |p| p.0);
                let ready = since.max(pwm_since);
                let took = t.saturating_sub(ready);
                worst_close_after_c = worst_close_after_c.max(took.saturating_sub(close_mech));
                if took > 3_000 * MS + close_mech {
                    c.fail(format!(
                        "{name}: contactor closed {:.2} s after C with PWM (at {}), limit 3 s + {:.0} ms mechanical",
                        s(took),
                        when(t),
                        close_mech as f64 / 1e3
                    ));
                }
            }
        }

        // A contactor that did not open in time is acceptable only if the
        // station saw it and said so, within a second of the deadline: F on
        // the pilot, or (when the pilot cannot show F: shorted) its own
        // report of a welded contact.
        // A weld already reported since the contact last closed counts
        // too: a station says it once, whatever the pilot does next.
        let weld_shown = |t: u64, limit: u64| {
            let closed_at = series.contactor[i]
                .iter()
                .rev()
                .find(|p| p.0 <= t && p.1)
                .map_or(0, |p| p.0);
            let window = |at: u64| at >= closed_at.min(t) && at <= limit + 1_000 * MS;
            pilot
                .iter()
                .any(|p| window(p.0) && p.1 == Some(PilotState::F))
                || series.weld_reported[i].iter().any(|&at| window(at))
        };
        // Whether the station is unpowered at `t` (crashed, not yet
        // rebooted): it can neither open a welded contact nor show F, and
        // no row asks a station without power to act.
        let unpowered = |t: u64| {
            let mut down = false;
            for step in sc.timeline.iter().take_while(|s| s.at_us <= t) {
                match step.action {
                    crate::scenario::Action::Crash(k) if k == i => down = true,
                    crate::scenario::Action::Reboot(k) if k == i => down = false,
                    _ => {}
                }
            }
            down
        };
        // Opens: within 100 ms of C->B or ->A, 3 s of E, 6 s of PWM off.
        for k in 0..pilot.len() {
            let (t, state, _, _) = pilot[k];
            let closed_then = at(cont, t, false);
            if !closed_then || unpowered(t) {
                continue;
            }
            let budget = match state {
                Some(PilotState::A | PilotState::B) => 100 * MS,
                Some(PilotState::E) | None => 3_000 * MS,
                _ => continue,
            };
            let opened = cont.iter().find(|p| p.0 >= t && !p.1).map(|p| p.0);
            let limit = t + budget + open_mech;
            // A contactor that did not open in time is acceptable only if
            // the station saw it and said so: state F (a welded contact).
            let f_shown = weld_shown(t, limit);
            match opened {
                Some(o) if o <= limit && budget == 100 * MS => worst_open_after_b = worst_open_after_b.max(o - t),
                Some(o) if o <= limit => {}
                _ if f_shown => {}
                Some(o) => c.fail(format!(
                    "{name}: pilot {} at {} while charging, contactor opened only at {} ({:.0} ms; limit {:.0} ms + {:.0} ms mechanical)",
                    state_name(state),
                    when(t),
                    when(o),
                    (o - t) as f64 / 1e3,
                    budget as f64 / 1e3,
                    open_mech as f64 / 1e3
                )),
                None if limit < series.end_us => c.fail(format!(
                    "{name}: pilot {} at {} while charging, contactor never opened and no fault (F) shown",
                    state_name(state),
                    when(t)
                )),
                None => {}
            }
        }
        for w in offers.windows(2) {
            let ((_, a), (t, b)) = (w[0], w[1]);
            if a > 0
                && b == 0
                && at(cont, t, false)
                && matches!(state_at(t), Some(PilotState::C | PilotState::D))
            {
                let opened = cont.iter().find(|p| p.0 >= t && !p.1).map(|p| p.0);
                let resumed = offers.iter().find(|p| p.0 > t && p.1 > 0).map(|p| p.0);
                let limit = t + 6_000 * MS + open_mech;
                // As for the rows above: a contactor that did not open is
                // acceptable only if the station saw it and said so (F for
                // a welded contact, once its open allowance has run).
                let f_shown = weld_shown(t, limit);
                let ok = opened.is_some_and(|o| o <= limit)
                    || resumed.is_some_and(|r| r <= limit)
                    || f_shown
                    || limit >= series.end_us;
                if !ok {
                    c.fail(format!("{name}: PWM removed at {} while charging, contactor still closed 6 s later", when(t)));
                }
            }
        }

        // F lasts at least 300 ms after a fault.
        for k in 0..pilot.len() {
            if pilot[k].1 == Some(PilotState::F) {
                let end = pilot.get(k + 1).map_or(series.end_us, |p| p.0);
                let held = end - pilot[k].0;
                min_f_hold = Some(min_f_hold.map_or(held, |m: u64| m.min(held)));
                if held < 300 * MS && end < series.end_us {
                    c.fail(format!(
                        "{name}: state F at {} held only {:.0} ms, at least 300 ms after a fault",
                        when(pilot[k].0),
                        held as f64 / 1e3
                    ));
                }
            }
        }

        // Overcurrent: a station must not let a car overdraw for long.
        let meas = &series.measured[i];
        let mut over_since: Option<u64> = None;
        let mut times: Vec<u64> = meas
            .iter()
            .map(|p| p.0)
            .chain(offers.iter().map(|p| p.0))
            .chain(cont.iter().map(|p| p.0))
            .collect();
        times.push(series.end_us);
        times.sort_unstable();
        times.dedup();
        for (k, &t) in times.iter().enumerate() {
            let until = times.get(k + 1).copied().unwrap_or(series.end_us);
            let m = at(meas, t, [0; 3]).into_iter().max().unwrap_or(0);
            let o = at(offers, t, 0);
            let over = at(cont, t, false) && u32::from(m) > u32::from(o) * 11 / 10 + 5;
            if !over {
                over_since = None;
                continue;
            }
            let since = *over_since.get_or_insert(t);
            if until - since > 8_000 * MS + open_mech {
                c.fail(format!(
                    "{name}: car drew {} A against {} A offered from {} and the station did not open (overcurrent protection)",
                    amps(i64::from(m)),
                    amps(i64::from(o)),
                    when(since)
                ));
                over_since = None;
            }
        }
    }
    c.figure("worst_open_after_b_ms", worst_open_after_b as f64 / 1e3);
    c.figure("worst_close_after_c_ms", worst_close_after_c as f64 / 1e3);
    if let Some(h) = min_f_hold {
        c.figure("min_f_hold_ms", h as f64 / 1e3);
    }
    if freq_range.1 > 0 {
        c.figure("pwm_hz_min", f64::from(freq_range.0) / 1e3);
        c.figure("pwm_hz_max", f64::from(freq_range.1) / 1e3);
    }
    c
}
