//! Station telemetry: what a station reports on its debug channel, as lines.
//!
//! This module is the format's only definition: the station encodes with
//! [`Telemetry::encode`], the harness parses with [`parse_line`]. The format
//! is documented for people in `docs/station-telemetry.md`.
//!
//! ```text
//! T <kind> [args..]*<crc>\n
//! ```
//!
//! `<crc>` is the CRC-16/XMODEM of everything before `*`, four upper-case
//! hex digits (as on the fixture protocol). Lines that do not start with
//! `T ` are the station's own log and are not telemetry; a `T ` line with a
//! bad checksum or an unknown kind is an error the harness reports.
//! Currents are in deciamps on the wire. No timestamps: the receiver stamps
//! a line with the time it arrived, so the same trace comes out of every
//! bench.
//!
//! Nothing here panics or allocates.

use core::fmt::{self, Write as _};

use crc::{Crc, CRC_16_XMODEM};
use heapless::String;

use crate::charge_point::Fault;

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);

/// Longest telemetry line, newline included.
pub const MAX_LINE: usize = 96;

/// The station's part in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    Leader,
    Follower,
}

impl RoleKind {
    fn word(self) -> &'static str {
        match self {
            Self::Leader => "leader",
            Self::Follower => "follower",
        }
    }
}

/// Why a commissioning message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The message did not parse (a bad line, a missing part).
    Malformed,
    /// The MAC did not verify with the bench commissioning key.
    BadMac,
    /// The site plan names no station with this station's id.
    NotInGroup,
    /// More stations or nodes than this image holds.
    TooLarge,
    /// The group configuration failed validation (see the station log).
    Invalid,
    /// The charge point configuration failed validation.
    InvalidPoint,
    /// The station is charging, holds its contactor or a fault: a new plan
    /// is taken only when it is idle (a plan swap must not open a loaded
    /// contactor, nor forget a weld or a latched fault).
    Busy,
    /// An operator's limit went to a station that does not lead its group
    /// (or runs no plan): only the leader allocates.
    NotLeader,
    /// An operator's limit carried a sequence number not above the last
    /// one taken: a replay.
    Replayed,
    /// An operator's limit above the node's limit in the site plan: the
    /// plan's limit is the installer's, and nothing raises it at run time.
    AbovePlan,
}

impl Refusal {
    const ALL: [Self; 10] = [
        Self::Malformed,
        Self::BadMac,
        Self::NotInGroup,
        Self::TooLarge,
        Self::Invalid,
        Self::InvalidPoint,
        Self::Busy,
        Self::NotLeader,
        Self::Replayed,
        Self::AbovePlan,
    ];

    /// The word on the wire.
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadMac => "bad-mac",
            Self::NotInGroup => "not-in-group",
            Self::TooLarge => "too-large",
            Self::Invalid => "invalid",
            Self::InvalidPoint => "invalid-point",
            Self::Busy => "busy",
            Self::NotLeader => "not-leader",
            Self::Replayed => "replayed",
            Self::AbovePlan => "above-plan",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "the commissioning message is malformed",
            Self::BadMac => "the commissioning message's MAC does not verify",
            Self::NotInGroup => "the site plan has no station with this id",
            Self::TooLarge => "the site plan has more stations or nodes than this image holds",
            Self::Invalid => "the site plan fails validation",
            Self::InvalidPoint => "the charge point settings fail validation",
            Self::Busy => "the station is charging or holds a fault; stop the car first",
            Self::NotLeader => "only the group's leader takes a node limit",
            Self::Replayed => "the limit's sequence number is not above the last one taken",
            Self::AbovePlan => "the limit is above the node's limit in the site plan",
        })
    }
}

/// A fault, as telemetry names it.
fn fault_word(f: Fault) -> &'static str {
    match f {
        Fault::PilotShort => "pilot-short",
        Fault::PilotUnexpectedF => "pilot-f",
        Fault::DiodeMissing => "diode-missing",
        Fault::Overcurrent { .. } => "overcurrent",
        Fault::Welded => "welded",
    }
}

/// One thing a station reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Telemetry {
    /// The station started (after power-on or a reset) in this role.
    Boot { role: RoleKind },
    /// A follower joined its leader's group (challenge answered).
    Joined,
    /// A follower lost its place in the group (a new leader boot).
    Left,
    /// The current the station may offer changed, by its leader (or, for
    /// the leader, by its own allocation).
    Grant { da: u16 },
    /// The leader was lost: the station runs on its fallback.
    FallbackEntered { da: u16 },
    /// The leader is heard again.
    FallbackLeft,
    /// The charge point raised a fault.
    Fault(Fault),
    /// The fault is over (F released).
    FaultCleared,
    /// A commissioning message was validated and taken.
    ConfigAccepted { stations: u16, nodes: u16 },
    /// A commissioning message was refused; the station keeps what it had.
    ConfigRefused(Refusal),
    /// This many telemetry lines (or charge point events) did not fit
    /// the station's queues: the record of what the station did has a gap.
    Lost { count: u16 },
    /// The leader took an operator's limit for a node (by index in the
    /// plan): it allocates under `da` from now on.
    Limit { node: u16, da: u32 },
    /// An operator's limit was refused; the leader keeps what it had.
    LimitRefused(Refusal),
}

impl Telemetry {
    /// The line on the wire: `T ...*CRC\n`.
    #[must_use]
    pub fn encode(&self) -> String<MAX_LINE> {
        let mut s: String<MAX_LINE> = String::new();
        // Every variant fits MAX_LINE; a write error would only truncate.
        let _ = s.push_str("T ");
        let _ = match *self {
            Self::Boot { role } => write!(s, "boot {}", role.word()),
            Self::Joined => s.write_str("joined"),
            Self::Left => s.write_str("left"),
            Self::Grant { da } => write!(s, "grant {da}"),
            Self::FallbackEntered { da } => write!(s, "fallback {da}"),
            Self::FallbackLeft => s.write_str("leader-back"),
            Self::Fault(f) => match f {
                Fault::Overcurrent {
                    measured_da,
                    offered_da,
                } => write!(s, "fault overcurrent {measured_da} {offered_da}"),
                f => write!(s, "fault {}", fault_word(f)),
            },
            Self::FaultCleared => s.write_str("fault-cleared"),
            Self::ConfigAccepted { stations, nodes } => {
                write!(s, "config accepted {stations} {nodes}")
            }
            Self::ConfigRefused(r) => write!(s, "config refused {}", r.word()),
            Self::Lost { count } => write!(s, "lost {count}"),
            Self::Limit { node, da } => write!(s, "limit {node} {da}"),
            Self::LimitRefused(r) => write!(s, "limit refused {}", r.word()),
        };
        let crc = CRC16.checksum(s.as_bytes());
        let _ = writeln!(s, "*{crc:04X}");
        s
    }
}

/// Currents as amps with one decimal, for people.
struct Amps(u16);

impl fmt::Display for Amps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} A", self.0 / 10, self.0 % 10)
    }
}

impl fmt::Display for Telemetry {
    /// How the trace shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Boot { role } => write!(f, "booted as {}", role.word()),
            Self::Joined => f.write_str("joined the group"),
            Self::Left => f.write_str("left the group"),
            Self::Grant { da } => write!(f, "granted {}", Amps(da)),
            Self::FallbackEntered { da } => write!(f, "leader lost: fallback {}", Amps(da)),
            Self::FallbackLeft => f.write_str("leader heard again"),
            Self::Fault(fault) => write!(f, "fault: {fault}"),
            Self::FaultCleared => f.write_str("fault cleared"),
            Self::ConfigAccepted { stations, nodes } => write!(
                f,
                "configuration accepted ({stations} station{}, {nodes} node{})",
                if stations == 1 { "" } else { "s" },
                if nodes == 1 { "" } else { "s" }
            ),
            Self::ConfigRefused(r) => write!(f, "configuration refused: {r}"),
            Self::Lost { count } => write!(f, "{count} telemetry lines or events lost"),
            Self::Limit { node, da } => {
                write!(f, "limit of node {node} set to {}.{} A", da / 10, da % 10)
            }
            Self::LimitRefused(r) => write!(f, "limit refused: {r}"),
        }
    }
}

/// A telemetry line that could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not a telemetry line (the station's own log): not an error to
    /// report, just not telemetry.
    NotTelemetry,
    /// No `*CRC` at the end.
    NoChecksum,
    /// The checksum does not match: the line was garbled.
    Checksum,
    /// A kind this parser does not know, or arguments that do not fit it.
    Syntax,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotTelemetry => "not a telemetry line (no leading \"T \")",
            Self::NoChecksum => "telemetry line without its *CRC",
            Self::Checksum => "telemetry line with a wrong checksum (garbled)",
            Self::Syntax => "telemetry line of unknown kind or with bad arguments",
        })
    }
}

impl core::error::Error for ParseError {}

/// Parse one line (with or without its newline).
pub fn parse_line(line: &str) -> Result<Telemetry, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if !line.starts_with("T ") {
        return Err(ParseError::NotTelemetry);
    }
    let (body, crc) = line.rsplit_once('*').ok_or(ParseError::NoChecksum)?;
    let crc = u16::from_str_radix(crc, 16).map_err(|_| ParseError::NoChecksum)?;
    if crc != CRC16.checksum(body.as_bytes()) {
        return Err(ParseError::Checksum);
    }
    let mut w = body[2..].split(' ');
    let num = |v: Option<&str>| -> Result<u16, ParseError> {
        v.and_then(|v| v.parse().ok()).ok_or(ParseError::Syntax)
    };
    let num32 = |v: Option<&str>| -> Result<u32, ParseError> {
        v.and_then(|v| v.parse().ok()).ok_or(ParseError::Syntax)
    };
    let t = match w.next() {
        Some("boot") => Telemetry::Boot {
            role: match w.next() {
                Some("leader") => RoleKind::Leader,
                Some("follower") => RoleKind::Follower,
                _ => return Err(ParseError::Syntax),
            },
        },
        Some("joined") => Telemetry::Joined,
        Some("left") => Telemetry::Left,
        Some("grant") => Telemetry::Grant { da: num(w.next())? },
        Some("fallback") => Telemetry::FallbackEntered { da: num(w.next())? },
        Some("leader-back") => Telemetry::FallbackLeft,
        Some("fault") => Telemetry::Fault(match w.next() {
            Some("pilot-short") => Fault::PilotShort,
            Some("pilot-f") => Fault::PilotUnexpectedF,
            Some("diode-missing") => Fault::DiodeMissing,
            Some("welded") => Fault::Welded,
            Some("overcurrent") => Fault::Overcurrent {
                measured_da: num(w.next())?,
                offered_da: num(w.next())?,
            },
            _ => return Err(ParseError::Syntax),
        }),
        Some("fault-cleared") => Telemetry::FaultCleared,
        Some("lost") => Telemetry::Lost {
            count: num(w.next())?,
        },
        Some("config") => match w.next() {
            Some("accepted") => Telemetry::ConfigAccepted {
                stations: num(w.next())?,
                nodes: num(w.next())?,
            },
            Some("refused") => {
                let word = w.next().ok_or(ParseError::Syntax)?;
                Telemetry::ConfigRefused(
                    Refusal::ALL
                        .into_iter()
                        .find(|r| r.word() == word)
                        .ok_or(ParseError::Syntax)?,
                )
            }
            _ => return Err(ParseError::Syntax),
        },
        Some("limit") => match w.next() {
            Some("refused") => {
                let word = w.next().ok_or(ParseError::Syntax)?;
                Telemetry::LimitRefused(
                    Refusal::ALL
                        .into_iter()
                        .find(|r| r.word() == word)
                        .ok_or(ParseError::Syntax)?,
                )
            }
            node => Telemetry::Limit {
                node: num(node)?,
                da: num32(w.next())?,
            },
        },
        _ => return Err(ParseError::Syntax),
    };
    if w.next().is_some() {
        return Err(ParseError::Syntax);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_telemetry() -> impl Strategy<Value = Telemetry> {
        let fault = prop_oneof![
            Just(Fault::PilotShort),
            Just(Fault::PilotUnexpectedF),
            Just(Fault::DiodeMissing),
            Just(Fault::Welded),
            (any::<u16>(), any::<u16>()).prop_map(|(m, o)| Fault::Overcurrent {
                measured_da: m,
                offered_da: o
            }),
        ];
        prop_oneof![
            Just(Telemetry::Boot {
                role: RoleKind::Leader
            }),
            Just(Telemetry::Boot {
                role: RoleKind::Follower
            }),
            Just(Telemetry::Joined),
            Just(Telemetry::Left),
            any::<u16>().prop_map(|da| Telemetry::Grant { da }),
            any::<u16>().prop_map(|da| Telemetry::FallbackEntered { da }),
            Just(Telemetry::FallbackLeft),
            fault.prop_map(Telemetry::Fault),
            Just(Telemetry::FaultCleared),
            (any::<u16>(), any::<u16>())
                .prop_map(|(stations, nodes)| Telemetry::ConfigAccepted { stations, nodes }),
            prop::sample::select(Refusal::ALL.to_vec()).prop_map(Telemetry::ConfigRefused),
            any::<u16>().prop_map(|count| Telemetry::Lost { count }),
            (any::<u16>(), any::<u32>()).prop_map(|(node, da)| Telemetry::Limit { node, da }),
            prop::sample::select(Refusal::ALL.to_vec()).prop_map(Telemetry::LimitRefused),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_parse_is_the_identity(t in any_telemetry()) {
            let line = t.encode();
            prop_assert!(line.ends_with('\n'));
            prop_assert_eq!(parse_line(&line), Ok(t));
        }

        #[test]
        fn random_text_never_panics(s in "\\PC{0,100}") {
            let _ = parse_line(&s);
        }

        #[test]
        fn a_flipped_character_is_caught(t in any_telemetry(), at in 2usize..40, c in "[a-z0-9 ]") {
            let line = t.encode();
            let body_len = line.len() - 6; // "*XXXX\n"
            prop_assume!(at < body_len);
            let mut bad = std::string::String::from(&line[..at]);
            bad.push_str(&c);
            bad.push_str(&line[at + 1..]);
            prop_assume!(bad != line.as_str());
            prop_assert_ne!(parse_line(&bad), Ok(t));
        }
    }

    #[test]
    fn the_documented_lines_parse() {
        // The examples of docs/station-telemetry.md, checksums included.
        let doc = include_str!("../../docs/station-telemetry.md");
        let mut n = 0;
        for line in doc
            .lines()
            .filter(|l| l.starts_with("T ") && !l.contains('<'))
        {
            assert!(parse_line(line).is_ok(), "{line}: {:?}", parse_line(line));
            n += 1;
        }
        assert!(n >= 8, "the document shows every kind ({n} lines found)");
    }

    #[test]
    fn log_lines_are_not_telemetry() {
        assert_eq!(parse_line("booting v0.1"), Err(ParseError::NotTelemetry));
        assert_eq!(parse_line("T grant 160"), Err(ParseError::NoChecksum));
        assert_eq!(parse_line("T grant 160*0000"), Err(ParseError::Checksum));
    }
}
