//! The sharing link's wire format: authenticated frames on a shared byte
//! link (RS-485 on a UART).
//!
//! Owns framing, the CRC, the MAC and message encoding. Does not own who
//! talks when, or replay windows: [`super::leader`] and [`super::follower`]
//! keep those, since they depend on who the peer is.
//!
//! ```text
//! 0     1        2    3      4       5     6..10    10..14  14    15..15+len  +8     +2
//! SOF   version  len  group  sender  dest  boot id  seq     kind  payload     MAC    CRC-16
//! 0xA5  1                                  u32 BE   u32 BE                    HMAC-SHA256/64
//! ```
//! The MAC covers version through payload; the CRC (CRC-16/MODBUS) covers
//! everything after SOF, so line noise is told apart from forgery. A receiver
//! hunts for SOF, and after a bad frame resumes at the next SOF byte.
//!
//! Nothing here panics or allocates.

use crc::{Crc, CRC_16_MODBUS};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SOF: u8 = 0xA5;
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 15;
pub const MAC_LEN: usize = 8;
pub const CRC_LEN: usize = 2;
pub const MAX_PAYLOAD: usize = 32;
pub const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD + MAC_LEN + CRC_LEN;

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_MODBUS);

/// A 256-bit group key, shared by every station of the group.
pub type Key = [u8; 32];

/// Header fields of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub group: u8,
    pub sender: u8,
    pub dest: u8,
    /// Changes at every boot of the sender (from its RNG or a boot counter).
    pub boot: u32,
    /// Increases with every frame the sender sends in this boot.
    pub seq: u32,
}

/// What a frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// Follower -> leader: let me in. `nonce` is fresh for this attempt.
    Join { nonce: u64 },
    /// Leader -> follower: prove you hold the key by echoing my nonce.
    Challenge { echo: u64, nonce: u64 },
    /// Follower -> leader: the echo.
    Confirm { echo: u64 },
    /// Leader -> follower: you may offer up to this much. Also a poll.
    Grant { grant_da: u16 },
    /// Follower -> leader: what my charging point does, in answer to a grant.
    Status(PeerStatus),
}

/// A follower's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerStatus {
    /// Pilot state letter as a byte (b'A'..=b'F').
    pub state: u8,
    /// The car asks for energy and nothing stops it.
    pub wants: bool,
    pub contactor: bool,
    pub fault: bool,
    /// What the PWM offers now.
    pub offered_da: u16,
    /// Measured current per phase.
    pub measured_da: [u16; 3],
    /// Sequence number of the grant this status answers (the leader's frame).
    pub grant_seq: u32,
    /// The grant the follower holds (what it was last told).
    pub granted_da: u16,
}

impl Message {
    fn kind(&self) -> u8 {
        match self {
            Self::Join { .. } => 1,
            Self::Challenge { .. } => 2,
            Self::Confirm { .. } => 3,
            Self::Grant { .. } => 4,
            Self::Status(_) => 5,
        }
    }

    fn encode_payload(&self, out: &mut [u8; MAX_PAYLOAD]) -> usize {
        match *self {
            Self::Join { nonce } => {
                out[..8].copy_from_slice(&nonce.to_be_bytes());
                8
            }
            Self::Challenge { echo, nonce } => {
                out[..8].copy_from_slice(&echo.to_be_bytes());
                out[8..16].copy_from_slice(&nonce.to_be_bytes());
                16
            }
            Self::Confirm { echo } => {
                out[..8].copy_from_slice(&echo.to_be_bytes());
                8
            }
            Self::Grant { grant_da } => {
                out[..2].copy_from_slice(&grant_da.to_be_bytes());
                2
            }
            Self::Status(s) => {
                out[0] = s.state;
                out[1] = u8::from(s.wants) | u8::from(s.contactor) << 1 | u8::from(s.fault) << 2;
                out[2..4].copy_from_slice(&s.offered_da.to_be_bytes());
                for (i, m) in s.measured_da.iter().enumerate() {
                    out[4 + 2 * i..6 + 2 * i].copy_from_slice(&m.to_be_bytes());
                }
                out[10..14].copy_from_slice(&s.grant_seq.to_be_bytes());
                out[14..16].copy_from_slice(&s.granted_da.to_be_bytes());
                16
            }
        }
    }

    fn decode(kind: u8, p: &[u8]) -> Result<Self, FrameError> {
        let u64_at = |i: usize| -> Result<u64, FrameError> {
            let b: [u8; 8] = p
                .get(i..i + 8)
                .and_then(|s| s.try_into().ok())
                .ok_or(FrameError::BadPayload { kind })?;
            Ok(u64::from_be_bytes(b))
        };
        let u16_at = |i: usize| -> Result<u16, FrameError> {
            let b: [u8; 2] = p
                .get(i..i + 2)
                .and_then(|s| s.try_into().ok())
                .ok_or(FrameError::BadPayload { kind })?;
            Ok(u16::from_be_bytes(b))
        };
        let want = |n: usize| {
            if p.len() == n {
                Ok(())
            } else {
                Err(FrameError::BadPayload { kind })
            }
        };
        Ok(match kind {
            1 => {
                want(8)?;
                Self::Join { nonce: u64_at(0)? }
            }
            2 => {
                want(16)?;
                Self::Challenge {
                    echo: u64_at(0)?,
                    nonce: u64_at(8)?,
                }
            }
            3 => {
                want(8)?;
                Self::Confirm { echo: u64_at(0)? }
            }
            4 => {
                want(2)?;
                Self::Grant {
                    grant_da: u16_at(0)?,
                }
            }
            5 => {
                want(16)?;
                let seq: [u8; 4] = p
                    .get(10..14)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(FrameError::BadPayload { kind })?;
                Self::Status(PeerStatus {
                    state: p[0],
                    wants: p[1] & 1 != 0,
                    contactor: p[1] & 2 != 0,
                    fault: p[1] & 4 != 0,
                    offered_da: u16_at(2)?,
                    measured_da: [u16_at(4)?, u16_at(6)?, u16_at(8)?],
                    grant_seq: u32::from_be_bytes(seq),
                    granted_da: u16_at(14)?,
                })
            }
            _ => return Err(FrameError::UnknownKind { kind }),
        })
    }
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// CRC mismatch: line noise.
    Crc,
    /// MAC mismatch: not from a key holder (forged, or another group).
    Mac,
    UnsupportedVersion {
        version: u8,
    },
    UnknownKind {
        kind: u8,
    },
    BadPayload {
        kind: u8,
    },
    TooLong {
        len: u8,
    },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Crc => f.write_str("frame CRC mismatch"),
            Self::Mac => f.write_str("frame MAC mismatch (not from this group)"),
            Self::UnsupportedVersion { version } => {
                write!(f, "frame version {version} is not {VERSION}")
            }
            Self::UnknownKind { kind } => write!(f, "unknown message kind {kind}"),
            Self::BadPayload { kind } => write!(f, "bad payload for message kind {kind}"),
            Self::TooLong { len } => write!(f, "payload length {len} exceeds {MAX_PAYLOAD}"),
        }
    }
}

impl core::error::Error for FrameError {}

fn mac(key: &Key, data: &[u8]) -> [u8; MAC_LEN] {
    let mut out = [0u8; MAC_LEN];
    // HMAC accepts keys of any length, so this cannot fail.
    if let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) {
        m.update(data);
        let tag = m.finalize().into_bytes();
        out.copy_from_slice(&tag[..MAC_LEN]);
    }
    out
}

/// Encode a frame into `buf`; returns its length.
#[must_use]
pub fn encode(key: &Key, header: &Header, msg: &Message, buf: &mut [u8; MAX_FRAME]) -> usize {
    let mut payload = [0u8; MAX_PAYLOAD];
    let plen = msg.encode_payload(&mut payload);
    buf[0] = SOF;
    buf[1] = VERSION;
    buf[2] = plen as u8;
    buf[3] = header.group;
    buf[4] = header.sender;
    buf[5] = header.dest;
    buf[6..10].copy_from_slice(&header.boot.to_be_bytes());
    buf[10..14].copy_from_slice(&header.seq.to_be_bytes());
    buf[14] = msg.kind();
    buf[HEADER_LEN..HEADER_LEN + plen].copy_from_slice(&payload[..plen]);
    let body_end = HEADER_LEN + plen;
    let tag = mac(key, &buf[1..body_end]);
    buf[body_end..body_end + MAC_LEN].copy_from_slice(&tag);
    let crc = CRC16.checksum(&buf[1..body_end + MAC_LEN]);
    buf[body_end + MAC_LEN..body_end + MAC_LEN + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
    body_end + MAC_LEN + CRC_LEN
}

/// Check and decode one complete frame (starting at SOF).
pub fn decode(key: &Key, frame: &[u8]) -> Result<(Header, Message), FrameError> {
    let plen = usize::from(*frame.get(2).ok_or(FrameError::Crc)?);
    let body_end = HEADER_LEN + plen;
    let total = body_end + MAC_LEN + CRC_LEN;
    if frame.len() != total {
        return Err(FrameError::Crc);
    }
    let crc = u16::from_le_bytes([frame[total - 2], frame[total - 1]]);
    if CRC16.checksum(&frame[1..total - 2]) != crc {
        return Err(FrameError::Crc);
    }
    if frame[1] != VERSION {
        return Err(FrameError::UnsupportedVersion { version: frame[1] });
    }
    // Constant-time comparison is not needed against a bus attacker who
    // cannot time the receiver, but costs nothing.
    let tag = mac(key, &frame[1..body_end]);
    let diff = tag
        .iter()
        .zip(&frame[body_end..body_end + MAC_LEN])
        .fold(0u8, |d, (a, b)| d | (a ^ b));
    if diff != 0 {
        return Err(FrameError::Mac);
    }
    let be32 = |i: usize| u32::from_be_bytes([frame[i], frame[i + 1], frame[i + 2], frame[i + 3]]);
    let header = Header {
        group: frame[3],
        sender: frame[4],
        dest: frame[5],
        boot: be32(6),
        seq: be32(10),
    };
    let msg = Message::decode(frame[14], &frame[HEADER_LEN..body_end])?;
    Ok((header, msg))
}

/// Cuts a byte stream into frames.
#[derive(Debug, Clone, Default)]
pub struct Deframer {
    buf: heapless::Vec<u8, MAX_FRAME>,
}

/// What the deframer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deframed {
    Frame(Header, Message),
    Error(FrameError),
}

impl Deframer {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one byte; returns a frame or an error when one completes.
    pub fn push(&mut self, key: &Key, byte: u8) -> Option<Deframed> {
        if self.buf.is_empty() && byte != SOF {
            return None; // hunting for SOF
        }
        if self.buf.push(byte).is_err() {
            self.resync();
            return None;
        }
        if self.buf.len() < 3 {
            return None;
        }
        let plen = usize::from(self.buf[2]);
        if plen > MAX_PAYLOAD {
            self.resync();
            return Some(Deframed::Error(FrameError::TooLong {
                len: self.buf.get(2).copied().unwrap_or(0),
            }));
        }
        if self.buf.len() < HEADER_LEN + plen + MAC_LEN + CRC_LEN {
            return None;
        }
        match decode(key, &self.buf) {
            Ok((h, m)) => {
                self.buf.clear();
                Some(Deframed::Frame(h, m))
            }
            Err(e) => {
                self.resync();
                Some(Deframed::Error(e))
            }
        }
    }

    /// Drop the current SOF and continue from the next SOF in the buffer.
    fn resync(&mut self) {
        let next = self
            .buf
            .iter()
            .skip(1)
            .position(|&b| b == SOF)
            .map(|p| p + 1);
        let rest: heapless::Vec<u8, MAX_FRAME> = match next {
            Some(p) => self.buf.iter().skip(p).copied().collect(),
            None => heapless::Vec::new(),
        };
        self.buf = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: Key = [7; 32];
    const H: Header = Header {
        group: 1,
        sender: 2,
        dest: 0,
        boot: 0xDEAD_BEEF,
        seq: 42,
    };

    fn all_messages() -> [Message; 5] {
        [
            Message::Join { nonce: 1 },
            Message::Challenge { echo: 2, nonce: 3 },
            Message::Confirm { echo: 4 },
            Message::Grant { grant_da: 320 },
            Message::Status(PeerStatus {
                state: b'C',
                wants: true,
                contactor: true,
                fault: false,
                offered_da: 160,
                measured_da: [159, 0, 0],
                grant_seq: 9,
                granted_da: 160,
            }),
        ]
    }

    #[test]
    fn round_trip_every_message() {
        for m in all_messages() {
            let mut buf = [0; MAX_FRAME];
            let n = encode(&KEY, &H, &m, &mut buf);
            assert_eq!(decode(&KEY, &buf[..n]), Ok((H, m)));
        }
    }

    #[test]
    fn a_flipped_bit_is_a_crc_error_and_a_forged_frame_a_mac_error() {
        let mut buf = [0; MAX_FRAME];
        let n = encode(&KEY, &H, &Message::Grant { grant_da: 320 }, &mut buf);
        let mut noisy = buf;
        noisy[16] ^= 0x10;
        assert_eq!(decode(&KEY, &noisy[..n]), Err(FrameError::Crc));
        // Someone without the key builds a valid-CRC frame.
        let mut forged = [0; MAX_FRAME];
        let n2 = encode(&[9; 32], &H, &Message::Grant { grant_da: 800 }, &mut forged);
        assert_eq!(decode(&KEY, &forged[..n2]), Err(FrameError::Mac));
    }

    #[test]
    fn deframer_finds_frames_in_noise() {
        let mut d = Deframer::new();
        let mut stream = heapless::Vec::<u8, 512>::new();
        stream.extend_from_slice(&[0x00, 0xA5, 0x13, 0xFF]).unwrap();
        let mut buf = [0; MAX_FRAME];
        for m in all_messages() {
            let n = encode(&KEY, &H, &m, &mut buf);
            stream.extend_from_slice(&buf[..n]).unwrap();
            stream.push(0x55).unwrap();
        }
        let frames: Vec<_> = stream.iter().filter_map(|&b| d.push(&KEY, b)).collect();
        let good: Vec<_> = frames
            .iter()
            .filter_map(|f| {
                if let Deframed::Frame(_, m) = f {
                    Some(*m)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(good, all_messages().to_vec());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_and_valid_frames_still_come_through(noise in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut d = Deframer::new();
            for &b in &noise {
                let _ = d.push(&KEY, b);
            }
            // Whatever the noise left behind, after a quiet gap long enough
            // to flush every partial frame it started, a frame decodes.
            for _ in 0..MAX_FRAME * MAX_FRAME {
                let _ = d.push(&KEY, 0);
            }
            let mut buf = [0; MAX_FRAME];
            let n = encode(&KEY, &H, &Message::Grant { grant_da: 77 }, &mut buf);
            let got: Vec<_> = buf[..n].iter().filter_map(|&b| d.push(&KEY, b)).collect();
            prop_assert_eq!(got.last().copied(), Some(Deframed::Frame(H, Message::Grant { grant_da: 77 })));
        }
    }
}
