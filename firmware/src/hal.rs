//! The hardware boundary of a station: embedded-hal 1.0 pins plus two small
//! traits for what embedded-hal has no trait for (ADC-sampled pilot levels and
//! the current sensor).
//!
//! Owns the mapping from the station's [`Output`]s to pins: PWM duty through
//! `SetDutyCycle::set_duty_cycle_fraction` (0.01 % resolution), steady +12 V as
//! fully on, -12 V (state F) as fully off, the contactor coil as an
//! `OutputPin`, relay feedback as an `InputPin`. Does not decide anything:
//! that is the [`Station`]'s job. A station board implements the two traits
//! over its ADC; the virtual bench implements them over its circuit model.

use embedded_hal::digital::{self, InputPin, OutputPin};
use embedded_hal::pwm::{self, SetDutyCycle};

use crate::charge_point::PilotOutput;
use crate::pilot::PilotLevels;
use crate::sharing::config::{MAX_NODES, MAX_STATIONS};
use crate::station::{Output, Station};
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
            Self::Pwm(k) => write!(f, "failed to set the pilot PWM: {k}"),
            Self::Coil(k) => write!(f, "failed to drive the contactor coil: {k}"),
            Self::RelaySense(k) => write!(f, "failed to read the contactor feedback: {k}"),
            Self::Adc => f.write_str("failed to sample the pilot"),
            Self::CurrentSensor => f.write_str("failed to read the current sensor"),
        }
    }
}

impl core::error::Error for HalError {}

/// A [`Station`] bound to a board's pins: the whole of a board's glue.
pub struct Board<
    Pwm,
    Coil,
    Sense,
    Adc,
    Amps,
    const S: usize = MAX_STATIONS,
    const N: usize = MAX_NODES,
> {
    pub station: Station<S, N>,
    pwm: Pwm,
    coil: Coil,
    relay_sense: Option<Sense>,
    adc: Adc,
    amps: Amps,
}

impl<Pwm, Coil, Sense, Adc, Amps, const S: usize, const N: usize>
    Board<Pwm, Coil, Sense, Adc, Amps, S, N>
where
    Pwm: SetDutyCycle,
    Coil: OutputPin,
    Sense: InputPin,
    Adc: PilotAdc,
    Amps: CurrentSensor,
{
    /// Bind a station to its pins and put them in the safe state: +12 V
    /// steady, coil released; then apply what the station asked for at boot.
    pub fn new(
        station: Station<S, N>,
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
        let mut b = Self {
            station,
            pwm,
            coil,
            relay_sense,
            adc,
            amps,
        };
        b.apply()?;
        Ok(b)
    }

    /// One pass: sample the inputs, feed them to the station, run its
    /// timers, and apply its outputs. Call it from the sampling interrupt or
    /// a loop, and again at [`Station::poll_timeout`].
    pub fn step(&mut self, now: Instant) -> Result<(), HalError> {
        let levels = self.adc.sample_pilot().map_err(|_| HalError::Adc)?;
        self.station.handle_pilot(now, levels);
        let amps = self
            .amps
            .read_current()
            .map_err(|_| HalError::CurrentSensor)?;
        self.station.handle_current(now, amps);
        if let Some(sense) = self.relay_sense.as_mut() {
            let closed = sense
                .is_high()
                .map_err(|e| HalError::RelaySense(digital::Error::kind(&e)))?;
            self.station.handle_relay_sense(now, closed);
        }
        self.station.handle_timeout(now);
        self.apply()
    }

    /// Apply every pending output of the station to the pins.
    pub fn apply(&mut self) -> Result<(), HalError> {
        while let Some(out) = self.station.poll_output() {
            match out {
                Output::Pilot(PilotOutput::Steady) => self.pwm.set_duty_cycle_fully_on(),
                Output::Pilot(PilotOutput::MinusTwelve) => self.pwm.set_duty_cycle_fully_off(),
                Output::Pilot(PilotOutput::Pwm { duty_bp }) => {
                    self.pwm.set_duty_cycle_fraction(duty_bp, 10_000)
                }
                Output::Contactor(closed) => {
                    let r = if closed {
                        self.coil.set_high()
                    } else {
                        self.coil.set_low()
                    };
                    r.map_err(|e| HalError::Coil(digital::Error::kind(&e)))?;
                    continue;
                }
            }
            .map_err(|e| HalError::Pwm(pwm::Error::kind(&e)))?;
        }
        Ok(())
    }

    /// The PWM output (a host driver reads back what the station drives).
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
    pub fn release(self) -> (Station<S, N>, Pwm, Coil, Option<Sense>, Adc, Amps) {
        (
            self.station,
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

    /// A group of one: the station leads itself on a 16 A circuit.
    fn alone() -> Station<1, 1> {
        use crate::sharing::config::{GroupConfig, NodeConfig, Phase, StationConfig, Timing};
        let mut nodes = heapless::Vec::new();
        let _ = nodes.push(NodeConfig {
            parent: None,
            limit_da: 160,
            breaker_da: None,
        });
        let mut stations = heapless::Vec::new();
        let _ = stations.push(StationConfig {
            id: 1,
            node: 0,
            nameplate_da: 320,
            breaker_da: None,
            phases: 1,
            rotation: Phase::L1,
            fallback_da: 0,
            priority: 0,
            weight: 1,
        });
        let group = GroupConfig {
            group: 1,
            key: [7; 32],
            enabled: true,
            leader: 1,
            nodes,
            stations,
            timing: Timing::default(),
            dynamic: None,
        };
        Station::new(group, 1, 42, us(0)).unwrap()
    }

    #[test]
    fn pins_follow_the_station_through_a_charge() {
        let pwm = PwmMock::new(&[
            Pwm::max_duty_cycle(10_000),
            Pwm::set_duty_cycle(10_000), // safe state: +12 V
            Pwm::max_duty_cycle(10_000),
            Pwm::set_duty_cycle(2_667), // 16 A
        ]);
        let coil = PinMock::new(&[Pin::set(State::Low), Pin::set(State::High)]);
        let sense = PinMock::new(&core::array::from_fn::<_, 7, _>(|_| Pin::get(State::Low)));
        let mut b = Board::new(
            alone(),
            pwm,
            coil,
            Some(sense),
            Levels(&[B, B, C, C, C, C, C], 0),
            Amps(0),
        )
        .unwrap();
        b.step(us(0)).unwrap();
        b.step(us(0) + ms(20)).unwrap(); // B debounced: no PWM, the car does not ask
        b.step(us(0) + ms(30)).unwrap(); // C seen
        b.step(us(0) + ms(50)).unwrap(); // C debounced: the car asks
        assert_eq!(b.station.pilot_output(), PilotOutput::Steady);
        b.step(us(0) + ms(1_000)).unwrap(); // the leader's cycle: 16 A, PWM on
        assert_eq!(
            b.station.pilot_output(),
            PilotOutput::Pwm { duty_bp: 2_667 }
        );
        b.step(us(0) + ms(1_010)).unwrap(); // sampled with PWM: the diode is seen
        assert!(!b.station.status().is_some_and(|s| s.contactor_closed));
        b.step(us(0) + ms(1_200)).unwrap(); // close delay over: coil on
        assert!(b.station.status().is_some_and(|s| s.contactor_closed));
        let (_, mut pwm, mut coil, sense, _, _) = b.release();
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
        let mut b =
            Board::new(alone(), pwm, coil, None::<PinMock>, Levels(&[], 0), Amps(0)).unwrap();
        assert_eq!(b.step(us(0)), Err(HalError::Adc));
        let (_, mut pwm, mut coil, _, _, _) = b.release();
        pwm.done();
        coil.done();
    }
}
