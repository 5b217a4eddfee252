//! `report.json` and `junit.xml` for a whole run.
//!
//! `report.json` schema (`"schema": "sharebench-report/1"`):
//!
//! ```text
//! {
//!   "schema": "sharebench-report/1",
//!   "bench": "sim",                      // or "serial:/dev/ttyACM0@115200"
//!   "scenarios": [{
//!     "name": "...", "file": "fixtures/scenarios/x.toml", "system": "...",
//!     "seed": 1,
//!     "verdict": "pass" | "fail" | "skipped" | "incomplete",
//!     "skipped": null | "why",
//!     "incomplete": null | "why the bench stopped",
//!     "sim_seconds": 600.0, "wall_seconds": 0.12, "speedup": 5000.0 | null,
//!     "golden": {"status": "match" | "differs" | "missing" | "not-checked", ...},
//!     "checks": [{
//!       "name": "breaker-offered", "passed": true, "ok": true,
//!       "known_violation": false, "skipped": null,
//!       "figures": {"peak_ratio": 1.0, ...},
//!       "failures": ["..."], "more_failures": 0
//!     }]
//!   }],
//!   "summary": {"total": 20, "passed": 19, "failed": 1, "skipped": 0, "incomplete": 0}
//! }
//! ```
//! A check's `ok` is the verdict that counts: for a known violation (a
//! hazard the scenario demonstrates) it is `true` when the check failed.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde_json::json;

use crate::runner::{ScenarioRun, Verdict};

/// The JSON report.
#[must_use]
pub fn json(bench: &str, runs: &[ScenarioRun]) -> serde_json::Value {
    let scenarios: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            let checks: Vec<serde_json::Value> = r
                .checks
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name, "passed": c.passed, "ok": c.ok(), "known_violation": c.known_violation,
                        "skipped": c.skipped, "figures": c.figures, "failures": c.failures, "more_failures": c.more_failures,
                    })
                })
                .collect();
            json!({
                "name": r.scenario.name,
                "file": r.scenario.path.display().to_string(),
                "system": r.scenario.system,
                "seed": r.seed,
                "verdict": r.verdict,
                "skipped": r.skipped,
                "incomplete": r.trace.incomplete,
                "sim_seconds": r.sim_s,
                "wall_seconds": r.wall_s,
                "speedup": r.speedup(),
                "golden": r.golden,
                "checks": checks,
            })
        })
        .collect();
    let count = |v: Verdict| runs.iter().filter(|r| r.verdict == v).count();
    json!({
        "schema": "sharebench-report/1",
        "bench": bench,
        "scenarios": scenarios,
        "summary": {
            "total": runs.len(),
            "passed": count(Verdict::Pass),
            "failed": count(Verdict::Fail),
            "skipped": count(Verdict::Skipped),
            "incomplete": count(Verdict::Incomplete),
            "refused": count(Verdict::Refused),
        }
    })
}

/// The JUnit XML report: one test case per scenario.
pub fn junit(runs: &[ScenarioRun]) -> Result<String, String> {
    let mut report = Report::new("sharebench");
    let mut suite = TestSuite::new("scenarios");
    for r in runs {
        let status = match r.verdict {
            Verdict::Pass
                if !matches!(r.golden, Some(crate::golden::GoldenOutcome::Differs { .. })) =>
            {
                TestCaseStatus::success()
            }
            Verdict::Skipped => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(r.skipped.clone().unwrap_or_default());
                s
            }
            Verdict::Incomplete | Verdict::Refused => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(format!(
                    "{}: {}",
                    if r.verdict == Verdict::Refused {
                        "refused"
                    } else {
                        "incomplete"
                    },
                    r.trace.incomplete.clone().unwrap_or_default()
                ));
                s
            }
            _ => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let failed: Vec<&str> = r
                    .checks
                    .iter()
                    .filter(|c| !c.ok())
                    .map(|c| c.name)
                    .collect();
                let mut text = String::new();
                for c in r.checks.iter().filter(|c| !c.ok()) {
                    if c.known_violation {
                        text.push_str(&format!(
                            "{}: expected to fail here (known violation) but passed\n",
                            c.name
                        ));
                    }
                    for f in &c.failures {
                        text.push_str(&format!("{}: {f}\n", c.name));
                    }
                }
                if let Some(crate::golden::GoldenOutcome::Differs { diff, .. }) = &r.golden {
                    text.push_str("golden trace differs:\n");
                    text.push_str(diff);
                }
                let msg = if failed.is_empty() {
                    "golden trace differs".to_string()
                } else {
                    format!("failed checks: {}", failed.join(", "))
                };
                s.set_message(format!("{msg} (seed {})", r.seed));
                s.set_description(text);
                s
            }
        };
        let mut tc = TestCase::new(r.scenario.name.clone(), status);
        tc.set_classname(r.scenario.system.clone());
        tc.set_time(std::time::Duration::from_secs_f64(r.wall_s));
        suite.add_test_case(tc);
    }
    report.add_test_suite(suite);
    report
        .to_string()
        .map_err(|e| format!("failed to write junit.xml: {e}"))
}
