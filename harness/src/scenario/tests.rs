use super::*;

pub(crate) const TINY: &str = r#"
name = "tiny"
duration = "2min"
[[node]]
name = "circuit"
limit = "32A"
breaker = "40A"
[[station]]
id = 0
node = "circuit"
nameplate = "32A"
leader = true
fallback = "16A"
[[station]]
id = 1
node = "circuit"
nameplate = "32A"
fallback = "16A"
[expect]
reference = true
[[at]]
time = "1s"
do = "arrive"
station = 0
[[at]]
time = "40s"
do = "arrive"
station = 1
"#;

pub(crate) fn tiny() -> Scenario {
    Scenario::parse(Path::new("fixtures/scenarios/tiny.toml"), TINY).unwrap()
}

fn err(text: &str) -> ScenarioError {
    Scenario::parse(Path::new("bad.toml"), text).unwrap_err()
}

#[test]
fn a_valid_file_loads() {
    let s = tiny();
    assert_eq!(s.name, "tiny");
    assert_eq!(s.duration_us, 120_000_000);
    assert_eq!(s.nodes[0].limit_da, 320);
    assert_eq!(s.stations[1].fallback_da, 160);
    assert_eq!(s.timeline[1].at_us, 40_000_000);
    assert_eq!(
        s.timeline[1].expect.as_ref().unwrap().exact,
        Some(vec![160, 160])
    );
}

#[test]
fn errors_name_file_line_column_and_what_was_expected() {
    let e = err(&TINY.replace("limit = \"32A\"", "limit = \"32\""));
    assert_eq!((e.path.as_str(), e.line, e.column), ("bad.toml", 6, 9));
    assert!(e.message.contains("expected a current"), "{e}");

    let e = err(&TINY.replace("duration = \"2min\"", "duration = \"soon\""));
    assert_eq!(e.line, 3);
    assert!(
        e.to_string()
            .starts_with("bad.toml:3:12: expected a duration"),
        "{e}"
    );

    let e = err(&TINY.replace(
        "node = \"circuit\"\nnameplate = \"32A\"\nleader",
        "node = \"panel\"\nnameplate = \"32A\"\nleader",
    ));
    assert!(e.message.contains("unknown node \"panel\""), "{e}");

    let e = err(&TINY.replace("do = \"arrive\"\nstation = 1", "do = \"fly\"\nstation = 1"));
    assert!(e.message.contains("unknown action \"fly\""), "{e}");
    assert_eq!((e.line, e.column), (27, 6), "points at the action's value");

    let e = err(&format!("{TINY}\nunknown_key = 1\n"));
    assert!(e.message.contains("unknown field"), "{e}");

    let e = err(&TINY.replace(
        "fallback = \"16A\"\n[[station]]",
        "fallback = \"30A\"\n[[station]]",
    ));
    assert!(e.message.contains("fallbacks under node 0"), "{e}");

    let e = err(&TINY.replace("time = \"40s\"", "time = \"0s\""));
    assert!(e.message.contains("time order"), "{e}");
}
