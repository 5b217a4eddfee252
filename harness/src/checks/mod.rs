//! Checks over a trace: convergence, breaker safety, failover, IEC
//! 61851-1 conformance, rotation under shortage and the scenario's own assertions. Each check reads only what the fixture measured
//! (and the scenario), puts its figures in the report, and says on failure
//! what was expected, what was seen, when, and on which station.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::scenario::Scenario;
use crate::trace::Trace;

mod assertions;
pub(crate) mod breaker;
mod convergence;
mod iec;
mod rotation;

pub use breaker::{trip_time_s, TripModel};

/// The names checks report under.
pub const CHECK_NAMES: &[&str] = &[
    "convergence",
    "failover",
    "breaker-offered",
    "breaker-measured",
    "breaker-thermal",
    "iec-61851",
    "no-flapping",
    "rotation",
    "assertions",
];

/// Most failure lines kept per check.
const MAX_FAILURES: usize = 25;

/// One check's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub passed: bool,
    /// The scenario says this check is expected to fail here (it demonstrates
    /// a hazard the firmware cannot prevent); it then passes only if it fails.
    pub known_violation: bool,
    /// Why it did not apply, if it did not.
    pub skipped: Option<String>,
    pub figures: BTreeMap<String, serde_json::Value>,
    pub failures: Vec<String>,
    /// Failures beyond those listed.
    pub more_failures: usize,
}

impl CheckResult {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            passed: true,
            known_violation: false,
            skipped: None,
            figures: BTreeMap::new(),
            failures: Vec::new(),
            more_failures: 0,
        }
    }

    fn skip(name: &'static str, why: impl Into<String>) -> Self {
        let mut c = Self::new(name);
        c.skipped = Some(why.into());
        c
    }

    fn fail(&mut self, msg: String) {
        self.passed = false;
        if self.failures.len() < MAX_FAILURES {
            self.failures.push(msg);
        } else {
            self.more_failures += 1;
        }
    }

    fn figure(&mut self, k: &str, v: impl Into<serde_json::Value>) {
        self.figures.insert(k.to_string(), v.into());
    }

    /// The verdict that counts: a known violation must be seen.
    #[must_use]
    pub fn ok(&self) -> bool {
        if self.known_violation {
            !self.passed
        } else {
            self.passed
        }
    }
}

/// Every check, in report order.
#[must_use]
pub fn run_all(sc: &Scenario, trace: &Trace) -> Vec<CheckResult> {
    let series = trace.series();
    let mut out = vec![
        convergence::convergence(sc, &series, false),
        convergence::convergence(sc, &series, true),
        convergence::no_flapping(sc, &series),
        breaker::offered(sc, &series),
        breaker::measured(sc, &series),
        breaker::thermal(sc, &series),
        iec::conformance(sc, &series),
        rotation::rotation(sc, &series),
        assertions::assertions(sc, &series, trace),
    ];
    if !sc.expect.reference_notes.is_empty() {
        let notes = sc.expect.reference_notes.join("; ");
        for c in out
            .iter_mut()
            .filter(|c| matches!(c.name, "convergence" | "failover"))
        {
            c.figure("reference", notes.clone());
        }
    }
    if trace.incomplete.is_some() {
        for c in &mut out {
            c.figure("partial_trace", true);
        }
    }
    for c in &mut out {
        c.known_violation = sc.expect.known_violations.iter().any(|k| k == c.name);
        if sc.expect.skip.iter().any(|k| k == c.name) {
            *c = CheckResult::skip(c.name, "skipped by the scenario ([expect] skip)");
        }
    }
    out
}

/// Seconds with three decimals.
pub(crate) fn s(us: u64) -> f64 {
    (us as f64 / 1_000.0).round() / 1_000.0
}

/// `t=12.345 s`.
pub(crate) fn when(us: u64) -> String {
    format!("t={:.3} s", us as f64 / 1e6)
}

#[cfg(test)]
mod tests;
