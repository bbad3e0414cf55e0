//! The emergence test and the mirage check on curves whose truth is known by construction.

use scalelab_analysis::AnalysisError;
use scalelab_analysis::emergence::{
    EmergenceOptions, Metric, MetricPoint, metric_emergence, wilson_interval,
};

/// Scales 1e4 to 1e9 in half decades.
fn scales() -> Vec<f64> {
    (0..11)
        .map(|i| 10f64.powf(4.0 + 0.5 * f64::from(i)))
        .collect()
}

fn points(values: impl Iterator<Item = f64>, n_test: Option<u64>) -> Vec<MetricPoint> {
    scales()
        .into_iter()
        .zip(values)
        .map(|(scale, value)| MetricPoint {
            scale,
            value,
            n_test,
        })
        .collect()
}

#[test]
fn straight_lines_and_noise_are_not_emergent() {
    // Exact match rising by 0.09 a decade (measured as the share itself): a smaller-scale
    // trend predicts it exactly.
    let linear = points(scales().into_iter().map(|n| 0.09 * (n.log10() - 4.0)), None);
    let v = metric_emergence(
        "line",
        Metric::ExactMatch,
        &linear,
        &EmergenceOptions::default(),
    )
    .unwrap();
    assert!(!v.emergent && v.extrapolation_error.abs() < 1e-9, "{v:?}");
    assert!(
        (v.sharpness - 0.2).abs() < 1e-9,
        "one decade of five: {v:?}"
    );

    // A jump of 1.5 points on 100 examples is within binomial noise.
    let step = points((0..11).map(|i| if i < 6 { 0.0 } else { 0.015 }), Some(100));
    let v = metric_emergence(
        "noise",
        Metric::ExactMatch,
        &step,
        &EmergenceOptions::default(),
    )
    .unwrap();
    assert!(!v.emergent, "{v:?}");
    assert!(v.reason.contains("noise"), "{}", v.reason);
    // Zero successes of 100 are below the resolution 1/100.
    assert_eq!(v.unresolved_points, 6);
    assert_eq!(v.resolution, Some(0.01));
}

#[test]
fn known_test_sizes_widen_the_transition_interval() {
    let step: Vec<f64> = (0..11).map(|i| if i < 5 { 0.02 } else { 0.9 }).collect();
    let exact = metric_emergence(
        "step",
        Metric::ExactMatch,
        &points(step.iter().copied(), None),
        &EmergenceOptions::default(),
    )
    .unwrap();
    // Between the measured scales 10^6 and 10^6.5, at their geometric middle.
    assert!(
        (exact.transition_scale.log10() - 6.25).abs() < 1e-6,
        "{exact:?}"
    );
    assert!((exact.transition_interval.lo.log10() - 6.0).abs() < 1e-9);
    assert!((exact.transition_interval.hi.log10() - 6.5).abs() < 1e-9);
    assert!(
        exact.emergent && (exact.sharpness - 1.0).abs() < 1e-9,
        "{exact:?}"
    );
    // A plateau of 0.45/0.55 on 20 examples: resampling moves the steepest step around.
    let noisy: Vec<f64> = (0..11)
        .map(|i| match i {
            0..=3 => 0.0,
            4 => 0.45,
            5 => 0.55,
            _ => 1.0,
        })
        .collect();
    let v = metric_emergence(
        "noisy",
        Metric::ExactMatch,
        &points(noisy.into_iter(), Some(20)),
        &EmergenceOptions::default(),
    )
    .unwrap();
    let decades = v.transition_interval.hi.log10() - v.transition_interval.lo.log10();
    assert!(decades > 0.5, "wider than one gap of half a decade: {v:?}");
}

#[test]
fn bad_inputs_say_what_is_wrong() {
    let three = &points([0.0, 0.5, 1.0].into_iter(), None)[..3];
    let err = metric_emergence(
        "t/exact_match",
        Metric::ExactMatch,
        three,
        &EmergenceOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            AnalysisError::TooFewPoints {
                need: 4,
                got: 3,
                ..
            }
        ),
        "{err}"
    );

    let mut bad = points((0..11).map(|_| 0.5), None);
    bad[2].value = 1.3;
    let err = metric_emergence(
        "t/exact_match",
        Metric::ExactMatch,
        &bad,
        &EmergenceOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("1.3") && err.contains("[0, 1]") && err.contains("point 2"),
        "{err}"
    );

    let mut bad = points((0..11).map(|_| -1.0), None);
    bad[0].scale = 0.0;
    let err = metric_emergence(
        "t/log_prob",
        Metric::LogProb,
        &bad,
        &EmergenceOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("scale"), "{err}");
    assert!(Metric::from_name("accuracy").is_none());
    assert_eq!(
        Metric::from_name("edit_distance"),
        Some(Metric::EditDistance)
    );
}

#[test]
fn wilson_intervals_match_statsmodels() {
    // statsmodels.stats.proportion.proportion_confint(5, 10, method="wilson")
    //   = (0.236593, 0.763407); (0, 10) → (0.0, 0.277533).
    let i = wilson_interval(5.0, 10, 0.95);
    assert!(
        (i.lo - 0.236_593).abs() < 1e-5 && (i.hi - 0.763_407).abs() < 1e-5,
        "{i:?}"
    );
    let i = wilson_interval(0.0, 10, 0.95);
    assert!(i.lo == 0.0 && (i.hi - 0.277_533).abs() < 1e-5, "{i:?}");
}

#[test]
fn a_late_jump_after_a_long_plateau_is_emergent() {
    // The shape of induction-head formation over training tokens (examples/induction.toml):
    // a quick rise from 0 to a guessing plateau of 0.37 in the first decade, two decades
    // flat, then a jump to 0.98 within a fraction of a decade. The plateau inside the
    // steepest window must not dilute the miss at the jump.
    let curve = [
        (1e3, 0.0),
        (3e3, 0.05),
        (1e4, 0.3),
        (3e4, 0.37),
        (1e5, 0.36),
        (3e5, 0.38),
        (1e6, 0.37),
        (2e6, 0.38),
        (4e6, 0.37),
        (6e6, 0.36),
        (8e6, 0.38),
        (1e7, 0.67),
        (1.1e7, 0.88),
        (1.2e7, 0.95),
        (1.3e7, 0.98),
    ];
    let pts: Vec<MetricPoint> = curve
        .iter()
        .map(|&(scale, value)| MetricPoint {
            scale,
            value,
            n_test: Some(1000),
        })
        .collect();
    let v = metric_emergence(
        "plateau",
        Metric::ExactMatch,
        &pts,
        &EmergenceOptions::default(),
    )
    .unwrap();
    assert!(v.emergent, "{v:?}");
    assert!((8e6..1.2e7).contains(&v.transition_scale), "{v:?}");
    assert!(v.extrapolation_error > 0.2, "{v:?}");
}
