//! Golden traces: the canonical trace of each scenario, kept as an insta
//! snapshot beside the scenario (`fixtures/scenarios/snapshots/<name>.snap`).
//!
//! The test runner compares through insta (so `cargo insta review` shows a
//! readable diff and accepts only what a person accepted); the CLI reads the
//! same files to report a mismatch and write the diff, and never writes a
//! snapshot. Real benches compare with [`TimingTolerance`]: every line must
//! be the same except its time, which may differ by a stated number of ms;
//! lines whose times lie within that tolerance of each other may come in
//! either order (two stations' lines reach a real bench over separate wires,
//! so nothing orders them closer than the tolerance). With no tolerance
//! (the virtual bench) the order is exact.

use std::path::{Path, PathBuf};

use insta::internals::SnapshotContents;
use insta::{Comparator, Snapshot};

/// Where a scenario's golden trace lives.
#[must_use]
pub fn snapshot_dir(scenario_path: &Path) -> PathBuf {
    scenario_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("snapshots")
}

/// The snapshot file of a scenario named `name`.
#[must_use]
pub fn snapshot_file(scenario_path: &Path, name: &str) -> PathBuf {
    snapshot_dir(scenario_path).join(format!("{name}.snap"))
}

/// The result of a golden comparison.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum GoldenOutcome {
    Match,
    /// The trace differs; a unified diff was written here.
    Differs {
        diff: String,
        first_line: usize,
    },
    /// No golden trace yet.
    Missing,
    NotChecked {
        reason: String,
    },
}

/// The body of an insta `.snap` file (after its metadata header).
#[must_use]
pub fn snapshot_body(file_text: &str) -> &str {
    // ---\n<yaml>\n---\n<body>
    let rest = file_text.strip_prefix("---\n").unwrap_or(file_text);
    match rest.find("\n---\n") {
        Some(i) => &rest[i + 5..],
        None => rest,
    }
}

/// Whether two canonical traces match, times within `tolerance_ms`.
#[must_use]
pub fn traces_match(reference: &str, test: &str, tolerance_ms: u64) -> bool {
    first_difference(reference, test, tolerance_ms).is_none()
}

/// A trace line's time (ms) and the rest, if it starts with a time.
fn timed(l: &str) -> Option<(u64, &str)> {
    let (num, rest) = l.trim_start().split_once(' ')?;
    Some((num.parse().ok()?, rest))
}

/// The 1-based line of the first difference, if any: the first reference
/// line the test trace has no match for, or the first test line left over.
/// A timed line matches a test line with the same text whose time is within
/// `tolerance_ms`, searched among the test lines not yet matched whose times
/// are within the tolerance (so lines closer than the tolerance may be
/// reordered; with no tolerance only lines at the same millisecond, and
/// [`traces_match`] with 0 is exact). Untimed lines (`#` headers) must be in
/// place.
#[must_use]
pub fn first_difference(reference: &str, test: &str, tolerance_ms: u64) -> Option<usize> {
    let a: Vec<&str> = reference.trim_end().lines().collect();
    let b: Vec<&str> = test.trim_end().lines().collect();
    if tolerance_ms == 0 {
        // Exact: the virtual bench is deterministic to the line.
        return (0..a.len().max(b.len()))
            .find(|&k| a.get(k) != b.get(k))
            .map(|k| k + 1);
    }
    let mut used = vec![false; b.len()];
    // The first test line not yet matched.
    let mut first_free = 0;
    for (k, x) in a.iter().enumerate() {
        while first_free < b.len() && used[first_free] {
            first_free += 1;
        }
        let found = match timed(x) {
            None => (b.get(first_free) == Some(x)).then_some(first_free),
            Some((tx, rx)) => {
                let mut hit = None;
                for j in first_free..b.len() {
                    if used[j] {
                        continue;
                    }
                    let Some((ty, ry)) = timed(b[j]) else {
                        break;
                    };
                    if ty > tx.saturating_add(tolerance_ms) {
                        break;
                    }
                    if ry == rx && tx.abs_diff(ty) <= tolerance_ms {
                        hit = Some(j);
                        break;
                    }
                }
                hit
            }
        };
        let Some(j) = found else {
            return Some(k + 1);
        };
        used[j] = true;
        // A test line passed over must itself be within the tolerance of
        // this one, or it is out of place.
        if let (Some(first), Some((tx, _))) = (b.get(first_free), timed(x)) {
            if !used[first_free] {
                if let Some((tf, _)) = timed(first) {
                    if tf.saturating_add(tolerance_ms) < tx {
                        return Some(k + 1);
                    }
                }
            }
        }
    }
    used.iter().position(|u| !u).map(|j| j.min(a.len()) + 1)
}

/// Compare a run's canonical trace with its golden file (the CLI's path; it
/// never writes the golden file).
#[must_use]
pub fn compare(
    scenario_path: &Path,
    name: &str,
    canonical: &str,
    tolerance_ms: u64,
) -> GoldenOutcome {
    let file = snapshot_file(scenario_path, name);
    let Ok(text) = std::fs::read_to_string(&file) else {
        return GoldenOutcome::Missing;
    };
    let golden = snapshot_body(&text);
    match first_difference(golden, canonical, tolerance_ms) {
        None => GoldenOutcome::Match,
        Some(line) => {
            let diff = similar::TextDiff::from_lines(golden.trim_end(), canonical.trim_end())
                .unified_diff()
                .context_radius(3)
                .header(&format!("golden {}", file.display()), "this run")
                .to_string();
            GoldenOutcome::Differs {
                diff,
                first_line: line,
            }
        }
    }
}

/// insta comparator for traces from real benches: timings may differ by up
/// to `ms`, everything else must match.
#[derive(Debug, Clone, Copy)]
pub struct TimingTolerance {
    pub ms: u64,
}

impl Comparator for TimingTolerance {
    fn matches(&self, reference: &Snapshot, test: &Snapshot) -> bool {
        match (reference.contents(), test.contents()) {
            (SnapshotContents::Text(a), SnapshotContents::Text(b)) => {
                traces_match(&a.to_string(), &b.to_string(), self.ms)
            }
            _ => false,
        }
    }

    fn dyn_clone(&self) -> Box<dyn Comparator> {
        Box::new(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_applies_to_times_only() {
        let a = "# x\n     1000 st0 offer 16.0 A\n     2000 st0 contactor closed\n";
        let b = "# x\n     1004 st0 offer 16.0 A\n     1997 st0 contactor closed\n";
        assert!(traces_match(a, b, 5));
        assert_eq!(first_difference(a, b, 3), Some(2));
        let c = "# x\n     1000 st0 offer 16.1 A\n     2000 st0 contactor closed\n";
        assert_eq!(first_difference(a, c, 100), Some(2));
        assert_eq!(first_difference(a, "# x\n", 0), Some(2));
        assert_eq!(first_difference("# x\n", a, 5), Some(2));
    }

    #[test]
    fn lines_within_the_tolerance_may_swap_and_no_others() {
        let a = "# x\n     1000 st1 says: granted 16.0 A\n     1003 st2 says: granted 16.0 A\n     2000 st1 contactor closed\n";
        // The two grants arrive in the other order, a few ms apart.
        let b = "# x\n     1004 st2 says: granted 16.0 A\n     1005 st1 says: granted 16.0 A\n     2010 st1 contactor closed\n";
        assert!(traces_match(a, b, 50));
        // Exact comparison keeps the order.
        assert_eq!(first_difference(a, b, 0), Some(2));
        // Swapped lines further apart than the tolerance differ.
        let c = "# x\n     1100 st2 says: granted 16.0 A\n     1000 st1 says: granted 16.0 A\n     2000 st1 contactor closed\n";
        assert!(!traces_match(a, c, 50));
        // A missing or an extra line differs, wherever it is.
        let d = "# x\n     1000 st1 says: granted 16.0 A\n     2000 st1 contactor closed\n";
        assert_eq!(first_difference(a, d, 50), Some(3));
        let e = "# x\n     1000 st1 says: granted 16.0 A\n     1003 st2 says: granted 16.0 A\n     1500 st3 pwm off\n     2000 st1 contactor closed\n";
        assert_eq!(first_difference(a, e, 50), Some(4));
    }

    #[test]
    fn lines_within_the_tolerance_may_come_in_either_order() {
        let a = "# x\n     1000 st1 says: granted 32.0 A\n     1000 st1 pilot C\n     1008 st1 offer 32.0 A\n";
        // A station line and a fixture line of the same instant, swapped.
        let b = "# x\n      998 st1 pilot C\n     1003 st1 says: granted 32.0 A\n     1009 st1 offer 32.0 A\n";
        assert_eq!(first_difference(a, b, 50), None);
        assert_eq!(
            first_difference(a, b, 0),
            Some(2),
            "the virtual bench is exact"
        );
        // Out of the tolerance, a swap is a difference.
        let c = "# x\n      900 st1 pilot C\n     1000 st1 says: granted 32.0 A\n     1008 st1 offer 32.0 A\n";
        // (the line of the run left without its match: 900 ms is 100 ms
        // from the reference's pilot line)
        assert_eq!(first_difference(a, c, 50), Some(2));
        // A missing line and an extra line are differences.
        let d = "# x\n     1000 st1 says: granted 32.0 A\n     1008 st1 offer 32.0 A\n";
        assert_eq!(first_difference(a, d, 50), Some(3));
        let e = format!("{a}     2000 st1 contactor closed\n");
        assert_eq!(first_difference(a, &e, 50), Some(5));
    }

    #[test]
    fn snapshot_body_skips_the_header() {
        let f = "---\nsource: tests/scenarios.rs\nexpression: trace\n---\n# sharebench trace\n";
        assert_eq!(snapshot_body(f), "# sharebench trace\n");
    }
}
