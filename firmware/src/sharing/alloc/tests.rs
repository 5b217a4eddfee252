use super::*;
use proptest::prelude::*;

const ONE: [bool; 3] = [true, false, false];
const THREE: [bool; 3] = [true, true, true];

fn asking(node: u16, phases: [bool; 3], cap_da: u16) -> StationSlot {
    StationSlot::new(Demand {
        node,
        phases,
        cap_da,
        weight: 1,
        priority: 0,
        rank: 0,
        start_da: MIN_DA,
        fixed_da: 0,
    })
}

fn scratch<'a>(a: &'a mut [[u64; 3]], b: &'a mut [[u64; 3]]) -> Scratch<'a> {
    Scratch {
        per_station: a,
        per_node: b,
    }
}

fn run(nodes: &mut [NodeSlot], stations: &mut [StationSlot]) -> Vec<u16> {
    let (mut a, mut b) = (vec![[0; 3]; stations.len()], vec![[0; 3]; nodes.len()]);
    allocate(nodes, stations, scratch(&mut a, &mut b)).unwrap();
    stations.iter().map(|s| s.alloc_da).collect()
}

fn flat(limit_da: u32) -> [u32; 3] {
    [limit_da; 3]
}

#[test]
fn four_stations_on_a_48_a_circuit_arrive_and_leave() {
    let mut nodes = [NodeSlot::new(None, flat(480))];
    let mut st: Vec<_> = (0..4).map(|_| asking(0, ONE, 0)).collect();
    let expect = [
        vec![480, 0, 0, 0],
        vec![240, 240, 0, 0],
        vec![160, 160, 160, 0],
        vec![120, 120, 120, 120],
    ];
    for (n, want) in expect.iter().enumerate() {
        st[n].demand.cap_da = 480;
        assert_eq!(&run(&mut nodes, &mut st), want, "{} cars", n + 1);
    }
    // And back as they leave.
    for (n, want) in expect.iter().rev().skip(1).enumerate() {
        st[3 - n].demand.cap_da = 0;
        assert_eq!(&run(&mut nodes, &mut st), want, "{} cars left", n + 1);
    }
}

#[test]
fn eight_stations_with_own_breakers_in_a_200_a_panel() {
    let mut nodes = vec![NodeSlot::new(None, flat(2_000))];
    for _ in 0..8 {
        nodes.push(NodeSlot::new(Some(0), flat(480)));
    }
    let mut st: Vec<_> = (1..=8).map(|n| asking(n, THREE, 0)).collect();
    st[0].demand.cap_da = 480;
    assert_eq!(run(&mut nodes, &mut st)[0], 480);
    for s in &mut st {
        s.demand.cap_da = 480;
    }
    assert_eq!(run(&mut nodes, &mut st), vec![250; 8]);
}

#[test]
fn four_circuits_of_three_in_a_200_a_panel() {
    let mut nodes = vec![NodeSlot::new(None, flat(2_000))];
    for _ in 0..4 {
        nodes.push(NodeSlot::new(Some(0), flat(480)));
    }
    let mut st: Vec<_> = (0..12).map(|i| asking(1 + i / 3, THREE, 480)).collect();
    assert_eq!(run(&mut nodes, &mut st), vec![160; 12]);
}

#[test]
fn forum_example_64_a() {
    let mut nodes = [NodeSlot::new(None, flat(640))];
    let mut st = vec![asking(0, ONE, 800), asking(0, ONE, 0)];
    assert_eq!(run(&mut nodes, &mut st), vec![640, 0]);
    st[1].demand.cap_da = 800;
    assert_eq!(run(&mut nodes, &mut st), vec![320, 320]);
}

#[test]
fn unused_offer_goes_to_the_others() {
    let mut nodes = [NodeSlot::new(None, flat(480))];
    // Car 0 draws only 10 A, so its cap is 10 A.
    let mut st = vec![
        asking(0, ONE, 100),
        asking(0, ONE, 480),
        asking(0, ONE, 480),
    ];
    assert_eq!(run(&mut nodes, &mut st), vec![100, 190, 190]);
}

#[test]
fn six_a_or_nothing_and_rank_decides_who_waits() {
    let mut nodes = [NodeSlot::new(None, flat(180))];
    let mut st: Vec<_> = (0..4).map(|_| asking(0, ONE, 320)).collect();
    for (i, s) in st.iter_mut().enumerate() {
        s.demand.rank = [3, 1, 0, 2][i];
    }
    // 18 A: three cars at 6 A, the one ranked last waits.
    assert_eq!(run(&mut nodes, &mut st), vec![0, 60, 60, 60]);
}

#[test]
fn priority_is_served_first() {
    let mut nodes = [NodeSlot::new(None, flat(320))];
    let mut st = vec![asking(0, ONE, 320), asking(0, ONE, 320)];
    st[1].demand.priority = 1;
    assert_eq!(run(&mut nodes, &mut st), vec![0, 320]);
    st[1].demand.cap_da = 200;
    assert_eq!(run(&mut nodes, &mut st), vec![120, 200]);
}

#[test]
fn weights_share_above_the_minimum() {
    let mut nodes = [NodeSlot::new(None, flat(300))];
    let mut st = vec![asking(0, ONE, 480), asking(0, ONE, 480)];
    st[1].demand.weight = 2;
    // 30 A: 6 + 6, then 18 A split 1:2.
    assert_eq!(run(&mut nodes, &mut st), vec![120, 180]);
}

#[test]
fn phases_are_limited_separately() {
    let mut nodes = [NodeSlot::new(None, flat(320))];
    let mut st = vec![
        asking(0, [true, false, false], 320),
        asking(0, [false, true, false], 320),
        asking(0, THREE, 320),
    ];
    // L1: a + c <= 32, L2: b + c <= 32, L3: c <= 32.
    assert_eq!(run(&mut nodes, &mut st), vec![160, 160, 160]);
}

#[test]
fn fixed_reservations_come_first() {
    let mut nodes = [NodeSlot::new(None, flat(480))];
    let mut st = vec![asking(0, ONE, 480), asking(0, ONE, 480)];
    st[0].demand.fixed_da = 200;
    assert_eq!(run(&mut nodes, &mut st), vec![200, 280]);
}

#[test]
fn start_margin_keeps_a_paused_car_paused() {
    let mut nodes = [NodeSlot::new(None, flat(65))];
    let mut st = vec![asking(0, ONE, 320)];
    st[0].demand.start_da = 70;
    assert_eq!(run(&mut nodes, &mut st), vec![0]);
    st[0].demand.start_da = 60;
    assert_eq!(run(&mut nodes, &mut st), vec![65]);
}

#[test]
fn bad_trees_are_errors() {
    let mut buf = ScratchBuf::<1, 2>::new();
    let mut st = [asking(0, ONE, 100)];
    let mut nodes = [
        NodeSlot::new(Some(1), flat(10)),
        NodeSlot::new(Some(0), flat(10)),
    ];
    assert!(matches!(
        allocate(&mut nodes, &mut st, buf.as_scratch()),
        Err(AllocError::Cycle { .. })
    ));
    let mut nodes = [NodeSlot::new(Some(7), flat(10))];
    assert_eq!(
        allocate(&mut nodes, &mut st, buf.as_scratch()),
        Err(AllocError::UnknownParent { node: 0, parent: 7 })
    );
    let mut nodes = [NodeSlot::new(None, flat(10))];
    let mut st = [asking(3, ONE, 100)];
    assert_eq!(
        allocate(&mut nodes, &mut st, buf.as_scratch()),
        Err(AllocError::UnknownNode {
            station: 0,
            node: 3
        })
    );
    let mut short = ScratchBuf::<0, 1>::new();
    assert_eq!(
        allocate(&mut nodes, &mut st, short.as_scratch()),
        Err(AllocError::ScratchTooShort { needed: 1, got: 0 })
    );
}

/// A random tree: nodes with parents of lower index (1 to 40 nodes, some
/// of them extra roots), stations anywhere, with every input of a demand
/// varied: phases, caps (some under 6 A, some not asking), weights 1-8,
/// priorities 0-2, ranks, start currents from 6 A to 12 A and, for one
/// station in eight, a fixed reservation.
fn tree_and_demands() -> impl Strategy<Value = (Vec<NodeSlot>, Vec<StationSlot>)> {
    (1usize..40, 1usize..300).prop_flat_map(|(n_nodes, n_st)| {
        let nodes = proptest::collection::vec(
            (any::<u16>(), 0u32..5_000, 0u32..5_000, 0u32..5_000),
            n_nodes,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (p, a, b, c))| {
                    let parent = if i == 0 || p % 7 == 0 {
                        None
                    } else {
                        Some(p % i as u16)
                    };
                    NodeSlot::new(parent, [a, b, c])
                })
                .collect::<Vec<_>>()
        });
        let stations = proptest::collection::vec(
            (
                (any::<u16>(), 0u8..4, 0u16..800, 1u8..9),
                (0u8..3, any::<u32>(), 60u16..120, 0u8..8, 1u16..400),
            ),
            n_st,
        )
        .prop_map(move |v| {
            v.into_iter()
                .map(
                    |((node, ph, cap, w), (prio, rank, start, fixed_roll, fixed))| {
                        let phases = match ph {
                            0 => [true, false, false],
                            1 => [false, true, false],
                            2 => [false, false, true],
                            _ => [true, true, true],
                        };
                        let node = node % n_nodes as u16;
                        StationSlot::new(Demand {
                            node,
                            phases,
                            cap_da: cap,
                            weight: w,
                            priority: prio,
                            rank,
                            start_da: start,
                            fixed_da: if fixed_roll == 0 { fixed } else { 0 },
                        })
                    },
                )
                .collect::<Vec<_>>()
        });
        (nodes, stations)
    })
}

/// The same sites with every station loading the same phases (all on L1,
/// or all three-phase), where the weighted-fairness bound below holds.
fn uniform_tree_and_demands() -> impl Strategy<Value = (Vec<NodeSlot>, Vec<StationSlot>)> {
    (tree_and_demands(), any::<bool>()).prop_map(|((nodes, mut st), three)| {
        for s in &mut st {
            s.demand.phases = if three {
                [true; 3]
            } else {
                [true, false, false]
            };
        }
        (nodes, st)
    })
}

/// The allocator under test, as a function of its inputs: the real one, or
/// a deliberately wrong one that each property must catch.
type Allocator = fn(&mut [NodeSlot], &mut [StationSlot]);

fn real(nodes: &mut [NodeSlot], st: &mut [StationSlot]) {
    let (mut a, mut b) = (vec![[0; 3]; st.len()], vec![[0; 3]; nodes.len()]);
    // Generated trees are valid (parents of lower index, nodes in range).
    allocate(nodes, st, scratch(&mut a, &mut b)).unwrap();
}

/// Allocate on changed demands, report against the real ones.
fn with_demands(nodes: &mut [NodeSlot], st: &mut [StationSlot], change: fn(&mut Demand)) {
    let mut changed: Vec<StationSlot> = st.to_vec();
    for s in &mut changed {
        change(&mut s.demand);
    }
    real(nodes, &mut changed);
    for (s, c) in st.iter_mut().zip(&changed) {
        s.alloc_da = c.alloc_da;
    }
}

/// The properties below, each an exact statement of what the allocator
/// promises. They return the first counterexample found, so a test can
/// assert both that the real allocator passes and that a wrong one fails.
type Verdict = Result<(), String>;
type Property = fn(&[NodeSlot], &[StationSlot]) -> Verdict;

fn node_sums(
    nodes: &[NodeSlot],
    st: &[StationSlot],
    counts: impl Fn(&StationSlot) -> bool,
) -> Vec<[u64; 3]> {
    let mut sums = vec![[0u64; 3]; nodes.len()];
    for s in st.iter().filter(|s| counts(s)) {
        for c in path(nodes, s.demand.node) {
            for p in 0..3 {
                if s.demand.phases[p] {
                    sums[c][p] += u64::from(s.alloc_da);
                }
            }
        }
    }
    sums
}

fn path(nodes: &[NodeSlot], node: u16) -> Vec<usize> {
    let mut v = vec![];
    let mut cur = Some(node);
    while let Some(c) = cur {
        v.push(c as usize);
        cur = nodes[c as usize].parent;
    }
    v
}

/// Whether `amount` more for station `s` fits under every node of its path,
/// given the node sums `sums`.
fn fits(nodes: &[NodeSlot], sums: &[[u64; 3]], s: &StationSlot, amount: u64) -> bool {
    path(nodes, s.demand.node).into_iter().all(|n| {
        (0..3)
            .all(|p| !s.demand.phases[p] || sums[n][p] + amount <= u64::from(nodes[n].limit_da[p]))
    })
}

fn asks(s: &StationSlot) -> bool {
    s.demand.fixed_da == 0 && s.demand.cap_da >= MIN_DA
}

/// Safety and shape: a reservation gets exactly its amount (it is current
/// already flowing, which the allocator cannot take back); what the
/// allocator hands out fits under every node on every phase in the room the
/// reservations leave; everyone else gets 0 or between 6 A and its cap.
fn safe(nodes: &[NodeSlot], st: &[StationSlot]) -> Verdict {
    let fixed = node_sums(nodes, st, |s| s.demand.fixed_da > 0);
    let handed = node_sums(nodes, st, |s| s.demand.fixed_da == 0);
    for (i, n) in nodes.iter().enumerate() {
        for p in 0..3 {
            let room = u64::from(n.limit_da[p]).saturating_sub(fixed[i][p]);
            if handed[i][p] > room {
                return Err(format!(
                    "node {i} phase {p}: {} handed out, {room} left by reservations of {}",
                    handed[i][p], fixed[i][p]
                ));
            }
        }
    }
    for (i, s) in st.iter().enumerate() {
        let d = s.demand;
        let ok = if d.fixed_da > 0 {
            s.alloc_da == d.fixed_da
        } else {
            s.alloc_da == 0 || (s.alloc_da >= MIN_DA && s.alloc_da <= d.cap_da)
        };
        if !ok {
            return Err(format!(
                "station {i} got {} (cap {}, fixed {})",
                s.alloc_da, d.cap_da, d.fixed_da
            ));
        }
    }
    Ok(())
}

/// Admission, exactly: classes are served from the highest priority down,
/// and within a class in rank order (then index); a station is admitted
/// (given 6 A, to grow from) if and only if its start current (at least
/// 6 A, at most its cap) fits on its whole path over what was taken before
/// it: every reservation, the final shares of the higher classes, and 6 A
/// for each station of its class admitted before it.
fn admission(nodes: &[NodeSlot], st: &[StationSlot]) -> Verdict {
    let mut prios: Vec<u8> = st
        .iter()
        .filter(|s| asks(s))
        .map(|s| s.demand.priority)
        .collect();
    prios.sort_unstable();
    prios.dedup();
    for &prio in prios.iter().rev() {
        let mut taken = node_sums(nodes, st, |s| {
            s.demand.fixed_da > 0 || (asks(s) && s.demand.priority > prio)
        });
        let mut class: Vec<usize> = (0..st.len())
            .filter(|&i| asks(&st[i]) && st[i].demand.priority == prio)
            .collect();
        class.sort_by_key(|&i| (st[i].demand.rank, i));
        for i in class {
            let d = st[i].demand;
            let start = u64::from(d.start_da.max(MIN_DA).min(d.cap_da));
            let should = fits(nodes, &taken, &st[i], start);
            if should != (st[i].alloc_da > 0) {
                return Err(format!(
                    "station {i} (prio {prio}, rank {}, start {start}) got {} although its start {} fit",
                    d.rank,
                    st[i].alloc_da,
                    if should { "did" } else { "did not" }
                ));
            }
            if should {
                for n in path(nodes, d.node) {
                    for p in 0..3 {
                        if d.phases[p] {
                            taken[n][p] += u64::from(MIN_DA);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Non-wastefulness: a station below its cap is blocked: when admitted, a
/// node on its path is full on a phase it loads (it cannot get 0.1 A more);
/// when not, its start current does not fit on its path. Room only shrinks
/// as the allocation proceeds, so both hold exactly at the end.
fn not_wasteful(nodes: &[NodeSlot], st: &[StationSlot]) -> Verdict {
    let sums = node_sums(nodes, st, |_| true);
    for (i, s) in st.iter().enumerate() {
        if !asks(s) || s.alloc_da >= s.demand.cap_da {
            continue;
        }
        let needs = if s.alloc_da > 0 {
            1
        } else {
            u64::from(s.demand.start_da.max(MIN_DA).min(s.demand.cap_da))
        };
        if fits(nodes, &sums, s, needs) {
            return Err(format!(
                "station {i} at {} of {} could take {needs} dA more",
                s.alloc_da, s.demand.cap_da
            ));
        }
    }
    Ok(())
}

/// Priority dominance: a station below its cap would be held there even if
/// every station of a lower class gave up its share: the lower classes only
/// ever take what the higher ones could not use.
fn priority_dominates(nodes: &[NodeSlot], st: &[StationSlot]) -> Verdict {
    for (i, s) in st.iter().enumerate() {
        if !asks(s) || s.alloc_da >= s.demand.cap_da {
            continue;
        }
        let prio = s.demand.priority;
        let above = node_sums(nodes, st, |o| {
            o.demand.fixed_da > 0 || o.demand.priority >= prio
        });
        // An admitted station needs 0.1 A more; one not admitted, its start.
        let needs = if s.alloc_da > 0 {
            1
        } else {
            u64::from(s.demand.start_da.max(MIN_DA).min(s.demand.cap_da))
        };
        if fits(nodes, &above, s, needs) {
            return Err(format!(
                "station {i} (prio {prio}) at {} of {} is held only by lower classes",
                s.alloc_da, s.demand.cap_da
            ));
        }
    }
    Ok(())
}

/// Weighted max-min fairness within a class: an admitted station below its
/// cap has a bottleneck on its path, a node-phase it loads that is full up
/// to rounding, under which no admitted station of its class has a larger
/// weighted share above 6 A, `(alloc - 6 A) / weight`, up to rounding.
///
/// The rounding bounds are derived, not fitted. In exact arithmetic the
/// class fills to a bottleneck `B` of the station: `B` is full and every
/// station of the class under it is frozen at a level `x / w` no higher
/// than the station's own. Each result is the exact share rounded down to
/// 0.1 A (losing less than 0.1 A per station) plus what the rounding pass
/// hands back, 0.1 A at a time to those with the least share first. So:
/// - `B` is left with at most 0.1 A of room per station of the class under
///   it (the fractions lost, each under 0.1 A plus the 2^-16 dA of the
///   level's own rounding, below), and later classes only take room away:
///   "full up to rounding" is `room <= 0.1 A x members under B`;
/// - a result is within (-0.1 A, +0.1 A] of its exact share (levels are
///   solved in steps of 2^-16 dA, rounded down, which can take a share that
///   is exactly a cap a hair under it: a station within 0.1 A of its cap is
///   taken as capped), so
///   `(a_j - 1) / w_j <= (a_i + 1) / w_i` in deciamps, compared as
///   `(a_j - 1) * w_i <= (a_i + 1) * w_j`.
fn weighted_fair(nodes: &[NodeSlot], st: &[StationSlot]) -> Verdict {
    let sums = node_sums(nodes, st, |_| true);
    for (i, s) in st.iter().enumerate() {
        // Within 0.1 A of its cap, a station may be capped and rounded down.
        if !asks(s) || s.alloc_da == 0 || s.alloc_da + 1 >= s.demand.cap_da {
            continue;
        }
        let wi = i64::from(s.demand.weight.max(1));
        let ai = i64::from(s.alloc_da - MIN_DA);
        let class_under = |n: usize, p: usize| {
            st.iter().filter(move |o| {
                asks(o)
                    && o.alloc_da > 0
                    && o.demand.priority == s.demand.priority
                    && o.demand.phases[p]
                    && path(nodes, o.demand.node).contains(&n)
            })
        };
        let held = path(nodes, s.demand.node).into_iter().any(|n| {
            (0..3).any(|p| {
                let members = class_under(n, p).count() as u64;
                s.demand.phases[p]
                    && sums[n][p] + members >= u64::from(nodes[n].limit_da[p])
                    && class_under(n, p).all(|o| {
                        (i64::from(o.alloc_da - MIN_DA) - 1) * wi
                            <= (ai + 1) * i64::from(o.demand.weight.max(1))
                    })
            })
        });
        if !held {
            let detail: Vec<String> = path(nodes, s.demand.node)
                .into_iter()
                .flat_map(|n| (0..3).filter(|&p| s.demand.phases[p]).map(move |p| (n, p)))
                .map(|(n, p)| {
                    let others: Vec<String> = st
                        .iter()
                        .enumerate()
                        .filter(|(_, o)| {
                            asks(o)
                                && o.alloc_da > 0
                                && o.demand.priority == s.demand.priority
                                && o.demand.phases[p]
                                && path(nodes, o.demand.node).contains(&n)
                        })
                        .map(|(j, o)| {
                            format!(
                                "{j}:{}w{}c{}n{}ph{:?}",
                                o.alloc_da,
                                o.demand.weight,
                                o.demand.cap_da,
                                o.demand.node,
                                o.demand.phases.map(u8::from)
                            )
                        })
                        .collect();
                    format!(
                        "node {n} p{p} sum {} lim {}: {}",
                        sums[n][p],
                        nodes[n].limit_da[p],
                        others.join(" ")
                    )
                })
                .collect();
            return Err(format!(
                "station {i} at {} (weight {wi}) could gain from a station with a larger weighted share\n{}",
                s.alloc_da, detail.join("\n")
            ));
        }
    }
    Ok(())
}

/// The properties that hold on every site. [`weighted_fair`] holds where
/// every station loads the same phases (see there).
const PROPERTIES: [(&str, Property); 4] = [
    ("safe", safe),
    ("admission", admission),
    ("not_wasteful", not_wasteful),
    ("priority_dominates", priority_dominates),
];

fn cases() -> u32 {
    // 256 random sites by default (about a second); `SHAREBENCH_LONG_PROPS=1`
    // runs 20,000 for a release check.
    if std::env::var_os("SHAREBENCH_LONG_PROPS").is_some() {
        20_000
    } else {
        256
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn every_allocation_property_holds((mut nodes, mut st) in tree_and_demands()) {
        real(&mut nodes, &mut st);
        for (name, check) in PROPERTIES {
            if let Err(e) = check(&nodes, &st) {
                prop_assert!(false, "{name}: {e}");
            }
        }
    }

    #[test]
    fn shares_are_weighted_max_min_fair((mut nodes, mut st) in uniform_tree_and_demands()) {
        real(&mut nodes, &mut st);
        if let Err(e) = weighted_fair(&nodes, &st) {
            prop_assert!(false, "{e}");
        }
    }
}

/// Each property catches the allocator that breaks it: run on the same
/// random sites, the wrong allocator fails the property in some case.
#[test]
fn each_property_fails_on_a_wrong_allocator() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let wrong: [(&str, &str, Allocator); 8] = [
        ("nobody gets anything", "not_wasteful", |_, st| {
            st.iter_mut().for_each(|s| s.alloc_da = 0);
        }),
        ("whole amperes only", "not_wasteful", |n, st| {
            real(n, st);
            st.iter_mut()
                .filter(|s| s.demand.fixed_da == 0 && s.alloc_da % 10 != 0 && s.alloc_da > MIN_DA)
                .for_each(|s| s.alloc_da -= s.alloc_da % 10);
        }),
        ("one over", "safe", |n, st| {
            real(n, st);
            if let Some(s) = st
                .iter_mut()
                .find(|s| s.alloc_da > 0 && s.demand.fixed_da == 0)
            {
                s.alloc_da += 1;
            }
        }),
        ("ignores priority", "priority_dominates", |n, st| {
            with_demands(n, st, |d| d.priority = 0);
        }),
        ("ignores weights", "weighted_fair", |n, st| {
            with_demands(n, st, |d| d.weight = 1);
        }),
        ("ignores start currents", "admission", |n, st| {
            with_demands(n, st, |d| d.start_da = MIN_DA);
        }),
        ("reverses the rank", "admission", |n, st| {
            with_demands(n, st, |d| d.rank = u32::MAX - d.rank);
        }),
        ("ignores reservations", "safe", |n, st| {
            with_demands(n, st, |d| d.fixed_da = 0);
        }),
    ];
    for (what, property, alloc) in wrong {
        let check = PROPERTIES
            .iter()
            .chain(&[("weighted_fair", weighted_fair as Property)])
            .find(|(name, _)| *name == property)
            .map(|(_, c)| *c)
            .unwrap();
        let mut runner = TestRunner::new(Config::default());
        let strategy = uniform_tree_and_demands();
        let caught = (0..500).any(|_| {
            let (mut nodes, mut st) = strategy.new_tree(&mut runner).unwrap().current();
            alloc(&mut nodes, &mut st);
            check(&nodes, &st).is_err()
        });
        assert!(caught, "{property} does not catch an allocator that {what}");
    }
}

#[test]
fn a_resuming_station_is_admitted_when_its_start_margin_fits() {
    let mut nodes = [NodeSlot::new(None, flat(160))];
    let mut st = vec![asking(0, ONE, 480), asking(0, ONE, 480)];
    st[0].demand.rank = 5;
    st[1].demand.rank = 0x4000_0000;
    st[1].demand.start_da = 80;
    assert_eq!(run(&mut nodes, &mut st), vec![80, 80]);
}
