//! `sharebench explore`: a randomised fault search over generated sites,
//! with shrinking.
//!
//! Owns the generator of random sites (seeded: a seed gives the same site),
//! their rendering as scenario files the corpus takes as they are, the
//! invariants checked on every run, and the shrinker that cuts a failing
//! site down while the same invariant still fails. Runs on the virtual
//! bench through [`crate::cli::run_sim`]; uses the harness's own checks,
//! never the firmware's internals.
//!
//! The invariants: the firmware's offers never exceed a node's limit
//! (`breaker-offered`), every IEC 61851-1 row holds (`iec-61851`), the run
//! completes (no stuck or incomplete run, no lost record), and nothing
//! panics.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rig::rng::SplitMix64;

use crate::runner::{ScenarioRun, Verdict};
use crate::scenario::Scenario;

/// How large the generated sites are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SiteSize {
    /// 2-6 stations, one or two levels.
    Small,
    /// 4-24 stations, up to four levels.
    Tree,
    /// 24-64 stations, up to four levels.
    Large,
}

/// Which faults the generator may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Faults {
    All,
    Link,
    Node,
    Meter,
    Car,
    Pilot,
    /// An operator's limit (`set-limit`) lowered on a node, and given back.
    Limit,
}

/// What one run of a generated site broke.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// `breaker-offered`, `iec-61851`, `incomplete`, `panic`, or a planted one.
    pub invariant: String,
    pub detail: String,
}

/// Decides whether a run breaks an invariant (the real ones, or a planted
/// one in a test of the shrinker).
pub type Invariant = fn(&Site, &Result<ScenarioRun, String>) -> Option<Violation>;

/// The invariants `explore` checks.
pub fn invariants(_: &Site, run: &Result<ScenarioRun, String>) -> Option<Violation> {
    let run = match run {
        Ok(r) => r,
        Err(e) if e.starts_with("panic") => {
            return Some(Violation {
                invariant: "panic".into(),
                detail: e.clone(),
            })
        }
        Err(e) => {
            return Some(Violation {
                invariant: "setup".into(),
                detail: e.clone(),
            })
        }
    };
    if matches!(run.verdict, Verdict::Incomplete | Verdict::Refused) {
        return Some(Violation {
            invariant: "incomplete".into(),
            detail: run.trace.incomplete.clone().unwrap_or_default(),
        });
    }
    for name in ["breaker-offered", "iec-61851"] {
        if let Some(c) = run.checks.iter().find(|c| c.name == name && !c.passed) {
            return Some(Violation {
                invariant: name.into(),
                detail: c.failures.first().cloned().unwrap_or_default(),
            });
        }
    }
    None
}

// ---------------------------------------------------------------- sites

#[derive(Debug, Clone, PartialEq)]
pub struct GNode {
    pub parent: Option<usize>,
    pub limit_da: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GStation {
    pub node: usize,
    pub nameplate_da: u16,
    pub phases: u8,
    pub rotation: u8,
    pub fallback_da: u16,
    pub priority: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GCar {
    pub max_da: u16,
    pub phases: u8,
    pub delay_ms: u32,
    pub delay_max_ms: u32,
}

/// One timeline step of a generated site; stations are indices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GAction {
    Arrive(usize),
    Unplug(usize),
    Stop(usize),
    Request(usize),
    LoadOn(u32),
    LoadOff,
    Meter(&'static str),
    Misbehave(usize, &'static str),
    LinkDown,
    OneWay(usize, usize),
    Noise(u32, u32),
    Repair,
    Crash(usize),
    Reboot(usize),
    Weld(usize),
    Unweld(usize),
    /// A node's operator limit; `None`: the plan's back.
    SetLimit(usize, Option<u32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GStep {
    pub at_s: u32,
    pub action: GAction,
}

/// A generated site: everything a scenario file says.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub seed: u64,
    pub duration_s: u32,
    pub nodes: Vec<GNode>,
    /// Station 0 leads.
    pub stations: Vec<GStation>,
    /// One car per station.
    pub cars: Vec<GCar>,
    pub rotation: bool,
    /// The metered node and the worst case assumed without the meter.
    pub meter: Option<(usize, u32)>,
    pub steps: Vec<GStep>,
}

fn pick<T: Copy>(r: &mut SplitMix64, xs: &[T]) -> T {
    xs[r.below(xs.len() as u64) as usize]
}

fn range(r: &mut SplitMix64, lo: u64, hi: u64) -> u64 {
    lo + r.below(hi - lo + 1)
}

impl Site {
    /// The site for `seed`.
    #[must_use]
    pub fn generate(seed: u64, size: SiteSize, faults: Faults) -> Self {
        let mut r = SplitMix64::new(seed ^ 0xE8F1_0BE5);
        let (lo, hi, depth) = match size {
            SiteSize::Small => (2, 6, 2),
            SiteSize::Tree => (4, 24, 4),
            SiteSize::Large => (24, 64, 4),
        };
        let n = range(&mut r, lo, hi) as usize;
        // The tree: a root, then nodes under earlier nodes, up to `depth` levels.
        let n_nodes = range(&mut r, 1, (n as u64 / 2).clamp(1, 12)) as usize;
        let mut level = vec![0usize];
        let mut nodes = vec![GNode {
            parent: None,
            limit_da: 0,
        }];
        for _ in 1..n_nodes {
            let candidates: Vec<usize> =
                (0..nodes.len()).filter(|&k| level[k] + 1 < depth).collect();
            if candidates.is_empty() {
                break;
            }
            let p = pick(&mut r, &candidates);
            level.push(level[p] + 1);
            nodes.push(GNode {
                parent: Some(p),
                limit_da: 0,
            });
        }
        let rotation = r.below(2) == 0;
        let mut stations = Vec::new();
        let mut cars = Vec::new();
        for _ in 0..n {
            let phases = if r.below(4) == 0 { 3 } else { 1 };
            stations.push(GStation {
                node: r.below(nodes.len() as u64) as usize,
                nameplate_da: pick(&mut r, &[160, 200, 250, 320, 400, 480]),
                phases,
                rotation: r.below(3) as u8,
                fallback_da: 0,
                priority: if r.below(5) == 0 { 1 } else { 0 },
            });
            let delay_ms = range(&mut r, 200, 3_000) as u32;
            cars.push(GCar {
                max_da: pick(&mut r, &[100, 160, 200, 320, 480]),
                phases: if r.below(3) == 0 { 3 } else { 1 },
                delay_ms,
                delay_max_ms: delay_ms + range(&mut r, 0, 2_000) as u32,
            });
        }
        let mut site = Self {
            seed,
            duration_s: range(&mut r, 5, 20) as u32 * 60,
            nodes,
            stations,
            cars,
            rotation,
            meter: None,
            steps: Vec::new(),
        };
        site.size_limits(&mut r);
        site.add_fallbacks(&mut r);
        if matches!(faults, Faults::All | Faults::Meter) && r.below(3) == 0 {
            let node = r.below(site.nodes.len() as u64) as usize;
            let worst = (site.nodes[node].limit_da / 2).max(60);
            site.meter = Some((node, worst));
        }
        site.add_steps(&mut r, faults);
        site
    }

    /// Per node, the lowest limit the leader takes at run time: the
    /// stations' fallbacks under it, and 6 A each without rotation, on its
    /// busiest phase (the group's rules, as the validator states them).
    fn limit_floors(&self) -> Vec<u32> {
        let counts = self.counts();
        let mut fallbacks = vec![[0u32; 3]; self.nodes.len()];
        for s in &self.stations {
            let mut cur = Some(s.node);
            while let Some(k) = cur {
                for (p, slot) in fallbacks[k].iter_mut().enumerate() {
                    if s.phases >= 3 || usize::from(s.rotation) == p {
                        *slot += u32::from(s.fallback_da);
                    }
                }
                cur = self.nodes[k].parent;
            }
        }
        (0..self.nodes.len())
            .map(|k| {
                (0..3)
                    .map(|p| {
                        let six = if self.rotation { 0 } else { counts[k][p] * 60 };
                        six.max(fallbacks[k][p])
                    })
                    .max()
                    .unwrap_or(0)
                    .max(60)
            })
            .collect()
    }

    /// Per node and phase: how many stations load it.
    fn counts(&self) -> Vec<[u32; 3]> {
        let mut c = vec![[0u32; 3]; self.nodes.len()];
        for s in &self.stations {
            let mut cur = Some(s.node);
            while let Some(k) = cur {
                for (p, slot) in c[k].iter_mut().enumerate() {
                    if s.phases >= 3 || usize::from(s.rotation) == p {
                        *slot += 1;
                    }
                }
                cur = self.nodes[k].parent;
            }
        }
        c
    }

    /// Limits the validator accepts: at least 6 A for every station under a
    /// node without rotation, at least one 6 A share with it; often less
    /// than every nameplate (sharing is the point).
    fn size_limits(&mut self, r: &mut SplitMix64) {
        let counts = self.counts();
        for (k, node) in self.nodes.iter_mut().enumerate() {
            let busiest = counts[k].iter().copied().max().unwrap_or(0).max(1);
            let floor = if self.rotation { 60 } else { busiest * 60 };
            let spread = range(r, 0, u64::from(busiest) * 300) as u32;
            node.limit_da = (floor + spread).div_ceil(10) * 10;
        }
    }

    /// Fallbacks where every node on the path still holds them all.
    fn add_fallbacks(&mut self, r: &mut SplitMix64) {
        let mut used = vec![[0u32; 3]; self.nodes.len()];
        for i in 0..self.stations.len() {
            if r.below(2) == 0 {
                continue;
            }
            let s = &self.stations[i];
            let want = 60u32;
            let mut fits = true;
            let mut cur = Some(s.node);
            while let Some(k) = cur {
                for p in 0..3 {
                    if (s.phases >= 3 || usize::from(s.rotation) == p)
                        && used[k][p] + want > self.nodes[k].limit_da
                    {
                        fits = false;
                    }
                }
                cur = self.nodes[k].parent;
            }
            if fits {
                let mut cur = Some(s.node);
                while let Some(k) = cur {
                    for p in 0..3 {
                        if s.phases >= 3 || usize::from(s.rotation) == p {
                            used[k][p] += want;
                        }
                    }
                    cur = self.nodes[k].parent;
                }
                self.stations[i].fallback_da = want as u16;
            }
        }
    }

    fn add_steps(&mut self, r: &mut SplitMix64, faults: Faults) {
        let n = self.stations.len();
        let end = u64::from(self.duration_s);
        let mut steps = Vec::new();
        // Cars come and go.
        for i in 0..n {
            if r.below(5) == 0 {
                continue;
            }
            let at = range(r, 5, end / 2);
            steps.push(GStep {
                at_s: at as u32,
                action: GAction::Arrive(i),
            });
            if r.below(3) == 0 {
                let leave = range(r, at + 30, end.saturating_sub(10).max(at + 30));
                steps.push(GStep {
                    at_s: leave as u32,
                    action: pick(r, &[GAction::Unplug(i), GAction::Stop(i)]),
                });
            }
        }
        // Faults at random times.
        let kinds: &[Faults] = match faults {
            Faults::All => &[
                Faults::Link,
                Faults::Node,
                Faults::Meter,
                Faults::Car,
                Faults::Pilot,
                Faults::Limit,
            ],
            f => match f {
                Faults::Link => &[Faults::Link],
                Faults::Node => &[Faults::Node],
                Faults::Meter => &[Faults::Meter],
                Faults::Car => &[Faults::Car],
                Faults::Limit => &[Faults::Limit],
                _ => &[Faults::Pilot],
            },
        };
        let floors = self.limit_floors();
        for _ in 0..range(r, 1, 4) {
            let at = range(r, 20, end.saturating_sub(30).max(21)) as u32;
            let back = at + range(r, 20, 120) as u32;
            let i = r.below(n as u64) as usize;
            let j = (i + 1 + r.below(n as u64 - 1) as usize) % n;
            let (a, b) = match pick(r, kinds) {
                Faults::Link => match r.below(3) {
                    0 => (GAction::LinkDown, Some(GAction::Repair)),
                    1 => (GAction::OneWay(i, j), Some(GAction::Repair)),
                    _ => (
                        GAction::Noise(range(r, 1, 30) as u32, range(r, 0, 10) as u32),
                        Some(GAction::Repair),
                    ),
                },
                Faults::Node => (GAction::Crash(i), Some(GAction::Reboot(i))),
                Faults::Meter if self.meter.is_some() => match r.below(3) {
                    0 => (
                        GAction::LoadOn(range(r, 20, 200) as u32 * 10 / 10),
                        Some(GAction::LoadOff),
                    ),
                    1 => (GAction::Meter("silent"), Some(GAction::Meter("ok"))),
                    _ => (GAction::Meter("garbage"), Some(GAction::Meter("ok"))),
                },
                Faults::Meter => (GAction::Crash(i), Some(GAction::Reboot(i))),
                Faults::Car => (
                    GAction::Misbehave(i, pick(r, &["ignore-reductions", "slow", "draws-in-b"])),
                    Some(GAction::Misbehave(i, "none")),
                ),
                Faults::Limit => {
                    let k = r.below(self.nodes.len() as u64) as usize;
                    let (floor, plan) = (floors[k], self.nodes[k].limit_da);
                    if floor >= plan {
                        // Nothing lower the leader would take: a crash instead.
                        (GAction::Crash(i), Some(GAction::Reboot(i)))
                    } else {
                        let da = (range(r, u64::from(floor), u64::from(plan)) as u32)
                            .div_ceil(10)
                            .saturating_mul(10)
                            .min(plan);
                        (
                            GAction::SetLimit(k, Some(da)),
                            Some(GAction::SetLimit(k, None)),
                        )
                    }
                }
                _ => match r.below(3) {
                    0 => (
                        GAction::Misbehave(
                            i,
                            pick(r, &["short-pilot", "no-diode", "shorted-diode"]),
                        ),
                        Some(GAction::Misbehave(i, "none")),
                    ),
                    1 => (GAction::Weld(i), Some(GAction::Unweld(i))),
                    _ => (
                        GAction::Misbehave(i, "short-pilot"),
                        Some(GAction::Misbehave(i, "none")),
                    ),
                },
            };
            steps.push(GStep {
                at_s: at,
                action: a,
            });
            if let Some(b) = b {
                if back < self.duration_s {
                    steps.push(GStep {
                        at_s: back,
                        action: b,
                    });
                }
            }
        }
        steps.sort_by_key(|s| s.at_s);
        self.steps = steps;
    }

    /// The site as a scenario file the corpus takes as it is.
    #[must_use]
    pub fn toml(&self, name: &str, description: &str) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "name = \"{name}\"");
        let _ = writeln!(
            t,
            "system = \"Randomised fault search (sharebench explore)\""
        );
        let _ = writeln!(t, "description = \"\"\"\n{description}\"\"\"");
        let _ = writeln!(t, "duration = \"{}s\"", self.duration_s);
        let _ = writeln!(t, "seed = {}", self.seed);
        for (k, n) in self.nodes.iter().enumerate() {
            let _ = writeln!(t, "\n[[node]]\nname = \"n{k}\"");
            if let Some(p) = n.parent {
                let _ = writeln!(t, "parent = \"n{p}\"");
            }
            let _ = writeln!(t, "limit = \"{}\"", amps(n.limit_da));
        }
        for (i, s) in self.stations.iter().enumerate() {
            let _ = writeln!(
                t,
                "\n[[station]]\nid = {}\nnode = \"n{}\"\nnameplate = \"{}\"\nphases = {}\nrotation = \"L{}\"\nfallback = \"{}\"\npriority = {}",
                i + 1,
                s.node,
                amps(u32::from(s.nameplate_da)),
                s.phases,
                s.rotation + 1,
                amps(u32::from(s.fallback_da)),
                s.priority
            );
            if i == 0 {
                let _ = writeln!(t, "leader = true");
            }
        }
        for (i, c) in self.cars.iter().enumerate() {
            let _ = writeln!(
                t,
                "\n[[car]]\nstation = {}\nmax = \"{}\"\nphases = {}\ndelay = \"{}ms\"\ndelay_max = \"{}ms\"",
                i + 1,
                amps(u32::from(c.max_da)),
                c.phases,
                c.delay_ms,
                c.delay_max_ms
            );
        }
        let _ = writeln!(
            t,
            "\n[sharing]\nrotation = \"{}\"",
            if self.rotation { "5min" } else { "off" }
        );
        if let Some((node, worst)) = self.meter {
            let _ = writeln!(
                t,
                "\n[meter]\nmode = \"headroom\"\nnode = \"n{node}\"\nworst_case_other = \"{}\"",
                amps(worst)
            );
        }
        for s in &self.steps {
            let _ = writeln!(t, "\n[[at]]\ntime = \"{}s\"", s.at_s);
            let st = |i: &usize| i + 1;
            let _ = match &s.action {
                GAction::Arrive(i) => writeln!(t, "do = \"arrive\"\nstation = {}", st(i)),
                GAction::Unplug(i) => writeln!(t, "do = \"unplug\"\nstation = {}", st(i)),
                GAction::Stop(i) => writeln!(t, "do = \"stop\"\nstation = {}", st(i)),
                GAction::Request(i) => writeln!(t, "do = \"request\"\nstation = {}", st(i)),
                GAction::LoadOn(da) => writeln!(
                    t,
                    "do = \"load-on\"\nname = \"other\"\nphases = \"L1\"\ncurrent = \"{}\"",
                    amps(*da)
                ),
                GAction::LoadOff => writeln!(t, "do = \"load-off\"\nname = \"other\""),
                GAction::Meter(m) => writeln!(t, "do = \"meter\"\nmode = \"{m}\""),
                GAction::Misbehave(i, k) => {
                    let value = match *k {
                        "slow" => "\nvalue = \"9s\"",
                        _ => "",
                    };
                    writeln!(
                        t,
                        "do = \"misbehave\"\nstation = {}\nkind = \"{k}\"{value}",
                        st(i)
                    )
                }
                GAction::LinkDown => writeln!(t, "do = \"link-down\""),
                GAction::OneWay(a, b) => {
                    writeln!(t, "do = \"one-way\"\nfrom = {}\nto = {}", st(a), st(b))
                }
                GAction::Noise(l, c) => writeln!(
                    t,
                    "do = \"noise\"\nloss = {}\ncorrupt = {}",
                    f64::from(*l) / 100.0,
                    f64::from(*c) / 100.0
                ),
                GAction::Repair => writeln!(t, "do = \"repair\""),
                GAction::Crash(i) => writeln!(t, "do = \"crash\"\nstation = {}", st(i)),
                GAction::Reboot(i) => writeln!(t, "do = \"reboot\"\nstation = {}", st(i)),
                GAction::Weld(i) => writeln!(t, "do = \"weld\"\nstation = {}", st(i)),
                GAction::Unweld(i) => writeln!(t, "do = \"unweld\"\nstation = {}", st(i)),
                GAction::SetLimit(k, da) => writeln!(
                    t,
                    "do = \"set-limit\"\nnode = \"n{k}\"\nlimit = \"{}\"",
                    da.map_or_else(|| "plan".to_string(), amps)
                ),
            };
        }
        t
    }

    /// The site as a loaded scenario.
    pub fn scenario(&self) -> Result<Scenario, String> {
        let name = format!("explore-{}", self.seed);
        Scenario::parse(
            Path::new(&format!("{name}.toml")),
            &self.toml(&name, "generated"),
        )
        .map_err(|e| e.to_string())
    }

    /// Simulated time of a run of it, hours.
    #[must_use]
    pub fn hours(&self) -> f64 {
        f64::from(self.duration_s) / 3_600.0
    }

    /// The site without station `k` (and its car and its steps), indices
    /// renumbered; `None` for the leader or the last follower.
    fn without_station(&self, k: usize) -> Option<Self> {
        if k == 0 || self.stations.len() <= 2 {
            return None;
        }
        let mut s = self.clone();
        s.stations.remove(k);
        s.cars.remove(k);
        let map = |i: usize| if i > k { i - 1 } else { i };
        s.steps.retain(|st| !st.action.involves(k));
        for st in &mut s.steps {
            st.action = st.action.renumber(map);
        }
        Some(s)
    }
}

impl GAction {
    fn involves(&self, k: usize) -> bool {
        match *self {
            Self::Arrive(i)
            | Self::Unplug(i)
            | Self::Stop(i)
            | Self::Request(i)
            | Self::Misbehave(i, _)
            | Self::Crash(i)
            | Self::Reboot(i)
            | Self::Weld(i)
            | Self::Unweld(i) => i == k,
            Self::OneWay(a, b) => a == k || b == k,
            _ => false,
        }
    }

    fn renumber(&self, f: impl Fn(usize) -> usize) -> Self {
        match *self {
            Self::Arrive(i) => Self::Arrive(f(i)),
            Self::Unplug(i) => Self::Unplug(f(i)),
            Self::Stop(i) => Self::Stop(f(i)),
            Self::Request(i) => Self::Request(f(i)),
            Self::Misbehave(i, k) => Self::Misbehave(f(i), k),
            Self::Crash(i) => Self::Crash(f(i)),
            Self::Reboot(i) => Self::Reboot(f(i)),
            Self::Weld(i) => Self::Weld(f(i)),
            Self::Unweld(i) => Self::Unweld(f(i)),
            Self::OneWay(a, b) => Self::OneWay(f(a), f(b)),
            other => other,
        }
    }
}

fn amps(da: u32) -> String {
    if da.is_multiple_of(10) {
        format!("{}A", da / 10)
    } else {
        format!("{}.{}A", da / 10, da % 10)
    }
}

// ---------------------------------------------------------------- runs

/// Run a site on the virtual bench; a panic is caught and reported.
pub fn run_site(site: &Site) -> Result<ScenarioRun, String> {
    let sc = site.scenario()?;
    std::panic::catch_unwind(|| crate::cli::run_sim(&sc, Some(site.seed)))
        .map_err(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_default();
            format!("panic: {msg}")
        })?
        .map_err(|e| e.to_string())
}

/// Cut `site` down while `invariant` still fails the same way; at most
/// `budget` runs. Returns the smallest site found and its violation.
pub fn shrink(
    site: &Site,
    v: &Violation,
    invariant: Invariant,
    budget: usize,
) -> (Site, Violation) {
    let mut best = site.clone();
    let mut best_v = v.clone();
    let mut runs = 0;
    let still = |s: &Site, runs: &mut usize| -> Option<Violation> {
        *runs += 1;
        if s.scenario().is_err() {
            return None;
        }
        invariant(s, &run_site(s)).filter(|w| w.invariant == v.invariant)
    };
    let mut progress = true;
    while progress && runs < budget {
        progress = false;
        // A shorter run: halve the time after the last step.
        let last = best.steps.iter().map(|s| s.at_s).max().unwrap_or(0);
        let shorter = (last + (best.duration_s - last.min(best.duration_s)) / 2).max(60);
        if shorter < best.duration_s {
            let mut c = best.clone();
            c.duration_s = shorter;
            if let Some(w) = still(&c, &mut runs) {
                (best, best_v, progress) = (c, w, true);
            }
        }
        // Fewer steps, the last first.
        let mut k = best.steps.len();
        while k > 0 && runs < budget {
            k -= 1;
            let mut c = best.clone();
            c.steps.remove(k);
            if let Some(w) = still(&c, &mut runs) {
                (best, best_v, progress) = (c, w, true);
            }
        }
        // Fewer stations.
        let mut k = best.stations.len();
        while k > 1 && runs < budget {
            k -= 1;
            if let Some(c) = best.without_station(k) {
                if let Some(w) = still(&c, &mut runs) {
                    (best, best_v, progress) = (c, w, true);
                }
            }
        }
        // Steps earlier: the same story sooner makes a shorter run.
        for k in 0..best.steps.len() {
            if runs >= budget {
                break;
            }
            let mut c = best.clone();
            c.steps[k].at_s /= 2;
            c.steps.sort_by_key(|s| s.at_s);
            if c.steps != best.steps {
                if let Some(w) = still(&c, &mut runs) {
                    (best, best_v, progress) = (c, w, true);
                }
            }
        }
    }
    (best, best_v)
}

// ---------------------------------------------------------------- the search

/// Options of `sharebench explore`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExploreArgs {
    /// How many seeded sites to run (default 200 unless --time is given).
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Run for this long of wall time instead (e.g. 10m).
    #[arg(long)]
    pub time: Option<String>,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    #[arg(long, value_enum, default_value_t = SiteSize::Small)]
    pub sites: SiteSize,
    #[arg(long, value_enum, default_value_t = Faults::All)]
    pub faults: Faults,
    /// Parallel runs (default: every core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Where shrunk failing scenarios go.
    #[arg(long, default_value = "target/sharebench/explore")]
    pub out: PathBuf,
    /// Runs the shrinker may spend on one failure.
    #[arg(long, default_value_t = 150)]
    pub shrink_budget: usize,
}

/// What a search found.
#[derive(Debug, Default)]
pub struct Summary {
    pub runs: u64,
    pub site_hours: f64,
    pub wall: Duration,
    /// Per violation: the seed, the shrunk site and what broke.
    pub failures: Vec<(u64, Site, Violation)>,
}

/// Search seeds `first..` until `seeds` ran or `deadline` passed, on `jobs`
/// threads, checking `invariant`; shrink every failure.
pub fn search(
    a: &ExploreArgs,
    seeds: u64,
    deadline: Option<Instant>,
    invariant: Invariant,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Summary {
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let found: Arc<Mutex<Vec<(u64, Site, Violation)>>> = Arc::default();
    let hours = Mutex::new(0.0f64);
    let done = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= seeds {
                    break;
                }
                let seed = a.first_seed + k;
                let site = Site::generate(seed, a.sites, a.faults);
                let run = run_site(&site);
                if let Ok(h) = hours.lock().as_deref_mut() {
                    *h += site.hours();
                }
                if let Some(v) = invariant(&site, &run) {
                    let (small, v) = shrink(&site, &v, invariant, a.shrink_budget);
                    if let Ok(mut f) = found.lock() {
                        f.push((seed, small, v));
                    }
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(n, found.lock().map_or(0, |f| f.len() as u64));
            });
        }
    });
    stop.store(true, Ordering::Relaxed);
    let mut failures = found.lock().map(|f| f.clone()).unwrap_or_default();
    failures.sort_by_key(|f| f.0);
    Summary {
        runs: done.load(Ordering::Relaxed),
        site_hours: hours.lock().map_or(0.0, |h| *h),
        wall: started.elapsed(),
        failures,
    }
}

/// A `--sites`/`--faults` value as the command line spells it.
fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}

/// Write each failure as a scenario file; the paths.
pub fn write_failures(out: &Path, s: &Summary, a: &ExploreArgs) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut paths = Vec::new();
    for (seed, site, v) in &s.failures {
        let name = format!("explore-{seed}");
        let description = format!(
            "Found by `sharebench explore --sites {} --faults {} --first-seed {seed} --seeds 1` (seed {seed}), shrunk:\nit breaks {}: {}\n",
            value_name(a.sites),
            value_name(a.faults),
            v.invariant,
            v.detail.replace('"', "'").replace('\\', "/")
        );
        let path = out.join(format!("{name}.toml"));
        std::fs::write(&path, site.toml(&name, &description))?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests;
