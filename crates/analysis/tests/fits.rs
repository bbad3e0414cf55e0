//! The fitters recover known constants from synthetic data drawn from a known law.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use scalelab_analysis::optimal::Chinchilla;
use scalelab_analysis::{
    AnalysisError, FitOptions, LawKind, Point, extrapolation::extrapolation_check, fit_chinchilla,
    fit_kaplan, fit_power,
};

/// A 5×5 grid of N ∈ [1e7, 1e10], D ∈ [1e9, 1e12] with losses from the paper's law
/// (Hoffmann et al. 2022, eq. 10), times log-normal noise of the given σ.
fn chinchilla_points(sigma: f64, seed: u64) -> Vec<Point> {
    let law = Chinchilla::PAPER;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let noise = Normal::new(0.0, sigma).unwrap();
    let mut pts = Vec::new();
    for i in 0..5 {
        for j in 0..5 {
            let n = 10f64.powf(7.0 + 0.75 * i as f64);
            let d = 10f64.powf(9.0 + 0.75 * j as f64);
            let eps: f64 = if sigma > 0.0 {
                noise.sample(&mut rng)
            } else {
                0.0
            };
            pts.push(Point {
                n,
                d,
                loss: law.loss(n, d) * eps.exp(),
            });
        }
    }
    pts
}

/// The five constants of Chinchilla's fitted law (Hoffmann et al. 2022, eq. 10) by name.
fn paper_constants() -> [(&'static str, f64); 5] {
    let p = Chinchilla::PAPER;
    [
        ("E", p.e),
        ("A", p.a),
        ("B", p.b),
        ("alpha", p.alpha),
        ("beta", p.beta),
    ]
}

#[test]
fn chinchilla_fit_recovers_exact_constants_without_noise() {
    let opts = FitOptions {
        bootstrap: 0,
        ..FitOptions::default()
    };
    let fit = fit_chinchilla(&chinchilla_points(0.0, 0), &opts).unwrap();
    for (name, truth) in paper_constants() {
        let got = fit.get(name).unwrap();
        assert!((got / truth - 1.0).abs() < 1e-3, "{name}: {got} vs {truth}");
    }
    assert!(fit.objective < 1e-10, "objective {}", fit.objective);
    assert_eq!(fit.starts, 4500);
}

#[test]
fn chinchilla_truth_lies_within_bootstrap_intervals_with_noise() {
    let opts = FitOptions {
        bootstrap: 100,
        seed: 7,
        ..FitOptions::default()
    };
    let fit = fit_chinchilla(&chinchilla_points(0.005, 3), &opts).unwrap();
    let p = Chinchilla::PAPER;
    assert!(
        fit.bootstrap_used >= 90,
        "{} replicates",
        fit.bootstrap_used
    );
    let exponents = [
        ("a", p.beta / (p.alpha + p.beta)),
        ("b", p.alpha / (p.alpha + p.beta)),
    ];
    for (name, truth) in paper_constants().into_iter().chain(exponents) {
        let i = fit.interval(name).unwrap();
        assert!(
            i.contains(truth),
            "{name}: truth {truth} outside [{}, {}]",
            i.lo,
            i.hi
        );
        assert!(i.hi > i.lo);
    }
}

#[test]
fn power_fit_recovers_constants_and_intervals() {
    // L = 1.5 + 80·C^(-0.12) over C ∈ [1e12, 1e16], 1% noise.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let noise = Normal::new(0.0, 0.002).unwrap();
    let c: Vec<f64> = (0..12).map(|i| 10f64.powf(12.0 + i as f64 / 3.0)).collect();
    let exact: Vec<f64> = c.iter().map(|c| 1.5 + 80.0 * c.powf(-0.12)).collect();
    let noisy: Vec<f64> = exact
        .iter()
        .map(|l| {
            let eps: f64 = noise.sample(&mut rng);
            l * eps.exp()
        })
        .collect();
    let opts = FitOptions::default();
    let fit = fit_power(
        "C",
        &c,
        &exact,
        &FitOptions {
            bootstrap: 0,
            ..opts
        },
    )
    .unwrap();
    assert!((fit.get("alpha").unwrap() - 0.12).abs() < 1e-4);
    assert!((fit.get("E").unwrap() - 1.5).abs() < 1e-3);
    assert_eq!(fit.axis, "C");
    let fit = fit_power("C", &c, &noisy, &opts).unwrap();
    for (name, truth) in [("E", 1.5), ("A", 80.0), ("alpha", 0.12)] {
        let i = fit.interval(name).unwrap();
        assert!(
            i.contains(truth),
            "{name}: {truth} outside [{}, {}]",
            i.lo,
            i.hi
        );
    }
    assert!((fit.predict(1e14, 0.0) / (1.5 + 80.0 * 1e14f64.powf(-0.12)) - 1.0).abs() < 0.01);
}

#[test]
fn kaplan_fit_recovers_constants() {
    // Kaplan et al. 2020, eq. 1.5 and table 2: α_N = 0.076, α_D = 0.095,
    // N_c = 8.8e13, D_c = 5.4e13 (they quote D_c in tokens).
    let (an, ad, nc, dc) = (0.076, 0.095, 8.8e13, 5.4e13);
    let mut pts = Vec::new();
    for i in 0..5 {
        for j in 0..5 {
            let n = 10f64.powf(6.0 + i as f64);
            let d = 10f64.powf(8.0 + j as f64 * 0.75);
            let loss = ((nc / n).powf(an / ad) + dc / d).powf(ad);
            pts.push(Point { n, d, loss });
        }
    }
    let fit = fit_kaplan(
        &pts,
        &FitOptions {
            bootstrap: 0,
            ..FitOptions::default()
        },
    )
    .unwrap();
    assert!(
        (fit.get("alpha").unwrap() / an - 1.0).abs() < 1e-3,
        "{fit:?}"
    );
    assert!((fit.get("beta").unwrap() / ad - 1.0).abs() < 1e-3);
    assert!((fit.get("N_c").unwrap() / nc - 1.0).abs() < 0.05);
    assert!(
        (fit.predict(1e9, 1e10) / ((nc / 1e9f64).powf(an / ad) + dc / 1e10).powf(ad) - 1.0).abs()
            < 1e-4
    );
}

#[test]
fn extrapolation_from_small_models_predicts_large_ones() {
    let opts = FitOptions {
        bootstrap: 0,
        ..FitOptions::default()
    };
    let r = extrapolation_check(LawKind::Chinchilla, &chinchilla_points(0.0, 0), 1, &opts).unwrap();
    assert_eq!(r.predictions.len(), 5);
    assert!(r.max_abs_rel_error < 1e-3, "{}", r.max_abs_rel_error);
    assert!(
        extrapolation_check(LawKind::Chinchilla, &chinchilla_points(0.0, 0), 5, &opts).is_err()
    );
}

#[test]
fn bad_inputs_give_clear_errors() {
    let opts = FitOptions {
        bootstrap: 0,
        ..FitOptions::default()
    };
    let mut pts = chinchilla_points(0.0, 0);
    pts[3].loss = -1.0;
    let e = fit_chinchilla(&pts, &opts).unwrap_err();
    assert!(
        matches!(
            e,
            AnalysisError::NotPositive {
                index: 3,
                column: "loss",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("point 3"));

    // The grid's diagonal: five points, distinct in N and in D.
    let few: Vec<Point> = chinchilla_points(0.0, 0).into_iter().step_by(6).collect();
    assert!(matches!(
        fit_chinchilla(&few, &opts),
        Err(AnalysisError::TooFewPoints {
            need: 6,
            got: 5,
            ..
        })
    ));

    let same_d: Vec<Point> = (0..8)
        .map(|i| Point {
            n: 1e6 * (i + 1) as f64,
            d: 1e9,
            loss: 3.0 - 0.1 * i as f64,
        })
        .collect();
    let e = fit_chinchilla(&same_d, &opts).unwrap_err();
    assert!(e.to_string().contains("same D"), "{e}");

    assert!(fit_power("N", &[1.0, 2.0], &[1.0], &opts).is_err());
    let bad_level = FitOptions { level: 1.5, ..opts };
    assert!(
        fit_power(
            "N",
            &[1.0, 2.0, 3.0, 4.0],
            &[4.0, 3.0, 2.5, 2.2],
            &bad_level
        )
        .is_err()
    );
}
