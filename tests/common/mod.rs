//! What the corpus tests (`scenarios`, `pil`) share: judging one run by its
//! verdict, its checks and its golden trace (through insta, in the snapshot
//! files `cargo insta review` reads).

use std::path::Path;

use harness::golden::snapshot_dir;
use harness::runner::{ScenarioRun, Verdict};
use harness::scenario::Scenario;

/// Why `run` of `sc` (loaded from `path`) fails, empty if it passes: a run
/// that did not finish, each failing check (a known violation that did not
/// fail included), and a golden trace that differs. `tolerance_ms`: the
/// timing tolerance of a real-time bench; `None` compares exactly.
pub fn problems(
    path: &Path,
    sc: &Scenario,
    run: &ScenarioRun,
    tolerance_ms: Option<u64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if matches!(run.verdict, Verdict::Incomplete | Verdict::Refused) {
        problems.push(format!(
            "{}: {}",
            if run.verdict == Verdict::Refused {
                "refused"
            } else {
                "incomplete"
            },
            run.trace.incomplete.clone().unwrap_or_default()
        ));
    }
    for c in run.checks.iter().filter(|c| !c.ok()) {
        if c.known_violation {
            problems.push(format!(
                "{}: expected to fail here (known violation) but passed",
                c.name
            ));
        }
        for f in &c.failures {
            problems.push(format!("{}: {f}", c.name));
        }
    }
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(snapshot_dir(path));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_input_file(path);
    if let Some(ms) = tolerance_ms {
        settings.set_comparator(Box::new(harness::golden::TimingTolerance { ms }));
    }
    let canonical = run.trace.golden_text(sc.golden_summary);
    let golden = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        settings.bind(|| insta::assert_snapshot!(sc.name.clone(), canonical));
    }));
    if golden.is_err() {
        problems.push(format!(
            "golden trace of {} differs (review with `cargo insta review`)",
            sc.name
        ));
    }
    problems
}
