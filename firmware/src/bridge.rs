//! The wire bridge: a station's pins carried as lines over a UART, for the
//! QEMU image (`boards/station-qemu`) and the harness's QEMU bench.
//!
//! Owns the framing and nothing else: [`PinLine`] (station to host: what the
//! station drives), [`SenseLine`] (host to station: what its ADC, current
//! sensor and relay-sense input would read), their encoders, their parsers,
//! and [`LineReader`], which splits a byte stream into lines. Does not decide
//! when to sample or what the pins mean: the board samples the latest
//! levels on its own clock, the [`crate::station::Station`] decides. The
//! format is documented for people in `docs/wire-bridge.md`.
//!
//! ```text
//! <WORD> [args..]*<crc>\n
//! ```
//!
//! `<crc>` is the CRC-16/XMODEM of everything before `*`, four upper-case
//! hex digits (as on telemetry and the fixture protocol). Levels in
//! millivolts, currents in deciamps, duty in basis points (0.01 %). No
//! timestamps: the station's clock is its own (SysTick), and the host stamps
//! a line when it arrives.
//!
//! Nothing here panics or allocates; a line longer than [`MAX_LINE`] is
//! reported by [`LineReader`] and skipped up to its newline.

use core::fmt::{self, Write as _};

use crc::{Crc, CRC_16_XMODEM};
use heapless::String;

use crate::charge_point::PilotOutput;
use crate::pilot::PilotLevels;
use crate::station::Output;

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);

/// Longest bridge line, newline included.
pub const MAX_LINE: usize = 48;

/// Station to host: a pin changed, or a host line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinLine {
    /// What the station now drives (`PWM`, `STEADY`, `MINUS12`, `COIL`).
    Pin(Output),
    /// A host line the station could not read (`ERR <reason>`); the station
    /// skipped it and keeps its previous reading.
    Refused(ParseError),
}

/// Host to station: what the station's inputs read from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenseLine {
    /// The pilot's high and low plateaus (`PILOT <high_mv> <low_mv>`).
    Pilot(PilotLevels),
    /// The contactor's auxiliary contact (`RELAY 0|1`).
    Relay(bool),
    /// Current per phase (`AMPS <l1_da> <l2_da> <l3_da>`).
    Amps([u16; 3]),
}

/// A bridge line that could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// No `*CRC` at the end.
    NoChecksum,
    /// The checksum does not match: the line was garbled.
    Checksum,
    /// An unknown word, or arguments that do not fit it.
    Syntax,
    /// Longer than [`MAX_LINE`] (skipped up to its newline).
    TooLong,
}

impl ParseError {
    const ALL: [Self; 4] = [
        Self::NoChecksum,
        Self::Checksum,
        Self::Syntax,
        Self::TooLong,
    ];

    /// The word on the wire (in `ERR <word>`).
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            Self::NoChecksum => "no-checksum",
            Self::Checksum => "checksum",
            Self::Syntax => "syntax",
            Self::TooLong => "too-long",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoChecksum => "bridge line without its *CRC",
            Self::Checksum => "bridge line with a wrong checksum (garbled)",
            Self::Syntax => "bridge line of unknown kind or with bad arguments",
            Self::TooLong => "bridge line longer than 48 bytes",
        })
    }
}

impl core::error::Error for ParseError {}

/// Append `*CRC\n` to a body.
fn seal(mut s: String<MAX_LINE>) -> String<MAX_LINE> {
    let crc = CRC16.checksum(s.as_bytes());
    // Every body fits MAX_LINE with its seal; a write error would only truncate.
    let _ = writeln!(s, "*{crc:04X}");
    s
}

impl PinLine {
    /// The line on the wire.
    #[must_use]
    pub fn encode(&self) -> String<MAX_LINE> {
        let mut s: String<MAX_LINE> = String::new();
        let _ = match *self {
            Self::Pin(Output::Pilot(PilotOutput::Pwm { duty_bp })) => write!(s, "PWM {duty_bp}"),
            Self::Pin(Output::Pilot(PilotOutput::Steady)) => s.write_str("STEADY"),
            Self::Pin(Output::Pilot(PilotOutput::MinusTwelve)) => s.write_str("MINUS12"),
            Self::Pin(Output::Contactor(on)) => write!(s, "COIL {}", u8::from(on)),
            Self::Refused(e) => write!(s, "ERR {}", e.word()),
        };
        seal(s)
    }
}

impl SenseLine {
    /// The line on the wire.
    #[must_use]
    pub fn encode(&self) -> String<MAX_LINE> {
        let mut s: String<MAX_LINE> = String::new();
        let _ = match *self {
            Self::Pilot(l) => write!(s, "PILOT {} {}", l.high_mv, l.low_mv),
            Self::Relay(closed) => write!(s, "RELAY {}", u8::from(closed)),
            Self::Amps([a, b, c]) => write!(s, "AMPS {a} {b} {c}"),
        };
        seal(s)
    }
}

/// The words of a line after its checksum is checked.
fn words(line: &str) -> Result<core::str::Split<'_, char>, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (body, crc) = line.rsplit_once('*').ok_or(ParseError::NoChecksum)?;
    if crc.len() != 4 {
        return Err(ParseError::NoChecksum);
    }
    let crc = u16::from_str_radix(crc, 16).map_err(|_| ParseError::NoChecksum)?;
    if crc != CRC16.checksum(body.as_bytes()) {
        return Err(ParseError::Checksum);
    }
    Ok(body.split(' '))
}

fn num<T: core::str::FromStr>(w: Option<&str>) -> Result<T, ParseError> {
    w.and_then(|v| v.parse().ok()).ok_or(ParseError::Syntax)
}

fn bit(w: Option<&str>) -> Result<bool, ParseError> {
    match w {
        Some("0") => Ok(false),
        Some("1") => Ok(true),
        _ => Err(ParseError::Syntax),
    }
}

fn end<T>(mut w: core::str::Split<'_, char>, t: T) -> Result<T, ParseError> {
    match w.next() {
        None => Ok(t),
        Some(_) => Err(ParseError::Syntax),
    }
}

impl PinLine {
    /// Parse one station-to-host line (with or without its newline).
    pub fn parse(line: &str) -> Result<Self, ParseError> {
        let mut w = words(line)?;
        let t = match w.next() {
            Some("PWM") => {
                let duty_bp: u16 = num(w.next())?;
                // 0 and 100 % are MINUS12 and STEADY, never a PWM line.
                if duty_bp == 0 || duty_bp >= 10_000 {
                    return Err(ParseError::Syntax);
                }
                Self::Pin(Output::Pilot(PilotOutput::Pwm { duty_bp }))
            }
            Some("STEADY") => Self::Pin(Output::Pilot(PilotOutput::Steady)),
            Some("MINUS12") => Self::Pin(Output::Pilot(PilotOutput::MinusTwelve)),
            Some("COIL") => Self::Pin(Output::Contactor(bit(w.next())?)),
            Some("ERR") => {
                let word = w.next().ok_or(ParseError::Syntax)?;
                Self::Refused(
                    ParseError::ALL
                        .into_iter()
                        .find(|e| e.word() == word)
                        .ok_or(ParseError::Syntax)?,
                )
            }
            _ => return Err(ParseError::Syntax),
        };
        end(w, t)
    }
}

impl SenseLine {
    /// Parse one host-to-station line (with or without its newline).
    pub fn parse(line: &str) -> Result<Self, ParseError> {
        let mut w = words(line)?;
        let t = match w.next() {
            Some("PILOT") => Self::Pilot(PilotLevels {
                high_mv: num(w.next())?,
                low_mv: num(w.next())?,
            }),
            Some("RELAY") => Self::Relay(bit(w.next())?),
            Some("AMPS") => Self::Amps([num(w.next())?, num(w.next())?, num(w.next())?]),
            _ => return Err(ParseError::Syntax),
        };
        end(w, t)
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes.
///
/// Feed it one byte at a time; it returns a line when a `\n` ends one. A
/// line that grows past [`MAX_LINE`], or is not UTF-8, comes out as an error
/// (once, at its newline), and the reader starts afresh after it.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: heapless::Vec<u8, MAX_LINE>,
    overflow: bool,
    /// The last call returned the line in `buf`: clear it before the next byte.
    returned: bool,
}

impl LineReader {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// One byte in; a finished line (without its newline) out.
    pub fn push(&mut self, byte: u8) -> Option<Result<&str, ParseError>> {
        if core::mem::take(&mut self.returned) {
            self.buf.clear();
        }
        if byte != b'\n' {
            // Room for the newline is kept, so a line of MAX_LINE bytes
            // including it is accepted and one byte more is not.
            if self.buf.len() + 1 >= MAX_LINE || self.buf.push(byte).is_err() {
                self.overflow = true;
            }
            return None;
        }
        self.returned = true;
        if core::mem::take(&mut self.overflow) {
            return Some(Err(ParseError::TooLong));
        }
        Some(core::str::from_utf8(&self.buf).map_err(|_| ParseError::Syntax))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_pin_line() -> impl Strategy<Value = PinLine> {
        prop_oneof![
            (1u16..10_000)
                .prop_map(|duty_bp| PinLine::Pin(Output::Pilot(PilotOutput::Pwm { duty_bp }))),
            Just(PinLine::Pin(Output::Pilot(PilotOutput::Steady))),
            Just(PinLine::Pin(Output::Pilot(PilotOutput::MinusTwelve))),
            any::<bool>().prop_map(|on| PinLine::Pin(Output::Contactor(on))),
            prop::sample::select(ParseError::ALL.to_vec()).prop_map(PinLine::Refused),
        ]
    }

    fn any_sense_line() -> impl Strategy<Value = SenseLine> {
        prop_oneof![
            (any::<i32>(), any::<i32>())
                .prop_map(|(high_mv, low_mv)| SenseLine::Pilot(PilotLevels { high_mv, low_mv })),
            any::<bool>().prop_map(SenseLine::Relay),
            any::<[u16; 3]>().prop_map(SenseLine::Amps),
        ]
    }

    fn read_all(bytes: &[u8]) -> std::vec::Vec<Result<std::string::String, ParseError>> {
        let mut r = LineReader::new();
        bytes
            .iter()
            .filter_map(|&b| r.push(b).map(|l| l.map(std::string::String::from)))
            .collect()
    }

    proptest! {
        #[test]
        fn pin_lines_encode_then_parse_is_the_identity(t in any_pin_line()) {
            let line = t.encode();
            prop_assert!(line.ends_with('\n'));
            prop_assert_eq!(PinLine::parse(&line), Ok(t));
        }

        #[test]
        fn sense_lines_encode_then_parse_is_the_identity(t in any_sense_line()) {
            let line = t.encode();
            prop_assert!(line.ends_with('\n'));
            prop_assert_eq!(SenseLine::parse(&line), Ok(t));
        }

        #[test]
        fn a_stream_of_lines_reads_back_line_by_line(ts in prop::collection::vec(any_sense_line(), 0..20)) {
            let mut bytes = std::vec::Vec::new();
            for t in &ts {
                bytes.extend_from_slice(t.encode().as_bytes());
            }
            let got: std::vec::Vec<_> = read_all(&bytes)
                .into_iter()
                .map(|l| l.and_then(|l| SenseLine::parse(&l)))
                .collect();
            let want: std::vec::Vec<_> = ts.iter().copied().map(Ok).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            for l in read_all(&bytes).into_iter().flatten() {
                let _ = SenseLine::parse(&l);
                let _ = PinLine::parse(&l);
            }
        }

        #[test]
        fn a_flipped_character_is_caught(t in any_sense_line(), at in 0usize..40, c in "[A-Z0-9 -]") {
            let line = t.encode();
            let body_len = line.len() - 6; // "*XXXX\n"
            prop_assume!(at < body_len);
            let mut bad = std::string::String::from(&line[..at]);
            bad.push_str(&c);
            bad.push_str(&line[at + 1..]);
            prop_assume!(bad != line.as_str());
            prop_assert_ne!(SenseLine::parse(&bad), Ok(t));
        }
    }

    #[test]
    fn the_documented_transcript_reads() {
        // The example of docs/wire-bridge.md, checksums included: `> ` lines
        // go host to station, `< ` lines station to host. A host line the
        // station cannot read is answered by the `ERR` naming why.
        let doc = include_str!("../../docs/wire-bridge.md");
        let (mut to_station, mut to_host, mut refused) = (0, 0, 0);
        let mut expect_err: Option<ParseError> = None;
        for line in doc.lines() {
            if let Some(l) = line.strip_prefix("> ") {
                assert_eq!(expect_err, None, "{l}: the ERR line is missing");
                match SenseLine::parse(l) {
                    Ok(_) => to_station += 1,
                    Err(e) => expect_err = Some(e),
                }
            } else if let Some(l) = line.strip_prefix("< ") {
                let got = PinLine::parse(l);
                assert!(got.is_ok(), "{l}: {got:?}");
                if let Some(e) = expect_err.take() {
                    assert_eq!(got, Ok(PinLine::Refused(e)), "{l}");
                    refused += 1;
                }
                to_host += 1;
            }
        }
        assert_eq!(expect_err, None);
        assert!(
            to_station >= 3,
            "the document shows every host line ({to_station})"
        );
        assert!(
            to_host >= 5,
            "the document shows every station line ({to_host})"
        );
        assert_eq!(refused, 1, "the document shows a refused line");
    }

    #[test]
    fn bad_lines_are_told_apart() {
        assert_eq!(SenseLine::parse("RELAY 1"), Err(ParseError::NoChecksum));
        assert_eq!(SenseLine::parse("RELAY 1*0000"), Err(ParseError::Checksum));
        let wrong_kind = PinLine::Pin(Output::Contactor(true)).encode();
        assert_eq!(SenseLine::parse(&wrong_kind), Err(ParseError::Syntax));
        let relay2 = seal(String::try_from("RELAY 2").unwrap());
        assert_eq!(SenseLine::parse(&relay2), Err(ParseError::Syntax));
        let extra = seal(String::try_from("AMPS 1 2 3 4").unwrap());
        assert_eq!(SenseLine::parse(&extra), Err(ParseError::Syntax));
        let pwm100 = seal(String::try_from("PWM 10000").unwrap());
        assert_eq!(PinLine::parse(&pwm100), Err(ParseError::Syntax));
    }

    #[test]
    fn a_long_line_is_reported_once_and_the_next_one_reads() {
        let mut bytes = std::vec![b'A'; MAX_LINE];
        bytes.push(b'\n');
        bytes.extend_from_slice(SenseLine::Relay(true).encode().as_bytes());
        let got = read_all(&bytes);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Err(ParseError::TooLong));
        assert_eq!(
            got[1].as_deref().map(SenseLine::parse),
            Ok(Ok(SenseLine::Relay(true)))
        );
        // The longest line that fits: MAX_LINE bytes with its newline.
        let mut exact = std::vec![b'A'; MAX_LINE - 1];
        exact.push(b'\n');
        assert_eq!(read_all(&exact).len(), 1);
        assert!(read_all(&exact)[0].is_ok());
    }
}
