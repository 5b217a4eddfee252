use super::*;
use proptest::prelude::*;

fn line(l: &Line) -> std::string::String {
    let mut s = String::new();
    encode(l, &mut s).unwrap();
    s.as_str().into()
}

#[test]
fn a_transcript_parses() {
    let hello = line(&Line::Command {
        seq: 1,
        cmd: Command::Hello { version: 1 },
    });
    assert!(hello.starts_with("C 1 HELLO 1*"), "{hello}");
    let ev = line(&Line::Event {
        seq: 7,
        t_us: 1_500_000,
        event: Event::Duty {
            ch: 0,
            duty_bp: 2_667,
            freq_mhz: 1_000_000,
        },
    });
    assert!(ev.starts_with("E 7 1500000 DUTY 0 2667 1000000*"), "{ev}");
    let mut buf = std::vec::Vec::new();
    buf.extend_from_slice(hello.as_bytes());
    buf.extend_from_slice(ev.as_bytes());
    let Parsed::Line(n, l) = parse_next(&buf) else {
        panic!()
    };
    assert_eq!(
        l,
        Line::Command {
            seq: 1,
            cmd: Command::Hello { version: 1 }
        }
    );
    let Parsed::Line(_, l2) = parse_next(&buf[n..]) else {
        panic!()
    };
    assert!(matches!(l2, Line::Event { seq: 7, .. }));
}

#[test]
fn partial_lines_are_incomplete_not_errors() {
    let l = line(&Line::Command {
        seq: 3,
        cmd: Command::Plug(2),
    });
    for cut in 0..l.len() - 1 {
        assert_eq!(
            parse_next(&l.as_bytes()[..cut]),
            Parsed::Incomplete,
            "{cut}"
        );
    }
}

#[test]
fn unchecked_lines_from_a_terminal() {
    assert_eq!(
        parse_line(b"C 5 PLUG 1*--"),
        Ok(Line::Command {
            seq: 5,
            cmd: Command::Plug(1)
        })
    );
}

#[test]
fn errors_say_what_was_wrong() {
    assert_eq!(
        parse_line(b"C 5 PLUG 1*0000"),
        Err(LineError::Checksum { seq: Some(5) })
    );
    assert_eq!(parse_line(b"C 5 PLUG 1"), Err(LineError::NoChecksum));
    assert_eq!(
        parse_line(b"C 5 FLY 1*--"),
        Err(LineError::Syntax {
            seq: Some(5),
            what: "known command verb"
        })
    );
    assert_eq!(
        parse_line(b"C 5 PLUG x*--"),
        Err(LineError::Syntax {
            seq: Some(5),
            what: "channel number"
        })
    );
    assert_eq!(
        parse_line(b"C 5 PLUG 1 2*--"),
        Err(LineError::Syntax {
            seq: Some(5),
            what: "trailing fields"
        })
    );
    assert!(matches!(
        parse_next(b"\xff\xfe garbage\nC 1 RESET*--\n"),
        Parsed::Garbled(11, LineError::NotText)
    ));
}

fn any_state() -> impl Strategy<Value = Option<PilotState>> {
    prop_oneof![
        Just(None),
        Just(Some(PilotState::A)),
        Just(Some(PilotState::B)),
        Just(Some(PilotState::C)),
        Just(Some(PilotState::D)),
        Just(Some(PilotState::E)),
        Just(Some(PilotState::F)),
    ]
}

fn any_command() -> impl Strategy<Value = Command> {
    let setting = prop_oneof![
        any::<u16>().prop_map(CarSetting::MaxDa),
        any::<u8>().prop_map(CarSetting::Phases),
        any::<u32>().prop_map(CarSetting::CapacityWh),
        any::<u16>().prop_map(CarSetting::SocPermille),
        any::<u16>().prop_map(CarSetting::KneePermille),
        any::<u16>().prop_map(CarSetting::TargetPermille),
        any::<u32>().prop_map(CarSetting::DelayMs),
        any::<u32>().prop_map(CarSetting::DelayMaxMs),
        any::<u16>().prop_map(CarSetting::RampDaPerS),
        any::<bool>().prop_map(CarSetting::Ventilation),
        any::<u8>().prop_map(CarSetting::Rotation),
        any::<bool>().prop_map(CarSetting::Metered),
        prop_oneof![Just(1u8), Just(3)].prop_map(CarSetting::SupplyPhases),
        any::<u16>().prop_map(CarSetting::AuxDa),
    ];
    let misbehave = prop_oneof![
        Just(Misbehave::None),
        Just(Misbehave::IgnoreReductions),
        any::<u16>().prop_map(Misbehave::OverdrawDa),
        any::<u32>().prop_map(Misbehave::SlowMs),
        Just(Misbehave::DrawsInB),
        Just(Misbehave::NoDiode),
        Just(Misbehave::ShortedDiode),
        Just(Misbehave::ShortPilot),
    ];
    let meter = prop_oneof![
        Just(MeterFault::None),
        Just(MeterFault::Silent),
        Just(MeterFault::Garbage),
        Just(MeterFault::Stale),
        Just(MeterFault::Implausible),
    ];
    prop_oneof![
        any::<u16>().prop_map(|version| Command::Hello { version }),
        Just(Command::Reset),
        any::<u8>().prop_map(Command::Plug),
        any::<u8>().prop_map(Command::Unplug),
        any::<u8>().prop_map(Command::Request),
        any::<u8>().prop_map(Command::Stop),
        any::<u8>().prop_map(Command::Pause),
        any::<u8>().prop_map(Command::Query),
        any::<u8>().prop_map(Command::SelfTest),
        (any::<u8>(), setting).prop_map(|(c, s)| Command::Car(c, s)),
        (any::<u8>(), misbehave).prop_map(|(c, m)| Command::Misbehave(c, m)),
        (
            "[a-z][a-z0-9_-]{0,15}",
            prop_oneof![Just(1u8), Just(2), Just(4), Just(7)],
            any::<i32>(),
            any::<bool>()
        )
            .prop_map(|(n, phases, da, on)| Command::Load {
                name: String::try_from(n.as_str()).unwrap(),
                phases,
                da,
                on
            }),
        meter.prop_map(Command::Meter),
        any::<u16>().prop_map(Command::MeterNoise),
        (any::<u8>(), any_debug()).prop_map(|(c, d)| Command::Debug(c, d)),
    ]
}

/// Any bytes a station may print, as many as one `DEBUG` line carries.
fn any_debug() -> impl Strategy<Value = DebugBytes> {
    proptest::collection::vec(any::<u8>(), 1..=MAX_DEBUG).prop_map(|v| {
        let mut d = DebugBytes::new();
        assert!(d.fill(&v) > 0);
        let mut text = std::string::String::new();
        d.write_text(&mut text).unwrap();
        assert_eq!(d.text_len(), text.len());
        assert!(text.len() <= MAX_DEBUG);
        d
    })
}

fn any_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (any::<u8>(), any::<u16>(), any::<u32>()).prop_map(|(ch, duty_bp, freq_mhz)| Event::Duty {
            ch,
            duty_bp,
            freq_mhz
        }),
        any::<u8>().prop_map(|ch| Event::PwmOff { ch }),
        (any::<u8>(), any_state(), any::<i32>(), any::<i32>()).prop_map(
            |(ch, state, high_mv, low_mv)| Event::Pilot {
                ch,
                state,
                high_mv,
                low_mv
            }
        ),
        (any::<u8>(), any::<bool>()).prop_map(|(ch, closed)| Event::Contactor { ch, closed }),
        (any::<u8>(), any::<[u16; 3]>()).prop_map(|(ch, da)| Event::Current { ch, da }),
        any::<[i32; 3]>().prop_map(|da| Event::Meter { da }),
        Just(Event::Heartbeat),
        any::<u32>().prop_map(|total| Event::LostLines { total }),
        (any::<u8>(), any::<u32>()).prop_map(|(ch, total)| Event::LostCapture { ch, total }),
        (any::<u8>(), any::<bool>(), any::<u16>(), any::<u16>()).prop_map(
            |(ch, plugged, soc_permille, draw_da)| Event::Car {
                ch,
                plugged,
                soc_permille,
                draw_da
            }
        ),
        (any::<u8>(), any_debug()).prop_map(|(ch, data)| Event::Debug { ch, data }),
    ]
}

fn any_line() -> impl Strategy<Value = Line> {
    prop_oneof![
        (any::<u32>(), any_command()).prop_map(|(seq, cmd)| Line::Command { seq, cmd }),
        (any::<u32>(), any::<u64>(), any_event()).prop_map(|(seq, t_us, event)| Line::Event {
            seq,
            t_us,
            event
        }),
        (
            any::<u32>(),
            "([A-Za-z0-9=._,-]{1,20}( [A-Za-z0-9=._,-]{1,20}){0,4})?"
        )
            .prop_map(|(seq, i)| Line::Ok {
                seq,
                info: String::try_from(i.as_str()).unwrap()
            }),
        (
            any::<u32>(),
            prop_oneof![
                Just(ErrorCode::Checksum),
                Just(ErrorCode::Parse),
                Just(ErrorCode::Version),
                Just(ErrorCode::Channel),
                Just(ErrorCode::NoHello),
                Just(ErrorCode::Unsupported),
                Just(ErrorCode::Busy)
            ],
            "[a-z]{1,10}( [a-z]{1,10}){0,3}"
        )
            .prop_map(|(seq, code, m)| Line::Err {
                seq,
                code,
                message: String::try_from(m.as_str()).unwrap()
            }),
    ]
}

proptest! {
    #[test]
    fn encode_then_parse_is_the_identity(l in any_line()) {
        let text = line(&l);
        prop_assert_eq!(parse_next(text.as_bytes()), Parsed::Line(text.len(), l));
    }

    #[test]
    fn random_bytes_never_panic_and_the_stream_resynchronises(noise in proptest::collection::vec(any::<u8>(), 0..400), l in any_line()) {
        let mut buf = noise.clone();
        buf.push(b'\n');
        buf.extend_from_slice(line(&l).as_bytes());
        let mut at = 0;
        let mut last = None;
        while at < buf.len() {
            match parse_next(&buf[at..]) {
                Parsed::Incomplete => break,
                Parsed::Line(n, got) => { at += n; last = Some(got); }
                Parsed::Garbled(n, _) => { prop_assert!(n > 0); at += n; }
            }
        }
        prop_assert_eq!(last, Some(l));
    }
}

#[test]
fn control_characters_and_overlong_messages_are_refused() {
    // Found by cargo fuzz: NULs inside an info field used to be dropped on
    // the way back, so the line did not round-trip.
    assert_eq!(
        parse_line(b"A 0 OK A 0*-- \x00\x00 0*--"),
        Err(LineError::NotText)
    );
    let long = format!("A 1 ERR parse {}*--", "x".repeat(120));
    assert_eq!(
        parse_line(long.as_bytes()),
        Err(LineError::Syntax {
            seq: Some(1),
            what: "message under 96 characters"
        })
    );
}

#[test]
fn the_transcript_in_the_docs_parses() {
    let doc = include_str!("../../../docs/fixture-protocol.md");
    let start = doc.find("```text\nC 1 HELLO").expect("transcript");
    let body = &doc[start + 8..];
    let body = &body[..body.find("```").expect("end of transcript")];
    let mut n = 0;
    for line in body.lines() {
        assert!(
            parse_line(line.as_bytes()).is_ok(),
            "{line}: {:?}",
            parse_line(line.as_bytes())
        );
        n += 1;
    }
    assert!(n >= 10);
}

#[test]
fn supply_phases_and_loss_lines() {
    assert_eq!(
        parse_line(b"C 9 CAR 2 supply=1*--"),
        Ok(Line::Command {
            seq: 9,
            cmd: Command::Car(2, CarSetting::SupplyPhases(1))
        })
    );
    assert_eq!(
        parse_line(b"C 9 CAR 2 supply=2*--"),
        Err(LineError::Syntax {
            seq: Some(9),
            what: "supply phases 1 or 3"
        })
    );
    assert_eq!(
        parse_line(b"E 40 5000000 LOSS LINES 3*--"),
        Ok(Line::Event {
            seq: 40,
            t_us: 5_000_000,
            event: Event::LostLines { total: 3 }
        })
    );
    assert_eq!(
        parse_line(b"E 41 5000000 LOSS CAPTURE 2 4*--"),
        Ok(Line::Event {
            seq: 41,
            t_us: 5_000_000,
            event: Event::LostCapture { ch: 2, total: 4 }
        })
    );
    assert!(parse_line(b"E 42 5000000 LOSS EVERYTHING 4*--").is_err());
}

#[test]
fn the_loss_example_in_the_docs_parses() {
    let doc = include_str!("../../../docs/fixture-protocol.md");
    let start = doc.find("```text\nE 8 ").expect("loss example");
    let body = &doc[start + 8..];
    let body = &body[..body.find("```").expect("end of example")];
    let events: std::vec::Vec<Event> = body
        .lines()
        .map(|l| match parse_line(l.as_bytes()) {
            Ok(Line::Event { event, .. }) => event,
            other => panic!("{l}: {other:?}"),
        })
        .collect();
    assert_eq!(
        events,
        vec![
            Event::LostLines { total: 12 },
            Event::LostCapture { ch: 3, total: 1 },
            Event::Heartbeat
        ]
    );
}

#[test]
fn hello_answer_round_trips_and_reads_older_and_newer_fixtures() {
    let info = FixtureInfo {
        proto: 1,
        fw: String::try_from("0.1.0").unwrap(),
        channels: 16,
        caps: Caps::ALL,
    };
    let mut s = String::new();
    info.emit(&mut s).unwrap();
    assert_eq!(
        s.as_str(),
        "sharebench-fixture proto=1 fw=0.1.0 channels=16 caps=pwm,levels,relay,current,meter,car,misbehave,loads,selftest,debug"
    );
    assert_eq!(FixtureInfo::parse(&s), Ok(info.clone()));
    // The whole answer fits a line and round-trips.
    let l = Line::Ok {
        seq: u32::MAX,
        info: s.clone(),
    };
    let text = line(&l);
    assert_eq!(parse_next(text.as_bytes()), Parsed::Line(text.len(), l));
    // A newer fixture's unknown keys and capabilities are skipped.
    let newer = FixtureInfo::parse(
        "sharebench-fixture proto=1 fw=2.0 channels=4 caps=pwm,teleport serial=77",
    )
    .unwrap();
    assert_eq!(newer.caps, Caps::NONE.with(Capability::Pwm));
    assert_eq!(newer.channels, 4);
    // None at all is `-`.
    let mut none = info.clone();
    none.caps = Caps::NONE;
    none.emit(&mut s).unwrap();
    assert!(s.ends_with(" caps=-"), "{s}");
    assert_eq!(FixtureInfo::parse(&s).unwrap().caps, Caps::NONE);
    // An old answer without caps is an error that says so.
    assert_eq!(
        FixtureInfo::parse("sharebench-fixture proto=1 channels=16"),
        Err("fw= in the HELLO answer")
    );
    assert!(
        FixtureInfo::parse("sharebench-fixture proto=1 fw=0.1 channels=16")
            .unwrap_err()
            .contains("caps=")
    );
    assert!(FixtureInfo::parse("hello proto=1").is_err());
    assert!(FixtureInfo::parse("sharebench-fixture proto=x fw=1 channels=1 caps=-").is_err());
}

#[test]
fn capability_words_are_one_table() {
    for c in Capability::ALL {
        assert_eq!(Capability::from_word(c.word()), Some(c));
        assert!(Caps::ALL.has(c));
        assert!(!Caps::NONE.has(c));
        assert!(!Caps::ALL.without(c).has(c));
    }
    let need = Caps::NONE.with(Capability::Meter).with(Capability::Car);
    let have = Caps::ALL.without(Capability::Meter);
    assert_eq!(have.missing(need), Caps::NONE.with(Capability::Meter));
    assert!(Caps::ALL.missing(need).is_empty());
    // Every command that needs one names it.
    assert_eq!(
        Command::Meter(MeterFault::Silent).needs(),
        Some(Capability::Meter)
    );
    assert_eq!(Command::MeterNoise(5).needs(), Some(Capability::Meter));
    assert_eq!(Command::SelfTest(2).needs(), Some(Capability::SelfTest));
    assert_eq!(Command::SelfTest(2).channel(), Some(2));
    assert_eq!(Command::Reset.needs(), None);
}

#[test]
fn the_docs_list_every_capability() {
    let doc = include_str!("../../../docs/fixture-protocol.md");
    for c in Capability::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", c.word())),
            "docs/fixture-protocol.md has no row for capability {}",
            c.word()
        );
    }
}

#[test]
fn selftest_answer_round_trips_and_its_verdict_must_agree() {
    let r = crate::selftest::SelfTestReport {
        duty_err_ppm: 120,
        window_duty_err_ppm: 480,
        freq_err_ppm: 40,
        periods: 1_280,
    };
    let mut s = String::new();
    emit_selftest(3, &r, &mut s).unwrap();
    assert_eq!(
        s.as_str(),
        "selftest ch=3 duty_err_ppm=120 window_err_ppm=480 freq_err_ppm=40 periods=1280 pass"
    );
    assert_eq!(parse_selftest(&s), Ok((3, r)));
    assert_eq!(
        parse_selftest(
            "selftest ch=3 duty_err_ppm=900 window_err_ppm=900 freq_err_ppm=40 periods=1280 pass"
        ),
        Err("a verdict that agrees with the figures")
    );
    assert_eq!(
        parse_selftest("selftest ch=3 duty_err_ppm=1 freq_err_ppm=40 periods=1280 pass"),
        Err("window_err_ppm")
    );
    let c = line(&Line::Command {
        seq: 5,
        cmd: Command::SelfTest(3),
    });
    assert!(c.starts_with("C 5 SELFTEST 3*"), "{c}");
}

#[test]
fn the_selftest_example_in_the_docs_parses() {
    let doc = include_str!("../../../docs/fixture-protocol.md");
    let start = doc
        .find("```text\nC 9 SELFTEST")
        .expect("self-test example");
    let body = &doc[start + 8..];
    let body = &body[..body.find("```").expect("end of example")];
    let lines: std::vec::Vec<_> = body.lines().map(|l| parse_line(l.as_bytes())).collect();
    assert_eq!(
        lines[0],
        Ok(Line::Command {
            seq: 9,
            cmd: Command::SelfTest(0)
        })
    );
    let Ok(Line::Ok { seq: 9, info }) = &lines[1] else {
        panic!("{lines:?}")
    };
    let (ch, r) = parse_selftest(info).unwrap();
    assert_eq!(ch, 0);
    assert!(r.pass());
}

#[test]
fn debug_text_is_escaped_one_field_and_read_back() {
    let mut d = DebugBytes::new();
    assert_eq!(d.fill(b"T grant 160*1A2B\r\n\\\x00\xff"), 21);
    let l = line(&Line::Event {
        seq: 4,
        t_us: 9,
        event: Event::Debug { ch: 2, data: d },
    });
    assert!(
        l.starts_with("E 4 9 DEBUG 2 T\\sgrant\\s160*1A2B\\r\\n\\\\\\x00\\xFF*"),
        "{l}"
    );
    assert_eq!(
        parse_next(l.as_bytes()),
        Parsed::Line(
            l.len(),
            Line::Event {
                seq: 4,
                t_us: 9,
                event: Event::Debug { ch: 2, data: d }
            }
        )
    );
    // Any escape is read; a terminal may type `\x20` for a space.
    assert_eq!(
        parse_line(b"C 3 DEBUG 0 a\\x20b\\n*--"),
        Ok(Line::Command {
            seq: 3,
            cmd: Command::Debug(0, DebugBytes::from_text("a\\sb\\n").unwrap())
        })
    );
    // Bad escapes, nothing, or more than fits are refused, saying why.
    for bad in [
        "C 3 DEBUG 0 a\\q*--",
        "C 3 DEBUG 0 a\\x2*--",
        "C 3 DEBUG 0 a\\*--",
        "C 3 DEBUG 0*--",
        "C 3 DEBUG 0 a b*--",
    ] {
        assert!(
            matches!(
                parse_line(bad.as_bytes()),
                Err(LineError::Syntax { what, .. }) if what.starts_with("debug text") || what == "trailing fields"
            ),
            "{bad}: {:?}",
            parse_line(bad.as_bytes())
        );
    }
    let too_long = format!("C 3 DEBUG 0 {}*--", "\\s".repeat(65));
    assert!(parse_line(too_long.as_bytes()).is_err());
    // What fits: 128 characters of text, whatever the bytes.
    let mut spaces = DebugBytes::new();
    assert_eq!(spaces.fill(&[b' '; 100]), 64);
    let mut raw = DebugBytes::new();
    assert_eq!(raw.fill(&[0u8; 100]), 32);
    let mut plain = DebugBytes::new();
    assert_eq!(plain.fill(&[b'a'; 200]), MAX_DEBUG);
    // The longest DEBUG line fits a line.
    let l = line(&Line::Event {
        seq: u32::MAX,
        t_us: u64::MAX,
        event: Event::Debug {
            ch: u8::MAX,
            data: plain,
        },
    });
    assert!(l.len() <= MAX_LINE, "{}", l.len());
    assert_eq!(Command::Debug(1, plain).needs(), Some(Capability::Debug));
    assert_eq!(Command::Debug(1, plain).channel(), Some(1));
}

#[test]
fn the_debug_example_in_the_docs_parses() {
    let doc = include_str!("../../../docs/fixture-protocol.md");
    let start = doc.find("```text\nE 812 ").expect("debug example");
    let body = &doc[start + 8..];
    let body = &body[..body.find("```").expect("end of example")];
    let lines: std::vec::Vec<Line> = body
        .lines()
        .map(|l| parse_line(l.as_bytes()).unwrap_or_else(|e| panic!("{l}: {e:?}")))
        .collect();
    let bytes = |l: &Line| match l {
        Line::Event {
            event: Event::Debug { ch: 1, data },
            ..
        }
        | Line::Command {
            cmd: Command::Debug(0, data),
            ..
        } => data.as_bytes().to_vec(),
        other => panic!("{other:?}"),
    };
    assert_eq!(bytes(&lines[0]), b"T grant 160*1A2B\n");
    assert_eq!(bytes(&lines[1]), b"C begin 7 1 1*9F2A\n");
    assert!(matches!(lines[2], Line::Ok { seq: 30, .. }));
}

/// With every capability, the longest version and the most channels, the
/// HELLO answer still fits its info and its line.
#[test]
fn the_longest_hello_answer_fits() {
    let info = FixtureInfo {
        proto: u16::MAX,
        fw: String::try_from("0123456789abcdef").unwrap(),
        channels: u16::MAX,
        caps: Caps::ALL,
    };
    let mut s = String::new();
    info.emit(&mut s).unwrap();
    let l = Line::Ok {
        seq: u32::MAX,
        info: s,
    };
    let text = line(&l);
    assert!(text.len() <= MAX_LINE, "{text}");
    assert_eq!(parse_next(text.as_bytes()), Parsed::Line(text.len(), l));
}
