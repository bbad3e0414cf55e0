//! Causal attention: the per-head products, the row-parallel masked softmax and its backward pass,
//! and the packed self-attention that reads heads where they lie in the `[B·T, 3d]` projections.

use burn::backend::Flex;
use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::Shape;
use rayon::prelude::*;

use crate::gemm::{self, MatRef};
use crate::simd::{
    ROWS_PER_TASK, contiguous_f32, elements_mut, exp_nonpositive, max_of, sum_map, sum_map2,
    writable,
};

/// Forward pass: the output `[B, nh, T, hs]` and the probabilities `P` `[B, nh, T, T]`.
pub(crate) fn attention_forward(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    scale: f32,
) -> (FlexTensor, FlexTensor) {
    let [q, k, v] = [q, k, v].map(|x| x.to_contiguous());
    let scores = per_head(heads_of(&q), transposed(heads_of(&k))); // [B, nh, T, T]
    let [batch, heads, t, _] = scores.shape().dims::<4>();
    let mask = KeyMask {
        heads,
        lengths: vec![t; batch],
        causal: true,
    };
    let probs = masked_softmax(scores, scale, &mask); // [B, nh, T, T], zero above the diagonal
    let out = per_head(heads_of(&probs), heads_of(&v)); // [B, nh, T, hs]
    (out, probs)
}

/// Gradients of `q`, `k`, `v` from the output's gradient `grad` `[B, nh, T, hs]`.
pub(crate) fn attention_backward(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    probs: FlexTensor,
    grad: FlexTensor,
    scale: f32,
) -> [FlexTensor; 3] {
    let [q, k, v, probs, grad] = [q, k, v, probs, grad].map(|x| x.to_contiguous());
    // out = P·v: dv = Pᵀ·grad, dP = grad·vᵀ.
    let dv = per_head(transposed(heads_of(&probs)), heads_of(&grad)); // [B, nh, T, hs]
    let dp = per_head(heads_of(&grad), transposed(heads_of(&v))); // [B, nh, T, T]
    // P = softmax(S), S = q·kᵀ·scale: dS·scale in one pass.
    let ds = softmax_backward(&probs, dp, scale); // [B, nh, T, T]
    let dq = per_head(heads_of(&ds), heads_of(&k)); // [B, nh, T, hs]
    let dk = per_head(transposed(heads_of(&ds)), heads_of(&q)); // [B, nh, T, hs]
    [dq, dk, dv]
}

/// The matrices of a contiguous `[B, nh, rows, cols]` f32 tensor, one per (sequence, head).
#[derive(Clone, Copy)]
pub(crate) struct Heads<'a> {
    data: &'a [f32],
    batch: usize,
    heads: usize,
    rows: usize,
    cols: usize,
    transposed: bool,
}

/// The per-(sequence, head) matrices of a contiguous `[B, nh, rows, cols]` tensor.
pub(crate) fn heads_of(tensor: &FlexTensor) -> Heads<'_> {
    let [batch, heads, rows, cols] = tensor.shape().dims::<4>();
    Heads {
        data: contiguous_f32(tensor),
        batch,
        heads,
        rows,
        cols,
        transposed: false,
    }
}

/// The same matrices, each transposed (no copy).
pub(crate) fn transposed(heads: Heads<'_>) -> Heads<'_> {
    Heads {
        transposed: !heads.transposed,
        ..heads
    }
}

impl<'a> Heads<'a> {
    /// The matrix of (sequence, head) `g = b·nh + h`.
    fn matrix(&self, g: usize) -> MatRef<'a> {
        let size = self.rows * self.cols;
        let m = MatRef::row_major(&self.data[g * size..(g + 1) * size], self.rows, self.cols);
        if self.transposed { m.t() } else { m }
    }

    /// The matrix of head `h` of sequence `b`.
    fn part(&self, b: usize, h: usize) -> MatRef<'a> {
        self.matrix(b * self.heads + h)
    }
}

/// The products `a·b` of every (sequence, head) as a new `[B, nh, ·, ·]` tensor, the heads
/// spread over the rayon pool.
pub(crate) fn per_head(a: Heads<'_>, b: Heads<'_>) -> FlexTensor {
    let product = gemm::batched_product(a.batch * a.heads, |g| a.matrix(g), |g| b.matrix(g));
    let [_, rows, cols] = product.shape().dims::<3>();
    Flex::float_reshape(product, Shape::new([a.batch, a.heads, rows, cols]))
}

/// What the backward pass of a packed self-attention keeps: the packed projections
/// `[B·T, 3d]` (contiguous), the probabilities `[B, nh, T, T]`, the shape and the scale.
#[derive(Debug, Clone)]
pub(crate) struct SelfAttentionState {
    qkv: FlexTensor,
    probs: FlexTensor,
    batch: usize,
    heads: usize,
    scale: f32,
}

/// The per-head matrices of a row-major `[B·T, width]` matrix whose rows hold heads of `hs`
/// side by side from column `offset`: head `h` of sequence `b` is a `T × hs` view (rows `width`
/// apart), read where it lies. `part(b, h)` for the queries, keys, values of `qkv`
/// (`offset` 0, d, 2d) or the heads of a `[B·T, d]` gradient.
#[derive(Clone, Copy)]
pub(crate) struct HeadViews<'a> {
    data: &'a [f32],
    t: usize,
    hs: usize,
    heads: usize,
    width: usize,
    offset: usize,
}

impl<'a> HeadViews<'a> {
    fn new(data: &'a [f32], t: usize, heads: usize, width: usize, offset: usize, d: usize) -> Self {
        Self {
            data,
            t,
            hs: d / heads,
            heads,
            width,
            offset,
        }
    }

    /// Head `h` of sequence `b`, `[T, hs]`.
    fn part(&self, b: usize, h: usize) -> MatRef<'a> {
        let start = b * self.t * self.width + self.offset + h * self.hs;
        MatRef::strided(&self.data[start..], self.t, self.hs, self.width, 1)
    }

    /// Head `g = b·nh + h`, for products indexed by (sequence, head) pairs.
    fn flat(&self, g: usize) -> MatRef<'a> {
        self.part(g / self.heads, g % self.heads)
    }
}

/// Which keys each query sees: those before each sequence's length (the rest are padding), and
/// with `causal` only those at or before the query.
#[derive(Debug, Clone)]
pub(crate) struct KeyMask {
    /// Heads per sequence.
    pub(crate) heads: usize,
    /// Real tokens of each sequence (at most `T`).
    pub(crate) lengths: Vec<usize>,
    /// Whether a query sees no later key.
    pub(crate) causal: bool,
}

/// Forward pass from `qkv` `[B·T, 3d]` (`B` the mask's sequences): the output `[B·T, d]` and
/// what the backward pass needs. The products read the heads where they lie in `qkv` and write
/// theirs straight into the `[B·T, d]` output, so no head is copied out or back.
pub(crate) fn self_attention_forward(
    qkv: &FlexTensor,
    mask: &KeyMask,
    scale: f32,
) -> (FlexTensor, SelfAttentionState) {
    let (batch, heads) = (mask.lengths.len(), mask.heads);
    let shape = qkv.shape();
    let (n, d) = (shape[0], shape[1] / 3);
    let t = n / batch;
    let qkv = qkv.to_contiguous();
    let packed = contiguous_f32(&qkv);
    let [q, k, v] = [0, d, 2 * d].map(|offset| HeadViews::new(packed, t, heads, 3 * d, offset, d));
    let scores = gemm::batched_product(batch * heads, |g| q.flat(g), |g| k.flat(g).t());
    let scores = Flex::float_reshape(scores, Shape::new([batch, heads, t, t])); // [B, nh, T, T]
    let probs = masked_softmax(scores, scale, mask); // zero where masked
    let p = heads_of(&probs);
    let out = gemm::heads_side_by_side(batch, heads, |b, h| p.part(b, h), |b, h| v.part(b, h));
    let state = SelfAttentionState {
        qkv,
        probs,
        batch,
        heads,
        scale,
    };
    (out, state) // [B·T, d]
}

/// Gradient of `qkv` `[B·T, 3d]` from the output's gradient `grad` `[B·T, d]`.
pub(crate) fn self_attention_backward(state: SelfAttentionState, grad: &FlexTensor) -> FlexTensor {
    let SelfAttentionState {
        qkv,
        probs,
        batch,
        heads,
        scale,
    } = state;
    let shape = grad.shape();
    let (n, d) = (shape[0], shape[1]);
    let t = n / batch;
    let packed = contiguous_f32(&qkv);
    let [q, k, v] = [0, d, 2 * d].map(|offset| HeadViews::new(packed, t, heads, 3 * d, offset, d));
    let grad = grad.to_contiguous();
    let g = HeadViews::new(contiguous_f32(&grad), t, heads, d, 0, d);
    // out = P·v: dP = grad·vᵀ (dv = Pᵀ·grad below).
    let dp = gemm::batched_product(batch * heads, |i| g.flat(i), |i| v.flat(i).t());
    let dp = Flex::float_reshape(dp, Shape::new([batch, heads, t, t]));
    // P = softmax(S), S = q·kᵀ·scale: dS·scale in one pass.
    let ds = softmax_backward(&probs, dp, scale); // [B, nh, T, T]
    let (p, ds) = (heads_of(&probs), heads_of(&ds));
    // dq = dS·k, dk = dSᵀ·q, dv = Pᵀ·grad, side by side as [B·T, 3d] (parts of nh heads).
    let lhs = |b: usize, j: usize| match j / heads {
        0 => ds.part(b, j % heads),
        1 => ds.part(b, j % heads).t(),
        _ => p.part(b, j % heads).t(),
    };
    let rhs = |b: usize, j: usize| match j / heads {
        0 => k.part(b, j % heads),
        1 => q.part(b, j % heads),
        _ => g.part(b, j % heads),
    };
    gemm::heads_side_by_side(batch, 3 * heads, lhs, rhs)
}

/// `softmax(scores·scale)` over the last axis of `[B, nh, T, T]`, the keys `mask` hides from
/// each query row masked out (set to 0); in `scores`' own buffer when nothing else holds it.
pub(crate) fn masked_softmax(scores: FlexTensor, scale: f32, mask: &KeyMask) -> FlexTensor {
    let shape = scores.shape();
    let t = shape[shape.num_dims() - 1];
    let mut probs = writable(scores);
    let arch = pulp::Arch::new();
    elements_mut(&mut probs)
        .par_chunks_mut(t * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(chunk, rows)| {
            arch.dispatch(SoftmaxRows {
                rows,
                first_row: chunk * ROWS_PER_TASK,
                t,
                scale,
                mask,
            })
        });
    probs
}

kernel! {
    /// Masked softmax of `rows` (of length `t`, the first being row `first_row` of the
    /// scores), in place.
    struct SoftmaxRows<'a> {
        rows: &'a mut [f32], first_row: usize, t: usize, scale: f32, mask: &'a KeyMask,
    } -> () {
        for (r, row) in rows.chunks_mut(t).enumerate() {
            let i = (first_row + r) % t; // query position
            let sequence = (first_row + r) / (t * mask.heads.max(1));
            let length = mask.lengths.get(sequence).map_or(t, |&n| n.clamp(1, t));
            let seen_keys = if mask.causal { length.min(i + 1) } else { length };
            let (seen, future) = row.split_at_mut(seen_keys);
            let max = max_of(seen) * scale;
            seen.iter_mut().for_each(|s| *s = exp_nonpositive(*s * scale - max));
            let inv = 1.0 / sum_map(seen, |p| p);
            seen.iter_mut().for_each(|p| *p *= inv);
            future.fill(0.0);
        }
    }
}

/// `P ⊙ (dP − rowsum(dP ⊙ P))·scale`: the gradient of the pre-scale scores from that of the
/// probabilities `P`, rows of the last axis; in `dprobs`' buffer when nothing else holds it.
pub(crate) fn softmax_backward(probs: &FlexTensor, dprobs: FlexTensor, scale: f32) -> FlexTensor {
    let shape = probs.shape();
    let t = shape[shape.num_dims() - 1];
    let probs = probs.to_contiguous();
    let p = contiguous_f32(&probs);
    let mut out = writable(dprobs);
    let arch = pulp::Arch::new();
    elements_mut(&mut out)
        .par_chunks_mut(t * ROWS_PER_TASK)
        .zip(p.par_chunks(t * ROWS_PER_TASK))
        .for_each(|(dp, p)| arch.dispatch(SoftmaxBackwardRows { dp, p, t, scale }));
    out
}

kernel! {
    /// `dp ← p ⊙ (dp − rowsum(dp ⊙ p))·scale` for rows of length `t`.
    struct SoftmaxBackwardRows<'a> { dp: &'a mut [f32], p: &'a [f32], t: usize, scale: f32 } -> () {
        for (dp, p) in dp.chunks_mut(t).zip(p.chunks(t)) {
            let dot = sum_map2(p, dp, |p, d| p * d);
            for (d, &p) in dp.iter_mut().zip(p) {
                *d = p * (*d - dot) * scale;
            }
        }
    }
}
