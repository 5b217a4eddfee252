//! The CI files of a run as a machine reads them: every `report.json` this
//! test builds validates against `tests/schemas/report.schema.json` (JSON
//! Schema, checked by the `jsonschema` crate), and every `junit.xml`
//! against the project's schema of the JUnit dialect Jenkins and GitLab
//! read, `tests/schemas/junit.xsd` (checked
//! by [`xsd_subset`], which reads the schema file; see there why not a
//! crate). The runs are real virtual-bench runs of
//! fixture scenarios: one that passes (golden compared, artefacts written),
//! one whose check fails, one skipped; the golden-diff, incomplete and
//! refused cases are the passing run with only those fields changed.

use std::path::{Path, PathBuf};

use harness::artefacts::{self, report, report::RunInfo};
use harness::golden::GoldenOutcome;
use harness::runner::{ScenarioRun, Verdict};

mod common;
mod xsd_subset;

fn schema_text(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/schemas")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn out_dir(tag: &str) -> PathBuf {
    common::out_dir("ci-files", tag)
}

/// Runs covering every verdict, with their artefacts under `out`.
fn runs(out: &Path) -> Vec<ScenarioRun> {
    let pass = common::passing(out);
    let (_, mut fail) = common::failing(out, "ci-files-failing", "");
    fail.artefacts = artefacts::write_scenario(out, &fail).expect("artefacts written");
    let skipped = common::skipped();

    let mut golden_diff = pass.clone();
    golden_diff.golden = Some(GoldenOutcome::Differs {
        diff: "-st1 offered 48.0 A\n+st1 offered 47.9 A\n".into(),
        first_line: 12,
    });
    let mut incomplete = pass.clone();
    incomplete.verdict = Verdict::Incomplete;
    incomplete.trace.incomplete =
        Some("the fixture lost data: 2 fixture event(s) lost at t=5.000 s".into());
    let mut refused = pass.clone();
    refused.verdict = Verdict::Refused;
    refused.trace.incomplete = Some("station 2 refused its site plan: bad MAC".into());
    refused.artefacts.clear();
    vec![pass, fail, skipped, golden_diff, incomplete, refused]
}

fn infos(out: &Path) -> [RunInfo; 2] {
    let sim = RunInfo::collect("sim", true, None, out);
    let mut line = RunInfo::collect("serial:/dev/ttyACM0@115200", false, Some(3), out);
    line.revision = "unknown".into();
    [sim, line]
}

fn json_errors(validator: &jsonschema::Validator, v: &serde_json::Value) -> Vec<String> {
    validator
        .iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn every_report_validates_against_the_report_schema() {
    let out = out_dir("json");
    let runs = runs(&out);
    let schema: serde_json::Value =
        serde_json::from_str(&schema_text("report.schema.json")).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    for info in infos(&out) {
        for subset in [&runs[..], &runs[..1], &runs[2..3], &[]] {
            let v = report::json(&info, subset);
            let errors = json_errors(&validator, &v);
            assert!(errors.is_empty(), "{errors:#?}\n{v:#}");
        }
    }

    let v = report::json(&infos(&out)[0], &runs);
    let verdicts: Vec<&str> = v["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .map(|s| s["verdict"].as_str().expect("a verdict"))
        .collect();
    assert_eq!(
        verdicts,
        [
            "pass",
            "fail",
            "skipped",
            "golden-diff",
            "incomplete",
            "refused"
        ]
    );
    assert_eq!(v["summary"]["total"], 6);
    assert_eq!(v["summary"]["golden-diff"], 1);
    assert_eq!(v["run"]["seed_policy"], "scenario");
    assert_eq!(v["run"]["firmware_version"], firmware::VERSION);
    assert_eq!(
        v["scenarios"][0]["classname"],
        "sharebench.circuit-level-sharing-electric-avenue-watti-pro-offline"
    );
    assert_eq!(
        v["scenarios"][0]["artefacts"]["trace.txt"],
        out.join("circuit-4x48/trace.txt").display().to_string()
    );
    assert_eq!(
        v["scenarios"][2]["reason"],
        "needs a bench fixture: run with --bench serial:PORT"
    );
    // One verdict per check: the old `ok` and `passed` are gone.
    for s in v["scenarios"].as_array().expect("scenarios") {
        for c in s["checks"].as_array().expect("checks") {
            assert!(c.get("ok").is_none() && c.get("passed").is_none(), "{c}");
        }
    }
    let failed: Vec<&str> = v["scenarios"][1]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert!(!failed.is_empty(), "{:#}", v["scenarios"][1]);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_report_schema_rejects_what_a_reader_cannot_use() {
    let out = out_dir("json-bad");
    let runs = runs(&out);
    let schema: serde_json::Value =
        serde_json::from_str(&schema_text("report.schema.json")).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let good = report::json(&infos(&out)[0], &runs);
    type Spoil = fn(&mut serde_json::Value);
    let bad: [(&str, Spoil); 6] = [
        ("a second verdict field on a check", |v| {
            v["scenarios"][0]["checks"][0]["ok"] = true.into();
        }),
        ("an unknown verdict", |v| {
            v["scenarios"][0]["verdict"] = "passed".into();
        }),
        ("no revision", |v| {
            v["run"].as_object_mut().expect("run").remove("revision");
        }),
        ("a skipped scenario without its reason", |v| {
            v["scenarios"][2]["reason"] = serde_json::Value::Null;
        }),
        ("prose as a classname", |v| {
            v["scenarios"][0]["classname"] = "Circuit-level sharing (Electric Avenue)".into();
        }),
        ("a start time that is not RFC 3339", |v| {
            v["run"]["started"] = "Mon Nov 30 10:33:01 2026".into();
        }),
    ];
    for (what, spoil) in bad {
        let mut v = good.clone();
        spoil(&mut v);
        assert!(!validator.is_valid(&v), "the schema accepted {what}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

fn junit_schema() -> xsd_subset::Schema {
    xsd_subset::Schema::parse(&schema_text("junit.xsd")).expect("junit.xsd is in the subset")
}

fn junit_errors(schema: &xsd_subset::Schema, xml: &str) -> Vec<String> {
    schema
        .validate(xml)
        .unwrap_or_else(|e| panic!("not XML: {e}\n{xml}"))
}

#[test]
fn junit_validates_against_the_jenkins_junit_schema() {
    let out = out_dir("junit");
    let runs = runs(&out);
    let schema = junit_schema();
    for info in infos(&out) {
        for subset in [&runs[..], &runs[..1], &runs[2..3], &[]] {
            let xml = report::junit(&info, subset).expect("junit.xml");
            let errors = junit_errors(&schema, &xml);
            assert!(errors.is_empty(), "{errors:#?}\n{xml}");
        }
    }

    let info = &infos(&out)[0];
    let xml = report::junit(info, &runs).expect("junit.xml");
    for needle in [
        r#"<testsuites name="sharebench" tests="6" failures="2" errors="2""#,
        &format!(r#"timestamp="{}""#, info.started),
        &format!(r#"hostname="{}""#, info.hostname),
        r#"<property name="seed" value="scenario: each scenario&apos;s own seed"/>"#,
        r#"<property name="bench" value="sim"/>"#,
        &format!(r#"<property name="revision" value="{}"/>"#, info.revision),
        &format!(
            r#"<property name="firmware-version" value="{}"/>"#,
            firmware::VERSION
        ),
        &format!(
            r#"<property name="sharebench-version" value="{}"/>"#,
            env!("CARGO_PKG_VERSION")
        ),
        r#"<property name="seed.circuit-4x48" value="1"/>"#,
        r#"<testcase name="circuit-4x48" classname="sharebench.circuit-level-sharing-electric-avenue-watti-pro-offline""#,
        r#"<skipped message="needs a bench fixture: run with --bench serial:PORT"/>"#,
        r#"<failure type="golden-diff" message="golden trace differs (seed 1)">"#,
        r#"<error type="refused" message="refused: station 2 refused its site plan: bad MAC (seed 1)">"#,
        "rerun: sharebench run ",
        "golden trace differs from line 12:",
    ] {
        assert!(xml.contains(needle), "{needle}\n{xml}");
    }
    // The failing scenario's system-out has its failure and its files.
    let trace = out.join("ci-files-failing/trace.txt").display().to_string();
    assert!(xml.contains(&format!("  {trace}\n")), "{xml}");
    assert!(
        xml.contains(r#"<failure type="fail" message="failed checks: "#),
        "{xml}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_junit_schema_check_rejects_what_jenkins_would() {
    let out = out_dir("junit-bad");
    let runs = runs(&out);
    let schema = junit_schema();
    let good = report::junit(&infos(&out)[0], &runs).expect("junit.xml");
    assert_eq!(junit_errors(&schema, &good), Vec::<String>::new());
    let bad = [
        // quick-junit writes this attribute; the schema has no place for it.
        (
            "a skipped count on testsuites",
            good.replacen(
                "<testsuites name=\"sharebench\"",
                "<testsuites skipped=\"1\" name=\"sharebench\"",
                1,
            ),
        ),
        (
            "a testsuite without its failure count",
            good.replacen(
                " failures=\"2\" errors=\"2\" skipped",
                " errors=\"2\" skipped",
                1,
            ),
        ),
        (
            "a timestamp on a testcase",
            good.replacen(
                "<testcase name=",
                "<testcase timestamp=\"2026-11-30T10:33:01Z\" name=",
                1,
            ),
        ),
        (
            "a property without a value",
            good.replacen(
                "<property name=\"bench\" value=\"sim\"/>",
                "<property name=\"bench\"/>",
                1,
            ),
        ),
        (
            "a time that is not a number",
            good.replacen(
                &format!(
                    " time=\"{:.3}\"",
                    runs.iter().fold(0.0, |t, r| t + r.wall_s)
                ),
                " time=\"soon\"",
                1,
            ),
        ),
        (
            "text where only elements belong",
            good.replacen("<properties>", "<properties>seed 1", 1),
        ),
    ];
    for (what, xml) in bad {
        assert_ne!(xml, good, "{what}: the edit applied");
        assert!(!junit_errors(&schema, &xml).is_empty(), "accepted {what}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_xsd_check_refuses_a_schema_it_cannot_fully_enforce() {
    let all = r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="a"><xs:complexType><xs:all><xs:element name="b" type="xs:string"/></xs:all></xs:complexType></xs:element>
</xs:schema>"#;
    let err = xsd_subset::Schema::parse(all)
        .err()
        .expect("xs:all is refused");
    assert!(err.contains("xs:all"), "{err}");
    let int = r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="a"><xs:complexType><xs:attribute name="n" type="xs:int"/></xs:complexType></xs:element>
</xs:schema>"#;
    let err = xsd_subset::Schema::parse(int)
        .err()
        .expect("xs:int is refused");
    assert!(err.contains("xs:int"), "{err}");
}
