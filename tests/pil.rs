//! The processor-in-the-loop corpus (`fixtures/pil/`): every scenario runs
//! on the virtual bench (`sim/<name>`, in `cargo test --workspace`) and on
//! the station image in QEMU (`qemu/<name>`, ignored: it needs
//! `qemu-system-arm` and `cargo xtask images`; `.ci/run` runs
//! `cargo test --test pil -- --ignored qemu/`). Both must pass every check
//! and match the SAME golden trace (`fixtures/pil/snapshots/<name>.snap`):
//! exactly on sim, within the timing tolerance on QEMU
//! (`SHAREBENCH_TOLERANCE_MS`, default 50; see `harness::golden`).
//!
//! QEMU runs in real time, so the QEMU trials run in parallel (libtest's
//! threads, `--test-threads`); each starts its own QEMU processes and kills
//! them when it ends, however it ends.

use std::path::{Path, PathBuf};

use harness::runner::{ScenarioRun, Verdict};
use harness::scenario::Scenario;
use libtest_mimic::{Arguments, Failed, Trial};

mod common;

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pil");
    harness::cli::discover(&[dir]).unwrap_or_default()
}

/// The image `cargo xtask images` built beside this test's target dir, or
/// `SHAREBENCH_QEMU_IMAGE`.
fn qemu_options() -> Result<harness::qemu::QemuOptions, Failed> {
    let image = match std::env::var_os("SHAREBENCH_QEMU_IMAGE") {
        Some(p) => PathBuf::from(p),
        None => {
            let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            let target = tmp.parent().map_or(tmp.clone(), Path::to_path_buf);
            target.join("images").join("station-qemu.elf")
        }
    };
    harness::qemu::QemuOptions::new(image, std::env::var("SHAREBENCH_QEMU_ICOUNT").ok())
        .map_err(|e| Failed::from(e.to_string()))
}

fn judge(
    path: &Path,
    sc: &Scenario,
    run: &ScenarioRun,
    tolerance_ms: Option<u64>,
) -> Result<(), Failed> {
    let mut problems = Vec::new();
    if run.verdict == Verdict::Skipped {
        problems.push(format!(
            "skipped: {}",
            run.skipped.clone().unwrap_or_default()
        ));
    }
    problems.extend(common::problems(path, sc, run, tolerance_ms));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} on {} (seed {}, {:.1} s wall):\n  {}",
            sc.name,
            run.trace.bench,
            run.seed,
            run.wall_s,
            problems.join("\n  ")
        )
        .into())
    }
}

fn on_sim(path: &Path) -> Result<(), Failed> {
    let sc = Scenario::load(path).map_err(|e| e.to_string())?;
    let run = harness::cli::run_sim(&sc, None).map_err(|e| e.to_string())?;
    judge(path, &sc, &run, None)
}

fn on_qemu(path: &Path) -> Result<(), Failed> {
    let sc = Scenario::load(path).map_err(|e| e.to_string())?;
    let opts = qemu_options()?;
    let run = harness::cli::run_qemu(&sc, None, &opts).map_err(|e| e.to_string())?;
    eprintln!("{}: {:.1} s wall on QEMU", sc.name, run.wall_s);
    // Snapshots are written by the sim trials only; a QEMU run compares.
    let tol = std::env::var("SHAREBENCH_TOLERANCE_MS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(50);
    judge(path, &sc, &run, Some(tol))
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for path in scenario_files() {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let p = path.clone();
        trials.push(Trial::test(format!("sim/{name}"), move || on_sim(&p)));
        trials.push(
            Trial::test(format!("qemu/{name}"), move || on_qemu(&path)).with_ignored_flag(true),
        );
    }
    libtest_mimic::run(&args, trials).exit();
}
