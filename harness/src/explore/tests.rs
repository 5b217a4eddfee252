use super::*;

#[test]
fn every_generated_site_is_a_scenario_the_loader_accepts() {
    for size in [SiteSize::Small, SiteSize::Tree, SiteSize::Large] {
        for seed in 0..150 {
            let site = Site::generate(seed, size, Faults::All);
            if let Err(e) = site.scenario() {
                panic!("{size:?} seed {seed}: {e}\n{}", site.toml("x", "x"));
            }
        }
    }
}

/// Operator limits: most sites get one, every one the loader takes (so the
/// leader would too: the loader runs the firmware's own rules on it), and
/// the lowest ones reach the floor of the fallbacks and 6 A shares.
#[test]
fn generated_operator_limits_are_ones_the_leader_takes() {
    let mut with = 0;
    for seed in 0..100 {
        let site = Site::generate(seed, SiteSize::Tree, Faults::Limit);
        let sc = match site.scenario() {
            Ok(sc) => sc,
            Err(e) => panic!("seed {seed}: {e}\n{}", site.toml("x", "x")),
        };
        let floors = site.limit_floors();
        for st in &site.steps {
            if let GAction::SetLimit(k, Some(da)) = st.action {
                with += 1;
                assert!(
                    da >= floors[k] && da <= site.nodes[k].limit_da,
                    "seed {seed}"
                );
                assert!(sc.timeline.iter().any(|s| matches!(
                    s.action,
                    crate::scenario::Action::SetLimit { node, da: Some(d) } if node == k && d == da
                )));
            }
        }
    }
    assert!(with >= 100, "{with} operator limits in 100 sites");
}

#[test]
fn the_same_seed_gives_the_same_site() {
    let a = Site::generate(42, SiteSize::Tree, Faults::All);
    assert_eq!(a, Site::generate(42, SiteSize::Tree, Faults::All));
    assert_ne!(a, Site::generate(43, SiteSize::Tree, Faults::All));
}

/// A planted fault: the "invariant" that no station's offer is raised
/// while another station is crashed. The firmware does raise offers then
/// (the crashed station's share is freed once its fallback is certain), so
/// this fires on sites with a crash; the shrinker must cut such a site down
/// to the crash and the few stations and steps that show it.
fn planted(site: &Site, run: &Result<ScenarioRun, String>) -> Option<Violation> {
    let run = run.as_ref().ok()?;
    let crash = site.steps.iter().find_map(|s| match s.action {
        GAction::Crash(i) => Some((u64::from(s.at_s) * 1_000_000, i)),
        _ => None,
    })?;
    let series = run.trace.series();
    for (i, offers) in series.offered.iter().enumerate() {
        if i == crash.1 {
            continue;
        }
        let before = crate::trace::at(offers, crash.0, 0);
        if offers.iter().any(|&(t, o)| t > crash.0 && o > before) {
            return Some(Violation {
                invariant: "planted".into(),
                detail: format!("st{} raised after the crash", i + 1),
            });
        }
    }
    None
}

#[test]
fn explore_finds_and_shrinks_a_planted_violation() {
    let args = ExploreArgs {
        seeds: Some(40),
        time: None,
        first_seed: 1,
        sites: SiteSize::Tree,
        faults: Faults::Node,
        jobs: Some(2),
        out: std::env::temp_dir().join(format!("sharebench-explore-{}", std::process::id())),
        shrink_budget: 120,
    };
    let s = search(&args, 40, None, planted, &|_, _| {});
    assert_eq!(s.runs, 40);
    let (seed, small, v) = s.failures.first().expect("the planted violation is found");
    assert_eq!(v.invariant, "planted");
    let original = Site::generate(*seed, args.sites, args.faults);
    // Smaller in every way it could be, and still failing the same way.
    assert!(
        small.stations.len() <= 3,
        "{} stations",
        small.stations.len()
    );
    assert!(
        small.steps.len() < original.steps.len().max(2),
        "{:?}",
        small.steps
    );
    assert!(small.duration_s <= original.duration_s);
    assert!(small
        .steps
        .iter()
        .any(|s| matches!(s.action, GAction::Crash(_))));
    assert!(
        planted(small, &run_site(small)).is_some(),
        "the shrunk site still fails"
    );
    // It is a scenario file the corpus takes as it is.
    let paths = write_failures(&args.out, &s, &args).expect("written");
    let sc = Scenario::load(&paths[0]).expect("loads");
    assert!(sc.name.starts_with("explore-"));
    let _ = std::fs::remove_dir_all(&args.out);
}
