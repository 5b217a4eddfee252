//! Lab benches by name (`benches.toml`) and one run at a time per bench.
//!
//! Owns the inventory file's format and its validation (errors name
//! file:line:col), resolving `--bench NAME` to its fixture URL, and the
//! advisory lock that makes parallel test processes and CI jobs queue for a
//! bench instead of failing on its port. Does not open anything
//! ([`crate::bench::BenchSpec::open_link`] does) nor flash or power-cycle
//! stations (the real-bench provisioning issue).
//!
//! ```toml
//! [[bench]]
//! name = "lab-a"
//! fixture = "tcp:lab-a.local:4001"      # any bench URL but a name
//! channels = 4
//!
//! [[bench.station]]
//! id = 1
//! board = "station-nucleo-f401"
//! image = "target/images/station-nucleo-f401.elf"
//! probe = "0671FF3833554B3043164817"   # probe-rs serial number
//! power_cycle = "uhubctl -l 1-1 -p 2 -a cycle"
//! power_off = "uhubctl -l 1-1 -p 2 -a off"   # optional: crash faults
//! power_on = "uhubctl -l 1-1 -p 2 -a on"
//! debug = "serial:/dev/ttyUSB3@115200" # the station's debug channel
//! ```

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use toml::Spanned;

use crate::bench::{BenchError, BenchSpec};

/// The environment variable naming the inventory file.
pub const INVENTORY_ENV: &str = "SHAREBENCH_BENCHES";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    bench: Vec<RawBench>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBench {
    name: Spanned<String>,
    fixture: Spanned<String>,
    channels: Spanned<u16>,
    #[serde(default)]
    station: Vec<RawStation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    id: Spanned<u8>,
    board: String,
    image: Option<PathBuf>,
    probe: Option<String>,
    power_cycle: Option<String>,
    power_off: Option<String>,
    power_on: Option<String>,
    debug: Option<Spanned<String>>,
}

/// One station of a lab bench.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationEntry {
    pub id: u8,
    pub board: String,
    pub image: Option<PathBuf>,
    /// The debug probe's serial number (probe-rs).
    pub probe: Option<String>,
    /// Shell commands that power-cycle the station, cut its power, and
    /// restore it (reboot and crash faults on a lab bench).
    pub power: crate::provision::Power,
    /// Where its debug channel is.
    pub debug: Option<BenchSpec>,
}

/// A lab bench.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchEntry {
    pub name: String,
    pub fixture: BenchSpec,
    pub channels: u16,
    pub stations: Vec<StationEntry>,
}

/// The benches of a lab.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub path: PathBuf,
    pub benches: Vec<BenchEntry>,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |n| before.len() - n - 1)
        + 1;
    (line, col)
}

impl Inventory {
    /// Read and check an inventory file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the bench inventory: {e}", path.display()))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, String> {
        let at = |offset: usize, msg: String| {
            let (l, c) = line_col(text, offset);
            format!("{}:{l}:{c}: {msg}", path.display())
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            at(
                e.span().map_or(0, |s| s.start),
                e.message().trim().to_string(),
            )
        })?;
        let mut benches: Vec<BenchEntry> = Vec::new();
        for b in raw.bench {
            let name = b.name.get_ref().clone();
            match name.parse::<BenchSpec>() {
                Ok(BenchSpec::Named(_)) => {}
                _ => {
                    return Err(at(
                        b.name.span().start,
                        format!("bench name \"{name}\" must be letters, digits, '-', '_' or '.', and not a bench URL"),
                    ))
                }
            }
            if benches.iter().any(|o| o.name == name) {
                return Err(at(
                    b.name.span().start,
                    format!("bench \"{name}\" is named twice"),
                ));
            }
            let fixture = b
                .fixture
                .get_ref()
                .parse::<BenchSpec>()
                .map_err(|e| at(b.fixture.span().start, e))?;
            if !matches!(
                fixture,
                BenchSpec::Serial { .. } | BenchSpec::Tcp { .. } | BenchSpec::Rfc2217 { .. }
            ) {
                return Err(at(
                    b.fixture.span().start,
                    format!("fixture \"{fixture}\" must be serial:, tcp: or rfc2217://"),
                ));
            }
            if *b.channels.get_ref() == 0 {
                return Err(at(
                    b.channels.span().start,
                    "channels must be at least 1".into(),
                ));
            }
            let mut stations: Vec<StationEntry> = Vec::new();
            for s in b.station {
                let id = *s.id.get_ref();
                if stations.iter().any(|o| o.id == id) {
                    return Err(at(
                        s.id.span().start,
                        format!("station {id} is listed twice on bench \"{name}\""),
                    ));
                }
                let debug = s
                    .debug
                    .map(|d| {
                        d.get_ref()
                            .parse::<BenchSpec>()
                            .map_err(|e| at(d.span().start, e))
                    })
                    .transpose()?;
                stations.push(StationEntry {
                    id,
                    board: s.board,
                    image: s.image,
                    probe: s.probe,
                    power: crate::provision::Power {
                        cycle: s.power_cycle,
                        off: s.power_off,
                        on: s.power_on,
                    },
                    debug,
                });
            }
            benches.push(BenchEntry {
                name,
                fixture,
                channels: *b.channels.get_ref(),
                stations,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            benches,
        })
    }

    /// The inventory named by `--benches` or `SHAREBENCH_BENCHES`, if any.
    pub fn from_args(arg: Option<&Path>) -> Result<Option<Self>, String> {
        let path = match arg {
            Some(p) => Some(p.to_path_buf()),
            None => std::env::var_os(INVENTORY_ENV).map(PathBuf::from),
        };
        path.map(|p| Self::load(&p)).transpose()
    }

    /// The bench called `name`.
    pub fn get(&self, name: &str) -> Result<&BenchEntry, String> {
        self.benches.iter().find(|b| b.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.benches.iter().map(|b| b.name.as_str()).collect();
            format!(
                "no bench \"{name}\" in {} (it has: {})",
                self.path.display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        })
    }
}

/// Resolve a `--bench` value: a name becomes its inventory entry's fixture.
pub fn resolve(
    spec: BenchSpec,
    inventory: Option<&Inventory>,
) -> Result<(BenchSpec, Option<BenchEntry>), String> {
    match spec {
        BenchSpec::Named(name) => {
            let inv = inventory.ok_or_else(|| {
                format!("bench \"{name}\" is a name, but no inventory is given (--benches FILE or {INVENTORY_ENV})")
            })?;
            let entry = inv.get(&name)?.clone();
            Ok((entry.fixture.clone(), Some(entry)))
        }
        other => Ok((other, None)),
    }
}

/// A bench held for one run; released when dropped (or when the process
/// ends, however it ends: the lock is the kernel's, on an open file).
#[derive(Debug)]
pub struct BenchLock {
    file: File,
    pub path: PathBuf,
}

impl Drop for BenchLock {
    /// Clear the holder's PID before the lock goes, so that no waiter names
    /// a process that has let the bench go.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

fn lock_path(bench: &str) -> PathBuf {
    let safe: String = bench
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    std::env::temp_dir()
        .join("sharebench-locks")
        .join(format!("{safe}.lock"))
}

/// Take bench `bench` for this process, waiting up to `wait` while another
/// holds it; a clear error names the holder's PID when the wait runs out.
pub fn lock(bench: &str, wait: Duration) -> Result<BenchLock, BenchError> {
    let path = lock_path(bench);
    let io = |e: std::io::Error| BenchError::Io(format!("bench lock {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    let started = Instant::now();
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = holder(&path);
                if started.elapsed() >= wait {
                    return Err(BenchError::Busy {
                        bench: bench.to_string(),
                        holder,
                        waited_s: wait.as_secs(),
                    });
                }
                // The holder writes its PID right after it takes the lock:
                // wait a moment for it before saying who holds the bench.
                if !said && (holder.starts_with("PID") || started.elapsed() >= PID_WRITTEN) {
                    eprintln!(
                        "bench {bench} is in use by {holder}; waiting up to {} s",
                        wait.as_secs()
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    // Say who holds it, for whoever waits next: one write of a line of one
    // length, so that a reader never sees it empty or half written.
    let line = format!("PID {:<10}\n", std::process::id());
    file.rewind().map_err(io)?;
    file.write_all(line.as_bytes()).map_err(io)?;
    file.set_len(u64::try_from(line.len()).unwrap_or(u64::MAX))
        .map_err(io)?;
    Ok(BenchLock { file, path })
}

/// How long a lock's new holder may take to write its PID.
const PID_WRITTEN: Duration = Duration::from_secs(1);

/// Who holds the lock at `path`, as its holder wrote it.
fn holder(path: &Path) -> String {
    let mut text = String::new();
    let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut text));
    match text.trim() {
        "" => "another process (it has not written its PID)".to_string(),
        who => who.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = r#"
[[bench]]
name = "lab-a"
fixture = "tcp:lab-a.local:4001"
channels = 4

[[bench.station]]
id = 1
board = "station-nucleo-f401"
image = "target/images/station-nucleo-f401.elf"
probe = "0671FF3833554B3043164817"
power_cycle = "uhubctl -l 1-1 -p 2 -a cycle"
debug = "serial:/dev/ttyUSB3@115200"
"#;

    #[test]
    fn an_inventory_names_benches_and_resolves_them() {
        let inv = Inventory::parse(Path::new("benches.toml"), LAB).unwrap();
        let (fixture, entry) = resolve(BenchSpec::Named("lab-a".into()), Some(&inv)).unwrap();
        assert_eq!(
            fixture,
            BenchSpec::Tcp {
                host: "lab-a.local".into(),
                port: 4_001
            }
        );
        let entry = entry.unwrap();
        assert_eq!(entry.channels, 4);
        assert_eq!(
            entry.stations[0].probe.as_deref(),
            Some("0671FF3833554B3043164817")
        );
        let e = resolve(BenchSpec::Named("lab-b".into()), Some(&inv)).unwrap_err();
        assert!(
            e.contains("no bench \"lab-b\"") && e.contains("lab-a"),
            "{e}"
        );
        let e = resolve(BenchSpec::Named("lab-a".into()), None).unwrap_err();
        assert!(e.contains("SHAREBENCH_BENCHES"), "{e}");
    }

    #[test]
    fn a_bad_inventory_names_its_line() {
        for (text, needle) in [
            (LAB.replace("tcp:lab-a.local:4001", "ftp://x"), "benches.toml:4:11: unknown bench"),
            (LAB.replace("channels = 4", "channels = 0"), "benches.toml:5:12: channels"),
            (LAB.replace("name = \"lab-a\"", "name = \"sim\""), "not a bench URL"),
            (format!("{LAB}\n[[bench]]\nname = \"lab-a\"\nfixture = \"serial:/dev/x\"\nchannels = 1\n"), "named twice"),
            (LAB.replace("probe", "prob"), "benches.toml:11:1: unknown field `prob`"),
        ] {
            let e = Inventory::parse(Path::new("benches.toml"), &text).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn a_held_bench_makes_the_next_one_wait_then_say_who_holds_it() {
        let name = format!("test-bench-{}", std::process::id());
        // What an earlier holder left, longer than this one's line.
        let path = lock_path(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "PID 4294967295 and more\n").unwrap();
        let held = lock(&name, Duration::from_secs(1)).unwrap();
        assert_eq!(holder(&path), format!("PID {}", std::process::id()));
        let e = lock(&name, Duration::from_millis(300)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("PID {}", std::process::id())) && msg.contains(&name),
            "{msg}"
        );
        drop(held);
        let again = lock(&name, Duration::from_millis(300)).unwrap();
        let _ = std::fs::remove_file(&again.path);
    }
}
