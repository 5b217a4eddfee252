use super::*;
use crate::sharing::config::{MAX_NODES, MAX_STATIONS};
use crate::time::secs;
use proptest::prelude::*;

const BENCH: Key = [9; 32];

fn site(n: u8) -> GroupConfig<8, 4> {
    let mut nodes = Vec::new();
    let _ = nodes.push(NodeConfig {
        parent: None,
        limit_da: 800,
        breaker_da: Some(1_000),
    });
    let _ = nodes.push(NodeConfig {
        parent: Some(0),
        limit_da: 480,
        breaker_da: None,
    });
    let mut stations = Vec::new();
    for id in 1..=n {
        let _ = stations.push(StationConfig {
            id,
            node: u16::from(id % 2),
            nameplate_da: 320,
            breaker_da: if id == 2 { Some(250) } else { None },
            phases: if id == 3 { 3 } else { 1 },
            rotation: Phase::L2,
            fallback_da: 60,
            priority: id % 3,
            weight: 1,
        });
    }
    GroupConfig {
        group: 5,
        key: [0xA5; 32],
        enabled: true,
        leader: 1,
        nodes,
        stations,
        timing: Timing {
            rotation_period: Some(secs(300)),
            ..Timing::default()
        },
        dynamic: Some(DynamicConfig {
            mode: DynamicMode::Headroom,
            node: 0,
            meter: MeterConfig::default(),
            worst_case_other_da: 300,
            margin_da: 10,
            resume_margin_da: 20,
            min_pause: secs(60),
            peak_hold_readings: 3,
            solar_start_margin_da: 0,
            solar_start_delay: secs(0),
            solar_stop_margin_da: 0,
            solar_stop_delay: secs(0),
        }),
    }
}

fn lines<const S: usize, const N: usize>(
    c: &Commission<S, N>,
    key: &Key,
) -> std::vec::Vec<std::string::String> {
    let mut v = std::vec::Vec::new();
    encode(c, key, |l| v.push(l.to_string()));
    v
}

fn receive<const S: usize, const N: usize>(
    text: &str,
    key: Key,
) -> Option<Result<Commission<S, N>, Refusal>> {
    Receiver::<S, N>::new(key).handle_rx(text.as_bytes())
}

#[test]
fn a_plan_goes_through_and_comes_out_the_same() {
    let c = Commission {
        id: 3,
        group: site(4),
    };
    let text: std::string::String = lines(&c, &BENCH).concat();
    assert_eq!(receive::<8, 4>(&text, BENCH), Some(Ok(c.clone())));
    // Noise and log lines around it are ignored.
    let noisy = format!("hello\r\nC stray*0000\n{text}more log\n");
    assert_eq!(receive::<8, 4>(&noisy, BENCH), Some(Ok(c)));
}

#[test]
fn an_overcurrent_retry_goes_through_and_a_plan_without_one_still_reads() {
    let mut c = Commission {
        id: 3,
        group: site(4),
    };
    c.group.timing.overcurrent_retry = Some(secs(120));
    let text: std::string::String = lines(&c, &BENCH).concat();
    assert!(text.contains(" 120000000*"), "{text}");
    assert_eq!(receive::<8, 4>(&text, BENCH), Some(Ok(c.clone())));
    // The documented example's timing line has no retry field: no retry.
    c.group.timing.overcurrent_retry = None;
    let with_dash: std::string::String = lines(&c, &BENCH).concat();
    assert!(
        with_dash
            .lines()
            .any(|l| l.starts_with("C timing") && l.contains(" -*")),
        "{with_dash}"
    );
    assert_eq!(receive::<8, 4>(&with_dash, BENCH), Some(Ok(c)));
}

#[test]
fn every_refusal_has_its_reason() {
    let c = Commission {
        id: 3,
        group: site(4),
    };
    let text: std::string::String = lines(&c, &BENCH).concat();
    // Another bench's key.
    assert_eq!(receive::<8, 4>(&text, [1; 32]), Some(Err(Refusal::BadMac)));
    // More stations than this image holds.
    assert_eq!(receive::<2, 4>(&text, BENCH), Some(Err(Refusal::TooLarge)));
    assert_eq!(
        receive::<8, 1>(&text, BENCH).map(|r| r.map(|_| ())),
        Some(Err(Refusal::TooLarge))
    );
    // A plan for a station that is not in it.
    let stranger = Commission {
        id: 9,
        group: site(4),
    };
    let t: std::string::String = lines(&stranger, &BENCH).concat();
    assert_eq!(receive::<8, 4>(&t, BENCH), Some(Err(Refusal::NotInGroup)));
    // A plan that fails validation: fallbacks over the circuit.
    let mut bad = site(4);
    for s in bad.stations.iter_mut() {
        s.fallback_da = 320;
    }
    let t: std::string::String = lines(&Commission { id: 3, group: bad }, &BENCH).concat();
    assert_eq!(receive::<8, 4>(&t, BENCH), Some(Err(Refusal::Invalid)));
    // A station whose own breaker is under 6 A fails its charge point.
    let mut weak = site(4);
    weak.stations[2].breaker_da = Some(50);
    weak.stations[2].fallback_da = 0;
    let t: std::string::String = lines(&Commission { id: 3, group: weak }, &BENCH).concat();
    assert_eq!(receive::<8, 4>(&t, BENCH), Some(Err(Refusal::InvalidPoint)));
    // A missing line, and a garbled one.
    let v = lines(&c, &BENCH);
    let missing: std::string::String = v
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != 4)
        .map(|(_, l)| l.as_str())
        .collect();
    assert_eq!(
        receive::<8, 4>(&missing, BENCH),
        Some(Err(Refusal::Malformed))
    );
    let garbled = text.replacen("C node - 800", "C node - 900", 1);
    assert_eq!(
        receive::<8, 4>(&garbled, BENCH),
        Some(Err(Refusal::Malformed))
    );
}

#[test]
fn a_tampered_line_with_a_fresh_crc_fails_the_mac() {
    let c = Commission {
        id: 3,
        group: site(4),
    };
    let v = lines(&c, &BENCH);
    let forged: std::string::String = v
        .iter()
        .map(|l| {
            if l.starts_with("C node - 800") {
                let body = "C node - 900 1000";
                format!("{body}*{:04X}\n", CRC16.checksum(body.as_bytes()))
            } else {
                l.clone()
            }
        })
        .collect();
    assert_eq!(receive::<8, 4>(&forged, BENCH), Some(Err(Refusal::BadMac)));
}

#[test]
fn a_full_group_fits_a_line_each() {
    let mut g = GroupConfig::<MAX_STATIONS, MAX_NODES> {
        group: 1,
        key: [0xFF; 32],
        enabled: true,
        leader: 0,
        nodes: Vec::new(),
        stations: Vec::new(),
        timing: Timing::default(),
        dynamic: None,
    };
    let _ = g.nodes.push(NodeConfig {
        parent: None,
        limit_da: u32::MAX,
        breaker_da: Some(u32::MAX),
    });
    for id in 0..=255u8 {
        let _ = g.stations.push(StationConfig {
            id,
            node: 0,
            nameplate_da: 800,
            breaker_da: Some(800),
            phases: 3,
            rotation: Phase::L3,
            fallback_da: 0,
            priority: 255,
            weight: 255,
        });
    }
    let c = Commission { id: 200, group: g };
    for l in lines(&c, &BENCH) {
        assert!(l.len() <= MAX_LINE, "{} bytes: {l}", l.len());
    }
    let text: std::string::String = lines(&c, &BENCH).concat();
    assert_eq!(
        Receiver::<MAX_STATIONS, MAX_NODES>::new(BENCH).handle_rx(text.as_bytes()),
        Some(Ok(c))
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut r = Receiver::<8, 4>::new(BENCH);
        let _ = r.handle_rx(&bytes);
    }

    #[test]
    fn encode_then_receive_is_the_identity(
        n in 1u8..=8,
        id in 1u8..=8,
        group in any::<u8>(),
        enabled in any::<bool>(),
        fallback in prop_oneof![Just(0u16), 60u16..=100],
        rotation in prop::option::of(1u64..10_000_000_000),
        solar in any::<bool>(),
        meter in any::<bool>(),
    ) {
        let mut g = site(n);
        g.group = group;
        g.enabled = enabled;
        g.timing.rotation_period = rotation.map(Duration::from_ticks);
        for s in g.stations.iter_mut() {
            s.fallback_da = fallback;
        }
        if let Some(d) = g.dynamic.as_mut() {
            d.mode = if solar { DynamicMode::SolarSurplus } else { DynamicMode::Headroom };
        }
        if !meter {
            g.dynamic = None;
        }
        let c = Commission { id, group: g.clone() };
        let text: std::string::String = lines(&c, &BENCH).concat();
        let got = receive::<8, 4>(&text, BENCH);
        let expected = if g.index_of(id).is_none() {
            Err(Refusal::NotInGroup)
        } else if g.validate().is_err() {
            Err(Refusal::Invalid)
        } else {
            Ok(c)
        };
        prop_assert_eq!(got, Some(expected));
    }
}

#[test]
fn the_documented_message_is_accepted() {
    let doc = include_str!("../../../docs/station-telemetry.md");
    let text: std::string::String = doc
        .lines()
        .filter(|l| l.starts_with("C ") && !l.contains('<'))
        .map(|l| format!("{l}\n"))
        .collect();
    let got = receive::<8, 4>(&text, DEFAULT_BENCH_KEY);
    let c = got.expect("a whole message").expect("accepted");
    assert_eq!(
        (c.id, c.group.stations.len(), c.group.nodes.len()),
        (2, 2, 2)
    );
}

#[test]
fn the_documented_limit_is_taken() {
    let doc = include_str!("../../../docs/station-telemetry.md");
    let line = doc
        .lines()
        .find(|l| l.starts_with("L ") && !l.contains('<'))
        .expect("an example limit line");
    let mut r = Receiver::<8, 4>::new(DEFAULT_BENCH_KEY);
    let _ = r.handle_rx(format!("{line}\n").as_bytes());
    assert_eq!(
        r.take_limit(),
        Some(Ok(LimitCommand {
            node: 1,
            limit_da: Some(200),
            seq: 1
        }))
    );
}

proptest! {
    /// Every limit command goes through as it was sent, also in the middle
    /// of a plan (which still arrives whole); one byte changed is refused
    /// (or, in the digits of a number, no longer verifies).
    #[test]
    fn a_limit_goes_through_and_a_changed_byte_does_not(
        node in any::<u16>(),
        limit in proptest::option::of(any::<u32>()),
        seq in any::<u32>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let cmd = LimitCommand { node, limit_da: limit, seq };
        let line = encode_limit(&cmd, &BENCH);
        prop_assert!(line.len() <= MAX_LINE);
        let mut r = Receiver::<8, 4>::new(BENCH);
        prop_assert_eq!(r.handle_rx(line.as_bytes()), None);
        prop_assert_eq!(r.take_limit(), Some(Ok(cmd)));
        prop_assert_eq!(r.take_limit(), None);

        // In the middle of a plan.
        let c = Commission { id: 1, group: site(3) };
        let plan = lines(&c, &BENCH);
        let mut r = Receiver::<8, 4>::new(BENCH);
        let mut got = None;
        for (k, l) in plan.iter().enumerate() {
            if k == 2 {
                prop_assert_eq!(r.handle_rx(line.as_bytes()), None);
                prop_assert_eq!(r.take_limit(), Some(Ok(cmd)));
            }
            got = r.handle_rx(l.as_bytes()).or(got);
        }
        prop_assert_eq!(got, Some(Ok(c)));

        // One byte changed (not the newline): never taken as it was.
        let mut bytes = line.as_bytes().to_vec();
        let at = flip.index(bytes.len() - 1);
        bytes[at] = if bytes[at] == b'7' { b'8' } else { b'7' };
        let mut r = Receiver::<8, 4>::new(BENCH);
        let _ = r.handle_rx(&bytes);
        let taken = r.take_limit();
        prop_assert!(taken != Some(Ok(cmd)), "{:?} taken after byte {} changed", taken, at);
    }
}

#[test]
fn a_limit_with_another_key_is_refused() {
    let cmd = LimitCommand {
        node: 1,
        limit_da: Some(200),
        seq: 3,
    };
    let mut r = Receiver::<8, 4>::new(BENCH);
    let _ = r.handle_rx(encode_limit(&cmd, &[1; 32]).as_bytes());
    assert_eq!(r.take_limit(), Some(Err(Refusal::BadMac)));
}
