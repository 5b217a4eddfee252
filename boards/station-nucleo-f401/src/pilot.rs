//! The pilot and the current sensors on the NUCLEO-F401RE.
//!
//! Owns the duty the pilot PWM runs at (so the ADC knows where the
//! plateaus are), ADC1 and its four inputs (no interrupt touches them), and the conversion from ADC
//! counts to pilot millivolts and phase deciamps (the front end of
//! `docs/station-board.md`). The pilot is sampled in sync with the PWM:
//! inside the high plateau, then inside the low one, each conversion
//! checked to have started and ended within its plateau by TIM1's counter.

use core::convert::Infallible;
use core::sync::atomic::{AtomicU16, Ordering};

use embedded_hal::pwm::{self, SetDutyCycle};
use firmware::hal::{CurrentSensor, PilotAdc};
use firmware::pilot::PilotLevels;
use stm32f4xx_hal::adc::{config::SampleTime, Adc};
use stm32f4xx_hal::gpio::{Analog, Pin};
use stm32f4xx_hal::pac;

/// TIM1 counts 10 MHz over a 1 ms period: 10,000 counts, one per 0.01 %.
const PERIOD: u16 = 10_000;
/// Counts kept clear of each edge (10 us: the pilot settles through its
/// 1 kOhm and the cable's capacitance).
const EDGE_MARGIN: u16 = 100;
/// The pilot's front end maps -12 V..+12 V onto 0..3.3 V (12-bit ADC).
const PILOT_SPAN_MV: i32 = 24_000;
const ADC_FULL: i32 = 4_095;
/// Each current transducer gives 0..3.3 V for 0..80 A (DC, RMS-converting).
const AMPS_FULL_DA: u32 = 800;

/// The duty the pilot runs at, in counts of [`PERIOD`].
static DUTY: AtomicU16 = AtomicU16::new(PERIOD);
/// The phase currents of the last sample, deciamps.
static CURRENTS_DA: [AtomicU16; 3] = [AtomicU16::new(0), AtomicU16::new(0), AtomicU16::new(0)];

type AmpPins = (
    Pin<'A', 1, Analog>,
    Pin<'A', 4, Analog>,
    Pin<'B', 0, Analog>,
);

/// The pilot PWM, remembering its duty for the sampler.
pub struct PilotPwm<P> {
    pwm: P,
}

impl<P: SetDutyCycle> PilotPwm<P> {
    pub fn new(pwm: P) -> Self {
        Self { pwm }
    }
}

impl<P: SetDutyCycle> pwm::ErrorType for PilotPwm<P> {
    type Error = P::Error;
}

impl<P: SetDutyCycle> SetDutyCycle for PilotPwm<P> {
    fn max_duty_cycle(&self) -> u16 {
        self.pwm.max_duty_cycle()
    }

    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), P::Error> {
        self.pwm.set_duty_cycle(duty)?;
        DUTY.store(duty, Ordering::Release);
        Ok(())
    }
}

/// TIM1's counter: where in the PWM period the pilot is.
#[allow(unsafe_code)]
fn tim1_count() -> u16 {
    // SAFETY: a read of TIM1_CNT, a read-only use of a register that the
    // PWM driver owns for writing; reading it changes nothing.
    let tim1 = unsafe { &*pac::TIM1::ptr() };
    tim1.cnt().read().bits() as u16
}

/// Why a pilot sample was not taken.
#[derive(Debug, Clone, Copy)]
pub enum SampleError {
    /// No conversion fitted inside a plateau within two PWM periods.
    NotInPlateau,
}

fn to_mv(counts: u16) -> i32 {
    i32::from(counts) * PILOT_SPAN_MV / ADC_FULL - PILOT_SPAN_MV / 2
}

fn to_da(counts: u16) -> u16 {
    u16::try_from(u32::from(counts) * AMPS_FULL_DA / ADC_FULL as u32).unwrap_or(u16::MAX)
}

/// One conversion of the pilot that starts and ends within `[from, to)` of
/// the PWM period; gives up after two periods (counted by the counter's
/// wraps, and by a try limit should TIM1 ever stop).
fn convert_within(
    adc: &mut Adc<pac::ADC1>,
    pin: &Pin<'A', 0, Analog>,
    from: u16,
    to: u16,
) -> Option<u16> {
    let (mut last, mut wraps) = (tim1_count(), 0u8);
    for _ in 0..200_000u32 {
        let before = tim1_count();
        if before < last {
            wraps += 1;
            if wraps > 2 {
                return None;
            }
        }
        last = before;
        if before < from || before >= to {
            continue;
        }
        let v = adc.convert(pin, SampleTime::Cycles_28);
        let after = tim1_count();
        last = after;
        if after >= before && after < to {
            return Some(v);
        }
    }
    None
}

/// ADC1 with the pilot and the current inputs: the pilot's high and low
/// plateaus in sync with the PWM, then the three currents (which
/// [`Currents`] hands to the station).
pub struct PilotSampler {
    adc: Adc<pac::ADC1>,
    pilot: Pin<'A', 0, Analog>,
    amps: AmpPins,
}

impl PilotSampler {
    pub fn new(adc: Adc<pac::ADC1>, pilot: Pin<'A', 0, Analog>, amps: AmpPins) -> Self {
        Self { adc, pilot, amps }
    }
}

impl PilotAdc for PilotSampler {
    type Error = SampleError;

    fn sample_pilot(&mut self) -> Result<PilotLevels, SampleError> {
        let (adc, pin) = (&mut self.adc, &self.pilot);
        let (l1, l2, l3) = &self.amps;
        for (slot, counts) in CURRENTS_DA.iter().zip([
            adc.convert(l1, SampleTime::Cycles_84),
            adc.convert(l2, SampleTime::Cycles_84),
            adc.convert(l3, SampleTime::Cycles_84),
        ]) {
            slot.store(to_da(counts), Ordering::Release);
        }
        let duty = DUTY.load(Ordering::Acquire);
        if duty == 0 || duty >= PERIOD {
            // Steady: one level, sampled anywhere.
            let mv = to_mv(adc.convert(pin, SampleTime::Cycles_28));
            return Ok(PilotLevels {
                high_mv: mv,
                low_mv: mv,
            });
        }
        let high = convert_within(adc, pin, EDGE_MARGIN, duty.saturating_sub(EDGE_MARGIN))
            .ok_or(SampleError::NotInPlateau)?;
        let low = convert_within(
            adc,
            pin,
            duty.saturating_add(EDGE_MARGIN),
            PERIOD - EDGE_MARGIN,
        )
        .ok_or(SampleError::NotInPlateau)?;
        Ok(PilotLevels {
            high_mv: to_mv(high),
            low_mv: to_mv(low),
        })
    }
}

/// The three phase currents, as sampled with the pilot.
pub struct Currents;

impl CurrentSensor for Currents {
    type Error = Infallible;

    fn read_current(&mut self) -> Result<[u16; 3], Infallible> {
        Ok(CURRENTS_DA.each_ref().map(|a| a.load(Ordering::Acquire)))
    }
}
