//! The fixture protocol: the lines between the harness and a bench fixture.
//!
//! This module is the protocol's only definition. The fixture uses it to
//! parse commands and encode events and acknowledgements; the harness uses
//! it to encode commands and parse events. The format is documented for
//! people in `docs/fixture-protocol.md`.
//!
//! Every line is human-readable ASCII, one record per line:
//!
//! ```text
//! C <seq> <VERB> [args..]*<crc>          host -> fixture: a command
//! A <seq> OK [info..]*<crc>              fixture -> host: command <seq> done
//! A <seq> ERR <code> <message..>*<crc>   fixture -> host: command <seq> refused
//! E <seq> <t_us> <KIND> [args..]*<crc>   fixture -> host: an event at fixture time t_us
//! ```
//!
//! `<crc>` is the CRC-16/XMODEM of everything before `*`, as four hex
//! digits. A person at a terminal may write `*--` instead: the line is then
//! taken unchecked (the harness never does this).
//!
//! Parsing is streaming (nom): a partial line is `Incomplete`, not an error;
//! a garbled line is reported with what was wrong and skipped, and parsing
//! resumes at the next newline. Nothing here panics or allocates.

use core::fmt::Write as _;

use crate::iec::PilotState;
use crc::{Crc, CRC_16_XMODEM};
use heapless::String;
use nom::bytes::streaming::take_until;
use nom::combinator::all_consuming;
use nom::Parser;

use crate::meter::MeterFault;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Longest line either side sends, newline included.
pub const MAX_LINE: usize = 192;
/// Longest `OK` info (the HELLO answer is the longest).
pub const MAX_INFO: usize = 144;
/// Most bytes of a station's debug channel one `DEBUG` line carries, and
/// the longest its escaped text may be (so every `DEBUG` line fits
/// [`MAX_LINE`]).
pub const MAX_DEBUG: usize = 128;

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);

/// A channel number (one station under test per channel).
pub type Channel = u8;

/// A car setting in a `CAR` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarSetting {
    MaxDa(u16),
    Phases(u8),
    CapacityWh(u32),
    SocPermille(u16),
    KneePermille(u16),
    TargetPermille(u16),
    /// Response delay, fixed, in milliseconds.
    DelayMs(u32),
    /// Response delay drawn in `DelayMs..=DelayMaxMs`.
    DelayMaxMs(u32),
    RampDaPerS(u16),
    Ventilation(bool),
    /// Channel wiring: the grid phase (0 = L1) the car's first phase is on.
    Rotation(u8),
    /// Channel wiring: the mains meter sees this channel's current (its
    /// station is under the metered node). On by default and after `RESET`.
    Metered(bool),
    /// Channel wiring: the phases the station supplies (1 or 3); the car
    /// draws only on those.
    SupplyPhases(u8),
    /// Auxiliary load (pre-conditioning), deciamps per phase: the car keeps
    /// drawing this much, within its offer, while full or paused (it stays
    /// in state C for it). 0: none.
    AuxDa(u16),
}

/// A misbehaviour in a `MISBEHAVE` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehave {
    None,
    IgnoreReductions,
    OverdrawDa(u16),
    SlowMs(u32),
    DrawsInB,
    NoDiode,
    ShortedDiode,
    ShortPilot,
}

/// Bytes of a station's debug channel, relayed verbatim by a fixture with
/// the `debug` capability: one or more bytes whose escaped text (see
/// [`escape_debug_byte`]) is at most [`MAX_DEBUG`] characters long.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DebugBytes {
    len: u8,
    /// The escaped text's length (kept, not recounted per byte).
    text: u8,
    buf: [u8; MAX_DEBUG],
}

impl Default for DebugBytes {
    fn default() -> Self {
        Self::new()
    }
}

impl DebugBytes {
    /// No bytes yet.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            len: 0,
            text: 0,
            buf: [0; MAX_DEBUG],
        }
    }

    /// The bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The length of the escaped text on the line.
    #[must_use]
    pub fn text_len(&self) -> usize {
        usize::from(self.text)
    }

    /// Add `b` if its escape still fits the line's [`MAX_DEBUG`]
    /// characters; `false` (and nothing added) when it does not.
    pub fn push(&mut self, b: u8) -> bool {
        let n = usize::from(self.len);
        let text = self.text_len() + escaped_len(b);
        let (Ok(text), true) = (u8::try_from(text), text <= MAX_DEBUG && n < MAX_DEBUG) else {
            return false;
        };
        self.buf[n] = b;
        self.len += 1;
        self.text = text;
        true
    }

    /// As many bytes of `bytes` as fit, from the front; how many were taken.
    pub fn fill(&mut self, bytes: &[u8]) -> usize {
        bytes.iter().take_while(|&&b| self.push(b)).count()
    }

    /// Write the escaped text.
    pub fn write_text(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        for &b in self.as_bytes() {
            escape_debug_byte(b, out)?;
        }
        Ok(())
    }

    /// Read an escaped text; `None` if it is empty, has a bad escape, or
    /// does not fit.
    #[must_use]
    pub fn from_text(text: &str) -> Option<Self> {
        let mut d = Self::new();
        let mut it = text.bytes();
        while let Some(c) = it.next() {
            let b = match c {
                b'\\' => match it.next()? {
                    b'\\' => b'\\',
                    b's' => b' ',
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b'x' => {
                        let hi = char::from(it.next()?).to_digit(16)?;
                        let lo = char::from(it.next()?).to_digit(16)?;
                        u8::try_from(hi * 16 + lo).ok()?
                    }
                    _ => return None,
                },
                0x21..=0x7e => c,
                _ => return None,
            };
            if !d.push(b) {
                return None;
            }
        }
        (!d.is_empty()).then_some(d)
    }
}

impl core::fmt::Debug for DebugBytes {
    /// The escaped text, quoted.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("\"")?;
        self.write_text(f)?;
        f.write_str("\"")
    }
}

/// How long the escape of `b` is (see [`escape_debug_byte`]).
#[must_use]
pub const fn escaped_len(b: u8) -> usize {
    match b {
        b'\\' | b' ' | b'\n' | b'\r' => 2,
        0x21..=0x7e => 1,
        _ => 4,
    }
}

/// Write byte `b` of a station's debug channel as a `DEBUG` line carries
/// it: printable ASCII as itself, `\\` for a backslash, `\s` a space, `\n`
/// a newline, `\r` a carriage return, `\xHH` any other byte. The text is
/// one field (no spaces) of printable ASCII, so the line's checks apply.
pub fn escape_debug_byte(b: u8, out: &mut impl core::fmt::Write) -> core::fmt::Result {
    match b {
        b'\\' => out.write_str("\\\\"),
        b' ' => out.write_str("\\s"),
        b'\n' => out.write_str("\\n"),
        b'\r' => out.write_str("\\r"),
        0x21..=0x7e => out.write_char(char::from(b)),
        _ => write!(out, "\\x{b:02X}"),
    }
}

/// Host -> fixture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Hello {
        version: u16,
    },
    Reset,
    Plug(Channel),
    Unplug(Channel),
    Request(Channel),
    Stop(Channel),
    Pause(Channel),
    Car(Channel, CarSetting),
    Misbehave(Channel, Misbehave),
    /// A site load: name, phases (bit 0 = L1), deciamps (negative for
    /// generation such as PV), on or off.
    Load {
        name: String<16>,
        phases: u8,
        da: i32,
        on: bool,
    },
    Meter(MeterFault),
    Query(Channel),
    /// Loop the fixture's PWM generator into channel `ch`'s capture and
    /// report the measurement error ([`crate::selftest`]).
    SelfTest(Channel),
    /// Every reading the emulated meter answers is off by a seeded amount
    /// within +/- this many deciamps per phase (0: exact).
    MeterNoise(u16),
    /// Write bytes to the station's debug channel (its RX) on channel
    /// `ch`: commissioning through the fixture.
    Debug(Channel, DebugBytes),
}

impl Command {
    /// The capability a fixture needs to carry this command out, if any.
    #[must_use]
    pub fn needs(&self) -> Option<Capability> {
        match self {
            Self::Hello { .. } | Self::Reset => None,
            Self::Plug(_)
            | Self::Unplug(_)
            | Self::Request(_)
            | Self::Stop(_)
            | Self::Pause(_)
            | Self::Query(_)
            | Self::Car(..) => Some(Capability::Car),
            Self::Misbehave(..) => Some(Capability::Misbehave),
            Self::Load { .. } => Some(Capability::Loads),
            Self::Meter(_) | Self::MeterNoise(_) => Some(Capability::Meter),
            Self::SelfTest(_) => Some(Capability::SelfTest),
            Self::Debug(..) => Some(Capability::Debug),
        }
    }

    /// The channel the command addresses, if any.
    #[must_use]
    pub fn channel(&self) -> Option<Channel> {
        match *self {
            Self::Plug(c)
            | Self::Unplug(c)
            | Self::Request(c)
            | Self::Stop(c)
            | Self::Pause(c)
            | Self::Query(c)
            | Self::SelfTest(c)
            | Self::Car(c, _)
            | Self::Debug(c, _)
            | Self::Misbehave(c, _) => Some(c),
            _ => None,
        }
    }
}

/// Something a fixture can do, announced in its `HELLO` answer (`caps=`).
/// The one table of capability words: the protocol, the harness's refusal
/// messages and `docs/fixture-protocol.md` (checked by a test) use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Pilot PWM capture: `DUTY`, `PWMOFF`.
    Pwm,
    /// Pilot plateau sampling: `PILOT` states and levels.
    Levels,
    /// Contactor sense from the relay's auxiliary contact: `CONTACTOR`.
    Relay,
    /// Per-phase station current (CT or electronic load): `CURRENT`.
    Current,
    /// The SDM630 emulation on the leader's meter line: `METER`.
    Meter,
    /// An emulated car: `PLUG`, `UNPLUG`, `REQUEST`, `STOP`, `PAUSE`, `CAR`, `QUERY`.
    Car,
    /// Car misbehaviours (diode, short, overdraw...): `MISBEHAVE`.
    Misbehave,
    /// Other site loads on the mains: `LOAD`.
    Loads,
    /// PWM loopback self-test: `SELFTEST`.
    SelfTest,
    /// Each station's debug channel relayed: `DEBUG` event and command.
    Debug,
}

impl Capability {
    /// Every capability, in announcement order.
    pub const ALL: [Self; 10] = [
        Self::Pwm,
        Self::Levels,
        Self::Relay,
        Self::Current,
        Self::Meter,
        Self::Car,
        Self::Misbehave,
        Self::Loads,
        Self::SelfTest,
        Self::Debug,
    ];

    /// The word on the protocol.
    #[must_use]
    pub const fn word(self) -> &'static str {
        match self {
            Self::Pwm => "pwm",
            Self::Levels => "levels",
            Self::Relay => "relay",
            Self::Current => "current",
            Self::Meter => "meter",
            Self::Car => "car",
            Self::Misbehave => "misbehave",
            Self::Loads => "loads",
            Self::SelfTest => "selftest",
            Self::Debug => "debug",
        }
    }

    /// Parse a capability word.
    #[must_use]
    pub fn from_word(w: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.word() == w)
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// A set of capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Caps(u16);

impl Caps {
    /// No capability.
    pub const NONE: Self = Self(0);
    /// Every capability (the virtual fixture's).
    pub const ALL: Self = Self(0x3FF);

    #[must_use]
    pub const fn with(self, c: Capability) -> Self {
        Self(self.0 | c.bit())
    }

    #[must_use]
    pub const fn without(self, c: Capability) -> Self {
        Self(self.0 & !c.bit())
    }

    #[must_use]
    pub const fn has(self, c: Capability) -> bool {
        self.0 & c.bit() != 0
    }

    /// The capabilities in `needed` this set lacks.
    #[must_use]
    pub const fn missing(self, needed: Self) -> Self {
        Self(needed.0 & !self.0)
    }

    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities in the set, in announcement order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL.into_iter().filter(move |c| self.has(*c))
    }
}

impl core::fmt::Display for Caps {
    /// Comma-separated words, as in `caps=`; `-` for none.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (i, c) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(c.word())?;
        }
        Ok(())
    }
}

/// The fixture's answer to `HELLO`:
/// `sharebench-fixture proto=<n> fw=<version> channels=<n> caps=<word,..>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureInfo {
    /// The protocol version spoken.
    pub proto: u16,
    /// The fixture firmware's version.
    pub fw: String<16>,
    /// Channels: stations under test one fixture serves.
    pub channels: u16,
    pub caps: Caps,
}

impl FixtureInfo {
    /// Write the `OK` info of the HELLO answer.
    pub fn emit(&self, out: &mut String<MAX_INFO>) -> core::fmt::Result {
        out.clear();
        write!(
            out,
            "sharebench-fixture proto={} fw={} channels={} caps={}",
            self.proto, self.fw, self.channels, self.caps
        )
    }

    /// Read the `OK` info of a HELLO answer. Unknown keys and unknown
    /// capability words are skipped (a newer fixture may know more).
    pub fn parse(info: &str) -> Result<Self, &'static str> {
        let mut f = info.split(' ');
        if f.next() != Some("sharebench-fixture") {
            return Err("a HELLO answer starting sharebench-fixture");
        }
        let (mut proto, mut fw, mut channels, mut caps) = (None, None, None, None);
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                return Err("key=value fields in the HELLO answer");
            };
            match k {
                "proto" => proto = Some(num::<u16>(v).ok_or("proto=<number>")?),
                "fw" => {
                    fw = Some(String::try_from(v).map_err(|_| "fw=<version> under 16 characters")?)
                }
                "channels" => channels = Some(num::<u16>(v).ok_or("channels=<number>")?),
                "caps" => {
                    let mut c = Caps::NONE;
                    for w in v.split(',').filter(|w| *w != "-") {
                        if let Some(cap) = Capability::from_word(w) {
                            c = c.with(cap);
                        }
                    }
                    caps = Some(c);
                }
                _ => {}
            }
        }
        Ok(Self {
            proto: proto.ok_or("proto= in the HELLO answer")?,
            fw: fw.ok_or("fw= in the HELLO answer")?,
            channels: channels.ok_or("channels= in the HELLO answer")?,
            caps: caps.ok_or(
                "caps= in the HELLO answer (a fixture too old to announce its capabilities?)",
            )?,
        })
    }
}

/// Write the `OK` info of a `SELFTEST` answer:
/// `selftest ch=<n> duty_err_ppm=<n> window_err_ppm=<n> freq_err_ppm=<n> periods=<n> pass|fail`.
pub fn emit_selftest(
    ch: Channel,
    r: &crate::selftest::SelfTestReport,
    out: &mut String<MAX_INFO>,
) -> core::fmt::Result {
    out.clear();
    write!(
        out,
        "selftest ch={ch} duty_err_ppm={} window_err_ppm={} freq_err_ppm={} periods={} {}",
        r.duty_err_ppm,
        r.window_duty_err_ppm,
        r.freq_err_ppm,
        r.periods,
        if r.pass() { "pass" } else { "fail" }
    )
}

/// Read the `OK` info of a `SELFTEST` answer. The verdict word must agree
/// with the figures (judged again here by [`crate::selftest`]'s limits).
pub fn parse_selftest(
    info: &str,
) -> Result<(Channel, crate::selftest::SelfTestReport), &'static str> {
    let mut f = info.split(' ');
    if f.next() != Some("selftest") {
        return Err("a SELFTEST answer starting selftest");
    }
    let mut field = |key: &'static str| -> Result<u32, &'static str> {
        let kv = f.next().ok_or(key)?;
        match kv.split_once('=') {
            Some((k, v)) if k == key => num::<u32>(v).ok_or(key),
            _ => Err(key),
        }
    };
    let ch = Channel::try_from(field("ch")?).map_err(|_| "ch")?;
    let r = crate::selftest::SelfTestReport {
        duty_err_ppm: field("duty_err_ppm")?,
        window_duty_err_ppm: field("window_err_ppm")?,
        freq_err_ppm: field("freq_err_ppm")?,
        periods: field("periods")?,
    };
    let verdict = f.next().ok_or("pass or fail")?;
    if f.next().is_some() {
        return Err("nothing after pass or fail");
    }
    match (verdict, r.pass()) {
        ("pass", true) | ("fail", false) => Ok((ch, r)),
        ("pass" | "fail", _) => Err("a verdict that agrees with the figures"),
        _ => Err("pass or fail"),
    }
}

/// Fixture -> host, stamped with fixture time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Duty {
        ch: Channel,
        duty_bp: u16,
        freq_mhz: u32,
    },
    PwmOff {
        ch: Channel,
    },
    Pilot {
        ch: Channel,
        state: Option<PilotState>,
        high_mv: i32,
        low_mv: i32,
    },
    Contactor {
        ch: Channel,
        closed: bool,
    },
    Current {
        ch: Channel,
        da: [u16; 3],
    },
    /// The site's net current per phase at the meter's position, deciamps
    /// (import +): the truth, also while the emulated meter is faulted.
    Meter {
        da: [i32; 3],
    },
    Heartbeat,
    /// Lines the fixture dropped because the host did not read them,
    /// cumulative since it started (sent when the count grew).
    LostLines {
        total: u32,
    },
    /// Capture changes channel `ch` dropped because its queue was full,
    /// cumulative since the fixture started (sent when the count grew).
    LostCapture {
        ch: Channel,
        total: u32,
    },
    /// Answer to `QUERY`: the car's state of charge and draw.
    Car {
        ch: Channel,
        plugged: bool,
        soc_permille: u16,
        draw_da: u16,
    },
    /// Bytes station `ch` printed on its debug channel, verbatim (a line,
    /// or part of one: the fixture sends at each newline, when the line
    /// would not fit, and at the heartbeat).
    Debug {
        ch: Channel,
        data: DebugBytes,
    },
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Checksum,
    Parse,
    Version,
    Channel,
    NoHello,
    /// The fixture lacks the capability the command needs.
    Unsupported,
    /// The fixture cannot take it now (a station's debug queue is full):
    /// try again later.
    Busy,
}

impl ErrorCode {
    /// The word on the wire (`ERR <word> ...`).
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            Self::Checksum => "checksum",
            Self::Parse => "parse",
            Self::Version => "version",
            Self::Channel => "channel",
            Self::NoHello => "no-hello",
            Self::Unsupported => "unsupported",
            Self::Busy => "busy",
        }
    }

    fn from_word(w: &str) -> Option<Self> {
        Some(match w {
            "checksum" => Self::Checksum,
            "parse" => Self::Parse,
            "version" => Self::Version,
            "channel" => Self::Channel,
            "no-hello" => Self::NoHello,
            "unsupported" => Self::Unsupported,
            "busy" => Self::Busy,
            _ => return None,
        })
    }
}

/// One protocol line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Command {
        seq: u32,
        cmd: Command,
    },
    Event {
        seq: u32,
        t_us: u64,
        event: Event,
    },
    Ok {
        seq: u32,
        info: String<MAX_INFO>,
    },
    Err {
        seq: u32,
        code: ErrorCode,
        message: String<96>,
    },
}

/// Why a complete line was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// The line is not ASCII text.
    NotText,
    /// No `*<crc>` at the end.
    NoChecksum,
    /// The checksum does not match.
    Checksum { seq: Option<u32> },
    /// The fields do not form a known record; `seq` when it could be read.
    Syntax {
        seq: Option<u32>,
        what: &'static str,
    },
}

impl core::fmt::Display for LineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotText => f.write_str("line is not ASCII text"),
            Self::NoChecksum => f.write_str("line has no *<crc> checksum"),
            Self::Checksum { .. } => f.write_str("line checksum mismatch"),
            Self::Syntax { what, .. } => write!(f, "line not understood: {what}"),
        }
    }
}

impl core::error::Error for LineError {}

/// The outcome of looking for one line in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// No newline yet: wait for more bytes.
    Incomplete,
    /// A line, and how many bytes it took.
    Line(usize, Line),
    /// A garbled line, skipped: how many bytes to drop, and why.
    Garbled(usize, LineError),
}

/// Find and parse the next line in `buf`.
#[must_use]
pub fn parse_next(buf: &[u8]) -> Parsed {
    let found: nom::IResult<&[u8], &[u8]> = take_until("\n").parse(buf);
    let raw = match found {
        Ok((_, raw)) => raw,
        Err(nom::Err::Incomplete(_)) => {
            if buf.len() > MAX_LINE {
                // Too long to be a line: drop it and resynchronise.
                return Parsed::Garbled(
                    buf.len(),
                    LineError::Syntax {
                        seq: None,
                        what: "line too long",
                    },
                );
            }
            return Parsed::Incomplete;
        }
        Err(_) => return Parsed::Garbled(buf.len(), LineError::NotText),
    };
    let used = raw.len() + 1;
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    match parse_line(raw) {
        Ok(line) => Parsed::Line(used, line),
        Err(e) => Parsed::Garbled(used, e),
    }
}

/// Parse one line without its newline.
pub fn parse_line(raw: &[u8]) -> Result<Line, LineError> {
    let text = core::str::from_utf8(raw).map_err(|_| LineError::NotText)?;
    // Printable ASCII only: no control characters hide in a field.
    if !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(LineError::NotText);
    }
    let (body, crc) = text.rsplit_once('*').ok_or(LineError::NoChecksum)?;
    let seq = body.split(' ').nth(1).and_then(num::<u32>);
    if crc != "--" {
        let want = u16::from_str_radix(crc, 16).map_err(|_| LineError::Checksum { seq })?;
        if crc.len() != 4 || CRC16.checksum(body.as_bytes()) != want {
            return Err(LineError::Checksum { seq });
        }
    }
    let syntax = |what| LineError::Syntax { seq, what };
    let mut f = body.split(' ').filter(|s| !s.is_empty());
    let kind = f.next().ok_or(syntax("empty line"))?;
    let seq = f
        .next()
        .and_then(num::<u32>)
        .ok_or(syntax("sequence number"))?;
    match kind {
        "C" => parse_command(&mut f)
            .map(|cmd| Line::Command { seq, cmd })
            .map_err(syntax),
        "E" => {
            let t_us = f.next().and_then(num::<u64>).ok_or(syntax("timestamp"))?;
            let event = parse_event(&mut f).map_err(syntax)?;
            Ok(Line::Event { seq, t_us, event })
        }
        "A" => match f.next() {
            Some("OK") => Ok(Line::Ok {
                seq,
                info: join(f).ok_or(syntax("info under 144 characters"))?,
            }),
            Some("ERR") => {
                let code = f
                    .next()
                    .and_then(ErrorCode::from_word)
                    .ok_or(syntax("error code"))?;
                Ok(Line::Err {
                    seq,
                    code,
                    message: join(f).ok_or(syntax("message under 96 characters"))?,
                })
            }
            _ => Err(syntax("OK or ERR")),
        },
        _ => Err(syntax("record kind C, A or E")),
    }
}

/// The remaining words, single-spaced; `None` if they do not fit.
fn join<'a, const N: usize>(f: impl Iterator<Item = &'a str>) -> Option<String<N>> {
    let mut s = String::new();
    for (i, w) in f.enumerate() {
        if i > 0 {
            s.push(' ').ok()?;
        }
        s.push_str(w).ok()?;
    }
    Some(s)
}

/// A decimal number, parsed with nom.
fn num<T: core::str::FromStr>(s: &str) -> Option<T> {
    let r: nom::IResult<&str, &str> = all_consuming(nom::sequence::preceded(
        nom::combinator::opt(nom::character::complete::char('-')),
        nom::character::complete::digit1,
    ))
    .parse(s);
    r.ok().and_then(|_| s.parse().ok())
}

fn ch<'a>(f: &mut impl Iterator<Item = &'a str>) -> Result<Channel, &'static str> {
    f.next().and_then(num::<Channel>).ok_or("channel number")
}

fn debug_text<'a>(f: &mut impl Iterator<Item = &'a str>) -> Result<DebugBytes, &'static str> {
    f.next()
        .and_then(DebugBytes::from_text)
        .ok_or("debug text: 1 to 128 characters, escapes \\\\ \\s \\n \\r \\xHH")
}

fn end<'a>(f: &mut impl Iterator<Item = &'a str>) -> Result<(), &'static str> {
    if f.next().is_some() {
        Err("trailing fields")
    } else {
        Ok(())
    }
}

fn parse_command<'a>(f: &mut impl Iterator<Item = &'a str>) -> Result<Command, &'static str> {
    let verb = f.next().ok_or("command verb")?;
    let cmd = match verb {
        "HELLO" => Command::Hello {
            version: f.next().and_then(num::<u16>).ok_or("protocol version")?,
        },
        "RESET" => Command::Reset,
        "PLUG" => Command::Plug(ch(f)?),
        "UNPLUG" => Command::Unplug(ch(f)?),
        "REQUEST" => Command::Request(ch(f)?),
        "STOP" => Command::Stop(ch(f)?),
        "PAUSE" => Command::Pause(ch(f)?),
        "QUERY" => Command::Query(ch(f)?),
        "SELFTEST" => Command::SelfTest(ch(f)?),
        "DEBUG" => Command::Debug(ch(f)?, debug_text(f)?),
        "CAR" => {
            let c = ch(f)?;
            let (k, v) = f
                .next()
                .and_then(|kv| kv.split_once('='))
                .ok_or("key=value")?;
            let n = |v: &str| num::<u32>(v).ok_or("a number");
            let setting = match k {
                "max" => CarSetting::MaxDa(u16::try_from(n(v)?).map_err(|_| "max in dA")?),
                "phases" => CarSetting::Phases(u8::try_from(n(v)?).map_err(|_| "phases 1 or 3")?),
                "capacity" => CarSetting::CapacityWh(n(v)?),
                "soc" => CarSetting::SocPermille(u16::try_from(n(v)?).map_err(|_| "soc in permille")?),
                "knee" => CarSetting::KneePermille(u16::try_from(n(v)?).map_err(|_| "knee in permille")?),
                "target" => CarSetting::TargetPermille(u16::try_from(n(v)?).map_err(|_| "target in permille")?),
                "delay" => CarSetting::DelayMs(n(v)?),
                "delay_max" => CarSetting::DelayMaxMs(n(v)?),
                "ramp" => CarSetting::RampDaPerS(u16::try_from(n(v)?).map_err(|_| "ramp in dA/s")?),
                "vent" => CarSetting::Ventilation(n(v)? != 0),
                "rot" => CarSetting::Rotation(u8::try_from(n(v)?).map_err(|_| "rotation 0, 1 or 2")?),
                "meter" => CarSetting::Metered(n(v)? != 0),
                "supply" => match n(v)? {
                    1 => CarSetting::SupplyPhases(1),
                    3 => CarSetting::SupplyPhases(3),
                    _ => return Err("supply phases 1 or 3"),
                },
                "aux" => CarSetting::AuxDa(u16::try_from(n(v)?).map_err(|_| "aux in dA")?),
                _ => return Err("car setting (max, phases, capacity, soc, knee, target, delay, delay_max, ramp, vent, rot, meter, supply, aux)"),
            };
            Command::Car(c, setting)
        }
        "MISBEHAVE" => {
            let c = ch(f)?;
            let m = match f.next().ok_or("misbehaviour")? {
                "none" => Misbehave::None,
                "ignore-reductions" => Misbehave::IgnoreReductions,
                "overdraw" => {
                    Misbehave::OverdrawDa(f.next().and_then(num::<u16>).ok_or("overdraw in dA")?)
                }
                "slow" => {
                    Misbehave::SlowMs(f.next().and_then(num::<u32>).ok_or("slow response in ms")?)
                }
                "draws-in-b" => Misbehave::DrawsInB,
                "no-diode" => Misbehave::NoDiode,
                "shorted-diode" => Misbehave::ShortedDiode,
                "short-pilot" => Misbehave::ShortPilot,
                _ => return Err("misbehaviour kind"),
            };
            Command::Misbehave(c, m)
        }
        "LOAD" => {
            let name = f.next().ok_or("load name")?;
            let mut n = String::new();
            n.push_str(name)
                .map_err(|_| "load name under 16 characters")?;
            let phases = match f.next().ok_or("phases")? {
                "L1" => 1,
                "L2" => 2,
                "L3" => 4,
                "L123" => 7,
                _ => return Err("phases L1, L2, L3 or L123"),
            };
            let da = f.next().and_then(num::<i32>).ok_or("current in dA")?;
            let on = match f.next().ok_or("ON or OFF")? {
                "ON" => true,
                "OFF" => false,
                _ => return Err("ON or OFF"),
            };
            Command::Load {
                name: n,
                phases,
                da,
                on,
            }
        }
        "METER" => match f.next().ok_or("meter mode")? {
            "noise" => {
                Command::MeterNoise(f.next().and_then(num::<u16>).ok_or("meter noise in dA")?)
            }
            mode => Command::Meter(match mode {
                "ok" => MeterFault::None,
                "silent" => MeterFault::Silent,
                "garbage" => MeterFault::Garbage,
                "stale" => MeterFault::Stale,
                "implausible" => MeterFault::Implausible,
                _ => {
                    return Err(
                        "meter mode ok, silent, garbage, stale or implausible, or noise <dA>",
                    )
                }
            }),
        },
        _ => return Err("known command verb"),
    };
    end(f)?;
    Ok(cmd)
}

fn parse_event<'a>(f: &mut impl Iterator<Item = &'a str>) -> Result<Event, &'static str> {
    let kind = f.next().ok_or("event kind")?;
    let ev = match kind {
        "DUTY" => Event::Duty {
            ch: ch(f)?,
            duty_bp: f.next().and_then(num::<u16>).ok_or("duty in 0.01 %")?,
            freq_mhz: f.next().and_then(num::<u32>).ok_or("frequency in mHz")?,
        },
        "PWMOFF" => Event::PwmOff { ch: ch(f)? },
        "PILOT" => {
            let c = ch(f)?;
            let s = f.next().ok_or("state letter")?;
            let state = match s.as_bytes() {
                [b'?'] => None,
                [l] => Some(PilotState::from_letter(*l).ok_or("state A-F or ?")?),
                _ => return Err("state A-F or ?"),
            };
            Event::Pilot {
                ch: c,
                state,
                high_mv: f.next().and_then(num::<i32>).ok_or("high level mV")?,
                low_mv: f.next().and_then(num::<i32>).ok_or("low level mV")?,
            }
        }
        "CONTACTOR" => Event::Contactor {
            ch: ch(f)?,
            closed: match f.next() {
                Some("1") => true,
                Some("0") => false,
                _ => return Err("contactor 0 or 1"),
            },
        },
        "CURRENT" => {
            let c = ch(f)?;
            let mut da = [0u16; 3];
            for d in &mut da {
                *d = f
                    .next()
                    .and_then(num::<u16>)
                    .ok_or("three currents in dA")?;
            }
            Event::Current { ch: c, da }
        }
        "METER" => {
            let mut da = [0i32; 3];
            for d in &mut da {
                *d = f
                    .next()
                    .and_then(num::<i32>)
                    .ok_or("three meter currents in dA")?;
            }
            Event::Meter { da }
        }
        "HB" => Event::Heartbeat,
        "LOSS" => match f.next().ok_or("LINES or CAPTURE")? {
            "LINES" => Event::LostLines {
                total: f.next().and_then(num::<u32>).ok_or("lines lost")?,
            },
            "CAPTURE" => Event::LostCapture {
                ch: ch(f)?,
                total: f
                    .next()
                    .and_then(num::<u32>)
                    .ok_or("capture changes lost")?,
            },
            _ => return Err("LINES or CAPTURE"),
        },
        "CAR" => Event::Car {
            ch: ch(f)?,
            plugged: f.next().and_then(num::<u8>).ok_or("plugged 0 or 1")? != 0,
            soc_permille: f.next().and_then(num::<u16>).ok_or("soc permille")?,
            draw_da: f.next().and_then(num::<u16>).ok_or("draw dA")?,
        },
        "DEBUG" => Event::Debug {
            ch: ch(f)?,
            data: debug_text(f)?,
        },
        _ => return Err("known event kind"),
    };
    end(f)?;
    Ok(ev)
}

/// Encode a line, checksum and newline included, into `out`.
pub fn encode(line: &Line, out: &mut String<MAX_LINE>) -> core::fmt::Result {
    out.clear();
    match line {
        Line::Command { seq, cmd } => {
            write!(out, "C {seq} ")?;
            write_command(cmd, out)?;
        }
        Line::Event { seq, t_us, event } => {
            write!(out, "E {seq} {t_us} ")?;
            write_event(event, out)?;
        }
        Line::Ok { seq, info } => {
            write!(out, "A {seq} OK")?;
            if !info.is_empty() {
                write!(out, " {info}")?;
            }
        }
        Line::Err { seq, code, message } => write!(out, "A {seq} ERR {} {message}", code.word())?,
    }
    let crc = CRC16.checksum(out.as_bytes());
    writeln!(out, "*{crc:04X}")
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.word())
    }
}

/// A command as its line says it (`PLUG 0`), for messages.
impl core::fmt::Display for Command {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut s: String<MAX_LINE> = String::new();
        write_command(self, &mut s)?;
        f.write_str(&s)
    }
}

impl Misbehave {
    /// The word of the protocol and of scenario files (`kind = "..."`).
    #[must_use]
    pub const fn word(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::IgnoreReductions => "ignore-reductions",
            Self::OverdrawDa(_) => "overdraw",
            Self::SlowMs(_) => "slow",
            Self::DrawsInB => "draws-in-b",
            Self::NoDiode => "no-diode",
            Self::ShortedDiode => "shorted-diode",
            Self::ShortPilot => "short-pilot",
        }
    }
}

fn write_command(cmd: &Command, out: &mut String<MAX_LINE>) -> core::fmt::Result {
    match cmd {
        Command::Hello { version } => write!(out, "HELLO {version}"),
        Command::Reset => write!(out, "RESET"),
        Command::Plug(c) => write!(out, "PLUG {c}"),
        Command::Unplug(c) => write!(out, "UNPLUG {c}"),
        Command::Request(c) => write!(out, "REQUEST {c}"),
        Command::Stop(c) => write!(out, "STOP {c}"),
        Command::Pause(c) => write!(out, "PAUSE {c}"),
        Command::Query(c) => write!(out, "QUERY {c}"),
        Command::SelfTest(c) => write!(out, "SELFTEST {c}"),
        Command::Debug(c, d) => {
            write!(out, "DEBUG {c} ")?;
            d.write_text(out)
        }
        Command::Car(c, s) => match s {
            CarSetting::MaxDa(v) => write!(out, "CAR {c} max={v}"),
            CarSetting::Phases(v) => write!(out, "CAR {c} phases={v}"),
            CarSetting::CapacityWh(v) => write!(out, "CAR {c} capacity={v}"),
            CarSetting::SocPermille(v) => write!(out, "CAR {c} soc={v}"),
            CarSetting::KneePermille(v) => write!(out, "CAR {c} knee={v}"),
            CarSetting::TargetPermille(v) => write!(out, "CAR {c} target={v}"),
            CarSetting::DelayMs(v) => write!(out, "CAR {c} delay={v}"),
            CarSetting::DelayMaxMs(v) => write!(out, "CAR {c} delay_max={v}"),
            CarSetting::RampDaPerS(v) => write!(out, "CAR {c} ramp={v}"),
            CarSetting::Ventilation(v) => write!(out, "CAR {c} vent={}", u8::from(*v)),
            CarSetting::Rotation(v) => write!(out, "CAR {c} rot={v}"),
            CarSetting::Metered(v) => write!(out, "CAR {c} meter={}", u8::from(*v)),
            CarSetting::SupplyPhases(v) => write!(out, "CAR {c} supply={v}"),
            CarSetting::AuxDa(v) => write!(out, "CAR {c} aux={v}"),
        },
        Command::Misbehave(c, m) => match m {
            Misbehave::None => write!(out, "MISBEHAVE {c} none"),
            Misbehave::IgnoreReductions => write!(out, "MISBEHAVE {c} ignore-reductions"),
            Misbehave::OverdrawDa(v) => write!(out, "MISBEHAVE {c} overdraw {v}"),
            Misbehave::SlowMs(v) => write!(out, "MISBEHAVE {c} slow {v}"),
            Misbehave::DrawsInB => write!(out, "MISBEHAVE {c} draws-in-b"),
            Misbehave::NoDiode => write!(out, "MISBEHAVE {c} no-diode"),
            Misbehave::ShortedDiode => write!(out, "MISBEHAVE {c} shorted-diode"),
            Misbehave::ShortPilot => write!(out, "MISBEHAVE {c} short-pilot"),
        },
        Command::Load {
            name,
            phases,
            da,
            on,
        } => {
            let ph = match phases {
                1 => "L1",
                2 => "L2",
                4 => "L3",
                _ => "L123",
            };
            write!(
                out,
                "LOAD {name} {ph} {da} {}",
                if *on { "ON" } else { "OFF" }
            )
        }
        Command::Meter(m) => write!(
            out,
            "METER {}",
            match m {
                MeterFault::None => "ok",
                MeterFault::Silent => "silent",
                MeterFault::Garbage => "garbage",
                MeterFault::Stale => "stale",
                MeterFault::Implausible => "implausible",
            }
        ),
        Command::MeterNoise(da) => write!(out, "METER noise {da}"),
    }
}

fn write_event(e: &Event, out: &mut String<MAX_LINE>) -> core::fmt::Result {
    match e {
        Event::Duty {
            ch,
            duty_bp,
            freq_mhz,
        } => write!(out, "DUTY {ch} {duty_bp} {freq_mhz}"),
        Event::PwmOff { ch } => write!(out, "PWMOFF {ch}"),
        Event::Pilot {
            ch,
            state,
            high_mv,
            low_mv,
        } => {
            write!(
                out,
                "PILOT {ch} {} {high_mv} {low_mv}",
                state.map_or('?', PilotState::letter)
            )
        }
        Event::Contactor { ch, closed } => write!(out, "CONTACTOR {ch} {}", u8::from(*closed)),
        Event::Current { ch, da } => write!(out, "CURRENT {ch} {} {} {}", da[0], da[1], da[2]),
        Event::Meter { da } => write!(out, "METER {} {} {}", da[0], da[1], da[2]),
        Event::Heartbeat => write!(out, "HB"),
        Event::LostLines { total } => write!(out, "LOSS LINES {total}"),
        Event::LostCapture { ch, total } => write!(out, "LOSS CAPTURE {ch} {total}"),
        Event::Debug { ch, data } => {
            write!(out, "DEBUG {ch} ")?;
            data.write_text(out)
        }
        Event::Car {
            ch,
            plugged,
            soc_permille,
            draw_da,
        } => {
            write!(
                out,
                "CAR {ch} {} {soc_permille} {draw_da}",
                u8::from(*plugged)
            )
        }
    }
}

#[cfg(test)]
mod tests;
