//! The hardware boundary of a station: embedded-hal 1.0 pins plus two small
//! traits for what embedded-hal has no trait for (ADC-sampled pilot levels and
//! the current sensor).
//!
//! Owns the mapping from [`Event`]s to pins: PWM duty through
//! `SetDutyCycle::set_duty_cycle_fraction` (0.01 % resolution), steady +12 V as
//! fully on, -12 V (state F) as fully off, the contactor coil as an
//! `OutputPin`, relay feedback as an `InputPin`. Does not decide anything:
//! that is [`ChargePoint`]'s job. A station board implements the two traits
//! over its ADC; the virtual bench implements them over its circuit model.

use embedded_hal::digital::{self, InputPin, OutputPin};
use embedded_hal::pwm::{self, SetDutyCycle};

use crate::charge_point::{ChargePoint, Event, PilotOutput};
use crate::pilot::PilotLevels;
use crate::time::Instant;

/// Reads the pilot's high and low plateaus (the board samples synchronously
/// with the PWM edges).
pub trait PilotAdc {
    type Error: core::fmt::Debug;
    fn sample_pilot(&mut self) -> Result<PilotLevels, Self::Error>;
}

/// Reads the current per phase, in deciamps.
pub trait CurrentSensor {
    type Error: core::fmt::Debug;
    fn read_current(&mut self) -> Result<[u16; 3], Self::Error>;
}

/// Which part of the board failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalError {
    Pwm(pwm::ErrorKind),
    Coil(digital::ErrorKind),
    RelaySense(digital::ErrorKind),
    Adc,
    CurrentSensor,
}

impl core::fmt::Display for HalError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Pwm(k) => write!(f, "failed to set the pilot PWM: {k:?}"),
            Self::Coil(k) => write!(f, "failed to drive the contactor coil: {k:?}"),
            Self::RelaySense(k) => write!(f, "failed to read the contactor feedback: {k:?}"),
            Self::Adc => f.write_str("failed to sample the pilot"),
            Self::CurrentSensor => f.write_str("failed to read the current sensor"),
        }
    }
}

impl core::error::Error for HalError {}

/// A [`ChargePoint`] bound to a board's pins.
pub struct Station<Pwm, Coil, Sense, Adc, Amps> {
    pub point: ChargePoint,
    pwm: Pwm,
    coil: Coil,
    relay_sense: Option<Sense>,
    adc: Adc,
    amps: Amps,
    /// Faults raised since the last [`Station::poll_fault`], for the debug channel.
    faults: heapless::Deque<crate::charge_point::Fault, 4>,
}

impl<Pwm, Coil, Sense, Adc, Amps> Station<Pwm, Coil, Sense, Adc, Amps>
where
    Pwm: SetDutyCycle,
    Coil: OutputPin,
    Sense: InputPin,
    Adc: PilotAdc,
    Amps: CurrentSensor,
{
    /// Bind a point to its pins and put them in the safe state: +12 V steady,
    /// coil released.
    pub fn new(
        point: ChargePoint,
        mut pwm: Pwm,
        mut coil: Coil,
        relay_sense: Option<Sense>,
        adc: Adc,
        amps: Amps,
    ) -> Result<Self, HalError> {
        coil.set_low()
            .map_err(|e| HalError::Coil(digital::Error::kind(&e)))?;
        pwm.set_duty_cycle_fully_on()
            .map_err(|e| HalError::Pwm(pwm::Error::kind(&e)))?;
        Ok(Self {
            point,
            pwm,
            coil,
            relay_sense,
            adc,
            amps,
            faults: heapless::Deque::new(),
        })
    }

    /// One pass: sample the inputs, feed them to the point, run its timers,
    /// and apply its outputs. Call it from the sampling interrupt or a loop,
    /// and again at [`ChargePoint::poll_timeout`].
    pub fn step(&mut self, now: Instant) -> Result<(), HalError> {
        let levels = self.adc.sample_pilot().map_err(|_| HalError::Adc)?;
        self.point.handle_pilot(now, levels);
        let amps = self
            .amps
            .read_current()
            .map_err(|_| HalError::CurrentSensor)?;
        self.point.handle_current(now, amps);
        if let Some(sense) = self.relay_sense.as_mut() {
            let closed = sense
                .is_high()
                .map_err(|e| HalError::RelaySense(digital::Error::kind(&e)))?;
            self.point.handle_relay_sense(now, closed);
        }
        self.point.handle_timeout(now);
        self.apply()
    }

    /// Apply every pending output of the point to the pins.
    pub fn apply(&mut self) -> Result<(), HalError> {
        while let Some(event) = self.point.poll_event() {
            match event {
                Event::Pilot(PilotOutput::Steady) => self.pwm.set_duty_cycle_fully_on(),
                Event::Pilot(PilotOutput::MinusTwelve) => self.pwm.set_duty_cycle_fully_off(),
                Event::Pilot(PilotOutput::Pwm { duty_bp }) => {
                    self.pwm.set_duty_cycle_fraction(duty_bp, 10_000)
                }
                Event::Contactor(closed) => {
                    let r = if closed {
                        self.coil.set_high()
                    } else {
                        self.coil.set_low()
                    };
                    r.map_err(|e| HalError::Coil(digital::Error::kind(&e)))?;
                    continue;
                }
                Event::Fault(f) => {
                    if self.faults.is_full() {
                        self.faults.pop_front();
                    }
                    let _ = self.faults.push_back(f);
                    continue;
                }
                Event::State(_) => continue,
            }
            .map_err(|e| HalError::Pwm(pwm::Error::kind(&e)))?;
        }
        Ok(())
    }

    /// A fault raised since the last call (what the board prints on its
    /// debug UART).
    pub fn poll_fault(&mut self) -> Option<crate::charge_point::Fault> {
        self.faults.pop_front()
    }

    /// The PWM output (a host driver reads back what the point drives).
    pub fn pwm(&self) -> &Pwm {
        &self.pwm
    }

    /// The contactor coil output.
    pub fn coil(&self) -> &Coil {
        &self.coil
    }

    /// The inputs, for a host driver that models the world behind them.
    pub fn inputs_mut(&mut self) -> (&mut Adc, &mut Amps, Option<&mut Sense>) {
        (&mut self.adc, &mut self.amps, self.relay_sense.as_mut())
    }

    /// Give the pins back.
    pub fn release(self) -> (ChargePoint, Pwm, Coil, Option<Sense>, Adc, Amps) {
        (
            self.point,
            self.pwm,
            self.coil,
            self.relay_sense,
            self.adc,
            self.amps,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charge_point::ChargePointConfig;
    use crate::time::{ms, us};
    use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as Pin};
    use embedded_hal_mock::eh1::pwm::{Mock as PwmMock, Transaction as Pwm};

    struct Levels(&'static [PilotLevels], usize);
    impl PilotAdc for Levels {
        type Error = ();
        fn sample_pilot(&mut self) -> Result<PilotLevels, ()> {
            let l = self.0.get(self.1).copied().ok_or(())?;
            self.1 += 1;
            Ok(l)
        }
    }
    struct Amps(u16);
    impl CurrentSensor for Amps {
        type Error = ();
        fn read_current(&mut self) -> Result<[u16; 3], ()> {
            Ok([self.0, 0, 0])
        }
    }

    const B: PilotLevels = PilotLevels {
        high_mv: 9_000,
        low_mv: -12_000,
    };
    const C: PilotLevels = PilotLevels {
        high_mv: 6_000,
        low_mv: -12_000,
    };

    #[test]
    fn pins_follow_the_point_through_a_charge() {
        let pwm = PwmMock::new(&[
            Pwm::max_duty_cycle(10_000),
            Pwm::set_duty_cycle(10_000), // safe state: +12 V
            Pwm::max_duty_cycle(10_000),
            Pwm::set_duty_cycle(2_667), // 16 A
        ]);
        let coil = PinMock::new(&[Pin::set(State::Low), Pin::set(State::High)]);
        let sense = PinMock::new(&core::array::from_fn::<_, 5, _>(|_| Pin::get(State::Low)));
        let mut point = ChargePoint::new(ChargePointConfig::new(320)).unwrap();
        point.handle_allocation(us(0), 160);
        let mut st = Station::new(
            point,
            pwm,
            coil,
            Some(sense),
            Levels(&[B, B, C, C, C], 0),
            Amps(0),
        )
        .unwrap();
        st.step(us(0)).unwrap();
        st.step(us(0) + ms(20)).unwrap(); // B debounced: PWM on
        st.step(us(0) + ms(30)).unwrap(); // C seen
        st.step(us(0) + ms(50)).unwrap(); // C debounced: close in 100 ms
        assert!(!st.point.status().contactor_closed);
        st.step(us(0) + ms(150)).unwrap(); // close delay over: coil on
        assert!(st.point.status().contactor_closed);
        let (_, mut pwm, mut coil, sense, _, _) = st.release();
        pwm.done();
        coil.done();
        if let Some(mut s) = sense {
            s.done();
        }
    }

    #[test]
    fn adc_failure_is_reported() {
        let pwm = PwmMock::new(&[Pwm::max_duty_cycle(10_000), Pwm::set_duty_cycle(10_000)]);
        let coil = PinMock::new(&[Pin::set(State::Low)]);
        let point = ChargePoint::new(ChargePointConfig::new(320)).unwrap();
        let mut st =
            Station::new(point, pwm, coil, None::<PinMock>, Levels(&[], 0), Amps(0)).unwrap();
        assert_eq!(st.step(us(0)), Err(HalError::Adc));
        let (_, mut pwm, mut coil, _, _, _) = st.release();
        pwm.done();
        coil.done();
    }
}
