//! Every scenario file in `fixtures/scenarios/` is one test: it runs on the
//! virtual bench, every check must pass, and its canonical trace must match
//! its golden snapshot (`fixtures/scenarios/snapshots/<name>.snap`).
//!
//! `cargo test --workspace` and `cargo nextest run` both run them, and test
//! filters work (`cargo test --test scenarios circuit`). Review a changed
//! golden trace with `cargo insta review`; CI never writes snapshots.

use std::path::{Path, PathBuf};

use harness::golden::snapshot_dir;
use harness::runner::Verdict;
use harness::scenario::Scenario;
use libtest_mimic::{Arguments, Failed, Trial};

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios");
    harness::cli::discover(&[dir]).unwrap_or_default()
}

fn run_one(path: &Path) -> Result<(), Failed> {
    let sc = Scenario::load(path).map_err(|e| e.to_string())?;
    let run = harness::cli::run_sim(&sc, None).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    if run.verdict == Verdict::Incomplete {
        problems.push(format!(
            "incomplete: {}",
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
        Ok(())
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
    let trials = scenario_files()
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let hardware = Scenario::load(&path)
                .map(|s| s.requires_hardware)
                .unwrap_or(false);
            Trial::test(name, move || run_one(&path)).with_ignored_flag(hardware)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
