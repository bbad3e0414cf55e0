//! What the kernels share: the parallel task sizes, the interleaved SIMD reductions, the two-input
//! element map, a tensor's buffer made writable, and `exp` on non-positive arguments.

use burn::backend::flex::FlexTensor;
use burn::tensor::DType;
use rayon::prelude::*;

/// Rows processed per parallel task.
pub(crate) const ROWS_PER_TASK: usize = 64;

/// Independent accumulators of the reductions below: one SIMD register of f32 lanes, so that
/// a sum is not one long chain of dependent additions (which the compiler may not reorder).
pub(crate) const LANES: usize = 16;

/// `Σ f(a[i], b[i], c[i])` over the shortest slice, accumulated in [`LANES`] interleaved
/// partial sums.
#[inline(always)]
pub(crate) fn sum_map3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len()).min(c.len());
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    let mut acc = [0.0f32; LANES];
    let chunks = a
        .chunks_exact(LANES)
        .zip(b.chunks_exact(LANES))
        .zip(c.chunks_exact(LANES));
    for ((ca, cb), cc) in chunks {
        for (((acc, &x), &y), &z) in acc.iter_mut().zip(ca).zip(cb).zip(cc) {
            *acc += f(x, y, z);
        }
    }
    let tail = n - n % LANES;
    let rest: f32 = (tail..n).map(|i| f(a[i], b[i], c[i])).sum();
    acc.iter().sum::<f32>() + rest
}

/// `Σ f(a[i], b[i])`, as [`sum_map3`].
#[inline(always)]
pub(crate) fn sum_map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    sum_map3(a, b, b, |x, y, _| f(x, y))
}

/// `Σ f(a[i])`, as [`sum_map2`].
#[inline(always)]
pub(crate) fn sum_map(a: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    sum_map2(a, a, |x, _| f(x))
}

/// The largest element (−∞ for none), in [`LANES`] interleaved partial maxima.
#[inline(always)]
pub(crate) fn max_of(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = a.chunks_exact(LANES);
    let rest = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    for c in chunks {
        for (acc, &x) in acc.iter_mut().zip(c) {
            *acc = acc.max(x);
        }
    }
    acc.iter().fold(rest, |m, &x| m.max(x))
}

/// Elements per parallel task of the element-wise kernels.
pub(crate) const ELEMENTS_PER_TASK: usize = 1 << 14;

/// `out ← f(a, out)` element by element (`a` of `out`'s shape), split across the thread pool
/// and vectorised for the CPU's widest SIMD instructions.
pub(crate) fn map_in_place(
    out: FlexTensor,
    a: &FlexTensor,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> FlexTensor {
    let a = a.to_contiguous();
    let a = contiguous_f32(&a);
    let mut out = writable(out);
    let arch = pulp::Arch::new();
    elements_mut(&mut out)
        .par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(a.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|(out, a)| arch.dispatch(MapTask { out, a, f: &f }));
    out
}

/// One task's slices of [`map_in_place`], `out ← f(a, out)`, run under the CPU's SIMD features
/// so that the loop vectorises.
pub(crate) struct MapTask<'a, F> {
    out: &'a mut [f32],
    a: &'a [f32],
    f: &'a F,
}

impl<F: Fn(f32, f32) -> f32> pulp::WithSimd for MapTask<'_, F> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for (out, &a) in self.out.iter_mut().zip(self.a) {
            *out = (self.f)(a, *out);
        }
    }
}

/// `tensor`, contiguous, to write into: its own buffer when nothing else holds it (a copy is
/// made on the first write otherwise).
pub(crate) fn writable(tensor: FlexTensor) -> FlexTensor {
    if tensor.is_contiguous() && tensor.dtype() == DType::F32 {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

/// The f32 elements of a contiguous tensor, to write (its view, not the whole buffer).
pub(crate) fn elements_mut(tensor: &mut FlexTensor) -> &mut [f32] {
    let (start, end) = tensor
        .layout()
        .contiguous_offsets()
        .unwrap_or_else(|| unreachable!("made contiguous by `writable`"));
    &mut tensor.storage_mut::<f32>()[start..end]
}

/// `exp(x)` for `x ≤ 0` without a library call, so that loops of it vectorise: `x = n·ln2 + r`
/// with `|r| ≤ ln2/2`, a degree-6 Taylor polynomial for `exp(r)` (relative error ≤ 1.2e-7) and
/// `2ⁿ` built from its exponent bits. Below −87 (where `exp` is under 2⁻¹²⁵) it returns
/// `exp(−87)`, which every caller here multiplies by something at most 1.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    use std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.max(-87.0);
    let n = (x * LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2ⁿ for n ∈ [−126, 0]: the biased exponent n + 127 ∈ [1, 127] read off the low mantissa
    // bits of n + 127 + 2²³ (a float-to-int cast would not vectorise).
    let biased = (n + (127.0 + 8_388_608.0)).to_bits() & 0xff;
    p * f32::from_bits(biased << 23)
}

/// The f32 elements of a contiguous tensor.
pub(crate) fn contiguous_f32(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .unwrap_or_else(|| unreachable!("made contiguous f32 by the caller"))
}
