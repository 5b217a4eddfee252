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
        s.timeline[1].expect.as_ref().unwrap().exact_offers(),
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

/// Line and column (1-based) where `needle` first occurs in `text`.
fn at(text: &str, needle: &str) -> (usize, usize) {
    let offset = text.find(needle).expect("needle in text");
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// `TINY` with `extra` appended (more steps or tables).
fn tiny_with(extra: &str) -> String {
    format!("{TINY}{extra}")
}

/// Refused, at the position of `needle`, with a message containing every one of `parts`.
fn refused_at(text: &str, needle: &str, parts: &[&str]) {
    let e = err(text);
    assert_eq!(
        (e.line, e.column),
        at(text, needle),
        "position of {needle:?}: {e}"
    );
    for p in parts {
        assert!(e.message.contains(p), "{p:?} not in: {e}");
    }
}

#[test]
fn a_station_breaker_under_6a_is_refused_as_the_firmware_does() {
    // Passed `check` once, and failed at bench setup.
    let text = TINY.replace(
        "nameplate = \"32A\"\nleader = true",
        "nameplate = \"32A\"\nbreaker = \"5A\"\nleader = true",
    );
    refused_at(
        &text,
        "\"5A\"",
        &["station 0", "below the 60 dA (6 A) minimum"],
    );
}

#[test]
fn a_nameplate_outside_the_firmwares_range_is_refused_at_its_key() {
    let text = TINY.replace(
        "nameplate = \"32A\"\nleader = true",
        "nameplate = \"90A\"\nleader = true",
    );
    refused_at(&text, "\"90A\"", &["station 0", "outside 60..=800 dA"]);
}

#[test]
fn the_firmwares_group_rules_name_the_offending_key_not_1_1() {
    // Fallbacks over the node's limit: at the node's limit.
    let text = TINY.replace(
        "fallback = \"16A\"\n[[station]]",
        "fallback = \"30A\"\n[[station]]",
    );
    refused_at(
        &text,
        "\"32A\"\nbreaker",
        &["fallbacks under node 0", "node 0 is \"circuit\"", "460 dA"],
    );

    // 6 A each without rotation: at the node's limit.
    let text = TINY
        .replace("limit = \"32A\"", "limit = \"10A\"")
        .replace("fallback = \"16A\"", "fallback = \"0A\"")
        + "[sharing]\nrotation = \"off\"\n";
    refused_at(
        &text,
        "\"10A\"",
        &["need 120 dA for 6 A each", "turn rotation on"],
    );

    // A fallback over the station's own cap: at the fallback.
    let text = TINY.replace(
        "nameplate = \"32A\"\nfallback = \"16A\"",
        "nameplate = \"16A\"\nfallback = \"20A\"",
    );
    refused_at(
        &text,
        "\"20A\"",
        &["station 1 fallback", "0 or 60 dA..=its cap"],
    );

    // Unsafe timing: at the key that breaks the rule.
    let text = tiny_with("[sharing]\nsilent_after = \"1500ms\"\n");
    refused_at(&text, "\"1500ms\"", &["silent_after at least two cycles"]);
    let text = tiny_with("[sharing]\nleader_timeout = \"3s\"\n");
    refused_at(
        &text,
        "\"3s\"\n",
        &["leader_timeout longer than silent_after"],
    );
}

#[test]
fn a_sharing_cycle_of_zero_is_refused() {
    // Ran stuck at t=0 once.
    let text = tiny_with("[sharing]\ncycle = \"0s\"\n");
    refused_at(&text, "\"0s\"", &["expected cycle of at least 19792us"]);
}

#[test]
fn a_sharing_cycle_too_short_to_poll_the_group_is_refused() {
    // 1 us never finished once. 2 stations x 2 frames x 57 bytes x 10 bits
    // at 115200 baud: 19792 us.
    let text =
        tiny_with("[sharing]\ncycle = \"1us\"\nsilent_after = \"3us\"\nleader_timeout = \"5us\"\n");
    refused_at(
        &text,
        "\"1us\"",
        &[
            "2 stations x 2 frames x 57 bytes x 10 bits / 115200 baud",
            "at least 19792us",
        ],
    );
    // 256 stations at 9600 baud need 30.4 s.
    let mut text = String::from("duration = \"1h\"\n[[node]]\nname = \"n\"\nlimit = \"2000A\"\n");
    for id in 0..=255u8 {
        text.push_str(&format!(
            "[[station]]\nid = {id}\nnode = \"n\"\nnameplate = \"6A\"\n{}\n",
            if id == 0 { "leader = true" } else { "" }
        ));
    }
    text.push_str("[sharing]\ncycle = \"30s\"\nsilent_after = \"90s\"\nleader_timeout = \"2min\"\n[bench]\nlink_baud = 9600\n");
    refused_at(
        &text,
        "\"30s\"",
        &[
            "256 stations",
            "9600 baud",
            "at least 30400000us (30.400 s)",
        ],
    );
    let ok = text.replace("cycle = \"30s\"", "cycle = \"31s\"");
    assert!(Scenario::parse(Path::new("ok.toml"), &ok).is_ok());
}

#[test]
fn the_default_cycle_is_refused_at_the_first_station_it_cannot_poll() {
    // 1 s at 115200 baud polls 101 stations (101 x 1140 bits = 0.9995 s).
    let mut text = String::from("duration = \"1h\"\n[[node]]\nname = \"n\"\nlimit = \"2000A\"\n");
    for id in 0..102u8 {
        text.push_str(&format!(
            "[[station]]\nid = {id}\nnode = \"n\"\nnameplate = \"6A\"\n{}\n",
            if id == 0 { "leader = true" } else { "" }
        ));
    }
    let e = err(&text);
    let (line, column) = at(&text, "id = 101");
    assert_eq!((e.line, e.column), (line, column + 5), "{e}");
    assert!(
        e.message.contains("102 stations") && e.message.contains("found 1000000us"),
        "{e}"
    );
}

#[test]
fn more_stations_than_the_firmware_holds_are_refused() {
    let mut text = String::from("duration = \"1h\"\n[[node]]\nname = \"n\"\nlimit = \"2000A\"\n");
    for i in 0..=256u16 {
        text.push_str(&format!(
            "[[station]]\nid = {}\nnode = \"n\"\nnameplate = \"6A\"\n{}\n",
            i % 256,
            if i == 0 { "leader = true" } else { "" }
        ));
    }
    let e = err(&text);
    assert!(
        e.message
            .contains("at most 256 stations (the firmware's MAX_STATIONS)"),
        "{e}"
    );
    // The last block: [[station]], id = 0 (the 257th id), node, nameplate, "".
    assert_eq!(
        (e.line, e.column),
        (text.lines().count() - 3, 6),
        "at the 257th station's id: {e}"
    );
}

#[test]
fn a_link_baud_of_zero_is_refused() {
    let text = tiny_with("[bench]\nlink_baud = 0\n");
    let e = err(&text);
    let (line, column) = at(&text, "link_baud = 0");
    assert_eq!((e.line, e.column), (line, column + 12), "{e}");
    assert!(
        e.message.contains("expected link_baud of at least 1"),
        "{e}"
    );
}

#[test]
fn durations_that_overflow_or_exceed_7_days_are_refused() {
    let text = TINY.replace("duration = \"2min\"", "duration = \"100000000000000s\"");
    refused_at(&text, "\"100000000000000s\"", &["2^64 microseconds"]);
    let text = TINY.replace("duration = \"2min\"", "duration = \"8days\"");
    refused_at(&text, "\"8days\"", &["up to 7 days", "most simulated time"]);
    let text = TINY.replace("duration = \"2min\"", "duration = \"7days\"");
    assert!(Scenario::parse(Path::new("ok.toml"), &text).is_ok());
    // Every duration, not only the scenario's.
    let text = tiny_with("[expect]\nconverge_within = \"30days\"\n")
        .replace("[expect]\nreference = true\n", "");
    refused_at(&text, "\"30days\"", &["up to 7 days"]);
}

#[test]
fn currents_that_overflow_their_unit_are_refused_with_the_range() {
    // A 300,000,000 A load became a negative load once.
    let text = tiny_with(
        "[[at]]\ntime = \"50s\"\ndo = \"load-on\"\nname = \"oven\"\ncurrent = \"300000000A\"\n",
    );
    refused_at(
        &text,
        "\"300000000A\"",
        &["expected a current from -10000A to 10000A"],
    );
    // "4294967295A" once read as "at most one decimal".
    let text = TINY.replace("limit = \"32A\"", "limit = \"4294967295A\"");
    refused_at(
        &text,
        "\"4294967295A\"",
        &["expected a current from 0A to 10000A"],
    );
    // A station current past 16 bits.
    let text = TINY.replace(
        "breaker = \"40A\"",
        "breaker = \"40A\"\n[bench]\ncurrent_offset = \"-4000A\"",
    );
    refused_at(
        &text,
        "\"-4000A\"",
        &["expected a current from -3276.7A to 3276.7A"],
    );
}

#[test]
fn probabilities_must_be_numbers_from_0_to_1() {
    // NaN, infinite and negative values were clamped silently once.
    for (key, value) in [
        ("loss", "nan"),
        ("loss", "inf"),
        ("corrupt", "-0.1"),
        ("corrupt", "1.5"),
    ] {
        let text = tiny_with(&format!(
            "[[at]]\ntime = \"50s\"\ndo = \"noise\"\n{key} = {value}\n"
        ));
        let e = err(&text);
        let (line, column) = at(&text, &format!("{key} = {value}"));
        assert_eq!((e.line, e.column), (line, column + key.len() + 3), "{e}");
        assert!(
            e.message.contains(&format!("expected {key} from 0 to 1")),
            "{e}"
        );
    }
    let text = tiny_with("[[at]]\ntime = \"50s\"\ndo = \"noise\"\nloss = 0.5\ncorrupt = 1\n");
    assert!(Scenario::parse(Path::new("ok.toml"), &text).is_ok());
}

#[test]
fn more_nodes_than_the_firmware_holds_are_refused() {
    // Nodes past 128 were dropped once, then reported as "unknown node".
    let mut text = String::from("duration = \"1min\"\n");
    for i in 0..=128 {
        text.push_str(&format!("[[node]]\nname = \"n{i}\"\nlimit = \"32A\"\n"));
    }
    text.push_str("[[station]]\nid = 0\nnode = \"n128\"\nnameplate = \"16A\"\nleader = true\n");
    refused_at(&text, "\"n128\"", &["at most 128 nodes", "MAX_NODES"]);
}

#[test]
fn expectations_over_a_nodes_limit_or_a_stations_cap_are_refused() {
    let step = |expect: &str| {
        TINY.replace("reference = true", "reference = false")
            + &format!("[[at]]\ntime = \"60s\"\ndo = \"check\"\nexpect = {expect}\n")
    };
    // 32 + 32 A on a 32 A circuit: the firmware never offers that.
    let text = step("[\"32A\", \"32A\"]");
    refused_at(
        &text,
        "[\"32A\", \"32A\"]",
        &[
            "add up to 64A on L1 under node \"circuit\"",
            "over its 32A limit",
        ],
    );
    // Over the station's own cap.
    let text = TINY
        .replace("reference = true", "reference = false")
        .replace(
            "nameplate = \"32A\"\nfallback",
            "nameplate = \"16A\"\nfallback",
        )
        + "[[at]]\ntime = \"60s\"\ndo = \"check\"\nexpect = [\"6A\", \"20A\"]\n";
    refused_at(&text, "\"20A\"]", &["station 1", "at most its 16A cap"]);
    // Within both: loads.
    assert!(Scenario::parse(Path::new("ok.toml"), &step("[\"16A\", \"16A\"]")).is_ok());
}

#[test]
fn more_loads_than_the_fixture_holds_are_refused() {
    // The fixture refused the 17th load mid-run once (an incomplete run).
    let mut text = TINY.to_string();
    for i in 0..=16 {
        text.push_str(&format!(
            "[[at]]\ntime = \"{}s\"\ndo = \"load-on\"\nname = \"appliance{i}\"\ncurrent = \"1A\"\n",
            41 + i
        ));
    }
    refused_at(
        &text,
        "\"appliance16\"",
        &["at most 16 distinct load names", "this is load 17"],
    );
    // Switching one load on and off again is one load.
    let again = text.replace("appliance16", "appliance0");
    assert!(Scenario::parse(Path::new("ok.toml"), &again).is_ok());
}

#[test]
fn percentages_over_100_are_refused() {
    let text = tiny_with("[[car]]\nstation = 0\nsoc = 150\n");
    refused_at(&text, "150", &["expected soc from 0 to 100"]);
}

#[test]
fn every_refusal_has_a_position_past_1_1() {
    let e = err(&TINY.replace("[expect]\n", "[expect]\nknown_violations = [\"fly\"]\n"));
    let text = TINY.replace("[expect]\n", "[expect]\nknown_violations = [\"fly\"]\n");
    assert_eq!((e.line, e.column), at(&text, "\"fly\""), "{e}");
    assert!(e.message.contains("unknown check \"fly\""), "{e}");

    // Nothing to point at: the end of the file, where it is missing.
    let text = "duration = \"1min\"\n[[node]]\nname = \"n\"\nlimit = \"32A\"\n";
    let e = err(text);
    assert_eq!((e.line, e.column), (5, 1), "{e}");
    assert!(
        e.message.contains("expected at least one [[station]]"),
        "{e}"
    );
}

#[test]
fn a_binary_or_non_utf8_file_gets_a_position() {
    let dir = std::env::temp_dir().join(format!("sharebench-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latin1.toml");
    // "é" in Latin-1 on line 2, column 12.
    std::fs::write(&path, b"duration = \"1min\"\nname = \"caf\xe9\"\n").unwrap();
    let e = Scenario::load(&path).unwrap_err();
    assert_eq!((e.line, e.column), (2, 12), "{e}");
    assert!(
        e.message.contains("not UTF-8 text") && e.message.contains("0xE9"),
        "{e}"
    );
    let path = dir.join("binary.toml");
    std::fs::write(&path, b"duration = \"1min\"\n\x7fELF\x02\x01\x01\x00\x00").unwrap();
    let e = Scenario::load(&path).unwrap_err();
    assert_eq!((e.line, e.column), (2, 1), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The instrument's reading of a station (phases, rotation, cap) and the
/// firmware's config built from the same station agree on every station of
/// the corpus, and on every combination the format allows.
#[test]
fn instrument_and_firmware_read_stations_alike() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let sc = Scenario::load(&path).unwrap();
        for st in &sc.stations {
            let fw = st.config();
            assert_eq!(
                st.loads(),
                fw.loads(),
                "{}: station {}",
                path.display(),
                st.id
            );
            assert_eq!(
                st.cap_da(),
                fw.cap_da(),
                "{}: station {}",
                path.display(),
                st.id
            );
            seen += 1;
        }
    }
    assert!(seen > 100, "the corpus has stations: {seen}");
    let mut st = tiny().stations[0].clone();
    for phases in [1, 3] {
        for rotation in 0..3 {
            for breaker_da in [None, Some(100), Some(160), Some(320)] {
                st.phases = phases;
                st.rotation = rotation;
                st.breaker_da = breaker_da;
                st.nameplate_da = 160;
                let fw = st.config();
                assert_eq!(st.loads(), fw.loads(), "{st:?}");
                assert_eq!(st.cap_da(), fw.cap_da(), "{st:?}");
            }
        }
    }
}

#[test]
fn the_hardware_set_takes_no_fault_a_lab_bench_cannot_make() {
    let marked = TINY.replace(
        "duration = \"2min\"",
        "duration = \"2min\"\nhardware-set = true",
    );
    assert!(
        Scenario::parse(Path::new("hw.toml"), &marked)
            .unwrap()
            .hardware_set
    );
    assert!(!tiny().hardware_set);
    let e = err(&format!(
        "{marked}[[at]]\ntime = \"50s\"\ndo = \"link-down\"\n"
    ));
    assert_eq!((e.line, e.column), (4, 16), "{e}");
    assert!(e.message.contains("only the virtual bench makes"), "{e}");
    // Power faults are what a lab bench's power commands make.
    let power = format!(
        "{marked}[[at]]\ntime = \"50s\"\ndo = \"crash\"\nstation = 1\n[[at]]\ntime = \"60s\"\ndo = \"reboot\"\nstation = 1\n"
    );
    let sc = Scenario::parse(Path::new("hw.toml"), &power).unwrap();
    assert!(sc.hardware_set && sc.needs_sim() && !sc.needs_sim_beyond_power());
}

/// The corpus's hardware set (issue 13 §4): what `run --hardware-set`
/// runs on a lab bench. It fits 30 minutes of bench time; every scenario
/// has as many stations as the others, with the leader on channel 0 (a
/// bench runs scenarios with at most as many stations as it has, parking
/// the others, and its meter line goes to one station), so one bench (or one virtual fixture) runs
/// them all; it needs no fault but power faults; and it makes every kind of
/// row a bench can show.
#[test]
fn the_corpus_hardware_set_fits_30_minutes_of_one_3_station_bench() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios");
    let mut set = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        let sc = Scenario::load(&p).unwrap();
        if sc.hardware_set {
            assert!(!sc.needs_sim_beyond_power(), "{}", sc.name);
            assert_eq!(sc.stations.len(), 3, "{}", sc.name);
            assert!(sc.stations[0].leader, "{}: leader on channel 0", sc.name);
            set.push(sc);
        }
    }
    let total_us: u64 = set.iter().map(|s| s.duration_us).sum();
    assert!(
        total_us <= 30 * 60 * 1_000_000,
        "{} s",
        total_us / 1_000_000
    );
    let steps = || {
        set.iter()
            .flat_map(|s| s.timeline.iter().map(move |t| (s, &t.action)))
    };
    let leader = |s: &Scenario, i: &usize| s.stations[*i].leader;
    let shows = [
        (
            "a follower's power cycle",
            steps().any(|(s, a)| matches!(a, Action::Crash(i) if !leader(s, i))),
        ),
        (
            "the leader's power cycle",
            steps().any(|(s, a)| matches!(a, Action::Crash(i) if leader(s, i))),
        ),
        (
            "a reboot",
            steps().any(|(_, a)| matches!(a, Action::Reboot(_))),
        ),
        (
            "a silent meter",
            steps().any(|(_, a)| matches!(a, Action::Meter(MeterFault::Silent))),
        ),
        (
            "a garbage meter",
            steps().any(|(_, a)| matches!(a, Action::Meter(MeterFault::Garbage))),
        ),
        (
            "a pilot short",
            steps().any(|(_, a)| matches!(a, Action::Misbehave(_, Misbehave::ShortPilot))),
        ),
        (
            "a missing diode",
            steps().any(|(_, a)| matches!(a, Action::Misbehave(_, Misbehave::NoDiode))),
        ),
        (
            "rotation",
            set.iter().any(|s| s.sharing.rotation_us.is_some()),
        ),
        (
            "priority",
            set.iter()
                .any(|s| s.stations.iter().any(|st| st.priority > 0)),
        ),
        (
            "a car that takes less than its share",
            set.iter().any(|s| s.cars.iter().any(|c| c.max_da < 160)),
        ),
        (
            "make-before-break",
            set.iter().any(|s| {
                s.assertions
                    .iter()
                    .any(|a| matches!(a.kind, AssertKind::FirstOfferAfterDrop { .. }))
            }),
        ),
        ("a real contactor", set.iter().any(|s| s.requires_hardware)),
    ];
    for (what, shown) in shows {
        assert!(shown, "the hardware set makes no {what}");
    }
}

/// TINY without its reference expectations, with `step` as its only step.
fn with_step(step: &str) -> String {
    TINY.replace("[expect]\nreference = true\n", "")
        .split("[[at]]")
        .next()
        .unwrap_or_default()
        .to_string()
        + "[[at]]\ntime = \"1s\"\ndo = \"arrive\"\nstation = 0\n"
        + step
}

/// Line and column of the last `needle` in `text`, 1-based.
fn at_of(text: &str, needle: &str) -> (usize, usize) {
    let off = text.rfind(needle).unwrap();
    let before = &text[..off];
    (
        before.matches('\n').count() + 1,
        off - before.rfind('\n').map_or(0, |i| i + 1) + 1,
    )
}

#[test]
fn expectation_keys_parse_into_bounds() {
    let s = Scenario::parse(
        Path::new("t.toml"),
        &with_step(
            "expect = [\"13.3A +/- 0.1A\", \"*\"]\nexpect_min = [\"*\", \"6A\"]\ntolerance = \"0.5A\"\nuntil = \"90s\"\nexpect_node = [{ node = \"circuit\", sum = \"limit\" }, { node = \"circuit\", phase = \"L2\", of = \"measured\", min = \"1A\", max = \"2A\" }]\nexpect_spread = { max = \"1A\" }\nexpect_car = [{ station = 1, draw = \"10A\", state = \"connected\" }]\n",
        ),
    )
    .unwrap();
    let x = s.timeline[0].expect.as_ref().unwrap();
    assert_eq!(
        x.offers[0],
        Bound {
            min_da: 132,
            max_da: 134
        }
    );
    assert_eq!(
        x.offers[1],
        Bound {
            min_da: 60,
            max_da: u32::MAX
        }
    );
    assert_eq!(x.until_us, Some(90_000_000));
    assert_eq!(
        x.nodes[0].bound,
        Bound {
            min_da: 315,
            max_da: 325
        },
        "the limit, give or take the step's tolerance"
    );
    assert_eq!(
        (x.nodes[1].phase, x.nodes[1].of),
        (Some(1), Quantity::Measured)
    );
    assert_eq!(
        x.nodes[1].bound,
        Bound {
            min_da: 10,
            max_da: 20
        }
    );
    assert_eq!(x.spread.as_ref().unwrap().stations, vec![0, 1]);
    assert_eq!(
        x.cars[0].draw,
        Bound {
            min_da: 95,
            max_da: 105
        }
    );
    assert_eq!(x.cars[0].state, Some(CarState::Connected));
    assert_eq!(x.cars[0].energy, None);
}

#[test]
fn energy_and_the_new_assertions_parse() {
    let s = Scenario::parse(
        Path::new("t.toml"),
        &(with_step(
            "expect_car = [{ station = 0, energy = \"10kWh +/- 500Wh\", energy_max = \"10.2kWh\" }, { station = 1, energy_min = \"800Wh\" }]\n",
        ) + "[[assert]]\nthat = \"increase-after-fall\"\nstation = 1\nafter = 0\nmargin = \"0.5A\"\n[[assert]]\nthat = \"all-charged-within\"\nfrom = \"1min\"\nwithin = \"20min\"\n"),
    )
    .unwrap();
    let x = s.timeline[0].expect.as_ref().unwrap();
    assert_eq!(
        x.cars[0].energy,
        Some(EnergyBound {
            min_wh: 9_500,
            max_wh: 10_200
        })
    );
    assert_eq!(
        x.cars[1].energy,
        Some(EnergyBound {
            min_wh: 800,
            max_wh: u32::MAX
        })
    );
    assert_eq!(x.cars[1].draw, Bound::ANY);
    assert_eq!(
        s.assertions[0].kind,
        AssertKind::IncreaseAfterFall {
            station: 1,
            after: 0,
            margin_da: 5
        }
    );
    assert_eq!(
        (&s.assertions[1].kind, s.assertions[1].from_us),
        (
            &AssertKind::AllChargedWithin {
                stations: vec![0, 1],
                within_us: 1_200_000_000
            },
            60_000_000
        )
    );
}

#[test]
fn bad_expectations_are_refused_at_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "expect = [\"13.3A +- 0.1A\", \"0A\"]\n",
            "\"13.3A +-",
            "expected a current such as \"16A\" or \"13.3A +/- 0.1A\", or \"*\" for any value, found \"13.3A +- 0.1A\"",
        ),
        (
            "expect = [\"13.3A +/- x\", \"0A\"]\n",
            "\"13.3A +/-",
            "(the tolerance)",
        ),
        (
            "expect_max = [\"3A +/- 1A\", \"*\"]\n",
            "\"3A +/-",
            "a tolerance is for",
        ),
        (
            "expect = [\"*\"]\n",
            "[\"*\"]",
            "one current per station (2), found 1",
        ),
        (
            "expect_min = [\"20A\", \"*\"]\nexpect_max = [\"10A\", \"*\"]\n",
            "\"10A\"",
            "leaves nothing",
        ),
        (
            "expect = [\"*\", \"*\"]\nuntil = \"0.5s\"\n",
            "\"0.5s\"",
            "expected until after the step",
        ),
        (
            "expect = [\"*\", \"*\"]\nuntil = \"3min\"\n",
            "\"3min\"",
            "at most the scenario's duration",
        ),
        (
            "until = \"1min\"\n",
            "\"1min\"",
            "until without an expectation",
        ),
        (
            "expect_node = [{ node = \"garage\", sum = \"3A\" }]\n",
            "\"garage\"",
            "unknown node \"garage\"; expected one of circuit",
        ),
        (
            "expect_node = [{ node = \"circuit\", phase = \"L4\", max = \"3A\" }]\n",
            "\"L4\"",
            "expected phase = \"L1\"",
        ),
        (
            "expect_node = [{ node = \"circuit\", of = \"drawn\", max = \"3A\" }]\n",
            "\"drawn\"",
            "expected of = \"offered\" or \"measured\"",
        ),
        (
            "expect_node = [{ node = \"circuit\" }]\n",
            "\"circuit\" }",
            "expected sum",
        ),
        (
            "expect_spread = { max = \"1A\", stations = [0] }\n",
            "\"1A\"",
            "at least two stations",
        ),
        (
            "expect_spread = { max = \"1A\", stations = [0, 7] }\n",
            "7]",
            "unknown station 7",
        ),
        (
            "expect_car = [{ station = 0, state = \"asleep\" }]\n",
            "\"asleep\"",
            "expected state = \"unplugged\"",
        ),
        (
            "expect_car = [{ station = 0 }]\n",
            "0 }",
            "expected draw, draw_min, draw_max, state, energy, energy_min or energy_max",
        ),
        (
            "expect_car = [{ station = 0, energy = \"10kW\" }]\n",
            "\"10kW\"",
            "expected an energy such as",
        ),
        (
            "expect_car = [{ station = 0, energy = \"10kWh +/- x\" }]\n",
            "\"10kWh +/-",
            "found \"x\"",
        ),
        (
            "expect_car = [{ station = 0, energy_min = \"10kWh +/- 1kWh\" }]\n",
            "\"10kWh +/- 1kWh\"",
            "a tolerance is for `energy`",
        ),
        (
            "expect_car = [{ station = 0, energy_min = \"10kWh\", energy_max = \"9kWh\" }]\n",
            "\"9kWh\"",
            "leaves nothing (from 10 kWh to 9 kWh)",
        ),
        (
            "expect_car = [{ station = 0, energy = \"2000kWh\" }]\n",
            "\"2000kWh\"",
            "expected an energy from 0Wh to 1000kWh",
        ),
        (
            "expect_car = [{ station = 0, colour = \"red\" }]\n",
            "colour",
            "unknown field `colour`",
        ),
        (
            "expect = [\"33A\", \"*\"]\n",
            "\"33A\"",
            "at most its 32A cap",
        ),
        (
            "expect_min = [\"20A\", \"20A\"]\n",
            "[\"20A\"",
            "add up to 40A on L1",
        ),
    ];
    for (step, needle, message) in cases {
        let text = with_step(step);
        let e = Scenario::parse(Path::new("bad.toml"), &text).unwrap_err();
        assert!(e.message.contains(message), "{step}: {e}");
        assert_eq!((e.line, e.column), at_of(&text, needle), "{step}: {e}");
    }
}

#[test]
fn bad_assertions_are_refused_at_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "that = \"sometimes\"\n",
            "\"sometimes\"",
            "unknown assertion \"sometimes\"; expected that = no-offer-between",
        ),
        (
            "that = \"no-offer-between\"\nabove = \"6A\"\nbelow = \"6A\"\n",
            "below = \"6A\"",
            "the range between them",
        ),
        (
            "that = \"at-most-charging\"\n",
            "\"at-most-charging\"",
            "expected count",
        ),
        (
            "that = \"at-most-charging\"\ncount = 1\nnode = \"circuit\"\n",
            "\"circuit\"\n",
            "does not read node",
        ),
        (
            "that = \"node-within-limit\"\nnode = \"garage\"\n",
            "\"garage\"",
            "unknown node \"garage\"",
        ),
        (
            "that = \"first-offer-after-drop\"\nstation = 1\nafter = 1\n",
            "after = 1",
            "another station",
        ),
        (
            "that = \"first-offer-after-drop\"\nstation = 1\n",
            "\"first-offer",
            "expected after = <station id>",
        ),
        (
            "that = \"opens-after-overcurrent\"\nstation = 0\nbetween = [\"8s\"]\n",
            "[\"8s\"]",
            "two durations",
        ),
        (
            "that = \"opens-after-overcurrent\"\nstation = 0\nbetween = [\"8s\", \"6s\"]\n",
            "\"6s\"",
            "at least the first",
        ),
        (
            "that = \"reported\"\nstation = 0\nsays = \"fault\"\ntimes = \"twice\"\n",
            "\"twice\"",
            "expected times = \"once\"",
        ),
        (
            "that = \"someone-charging\"\nuntil = \"3min\"\n",
            "\"3min\"",
            "at most the scenario's duration",
        ),
        (
            "that = \"someone-charging\"\nfrom = \"1min\"\nuntil = \"30s\"\n",
            "\"30s\"",
            "expected until after from",
        ),
        (
            "that = \"increase-after-fall\"\nstation = 1\nafter = 1\n",
            "after = 1",
            "another station",
        ),
        (
            "that = \"increase-after-fall\"\nafter = 0\n",
            "\"increase-after-fall\"",
            "expected station = <station id> for that = \"increase-after-fall\"",
        ),
        (
            "that = \"increase-after-fall\"\nstation = 1\nafter = 0\nmargin = \"half\"\n",
            "\"half\"",
            "expected a current",
        ),
        (
            "that = \"increase-after-fall\"\nstation = 1\nafter = 0\ncount = 2\n",
            "2\n",
            "does not read count; expected only from, until, station, after, margin",
        ),
        (
            "that = \"all-charged-within\"\n",
            "\"all-charged-within\"",
            "expected within = \"20min\" for that = \"all-charged-within\"",
        ),
        (
            "that = \"all-charged-within\"\nwithin = \"0s\"\n",
            "\"0s\"",
            "expected within longer than 0 s",
        ),
        (
            "that = \"all-charged-within\"\nwithin = \"soon\"\n",
            "\"soon\"",
            "soon",
        ),
        (
            "that = \"all-charged-within\"\nwithin = \"10min\"\nstations = [0, 9]\n",
            "9]",
            "unknown station 9",
        ),
        (
            "that = \"pauses-at-least\"\nat_least = \"1min\"\nwithin = \"10min\"\n",
            "\"10min\"",
            "does not read within",
        ),
    ];
    for (body, needle, message) in cases {
        let text = with_step("") + "[[assert]]\n" + body;
        let e = Scenario::parse(Path::new("bad.toml"), &text).unwrap_err();
        assert!(e.message.contains(message), "{body}: {e}");
        let (line, col) = at_of(&text, needle);
        let col = if needle.starts_with("below") || needle.starts_with("after") {
            col + needle.find(' ').unwrap() + 3
        } else {
            col
        };
        assert_eq!((e.line, e.column), (line, col), "{body}: {e}");
    }
}

/// Each ```toml block of `text` with the line it starts on.
fn toml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (k, line) in text.lines().enumerate() {
        match &mut cur {
            None if line.trim_start() == "```toml" => cur = Some((k + 2, String::new())),
            None => {}
            Some(_) if line.trim_start() == "```" => out.extend(cur.take()),
            Some((_, b)) => {
                b.push_str(line);
                b.push('\n');
            }
        }
    }
    out
}

/// Every scenario block in the README loads: the first is a whole file,
/// the others extend it (a step, an assertion). The bench inventory's
/// block is not a scenario.
#[test]
fn every_scenario_block_in_the_readme_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let mut base: Option<String> = None;
    let mut checked = 0;
    for (line, block) in toml_blocks(&readme) {
        if block.contains("[[bench]]") {
            continue;
        }
        let text = match &base {
            None => block.clone(),
            Some(b) => format!("{b}{block}"),
        };
        if let Err(e) = Scenario::parse(Path::new("README.md"), &text) {
            panic!("the README's scenario block at line {line} does not load: {e}");
        }
        base.get_or_insert(block);
        checked += 1;
    }
    assert!(checked >= 3, "found {checked} scenario blocks");
}

#[test]
fn a_car_step_changes_the_car_and_its_keys_belong_to_it() {
    let s = Scenario::parse(
        Path::new("t.toml"),
        &with_step("[[at]]\ntime = \"5s\"\ndo = \"car\"\nstation = 1\nmax = \"10A\"\nsoc = 20\ntarget = 80\n"),
    )
    .unwrap();
    assert_eq!(
        s.timeline[1].action,
        Action::Car(
            1,
            vec![
                CarSetting::MaxDa(100),
                CarSetting::TargetPermille(800),
                CarSetting::SocPermille(200)
            ]
        ),
        "the SoC last: it is of the battery as now set"
    );
    for (step, needle, message) in [
        (
            "[[at]]\ntime = \"5s\"\ndo = \"car\"\nstation = 1\n",
            "\"car\"",
            "expected max, soc, target, capacity, phases or aux",
        ),
        (
            "[[at]]\ntime = \"5s\"\ndo = \"car\"\nmax = \"10A\"\n",
            "\"car\"",
            "expected station = <id>",
        ),
        (
            "[[at]]\ntime = \"5s\"\ndo = \"car\"\nstation = 1\nsoc = 120\n",
            "120",
            "expected soc from 0 to 100",
        ),
        (
            "[[at]]\ntime = \"5s\"\ndo = \"unplug\"\nstation = 1\nmax = \"10A\"\n",
            "\"10A\"",
            "max is for do = \"car\"",
        ),
    ] {
        let text = with_step(step);
        let e = Scenario::parse(Path::new("bad.toml"), &text).unwrap_err();
        assert!(e.message.contains(message), "{step}: {e}");
        assert_eq!((e.line, e.column), at_of(&text, needle), "{step}: {e}");
    }
}

/// The keys a table accepts, from the parser itself: its unknown-field
/// error lists them.
fn keys_of(snippet: &str) -> std::collections::BTreeSet<String> {
    let e = Scenario::parse(Path::new("k.toml"), snippet).unwrap_err();
    let list = e
        .message
        .split_once("expected")
        .map(|(_, l)| l.to_string())
        .unwrap_or_default();
    let keys: std::collections::BTreeSet<String> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(!keys.is_empty(), "{snippet}: {e}");
    keys
}

/// The names in the first column of the tables in `heading`'s section.
fn documented(doc: &str, heading: &str) -> std::collections::BTreeSet<String> {
    let start = doc
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading}"));
    let body = &doc[start + heading.len() + 2..];
    let end = body
        .find("\n## ")
        .into_iter()
        .chain(body.find("\n### "))
        .min()
        .unwrap_or(body.len());
    body[..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(k, _)| k.to_string()))
        .collect()
}

/// docs/scenario-reference.md documents exactly the keys the parser takes,
/// every action and every assertion kind; its examples load.
#[test]
fn the_reference_matches_the_parser() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/scenario-reference.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let tables = [
        ("## Top level", "zzz = 1\n"),
        ("## `[[node]]`", "[[node]]\nzzz = 1\n"),
        ("## `[[station]]`", "[[station]]\nzzz = 1\n"),
        ("## `[[car]]`", "[[car]]\nzzz = 1\n"),
        (
            "## `[[arrivals]]`: seeded sessions",
            "[[arrivals]]\nzzz = 1\n",
        ),
        ("## `[sharing]`", "[sharing]\nzzz = 1\n"),
        ("## `[meter]`", "[meter]\nzzz = 1\n"),
        ("## `[bench]`", "[bench]\nzzz = 1\n"),
        ("## `[expect]`", "[expect]\nzzz = 1\n"),
        ("## `[[at]]`: a timeline step", "[[at]]\nzzz = 1\n"),
        (
            "### `expect_node` items",
            "[[at]]\nexpect_node = [{ zzz = 1 }]\n",
        ),
        (
            "### `expect_spread`",
            "[[at]]\nexpect_spread = { zzz = 1 }\n",
        ),
        (
            "### `expect_car` items",
            "[[at]]\nexpect_car = [{ zzz = 1 }]\n",
        ),
        (
            "## `[[assert]]`: assertions over time",
            "[[assert]]\nzzz = 1\n",
        ),
    ];
    for (heading, snippet) in tables {
        assert_eq!(documented(&doc, heading), keys_of(snippet), "{heading}");
    }
    let names = |v: &[&str]| {
        v.iter()
            .map(|s| (*s).to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(documented(&doc, "### Actions (`do`)"), names(ACTIONS));
    assert_eq!(
        documented(&doc, "### Assertion kinds (`that`)"),
        names(ASSERT_KINDS)
    );
    // Every action listed is one the parser takes.
    for a in ACTIONS {
        let text = with_step(&format!(
            "[[at]]\ntime = \"5s\"\ndo = \"{a}\"\nstation = 1\n"
        ));
        if let Err(e) = Scenario::parse(Path::new("a.toml"), &text) {
            assert!(!e.message.contains("unknown action"), "{a}: {e}");
        }
    }
    let mut base: Option<String> = None;
    let mut checked = 0;
    for (line, block) in toml_blocks(&doc) {
        let text = base
            .as_ref()
            .map_or_else(|| block.clone(), |b| format!("{b}{block}"));
        if let Err(e) = Scenario::parse(Path::new("scenario-reference.md"), &text) {
            panic!("the reference's block at line {line} does not load: {e}");
        }
        base.get_or_insert(block);
        checked += 1;
    }
    assert_eq!(checked, 4);
}

/// The words the arms of the `match` that opens with `opening` in the
/// source file `file` (under `harness/src`) accept: its top-level arms
/// only (those at the first arm's indentation), each `"word"` before `=>`.
fn match_arms(file: &str, opening: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find(opening)
        .unwrap_or_else(|| panic!("{file}: no `{opening}`"));
    let mut lines = text[start..].lines().skip(1);
    let first = lines.next().unwrap_or_default();
    let indent = first.len() - first.trim_start().len();
    let mut words = Vec::new();
    for line in std::iter::once(first).chain(lines) {
        let depth = line.len() - line.trim_start().len();
        if !line.trim().is_empty() && depth < indent {
            break;
        }
        let arm = line.trim_start();
        if depth != indent || !arm.starts_with('"') {
            continue;
        }
        let Some((pattern, _)) = arm.split_once("=>") else {
            continue;
        };
        words.extend(
            pattern
                .split('|')
                .map(|w| w.trim().trim_matches('"').to_string()),
        );
    }
    assert!(words.len() > 3, "{file}: found only {words:?}");
    words
}

/// Every word the parser accepts for `do` and for `that` is in ACTIONS and
/// ASSERT_KINDS (which the reference and the schema are held to), and
/// every word listed there is accepted: read from the parser's own match
/// arms, so a new arm without its entry (or an entry without an arm) fails.
#[test]
fn every_action_and_assertion_word_the_parser_accepts_is_listed() {
    let sorted = |v: Vec<String>| -> Vec<String> {
        let mut v = v;
        v.sort();
        v
    };
    let listed = |v: &[&str]| sorted(v.iter().map(|s| (*s).to_string()).collect());
    assert_eq!(
        sorted(match_arms(
            "scenario.rs",
            "let action = match st.action.get_ref().as_str() {"
        )),
        listed(ACTIONS)
    );
    assert_eq!(
        sorted(match_arms(
            "scenario/assertion.rs",
            "let kind = match that.get_ref().as_str() {"
        )),
        listed(ASSERT_KINDS)
    );
    // The reader itself: an arm missing from a list is seen.
    let arms = match_arms(
        "scenario.rs",
        "let action = match st.action.get_ref().as_str() {",
    );
    assert!(arms.iter().any(|a| a == "weld") && arms.iter().any(|a| a == "check"));
    assert!(!arms.iter().any(|a| a == "ok" || a == "none"), "{arms:?}");
}

/// docs/scenario.schema.json (for editors) accepts every scenario in
/// fixtures/, refuses what the parser refuses by shape (an unknown key, a
/// current without its unit, an unknown action), and names exactly the
/// parser's keys in every table, so it cannot drift.
#[test]
fn the_json_schema_matches_the_parser_and_the_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docs/scenario.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let as_json = |text: &str| -> serde_json::Value {
        serde_json::to_value(toml::from_str::<toml::Value>(text).unwrap()).unwrap()
    };
    let mut files = 0;
    for entry in std::fs::read_dir(root.join("fixtures/scenarios")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let v = as_json(&std::fs::read_to_string(&p).unwrap());
            let errors: Vec<String> = validator
                .iter_errors(&v)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", p.display());
            files += 1;
        }
    }
    assert!(files >= 30, "{files} files");
    let good = with_step("expect = [\"16A +/- 0.5A\", \"*\"]\n");
    assert!(validator.is_valid(&as_json(&good)));
    for bad in [
        good.replace("expect = [", "expectt = ["),
        good.replace("limit = \"32A\"", "limit = \"32\""),
        good.replace("do = \"arrive\"", "do = \"arive\""),
        good.clone() + "[[assert]]\nthat = \"sometimes\"\n",
    ] {
        assert!(!validator.is_valid(&as_json(&bad)), "{bad}");
    }
    // Each table's properties are the parser's keys.
    let props = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let item = |v: &serde_json::Value| v["items"].clone();
    let p = &schema["properties"];
    let at = item(&p["at"]);
    let tables = [
        (schema.clone(), "zzz = 1\n"),
        (item(&p["node"]), "[[node]]\nzzz = 1\n"),
        (item(&p["station"]), "[[station]]\nzzz = 1\n"),
        (item(&p["car"]), "[[car]]\nzzz = 1\n"),
        (item(&p["arrivals"]), "[[arrivals]]\nzzz = 1\n"),
        (p["sharing"].clone(), "[sharing]\nzzz = 1\n"),
        (p["meter"].clone(), "[meter]\nzzz = 1\n"),
        (p["bench"].clone(), "[bench]\nzzz = 1\n"),
        (p["expect"].clone(), "[expect]\nzzz = 1\n"),
        (at.clone(), "[[at]]\nzzz = 1\n"),
        (
            item(&at["properties"]["expect_node"]),
            "[[at]]\nexpect_node = [{ zzz = 1 }]\n",
        ),
        (
            at["properties"]["expect_spread"].clone(),
            "[[at]]\nexpect_spread = { zzz = 1 }\n",
        ),
        (
            item(&at["properties"]["expect_car"]),
            "[[at]]\nexpect_car = [{ zzz = 1 }]\n",
        ),
        (item(&p["assert"]), "[[assert]]\nzzz = 1\n"),
    ];
    for (table, snippet) in tables {
        assert_eq!(props(&table), keys_of(snippet), "{snippet}");
    }
    let listed = |v: &serde_json::Value| -> Vec<String> {
        v["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed(&at["properties"]["do"]), ACTIONS.to_vec());
    assert_eq!(
        listed(&item(&p["assert"])["properties"]["that"]),
        ASSERT_KINDS.to_vec()
    );
    assert_eq!(
        listed(&p["expect"]["properties"]["skip"]["items"]),
        crate::checks::CHECK_NAMES.to_vec()
    );
}

/// The tiny site with 6 A fallbacks and `steps` added to its timeline.
fn with_steps(steps: &str) -> String {
    TINY.replace("fallback = \"16A\"", "fallback = \"6A\"") + steps
}

#[test]
fn set_limit_is_parsed_and_scheduled() {
    let s = Scenario::parse(
        Path::new("t.toml"),
        &with_steps(
            "[[at]]\ntime = \"60s\"\ndo = \"set-limit\"\nnode = \"circuit\"\nlimit = \"20A\"\n\
             [[at]]\ntime = \"90s\"\ndo = \"set-limit\"\nnode = \"circuit\"\nlimit = \"plan\"\n",
        ),
    )
    .unwrap();
    assert_eq!(
        s.timeline[2].action,
        Action::SetLimit {
            node: 0,
            da: Some(200)
        }
    );
    assert_eq!(s.timeline[3].action, Action::SetLimit { node: 0, da: None });
    // A cut binds one cycle after it is sent; a raise at once.
    let cycle = s.sharing.cycle_us;
    assert_eq!(
        s.limit_schedule(0),
        vec![(0, 320), (60_000_000 + cycle, 200), (90_000_000, 320)]
    );
    assert_eq!(s.limit_at(0, 60_000_000), 320);
    assert_eq!(s.limit_at(0, 60_000_000 + cycle), 200);
    assert_eq!(s.limit_at(0, 100_000_000), 320);
    // The reference allocator shares the limit in force.
    let t = Scenario::parse(
        Path::new("t.toml"),
        &with_steps(
            "[[at]]\ntime = \"60s\"\ndo = \"set-limit\"\nnode = \"circuit\"\nlimit = \"20A\"\n",
        ),
    )
    .unwrap();
    assert_eq!(
        t.timeline[2]
            .expect
            .as_ref()
            .and_then(Expectation::exact_offers),
        Some(vec![100, 100])
    );
}

/// Under a link fault a cut binds a leader timeout later; a limit sent to a
/// crashed leader is lost; its reboot gives the plan's back.
#[test]
fn set_limit_under_faults_is_scheduled_as_the_firmware_can_keep_it() {
    let at = |t: &str, what: &str| format!("[[at]]\ntime = \"{t}\"\n{what}\n");
    let limit = |l: &str| format!("do = \"set-limit\"\nnode = \"circuit\"\nlimit = \"{l}\"");
    let text = with_steps(
        &(at("50s", "do = \"link-down\"")
            + &at("60s", &limit("20A"))
            + &at("70s", "do = \"repair\"")
            + &at("75s", "do = \"crash\"\nstation = 0")
            + &at("80s", &limit("14A"))
            + &at("90s", "do = \"reboot\"\nstation = 0")
            + &at("100s", &limit("16A"))),
    );
    let s = Scenario::parse(Path::new("t.toml"), &text).unwrap();
    let (cycle, timeout) = (s.sharing.cycle_us, s.sharing.leader_timeout_us);
    assert_eq!(
        s.limit_schedule(0),
        vec![
            (0, 320),
            (60_000_000 + cycle + timeout, 200),
            (90_000_000, 320),
            (100_000_000 + cycle, 160),
        ]
    );
}

#[test]
fn a_bad_set_limit_is_refused_where_it_is() {
    let step = |node: &str, limit: &str| {
        with_steps(&format!(
            "[[at]]\ntime = \"60s\"\ndo = \"set-limit\"\nnode = \"{node}\"\nlimit = \"{limit}\"\n"
        ))
    };
    let e = err(&step("panel", "20A"));
    assert!(
        e.message
            .contains("unknown node \"panel\"; expected one of circuit"),
        "{e}"
    );
    let e = err(&step("circuit", "40A"));
    assert!(
        e.message.contains("at most the node's 32.0 A in the plan"),
        "{e}"
    );
    // Under the 12 A of fallbacks: the leader would refuse it.
    let e = err(&step("circuit", "10A"));
    assert!(
        e.message.contains("the leader would refuse this limit"),
        "{e}"
    );
    assert_eq!((e.line, e.column), (33, 9), "{e}");
    let e = err(&with_steps(
        "[[at]]\ntime = \"60s\"\ndo = \"set-limit\"\nnode = \"circuit\"\n",
    ));
    assert!(e.message.contains("expected limit = \"20A\""), "{e}");
    let e = err(&with_steps(
        "[[at]]\ntime = \"60s\"\ndo = \"check\"\nlimit = \"20A\"\n",
    ));
    assert!(
        e.message
            .contains("node and limit are for do = \"set-limit\""),
        "{e}"
    );
}

#[test]
fn car_steps_take_phases_and_aux_and_loads_keep_their_lines() {
    let text = with_step(
        "[[at]]\ntime = \"5s\"\ndo = \"car\"\nstation = 1\nphases = 1\naux = \"2A\"\n\
         [[at]]\ntime = \"6s\"\ndo = \"load-on\"\nname = \"oven\"\nphases = \"L123\"\ncurrent = \"13A\"\n",
    );
    let s = Scenario::parse(Path::new("t.toml"), &text).unwrap();
    assert_eq!(
        s.timeline[1].action,
        Action::Car(1, vec![CarSetting::Phases(1), CarSetting::AuxDa(20)])
    );
    assert!(matches!(
        s.timeline[2].action,
        Action::Load { phases: 7, .. }
    ));
    for (step, message, needle) in [
        (
            "[[at]]\ntime = \"5s\"\ndo = \"car\"\nstation = 1\nphases = 2\n",
            "expected phases = 1 or 3 (the phases the car draws on) for do = \"car\"",
            "2\n",
        ),
        (
            "[[at]]\ntime = \"5s\"\ndo = \"car\"\nstation = 1\nphases = \"L1\"\n",
            "expected phases = 1 or 3",
            "\"L1\"",
        ),
        (
            "[[at]]\ntime = \"5s\"\ndo = \"load-on\"\nname = \"oven\"\nphases = 3\ncurrent = \"1A\"\n",
            "expected phases = \"L1\", \"L2\", \"L3\" or \"L123\" for a load",
            "3\ncurrent",
        ),
        (
            "[[at]]\ntime = \"5s\"\ndo = \"arrive\"\nstation = 1\naux = \"2A\"\n",
            "aux is for do = \"car\"",
            "\"2A\"",
        ),
        (
            "[[at]]\ntime = \"5s\"\ndo = \"car\"\nstation = 1\naux = \"2\"\n",
            "expected a current",
            "\"2\"",
        ),
    ] {
        let text = with_step(step);
        let e = Scenario::parse(Path::new("bad.toml"), &text).unwrap_err();
        assert!(e.message.contains(message), "{step}: {e}");
        assert_eq!((e.line, e.column), at_of(&text, needle), "{step}: {e}");
    }
}

#[test]
fn meter_noise_and_car_aux_parse_with_their_defaults() {
    let meter = "[meter]\nmode = \"headroom\"\nnode = \"circuit\"\nworst_case_other = \"10A\"\n";
    let text =
        with_step("") + "[[car]]\nstation = 1\naux = \"1.5A\"\n[[car]]\nstation = 0\n" + meter;
    let s = Scenario::parse(Path::new("t.toml"), &text).unwrap();
    assert_eq!(s.cars[0].aux_da, 15);
    assert_eq!(s.cars[1].aux_da, 0);
    assert_eq!(s.meter.as_ref().unwrap().noise_da, 0);
    let s = Scenario::parse(Path::new("t.toml"), &(text.clone() + "noise = \"0.5A\"\n")).unwrap();
    assert_eq!(s.meter.as_ref().unwrap().noise_da, 5);
    let bad = text.clone() + "noise = \"-1A\"\n";
    let e = Scenario::parse(Path::new("bad.toml"), &bad).unwrap_err();
    assert_eq!((e.line, e.column), at_of(&bad, "\"-1A\""), "{e}");
    // Up to the margin (1 A by default), not beyond: a reading low by more
    // than the leader holds back lets the node carry more than its limit.
    let s = Scenario::parse(Path::new("t.toml"), &(text.clone() + "noise = \"1A\"\n")).unwrap();
    assert_eq!(s.meter.as_ref().unwrap().noise_da, 10);
    let bad = text.clone() + "noise = \"1.1A\"\n";
    let e = Scenario::parse(Path::new("bad.toml"), &bad).unwrap_err();
    assert_eq!((e.line, e.column), at_of(&bad, "\"1.1A\""), "{e}");
    assert!(
        e.message
            .contains("the meter's noise (1.1A) is more than its margin (1A)")
            && e.message
                .contains("expected a margin of at least the noise"),
        "{e}"
    );
    let wide = text + "margin = \"2A\"\nnoise = \"1.1A\"\n";
    assert!(Scenario::parse(Path::new("t.toml"), &wide).is_ok());
}
