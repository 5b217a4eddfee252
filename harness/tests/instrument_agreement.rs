//! The instrument and the station agree with IEC 61851-1 Annex A, and with
//! each other where they meet, each held to the standard's own numbers.
//!
//! `rig` (the instrument) does not depend on `firmware` (the station), so a
//! wrong table on either side is caught here instead of being mirrored by
//! the other. The harness may depend on both; this is where they meet:
//! - every row of the Annex A duty table (`shared/domain/DOMAIN.md`), as
//!   written below, through the firmware's encoder and decoder
//!   (`firmware::pilot::duty_for_current` / `offer_for_duty`) and the
//!   fixture's decoder (`rig::iec::read_duty`);
//! - the pilot level table through both classifications;
//! - the fixture's SDM630 emulation read by the firmware's meter client.

use firmware::pilot::{self as fw, Offer};
use rig::iec::{self, DutyReading, PilotState};

/// What Annex A says a duty cycle means, in the table's own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    NoCharging,
    Digital,
    Error,
    /// Deciamps.
    Amps(u16),
    NotOffered,
}

/// Annex A, duty (basis points) -> meaning, written from the table: every
/// row, both ends of every range, and the points the standard names
/// (6 A = 10 %, 16 A = 26.7 %, 32 A = 53.3 %, 48 A = 80 %, 51 A = 85 %,
/// 80 A = 96 %).
const DUTY_TABLE: &[(u16, Row)] = &[
    // < 3 %: no charging.
    (0, Row::NoCharging),
    (150, Row::NoCharging),
    (299, Row::NoCharging),
    // 3 % to 7 %: digital communication, 5 % nominal.
    (300, Row::Digital),
    (450, Row::Digital),
    (500, Row::Digital),
    (550, Row::Digital),
    (699, Row::Digital),
    // 7 % to 8 %: error.
    (700, Row::Error),
    (750, Row::Error),
    (799, Row::Error),
    // 8 % to < 10 %: 6 A.
    (800, Row::Amps(60)),
    (900, Row::Amps(60)),
    (999, Row::Amps(60)),
    // 10 % to 85 %: I = D x 0.6.
    (1_000, Row::Amps(60)),
    (1_001, Row::Amps(60)),
    (1_500, Row::Amps(90)),
    (2_667, Row::Amps(160)),
    (5_333, Row::Amps(320)),
    (8_000, Row::Amps(480)),
    (8_483, Row::Amps(509)),
    (8_500, Row::Amps(510)),
    // > 85 % to 96 %: I = (D - 64) x 2.5 (the first step above 85 % is
    // 52.5 A: 51-52.5 A has no duty cycle).
    (8_501, Row::Amps(525)),
    (8_520, Row::Amps(530)),
    (8_800, Row::Amps(600)),
    (9_200, Row::Amps(700)),
    (9_599, Row::Amps(800)),
    (9_600, Row::Amps(800)),
    // > 96 % to 97 %: 80 A.
    (9_601, Row::Amps(800)),
    (9_650, Row::Amps(800)),
    (9_700, Row::Amps(800)),
    // Above 97 %, below 100 %: not in the table, an error.
    (9_701, Row::Error),
    (9_900, Row::Error),
    (9_999, Row::Error),
    // 100 %: steady +12 V, no current offered.
    (10_000, Row::NotOffered),
];

/// Currents the station offers -> the duty Annex A gives for them, basis
/// points, rounded to the nearest; 51-52.5 A is clamped to 51 A (85 %),
/// above 80 A to 80 A.
const CURRENT_TABLE: &[(u16, u16)] = &[
    (60, 1_000),
    (61, 1_017),
    (100, 1_667),
    (160, 2_667),
    (320, 5_333),
    (480, 8_000),
    (510, 8_500),
    // The gap: 51.1-52.5 A cannot be expressed, the station offers 51 A.
    (511, 8_500),
    (520, 8_500),
    (525, 8_500),
    // Above the gap, I = (D - 64) x 2.5  ->  D = I / 2.5 + 64.
    (526, 8_504),
    (600, 8_800),
    (700, 9_200),
    (800, 9_600),
    (801, 9_600),
    (1_000, 9_600),
];

fn fixture_reads(bp: u16) -> Row {
    match iec::read_duty(bp) {
        DutyReading::NoCharging => Row::NoCharging,
        DutyReading::Digital => Row::Digital,
        DutyReading::Error => Row::Error,
        DutyReading::Current(da) => Row::Amps(da),
        DutyReading::NotOffered => Row::NotOffered,
    }
}

fn station_reads(bp: u16) -> Row {
    match fw::offer_for_duty(bp) {
        Offer::NoCharging => Row::NoCharging,
        Offer::Digital => Row::Digital,
        Offer::Invalid => Row::Error,
        Offer::Current(da) => Row::Amps(da),
        Offer::NotOffered => Row::NotOffered,
    }
}

#[test]
fn every_duty_row_reads_as_the_table_says_on_both_sides() {
    for &(bp, row) in DUTY_TABLE {
        assert_eq!(
            fixture_reads(bp),
            row,
            "fixture (rig::iec::read_duty) at {}.{:02} %",
            bp / 100,
            bp % 100
        );
        assert_eq!(
            station_reads(bp),
            row,
            "station (firmware::pilot::offer_for_duty) at {}.{:02} %",
            bp / 100,
            bp % 100
        );
    }
}

#[test]
fn every_offered_current_encodes_as_the_table_says_and_the_fixture_reads_it_back() {
    for &(da, bp) in CURRENT_TABLE {
        assert_eq!(
            fw::duty_for_current(da),
            Ok(bp),
            "station encoder (firmware::pilot::duty_for_current) for {}.{} A",
            da / 10,
            da % 10
        );
        let expect = da.clamp(60, 800);
        let expect = if (511..=525).contains(&expect) {
            510
        } else {
            expect
        };
        assert_eq!(
            fixture_reads(bp),
            Row::Amps(expect),
            "fixture reading of the duty offered for {}.{} A",
            da / 10,
            da % 10
        );
    }
    assert!(
        fw::duty_for_current(59).is_err(),
        "below 6 A has no duty cycle"
    );
}

#[test]
fn every_current_step_round_trips_through_station_and_fixture() {
    // Every 0.1 A the station can offer, 6 A to 80 A, outside the gap.
    for da in (60..=800u16).filter(|d| !(511..=525).contains(d)) {
        let bp = fw::duty_for_current(da).unwrap_or(0);
        assert_eq!(
            iec::current_for_duty(bp),
            Some(da),
            "{}.{} A offered at {bp} bp",
            da / 10,
            da % 10
        );
    }
}

/// Annex A levels: (high plateau mV, state) for both classifications with
/// the fixture's default window (+/-1.1 V) and a level well inside it.
const LEVEL_TABLE: &[(i32, PilotState, fw::PilotState)] = &[
    (12_000, PilotState::A, fw::PilotState::A),
    (9_000, PilotState::B, fw::PilotState::B),
    (6_000, PilotState::C, fw::PilotState::C),
    (3_000, PilotState::D, fw::PilotState::D),
    (0, PilotState::E, fw::PilotState::E),
    (-12_000, PilotState::F, fw::PilotState::F),
];

#[test]
fn pilot_levels_match_the_table_on_both_sides() {
    for &(mv, fixture, station) in LEVEL_TABLE {
        for off in [-900, 0, 900] {
            assert_eq!(
                PilotState::classify(mv + off, iec::LEVEL_WINDOW_MV),
                Some(fixture),
                "fixture at {} mV",
                mv + off
            );
        }
        assert_eq!(fixture.nominal_mv(), mv, "fixture nominal of {fixture}");
        assert_eq!(station.nominal_mv(), mv, "station nominal of {station}");
        assert_eq!(fixture.letter(), station.letter());
    }
}

mod meter {
    use firmware::sharing::meter::{MeterClient, MeterConfig, MeterError};
    use firmware::time::{ms, us};
    use rig::meter::{MeterEmulator, MeterFault};

    /// The firmware's client against this server, as on the bench.
    fn read(m: &mut MeterEmulator) -> (Option<[i32; 3]>, Option<MeterError>) {
        let mut c = MeterClient::new(MeterConfig::default(), us(0));
        c.handle_timeout(us(0));
        for step in 0..2u64 {
            let Some(req) = c.poll_transmit() else { break };
            match m.handle_rx(&req) {
                Some(ans) => c.handle_rx(us(1_000 * (step + 1)), &ans),
                None => c.handle_timeout(us(0) + ms(600)),
            }
        }
        (c.reading(us(5_000)).map(|r| r.current_da), c.last_error())
    }

    #[test]
    fn answers_like_an_sdm630() {
        let mut m = MeterEmulator::new(1, 0);
        m.set_site([100, 205, -30], 230);
        assert_eq!(read(&mut m), (Some([100, 205, -30]), None));
    }

    #[test]
    fn faults() {
        let mut m = MeterEmulator::new(1, 0);
        m.set_fault(MeterFault::Silent);
        assert_eq!(read(&mut m), (None, Some(MeterError::Timeout)));
        m.set_fault(MeterFault::Garbage);
        assert_eq!(read(&mut m), (None, Some(MeterError::BadFrame)));
        m.set_fault(MeterFault::None);
        m.set_site([50, 0, 0], 230);
        m.set_fault(MeterFault::Stale);
        m.set_site([300, 0, 0], 230);
        assert_eq!(read(&mut m).0, Some([50, 0, 0]), "stale: old values");
        m.set_fault(MeterFault::Implausible);
        m.set_site([300, 0, 0], 230);
        // Stale kept the old image; implausible writes NaN.
        assert_eq!(read(&mut m), (None, Some(MeterError::Implausible)));
    }
}
