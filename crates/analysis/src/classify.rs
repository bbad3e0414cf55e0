//! The analysis of a classification study: power laws of test error against model size N (at
//! the largest training fraction) and against training examples D (for the largest model),
//! over the first regulariser's runs with seeds (and folds) averaged, and why a fit is missing
//! when one is.

use scalelab_spec::{ClassifyRecord, Family, StudyCell};

use crate::summary::mean_by;
use crate::{FitOptions, LawFit, fit_power};

/// What the analysis reads of one run of a classification study.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyRow {
    /// The regulariser of its cell.
    pub regulariser: String,
    /// Its share of the training examples.
    pub train_fraction: f64,
    /// Its model's family.
    pub family: Family,
    /// Its model's trainable parameters.
    pub params: u64,
    /// The examples it trained on.
    pub train_examples: u64,
    /// 1 − its test accuracy.
    pub test_error: f64,
}

impl ClassifyRow {
    /// The row of a run in `cell` that recorded `record`.
    pub fn of(cell: &StudyCell, record: &ClassifyRecord) -> Self {
        Self {
            regulariser: cell.regulariser.clone(),
            train_fraction: cell.train_fraction,
            family: record.config.model.family(),
            params: record.params.total,
            train_examples: record.result.train_examples,
            test_error: 1.0 - record.result.test.accuracy,
        }
    }
}

/// The fits of a classification study.
#[derive(Debug, Clone, Default)]
pub struct ClassifyAnalysis {
    /// Test error against parameters at the largest training fraction, first regulariser,
    /// within the family with the most sizes.
    pub fit_n: Option<LawFit>,
    /// Test error against training examples for the largest model, first regulariser.
    pub fit_d: Option<LawFit>,
    /// Which runs a fit used, or why it is missing.
    pub notes: Vec<String>,
}

/// Fits `E + A·X^(-α)` to the test error against N and against D (see the module docs).
pub fn analyse_classify_study(rows: &[ClassifyRow]) -> ClassifyAnalysis {
    let mut out = ClassifyAnalysis::default();
    let Some(first) = rows.first().map(|r| r.regulariser.clone()) else {
        return out;
    };
    let base: Vec<&ClassifyRow> = rows.iter().filter(|r| r.regulariser == first).collect();
    let max_fraction = base.iter().map(|r| r.train_fraction).fold(0.0, f64::max);
    let max_n = base.iter().map(|r| r.params).max().unwrap_or(0);
    // Seeds averaged: one point per distinct x.
    let points = |pick: &dyn Fn(&ClassifyRow) -> Option<f64>| {
        let rows: Vec<((), f64, f64)> = base
            .iter()
            .filter_map(|r| pick(r).map(|x| ((), x, r.test_error)))
            .collect();
        mean_by(&rows).pop().map_or_else(Vec::new, |(_, pts)| pts)
    };
    // Error against N within one family: the one with the most sizes (families move the
    // curve, so a fit across them mixes laws).
    let mut families: Vec<(Family, Vec<u64>)> = Vec::new();
    for r in &base {
        match families.iter_mut().find(|(f, _)| *f == r.family) {
            Some((_, sizes)) if !sizes.contains(&r.params) => sizes.push(r.params),
            Some(_) => {}
            None => families.push((r.family, vec![r.params])),
        }
    }
    let family = families
        .iter()
        .max_by_key(|(_, sizes)| sizes.len())
        .map(|(f, _)| *f);
    if let (true, Some(family)) = (families.len() > 1, family) {
        out.notes.push(format!(
            "The fit against N uses the {family} runs only (the family with the most sizes): \
             families move the curve, so one law across them would mix laws."
        ));
    }
    let by_n = points(&|r| {
        (r.train_fraction == max_fraction && Some(r.family) == family).then_some(r.params as f64)
    });
    let by_d = points(&|r| (r.params == max_n).then_some(r.train_examples as f64));
    let opts = FitOptions::default();
    for (axis, pts, slot) in [("N", by_n, &mut out.fit_n), ("D", by_d, &mut out.fit_d)] {
        if pts.iter().any(|p| p.1 <= 0.0) {
            out.notes.push(format!(
                "No fit against {axis}: a test error of 0 has no logarithm."
            ));
            continue;
        }
        let x: Vec<f64> = pts.iter().map(|p| p.0).collect();
        let y: Vec<f64> = pts.iter().map(|p| p.1).collect();
        match fit_power(axis, &x, &y, &opts) {
            Ok(fit) => *slot = Some(fit),
            Err(e) => out.notes.push(format!("No fit against {axis}: {e}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(family: Family, params: u64, fraction: f64, examples: u64, error: f64) -> ClassifyRow {
        ClassifyRow {
            regulariser: "none".into(),
            train_fraction: fraction,
            family,
            params,
            train_examples: examples,
            test_error: error,
        }
    }

    #[test]
    fn error_laws_are_fitted_within_one_family_with_seeds_averaged() {
        // Error 0.02 + 5·N^-0.5 for five MLP sizes on all 10,000 examples, two seeds each off
        // by ±1% (their mean is the law), and a CNN of one size beside them; the largest MLP
        // also on 100 to 3,000 examples, its error 0.03 + B·D^-0.4 with B set so that the
        // law meets the full-data point (0.02 + 5/√1e5 at D = 1e4).
        let mut rows = Vec::new();
        for n in [1e3, 3e3, 1e4, 3e4, 1e5] {
            let e = 0.02 + 5.0 * f64::powf(n, -0.5);
            for s in [0.99, 1.01] {
                rows.push(row(Family::Mlp, n as u64, 1.0, 10_000, e * s));
            }
        }
        rows.push(row(Family::Cnn, 5_000, 1.0, 10_000, 0.01));
        let full = 0.02 + 5.0 * f64::powf(1e5, -0.5);
        let b = (full - 0.03) / f64::powf(1e4, -0.4);
        for d in [100.0, 300.0, 1e3, 3e3] {
            let e = 0.03 + b * f64::powf(d, -0.4);
            rows.push(row(Family::Mlp, 100_000, d / 1e4, d as u64, e));
        }
        let a = analyse_classify_study(&rows);
        let alpha = |fit: &LawFit| {
            fit.constants
                .iter()
                .find(|c| c.name == "alpha")
                .map(|c| c.value)
                .unwrap()
        };
        let n = a.fit_n.as_ref().expect("a fit against N");
        assert!((alpha(n) - 0.5).abs() < 0.05, "alpha_N = {}", alpha(n));
        let d = a.fit_d.as_ref().expect("a fit against D");
        assert!((alpha(d) - 0.4).abs() < 0.05, "alpha_D = {}", alpha(d));
        assert!(
            a.notes.iter().any(|n| n.contains("mlp runs only")),
            "{:?}",
            a.notes
        );
    }

    #[test]
    fn a_zero_error_or_too_few_points_is_said_not_fitted() {
        let rows = vec![
            row(Family::Mlp, 1000, 1.0, 100, 0.0),
            row(Family::Mlp, 2000, 1.0, 100, 0.1),
        ];
        let a = analyse_classify_study(&rows);
        assert!(a.fit_n.is_none() && a.fit_d.is_none());
        assert!(
            a.notes.iter().any(|n| n.contains("no logarithm")),
            "{:?}",
            a.notes
        );
        assert!(analyse_classify_study(&[]).notes.is_empty());
    }
}
