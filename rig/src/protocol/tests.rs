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
    ]
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
        (any::<u32>(), "[A-Za-z0-9=._-]{0,20}").prop_map(|(seq, i)| Line::Ok {
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
                Just(ErrorCode::NoHello)
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
