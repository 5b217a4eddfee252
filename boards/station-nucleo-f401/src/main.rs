//! The station image for the ST NUCLEO-F401RE (STM32F401RE, Cortex-M4F,
//! 512 KiB flash, 96 KiB RAM): only glue between the board's peripherals
//! and [`firmware::station::Station`], through [`firmware::hal::Board`].
//! Pinout and the analog front end: `docs/station-board.md`.
//!
//! - TIM1 CH1 (PA8): the pilot PWM, 1 kHz from a 10 MHz count (one count is
//!   0.01 % of duty), fully on for steady +12 V, off for -12 V.
//! - ADC1: the pilot (PA0), sampled inside its high and low plateaus
//!   ([`pilot`]), and the three phase currents (PA1, PA4, PB0).
//! - PB5 the contactor coil, PB4 its auxiliary contact.
//! - USART2 (PA2/PA3, the ST-LINK's virtual COM port): the debug channel,
//!   telemetry out, commissioning in.
//! - USART1 (PA9/PA10) with driver enable PC7: the RS-485 sharing link.
//! - USART6 (PA11/PA12) with driver enable PB6: the meter's Modbus RTU line.
//! - SysTick at the 80 MHz CPU clock: the clock (`station_common::clock`).
//! - Flash sector 7 (0x0806_0000, 128 KiB): the accepted commissioning and
//!   a boot counter (`station_common::config_store`); at boot a stored plan
//!   goes through the commissioning receiver again, so its MAC and every
//!   check run as if the harness had sent it.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod pilot;
mod port;
mod sector;

use cortex_m_rt::entry;
use firmware::hal::Board;
use firmware::station::{Station, StationError};
use firmware::telemetry::{Refusal, Telemetry};
use firmware::time::{ms, Instant};
use stm32f4xx_hal::adc::{config::AdcConfig, Adc};
use stm32f4xx_hal::gpio::{Input, Output, Pin, PushPull};
use stm32f4xx_hal::pac;
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::rcc::Config;
use stm32f4xx_hal::serial::config::Config as SerialConfig;
use stm32f4xx_hal::timer::PwmChannel;

// The config source: commissioning messages on the debug channel.
use firmware::commission::{Commission, Receiver, DEFAULT_BENCH_KEY};

use pilot::{Currents, PilotPwm, PilotSampler};
use port::Port;
use sector::ConfigSector;
use station_common::clock::Clock;
use station_common::config_store::{ConfigStore, PlanRecorder, MAX_PLAN};

/// A group of 6 stations on 4 nodes: what the budget is for.
const S: usize = 6;
const N: usize = 4;

/// 80 MHz: TIM1's clock divides to exactly 10 MHz, so the pilot is 1 kHz.
const CPU_HZ: u32 = 80_000_000;

/// The bench commissioning key, given at build time:
/// `SHAREBENCH_COMMISSION_KEY=<64 hex digits> cargo xtask images`. A real
/// board never takes the public default key: built without one, it refuses
/// every plan (`bad-mac`).
const BENCH_KEY: Option<[u8; 32]> = key_from_hex(option_env!("SHAREBENCH_COMMISSION_KEY"));

const fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

const fn key_from_hex(hex: Option<&str>) -> Option<[u8; 32]> {
    let Some(hex) = hex else { return None };
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        let (Some(hi), Some(lo)) = (nibble(b[2 * i]), nibble(b[2 * i + 1])) else {
            return None;
        };
        key[i] = hi * 16 + lo;
        i += 1;
    }
    Some(key)
}

type Coil = Pin<'B', 5, Output<PushPull>>;
type Sense = Pin<'B', 4, Input>;
type NucleoBoard =
    Board<PilotPwm<PwmChannel<pac::TIM1, 0>>, Coil, Sense, PilotSampler, Currents, S, N>;

struct Image {
    clock: Clock,
    debug: Port<pac::USART2, 512>,
    link: Port<pac::USART1, 512>,
    meter: Port<pac::USART6, 64>,
    receiver: Receiver<S, N>,
    board: &'static mut Option<NucleoBoard>,
    /// The pins, while no station holds them.
    spare: Option<(
        PilotPwm<PwmChannel<pac::TIM1, 0>>,
        Coil,
        Sense,
        PilotSampler,
    )>,
    /// Starts since power-up, on top of the boots counted in flash.
    boots: u32,
    next_sample: Instant,
    store: ConfigStore<ConfigSector>,
    recorder: PlanRecorder<MAX_PLAN>,
    /// The stored plan is being fed back at boot: it is not saved again.
    replaying: bool,
}

/// The board samples its inputs this often (the pilot within its plateaus).
const SAMPLE_MS: u64 = 10;

#[entry]
fn main() -> ! {
    let (Some(dp), Some(cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take()) else {
        cortex_m::peripheral::SCB::sys_reset();
    };
    let Some(board) = cortex_m::singleton!(: Option<NucleoBoard> = None) else {
        cortex_m::peripheral::SCB::sys_reset();
    };
    let mut rcc = dp.RCC.freeze(
        Config::hsi()
            .sysclk(CPU_HZ.Hz())
            .pclk1(40.MHz())
            .pclk2(80.MHz()),
    );
    let gpioa = dp.GPIOA.split(&mut rcc);
    let gpiob = dp.GPIOB.split(&mut rcc);
    let gpioc = dp.GPIOC.split(&mut rcc);

    // Safe state first: coil released, pilot steady +12 V.
    let coil = gpiob.pb5.into_push_pull_output_in_state(false.into());
    let sense = gpiob.pb4.into_pull_down_input();
    let (_pwm, (ch1, ..)) = dp.TIM1.pwm::<10_000_000>(1.millis(), &mut rcc);
    let mut ch1 = ch1.with(gpioa.pa8);
    ch1.set_duty(ch1.get_max_duty());
    ch1.enable();

    let sampler = PilotSampler::new(
        Adc::new(dp.ADC1, true, AdcConfig::default(), &mut rcc),
        gpioa.pa0.into_analog(),
        (
            gpioa.pa1.into_analog(),
            gpioa.pa4.into_analog(),
            gpiob.pb0.into_analog(),
        ),
    );

    let serial = |baud: u32| SerialConfig::default().baudrate(baud.bps());
    let (Ok(debug), Ok(link), Ok(meter)) = (
        dp.USART2
            .serial((gpioa.pa2, gpioa.pa3), serial(115_200), &mut rcc),
        dp.USART1
            .serial((gpioa.pa9, gpioa.pa10), serial(115_200), &mut rcc),
        dp.USART6
            .serial((gpioa.pa11, gpioa.pa12), serial(9_600), &mut rcc),
    ) else {
        cortex_m::peripheral::SCB::sys_reset();
    };

    let mut store = ConfigStore::new(ConfigSector::new(dp.FLASH));
    let boot = store.count_boot();
    let mut image = Image {
        clock: Clock::start(cp.SYST, CPU_HZ),
        debug: Port::new(debug, None),
        link: Port::new(link, Some(gpioc.pc7.into_push_pull_output().erase())),
        meter: Port::new(meter, Some(gpiob.pb6.into_push_pull_output().erase())),
        receiver: Receiver::new(BENCH_KEY.unwrap_or(DEFAULT_BENCH_KEY)),
        board,
        spare: Some((PilotPwm::new(ch1), coil, sense, sampler)),
        boots: boot.boots,
        next_sample: Instant::from_ticks(0),
        store,
        recorder: PlanRecorder::default(),
        replaying: false,
    };
    // The plan accepted before the reset, checked again as if just sent;
    // none (erased, torn, corrupted) leaves the station uncommissioned.
    let mut stored = heapless::Vec::<u8, MAX_PLAN>::new();
    if let Ok(plan) = image.store.plan() {
        let _ = stored.extend_from_slice(plan);
    }
    image.replaying = true;
    image.commissioning(&stored);
    image.replaying = false;
    loop {
        image.poll();
    }
}

impl Image {
    /// One pass over every input and output; blocks only inside a pilot
    /// sample (at most two PWM periods).
    fn poll(&mut self) {
        let now = self.clock.now();
        while let Some(b) = self.debug.read() {
            self.recorder.handle_byte(b);
            self.commissioning(&[b]);
        }
        if let Some(board) = self.board.as_mut() {
            while let Some(b) = self.link.read() {
                board.station.handle_link_rx(now, &[b]);
            }
            while let Some(b) = self.meter.read() {
                board.station.handle_meter_rx(now, &[b]);
            }
            if now >= self.next_sample {
                // A pilot sample that found no plateau is skipped (the
                // station keeps its last reading), but the timers run.
                if board.step(now).is_err() {
                    board.station.handle_timeout(now);
                }
                self.next_sample = now + ms(SAMPLE_MS);
            }
            let _ = board.apply();
            station_common::drain_output(
                &mut board.station,
                &mut self.link.tx,
                &mut self.meter.tx,
                &mut self.debug.tx,
            );
        } else {
            while self.link.read().is_some() {}
            while self.meter.read().is_some() {}
        }
        self.debug.pump();
        self.link.pump();
        self.meter.pump();
    }

    fn commissioning(&mut self, bytes: &[u8]) {
        let msg = self.receiver.handle_rx(bytes);
        // An operator's limit goes to the running station (the leader
        // takes it); without a key of its own the image takes none.
        if let Some(cmd) = self.receiver.take_limit() {
            let now = self.clock.now();
            let cmd = cmd.and_then(|c| BENCH_KEY.map(|_| c).ok_or(Refusal::BadMac));
            match self.board.as_mut() {
                Some(board) => board.station.handle_limit(now, cmd),
                None => {
                    let answer = Telemetry::LimitRefused(cmd.err().unwrap_or(Refusal::NotLeader));
                    let _ = self.debug.tx.send(answer.encode().as_bytes());
                }
            }
        }
        let Some(msg) = msg else {
            return;
        };
        let now = self.clock.now();
        // Without a key of its own, nothing is taken (not even a plan
        // signed with the public default the receiver checks against).
        let msg = msg.and_then(|c| BENCH_KEY.map(|_| c).ok_or(Refusal::BadMac));
        let answer = match msg.and_then(|c| self.start(c, now)) {
            Ok((stations, nodes)) => Telemetry::ConfigAccepted { stations, nodes },
            Err(r) => Telemetry::ConfigRefused(r),
        };
        // A refused message is not kept (an accepted one was, in `start`).
        let _ = self.recorder.take();
        let _ = self.debug.tx.send(answer.encode().as_bytes());
    }

    fn start(&mut self, c: Commission<S, N>, now: Instant) -> Result<(u16, u16), Refusal> {
        // Only an idle station takes a new plan (see `Station::busy`).
        if self.board.as_ref().is_some_and(|b| b.station.busy()) {
            return Err(Refusal::Busy);
        }
        let sizes = (
            u16::try_from(c.group.stations.len()).unwrap_or(u16::MAX),
            u16::try_from(c.group.nodes.len()).unwrap_or(u16::MAX),
        );
        self.boots = self.boots.wrapping_add(1);
        let station =
            Station::new(c.group, c.id, boot_nonce(now, self.boots), now).map_err(|e| match e {
                StationError::NotInGroup { .. } => Refusal::NotInGroup,
                StationError::Point(_) => Refusal::InvalidPoint,
                StationError::Group(_) | StationError::Follower(_) => Refusal::Invalid,
            })?;
        // Keep the plan before the station runs: the sector erase stalls the
        // CPU (about 1-2 s for 128 KiB), and the station about to be
        // replaced is idle. The SysTick clock loses the stall. A plan that
        // cannot be kept (too long, flash error) still runs: it is lost at
        // the next reset, as before persistence.
        if let Some(plan) = self.recorder.take().filter(|_| !self.replaying) {
            let _ = self.store.save(&plan);
        }
        // Take the pins back from a running station.
        if let Some(old) = self.board.take() {
            let (_, pwm, coil, sense, sampler, _) = old.release();
            if let Some(sense) = sense {
                self.spare = Some((pwm, coil, sense, sampler));
            }
        }
        let (pwm, coil, sense, sampler) = self.spare.take().ok_or(Refusal::Invalid)?;
        // Board::new puts the pins in the safe state before the station's.
        let board = Board::new(station, pwm, coil, Some(sense), sampler, Currents)
            .map_err(|_| Refusal::Invalid)?;
        *self.board = Some(board);
        self.next_sample = now;
        Ok(sizes)
    }
}

/// A value that differs at every boot: the hardware has no RNG on the
/// F401, so it mixes the microsecond the commissioning message completed
/// (host timing) with the boot counter kept in flash plus the starts since
/// reset. See `docs/station-board.md`.
fn boot_nonce(now: Instant, boots: u32) -> u32 {
    (now.ticks() as u32).rotate_left(16) ^ boots.wrapping_mul(2_654_435_761)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // TIM1's output goes low (-12 V, state F) and the coil pin to its reset
    // state (released) as the MCU resets.
    cortex_m::peripheral::SCB::sys_reset()
}
