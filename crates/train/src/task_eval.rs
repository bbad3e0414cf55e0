//! A model's abilities on task examples: exact match, per-token accuracy, edit distance,
//! log-probability of the right answer and Brier score, all from the same model.
//!
//! Teacher-forced metrics come from one forward pass over prompt and answer; the edit distance
//! needs the model's own answer, decoded greedily one token at a time from the prompt.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use scalelab_data::{Example, answer_batch, edit_distance};
use scalelab_spec::{ExampleScore, TaskMetrics};

use crate::Objective;

/// Examples per forward pass.
const CHUNK: usize = 256;

/// Evaluates `model` (without autodiff, on `device`) on `examples`, which must be non-empty
/// and of one task.
pub fn evaluate_task<M: Objective>(
    model: &M,
    examples: &[Example],
    device: &Device,
) -> TaskMetrics {
    evaluate_task_examples(model, examples, device).0
}

/// [`evaluate_task`], with every example's own scores too.
pub fn evaluate_task_examples<M: Objective>(
    model: &M,
    examples: &[Example],
    device: &Device,
) -> (TaskMetrics, Vec<ExampleScore>) {
    let answer_tokens = examples.first().map_or(0, |e| e.answer.len());
    let (mut exact, mut correct_tokens, mut edits) = (0usize, 0usize, 0usize);
    let (mut log_prob, mut brier) = (0.0f64, 0.0f64);
    let mut scores_each = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(CHUNK) {
        // Teacher-forced: log-probabilities at the answer positions.
        let batch = answer_batch(chunk);
        let (n, t, start) = (batch.batch, batch.ctx, batch.loss_start);
        let inputs = Tensor::<2, Int>::from_data(TensorData::new(batch.inputs, [n, t]), device);
        let logits = model.logits(inputs).narrow(1, start, t - start); // [n, A, V]
        let v = logits.dims()[2];
        let lp: Vec<f32> = log_softmax(logits, 2)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        // Greedy: the model's own answer, one token at a time.
        let generated = greedy_answers(model, chunk, answer_tokens, device);
        let rows = (answer_tokens * v).max(1);
        for ((e, answer), lp) in chunk.iter().zip(&generated).zip(lp.chunks(rows)) {
            let scores = score_tokens(lp, v, e.answer.iter().map(|&y| y as usize));
            correct_tokens += scores.correct;
            log_prob += scores.log_prob;
            brier += scores.brier;
            let right = answer == &e.answer;
            exact += usize::from(right);
            edits += edit_distance(answer, &e.answer);
            scores_each.push(ExampleScore {
                example: scores_each.len(),
                answer_tokens: e.answer.len(),
                exact_match: right,
                log_prob: scores.log_prob,
                correct_tokens: scores.correct,
            });
        }
    }
    let n = examples.len().max(1) as f64;
    let tokens = (examples.len() * answer_tokens).max(1) as f64;
    let metrics = TaskMetrics {
        examples: examples.len(),
        answer_tokens,
        exact_match: exact as f64 / n,
        token_accuracy: correct_tokens as f64 / tokens,
        edit_distance: edits as f64 / n,
        log_prob: log_prob / n,
        brier: brier / tokens,
    };
    (metrics, scores_each)
}

/// Sums over answer tokens of the teacher-forced scores.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TokenScores {
    /// Tokens whose argmax is the target.
    correct: usize,
    /// Σ ln p(target).
    log_prob: f64,
    /// Σ Σ_k (p_k − 1[k = target])².
    brier: f64,
}

/// Scores rows of log-probabilities (`v` per row, one row per answer token) against their
/// targets.
fn score_tokens(lp: &[f32], v: usize, targets: impl Iterator<Item = usize>) -> TokenScores {
    let mut s = TokenScores {
        correct: 0,
        log_prob: 0.0,
        brier: 0.0,
    };
    for (row, y) in lp.chunks_exact(v).zip(targets) {
        s.log_prob += f64::from(row[y]);
        s.correct += usize::from(argmax(row) == y);
        let sum_sq: f64 = row.iter().map(|&l| f64::from(l).exp().powi(2)).sum();
        s.brier += sum_sq - 2.0 * f64::from(row[y]).exp() + 1.0;
    }
    s
}

/// Index of the largest value (the first of ties).
fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 { (i, x) } else { best }
        })
        .0
}

/// Greedy continuations of `answer_tokens` tokens for each example's prompt.
fn greedy_answers<M: Objective>(
    model: &M,
    examples: &[Example],
    answer_tokens: usize,
    device: &Device,
) -> Vec<Vec<u32>> {
    let n = examples.len();
    let mut rows: Vec<Vec<i64>> = examples
        .iter()
        .map(|e| e.prompt.iter().map(|&t| i64::from(t)).collect())
        .collect();
    for _ in 0..answer_tokens {
        let t = rows[0].len();
        let flat: Vec<i64> = rows.iter().flatten().copied().collect();
        let inputs = Tensor::<2, Int>::from_data(TensorData::new(flat, [n, t]), device);
        let last = model.logits(inputs).narrow(1, t - 1, 1); // [n, 1, V]
        let next: Vec<i64> = last
            .argmax(2) // [n, 1, 1]
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap_or_default();
        for (row, &token) in rows.iter_mut().zip(&next) {
            row.push(token);
        }
    }
    let prompt_len = examples.first().map_or(0, |e| e.prompt.len());
    rows.into_iter()
        .map(|row| row[prompt_len..].iter().map(|&t| t as u32).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_scores_by_hand() {
        // Two answer tokens over a vocabulary of 3: p = (0.7, 0.2, 0.1) with target 0, and
        // p = (0.5, 0.25, 0.25) with target 2.
        let lp: Vec<f32> = [0.7f32, 0.2, 0.1, 0.5, 0.25, 0.25]
            .iter()
            .map(|p| p.ln())
            .collect();
        let s = score_tokens(&lp, 3, [0, 2].into_iter());
        assert_eq!(s.correct, 1);
        assert!((s.log_prob - (0.7f64.ln() + 0.25f64.ln())).abs() < 1e-6);
        // Brier: (0.3² + 0.2² + 0.1²) + (0.5² + 0.25² + 0.75²) = 0.14 + 0.875.
        assert!((s.brier - 1.015).abs() < 1e-6, "{}", s.brier);
    }
}
