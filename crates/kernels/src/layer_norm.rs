//! LayerNorm over the last axis, forward and backward, one row-parallel pass each.

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;
use rayon::prelude::*;

use crate::buffer::{self, Chunk, Filled};
use crate::simd::{
    ROWS_PER_TASK, contiguous_f32, elements_mut, sum_map, sum_map2, sum_map3, writable,
};

/// LayerNorm of the rows of `x` `[..., d]`: `(x − mean)·rstd·γ + β` with
/// `rstd = 1/√(var + ε)` (biased variance, as PyTorch and Burn), and each row's `[mean, rstd]`.
pub(crate) fn layer_norm_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f32,
) -> (FlexTensor, Vec<[f32; 2]>) {
    let shape = x.shape();
    let d = shape[shape.num_dims() - 1];
    let (x, gamma, beta) = (
        x.to_contiguous(),
        gamma.to_contiguous(),
        beta.to_contiguous(),
    );
    let (xs, gamma, beta) = (
        contiguous_f32(&x),
        contiguous_f32(&gamma),
        contiguous_f32(&beta),
    );
    let mut stats = vec![[0.0; 2]; xs.len() / d];
    let arch = pulp::Arch::new();
    let inputs = xs
        .par_chunks(d * ROWS_PER_TASK)
        .zip(stats.par_chunks_mut(ROWS_PER_TASK));
    let (out, _) = buffer::par_new_tensor(shape, d * ROWS_PER_TASK, inputs, |out, (xs, stats)| {
        let kernel = LayerNormRows {
            out,
            xs,
            stats,
            gamma,
            beta,
            d,
            epsilon,
        };
        (arch.dispatch(kernel), ())
    });
    (out, stats)
}

kernel! {
    /// LayerNorm of the rows (length `d`) of `xs` into `out`, with each row's `[mean, rstd]`.
    struct LayerNormRows<'a> {
        out: Chunk<'a>,
        xs: &'a [f32],
        stats: &'a mut [[f32; 2]],
        gamma: &'a [f32],
        beta: &'a [f32],
        d: usize,
        epsilon: f32,
    } -> Filled {
        let mut out = out;
        for (x, stat) in xs.chunks(d).zip(stats.iter_mut()) {
            let mean = sum_map(x, |v| v) / d as f32;
            let var = sum_map(x, |v| (v - mean) * (v - mean)) / d as f32;
            let rstd = 1.0 / (var + epsilon).sqrt();
            let y = x.iter().zip(gamma).zip(beta).map(|((&x, &g), &b)| (x - mean) * rstd * g + b);
            out.write(d, y);
            *stat = [mean, rstd];
        }
        out.finish()
    }
}

/// Gradients of LayerNorm's input, gain and bias from the output's gradient `grad`:
/// with `x̂ = (x − mean)·rstd` and `ĝ = grad·γ` per row,
/// `dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))`, `dγ = Σ_rows grad·x̂`, `dβ = Σ_rows grad`.
/// `dx` is written over `grad` (each row's sums are taken before its elements are replaced),
/// in `grad`'s buffer when nothing else holds it.
pub(crate) fn layer_norm_backward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    stats: &[[f32; 2]],
    grad: FlexTensor,
) -> [FlexTensor; 3] {
    let shape = x.shape();
    let d = shape[shape.num_dims() - 1];
    let (x, gamma) = (x.to_contiguous(), gamma.to_contiguous());
    let (xs, gamma) = (contiguous_f32(&x), contiguous_f32(&gamma));
    let mut dx = writable(grad);
    let arch = pulp::Arch::new();
    // Each task's partial sums of dγ and dβ, [2·d], added up after.
    let partial = elements_mut(&mut dx)
        .par_chunks_mut(d * ROWS_PER_TASK)
        .zip(xs.par_chunks(d * ROWS_PER_TASK))
        .zip(stats.par_chunks(ROWS_PER_TASK))
        .map(|((rows, xs), stats)| {
            let mut sums = vec![0.0f32; 2 * d];
            arch.dispatch(LayerNormBackwardRows {
                rows,
                xs,
                stats,
                gamma,
                sums: &mut sums,
                d,
            });
            sums
        })
        .collect::<Vec<_>>()
        .into_iter()
        // In task order, so the sums do not depend on how the threads split the work.
        .fold(vec![0.0f32; 2 * d], |mut a, b| {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
            a
        });
    let vector = |v: &[f32]| FlexTensor::from_data(TensorData::new(v.to_vec(), [d]));
    let (dgamma, dbeta) = partial.split_at(d);
    [dx, vector(dgamma), vector(dbeta)]
}

kernel! {
    /// LayerNorm's backward pass over rows of length `d`: `rows` holds the output's gradient
    /// and receives the input's; `sums` `[2·d]` accumulates dγ then dβ.
    struct LayerNormBackwardRows<'a> {
        rows: &'a mut [f32],
        xs: &'a [f32],
        stats: &'a [[f32; 2]],
        gamma: &'a [f32],
        sums: &'a mut [f32],
        d: usize,
    } -> () {
        let (dgamma, dbeta) = sums.split_at_mut(d);
        for ((row, x), &[mean, rstd]) in rows.chunks_mut(d).zip(xs.chunks(d)).zip(stats) {
            for ((&x, &g), (dw, db)) in x
                .iter()
                .zip(row.iter())
                .zip(dgamma.iter_mut().zip(dbeta.iter_mut()))
            {
                *dw += g * (x - mean) * rstd;
                *db += g;
            }
            // ĝ = g·γ; its mean and the mean of ĝ·x̂.
            let mean_g = sum_map2(row, gamma, |g, w| g * w) / d as f32;
            let gx = sum_map3(x, row, gamma, |x, g, w| (x - mean) * rstd * g * w);
            let mean_gx = gx / d as f32;
            for ((g, &x), &w) in row.iter_mut().zip(x).zip(gamma) {
                let xhat = (x - mean) * rstd;
                *g = rstd * (*g * w - mean_g - xhat * mean_gx);
            }
        }
    }
}
