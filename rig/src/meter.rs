//! Mains meter emulation: a Modbus RTU server that answers like an Eastron
//! SDM630 with the site's totals per phase.
//!
//! Owns the register image (through `rmodbus`'s storage and frame
//! processing) and the meter faults a test can inject: silence, garbage
//! frames, stale values and implausible (NaN) values. The firmware's real
//! meter client talks to it, byte for byte. Nothing here panics or
//! allocates.

use heapless::Vec;
use rmodbus::server::context::ModbusContext;
use rmodbus::server::storage::ModbusStorage;
use rmodbus::server::ModbusFrame;
use rmodbus::ModbusProto;

use crate::rng::SplitMix64;

/// What the meter does wrong, for fault tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MeterFault {
    #[default]
    None,
    /// No answer at all.
    Silent,
    /// Answers of the right length with random content (bad CRC).
    Garbage,
    /// Answers, but the values stop changing.
    Stale,
    /// Answers with NaN currents.
    Implausible,
}

impl MeterFault {
    /// The word of the protocol and of scenario files (`mode = "..."`).
    #[must_use]
    pub const fn word(self) -> &'static str {
        match self {
            Self::None => "ok",
            Self::Silent => "silent",
            Self::Garbage => "garbage",
            Self::Stale => "stale",
            Self::Implausible => "implausible",
        }
    }
}

type Storage = ModbusStorage<8, 8, 64, 8>;

/// The emulated SDM630.
#[derive(Debug)]
pub struct MeterEmulator {
    unit_id: u8,
    storage: Storage,
    fault: MeterFault,
    rng: SplitMix64,
    rx: Vec<u8, 32>,
    currents_da: [i32; 3],
}

impl MeterEmulator {
    #[must_use]
    pub fn new(unit_id: u8, seed: u64) -> Self {
        let mut m = Self {
            unit_id,
            storage: Storage::new(),
            fault: MeterFault::None,
            rng: SplitMix64::new(seed),
            rx: Vec::new(),
            currents_da: [0; 3],
        };
        m.set_site([0; 3], 230);
        m
    }

    #[must_use]
    pub fn fault(&self) -> MeterFault {
        self.fault
    }

    pub fn set_fault(&mut self, fault: MeterFault) {
        self.fault = fault;
    }

    /// What the meter would report now, deciamps per phase (signed, import +).
    #[must_use]
    pub fn currents_da(&self) -> [i32; 3] {
        self.currents_da
    }

    /// The site's net current per phase (import positive), deciamps.
    pub fn set_site(&mut self, currents_da: [i32; 3], voltage_v: u16) {
        if self.fault == MeterFault::Stale {
            return;
        }
        self.currents_da = currents_da;
        let v = f32::from(voltage_v);
        let mut total = 0.0f32;
        for ph in 0..3 {
            let a = currents_da[ph] as f32 / 10.0;
            let amps = if self.fault == MeterFault::Implausible {
                f32::NAN
            } else {
                a.abs()
            };
            let reg = |base: u16| base + 2 * ph as u16;
            let _ = self.storage.set_inputs_from_f32(reg(0x0000), v);
            let _ = self.storage.set_inputs_from_f32(reg(0x0006), amps);
            let _ = self.storage.set_inputs_from_f32(reg(0x000C), v * a);
            total += v * a;
        }
        let _ = self.storage.set_inputs_from_f32(0x0034, total);
    }

    /// Bytes from the RS-485 line; returns the answer once a request is complete.
    pub fn handle_rx(&mut self, bytes: &[u8]) -> Option<Vec<u8, 256>> {
        let mut answer = None;
        for &b in bytes {
            if self.rx.push(b).is_err() {
                self.rx.clear();
            }
            // Function 0x04 requests are 8 bytes long.
            if self.rx.len() >= 8 {
                answer = self.answer();
                self.rx.clear();
            }
        }
        answer
    }

    fn answer(&mut self) -> Option<Vec<u8, 256>> {
        if self.fault == MeterFault::Silent {
            return None;
        }
        let mut response: Vec<u8, 256> = Vec::new();
        let request = self.rx.clone();
        let mut frame = ModbusFrame::new(self.unit_id, &request, ModbusProto::Rtu, &mut response);
        frame.parse().ok()?;
        if frame.processing_required {
            if !frame.readonly {
                return None; // a meter does not take writes
            }
            frame.process_read(&self.storage).ok()?;
        }
        if !frame.response_required {
            return None;
        }
        frame.finalize_response().ok()?;
        if self.fault == MeterFault::Garbage {
            for b in response.iter_mut() {
                *b = (self.rng.next_u64() & 0xFF) as u8;
            }
        }
        Some(response)
    }
}
