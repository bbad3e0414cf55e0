//! Batch norm over the channels of `[B, C, H, W]` images, with an optional fused ReLU: the
//! batch's statistics in one parallel pass per channel, the normalisation in one pass per
//! image plane, and backward two passes. Burn's CPU backend computes the statistics through
//! transposed copies of the whole activation (`swap_dims` then `mean_dim`, twice) and the
//! backward pass through a dozen broadcast operations.

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::tensor::Shape;
use rayon::prelude::*;

use crate::buffer::{self, Chunk, Filled, tensor};
use crate::simd::{contiguous_f32, sum_map, sum_map2, sum_map3};

/// The input's channels, image planes and the elements of one plane.
fn dims(x: &FlexTensor) -> (usize, usize, usize) {
    let shape = x.shape();
    let (b, c) = (shape[0], shape[1]);
    let plane = shape.num_elements() / (b * c).max(1);
    (c, b * c, plane)
}

/// Each channel's mean and biased variance over the batch and the plane, `[2, C]` (means,
/// then variances): two passes (the mean, then the squares about it), channels in parallel.
pub(crate) fn channel_stats(x: &FlexTensor) -> FlexTensor {
    let (c, _, plane) = dims(x);
    let x = x.to_contiguous();
    let xs = contiguous_f32(&x);
    let n = (xs.len() / c.max(1)).max(1) as f32;
    let arch = pulp::Arch::new();
    let stats: Vec<[f32; 2]> = (0..c)
        .into_par_iter()
        .map(|ch| {
            arch.dispatch(ChannelStats {
                xs,
                c,
                ch,
                plane,
                n,
            })
        })
        .collect();
    let (means, vars): (Vec<f32>, Vec<f32>) = stats.into_iter().map(|[m, v]| (m, v)).unzip();
    tensor([means, vars].concat(), Shape::new([2, c]))
}

kernel! {
    /// Channel `ch`'s mean and biased variance (of `n` elements, in planes of `plane`).
    struct ChannelStats<'a> { xs: &'a [f32], c: usize, ch: usize, plane: usize, n: f32 } -> [f32; 2] {
        let planes = || xs.chunks_exact(plane).skip(ch).step_by(c);
        let mean = planes().map(|p| sum_map(p, |v| v)).sum::<f32>() / n;
        let var = planes().map(|p| sum_map(p, |v| (v - mean) * (v - mean))).sum::<f32>() / n;
        [mean, var]
    }
}

/// The per-channel `scale = γ·rstd` and `shift = β − mean·scale` of a batch norm with
/// statistics `mean` and `var`.
fn scale_shift(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f32,
) -> Vec<[f32; 2]> {
    (0..gamma.len())
        .map(|ch| {
            let scale = gamma[ch] / (var[ch] + epsilon).sqrt();
            [scale, beta[ch] - mean[ch] * scale]
        })
        .collect()
}

/// `(x − mean)·γ/√(var + ε) + β` per channel, through a ReLU when `relu`.
pub(crate) fn batch_norm_forward(
    x: &FlexTensor,
    [gamma, beta, mean, var]: [&FlexTensor; 4],
    epsilon: f32,
    relu: bool,
) -> FlexTensor {
    let (c, planes, plane) = dims(x);
    let x = x.to_contiguous();
    let xs = contiguous_f32(&x);
    let [gamma, beta, mean, var] = [gamma, beta, mean, var].map(|t| t.to_contiguous());
    let [gamma, beta, mean, var] = [&gamma, &beta, &mean, &var].map(contiguous_f32);
    let affine = scale_shift(gamma, beta, mean, var, epsilon);
    let arch = pulp::Arch::new();
    let inputs = xs.par_chunks(plane.max(1)).enumerate();
    let out_shape = x.shape();
    if planes * plane == 0 {
        return tensor(Vec::new(), out_shape);
    }
    buffer::par_new_tensor(out_shape, plane, inputs, |out, (p, xs)| {
        let [scale, shift] = affine[p % c];
        (
            arch.dispatch(Normalise {
                out,
                xs,
                scale,
                shift,
                relu,
            }),
            (),
        )
    })
    .0
}

kernel! {
    /// `x·scale + shift` of every element of `xs` into `out`, through a ReLU when `relu`.
    struct Normalise<'a> { out: Chunk<'a>, xs: &'a [f32], scale: f32, shift: f32, relu: bool } -> Filled {
        let mut out = out;
        if relu {
            out.write(xs.len(), xs.iter().map(|&x| (x * scale + shift).max(0.0)));
        } else {
            out.write(xs.len(), xs.iter().map(|&x| x * scale + shift));
        }
        out.finish()
    }
}

/// What a batch norm's backward pass needs: the input, its gain, the statistics it normalised
/// with, ε, the output when a ReLU was fused (its mask), and whether the statistics were the
/// batch's own (training) rather than constants (the running statistics).
#[derive(Debug, Clone)]
pub(crate) struct BatchNormState {
    pub(crate) x: FlexTensor,
    pub(crate) gamma: FlexTensor,
    pub(crate) mean: FlexTensor,
    pub(crate) var: FlexTensor,
    pub(crate) epsilon: f32,
    pub(crate) out: Option<FlexTensor>,
    pub(crate) batch_stats: bool,
}

/// Gradients of a batch norm's input, gain and shift from its output's gradient `grad`. With
/// `g` the gradient after the ReLU's mask, `x̂ = (x − mean)·rstd` and `N` elements a channel:
/// `dβ = Σ g`, `dγ = Σ g·x̂`, and `dx = γ·rstd·(g − dβ/N − x̂·dγ/N)` when the statistics are the
/// batch's (else `γ·rstd·g`).
pub(crate) fn batch_norm_backward(s: &BatchNormState, grad: &FlexTensor) -> [FlexTensor; 3] {
    let (c, planes, plane) = dims(&s.x);
    let x = s.x.to_contiguous();
    let xs = contiguous_f32(&x);
    let grad = grad.to_contiguous();
    let gs = contiguous_f32(&grad);
    let out = s.out.as_ref().map(FlexTensor::to_contiguous);
    let ys = out.as_ref().map(contiguous_f32);
    let [gamma, mean, var] = [&s.gamma, &s.mean, &s.var].map(|t| t.to_contiguous());
    let [gamma, mean, var] = [&gamma, &mean, &var].map(contiguous_f32);
    let n = (xs.len() / c.max(1)).max(1) as f32;
    let rstd: Vec<f32> = var.iter().map(|v| 1.0 / (v + s.epsilon).sqrt()).collect();
    let arch = pulp::Arch::new();
    // Per channel Σ g and Σ g·(x − mean), over its planes in order.
    let sums: Vec<[f32; 2]> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let m = mean[ch];
            let mut sums = [0.0f32; 2];
            for p in (ch..planes).step_by(c.max(1)) {
                let range = p * plane..(p + 1) * plane;
                let (x, g) = (&xs[range.clone()], &gs[range.clone()]);
                let part = arch.dispatch(GradSums {
                    x,
                    g,
                    y: ys.map(|y| &y[range]),
                    mean: m,
                });
                sums[0] += part[0];
                sums[1] += part[1];
            }
            sums
        })
        .collect();
    let dbeta: Vec<f32> = sums.iter().map(|s| s[0]).collect();
    let dgamma: Vec<f32> = sums.iter().zip(&rstd).map(|(s, r)| s[1] * r).collect();
    let inputs = xs
        .par_chunks(plane.max(1))
        .zip(gs.par_chunks(plane.max(1)))
        .enumerate();
    let dx = if planes * plane == 0 {
        tensor(Vec::new(), x.shape())
    } else {
        buffer::par_new_tensor(x.shape(), plane, inputs, |out, (p, (x, g))| {
            let ch = p % c;
            let y = ys.map(|y| &y[p * plane..(p + 1) * plane]);
            let scale = gamma[ch] * rstd[ch];
            let (centre, slope) = match s.batch_stats {
                true => (dbeta[ch] / n, dgamma[ch] / n),
                false => (0.0, 0.0),
            };
            let kernel = InputGrad {
                out,
                x,
                g,
                y,
                mean: mean[ch],
                rstd: rstd[ch],
                scale,
                centre,
                slope,
            };
            (arch.dispatch(kernel), ())
        })
        .0
    };
    [
        dx,
        tensor(dgamma, Shape::new([c])),
        tensor(dbeta, Shape::new([c])),
    ]
}

/// The gradient after a fused ReLU's mask: `g` where the output `y` is positive.
#[inline(always)]
fn masked(g: f32, y: f32) -> f32 {
    if y > 0.0 { g } else { 0.0 }
}

kernel! {
    /// `[Σ g, Σ g·(x − mean)]` over one plane, `g` masked by the output `y` when given.
    struct GradSums<'a> { x: &'a [f32], g: &'a [f32], y: Option<&'a [f32]>, mean: f32 } -> [f32; 2] {
        match y {
            Some(y) => [
                sum_map2(g, y, masked),
                sum_map3(g, y, x, |g, y, x| masked(g, y) * (x - mean)),
            ],
            None => [sum_map(g, |g| g), sum_map2(g, x, |g, x| g * (x - mean))],
        }
    }
}

kernel! {
    /// `dx = scale·(g − centre − x̂·slope)` over one plane, `x̂ = (x − mean)·rstd`.
    struct InputGrad<'a> {
        out: Chunk<'a>, x: &'a [f32], g: &'a [f32], y: Option<&'a [f32]>,
        mean: f32, rstd: f32, scale: f32, centre: f32, slope: f32,
    } -> Filled {
        let mut out = out;
        let dx = |g: f32, x: f32| scale * (g - centre - (x - mean) * rstd * slope);
        match y {
            Some(y) => out.write(x.len(), x.iter().zip(g).zip(y).map(|((&x, &g), &y)| dx(masked(g, y), x))),
            None => out.write(x.len(), x.iter().zip(g).map(|(&x, &g)| dx(g, x))),
        };
        out.finish()
    }
}
