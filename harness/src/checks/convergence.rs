//! Convergence and failover: after each step, the offers reach what is
//! expected within the deadline and stay there; and nothing flaps.

use super::{s, when, CheckResult};
use crate::scenario::{Action, Scenario};
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

/// `failover = false`: expectations after ordinary steps; `true`: after
/// faults and repairs.
pub fn convergence(sc: &Scenario, series: &Series, failover: bool) -> CheckResult {
    let name = if failover { "failover" } else { "convergence" };
    let mut c = CheckResult::new(name);
    let n = sc.stations.len();
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
        let end = sc
            .timeline
            .get(k + 1)
            .map_or(series.end_us, |nx| nx.at_us)
            .max(start);
        let tol = u16::from(exp.from_reference);
        let matches = |t: u64| -> bool {
            (0..n).all(|i| {
                let o = at(&series.offered[i], t, 0);
                let ok_exact = exp.exact.as_ref().is_none_or(|e| o.abs_diff(e[i]) <= tol);
                let ok_max = exp.max.as_ref().is_none_or(|m| o <= m[i]);
                ok_exact && ok_max
            })
        };
        // Change points in the window, plus its start.
        let mut times: Vec<u64> = vec![start];
        for i in 0..n {
            times.extend(
                series.offered[i]
                    .iter()
                    .map(|p| p.0)
                    .filter(|&t| t > start && t < end),
            );
        }
        times.sort_unstable();
        times.dedup();
        // The settle time: after the last change point that did not match.
        let last_bad = times.iter().rev().find(|&&t| !matches(t)).copied();
        let settled_at = match last_bad {
            None => Some(start),
            Some(b) => times.iter().find(|&&t| t > b).copied(),
        };
        let seen_at_end: Vec<u16> = (0..n)
            .map(|i| at(&series.offered[i], end.saturating_sub(1), 0))
            .collect();
        let want = exp
            .exact
            .as_ref()
            .or(exp.max.as_ref())
            .cloned()
            .unwrap_or_default();
        let kind = if exp.exact.is_some() {
            "expected"
        } else {
            "expected at most"
        };
        match settled_at {
            Some(t) if t - start <= exp.within_us => {
                settle_times.push(s(t - start));
                if slowest.is_none_or(|(d, _)| t - start > d) {
                    slowest = Some((t - start, step.line));
                }
            }
            Some(t) => c.fail(format!(
                "step at {} (line {}, {}): settled only after {:.1} s, deadline {:.1} s; {kind} {}",
                when(start),
                step.line,
                crate::runner::describe(sc, &step.action),
                s(t - start),
                s(exp.within_us),
                fmt_list(sc, &want)
            )),
            None => c.fail(format!(
                "step at {} (line {}, {}): never settled before {}; {kind} {}, seen {}",
                when(start),
                step.line,
                crate::runner::describe(sc, &step.action),
                when(end),
                fmt_list(sc, &want),
                fmt_list(sc, &seen_at_end)
            )),
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
