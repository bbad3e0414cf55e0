//! The compute-optimal analysis on synthetic IsoFLOP studies with known answers: approach 2's
//! optimum and its interval, and whether the bootstrap intervals of approaches 2 and 3 cover
//! the true exponent about as often as they claim.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use scalelab_analysis::compute_optimal::{IsoRun, Options, compute_optimal};
use scalelab_analysis::frontier::CurvePoint;
use scalelab_analysis::isoflop::{IsoFlopGroup, approach2};
use scalelab_analysis::optimal::{Chinchilla, FlopModel, plan_allocation};

/// Losses that are exact parabolas in ln N with a known minimum at `n_opt`, plus Gaussian
/// noise of `sigma` nats.
fn parabola_profiles(sigma: f64, seed: u64) -> (Vec<IsoFlopGroup>, Vec<f64>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let noise = Normal::new(0.0, sigma).unwrap();
    let budgets = [1e12, 1e13, 1e14, 1e15];
    // N_opt = 10·C^0.5: a = 0.5 exactly.
    let optima: Vec<f64> = budgets.iter().map(|c: &f64| 10.0 * c.sqrt()).collect();
    let groups = budgets
        .iter()
        .zip(&optima)
        .map(|(&c, &n_opt)| IsoFlopGroup {
            flops: c,
            points: (-3..=3)
                .map(|k| {
                    let x = k as f64 * 0.5;
                    let n = n_opt * x.exp();
                    (n, 2.0 + 0.05 * x * x + noise.sample(&mut rng))
                })
                .collect(),
        })
        .collect();
    (groups, optima)
}

/// Noise-free parabolas give their minima exactly and a = 0.5; with noise the optimum moves
/// within its interval and the interval of a holds 0.5.
#[test]
fn approach2_finds_known_optima_and_brackets_them() {
    let (exact, optima) = parabola_profiles(0.0, 0);
    let r = approach2(&exact, &FlopModel::SIX_N, 0, 0.95, 0).unwrap();
    for (c, want) in r.curves.iter().zip(&optima) {
        assert!((c.n_opt.unwrap() / want - 1.0).abs() < 1e-9);
        assert!(c.inside);
        assert!((c.d_opt.unwrap() - c.flops / (6.0 * want)).abs() / c.d_opt.unwrap() < 1e-9);
    }
    assert!((r.n_opt.unwrap().slope - 0.5).abs() < 1e-9);
    // With no residuals there is nothing to resample: the result says so.
    let r = approach2(&exact, &FlopModel::SIX_N, 50, 0.95, 0).unwrap();
    assert!(r.a_interval.is_none());

    let (noisy, optima) = parabola_profiles(0.004, 7);
    let r = approach2(&noisy, &FlopModel::SIX_N, 400, 0.95, 3).unwrap();
    let a = r.a_interval.unwrap();
    assert!(a.contains(0.5), "{a:?}");
    // Tighter than the widest a grid of four budgets could give, looser than nothing.
    assert!(a.hi - a.lo > 0.005 && a.hi - a.lo < 0.3, "{a:?}");
    let covered = r
        .curves
        .iter()
        .zip(&optima)
        .filter(|(c, want)| c.n_opt_interval.unwrap().contains(**want))
        .count();
    assert!(covered >= 3, "{covered} of 4 optima inside their intervals");
    assert_eq!(r.bootstrap_used, 400);
}

/// An IsoFLOP study drawn from a Chinchilla law along `C = 6ND`: seven sizes per budget
/// centred on the true optimum, losses with multiplicative noise `sigma`.
fn law_study(law: Chinchilla, sigma: f64, seed: u64) -> Vec<IsoRun> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let noise = Normal::new(0.0, sigma).unwrap();
    let mut runs = Vec::new();
    for c in [1e18, 4e18, 1.6e19, 6.4e19, 2.56e20] {
        let centre = law.optimal(c).unwrap().n_opt;
        for k in -3..=3 {
            let n = centre * (k as f64 * 0.4).exp();
            let d = c / (6.0 * n);
            let loss = law.loss(n, d) * f64::exp(noise.sample(&mut rng));
            runs.push(IsoRun {
                budget: c,
                n,
                flops_per_token: 6.0 * n,
                tokens: d,
                loss,
                curve: vec![CurvePoint {
                    flops: c,
                    tokens: d,
                    loss,
                }],
            });
        }
    }
    runs
}

/// Over 100 replicated synthetic studies, the 95% intervals of approach 2's and approach 3's
/// a contain the true a = β/(α+β) = 0.4516 in at least 85% of them (the bar; the
/// nominal rate is 95%, and a percentile bootstrap of few points undercovers a little).
/// Approach 2's a is that of parabola minima of a curve that is not a parabola, biased by
/// about 0.005 here, which the coverage absorbs. Approach 3's full fit starts from the 32
/// best points of the paper's grid rather than all 4,500 (the bootstrap replicates are
/// fitted exactly as in a study), so that 100 studies fit in seconds.
#[test]
fn bootstrap_intervals_cover_the_true_exponent() {
    let law = Chinchilla::PAPER;
    let truth = law.beta / (law.alpha + law.beta);
    let studies = 100;
    let (mut covered2, mut covered3, mut widths3) = (0, 0, Vec::new());
    for s in 0..studies {
        let runs = law_study(law, 0.004, 1000 + s);
        let r = compute_optimal(
            &runs,
            "total",
            &Options {
                bootstrap: 100,
                seed: s,
                hold_out_largest: false,
                grid_starts: Some(32),
                ..Options::default()
            },
        )
        .unwrap();
        let a2 = r.approach2.unwrap().a.interval.unwrap();
        let a3 = r.approach3.unwrap().a.interval.unwrap();
        covered2 += usize::from(a2.contains(truth));
        covered3 += usize::from(a3.contains(truth));
        widths3.push(a3.hi - a3.lo);
    }
    assert!(
        covered2 >= 85,
        "approach 2 covered a in {covered2} of {studies}"
    );
    assert!(
        covered3 >= 85,
        "approach 3 covered a in {covered3} of {studies}"
    );
    // And not by being uselessly wide.
    widths3.sort_by(f64::total_cmp);
    assert!(
        widths3[studies as usize / 2] < 0.2,
        "median width {}",
        widths3[50]
    );
}

/// The planner's intervals: they hold the allocation of the fit to every run, they narrow
/// with less noise, and D = C/(κN^γ) holds for the best allocation.
#[test]
fn planner_intervals_bracket_the_allocation() {
    let law = Chinchilla::PAPER;
    let plan_of = |sigma: f64| {
        let runs = law_study(law, sigma, 5);
        let r = compute_optimal(
            &runs,
            "total",
            &Options {
                bootstrap: 100,
                hold_out_largest: false,
                grid_starts: Some(32),
                ..Options::default()
            },
        )
        .unwrap();
        let fit = r.approach3.unwrap().fit;
        plan_allocation(&fit, &r.flop_model, 1e22, Some(1e15), 0.95).unwrap()
    };
    let wide = plan_of(0.01);
    let narrow = plan_of(0.002);
    let truth = law.optimal(1e22).unwrap();
    for p in [&wide, &narrow] {
        let n = p.n_opt.unwrap();
        assert!(n.lo <= p.best.n_opt && p.best.n_opt <= n.hi);
        let l = p.loss.unwrap();
        assert!(l.lo <= p.best.loss && p.best.loss <= l.hi);
        assert!((6.0 * p.best.n_opt * p.best.d_opt / 1e22 - 1.0).abs() < 1e-9);
        assert!(
            p.n_opt.unwrap().contains(truth.n_opt),
            "{:?} vs {}",
            p.n_opt,
            truth.n_opt
        );
        // 1e15 unique tokens is far more than the optimum needs: no data constraint.
        assert!(p.loss_data_constrained.is_none());
    }
    let width = |p: &scalelab_analysis::optimal::PlannedAllocation| {
        let i = p.n_opt.unwrap();
        (i.hi / i.lo).ln()
    };
    assert!(width(&narrow) < width(&wide));
    // A corpus too small for the optimum: the data-constrained loss is worse.
    let runs = law_study(law, 0.002, 5);
    let r = compute_optimal(
        &runs,
        "total",
        &Options {
            bootstrap: 0,
            hold_out_largest: false,
            grid_starts: Some(32),
            ..Options::default()
        },
    )
    .unwrap();
    let fit = r.approach3.unwrap().fit;
    let p = plan_allocation(&fit, &r.flop_model, 1e22, Some(1e10), 0.95).unwrap();
    assert!(p.loss_data_constrained.unwrap() > p.best.loss);
}
