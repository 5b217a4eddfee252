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
//! `SHAREBENCH_TIME_SCALE` is a virtual fixture's speed; stations come from
//! the inventory entry of a named bench (their debug channels, power
//! commands), or, on a fixture by URL, their debug channels are relayed by
//! the fixture when it has the `debug` capability (golden traces need one
//! or the other: station telemetry); `SHAREBENCH_HARDWARE_SET=1` runs only the hardware set; and
//! `SHAREBENCH_OUT=DIR` keeps each run's artefacts and report.json there
//! (the hardware CI job, docs/ci.md).

use std::path::{Path, PathBuf};

use harness::bench::BenchSpec;
use harness::runner::Verdict;
use harness::scenario::Scenario;
use libtest_mimic::{Arguments, Completion, Failed, Trial};

mod common;

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios");
    harness::cli::discover(&[dir]).unwrap_or_default()
}

/// The bench the tests run on, when it is not the virtual one: its name
/// (for the lock) and its fixture's line.
fn line_bench(
) -> Result<Option<(String, BenchSpec, Option<harness::inventory::BenchEntry>)>, String> {
    let Ok(text) = std::env::var("SHAREBENCH_BENCH") else {
        return Ok(None);
    };
    let spec: BenchSpec = text.parse()?;
    let inventory = harness::inventory::Inventory::from_args(None)?;
    let (fixture, entry) = harness::inventory::resolve(spec.clone(), inventory.as_ref())?;
    match fixture {
        BenchSpec::Sim => Ok(None),
        BenchSpec::Qemu => Err("the qemu bench is not part of this build yet".into()),
        line => Ok(Some((spec.to_string(), line, entry))),
    }
}

fn run_one(path: &Path) -> Result<Completion, Failed> {
    let sc = Scenario::load(path).map_err(|e| e.to_string())?;
    // Why a line bench's trace has no station telemetry, if it has none.
    let mut note = None;
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
        Some((name, line, entry)) => {
            if sc.needs_sim_beyond_power() {
                return Ok(Completion::ignored_with(
                    "needs the virtual bench (link or node faults)",
                ));
            }
            // Hardware tests take the bench one at a time (30 min wait).
            let _lock = harness::inventory::lock(&name, std::time::Duration::from_secs(1_800))
                .map_err(|e| e.to_string())?;
            // A virtual fixture may run faster than real time.
            let time_scale = std::env::var("SHAREBENCH_TIME_SCALE")
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|x| x.is_finite() && *x > 0.0)
                .unwrap_or(1.0);
            let mut bench = harness::serial::SerialBench::open_bench(
                &line,
                entry.as_ref(),
                harness::serial::Timeouts {
                    time_scale,
                    ..harness::serial::Timeouts::default()
                },
            )
            .map_err(|e| e.to_string())?;
            note = bench.telemetry_note();
            if !bench.makes_faults_of(&sc) {
                return Ok(Completion::ignored_with(
                    "needs power faults (crash, reboot): give the bench's stations power_off and power_on, or power_cycle, in the inventory",
                ));
            }
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
    // A hardware CI job keeps each run's artefacts and report (docs/ci.md).
    if let (Some(out), Some(_)) = (std::env::var_os("SHAREBENCH_OUT"), tolerance_ms) {
        let out = PathBuf::from(out);
        let bench = std::env::var("SHAREBENCH_BENCH").unwrap_or_default();
        let info = harness::artefacts::report::RunInfo::collect(&bench, false, None, &out);
        harness::artefacts::write_scenario(&out, &run).map_err(|e| e.to_string())?;
        let report = harness::artefacts::report::json(&info, std::slice::from_ref(&run));
        let file = out.join(&sc.name).join("report.json");
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    let why = run.trace.incomplete.clone().unwrap_or_default();
    if run.verdict == Verdict::Refused && why.starts_with("the fixture cannot run this scenario") {
        // Too few channels or a capability the fixture lacks: not a failure
        // of this bench, and said (`--ignored` lists it).
        return Ok(Completion::ignored_with(why));
    }
    let mut problems = common::problems(path, &sc, &run, tolerance_ms);
    if let Some(n) = note {
        for p in problems
            .iter_mut()
            .filter(|p| p.starts_with("golden trace of"))
        {
            p.push_str(&format!("; {n}"));
        }
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
    let hardware_set = std::env::var_os("SHAREBENCH_HARDWARE_SET").is_some_and(|v| v == "1");
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
            // SHAREBENCH_HARDWARE_SET=1: only the hardware set (what a lab
            // bench runs in CI).
            let outside_set =
                hardware_set && Scenario::load(&path).is_ok_and(|sc| !sc.hardware_set);
            Trial::ignorable_test(name, move || run_one(&path))
                .with_ignored_flag(needs_fixture || outside_set)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
