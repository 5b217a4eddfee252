//! The harness's reference allocator: a test oracle, written apart from the
//! firmware's allocator on purpose and as plainly as possible.
//!
//! It raises every admitted station by 0.1 A at a time, round robin, until
//! nothing more fits under any node or cap: slow, obviously max-min fair,
//! and sharing no code with `firmware::sharing::alloc`. Admission takes
//! stations by priority, then in arrival order, while 6 A more fits.
//!
//! The specification it encodes for a car that draws less than its share:
//! the share is reclaimed down to the car's draw plus 0.5 A (the margin that
//! lets the station see the car ask for more; sharing-quality requirement:
//! at most 0.5 A).

use crate::scenario::{Action, Bound, Expectation, Scenario};

/// A car that draws less than its share keeps this much above its draw.
pub const RECLAIM_MARGIN_DA: u16 = 5;

/// One station's demand for the oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// What it may take at most (0 when its car does not ask), deciamps.
    pub cap_da: u16,
    /// Lower is admitted first within a priority.
    pub arrival: u64,
}

/// A node of the supply tree as the oracle sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteNode {
    pub parent: Option<usize>,
    /// What may flow on each phase, deciamps.
    pub limit_da: u32,
}

/// A station as the oracle sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteStation {
    pub node: usize,
    /// Which grid phases it loads.
    pub loads: [bool; 3],
    pub priority: u8,
    pub weight: u8,
}

/// Max-min fair shares for `wants` (one per station) on the scenario's
/// site, deciamps.
#[must_use]
pub fn allocate(sc: &Scenario, wants: &[Want]) -> Vec<u16> {
    let limits: Vec<u32> = sc.nodes.iter().map(|n| n.limit_da).collect();
    allocate_under(sc, &limits, wants)
}

/// As [`allocate`], with each node's limit in force (`limits[node]`: an
/// operator's limit, or the plan's).
#[must_use]
pub fn allocate_under(sc: &Scenario, limits: &[u32], wants: &[Want]) -> Vec<u16> {
    let nodes: Vec<SiteNode> = sc
        .nodes
        .iter()
        .zip(limits)
        .map(|(n, &limit_da)| SiteNode {
            parent: n.parent,
            limit_da,
        })
        .collect();
    let stations: Vec<SiteStation> = sc
        .stations
        .iter()
        .map(|s| SiteStation {
            node: s.node,
            loads: s.loads(),
            priority: s.priority,
            weight: s.weight,
        })
        .collect();
    allocate_site(&nodes, &stations, wants)
}

/// Max-min fair shares for `wants` (one per station) on a site given as
/// plain nodes and stations, deciamps. Stations name nodes by index and
/// nodes their parents; a station or parent out of range loads nothing.
#[must_use]
pub fn allocate_site(nodes: &[SiteNode], stations: &[SiteStation], wants: &[Want]) -> Vec<u16> {
    let n = stations.len().min(wants.len());
    let mut alloc = vec![0u16; stations.len()];
    let mut used = vec![[0u32; 3]; nodes.len()];
    let path = |i: usize| -> Vec<usize> {
        let mut v = Vec::new();
        let mut cur = Some(stations[i].node);
        while let Some(c) = cur {
            if c >= nodes.len() || v.contains(&c) {
                break;
            }
            v.push(c);
            cur = nodes[c].parent;
        }
        v
    };
    let fits = |used: &Vec<[u32; 3]>, i: usize, extra: u32| {
        let loads = stations[i].loads;
        path(i)
            .into_iter()
            .all(|node| (0..3).all(|p| !loads[p] || used[node][p] + extra <= nodes[node].limit_da))
    };
    let add = |used: &mut Vec<[u32; 3]>, i: usize, extra: u32| {
        let loads = stations[i].loads;
        for node in path(i) {
            for p in 0..3 {
                if loads[p] {
                    used[node][p] += extra;
                }
            }
        }
    };
    let mut prios: Vec<u8> = stations.iter().map(|s| s.priority).collect();
    prios.sort_unstable();
    prios.dedup();
    for prio in prios.into_iter().rev() {
        let mut class: Vec<usize> = (0..n)
            .filter(|&i| stations[i].priority == prio && wants[i].cap_da >= 60)
            .collect();
        class.sort_by_key(|&i| (wants[i].arrival, i));
        let mut admitted = Vec::new();
        for i in class {
            if fits(&used, i, 60) {
                add(&mut used, i, 60);
                alloc[i] = 60;
                admitted.push(i);
            }
        }
        // 0.1 A at a time, round robin, weighted by repeating a station.
        loop {
            let mut moved = false;
            for &i in &admitted {
                for _ in 0..stations[i].weight.max(1) {
                    if alloc[i] < wants[i].cap_da && fits(&used, i, 1) {
                        add(&mut used, i, 1);
                        alloc[i] += 1;
                        moved = true;
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }
    alloc
}

/// Fill in the expected allocation after every step that has none, by
/// replaying who asks for energy. Where the oracle does not know the state
/// it computes nothing and says so in `sc.expect.reference_notes` (which
/// the convergence checks put in the report):
/// - a link fault (link down, one-way, partition, noise) or a crashed
///   station: nothing until the link is repaired and every crashed station
///   rebooted; the step that ends the fault gets the fair shares again,
///   with the leader timeout added to its deadline (the group re-forms);
/// - a forged frame: nothing for that step (the stations must ignore it);
/// - a misbehaving car, a welded contactor or a meter fault: nothing for
///   the rest of the run (the firmware may lock a station out for good);
/// - a metered site: nothing at all (the oracle has no model of the meter).
pub fn fill_expectations(sc: &mut Scenario) {
    sc.expect.reference_notes.clear();
    if sc.meter.is_some() {
        sc.expect.reference_notes.push(
            "no reference expectations: the reference allocator does not model a metered site"
                .into(),
        );
        return;
    }
    let n = sc.stations.len();
    let mut asking = vec![false; n];
    let mut arrival = vec![0u64; n];
    let car_max: Vec<u16> = (0..n)
        .map(|i| {
            sc.cars
                .iter()
                .find(|c| c.station == i)
                .map_or(320, |c| c.max_da)
        })
        .collect();
    let within = sc.expect.converge_within_us;
    let mut link_fault = false;
    let mut crashed = vec![false; n];
    let mut limits: Vec<u32> = sc.nodes.iter().map(|n| n.limit_da).collect();
    let leader = sc.stations.iter().position(|s| s.leader).unwrap_or(0);
    let mut stopped: Option<(u64, String)> = None;
    for k in 0..sc.timeline.len() {
        let step = &sc.timeline[k];
        let what = crate::runner::describe(sc, &step.action);
        let t = step.at_us;
        let was_blind = link_fault || crashed.contains(&true);
        let mut skip_this = false;
        match step.action {
            Action::Arrive(i) => {
                asking[i] = true;
                arrival[i] = t;
            }
            Action::Request(i) => {
                if !asking[i] {
                    arrival[i] = t;
                }
                asking[i] = true;
            }
            Action::Unplug(i) | Action::Stop(i) | Action::Pause(i) => asking[i] = false,
            Action::Plug(_) | Action::Load { .. } | Action::Check => {}
            Action::LinkDown
            | Action::OneWay { .. }
            | Action::Partition(_)
            | Action::Noise { .. } => link_fault = true,
            Action::Repair => link_fault = false,
            // A limit sent to a crashed leader is lost.
            Action::SetLimit { node, da } if !crashed[leader] => {
                limits[node] = da.unwrap_or(sc.nodes[node].limit_da);
            }
            Action::SetLimit { .. } => {}
            Action::Crash(i) => crashed[i] = true,
            Action::Reboot(i) => {
                // A leader that boots has the plan's limits again.
                if i == leader {
                    for (l, node) in limits.iter_mut().zip(&sc.nodes) {
                        *l = node.limit_da;
                    }
                }
                // A reboot of a running station: it rejoins; nothing to
                // expect while it does.
                skip_this = !crashed[i];
                crashed[i] = false;
            }
            Action::Forge => skip_this = true,
            // Clearing what never started changes nothing.
            Action::Meter(rig::meter::MeterFault::None)
            | Action::Misbehave(_, rig::protocol::Misbehave::None) => {}
            Action::Meter(_) | Action::Misbehave(..) | Action::Welded(..) | Action::Car(..) => {
                sc.expect.reference_notes.push(format!(
                    "reference expectations stop at {} ({what}): the reference allocator cannot model it; none after",
                    crate::checks::when(t)
                ));
                return;
            }
        }
        let blind = link_fault || crashed.contains(&true);
        if blind && !was_blind {
            stopped = Some((t, what.clone()));
        }
        let resumed = was_blind && !blind;
        if resumed {
            if let Some((from, why)) = stopped.take() {
                sc.expect.reference_notes.push(format!(
                    "reference expectations paused from {} ({why}) to {} ({what})",
                    crate::checks::when(from),
                    crate::checks::when(t)
                ));
            }
        }
        if blind || skip_this {
            continue;
        }
        if sc.timeline[k].expect.is_some() {
            continue;
        }
        let wants: Vec<Want> = (0..n)
            .map(|i| Want {
                cap_da: if asking[i] && sc.sharing.enabled {
                    sc.stations[i]
                        .cap_da()
                        .min(car_max[i].saturating_add(RECLAIM_MARGIN_DA))
                } else {
                    0
                },
                arrival: arrival[i],
            })
            .collect();
        let exact = allocate_under(sc, &limits, &wants);
        // Exact here; the convergence check gives a reference 0.1 A.
        sc.timeline[k].expect = Some(Expectation {
            offers: exact
                .into_iter()
                .map(|da| Bound::around(u32::from(da), 0))
                .collect(),
            nodes: Vec::new(),
            spread: None,
            cars: Vec::new(),
            within_us: if resumed {
                within.saturating_add(sc.sharing.leader_timeout_us)
            } else {
                within
            },
            until_us: None,
            from_reference: true,
        });
    }
    if let Some((from, why)) = stopped {
        sc.expect.reference_notes.push(format!(
            "reference expectations stop at {} ({why}): the fault is never cleared",
            crate::checks::when(from)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sc(text: &str) -> Scenario {
        Scenario::parse(Path::new("t.toml"), text).unwrap()
    }

    const SITE: &str = r#"
duration = "10min"
[[node]]
name = "panel"
limit = "200A"
[[node]]
name = "c1"
parent = "panel"
limit = "48A"
[[node]]
name = "c2"
parent = "panel"
limit = "48A"
[[station]]
id = 0
node = "c1"
nameplate = "48A"
phases = 3
leader = true
[[station]]
id = 1
node = "c1"
nameplate = "48A"
phases = 3
[[station]]
id = 2
node = "c2"
nameplate = "48A"
phases = 3
[sharing]
rotation = "off"
"#;

    #[test]
    fn shares_under_nested_limits() {
        let s = sc(SITE);
        let w = |cap: u16, arrival: u64| Want {
            cap_da: cap,
            arrival,
        };
        assert_eq!(
            allocate(&s, &[w(480, 0), w(480, 1), w(480, 2)]),
            vec![240, 240, 480]
        );
        assert_eq!(
            allocate(&s, &[w(480, 0), w(0, 1), w(100, 2)]),
            vec![480, 0, 100]
        );
    }

    #[test]
    fn expectations_follow_arrivals() {
        let mut text = SITE.to_string();
        text.push_str("[expect]\nreference = true\n[[at]]\ntime = \"1s\"\ndo = \"arrive\"\nstation = 0\n[[at]]\ntime = \"60s\"\ndo = \"arrive\"\nstation = 1\n");
        let s = sc(&text);
        assert_eq!(
            s.timeline[0].expect.as_ref().unwrap().exact_offers(),
            Some(vec![325, 0, 0]),
            "a 32 A car (the default) keeps 0.5 A above its draw"
        );
        assert_eq!(
            s.timeline[1].expect.as_ref().unwrap().exact_offers(),
            Some(vec![240, 240, 0])
        );
    }

    #[test]
    fn expectations_pause_over_a_link_fault_and_stop_at_a_misbehaving_car() {
        let mut text = SITE.to_string();
        text.push_str("[expect]\nreference = true\n");
        for (time, act, station) in [
            ("1s", "arrive", Some(0)),
            ("30s", "link-down", None),
            ("40s", "arrive", Some(1)),
            ("60s", "repair", None),
            ("90s", "arrive", Some(2)),
            ("120s", "crash", Some(2)),
            ("150s", "reboot", Some(2)),
            ("200s", "misbehave", Some(1)),
            ("230s", "unplug", Some(0)),
        ] {
            text.push_str(&format!("[[at]]\ntime = \"{time}\"\ndo = \"{act}\"\n"));
            if let Some(st) = station {
                text.push_str(&format!("station = {st}\n"));
            }
            if act == "misbehave" {
                text.push_str("kind = \"overdraw\"\nvalue = \"4A\"\n");
            }
        }
        let s = sc(&text);
        let exact: Vec<Option<Vec<u16>>> = s
            .timeline
            .iter()
            .map(|st| {
                st.expect.as_ref().and_then(|e| e.exact_offers()).map(|v| {
                    v.into_iter()
                        .map(|d| u16::try_from(d).unwrap_or(u16::MAX))
                        .collect()
                })
            })
            .collect();
        assert_eq!(
            exact,
            vec![
                Some(vec![325, 0, 0]),
                None,
                None,
                // The repair: both cars on c1 share again.
                Some(vec![240, 240, 0]),
                Some(vec![240, 240, 325]),
                None,
                Some(vec![240, 240, 325]),
                None,
                None,
            ]
        );
        let repair = s.timeline[3].expect.as_ref().unwrap();
        assert_eq!(
            repair.within_us,
            s.expect.converge_within_us + s.sharing.leader_timeout_us
        );
        assert_eq!(
            s.expect.reference_notes,
            vec![
                "reference expectations paused from t=30.000 s (link down) to t=60.000 s (link repaired)".to_string(),
                "reference expectations paused from t=120.000 s (crash st2) to t=150.000 s (reboot st2)".to_string(),
                "reference expectations stop at t=200.000 s (misbehave st1 overdraw 4.0 A): the reference allocator cannot model it; none after".to_string(),
            ]
        );
    }
}
