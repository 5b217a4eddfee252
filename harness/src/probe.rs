//! Debug probes: flashing a station's image, resetting it, and reading what
//! it prints over the probe (RTT), behind one narrow trait with a fake
//! beside it, so every path that touches a probe has a test without one.
//!
//! Owns the [`Probe`] and [`ProbeSource`] traits, their errors, the fake,
//! and [`flash_bench`] (each station of an inventory bench flashed from its
//! image through the probe with its serial number, then reset). Does not own
//! which probe belongs to which station (the inventory,
//! [`crate::inventory`]) nor the telemetry format (a probe's RTT stream is
//! read like any debug channel: [`ProbeLink`] makes it one).
//!
//! The probe-rs implementation ([`probers::ProbeRs`]) sits behind the
//! cargo feature `probe`, so the default build does not compile probe-rs;
//! without it [`NoProbeSupport`] says so, naming the probe each station
//! expects. [`default_source`] is the one this build has.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::inventory::BenchEntry;

/// What went wrong with a probe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// No probe with this serial number is attached.
    #[error("no debug probe with serial {serial} is attached (attached: {attached}; is its USB cable plugged in?)")]
    NotFound { serial: String, attached: String },
    /// This build cannot drive probes.
    #[error("this sharebench was built without the `probe` feature, so it cannot reach probe {serial}: build it with `cargo build --features probe`")]
    NoSupport { serial: String },
    #[error("failed to flash {image} through probe {serial}: {reason}")]
    Flash {
        serial: String,
        image: PathBuf,
        reason: String,
    },
    #[error("probe {serial}: {reason}")]
    Io { serial: String, reason: String },
}

/// One debug probe, attached to one station's target.
pub trait Probe: Send {
    /// Its serial number.
    fn serial(&self) -> &str;
    /// Write an ELF image to the target's flash and verify it.
    fn flash(&mut self, image: &Path) -> Result<(), ProbeError>;
    /// Reset the target and let it run.
    fn reset(&mut self) -> Result<(), ProbeError>;
    /// Read what the target printed on its RTT up channel (waiting at most
    /// `timeout`); `Ok(0)` when nothing came.
    fn read_rtt(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, ProbeError>;
    /// Write to the target's RTT down channel (commissioning).
    fn write_rtt(&mut self, bytes: &[u8]) -> Result<(), ProbeError>;
}

/// Where probes come from: probe-rs's list of attached probes, or a fake.
pub trait ProbeSource {
    /// The serial numbers of the probes attached.
    fn attached(&self) -> Vec<String>;
    /// Open the probe with `serial`, attached to a `board`'s target.
    fn open(&self, serial: &str, board: &str) -> Result<Box<dyn Probe>, ProbeError>;
}

/// A build without the `probe` feature: every probe is out of reach, and
/// the error says which one was expected.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProbeSupport;

impl ProbeSource for NoProbeSupport {
    fn attached(&self) -> Vec<String> {
        Vec::new()
    }
    fn open(&self, serial: &str, _board: &str) -> Result<Box<dyn Probe>, ProbeError> {
        Err(ProbeError::NoSupport {
            serial: serial.to_string(),
        })
    }
}

/// The probes this build can reach: probe-rs's with `--features probe`.
#[must_use]
pub fn default_source() -> Box<dyn ProbeSource> {
    #[cfg(feature = "probe")]
    {
        Box::new(probers::ProbeRs)
    }
    #[cfg(not(feature = "probe"))]
    {
        Box::new(NoProbeSupport)
    }
}

/// The chip probe-rs attaches to for a station board of this project.
#[must_use]
pub fn chip_of(board: &str) -> Option<&'static str> {
    match board {
        "station-nucleo-f401" => Some("STM32F401RETx"),
        _ => None,
    }
}

/// probe-rs behind [`Probe`] (feature `probe`).
#[cfg(feature = "probe")]
pub mod probers {
    use super::{chip_of, Probe, ProbeError, ProbeSource};
    use probe_rs::probe::list::Lister;
    use probe_rs::rtt::Rtt;
    use probe_rs::{Permissions, Session};
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// The probes probe-rs lists on this machine.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct ProbeRs;

    impl ProbeSource for ProbeRs {
        fn attached(&self) -> Vec<String> {
            Lister::new()
                .list_all()
                .into_iter()
                .filter_map(|p| p.serial_number)
                .collect()
        }

        fn open(&self, serial: &str, board: &str) -> Result<Box<dyn Probe>, ProbeError> {
            let io = |reason: String| ProbeError::Io {
                serial: serial.to_string(),
                reason,
            };
            let chip = chip_of(board)
                .ok_or_else(|| io(format!("board \"{board}\" has no chip known to sharebench (see harness::probe::chip_of)")))?;
            let lister = Lister::new();
            let info = lister
                .list_all()
                .into_iter()
                .find(|p| p.serial_number.as_deref() == Some(serial))
                .ok_or_else(|| ProbeError::NotFound {
                    serial: serial.to_string(),
                    attached: "none with that serial".into(),
                })?;
            let probe = lister.open(&info).map_err(|e| io(e.to_string()))?;
            let session = probe
                .attach(chip, Permissions::default())
                .map_err(|e| io(format!("attach to {chip}: {e}")))?;
            Ok(Box::new(ProbeRsProbe {
                serial: serial.to_string(),
                session,
                rtt: None,
            }))
        }
    }

    struct ProbeRsProbe {
        serial: String,
        session: Session,
        rtt: Option<Rtt>,
    }

    impl ProbeRsProbe {
        /// The target's RTT control block (found once, after a reset).
        fn rtt(&mut self) -> Result<&mut Rtt, ProbeError> {
            if self.rtt.is_none() {
                let mut core = self.session.core(0).map_err(|e| ProbeError::Io {
                    serial: self.serial.clone(),
                    reason: e.to_string(),
                })?;
                let rtt = Rtt::attach(&mut core).map_err(|e| ProbeError::Io {
                    serial: self.serial.clone(),
                    reason: format!("no RTT control block: {e}"),
                })?;
                self.rtt = Some(rtt);
            }
            self.rtt.as_mut().ok_or_else(|| ProbeError::Io {
                serial: String::new(),
                reason: "RTT".into(),
            })
        }
    }

    impl Probe for ProbeRsProbe {
        fn serial(&self) -> &str {
            &self.serial
        }

        fn flash(&mut self, image: &Path) -> Result<(), ProbeError> {
            probe_rs::flashing::download_file(
                &mut self.session,
                image,
                probe_rs::flashing::ElfLoader(probe_rs::flashing::ElfOptions::default()),
            )
            .map_err(|e| ProbeError::Flash {
                serial: self.serial.clone(),
                image: image.to_path_buf(),
                reason: e.to_string(),
            })
        }

        fn reset(&mut self) -> Result<(), ProbeError> {
            self.rtt = None;
            let serial = self.serial.clone();
            let io = |e: probe_rs::Error| ProbeError::Io {
                serial: serial.clone(),
                reason: e.to_string(),
            };
            let mut core = self.session.core(0).map_err(io)?;
            core.reset().map_err(io)
        }

        fn read_rtt(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, ProbeError> {
            let deadline = Instant::now() + timeout;
            loop {
                let serial = self.serial.clone();
                let io = |e: probe_rs::Error| ProbeError::Io {
                    serial: serial.clone(),
                    reason: e.to_string(),
                };
                // Borrow the RTT block, then the core, one after the other.
                let mut rtt = match self.rtt.take() {
                    Some(r) => r,
                    None => {
                        self.rtt()?;
                        self.rtt
                            .take()
                            .ok_or_else(|| io(probe_rs::Error::Other("RTT".into())))?
                    }
                };
                let n = {
                    let mut core = self.session.core(0).map_err(&io)?;
                    match rtt.up_channel(0) {
                        Some(ch) => ch.read(&mut core, buf).map_err(|e| ProbeError::Io {
                            serial: serial.clone(),
                            reason: e.to_string(),
                        })?,
                        None => 0,
                    }
                };
                self.rtt = Some(rtt);
                if n > 0 || Instant::now() >= deadline {
                    return Ok(n);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }

        fn write_rtt(&mut self, bytes: &[u8]) -> Result<(), ProbeError> {
            self.rtt()?;
            let serial = self.serial.clone();
            let io = |e: probe_rs::Error| ProbeError::Io {
                serial: serial.clone(),
                reason: e.to_string(),
            };
            let mut rtt = self
                .rtt
                .take()
                .ok_or_else(|| io(probe_rs::Error::Other("RTT".into())))?;
            let result = (|| {
                let mut core = self.session.core(0).map_err(&io)?;
                let ch = rtt.down_channel(0).ok_or_else(|| {
                    io(probe_rs::Error::Other(
                        "the target has no RTT down channel".into(),
                    ))
                })?;
                let mut rest = bytes;
                while !rest.is_empty() {
                    let n = ch.write(&mut core, rest).map_err(|e| ProbeError::Io {
                        serial: serial.clone(),
                        reason: e.to_string(),
                    })?;
                    rest = &rest[n..];
                }
                Ok(())
            })();
            self.rtt = Some(rtt);
            result
        }
    }
}

/// Open a probe by serial number, or say which were there instead.
pub fn open_by_serial(
    source: &dyn ProbeSource,
    serial: &str,
    board: &str,
) -> Result<Box<dyn Probe>, ProbeError> {
    let attached = source.attached();
    if !attached.is_empty() && !attached.iter().any(|s| s == serial) {
        return Err(ProbeError::NotFound {
            serial: serial.to_string(),
            attached: attached.join(", "),
        });
    }
    source.open(serial, board).map_err(|e| match e {
        ProbeError::NotFound { serial, .. } if attached.is_empty() => ProbeError::NotFound {
            serial,
            attached: "none".into(),
        },
        e => e,
    })
}

/// What flashing a bench did, station by station.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flashed {
    /// Flashed and reset.
    Done { station: u8, image: PathBuf },
    /// The inventory gives it no image or no probe: left as it is.
    Left { station: u8, why: String },
}

/// Flash every station of `bench` that has an image and a probe, then
/// reset it. Stops at the first error (naming the station and its probe).
pub fn flash_bench(bench: &BenchEntry, source: &dyn ProbeSource) -> Result<Vec<Flashed>, String> {
    let mut out = Vec::new();
    for st in &bench.stations {
        let (Some(image), Some(serial)) = (&st.image, &st.probe) else {
            out.push(Flashed::Left {
                station: st.id,
                why: "the inventory gives it no image or no probe".into(),
            });
            continue;
        };
        let fail = |e: ProbeError| format!("bench {} station {}: {e}", bench.name, st.id);
        let mut probe = open_by_serial(source, serial, &st.board).map_err(fail)?;
        probe.flash(image).map_err(fail)?;
        probe.reset().map_err(fail)?;
        out.push(Flashed::Done {
            station: st.id,
            image: image.clone(),
        });
    }
    Ok(out)
}

/// A probe's RTT channels as a debug link (read half), so a station whose
/// debug channel is RTT is read like a UART (see [`crate::debug`]).
pub struct ProbeLink {
    probe: Box<dyn Probe>,
}

impl ProbeLink {
    #[must_use]
    pub fn new(probe: Box<dyn Probe>) -> Self {
        Self { probe }
    }
}

impl Read for ProbeLink {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.probe.read_rtt(buf, Duration::from_millis(20)) {
            Ok(0) => Err(std::io::ErrorKind::TimedOut.into()),
            Ok(n) => Ok(n),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }
}

impl Write for ProbeLink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.probe
            .write_rtt(buf)
            .map(|()| buf.len())
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A fake probe and its source, for tests: it records what was done, and
/// its target "prints" what the test gives it.
pub mod fake {
    use super::{Probe, ProbeError, ProbeSource};
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// What happened to one fake probe.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Record {
        pub flashed: Vec<PathBuf>,
        pub resets: u32,
        /// Bytes the target will print on RTT.
        pub rtt_up: Vec<u8>,
        /// Bytes written to the target's RTT down channel.
        pub rtt_down: Vec<u8>,
    }

    /// A fake probe: flashing fails for images that do not exist, as a
    /// real flash would.
    #[derive(Debug, Clone)]
    pub struct FakeProbe {
        pub serial: String,
        pub record: Arc<Mutex<Record>>,
    }

    impl Probe for FakeProbe {
        fn serial(&self) -> &str {
            &self.serial
        }
        fn flash(&mut self, image: &Path) -> Result<(), ProbeError> {
            if !image.is_file() {
                return Err(ProbeError::Flash {
                    serial: self.serial.clone(),
                    image: image.to_path_buf(),
                    reason: "no such image (run `cargo xtask images`)".into(),
                });
            }
            self.lock().flashed.push(image.to_path_buf());
            Ok(())
        }
        fn reset(&mut self) -> Result<(), ProbeError> {
            self.lock().resets += 1;
            Ok(())
        }
        fn read_rtt(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, ProbeError> {
            let mut r = self.lock();
            if r.rtt_up.is_empty() {
                drop(r);
                std::thread::sleep(timeout.min(Duration::from_millis(1)));
                return Ok(0);
            }
            let n = r.rtt_up.len().min(buf.len());
            buf[..n].copy_from_slice(&r.rtt_up[..n]);
            r.rtt_up.drain(..n);
            Ok(n)
        }
        fn write_rtt(&mut self, bytes: &[u8]) -> Result<(), ProbeError> {
            self.lock().rtt_down.extend_from_slice(bytes);
            Ok(())
        }
    }

    impl FakeProbe {
        fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
            self.record
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }

    /// Fake probes attached to this machine.
    #[derive(Debug, Clone, Default)]
    pub struct FakeProbes {
        pub probes: Vec<FakeProbe>,
    }

    impl FakeProbes {
        /// Probes with these serial numbers, each with a fresh record.
        #[must_use]
        pub fn with(serials: &[&str]) -> Self {
            Self {
                probes: serials
                    .iter()
                    .map(|s| FakeProbe {
                        serial: (*s).to_string(),
                        record: Arc::default(),
                    })
                    .collect(),
            }
        }

        /// What probe `serial` went through.
        #[must_use]
        pub fn record(&self, serial: &str) -> Option<Record> {
            self.probes
                .iter()
                .find(|p| p.serial == serial)
                .map(|p| p.lock().clone())
        }
    }

    impl ProbeSource for FakeProbes {
        fn attached(&self) -> Vec<String> {
            self.probes.iter().map(|p| p.serial.clone()).collect()
        }
        fn open(&self, serial: &str, _board: &str) -> Result<Box<dyn Probe>, ProbeError> {
            self.probes
                .iter()
                .find(|p| p.serial == serial)
                .map(|p| Box::new(p.clone()) as Box<dyn Probe>)
                .ok_or_else(|| ProbeError::NotFound {
                    serial: serial.to_string(),
                    attached: self.attached().join(", "),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeProbes;
    use super::*;
    use crate::inventory::Inventory;

    fn bench(image: &Path) -> BenchEntry {
        let text = format!(
            r#"
[[bench]]
name = "lab-a"
fixture = "serial:/dev/ttyACM0"
channels = 3

[[bench.station]]
id = 1
board = "station-nucleo-f401"
image = "{0}"
probe = "AAA"

[[bench.station]]
id = 2
board = "station-nucleo-f401"
image = "{0}"
probe = "BBB"

[[bench.station]]
id = 3
board = "station-nucleo-f401"
"#,
            image.display()
        );
        Inventory::parse(Path::new("benches.toml"), &text)
            .unwrap()
            .benches
            .remove(0)
    }

    fn image() -> PathBuf {
        let p = std::env::temp_dir().join(format!("sharebench-probe-{}.elf", std::process::id()));
        std::fs::write(&p, b"\x7fELF").unwrap();
        p
    }

    #[test]
    fn each_station_is_flashed_through_its_own_probe_then_reset() {
        let img = image();
        let probes = FakeProbes::with(&["BBB", "AAA"]);
        let done = flash_bench(&bench(&img), &probes).unwrap();
        assert_eq!(
            done,
            vec![
                Flashed::Done {
                    station: 1,
                    image: img.clone()
                },
                Flashed::Done {
                    station: 2,
                    image: img.clone()
                },
                Flashed::Left {
                    station: 3,
                    why: "the inventory gives it no image or no probe".into()
                },
            ]
        );
        for s in ["AAA", "BBB"] {
            let r = probes.record(s).unwrap();
            assert_eq!((r.flashed.len(), r.resets), (1, 1), "{s}");
        }
        let _ = std::fs::remove_file(img);
    }

    #[test]
    fn a_missing_probe_is_named_with_those_attached() {
        let img = image();
        let e = flash_bench(&bench(&img), &FakeProbes::with(&["AAA", "CCC"])).unwrap_err();
        assert_eq!(
            e,
            "bench lab-a station 2: no debug probe with serial BBB is attached (attached: AAA, CCC; is its USB cable plugged in?)"
        );
        let e = flash_bench(&bench(&img), &FakeProbes::default()).unwrap_err();
        assert!(e.contains("serial AAA is attached (attached: none"), "{e}");
        // A build without probe support says so, naming the probe.
        let e = flash_bench(&bench(&img), &NoProbeSupport).unwrap_err();
        assert!(
            e.contains("station 1") && e.contains("probe AAA") && e.contains("--features probe"),
            "{e}"
        );
        let _ = std::fs::remove_file(img);
    }

    #[test]
    fn a_missing_image_fails_the_flash_and_nothing_is_reset() {
        let probes = FakeProbes::with(&["AAA", "BBB"]);
        let e = flash_bench(&bench(Path::new("/no/such/image.elf")), &probes).unwrap_err();
        assert!(
            e.contains("failed to flash /no/such/image.elf through probe AAA"),
            "{e}"
        );
        assert_eq!(probes.record("AAA").unwrap().resets, 0);
    }

    #[test]
    fn rtt_is_a_debug_link_both_ways() {
        let probes = FakeProbes::with(&["AAA"]);
        let link = ProbeLink::new(probes.open("AAA", "b").unwrap());
        probes.probes[0]
            .record
            .lock()
            .unwrap()
            .rtt_up
            .extend_from_slice(firmware::telemetry::Telemetry::Joined.encode().as_bytes());
        let (mut r, mut w) = (link, ProbeLink::new(probes.open("AAA", "b").unwrap()));
        let mut buf = [0u8; 64];
        let n = r.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"T joined*FDF2\n");
        let e = r.read(&mut buf).unwrap_err();
        assert!(crate::serial::nothing_yet(&e), "{e}");
        w.write_all(b"C begin 1 2 1*0000\n").unwrap();
        assert_eq!(
            probes.record("AAA").unwrap().rtt_down,
            b"C begin 1 2 1*0000\n"
        );
    }
}
