//! The mirage test on task results whose truth is known by construction.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};
use scalelab_analysis::emergence::{
    EmergenceOptions, Metric, MetricPoint, MirageKind, PerToken, TaskEmergence, TaskRow,
    analyse_tasks,
};

const N_TEST: u64 = 1000;

/// Where exact match's jump sits in the scale window.
#[derive(Debug, Clone, Copy)]
enum Window {
    /// Exact match crosses the resolution 1/n 0.75 decades after the smallest scale.
    Early,
    /// Exact match reaches one half in the middle of the window.
    Middle,
    /// Exact match reaches one half half a decade before the largest scale.
    Late,
}

/// Six decades of scale, four points a decade, placed so that exact match of an `length`-token
/// answer with per-token probability `p(N) = exp(−(c/N)^α)` jumps where `window` says.
fn window(c: f64, alpha: f64, length: u32, window: Window) -> Vec<f64> {
    let l = f64::from(length);
    // exp(−L·(c/N)^α) = q  ⇔  N = c·(−ln q / L)^(−1/α).
    let at = |q: f64| (c * (-q.ln() / l).powf(-1.0 / alpha)).log10();
    let start = match window {
        Window::Early => at(1.0 / N_TEST as f64) - 0.75,
        Window::Middle => at(0.5) - 3.0,
        Window::Late => at(0.5) - 5.5,
    };
    (0..25)
        .map(|i| 10f64.powf(start + 0.25 * f64::from(i)))
        .collect()
}

/// The mirage as Schaeffer et al. 2023 §2 build it: the per-token probability of the right
/// token improves smoothly, `p(N) = exp(−(c/N)^α)` (so per-token cross-entropy `(c/N)^α` is a
/// power law), and each of the `length` answer tokens is right independently: exact match
/// `p^L`, per-token accuracy `p`, edit distance `L·(1 − p)` (substitutions only),
/// log-probability of the answer `L·ln p`, cross-entropy `−ln p`. With `rng`, exact match is
/// a binomial draw on 1,000 test examples instead of its expectation.
fn schaeffer(
    c: f64,
    alpha: f64,
    length: u32,
    scales: &[f64],
    mut rng: Option<&mut ChaCha8Rng>,
) -> Vec<TaskRow> {
    let l = f64::from(length);
    let mut rows = Vec::new();
    for &n in scales {
        // Written from the cross-entropy so that nothing underflows far below the jump.
        let loss = (c / n).powf(alpha);
        let p = (-loss).exp();
        let mut exact = (-l * loss).exp();
        if let Some(rng) = rng.as_deref_mut() {
            exact = Binomial::new(N_TEST, exact).unwrap().sample(rng) as f64 / N_TEST as f64;
        }
        rows.extend(task_rows(
            n,
            length,
            &[
                (Metric::ExactMatch, exact),
                (Metric::TokenAccuracy, p),
                (Metric::EditDistance, l * (1.0 - p)),
                (Metric::LogProb, -l * loss),
                (Metric::CrossEntropy, loss),
            ],
        ));
    }
    rows
}

fn task_rows(scale: f64, length: u32, values: &[(Metric, f64)]) -> Vec<TaskRow> {
    values
        .iter()
        .map(|&(metric, value)| TaskRow {
            task: "task".into(),
            metric,
            point: MetricPoint {
                scale,
                value,
                n_test: Some(match metric {
                    Metric::TokenAccuracy => N_TEST * u64::from(length),
                    _ => N_TEST,
                }),
            },
            answer_tokens: Some(f64::from(length)),
        })
        .collect()
}

fn analyse(rows: &[TaskRow], per_token: PerToken) -> TaskEmergence {
    let options = EmergenceOptions {
        per_token,
        bootstrap: 50,
        ..EmergenceOptions::default()
    };
    analyse_tasks(rows, &[], &options).unwrap().remove(0)
}

fn only(rows: &[TaskRow], keep: &[Metric]) -> Vec<TaskRow> {
    rows.iter()
        .filter(|r| keep.contains(&r.metric))
        .cloned()
        .collect()
}

#[test]
fn the_textbook_mirage_is_a_mirage_for_every_length_exponent_and_window() {
    for alpha in [0.4, 0.6, 1.0] {
        for length in 3..=10 {
            for place in [Window::Early, Window::Middle, Window::Late] {
                let c = 3e8;
                let scales = window(c, alpha, length, place);
                let rows = schaeffer(c, alpha, length, &scales, None);
                let case = format!("α {alpha}, L {length}, {place:?}");
                // The construction: absent at the smallest scale, present at the largest.
                let first = (-(c / scales[0]).powf(alpha)).exp().powi(length as i32);
                let last = (-(c / scales[24]).powf(alpha)).exp().powi(length as i32);
                assert!(first < 1.0 / N_TEST as f64 && last > 0.5, "{case}");
                let t = analyse(
                    &only(
                        &rows,
                        &[Metric::ExactMatch, Metric::EditDistance, Metric::LogProb],
                    ),
                    PerToken::Auto,
                );
                let exact = &t.metrics[0];
                assert!(exact.emergent, "{case}: {exact:?}");
                let log_prob = t.metrics.iter().find(|m| m.metric == Metric::LogProb);
                // A power law is a straight line in −ln(−log_prob): never sharp, never a miss.
                let log_prob = log_prob.unwrap();
                assert!(
                    !log_prob.emergent && log_prob.extrapolation_error.abs() < 1e-6,
                    "{case}: {log_prob:?}"
                );
                let v = t.mirage.unwrap();
                assert_eq!(v.kind, MirageKind::Mirage, "{case}: {}", v.explanation);
                let e = v.evidence.unwrap();
                assert_eq!(e.quantity, Metric::LogProb, "{case}");
                assert!((e.alpha - alpha).abs() < 1e-3, "{case}: {e:?}");
                for p in &e.larger {
                    assert!((p.predicted - p.measured).abs() < 1e-3, "{case}: {p:?}");
                }
                for words in ["log_prob", "predicted", "measured", "edit_distance"] {
                    assert!(v.explanation.contains(words), "{case}: {}", v.explanation);
                }
            }
        }
    }
}

#[test]
fn every_per_token_quantity_and_another_c_give_the_same_answer() {
    for (c, alpha, length) in [(1e5, 0.6, 4), (3e10, 0.8, 7)] {
        let scales = window(c, alpha, length, Window::Middle);
        let rows = schaeffer(c, alpha, length, &scales, None);
        for per_token in [
            PerToken::CrossEntropy,
            PerToken::LogProb,
            PerToken::TokenAccuracy,
        ] {
            let v = analyse(&rows, per_token).mirage.unwrap();
            assert_eq!(
                v.kind,
                MirageKind::Mirage,
                "c {c}, {per_token:?}: {}",
                v.explanation
            );
            assert_eq!(v.evidence.unwrap().quantity.name(), per_token.name());
        }
    }
}

#[test]
fn binomial_noise_on_exact_match_rarely_breaks_the_mirage() {
    // Exact match drawn on 1,000 examples, as a real test set would give it. The comparisons
    // are Bonferroni-adjusted to a 95% family, so about 5% of draws or fewer may miss.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (c, alpha, length) = (3e8, 0.6, 5);
    let scales = window(c, alpha, length, Window::Middle);
    let draws = 40;
    let mut mirage = 0;
    let mut others = Vec::new();
    for _ in 0..draws {
        let rows = schaeffer(c, alpha, length, &scales, Some(&mut rng));
        let v = analyse(&rows, PerToken::LogProb).mirage.unwrap();
        assert_ne!(v.kind, MirageKind::Real, "{}", v.explanation);
        if v.kind == MirageKind::Mirage {
            mirage += 1;
        } else {
            others.push(v.kind.name());
        }
    }
    eprintln!("{mirage} of {draws} binomial draws called a mirage; the others: {others:?}");
    assert!(mirage >= draws * 9 / 10, "{mirage} of {draws}");
}

/// Per-token accuracy that itself jumps from 0.02 to 0.98 within a third of a decade around
/// 10^`centre` (a real phase change), each token right independently.
fn phase_change(length: u32, centre: f64) -> Vec<TaskRow> {
    let l = f64::from(length);
    (0..25)
        .flat_map(|i| {
            let x = 5.0 + 0.25 * f64::from(i);
            let p = 0.02 + 0.96 / (1.0 + (-(x - centre) / 0.06).exp());
            task_rows(
                10f64.powf(x),
                length,
                &[
                    (Metric::ExactMatch, p.powf(l)),
                    (Metric::TokenAccuracy, p),
                    (Metric::EditDistance, l * (1.0 - p)),
                    (Metric::LogProb, l * p.ln()),
                ],
            )
        })
        .collect()
}

#[test]
fn a_per_token_phase_change_is_real() {
    for length in [1, 3, 5, 8, 10] {
        for centre in [6.6, 8.0, 10.0] {
            let t = analyse(&phase_change(length, centre), PerToken::Auto);
            let v = t.mirage.unwrap();
            assert_eq!(
                v.kind,
                MirageKind::Real,
                "L {length}, 1e{centre}: {}",
                v.explanation
            );
            assert!(v.explanation.contains("per-token quantity itself"));
            // Every continuous metric jumps with exact match, and says so.
            let exact = &t.metrics[0];
            for m in &t.metrics[1..] {
                if m.metric != Metric::EditDistance {
                    assert!(m.jumps_with(exact), "L {length}: {m:?} vs {exact:?}");
                }
            }
            assert!(v.explanation.contains("its interval meeting exact match's"));
        }
    }
}

#[test]
fn a_single_token_answer_improving_smoothly_is_not_emergent() {
    // One answer token whose error falls as a power law, 1 − p = 0.7·(N/1e5)^−0.3 over six
    // decades: exact match is p itself, fastest at the smallest scales.
    let rows: Vec<TaskRow> = (0..25)
        .flat_map(|i| {
            let n = 10f64.powf(5.0 + 0.25 * f64::from(i));
            let p = 1.0 - 0.7 * (n / 1e5).powf(-0.3);
            task_rows(
                n,
                1,
                &[
                    (Metric::ExactMatch, p),
                    (Metric::TokenAccuracy, p),
                    (Metric::LogProb, p.ln()),
                ],
            )
        })
        .collect();
    let t = analyse(&rows, PerToken::Auto);
    let v = t.mirage.unwrap();
    assert_eq!(v.kind, MirageKind::NoEmergence, "{}", v.explanation);
    assert!(t.metrics.iter().all(|m| !m.emergent), "{:?}", t.metrics);
}

#[test]
fn what_the_data_cannot_decide_is_undetermined_with_the_reason() {
    let (c, alpha, length) = (3e8, 0.6, 5);
    let scales = window(c, alpha, length, Window::Middle);
    let rows = schaeffer(c, alpha, length, &scales, None);
    let case = |rows: &[TaskRow], per_token| analyse(rows, per_token).mirage.unwrap();

    // Exact match alone: nothing to predict it from.
    let v = case(&only(&rows, &[Metric::ExactMatch]), PerToken::Auto);
    assert_eq!(v.kind, MirageKind::Undetermined);
    assert!(
        v.explanation.contains("No per-token quantity"),
        "{}",
        v.explanation
    );

    // Per-token accuracy without the answer length: p^L needs L.
    let mut unknown = only(&rows, &[Metric::ExactMatch, Metric::TokenAccuracy]);
    unknown.iter_mut().for_each(|r| r.answer_tokens = None);
    let v = case(&unknown, PerToken::Auto);
    assert_eq!(v.kind, MirageKind::Undetermined);
    assert!(v.explanation.contains("answer_tokens"), "{}", v.explanation);
    // A log-probability predicts exp(log_prob) without it.
    let mut unknown = only(&rows, &[Metric::ExactMatch, Metric::LogProb]);
    unknown.iter_mut().for_each(|r| r.answer_tokens = None);
    assert_eq!(case(&unknown, PerToken::Auto).kind, MirageKind::Mirage);

    // Three scales below the jump are too few for E + A·s^-α: the early window every third
    // point from the one where exact match reaches 1/n.
    let early = window(c, alpha, length, Window::Early);
    let coarse: Vec<f64> = early.iter().skip(3).step_by(3).copied().collect();
    let v = case(&schaeffer(c, alpha, length, &coarse, None), PerToken::Auto);
    assert_eq!(v.kind, MirageKind::Undetermined, "{}", v.explanation);
    assert!(
        v.explanation.contains("needs 4 before"),
        "{}",
        v.explanation
    );

    // Every exact match below the resolution: no jump yet.
    let early: Vec<TaskRow> = rows
        .iter()
        .filter(|r| r.point.scale < scales[4])
        .cloned()
        .collect();
    let v = case(&early, PerToken::Auto);
    assert_eq!(v.kind, MirageKind::Undetermined, "{}", v.explanation);
    assert!(v.explanation.contains("resolution"), "{}", v.explanation);
}

#[test]
fn transitions_a_decade_apart_are_not_called_together() {
    // The table: 14 scales 1e7..1.8e10, c = 3e8, α = 0.6, L = 5, with an edit
    // distance that drops from 5 to 0.5 between 1e8 and 2e8, more than a decade before exact
    // match's jump.
    let scales: Vec<f64> = (0..14)
        .map(|i| 10f64.powf(7.0 + f64::from(i) * (1.8e10f64.log10() - 7.0) / 13.0))
        .collect();
    let mut rows = schaeffer(3e8, 0.6, 5, &scales, None);
    for r in rows.iter_mut().filter(|r| r.metric == Metric::EditDistance) {
        r.point.value = if r.point.scale < 1.5e8 { 5.0 } else { 0.5 };
    }
    let t = analyse(&rows, PerToken::Auto);
    let exact = &t.metrics[0];
    assert!(exact.transition_scale > 1e9, "{exact:?}");
    let edit = t
        .metrics
        .iter()
        .find(|m| m.metric == Metric::EditDistance)
        .unwrap();
    assert!(edit.emergent, "{edit:?}");
    assert!(!edit.jumps_with(exact), "{edit:?} vs {exact:?}");
    let v = t.mirage.unwrap();
    // The verdict rests on the per-token fit, not on the edit distance.
    assert_eq!(v.kind, MirageKind::Mirage, "{}", v.explanation);
    assert!(
        v.explanation.contains("edit_distance sharp at")
            && v.explanation.contains("apart from exact match's interval"),
        "{}",
        v.explanation
    );
}

#[test]
fn per_example_scores_keep_the_mirage_when_examples_differ_in_difficulty() {
    use scalelab_analysis::emergence::ExampleRow;
    use statrs::distribution::{ContinuousCDF, Normal};
    // Schaeffer's construction with 400 examples of different difficulty: example e's
    // per-token loss is (c_e/N)^α, c_e = c·exp(z_e) with z_e spread as a standard normal.
    // Exact match is the mean of the examples' p_e^L, which is above exp(mean log p^L)
    // (Jensen): the mean log-probability alone under-predicts it.
    let (c, alpha, length) = (3e8, 0.6, 5);
    let standard = Normal::standard();
    let spread: Vec<f64> = (0..400)
        .map(|i| c * standard.inverse_cdf((f64::from(i) + 0.5) / 400.0).exp())
        .collect();
    let scales = window(c, alpha, length, Window::Middle);
    let l = f64::from(length);
    let mut rows = Vec::new();
    let mut examples = Vec::new();
    for &n in &scales {
        let losses: Vec<f64> = spread.iter().map(|ce| l * (ce / n).powf(alpha)).collect();
        let exact = losses.iter().map(|x| (-x).exp()).sum::<f64>() / 400.0;
        let log_prob = -losses.iter().sum::<f64>() / 400.0;
        for (metric, value) in [(Metric::ExactMatch, exact), (Metric::LogProb, log_prob)] {
            rows.push(TaskRow {
                task: "task".into(),
                metric,
                point: MetricPoint {
                    scale: n,
                    value,
                    n_test: Some(400),
                },
                answer_tokens: Some(l),
            });
        }
        examples.extend(losses.iter().map(|x| ExampleRow {
            task: "task".into(),
            scale: n,
            log_prob: -x,
        }));
    }
    let options = EmergenceOptions {
        bootstrap: 50,
        ..EmergenceOptions::default()
    };
    let means = analyse_tasks(&rows, &[], &options).unwrap().remove(0);
    let v = means.mirage.unwrap();
    assert_eq!(v.kind, MirageKind::Real, "{}", v.explanation);
    let e = v.evidence.unwrap();
    assert!(e.larger.iter().all(|p| p.predicted < p.measured), "{e:?}");

    let with = analyse_tasks(&rows, &examples, &options).unwrap().remove(0);
    let v = with.mirage.unwrap();
    assert_eq!(v.kind, MirageKind::Mirage, "{}", v.explanation);
    assert!(
        v.explanation.contains("mean over 400 examples"),
        "{}",
        v.explanation
    );
    let e = v.evidence.unwrap();
    assert_eq!(e.examples.map(|x| x.1), Some(400));
    for p in &e.larger {
        assert!((p.predicted - p.measured).abs() < 1e-3, "{p:?}");
        assert!((p.implied - p.measured).abs() < 1e-9, "{p:?}");
    }
}
