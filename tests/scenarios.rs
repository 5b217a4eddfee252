//! Every scenario file in `fixtures/scenarios/` is one test: it runs on the
//! virtual bench, every check must pass, and its canonical trace must match
//! its golden snapshot (`fixtures/scenarios/snapshots/<name>.snap`).
//!
//! `cargo test --workspace` and `cargo nextest run` both run them, and test
//! filters work (`cargo test --test scenarios circuit`). Review a changed
//! golden trace with `cargo insta review`; CI never writes snapshots.
//!
//! With `SHAREBENCH_BENCH` set to a fixture (`serial:/dev/ttyACM0`,
//! `tcp:HOST:PORT`, `rfc2217://HOST:PORT`, or a bench name from
//! `SHAREBENCH_BENCHES`) the scenarios run on it instead: those that need
//! virtual-only faults are skipped, those marked `requires = "hardware"` run
//! (without a fixture they are ignored, and `cargo nextest list --ignored`
//! lists them), and golden traces are compared with a timing tolerance
//! (`SHAREBENCH_TOLERANCE_MS`, default 50) through insta's `Comparator`.
//! Tests share one bench by taking its lock one at a time, so `cargo test`
//! (threads) and `cargo nextest run` (processes) both queue on it.

use std::path::{Path, PathBuf};

use harness::bench::BenchSpec;
use harness::golden::snapshot_dir;
use harness::runner::Verdict;
use harness::scenario::Scenario;
use libtest_mimic::{Arguments, Completion, Failed, Trial};

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios");
    harness::cli::discover(&[dir]).unwrap_or_default()
}

/// The bench the tests run on, when it is not the virtual one: its name
/// (for the lock) and its fixture's line.
fn line_bench() -> Result<Option<(String, BenchSpec)>, String> {
    let Ok(text) = std::env::var("SHAREBENCH_BENCH") else {
        return Ok(None);
    };
    let spec: BenchSpec = text.parse()?;
    let inventory = harness::inventory::Inventory::from_args(None)?;
    let (fixture, _) = harness::inventory::resolve(spec.clone(), inventory.as_ref())?;
    match fixture {
        BenchSpec::Sim => Ok(None),
        BenchSpec::Qemu => Err("the qemu bench is not part of this build yet".into()),
        line => Ok(Some((spec.to_string(), line))),
    }
}

fn run_one(path: &Path) -> Result<Completion, Failed> {
    let sc = Scenario::load(path).map_err(|e| e.to_string())?;
    let (run, tolerance_ms) = match line_bench()? {
        None if sc.requires_hardware => {
            return Ok(Completion::ignored_with(
                "needs a bench fixture: set SHAREBENCH_BENCH (serial:PORT, tcp:HOST:PORT, rfc2217://HOST:PORT or a bench name)",
            ));
        }
        None => (
            harness::cli::run_sim(&sc, None).map_err(|e| e.to_string())?,
            None,
        ),
        Some((name, line)) => {
            if sc.needs_sim() {
                return Ok(Completion::ignored_with(
                    "needs the virtual bench (link or node faults)",
                ));
            }
            // Hardware tests take the bench one at a time (30 min wait).
            let _lock = harness::inventory::lock(&name, std::time::Duration::from_secs(1_800))
                .map_err(|e| e.to_string())?;
            let mut bench =
                harness::serial::SerialBench::open(&line, harness::serial::Timeouts::default())
                    .map_err(|e| e.to_string())?;
            let tol = std::env::var("SHAREBENCH_TOLERANCE_MS")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(50);
            (
                harness::runner::run(&sc, &mut bench, harness::runner::effective_seed(&sc, None)),
                Some(tol),
            )
        }
    };
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
    // The golden trace, through insta.
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
    if problems.is_empty() {
        Ok(Completion::Completed)
    } else {
        Err(format!(
            "{} (seed {}):\n  {}",
            sc.name,
            run.seed,
            problems.join("\n  ")
        )
        .into())
    }
}

fn main() {
    let args = Arguments::from_args();
    let bench_set = std::env::var_os("SHAREBENCH_BENCH").is_some_and(|b| b != "sim");
    let trials = scenario_files()
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            // A scenario that needs hardware is ignored when no fixture is
            // configured (listed by `--list --ignored`; run anyway, it says
            // why).
            let needs_fixture =
                !bench_set && Scenario::load(&path).is_ok_and(|sc| sc.requires_hardware);
            Trial::ignorable_test(name, move || run_one(&path)).with_ignored_flag(needs_fixture)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
