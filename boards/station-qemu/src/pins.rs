//! The station's pins and sensors on the QEMU image: [`firmware::hal`]'s
//! traits over the wire bridge (`docs/wire-bridge.md`).
//!
//! Owns the pin-change queue between the station's outputs and the bridge
//! UART, and the latest sensor levels the host sent. Does not frame lines
//! (that is [`firmware::bridge`]) and does not decide anything.

use core::cell::RefCell;
use core::convert::Infallible;

use critical_section::Mutex;
use embedded_hal::digital::{self, InputPin, OutputPin};
use embedded_hal::pwm::{self, SetDutyCycle};
use firmware::charge_point::PilotOutput;
use firmware::hal::{CurrentSensor, PilotAdc};
use firmware::pilot::PilotLevels;
use firmware::station::Output;
use heapless::Deque;

/// Full scale of the bridge PWM: one step is one basis point of duty.
const MAX_DUTY: u16 = 10_000;

/// Pin changes not yet on the bridge, oldest first.
static CHANGES: Mutex<RefCell<Deque<Output, 8>>> = Mutex::new(RefCell::new(Deque::new()));

fn changed(o: Output) {
    critical_section::with(|cs| {
        let mut q = CHANGES.borrow_ref_mut(cs);
        if q.is_full() {
            // Should the bridge fall this far behind, the newest state of
            // a pin wins: older changes of the same pin are dropped (as
            // `Station` does with its own outputs).
            let same = |x: &Output| core::mem::discriminant(x) == core::mem::discriminant(&o);
            let mut kept: Deque<Output, 8> = Deque::new();
            while let Some(x) = q.pop_front() {
                if !same(&x) {
                    let _ = kept.push_back(x);
                }
            }
            *q = kept;
        }
        let _ = q.push_back(o);
    });
}

/// Hand pin changes to `send`, oldest first, while it takes them (`false`:
/// no room on the bridge; the change stays queued).
pub fn send_changes(mut send: impl FnMut(Output) -> bool) {
    critical_section::with(|cs| {
        let mut q = CHANGES.borrow_ref_mut(cs);
        while let Some(&o) = q.front() {
            if !send(o) {
                break;
            }
            q.pop_front();
        }
    });
}

/// The pilot output: full scale is steady +12 V, zero is -12 V (state F),
/// anything between is 1 kHz PWM at that many basis points.
pub struct Pwm;

impl pwm::ErrorType for Pwm {
    type Error = Infallible;
}

impl SetDutyCycle for Pwm {
    fn max_duty_cycle(&self) -> u16 {
        MAX_DUTY
    }

    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), Infallible> {
        changed(Output::Pilot(match duty {
            0 => PilotOutput::MinusTwelve,
            d if d >= MAX_DUTY => PilotOutput::Steady,
            duty_bp => PilotOutput::Pwm { duty_bp },
        }));
        Ok(())
    }
}

/// The contactor coil.
pub struct Coil;

impl digital::ErrorType for Coil {
    type Error = Infallible;
}

impl OutputPin for Coil {
    fn set_low(&mut self) -> Result<(), Infallible> {
        changed(Output::Contactor(false));
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        changed(Output::Contactor(true));
        Ok(())
    }
}

/// What the host last said the sensors read. Until it speaks: an unplugged
/// socket (pilot +12 V on both plateaus, relay open, no current).
#[derive(Clone, Copy)]
pub struct Sensed {
    pub pilot: PilotLevels,
    pub relay_closed: bool,
    pub amps_da: [u16; 3],
}

impl Sensed {
    pub const UNPLUGGED: Self = Self {
        pilot: PilotLevels {
            high_mv: 12_000,
            low_mv: 12_000,
        },
        relay_closed: false,
        amps_da: [0; 3],
    };
}

/// The contactor's auxiliary contact.
pub struct Sense(pub bool);

impl digital::ErrorType for Sense {
    type Error = Infallible;
}

impl InputPin for Sense {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.0)
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.0)
    }
}

/// The pilot ADC: the plateaus the host last sent.
pub struct Adc(pub PilotLevels);

impl PilotAdc for Adc {
    type Error = Infallible;
    fn sample_pilot(&mut self) -> Result<PilotLevels, Infallible> {
        Ok(self.0)
    }
}

/// The current sensor: the currents the host last sent.
pub struct Amps(pub [u16; 3]);

impl CurrentSensor for Amps {
    type Error = Infallible;
    fn read_current(&mut self) -> Result<[u16; 3], Infallible> {
        Ok(self.0)
    }
}
