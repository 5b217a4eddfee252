//! What the tests of a run's files (`ci_files`, `report_html`) share: a
//! fresh output directory and three real virtual-bench runs, one that
//! passes (its golden compared, its artefacts written), one whose step
//! expectation the firmware does not meet, one skipped (it needs a
//! fixture).

use std::path::{Path, PathBuf};

use harness::artefacts;
use harness::golden::{self, GoldenOutcome};
use harness::runner::{ScenarioRun, Verdict};
use harness::scenario::Scenario;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios")
}

/// A new directory for one test's files: `sharebench-<prefix>-<tag>-<pid>`
/// under the temporary directory.
pub fn out_dir(prefix: &str, tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sharebench-{prefix}-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// circuit-4x48 run, its golden compared (it matches), its artefacts
/// written under `out`.
pub fn passing(out: &Path) -> ScenarioRun {
    let sc = Scenario::load(&fixtures().join("circuit-4x48.toml")).expect("circuit-4x48 loads");
    let mut pass = harness::cli::run_sim(&sc, None).expect("runs");
    pass.golden = Some(golden::compare(
        &sc.path,
        &sc.name,
        &pass.trace.golden_text(sc.golden_summary),
        0,
    ));
    pass.artefacts = artefacts::write_scenario(out, &pass).expect("artefacts written");
    assert_eq!(pass.verdict, Verdict::Pass, "circuit-4x48 passes");
    assert_eq!(pass.golden, Some(GoldenOutcome::Match));
    pass
}

/// Three cars on a 48 A circuit whose last step expects 24/24/0, which the
/// firmware does not do (it shares 16 A each): the scenario, written to
/// `out/<name>.toml` with `extra` top-level keys, and its failed run (no
/// artefacts written yet).
pub fn failing(out: &Path, name: &str, extra: &str) -> (Scenario, ScenarioRun) {
    let text = format!(
        r#"name = "{name}"
{extra}system = "Circuit-level sharing: an expectation the firmware does not meet"
duration = "3min"
seed = 7
[[node]]
name = "circuit"
limit = "48A"
breaker = "60A"
[[station]]
id = 1
node = "circuit"
nameplate = "32A"
fallback = "16A"
leader = true
[[station]]
id = 2
node = "circuit"
nameplate = "32A"
fallback = "16A"
[[station]]
id = 3
node = "circuit"
nameplate = "32A"
fallback = "16A"
[[car]]
station = 1
[[car]]
station = 2
[[car]]
station = 3
[sharing]
rotation = "off"
[[at]]
time = "10s"
do = "arrive"
station = 1
[[at]]
time = "20s"
do = "arrive"
station = 2
[[at]]
time = "1min"
do = "arrive"
station = 3
expect = ["24A", "24A", "0A"]
"#
    );
    let path = out.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write");
    let sc = Scenario::load(&path).expect("failing scenario loads");
    let run = harness::cli::run_sim(&sc, None).expect("runs");
    assert_eq!(run.verdict, Verdict::Fail, "the expectation is not met");
    (sc, run)
}

/// hw-contactor-timing on the virtual bench: skipped.
pub fn skipped() -> ScenarioRun {
    let hw = Scenario::load(&fixtures().join("hw-contactor-timing.toml")).expect("loads");
    let skipped = harness::cli::run_sim(&hw, None).expect("skips");
    assert_eq!(skipped.verdict, Verdict::Skipped);
    skipped
}
