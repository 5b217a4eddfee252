//! `report.json` and `junit.xml` for a whole run, and the run's metadata
//! ([`RunInfo`]) both carry.
//!
//! `report.json` (`"schema": "sharebench-report/2"`) is described by the JSON
//! Schema `harness/tests/schemas/report.schema.json`; a test validates every
//! report it builds against it. In short:
//!
//! ```text
//! {
//!   "schema": "sharebench-report/2",
//!   "run": {"started": "2026-11-30T10:33:01Z", "bench": "sim", "hostname": "...",
//!           "revision": "<git commit>" | "unknown", "sharebench_version": "0.1.0",
//!           "firmware_version": "0.1.0" | "unknown",
//!           "seed_policy": "scenario" | "fixed", "seed": null | 7, "out": "target/sharebench"},
//!   "scenarios": [{
//!     "name": "...", "file": "fixtures/scenarios/x.toml", "system": "...",
//!     "classname": "sharebench.<system, slugged>", "seed": 1,
//!     "verdict": "pass" | "fail" | "golden-diff" | "skipped" | "incomplete" | "refused",
//!     "reason": null | "why it was skipped, incomplete or refused",
//!     "sim_seconds": 600.0, "wall_seconds": 0.12, "speedup": 5000.0 | null,
//!     "golden": null | {"status": "match" | "differs" | "missing" | "not-checked", ...}
//!               (missing: {"required": true} when `CI` is set, which fails the run),
//!     "artefacts": {"trace.txt": "target/sharebench/x/trace.txt", ...},
//!     "checks": [{
//!       "name": "breaker-offered", "verdict": "pass" | "fail" | "skipped",
//!       "known_violation": false, "reason": null | "why it did not apply",
//!       "figures": {"peak_ratio": 1.0, ...}, "failures": ["..."], "more_failures": 0
//!     }]
//!   }],
//!   "summary": {"total": 20, "pass": 18, "fail": 1, "golden-diff": 1, "skipped": 0,
//!               "incomplete": 0, "refused": 0}
//! }
//! ```
//! A check's `verdict` is the one that counts: for a known violation (a
//! hazard the scenario demonstrates) it is `pass` when the check caught the
//! hazard. A scenario's `verdict` is the run's: `golden-diff` when every
//! check passed but the trace differs from its golden, or it has none and
//! `CI` is set.
//!
//! `junit.xml` follows the JUnit dialect Jenkins and GitLab read (the
//! project's schema of it, `harness/tests/schemas/junit.xsd`, validated
//! against in a test): one `testsuite` with the run's timestamp, host and
//! properties, one `testcase` per scenario with a stable
//! `classname` (`sharebench.<system>`), its failure, and a `system-out` with
//! the seed, the rerun command, the failure context and the artefact paths.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use quick_xml::events::BytesText;
use quick_xml::Writer;
use serde_json::json;

use crate::golden::GoldenOutcome;
use crate::runner::{ScenarioRun, Verdict};

/// What a run report says about the run as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// When the run started, RFC 3339 in UTC to the second.
    pub started: String,
    /// The `--bench` the run used.
    pub bench: String,
    pub hostname: String,
    /// The git commit the run was built from (`SHAREBENCH_REVISION`, else
    /// `git rev-parse HEAD`), or `unknown`.
    pub revision: String,
    pub sharebench_version: String,
    /// The firmware under test: the crate linked into the virtual bench;
    /// `unknown` on a line bench (its stations do not report one).
    pub firmware_version: String,
    /// `--seed`, if it overrode every scenario's own seed.
    pub seed: Option<u64>,
    /// Where the artefacts went.
    pub out: PathBuf,
}

/// How long `git rev-parse` may take before the revision is `unknown`.
const GIT_WAIT: Duration = Duration::from_secs(5);

impl RunInfo {
    /// The metadata of a run starting now.
    #[must_use]
    pub fn collect(bench: &str, virtual_bench: bool, seed: Option<u64>, out: &Path) -> Self {
        Self {
            started: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            bench: bench.to_string(),
            hostname: hostname(),
            revision: revision(),
            sharebench_version: env!("CARGO_PKG_VERSION").to_string(),
            firmware_version: if virtual_bench {
                firmware::VERSION.to_string()
            } else {
                "unknown".to_string()
            },
            seed,
            out: out.to_path_buf(),
        }
    }

    fn seed_policy(&self) -> String {
        match self.seed {
            Some(s) => format!("fixed: {s} (--seed) for every scenario"),
            None => "scenario: each scenario's own seed".to_string(),
        }
    }
}

/// This machine's name, from the kernel (Linux) or `HOSTNAME`; `unknown`
/// when neither says.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// The revision under test: `SHAREBENCH_REVISION` if set, else `git
/// rev-parse HEAD` in the working directory (bounded by [`GIT_WAIT`]), else
/// `unknown`.
#[must_use]
pub fn revision() -> String {
    if let Some(r) = std::env::var("SHAREBENCH_REVISION")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    {
        return r;
    }
    git_head(GIT_WAIT).unwrap_or_else(|| "unknown".to_string())
}

fn git_head(wait: Duration) -> Option<String> {
    let mut child = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if start.elapsed() >= wait => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let rev = text.trim();
    (!rev.is_empty() && rev.chars().all(|c| c.is_ascii_hexdigit())).then(|| rev.to_string())
}

/// The JUnit `classname` of a scenario: `sharebench.` and its `system`
/// slugged (lower-case ASCII letters and digits, apostrophes dropped, runs
/// of anything else one `-`), so CI groups scenarios by system under names that do not change
/// with punctuation. `sharebench.unclassified` when the scenario names no
/// system.
#[must_use]
pub fn classname(system: &str) -> String {
    let mut slug = String::new();
    for c in system.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if matches!(c, '\'' | '\u{2019}') {
            // "station's" is one word: "stations".
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "sharebench.unclassified".to_string()
    } else {
        format!("sharebench.{slug}")
    }
}

/// A scenario's verdict as the run counts it (the exit code, the table,
/// both reports): a passing run whose trace differs from its golden is
/// `golden-diff`, as is one without a golden when `CI` requires one.
#[must_use]
pub fn verdict(r: &ScenarioRun) -> &'static str {
    match (r.verdict, &r.golden) {
        (
            Verdict::Pass,
            Some(GoldenOutcome::Differs { .. } | GoldenOutcome::Missing { required: true }),
        ) => "golden-diff",
        (Verdict::Pass, _) => "pass",
        (Verdict::Fail, _) => "fail",
        (Verdict::Skipped, _) => "skipped",
        (Verdict::Incomplete, _) => "incomplete",
        (Verdict::Refused, _) => "refused",
    }
}

/// Every verdict a scenario can have, in the order the summary lists them.
pub const VERDICTS: [&str; 6] = [
    "pass",
    "fail",
    "golden-diff",
    "skipped",
    "incomplete",
    "refused",
];

/// Why a scenario has the verdict it has, if there is a one-line reason:
/// why it was skipped, why the bench stopped, why a station refused.
#[must_use]
pub fn reason(r: &ScenarioRun) -> Option<String> {
    match r.verdict {
        Verdict::Skipped => r.skipped.clone(),
        Verdict::Incomplete | Verdict::Refused => r.trace.incomplete.clone(),
        Verdict::Pass | Verdict::Fail => None,
    }
}

/// A file's path as the reports show it.
fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// The JSON report.
#[must_use]
pub fn json(info: &RunInfo, runs: &[ScenarioRun]) -> serde_json::Value {
    let scenarios: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            let checks: Vec<serde_json::Value> = r
                .checks
                .iter()
                .map(|c| {
                    let verdict = if c.skipped.is_some() {
                        "skipped"
                    } else if c.ok() {
                        "pass"
                    } else {
                        "fail"
                    };
                    json!({
                        "name": c.name, "verdict": verdict, "known_violation": c.known_violation,
                        "reason": c.skipped, "figures": c.figures, "failures": c.failures,
                        "more_failures": c.more_failures,
                    })
                })
                .collect();
            let artefacts: serde_json::Map<String, serde_json::Value> = r
                .artefacts
                .iter()
                .map(|p| {
                    let key = p
                        .file_name()
                        .map_or_else(|| shown(p), |n| n.to_string_lossy().into_owned());
                    (key, json!(shown(p)))
                })
                .collect();
            json!({
                "name": r.scenario.name,
                "file": shown(&r.scenario.path),
                "system": r.scenario.system,
                "classname": classname(&r.scenario.system),
                "seed": r.seed,
                "verdict": verdict(r),
                "reason": reason(r),
                "sim_seconds": r.sim_s,
                "wall_seconds": r.wall_s,
                "speedup": r.speedup(),
                "golden": r.golden,
                "artefacts": artefacts,
                "checks": checks,
            })
        })
        .collect();
    let mut summary = serde_json::Map::new();
    summary.insert("total".into(), json!(runs.len()));
    for v in VERDICTS {
        summary.insert(
            v.into(),
            json!(runs.iter().filter(|r| verdict(r) == v).count()),
        );
    }
    json!({
        "schema": "sharebench-report/2",
        "run": {
            "started": info.started,
            "bench": info.bench,
            "hostname": info.hostname,
            "revision": info.revision,
            "sharebench_version": info.sharebench_version,
            "firmware_version": info.firmware_version,
            "seed_policy": if info.seed.is_some() { "fixed" } else { "scenario" },
            "seed": info.seed,
            "out": shown(&info.out),
        },
        "scenarios": scenarios,
        "summary": summary,
    })
}

/// Text XML 1.0 can carry: control characters other than tab, line feed
/// and carriage return become U+FFFD.
fn xml_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// The failure context of a scenario that did not pass: each failed check's
/// messages and the golden diff.
fn failure_text(r: &ScenarioRun) -> String {
    let mut text = String::new();
    if let Some(why) = reason(r) {
        let _ = writeln!(text, "{}: {why}", verdict(r));
    }
    for c in r.checks.iter().filter(|c| !c.ok()) {
        if c.known_violation {
            let _ = writeln!(
                text,
                "{}: expected to fail here (known violation) but passed",
                c.name
            );
        }
        for f in &c.failures {
            let _ = writeln!(text, "{}: {f}", c.name);
        }
        if c.more_failures > 0 {
            let _ = writeln!(text, "{}: ... and {} more", c.name, c.more_failures);
        }
    }
    if let Some(GoldenOutcome::Differs { diff, first_line }) = &r.golden {
        let _ = writeln!(text, "golden trace differs from line {first_line}:");
        text.push_str(diff);
    }
    text
}

/// The one-line message of a scenario that did not pass.
fn failure_message(r: &ScenarioRun) -> String {
    let failed: Vec<&str> = r
        .checks
        .iter()
        .filter(|c| !c.ok())
        .map(|c| c.name)
        .collect();
    let msg = match r.verdict {
        Verdict::Incomplete | Verdict::Refused => format!(
            "{}: {}",
            verdict(r),
            r.trace.incomplete.clone().unwrap_or_default()
        ),
        _ if failed.is_empty() => match r.golden {
            Some(GoldenOutcome::Missing { .. }) => {
                "no golden trace, and CI requires one (sharebench run --bless writes it)"
                    .to_string()
            }
            _ => "golden trace differs".to_string(),
        },
        _ => format!("failed checks: {}", failed.join(", ")),
    };
    format!("{msg} (seed {})", r.seed)
}

/// What a test case's `system-out` says: how to rerun it, why it did not
/// pass, and where its artefacts are.
fn system_out(r: &ScenarioRun) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "scenario: {}", r.scenario.name);
    let _ = writeln!(text, "file: {}", shown(&r.scenario.path));
    let _ = writeln!(text, "system: {}", r.scenario.system);
    let _ = writeln!(text, "seed: {}", r.seed);
    let _ = writeln!(
        text,
        "rerun: sharebench run {} --seed {}",
        shown(&r.scenario.path),
        r.seed
    );
    let _ = writeln!(text, "verdict: {}", verdict(r));
    if !matches!(verdict(r), "pass" | "skipped") {
        text.push_str(&failure_text(r));
    }
    if r.artefacts.is_empty() {
        text.push_str("artefacts: none\n");
    } else {
        text.push_str("artefacts:\n");
        for p in &r.artefacts {
            let _ = writeln!(text, "  {}", shown(p));
        }
    }
    text
}

/// The JUnit XML report: one test suite, one test case per scenario.
pub fn junit(info: &RunInfo, runs: &[ScenarioRun]) -> Result<String, String> {
    write_junit(info, runs).map_err(|e| format!("failed to write junit.xml: {e}"))
}

fn write_junit(info: &RunInfo, runs: &[ScenarioRun]) -> std::io::Result<String> {
    let count = |f: &dyn Fn(&str) -> bool| runs.iter().filter(|r| f(verdict(r))).count();
    let tests = runs.len().to_string();
    let failures = count(&|v| matches!(v, "fail" | "golden-diff")).to_string();
    let errors = count(&|v| matches!(v, "incomplete" | "refused")).to_string();
    let skipped = count(&|v| v == "skipped").to_string();
    // Not `sum()`: that of no runs is -0.0, which the schema's time refuses.
    let time = format!("{:.3}", runs.iter().fold(0.0, |t, r| t + r.wall_s));

    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(quick_xml::events::Event::Decl(
        quick_xml::events::BytesDecl::new("1.0", Some("UTF-8"), None),
    ))?;
    w.create_element("testsuites")
        .with_attributes([
            ("name", "sharebench"),
            ("tests", tests.as_str()),
            ("failures", failures.as_str()),
            ("errors", errors.as_str()),
            ("time", time.as_str()),
        ])
        .write_inner_content(|w| {
            w.create_element("testsuite")
                .with_attributes([
                    ("name", "scenarios"),
                    ("tests", tests.as_str()),
                    ("failures", failures.as_str()),
                    ("errors", errors.as_str()),
                    ("skipped", skipped.as_str()),
                    ("time", time.as_str()),
                    ("timestamp", info.started.as_str()),
                    ("hostname", info.hostname.as_str()),
                ])
                .write_inner_content(|w| {
                    write_properties(w, info, runs)?;
                    for r in runs {
                        write_case(w, r)?;
                    }
                    Ok(())
                })?;
            Ok(())
        })?;
    String::from_utf8(w.into_inner()).map_err(std::io::Error::other)
}

fn write_properties(
    w: &mut Writer<Vec<u8>>,
    info: &RunInfo,
    runs: &[ScenarioRun],
) -> std::io::Result<()> {
    let mut props: Vec<(String, String)> = vec![
        ("seed".into(), info.seed_policy()),
        ("bench".into(), info.bench.clone()),
        ("revision".into(), info.revision.clone()),
        ("firmware-version".into(), info.firmware_version.clone()),
        ("sharebench-version".into(), info.sharebench_version.clone()),
        ("artefacts".into(), shown(&info.out)),
    ];
    // Each scenario's seed, so any one can be rerun from this file alone.
    for r in runs {
        props.push((format!("seed.{}", r.scenario.name), r.seed.to_string()));
    }
    w.create_element("properties").write_inner_content(|w| {
        for (name, value) in &props {
            w.create_element("property")
                .with_attributes([("name", name.as_str()), ("value", xml_text(value).as_str())])
                .write_empty()?;
        }
        Ok(())
    })?;
    Ok(())
}

fn write_case(w: &mut Writer<Vec<u8>>, r: &ScenarioRun) -> std::io::Result<()> {
    let class = classname(&r.scenario.system);
    let time = format!("{:.3}", r.wall_s);
    w.create_element("testcase")
        .with_attributes([
            ("name", r.scenario.name.as_str()),
            ("classname", class.as_str()),
            ("time", time.as_str()),
        ])
        .write_inner_content(|w| {
            let message = xml_text(&failure_message(r));
            match verdict(r) {
                "pass" => {}
                "skipped" => {
                    let why = xml_text(&reason(r).unwrap_or_default());
                    w.create_element("skipped")
                        .with_attribute(("message", why.as_str()))
                        .write_empty()?;
                }
                v @ ("incomplete" | "refused") => {
                    w.create_element("error")
                        .with_attributes([("type", v), ("message", message.as_str())])
                        .write_text_content(BytesText::new(&xml_text(&failure_text(r))))?;
                }
                v => {
                    w.create_element("failure")
                        .with_attributes([("type", v), ("message", message.as_str())])
                        .write_text_content(BytesText::new(&xml_text(&failure_text(r))))?;
                }
            }
            w.create_element("system-out")
                .write_text_content(BytesText::new(&xml_text(&system_out(r))))?;
            Ok(())
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classnames_are_slugs_of_the_system() {
        assert_eq!(
            classname("Failover: one-way link loss, follower to leader (the SmartEVSE hazard)"),
            "sharebench.failover-one-way-link-loss-follower-to-leader-the-smartevse-hazard"
        );
        assert_eq!(
            classname("Circuit-level sharing above 51 A (duty above 85 %)"),
            "sharebench.circuit-level-sharing-above-51-a-duty-above-85"
        );
        assert_eq!(
            classname("Bench: a real station's pilot and contactor timing"),
            "sharebench.bench-a-real-stations-pilot-and-contactor-timing"
        );
        assert_eq!(classname(""), "sharebench.unclassified");
        assert_eq!(classname(" -- "), "sharebench.unclassified");
        assert_eq!(classname("Ünïcode Straße"), "sharebench.n-code-stra-e");
    }

    #[test]
    fn xml_text_drops_what_xml_cannot_carry() {
        assert_eq!(xml_text("a\u{1b}[31mb\tc\n"), "a\u{fffd}[31mb\tc\n");
    }

    #[test]
    fn the_revision_comes_from_git_when_not_given() {
        // Tests run in the package directory; in a git checkout (CI's
        // clone, a developer's work tree) HEAD is a commit id.
        let in_git = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../.git")
            .exists();
        let r = git_head(GIT_WAIT);
        assert_eq!(r.is_some(), in_git, "{r:?}");
        if let Some(r) = r {
            assert!(
                r.len() >= 40 && r.chars().all(|c| c.is_ascii_hexdigit()),
                "{r}"
            );
        }
    }
}
