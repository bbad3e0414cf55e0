//! GELU with the exact normal CDF, forward and backward.

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use crate::buffer::{self, Chunk, Filled};
use crate::simd::{ELEMENTS_PER_TASK, contiguous_f32, exp_nonpositive, map_in_place};

/// `gelu(x)` element-wise.
pub(crate) fn gelu_forward(x: &FlexTensor) -> FlexTensor {
    let x_c = x.to_contiguous();
    let xs = contiguous_f32(&x_c);
    let arch = pulp::Arch::new();
    let chunks = xs.par_chunks(ELEMENTS_PER_TASK);
    buffer::par_new_tensor(x.shape(), ELEMENTS_PER_TASK, chunks, |out, xs| {
        (arch.dispatch(GeluForward { out, xs }), ())
    })
    .0
}

kernel! {
    /// `gelu(x)` of every element of `xs` into `out`.
    struct GeluForward<'a> { out: Chunk<'a>, xs: &'a [f32] } -> Filled {
        let mut out = out;
        out.write(xs.len(), xs.iter().map(|&x| gelu_and_slope(x).0));
        out.finish()
    }
}

/// `grad · gelu'(x)` element-wise, in `grad`'s buffer when nothing else holds it.
pub(crate) fn gelu_backward(x: &FlexTensor, grad: FlexTensor) -> FlexTensor {
    map_in_place(grad, x, |x, g| g * gelu_and_slope(x).1)
}

/// `(gelu(x), gelu'(x))` = `(x·Φ(x), Φ(x) + x·φ(x))`, with one exponential for both.
#[inline(always)]
pub(crate) fn gelu_and_slope(x: f32) -> (f32, f32) {
    use std::f32::consts::{FRAC_1_SQRT_2, PI};
    // erf(z) for z = x/√2 by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7):
    // 1 − t·(a1 + t·(a2 + …))·exp(−z²), t = 1/(1 + p·|z|), odd in z.
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = (x * FRAC_1_SQRT_2).abs();
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let gauss = exp_nonpositive(-z * z); // exp(−x²/2)
    let erf_abs = 1.0 - poly * gauss;
    let erf = erf_abs.copysign(x);
    let cdf = 0.5 * (1.0 + erf);
    let pdf = gauss * (0.5 / PI).sqrt(); // φ(x) = exp(−x²/2)/√(2π)
    (x * cdf, cdf + x * pdf)
}
