//! Mains meter emulation: a Modbus RTU server that answers like an Eastron
//! SDM630 with the site's totals per phase.
//!
//! Owns the register image (through `rmodbus`'s storage and frame
//! processing) and the meter faults a test can inject: silence, garbage
//! frames, stale values and implausible (NaN) values, and seeded noise on
//! every reading it answers (a real meter's CTs are not exact). The
//! firmware's real meter client talks to it, byte for byte. Nothing here
//! panics or allocates.

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
    voltage_v: u16,
    /// Each answer's currents are off by up to this much per phase.
    noise_da: u16,
    /// Draws the noise (its own stream: garbage draws do not move it).
    noise_rng: SplitMix64,
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
            voltage_v: 230,
            noise_da: 0,
            noise_rng: SplitMix64::new(seed ^ 0x4E01_5E4E_015E_4E00),
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

    /// Perturb every reading answered from now on by a seeded amount,
    /// uniform in `-noise_da..=noise_da` per phase (0: exact readings).
    pub fn set_noise(&mut self, noise_da: u16) {
        self.noise_da = noise_da;
    }

    #[must_use]
    pub fn noise_da(&self) -> u16 {
        self.noise_da
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
        self.voltage_v = voltage_v;
        self.write_registers(currents_da);
    }

    /// The register image for these currents (NaN while implausible).
    fn write_registers(&mut self, currents_da: [i32; 3]) {
        let v = f32::from(self.voltage_v);
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
            // Noise on this reading only: the next is drawn afresh from
            // the true values.
            let noisy = self.noise_da > 0 && self.fault == MeterFault::None;
            if noisy {
                let n = i32::from(self.noise_da);
                let mut read = self.currents_da;
                for a in &mut read {
                    let d = self.noise_rng.below(u64::from(self.noise_da) * 2 + 1) as i32 - n;
                    *a = a.saturating_add(d);
                }
                self.write_registers(read);
            }
            let done = frame.process_read(&self.storage);
            if noisy {
                self.write_registers(self.currents_da);
            }
            done.ok()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The leader's request: input registers 0..18 of unit 1.
    fn read(m: &mut MeterEmulator) -> [f32; 3] {
        let req = [1u8, 4, 0, 0, 0, 18];
        let crc = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS).checksum(&req);
        let mut frame: Vec<u8, 8> = Vec::new();
        let _ = frame.extend_from_slice(&req);
        let _ = frame.extend_from_slice(&crc.to_le_bytes());
        let answer = m.handle_rx(&frame).expect("an answer");
        // Unit, function, byte count, then two registers per float.
        let f = |reg: usize| {
            let at = 3 + reg * 2;
            f32::from_bits(u32::from_be_bytes([
                answer[at],
                answer[at + 1],
                answer[at + 2],
                answer[at + 3],
            ]))
        };
        [f(6), f(8), f(10)]
    }

    #[test]
    fn noise_perturbs_each_reading_within_its_amount_seeded() {
        let site = [200, 0, -50];
        let mut m = MeterEmulator::new(1, 7);
        m.set_site(site, 230);
        assert_eq!(read(&mut m), [20.0, 0.0, 5.0], "exact without noise");
        m.set_noise(5);
        let readings: std::vec::Vec<[f32; 3]> = (0..200).map(|_| read(&mut m)).collect();
        for r in &readings {
            for (got, truth) in r.iter().zip(site) {
                let truth = (truth as f32 / 10.0).abs();
                assert!((got - truth).abs() <= 0.5 + 1e-4, "{r:?}");
            }
        }
        // It moves, both ways, and reaches its bounds.
        let l1: std::vec::Vec<f32> = readings.iter().map(|r| r[0]).collect();
        assert!(l1.iter().any(|&a| (a - 19.5).abs() < 1e-4), "{l1:?}");
        assert!(l1.iter().any(|&a| (a - 20.5).abs() < 1e-4), "{l1:?}");
        // The register image stays the truth between readings.
        assert_eq!(m.currents_da(), site);
        // Same seed, same readings; another seed, others.
        let again = |seed: u64| {
            let mut m = MeterEmulator::new(1, seed);
            m.set_site(site, 230);
            m.set_noise(5);
            (0..200).map(|_| read(&mut m)).collect::<std::vec::Vec<_>>()
        };
        assert_eq!(again(7), readings);
        assert_ne!(again(8), readings);
        // A stale meter repeats itself, noise or not.
        m.set_fault(MeterFault::Stale);
        let a = read(&mut m);
        assert_eq!(read(&mut m), a);
        m.set_fault(MeterFault::None);
        m.set_noise(0);
        assert_eq!(read(&mut m), [20.0, 0.0, 5.0]);
    }
}
