//! Classification metrics from predicted class probabilities: accuracy with its Wilson
//! interval, the confusion matrix, per-class and macro precision, recall and F1, mean
//! cross-entropy, and the expected calibration error. Plain arithmetic on the host.

use scalelab_analysis::emergence::wilson_interval;
use scalelab_spec::{ClassMetrics, ClassScores};

/// Confidence bins of the expected calibration error (Guo et al. 2017 use 15).
pub const ECE_BINS: usize = 15;

/// Above this many classes (a masked-language model's vocabulary), a record keeps no
/// confusion matrix and no per-class scores: they would take k² and k numbers per split (a
/// 13,065-word vocabulary made a 5.6 GB record). The macro averages are computed all the same.
pub const MAX_TABULATED_CLASSES: usize = 256;

/// The predicted class of one row of class probabilities and its probability: the most
/// probable, the first of equals.
pub fn predicted_class(row: &[f32]) -> (usize, f32) {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (c, &p)| {
            if p > best.1 { (c, p) } else { best }
        })
}

/// Metrics of `probs` (`[n, k]` row-major, each row a distribution) against `labels`.
pub fn class_metrics(probs: &[f32], labels: &[u32], k: usize) -> ClassMetrics {
    let n = labels.len();
    let tabulate = k <= MAX_TABULATED_CLASSES;
    let mut confusion =
        vec![vec![0u64; if tabulate { k } else { 0 }]; if tabulate { k } else { 0 }];
    // Per class: true positives, examples (support), predictions.
    let (mut hits, mut support, mut predictions) = (vec![0u64; k], vec![0u64; k], vec![0u64; k]);
    let mut loss = 0.0;
    let mut bins = vec![(0u64, 0.0f64, 0.0f64); ECE_BINS]; // (count, Σ confidence, Σ correct)
    for (row, &label) in probs.chunks_exact(k.max(1)).zip(labels) {
        let (predicted, confidence) = predicted_class(row);
        let label = label as usize;
        if tabulate {
            confusion[label][predicted] += 1;
        }
        support[label] += 1;
        predictions[predicted] += 1;
        hits[label] += u64::from(predicted == label);
        loss -= f64::from(row[label].max(f32::MIN_POSITIVE)).ln();
        let confidence = f64::from(confidence);
        // Bin b holds confidences in (b/B, (b+1)/B]; a confidence of 0 goes to the first.
        let bin = ((confidence * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1;
        bins[bin].0 += 1;
        bins[bin].1 += confidence;
        bins[bin].2 += f64::from(u8::from(predicted == label));
    }
    let correct: u64 = hits.iter().sum();
    let per_class: Vec<ClassScores> = (0..k)
        .map(|c| {
            let tp = hits[c] as f64;
            let ratio = |num: f64, den: u64| if den == 0 { 0.0 } else { num / den as f64 };
            let (precision, recall) = (ratio(tp, predictions[c]), ratio(tp, support[c]));
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassScores {
                precision,
                recall,
                f1,
                support: support[c],
            }
        })
        .collect();
    let mean = |f: fn(&ClassScores) -> f64| {
        per_class.iter().map(f).sum::<f64>() / per_class.len().max(1) as f64
    };
    let n_f = n.max(1) as f64;
    let ece = bins
        .iter()
        .filter(|b| b.0 > 0)
        .map(|&(count, conf, right)| {
            (count as f64 / n_f) * (conf / count as f64 - right / count as f64).abs()
        })
        .sum();
    let interval = wilson_interval(correct as f64, n as u64, 0.95);
    ClassMetrics {
        examples: n as u64,
        loss: loss / n_f,
        accuracy: correct as f64 / n_f,
        accuracy_interval: [interval.lo, interval.hi],
        macro_precision: mean(|s| s.precision),
        macro_recall: mean(|s| s.recall),
        macro_f1: mean(|s| s.f1),
        per_class: if tabulate { per_class } else { Vec::new() },
        confusion,
        ece,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One-hot-ish rows: probability `p` on `predicted`, the rest spread evenly.
    fn rows(predictions: &[(usize, f32)], k: usize) -> Vec<f32> {
        predictions
            .iter()
            .flat_map(|&(c, p)| {
                (0..k).map(move |j| {
                    if j == c {
                        p
                    } else {
                        (1.0 - p) / (k - 1) as f32
                    }
                })
            })
            .collect()
    }

    #[test]
    fn a_vocabulary_of_classes_keeps_its_averages_but_no_tables() {
        let k = MAX_TABULATED_CLASSES + 1;
        let probs = rows(&[(0, 0.9), (1, 0.9), (1, 0.9)], k);
        let m = class_metrics(&probs, &[0, 1, 2], k);
        assert!(m.confusion.is_empty() && m.per_class.is_empty());
        assert!((m.accuracy - 2.0 / 3.0).abs() < 1e-12);
        // Classes 0 and 1: precision 1 and 1/2, recall 1 and 1; class 2: 0; the rest 0.
        let f1 = (1.0 + 2.0 / 3.0) / k as f64;
        assert!((m.macro_f1 - f1).abs() < 1e-12, "{}", m.macro_f1);
    }

    #[test]
    fn hand_computed_confusion_matrix() {
        // Labels 0 0 0 1 1 2, predicted 0 0 1 1 2 2:
        //   confusion [[2,1,0],[0,1,1],[0,0,1]]
        //   class 0: P 2/2, R 2/3, F1 0.8; class 1: P 1/2, R 1/2, F1 0.5;
        //   class 2: P 1/2, R 1/1, F1 2/3.
        let labels = [0, 0, 0, 1, 1, 2];
        let probs = rows(
            &[(0, 0.9), (0, 0.9), (1, 0.9), (1, 0.9), (2, 0.9), (2, 0.9)],
            3,
        );
        let m = class_metrics(&probs, &labels, 3);
        assert_eq!(
            m.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(m.per_class[0].precision, 1.0) && close(m.per_class[0].recall, 2.0 / 3.0));
        assert!(close(m.per_class[0].f1, 0.8));
        assert!(close(m.per_class[1].f1, 0.5));
        assert!(close(m.per_class[2].precision, 0.5) && close(m.per_class[2].f1, 2.0 / 3.0));
        assert!(close(m.macro_precision, 2.0 / 3.0));
        assert!(close(m.macro_recall, (2.0 / 3.0 + 0.5 + 1.0) / 3.0));
        assert!(close(m.macro_f1, (0.8 + 0.5 + 2.0 / 3.0) / 3.0));
        assert_eq!(
            m.per_class.iter().map(|s| s.support).collect::<Vec<_>>(),
            vec![3, 2, 1]
        );
        // Every confidence is 0.9 and 4 of 6 are right: ECE = |0.9 - 4/6|.
        assert!((m.ece - (0.9 - 4.0 / 6.0)).abs() < 1e-6, "{}", m.ece);
        // Cross-entropy: four right at 0.9, two wrong at 0.05.
        let expected = -(4.0 * 0.9f64.ln() + 2.0 * 0.05f64.ln()) / 6.0;
        assert!((m.loss - expected).abs() < 1e-6);
        assert!(m.accuracy_interval[0] < m.accuracy && m.accuracy < m.accuracy_interval[1]);
    }

    #[test]
    fn calibration_error_is_zero_when_confidence_matches_accuracy() {
        // Confidence 0.75 (bin 12 of 15) and three of four right; confidence 0.5 and one of
        // two right: perfectly calibrated.
        let labels = [0, 0, 0, 1, 0, 1];
        let probs = rows(
            &[
                (0, 0.75),
                (0, 0.75),
                (0, 0.75),
                (0, 0.75),
                (0, 0.5),
                (0, 0.5),
            ],
            2,
        );
        let m = class_metrics(&probs, &labels, 2);
        assert!(m.ece.abs() < 1e-7, "{}", m.ece);
        // A class never predicted has precision 0, not NaN.
        assert_eq!(m.per_class[1].precision, 0.0);
        assert_eq!(m.per_class[1].f1, 0.0);
    }
}
