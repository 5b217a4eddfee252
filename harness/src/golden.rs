//! Golden traces: the canonical trace of each scenario, kept as an insta
//! snapshot beside the scenario (`fixtures/scenarios/snapshots/<name>.snap`).
//!
//! The test runner compares through insta (so `cargo insta review` shows a
//! readable diff and accepts only what a person accepted); the CLI reads the
//! same files through insta's public [`Snapshot::from_file`] to report a
//! mismatch and write the diff, and writes one only when asked
//! (`sharebench run --bless`, see [`bless`]), in the documented `.snap`
//! format: a YAML metadata block between `---` lines, then the trace. Real
//! benches compare with [`TimingTolerance`]: every line must be the same
//! except its time, which may differ by a stated number of ms; lines whose
//! times lie within that tolerance of each other may come in either order
//! (two stations' lines reach a real bench over separate wires, so nothing
//! orders them closer than the tolerance). With no tolerance (the virtual
//! bench) the order is exact.
//!
//! A golden trace is of one seed: the scenario's own (`<name>.snap`, the one
//! `cargo test --test scenarios` checks). A run with `--seed N` for another
//! seed compares against `<name>@seed-N.snap` (see [`golden_name`]), which
//! `--bless` writes like any other; without it the golden is missing, never
//! a diff of every line against another seed's trace.

use std::path::{Path, PathBuf};

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

/// The snapshot name of `name`'s golden trace for a run of `seed`, when the
/// scenario's own seed is `own_seed`: the name itself for its own seed,
/// `<name>@seed-<seed>` for any other.
#[must_use]
pub fn golden_name(name: &str, own_seed: u64, seed: u64) -> String {
    if seed == own_seed {
        name.to_string()
    } else {
        format!("{name}@seed-{seed}")
    }
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
    /// No golden trace yet; `required` when that fails the run (`CI` is
    /// set: a golden must be reviewed and committed, never left out).
    Missing {
        required: bool,
    },
    NotChecked {
        reason: String,
    },
}

/// The trace a `.snap` file holds, read through insta's public API (its
/// metadata skipped, its text normalised as insta compares it). `Ok(None)`
/// when there is no such file.
pub fn read_golden(file: &Path) -> Result<Option<String>, String> {
    if !file.exists() {
        return Ok(None);
    }
    let snap = Snapshot::from_file(file)
        .map_err(|e| format!("failed to read golden trace {}: {e}", file.display()))?;
    match snap.as_text() {
        Some(t) => Ok(Some(t.to_string())),
        None => Err(format!(
            "golden trace {}: expected a text snapshot, found a binary one",
            file.display()
        )),
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

/// Compare a run's canonical trace with its golden file `name` (see
/// [`golden_name`]); a missing golden is `required` when that should fail
/// the run. Never writes the golden file.
#[must_use]
pub fn compare(
    scenario_path: &Path,
    name: &str,
    canonical: &str,
    tolerance_ms: u64,
) -> GoldenOutcome {
    compare_file(
        &snapshot_file(scenario_path, name),
        canonical,
        tolerance_ms,
        false,
    )
}

/// [`compare`] against the snapshot file `file`.
#[must_use]
pub fn compare_file(
    file: &Path,
    canonical: &str,
    tolerance_ms: u64,
    required: bool,
) -> GoldenOutcome {
    let golden = match read_golden(file) {
        Ok(Some(g)) => g,
        Ok(None) => return GoldenOutcome::Missing { required },
        Err(e) => {
            // An unreadable golden is a difference, not a pass: show it.
            return GoldenOutcome::Differs {
                diff: format!("{e}\n"),
                first_line: 1,
            };
        }
    };
    match first_difference(&golden, canonical, tolerance_ms) {
        None => GoldenOutcome::Match,
        Some(line) => GoldenOutcome::Differs {
            diff: unified_diff(file, &golden, canonical),
            first_line: line,
        },
    }
}

/// The unified diff from the golden trace in `file` to this run's.
#[must_use]
pub fn unified_diff(file: &Path, golden: &str, canonical: &str) -> String {
    similar::TextDiff::from_lines(golden.trim_end(), canonical.trim_end())
        .unified_diff()
        .context_radius(3)
        .header(&format!("golden {}", file.display()), "this run")
        .to_string()
}

/// Line `line` (1-based) of the golden and of this run, as a person reads
/// them in a one-line message: `(end of trace)` past either's end.
#[must_use]
pub fn lines_at(golden: &str, canonical: &str, line: usize) -> (String, String) {
    let pick = |t: &str| {
        t.trim_end()
            .lines()
            .nth(line.saturating_sub(1))
            .map_or_else(|| "(end of trace)".to_string(), |l| l.trim().to_string())
    };
    (pick(golden), pick(canonical))
}

/// Write `canonical` as the golden trace in `file`, in the `.snap` format
/// `cargo insta review` and `insta::assert_snapshot!` use: an existing
/// file keeps its metadata block and gets the new trace; a new file gets
/// the metadata the scenario tests write (`source`, `input_file`). The
/// written file is read back through insta and must hold exactly
/// `canonical`.
pub fn bless(file: &Path, scenario_path: &Path, canonical: &str) -> Result<(), String> {
    let old = match std::fs::read_to_string(file) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("failed to read {}: {e}", file.display())),
    };
    let header = match old.as_deref().and_then(metadata_block) {
        Some(h) => h.to_string(),
        None => {
            let input = scenario_path
                .file_name()
                .map(|f| format!("fixtures/scenarios/{}", f.to_string_lossy()))
                .unwrap_or_default();
            format!("---\nsource: tests/scenarios.rs\ninput_file: {input}\n---\n")
        }
    };
    let text = format!("{header}{}\n", canonical.trim_end());
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
    }
    std::fs::write(file, &text).map_err(|e| format!("failed to write {}: {e}", file.display()))?;
    match read_golden(file)? {
        Some(back) if first_difference(&back, canonical, 0).is_none() => Ok(()),
        _ => Err(format!(
            "{}: the trace read back through insta differs from the one written",
            file.display()
        )),
    }
}

/// The metadata block of a `.snap` file, `---` lines included.
fn metadata_block(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("---\n")?;
    let end = rest.find("\n---\n")?;
    Some(&text[..4 + end + 5])
}

/// insta comparator for traces from real benches: timings may differ by up
/// to `ms`, everything else must match.
#[derive(Debug, Clone, Copy)]
pub struct TimingTolerance {
    pub ms: u64,
}

impl Comparator for TimingTolerance {
    fn matches(&self, reference: &Snapshot, test: &Snapshot) -> bool {
        match (reference.as_text(), test.as_text()) {
            (Some(a), Some(b)) => traces_match(&a.to_string(), &b.to_string(), self.ms),
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

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("sharebench-golden-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_golden_is_read_through_insta_without_its_header() {
        let d = scratch("read");
        let f = d.join("x.snap");
        std::fs::write(
            &f,
            "---\nsource: tests/scenarios.rs\nexpression: trace\n---\n# sharebench trace\n     1000 st1 offer 6.0 A\n",
        )
        .unwrap();
        assert_eq!(
            read_golden(&f).unwrap().as_deref(),
            Some("# sharebench trace\n     1000 st1 offer 6.0 A")
        );
        assert_eq!(read_golden(&d.join("none.snap")), Ok(None));
    }

    #[test]
    fn bless_keeps_the_header_and_writes_what_insta_reads_back() {
        let d = scratch("bless");
        let f = d.join("s.snap");
        let sc = Path::new("fixtures/scenarios/s.toml");
        // New file: the scenario tests' metadata.
        bless(&f, sc, "# t\n     5 st1 offer 6.0 A\n").unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(
            text,
            "---\nsource: tests/scenarios.rs\ninput_file: fixtures/scenarios/s.toml\n---\n# t\n     5 st1 offer 6.0 A\n"
        );
        assert_eq!(
            compare_file(&f, "# t\n     5 st1 offer 6.0 A\n", 0, true),
            GoldenOutcome::Match
        );
        // Existing file: its own metadata stays, the trace is replaced.
        std::fs::write(
            &f,
            "---\nsource: tests/scenarios.rs\nassertion_line: 112\ninput_file: fixtures/scenarios/s.toml\n---\n# old\n",
        )
        .unwrap();
        assert!(matches!(
            compare_file(&f, "# new\n", 0, false),
            GoldenOutcome::Differs { first_line: 1, .. }
        ));
        bless(&f, sc, "# new\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "---\nsource: tests/scenarios.rs\nassertion_line: 112\ninput_file: fixtures/scenarios/s.toml\n---\n# new\n"
        );
        assert_eq!(compare_file(&f, "# new\n", 0, false), GoldenOutcome::Match);
    }

    #[test]
    fn a_missing_golden_says_whether_it_fails_the_run() {
        let d = scratch("missing");
        assert_eq!(
            compare_file(&d.join("no.snap"), "# t\n", 0, true),
            GoldenOutcome::Missing { required: true }
        );
        assert_eq!(
            compare_file(&d.join("no.snap"), "# t\n", 0, false),
            GoldenOutcome::Missing { required: false }
        );
    }

    #[test]
    fn another_seed_has_its_own_golden_name_and_the_first_difference_is_shown() {
        assert_eq!(golden_name("priority", 9, 9), "priority");
        assert_eq!(golden_name("priority", 9, 3), "priority@seed-3");
        let (g, r) = lines_at("# a\n 10 st1 x\n", "# a\n 10 st1 y\n 20 st2 z\n", 2);
        assert_eq!((g.as_str(), r.as_str()), ("10 st1 x", "10 st1 y"));
        let (g, r) = lines_at("# a\n", "# a\n 20 st2 z\n", 2);
        assert_eq!((g.as_str(), r.as_str()), ("(end of trace)", "20 st2 z"));
    }
}
