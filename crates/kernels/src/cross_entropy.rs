//! Mean cross-entropy of logits against class ids: softmax and loss in one pass, the gradient in
//! another.

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;
use rayon::prelude::*;

use crate::buffer::{self, Chunk, Filled};
use crate::simd::{
    ROWS_PER_TASK, contiguous_f32, elements_mut, exp_nonpositive, max_of, sum_map, writable,
};

/// Class ids of an integer tensor, as indices.
pub(crate) fn class_ids(targets: FlexTensor) -> Vec<usize> {
    targets
        .into_data()
        .iter::<i64>()
        .map(|t| usize::try_from(t).unwrap_or(usize::MAX))
        .collect()
}

/// The mean over rows of `logsumexp(z) − z[target]` for the rows `z` of `logits` `[N, V]`, as a
/// `[1]` tensor, and the softmax probabilities `[N, V]`. Panics on a class id out of range, as
/// Burn's cross-entropy does.
pub(crate) fn cross_entropy_forward(
    logits: &FlexTensor,
    targets: &[usize],
) -> (FlexTensor, FlexTensor) {
    let shape = logits.shape();
    let v = shape[shape.num_dims() - 1];
    let n = targets.len();
    assert!(
        targets.iter().all(|&t| t < v),
        "cross-entropy: a class id is not below the {v} classes"
    );
    let logits = logits.to_contiguous();
    let z = contiguous_f32(&logits);
    let arch = pulp::Arch::new();
    let inputs = z
        .par_chunks(v * ROWS_PER_TASK)
        .zip(targets.par_chunks(ROWS_PER_TASK));
    let (probs, losses) =
        buffer::par_new_tensor(shape, v * ROWS_PER_TASK, inputs, |probs, (z, targets)| {
            arch.dispatch(CrossEntropyRows {
                probs,
                z,
                targets,
                v,
            })
        });
    let total: f64 = losses.iter().sum();
    let loss = FlexTensor::from_data(TensorData::new(vec![(total / n as f64) as f32], [1]));
    (loss, probs)
}

/// `(softmax(z) − onehot(target))·upstream/N` for every row, over the probabilities' buffer.
pub(crate) fn cross_entropy_backward(
    probs: FlexTensor,
    targets: &[usize],
    upstream: f32,
) -> FlexTensor {
    let shape = probs.shape();
    let v = shape[shape.num_dims() - 1];
    let scale = upstream / targets.len() as f32;
    let mut grad = writable(probs);
    let arch = pulp::Arch::new();
    elements_mut(&mut grad)
        .par_chunks_mut(v * ROWS_PER_TASK)
        .zip(targets.par_chunks(ROWS_PER_TASK))
        .for_each(|(rows, targets)| {
            arch.dispatch(CrossEntropyBackwardRows {
                rows,
                targets,
                v,
                scale,
            })
        });
    grad
}

kernel! {
    /// Softmax of each row (length `v`) of `z` into `probs`; returns the sum over rows of
    /// `logsumexp(z) − z[target]`.
    struct CrossEntropyRows<'a> {
        probs: Chunk<'a>,
        z: &'a [f32],
        targets: &'a [usize],
        v: usize,
    } -> (Filled, f64) {
        let mut probs = probs;
        let mut total = 0.0f64;
        for (z, &target) in z.chunks(v).zip(targets) {
            let max = max_of(z);
            let p = probs.write(v, z.iter().map(|&z| exp_nonpositive(z - max)));
            let sum = sum_map(p, |p| p);
            let inv = 1.0 / sum;
            p.iter_mut().for_each(|p| *p *= inv);
            total += f64::from(sum.ln() + max - z[target]);
        }
        (probs.finish(), total)
    }
}

kernel! {
    /// `row ← (row − onehot(target))·scale` for rows of length `v`.
    struct CrossEntropyBackwardRows<'a> {
        rows: &'a mut [f32],
        targets: &'a [usize],
        v: usize,
        scale: f32,
    } -> () {
        for (row, &target) in rows.chunks_mut(v).zip(targets) {
            row[target] -= 1.0;
            row.iter_mut().for_each(|g| *g *= scale);
        }
    }
}
