//! The leader's mains meter: a Modbus RTU client for an Eastron SDM630.
//!
//! Owns the request schedule, response parsing (through `rmodbus`), timeouts
//! and plausibility. Does not decide what a reading means for allocation:
//! the leader does. Register map (input registers, function 0x04, IEEE-754
//! floats in two registers, high word first):
//!
//! | register | value |
//! |---|---|
//! | 0x0000 / 0x0002 / 0x0004 | phase 1/2/3 voltage, V |
//! | 0x0006 / 0x0008 / 0x000A | phase 1/2/3 current, A |
//! | 0x000C / 0x000E / 0x0010 | phase 1/2/3 active power, W (signed: import +) |
//! | 0x0034 | total system power, W |
//!
//! Currents are magnitudes on the meter; the sign of the phase power gives
//! the direction, so an exporting phase reads as negative current here.

use heapless::Vec;
use rmodbus::client::ModbusRequest;
use rmodbus::ModbusProto;

use crate::time::{ms, secs, Duration, Instant};

/// First block: voltages, currents, powers (18 registers from 0x0000).
pub const REG_PHASE_BLOCK: u16 = 0x0000;
pub const PHASE_BLOCK_LEN: u16 = 18;
/// Total system power (2 registers).
pub const REG_TOTAL_POWER: u16 = 0x0034;

/// Client settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterConfig {
    pub unit_id: u8,
    /// A reading is requested this often.
    pub period: Duration,
    /// A request not answered within this has failed.
    pub response_timeout: Duration,
    /// Without a good reading for this long, the meter counts as lost.
    pub stale_after: Duration,
    /// Currents above this (deciamps) are implausible.
    pub max_plausible_da: u32,
}

impl Default for MeterConfig {
    fn default() -> Self {
        Self {
            unit_id: 1,
            period: secs(1),
            response_timeout: ms(500),
            stale_after: secs(5),
            max_plausible_da: 10_000,
        }
    }
}

/// One good reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MainsReading {
    /// Per phase, deciamps; negative when the phase exports.
    pub current_da: [i32; 3],
    /// Per phase, decivolts.
    pub voltage_dv: [u16; 3],
    pub total_power_w: i32,
    pub at: Instant,
}

/// Why a response was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterError {
    /// No answer within the timeout.
    Timeout,
    /// CRC, framing or a Modbus exception.
    BadFrame,
    /// NaN, infinite, or out of range.
    Implausible,
}

impl core::fmt::Display for MeterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Timeout => f.write_str("meter did not answer in time"),
            Self::BadFrame => f.write_str("meter answer was garbled or an exception"),
            Self::Implausible => f.write_str("meter reading implausible (NaN or out of range)"),
        }
    }
}

impl core::error::Error for MeterError {}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Idle { next_at: Instant },
    AwaitPhases { sent_at: Instant },
    AwaitTotal { sent_at: Instant, partial: Partial },
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Partial {
    current_da: [i32; 3],
    voltage_dv: [u16; 3],
}

/// Modbus RTU client, sans-IO.
#[derive(Debug)]
pub struct MeterClient {
    config: MeterConfig,
    step: Step,
    request: ModbusRequest,
    rx: Vec<u8, 64>,
    tx: Option<Vec<u8, 16>>,
    last_good: Option<MainsReading>,
    last_error: Option<MeterError>,
    errors: u32,
    /// When the current round started; rounds start every `period` from
    /// the first, so a caller can phase-lock them to its own cycle.
    round_at: Instant,
}

impl MeterClient {
    /// A client whose first request goes out at `first`.
    #[must_use]
    pub fn new(config: MeterConfig, first: Instant) -> Self {
        Self {
            config,
            round_at: first,
            step: Step::Idle { next_at: first },
            request: ModbusRequest::new(config.unit_id, ModbusProto::Rtu),
            rx: Vec::new(),
            tx: None,
            last_good: None,
            last_error: None,
            errors: 0,
        }
    }

    /// The latest good reading, if it is not stale.
    #[must_use]
    pub fn reading(&self, now: Instant) -> Option<MainsReading> {
        self.last_good
            .filter(|r| now < r.at + self.config.stale_after)
    }

    #[must_use]
    pub fn last_error(&self) -> Option<MeterError> {
        self.last_error
    }

    #[must_use]
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// Bytes to put on the meter's line.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8, 16>> {
        self.tx.take()
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(match self.step {
            Step::Idle { next_at } => next_at,
            Step::AwaitPhases { sent_at } | Step::AwaitTotal { sent_at, .. } => {
                sent_at + self.config.response_timeout
            }
        })
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.step {
            Step::Idle { next_at } if now >= next_at => self.send_phase_request(now),
            Step::AwaitPhases { sent_at } | Step::AwaitTotal { sent_at, .. }
                if now >= sent_at + self.config.response_timeout =>
            {
                self.fail(now, MeterError::Timeout);
            }
            _ => {}
        }
    }

    /// Bytes received from the meter's line.
    pub fn handle_rx(&mut self, now: Instant, bytes: &[u8]) {
        for &b in bytes {
            if matches!(self.step, Step::Idle { .. }) {
                continue; // nobody asked: noise
            }
            if self.rx.push(b).is_err() {
                self.fail(now, MeterError::BadFrame);
                continue;
            }
            if let Some(expected) = self.expected_len() {
                if self.rx.len() >= expected {
                    self.complete(now);
                }
            }
        }
    }

    fn expected_len(&self) -> Option<usize> {
        if self.rx.len() < 3 {
            return None;
        }
        if self.rx[1] & 0x80 != 0 {
            return Some(5); // exception: addr, func, code, crc
        }
        Some(3 + usize::from(self.rx[2]) + 2)
    }

    fn send_phase_request(&mut self, now: Instant) {
        let mut buf: Vec<u8, 16> = Vec::new();
        self.rx.clear();
        if self
            .request
            .generate_get_inputs(REG_PHASE_BLOCK, PHASE_BLOCK_LEN, &mut buf)
            .is_ok()
        {
            self.tx = Some(buf);
            self.round_at = now;
            self.step = Step::AwaitPhases { sent_at: now };
        } else {
            self.fail(now, MeterError::BadFrame);
        }
    }

    fn fail(&mut self, now: Instant, e: MeterError) {
        self.errors = self.errors.saturating_add(1);
        self.last_error = Some(e);
        self.rx.clear();
        self.step = Step::Idle {
            next_at: self.next_round(now),
        };
    }

    fn next_round(&self, now: Instant) -> Instant {
        let next = self.round_at + self.config.period;
        if next > now {
            next
        } else {
            now
        }
    }

    fn complete(&mut self, now: Instant) {
        let mut floats: Vec<f32, 16> = Vec::new();
        let parsed = self.request.parse_f32_be(&self.rx, &mut floats);
        self.rx.clear();
        if parsed.is_err() {
            return self.fail(now, MeterError::BadFrame);
        }
        match self.step {
            Step::AwaitPhases { .. } => {
                let Some(partial) = self.phases(&floats) else {
                    return self.fail(now, MeterError::Implausible);
                };
                let mut buf: Vec<u8, 16> = Vec::new();
                if self
                    .request
                    .generate_get_inputs(REG_TOTAL_POWER, 2, &mut buf)
                    .is_err()
                {
                    return self.fail(now, MeterError::BadFrame);
                }
                self.tx = Some(buf);
                self.step = Step::AwaitTotal {
                    sent_at: now,
                    partial,
                };
            }
            Step::AwaitTotal { partial, .. } => {
                let total = floats.first().copied().unwrap_or(f32::NAN);
                if !total.is_finite() || total.abs() > 1.0e7 {
                    return self.fail(now, MeterError::Implausible);
                }
                self.last_good = Some(MainsReading {
                    current_da: partial.current_da,
                    voltage_dv: partial.voltage_dv,
                    total_power_w: total as i32,
                    at: now,
                });
                self.last_error = None;
                self.step = Step::Idle {
                    next_at: self.next_round(now),
                };
            }
            Step::Idle { .. } => {}
        }
    }

    fn phases(&self, f: &[f32]) -> Option<Partial> {
        if f.len() < 9 || f.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let mut p = Partial {
            current_da: [0; 3],
            voltage_dv: [0; 3],
        };
        for i in 0..3 {
            let (v, a, w) = (f[i], f[3 + i], f[6 + i]);
            if !(0.0..=500.0).contains(&v)
                || a < 0.0
                || a * 10.0 > self.config.max_plausible_da as f32
            {
                return None;
            }
            let da = (a * 10.0) as i32;
            p.current_da[i] = if w < 0.0 { -da } else { da };
            p.voltage_dv[i] = (v * 10.0) as u16;
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::us;

    /// Build an SDM630-style answer with rmodbus's own CRC.
    fn answer(unit: u8, floats: &[f32]) -> std::vec::Vec<u8> {
        let mut v = vec![unit, 0x04, (floats.len() * 4) as u8];
        for f in floats {
            v.extend_from_slice(&f.to_be_bytes());
        }
        let crc = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS).checksum(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    #[test]
    fn reads_phases_then_total_and_signs_export() {
        let mut m = MeterClient::new(MeterConfig::default(), us(0));
        m.handle_timeout(us(0));
        let req = m.poll_transmit().expect("request");
        assert_eq!(&req[..6], &[1, 0x04, 0x00, 0x00, 0x00, 18]);
        m.handle_rx(
            us(10_000),
            &answer(
                1,
                &[230.0, 231.0, 229.0, 10.0, 20.5, 3.0, 2300.0, 4700.0, -690.0],
            ),
        );
        let req2 = m.poll_transmit().expect("second request");
        assert_eq!(&req2[..6], &[1, 0x04, 0x00, 0x34, 0x00, 2]);
        m.handle_rx(us(20_000), &answer(1, &[6310.0]));
        let r = m.reading(us(30_000)).expect("reading");
        assert_eq!(r.current_da, [100, 205, -30]);
        assert_eq!(r.voltage_dv, [2300, 2310, 2290]);
        assert_eq!(r.total_power_w, 6310);
        // Stale after 5 s without another.
        assert!(m.reading(us(20_000) + secs(5)).is_none());
    }

    #[test]
    fn garbage_nan_and_silence_are_errors_not_readings() {
        let mut m = MeterClient::new(MeterConfig::default(), us(0));
        m.handle_timeout(us(0));
        let _ = m.poll_transmit();
        let mut bad = answer(1, &[230.0; 9]);
        bad[5] ^= 0xFF;
        m.handle_rx(us(1), &bad);
        assert_eq!(m.last_error(), Some(MeterError::BadFrame));
        m.handle_timeout(secs(1).into_instant());
        let _ = m.poll_transmit();
        m.handle_rx(
            secs(1).into_instant(),
            &answer(1, &[230.0, 230.0, 230.0, f32::NAN, 1.0, 1.0, 1.0, 1.0, 1.0]),
        );
        assert_eq!(m.last_error(), Some(MeterError::Implausible));
        m.handle_timeout(secs(2).into_instant());
        let _ = m.poll_transmit();
        m.handle_timeout(secs(2).into_instant() + ms(500));
        assert_eq!(m.last_error(), Some(MeterError::Timeout));
        assert!(m.reading(secs(3).into_instant()).is_none());
        assert_eq!(m.errors(), 3);
    }

    trait IntoInstant {
        fn into_instant(self) -> Instant;
    }
    impl IntoInstant for Duration {
        fn into_instant(self) -> Instant {
            us(self.ticks())
        }
    }
}
