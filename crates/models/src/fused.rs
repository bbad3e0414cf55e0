//! Fused operations for the CPU (`flex`) backend, added through Burn's backend extension
//! with hand-written backward passes. Each public function here computes the same function
//! as Burn's own operations (tested against them, values and gradients) and runs them on other
//! devices, or when [`set_fused`] turned the kernels off.
//!
//! - [`causal_self_attention`] / [`causal_attention`]: Burn's autodiff runs attention as eleven
//!   recorded operations (two matmuls, a scale, a mask built and filled with −∞, a NaN-safe
//!   softmax of six element-wise passes); here the forward pass is two matmuls around one
//!   row-parallel pass that scales, masks and normalises, and the backward pass four matmuls
//!   around one pass (`dS = P ⊙ (dP − rowsum(dP ⊙ P))·scale`). The probabilities `P` are kept
//!   for the backward pass, as the unfused graph keeps them too. The packed form takes the
//!   `[B·T, 3d]` projections, reads each head where it lies in them (strided views) and
//!   writes its output and its gradient straight into the `[B·T, d]` and `[B·T, 3d]` layouts.
//! - [`linear`], [`linear_add`] (a residual connection), [`matmul`] (a layer without a bias,
//!   the output head): the `gemm` crate called directly (`gemm.rs`); a layer's output rows
//!   start as its bias (plus the residual) and the product is added in; backward, the two
//!   products go into new buffers and the bias gradient is one column-sum pass.
//! - [`gelu`], [`layer_norm`], [`cross_entropy`]: one pass forward, one backward.
//! - [`adamw_step`]: one pass over a parameter, its gradient and its two moments.
//!
//! The kernels split rows or elements across the rayon pool and are compiled inside `pulp`'s
//! run-time SIMD dispatch (the structs of the `kernel!` macro), write into their input's
//! buffer when nothing else holds it, and write new outputs once through `buffer.rs` (Burn's
//! own allocation zero-fills and then copies). Reductions across tasks add their partial sums
//! in task order, so results do not depend on how the threads split the work.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Dispatch, ExtensionType, Flex, backend_extension};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bytes, DType, Int, Shape, Tensor, TensorData};
use rayon::prelude::*;

use crate::buffer::{self, Chunk, Filled};
use crate::gemm::{self, MatRef};
use crate::init::LAYER_NORM_EPSILON;

/// Operations fused by hand on the CPU backend.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// `softmax(q·kᵀ·scale, causal)·v` for `q`, `k`, `v` of shape `[B, nh, T, hs]`.
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// Causal self-attention from the packed projections `qkv` `[B·T, 3d]` (q, k, v side by
    /// side, each `heads` heads wide) of `batch` sequences, to `[B·T, d]` (heads side by side).
    fn causal_self_attention(
        qkv: FloatTensor<Self>,
        batch: usize,
        heads: usize,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// A linear layer, `x·weight + bias` for `x` `[N, in]`, `weight` `[in, out]`, `bias` `[out]`.
    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// A linear layer added to a residual stream: `residual + x·weight + bias` for `x`
    /// `[N, in]`, `weight` `[in, out]`, `bias` `[out]`, `residual` `[N, out]`.
    fn fused_linear_add(
        residual: FloatTensor<Self>,
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// A matrix product `x·weight` for `x` `[N, in]`, `weight` `[in, out]` (a linear layer
    /// without a bias).
    fn fused_matmul(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;

    /// GELU, `x·Φ(x)` with the exact normal CDF, element-wise.
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Mean cross-entropy `[1]` of `logits` `[N, V]` against class ids `targets` `[N]`.
    fn fused_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self>;

    /// LayerNorm over the last axis of `x` with gain `gamma` and bias `beta` `[d]`.
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self>;
}

/// A parameter and its two AdamW moments, updated together.
#[derive(ExtensionType)]
pub struct AdamWTensors<B: Backend> {
    /// The parameter.
    pub param: FloatTensor<B>,
    /// The first moment (mean of gradients).
    pub moment_1: FloatTensor<B>,
    /// The second moment (mean of squared gradients).
    pub moment_2: FloatTensor<B>,
}

/// One AdamW step's constants.
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Added to the second moment's root.
    pub epsilon: f32,
    /// Decoupled weight decay (multiplied by the learning rate).
    pub weight_decay: f32,
    /// The step number, from 1 (for the moments' bias correction).
    pub time: i32,
}

/// The optimiser's fused operation. Optimisers update plain tensors (no autodiff), so it is
/// the CPU backend's alone.
#[backend_extension(Flex)]
pub trait FusedOptim: Backend {
    /// One AdamW step of `state` with gradient `grad`.
    fn adamw_step(
        #[extension_type] state: AdamWTensors<Self>,
        grad: FloatTensor<Self>,
        step: AdamWStep,
    ) -> AdamWTensors<Self>;
}

/// One AdamW step in one multi-threaded pass over the parameter, its gradient and its two
/// moments, computing what Burn's `AdamW` computes in about ten tensor operations:
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `p ← p·(1 − lr·wd) − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)`.
/// Returns the updated `[param, moment_1, moment_2]`. For tensors the fused kernels serve
/// ([`available`]); elsewhere run Burn's AdamW.
pub fn adamw_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: [Tensor<D>; 2],
    step: AdamWStep,
) -> [Tensor<D>; 3] {
    let [moment_1, moment_2] = moments.map(Tensor::into_dispatch);
    let out = <Dispatch as FusedOptim>::adamw_step(
        AdamWTensors {
            param: param.into_dispatch(),
            moment_1,
            moment_2,
        },
        grad.into_dispatch(),
        step,
    );
    [out.param, out.moment_1, out.moment_2].map(Tensor::from_dispatch)
}

impl FusedOptim for Flex {
    fn adamw_step(
        state: AdamWTensors<Flex>,
        grad: FlexTensor,
        step: AdamWStep,
    ) -> AdamWTensors<Flex> {
        adamw_kernel(state, &grad, step)
    }
}

/// Causal self-attention of `q`, `k`, `v` `[B, nh, T, hs]` → `[B, nh, T, hs]`, scaled by
/// `1/√hs`: the fused kernel on the CPU backend (with or without autodiff), Burn's attention
/// elsewhere. Both compute the same function.
pub fn causal_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    if !available(&q) {
        return unfused_causal_attention(q, k, v);
    }
    let [_, _, _, hs] = q.dims();
    let scale = 1.0 / (hs as f32).sqrt();
    Tensor::from_dispatch(<Dispatch as FusedOps>::causal_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        scale,
    ))
}

/// Burn's own causal attention: the reference the fused kernel is tested against.
pub fn unfused_causal_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let options = AttentionModuleOptions {
        scale: None, // 1/sqrt(hs)
        softcap: None,
        is_causal: true,
    };
    attention(q, k, v, None, None, options)
}

/// Causal self-attention of `batch` sequences from their packed projections `qkv`
/// `[B·T, 3d]` (the query, key and value projections side by side, each `heads` heads of
/// `hs = d/heads`) to `[B·T, d]`, scaled by `1/√hs`. On the CPU backend one operation: it
/// splits the heads out of `qkv` and merges them back itself, and its backward pass writes the
/// projections' gradient as one `[B·T, 3d]` tensor, where Burn's chunk → reshape → swap
/// builds three zero-filled full-width gradients and adds them up.
pub fn causal_self_attention(qkv: Tensor<2>, batch: usize, heads: usize) -> Tensor<2> {
    let [_, three_d] = qkv.dims();
    let hs = three_d / 3 / heads;
    if !available(&qkv) {
        return unfused_causal_self_attention(qkv, batch, heads);
    }
    let scale = 1.0 / (hs as f32).sqrt();
    Tensor::from_dispatch(<Dispatch as FusedOps>::causal_self_attention(
        qkv.into_dispatch(),
        batch,
        heads,
        scale,
    ))
}

/// [`causal_self_attention`] as Burn's operations: chunk, reshape and swap into heads, Burn's
/// attention, swap and reshape back. The reference the fused operation is tested against.
pub fn unfused_causal_self_attention(qkv: Tensor<2>, batch: usize, heads: usize) -> Tensor<2> {
    let [n, three_d] = qkv.dims();
    let (t, d) = (n / batch, three_d / 3);
    let hs = d / heads;
    let mut qkv = qkv
        .chunk(3, 1) // 3 × [B·T, d]
        .into_iter()
        .map(|z| z.reshape([batch, t, heads, hs]).swap_dims(1, 2)); // [B, nh, T, hs]
    let (Some(q), Some(k), Some(v)) = (qkv.next(), qkv.next(), qkv.next()) else {
        unreachable!("chunk(3) yields three tensors")
    };
    let y = unfused_causal_attention(q, k, v); // [B, nh, T, hs]
    y.swap_dims(1, 2).reshape([n, d]) // [B·T, d]
}

/// `layer` applied to `x` `[..., in]` → `[..., out]`. On the CPU backend, for layers with a
/// bias, one operation: the output rows start as copies of the bias and the product `x·W` is
/// added by the GEMM kernels straight into them; backward, `dx = dy·Wᵀ` and `dW = xᵀ·dy` go
/// into new uninitialised buffers and `db` is one column-sum pass. Burn's `Linear` runs a
/// matmul (output zero-filled and copied first), a broadcast add, and in the backward pass two
/// matmuls and a sum, each into a fresh zero-filled buffer.
pub fn linear<const D: usize>(x: Tensor<D>, layer: &Linear) -> Tensor<D> {
    if !available(&x) {
        return layer.forward(x);
    }
    let weight = layer.weight.val();
    match &layer.bias {
        Some(bias) => as_rows(x, weight.dims()[1], |x| {
            <Dispatch as FusedOps>::fused_linear(
                x.into_dispatch(),
                weight.into_dispatch(),
                bias.val().into_dispatch(),
            )
        }),
        None => matmul(x, weight),
    }
}

/// `residual + layer(x)`, `x` `[..., in]`, `residual` `[..., out]`: a residual connection. On
/// the CPU backend, for layers with a bias, one operation: the output rows start as the
/// residual's plus the bias and the product is added by the GEMM kernels, so the sum costs
/// no pass of its own; backward, the residual's gradient is the output's (no copy).
pub fn linear_add<const D: usize>(residual: Tensor<D>, x: Tensor<D>, layer: &Linear) -> Tensor<D> {
    let Some(bias) = layer.bias.as_ref().filter(|_| available(&x)) else {
        return residual + layer.forward(x);
    };
    let residual_dims = residual.dims();
    let rows = residual_dims[..D - 1].iter().product::<usize>();
    let residual = residual.reshape([rows, residual_dims[D - 1]]); // [N, out]
    let weight = layer.weight.val();
    as_rows(x, weight.dims()[1], |x| {
        <Dispatch as FusedOps>::fused_linear_add(
            residual.into_dispatch(),
            x.into_dispatch(),
            weight.into_dispatch(),
            bias.val().into_dispatch(),
        )
    })
}

/// `x` `[..., in]` times `weight` `[in, out]` → `[..., out]` (a linear layer without a bias;
/// `weight` may be a transposed view, as a tied output head's is). On the CPU backend one
/// operation writing its output and both gradients once (see [`linear`]); Burn's `matmul`
/// elsewhere.
pub fn matmul<const D: usize>(x: Tensor<D>, weight: Tensor<2>) -> Tensor<D> {
    if !available(&x) {
        return x.matmul(weight.unsqueeze());
    }
    as_rows(x, weight.dims()[1], |x| {
        <Dispatch as FusedOps>::fused_matmul(x.into_dispatch(), weight.into_dispatch())
    })
}

/// Runs `op` on `x` `[..., in]` seen as the matrix `[N, in]` and gives its `[N, out]` result
/// the leading dimensions of `x` back.
fn as_rows<const D: usize>(
    x: Tensor<D>,
    d_out: usize,
    op: impl FnOnce(Tensor<2>) -> burn::tensor::DispatchTensor,
) -> Tensor<D> {
    let mut dims = x.dims();
    let rows = dims[..D - 1].iter().product::<usize>();
    let out = Tensor::<2>::from_dispatch(op(x.reshape([rows, dims[D - 1]]))); // [N, out]
    dims[D - 1] = d_out;
    out.reshape(dims)
}

/// GELU with the exact normal CDF, `x·Φ(x)`: one multi-threaded, vectorised pass forward
/// and one backward on the CPU backend, Burn's `gelu` elsewhere. Both compute the same
/// function (the fused one's error function is within 1.5e-7 of the exact one).
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !available(&x) {
        return burn::tensor::activation::gelu(x);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_gelu(x.into_dispatch()))
}

/// `norm` applied to `x` `[..., d]`: one row-parallel pass forward and one backward on the CPU
/// backend, Burn's LayerNorm (nine recorded operations) elsewhere. `norm` must have been built
/// with [`LAYER_NORM_EPSILON`] and a bias, as every LayerNorm of this crate is.
pub fn layer_norm<const D: usize>(x: Tensor<D>, norm: &LayerNorm) -> Tensor<D> {
    let Some(beta) = norm.beta.as_ref().filter(|_| available(&x)) else {
        return norm.forward(x);
    };
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_layer_norm(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        LAYER_NORM_EPSILON as f32,
    ))
}

/// Mean cross-entropy in nats, `[1]`, of `logits` `[N, V]` against `targets` `[N]`: one
/// row-parallel pass forward (keeping the probabilities) and one backward on the CPU backend,
/// Burn's `CrossEntropyLoss` elsewhere.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    if !available(&logits) {
        return CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, targets);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_cross_entropy(
        logits.into_dispatch(),
        targets.into_dispatch(),
    ))
}

/// Whether the fused kernels are in use (they are unless [`set_fused`] turned them off).
static FUSED: AtomicBool = AtomicBool::new(true);

/// Turns the fused kernels on or off for the whole process (off: every operation of this
/// module runs Burn's own composition). For measuring what they save, and for tests that
/// compare training with and without them.
pub fn set_fused(enabled: bool) {
    FUSED.store(enabled, Ordering::Relaxed);
}

/// Whether the fused kernels serve `tensor`: on the `flex` device, with or without autodiff,
/// in f32, and not switched off by [`set_fused`].
pub fn available<const D: usize>(tensor: &Tensor<D>) -> bool {
    if !FUSED.load(Ordering::Relaxed) {
        return false;
    }
    let device = tensor.device();
    let flex = burn::tensor::Device::flex();
    tensor.dtype() == DType::F32 && (device == flex || device == flex.clone().autodiff())
}

impl FusedOps for Flex {
    fn causal_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, scale: f32) -> FlexTensor {
        attention_forward(q, k, v, scale).0
    }

    fn causal_self_attention(
        qkv: FlexTensor,
        batch: usize,
        heads: usize,
        scale: f32,
    ) -> FlexTensor {
        self_attention_forward(&qkv, batch, heads, scale).0
    }

    fn fused_linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        linear_forward(&x, &weight, &bias)
    }

    fn fused_linear_add(
        residual: FlexTensor,
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
    ) -> FlexTensor {
        linear_add_forward(&residual, &x, &weight, &bias)
    }

    fn fused_matmul(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        matmul_forward(&x, &weight)
    }

    fn fused_gelu(x: FlexTensor) -> FlexTensor {
        gelu_forward(&x)
    }

    fn fused_layer_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f32,
    ) -> FlexTensor {
        layer_norm_forward(&x, &gamma, &beta, epsilon).0
    }

    fn fused_cross_entropy(logits: FlexTensor, targets: FlexTensor) -> FlexTensor {
        cross_entropy_forward(&logits, &class_ids(targets)).0
    }
}

/// Forward pass: the output `[B, nh, T, hs]` and the probabilities `P` `[B, nh, T, T]`.
fn attention_forward(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    scale: f32,
) -> (FlexTensor, FlexTensor) {
    let [q, k, v] = [q, k, v].map(|x| x.to_contiguous());
    let scores = per_head(heads_of(&q), transposed(heads_of(&k))); // [B, nh, T, T]
    let probs = causal_softmax(scores, scale); // [B, nh, T, T], zero above the diagonal
    let out = per_head(heads_of(&probs), heads_of(&v)); // [B, nh, T, hs]
    (out, probs)
}

/// Gradients of `q`, `k`, `v` from the output's gradient `grad` `[B, nh, T, hs]`.
fn attention_backward(
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
struct Heads<'a> {
    data: &'a [f32],
    batch: usize,
    heads: usize,
    rows: usize,
    cols: usize,
    transposed: bool,
}

/// The per-(sequence, head) matrices of a contiguous `[B, nh, rows, cols]` tensor.
fn heads_of(tensor: &FlexTensor) -> Heads<'_> {
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
fn transposed(heads: Heads<'_>) -> Heads<'_> {
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
fn per_head(a: Heads<'_>, b: Heads<'_>) -> FlexTensor {
    let product = gemm::batched_product(a.batch * a.heads, |g| a.matrix(g), |g| b.matrix(g));
    let [_, rows, cols] = product.shape().dims::<3>();
    Flex::float_reshape(product, Shape::new([a.batch, a.heads, rows, cols]))
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct CausalAttention;

        impl Backward<Flex, 3> for CausalAttention {
            /// q, k, v, the probabilities, the scale.
            type State = (FlexTensor, FlexTensor, FlexTensor, FlexTensor, f32);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |(q, k, v, probs, scale), grad| {
                    attention_backward(q, k, v, probs, grad, scale)
                });
            }
        }

        let parents = [q.node(), k.node(), v.node()];
        let [q, k, v] = [q, k, v].map(|x| x.into_primitive());
        record::<_, C, 3>(CausalAttention, parents, || {
            let (out, probs) = attention_forward(q.clone(), k.clone(), v.clone(), scale);
            (out, (q, k, v, probs, scale))
        })
    }

    fn causal_self_attention(
        qkv: FloatTensor<Self>,
        batch: usize,
        heads: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SelfAttention;

        impl Backward<Flex, 1> for SelfAttention {
            type State = SelfAttentionState;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |state, grad| {
                    [self_attention_backward(state, &grad)]
                });
            }
        }

        let parents = [qkv.node()];
        let qkv = qkv.into_primitive();
        record::<_, C, 1>(SelfAttention, parents, || {
            self_attention_forward(&qkv, batch, heads, scale)
        })
    }

    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LinearOp;

        impl Backward<Flex, 3> for LinearOp {
            /// The input and the weight.
            type State = (FlexTensor, FlexTensor);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |(x, weight), grad| {
                    linear_backward(&x, &weight, &grad, true)
                });
            }
        }

        let parents = [x.node(), weight.node(), bias.node()];
        let [x, weight, bias] = [x, weight, bias].map(|t| t.into_primitive());
        record::<_, C, 3>(LinearOp, parents, || {
            (linear_forward(&x, &weight, &bias), (x, weight))
        })
    }

    fn fused_linear_add(
        residual: FloatTensor<Self>,
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LinearAdd;

        impl Backward<Flex, 4> for LinearAdd {
            /// The input and the weight.
            type State = (FlexTensor, FlexTensor);

            fn backward(
                self,
                ops: Ops<Self::State, 4>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |(x, weight), grad| {
                    let [dx, dw, db] = linear_backward(&x, &weight, &grad, true);
                    [grad, dx, dw, db] // the residual passes the gradient through
                });
            }
        }

        let parents = [residual.node(), x.node(), weight.node(), bias.node()];
        let [residual, x, weight, bias] = [residual, x, weight, bias].map(|t| t.into_primitive());
        record::<_, C, 4>(LinearAdd, parents, || {
            let out = linear_add_forward(&residual, &x, &weight, &bias);
            (out, (x, weight))
        })
    }

    fn fused_matmul(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Matmul;

        impl Backward<Flex, 2> for Matmul {
            /// The input and the weight.
            type State = (FlexTensor, FlexTensor);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |(x, weight), grad| {
                    let [dx, dw, _] = linear_backward(&x, &weight, &grad, false);
                    [dx, dw]
                });
            }
        }

        let parents = [x.node(), weight.node()];
        let [x, weight] = [x, weight].map(|t| t.into_primitive());
        record::<_, C, 2>(Matmul, parents, || {
            (matmul_forward(&x, &weight), (x, weight))
        })
    }

    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Gelu;

        impl Backward<Flex, 1> for Gelu {
            /// The input.
            type State = FlexTensor;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |x, grad| [gelu_backward(&x, grad)]);
            }
        }

        let parents = [x.node()];
        let x = x.into_primitive();
        record::<_, C, 1>(Gelu, parents, || (gelu_forward(&x), x))
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LayerNormOp;

        impl Backward<Flex, 3> for LayerNormOp {
            /// The input, the gain, and each row's mean and 1/std.
            type State = (FlexTensor, FlexTensor, Vec<[f32; 2]>);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |(x, gamma, stats), grad| {
                    layer_norm_backward(&x, &gamma, &stats, grad)
                });
            }
        }

        let parents = [x.node(), gamma.node(), beta.node()];
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.into_primitive());
        record::<_, C, 3>(LayerNormOp, parents, || {
            let (y, stats) = layer_norm_forward(&x, &gamma, &beta, epsilon);
            (y, (x, gamma, stats))
        })
    }

    fn fused_cross_entropy(logits: FloatTensor<Self>, targets: FlexTensor) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct CrossEntropy;

        impl Backward<Flex, 1> for CrossEntropy {
            /// The probabilities and the class ids.
            type State = (FlexTensor, Vec<usize>);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |(probs, targets), grad| {
                    let upstream = contiguous_f32(&grad.to_contiguous())[0];
                    [cross_entropy_backward(probs, &targets, upstream)]
                });
            }
        }

        let parents = [logits.node()];
        let logits = logits.into_primitive();
        let targets = class_ids(targets);
        record::<_, C, 1>(CrossEntropy, parents, || {
            let (loss, probs) = cross_entropy_forward(&logits, &targets);
            (loss, (probs, targets))
        })
    }
}

/// Puts a fused operation in the autodiff graph: `forward` returns the output and the state
/// its backward pass needs (a by-product of the forward pass, so computing it costs nothing
/// when no input is tracked; the state is then dropped).
fn record<O, C, const N: usize>(
    op: O,
    parents: [NodeGuard; N],
    forward: impl FnOnce() -> (FlexTensor, O::State),
) -> FloatTensor<Autodiff<Flex, C>>
where
    O: Backward<Flex, N>,
    C: CheckpointStrategy,
{
    match op.prepare::<C>(parents).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, state) = forward();
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward().0),
    }
}

/// The backward step of every fused operation: `gradients` turns the kept state and the
/// output's gradient into the inputs' gradients, registered for the inputs that are tracked.
fn register<S, const N: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
    gradients: impl FnOnce(S, FlexTensor) -> [FlexTensor; N],
) {
    let grad = grads.consume::<Flex>(&ops.node);
    for (parent, g) in ops.parents.into_iter().zip(gradients(ops.state, grad)) {
        if let Some(node) = parent {
            grads.register::<Flex>(node.id, g);
        }
    }
}

/// What the backward pass of [`causal_self_attention`] keeps: the packed projections
/// `[B·T, 3d]` (contiguous), the probabilities `[B, nh, T, T]`, the shape and the scale.
#[derive(Debug, Clone)]
struct SelfAttentionState {
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
struct HeadViews<'a> {
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

/// Forward pass from `qkv` `[B·T, 3d]`: the output `[B·T, d]` and what the backward pass needs.
/// The products read the heads where they lie in `qkv` and write theirs straight into the
/// `[B·T, d]` output, so no head is copied out or back.
fn self_attention_forward(
    qkv: &FlexTensor,
    batch: usize,
    heads: usize,
    scale: f32,
) -> (FlexTensor, SelfAttentionState) {
    let shape = qkv.shape();
    let (n, d) = (shape[0], shape[1] / 3);
    let t = n / batch;
    let qkv = qkv.to_contiguous();
    let packed = contiguous_f32(&qkv);
    let [q, k, v] = [0, d, 2 * d].map(|offset| HeadViews::new(packed, t, heads, 3 * d, offset, d));
    let scores = gemm::batched_product(batch * heads, |g| q.flat(g), |g| k.flat(g).t());
    let scores = Flex::float_reshape(scores, Shape::new([batch, heads, t, t])); // [B, nh, T, T]
    let probs = causal_softmax(scores, scale); // zero above the diagonal
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
fn self_attention_backward(state: SelfAttentionState, grad: &FlexTensor) -> FlexTensor {
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

/// `x·weight + bias`: `x` `[N, in]`, `weight` `[in, out]`, `bias` `[out]` → `[N, out]`.
fn linear_forward(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> FlexTensor {
    let (x, weight, bias) = (matrix_view(x), matrix_view(weight), bias.to_contiguous());
    gemm::affine(matrix(&x), matrix(&weight), contiguous_f32(&bias), None)
}

/// `x·weight`: `x` `[N, in]`, `weight` `[in, out]` (any non-negative strides) → `[N, out]`.
fn matmul_forward(x: &FlexTensor, weight: &FlexTensor) -> FlexTensor {
    let (x, weight) = (matrix_view(x), matrix_view(weight));
    gemm::product(matrix(&x), matrix(&weight))
}

/// `residual + x·weight + bias`, `residual` `[N, out]`.
fn linear_add_forward(
    residual: &FlexTensor,
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
) -> FlexTensor {
    let (x, weight) = (matrix_view(x), matrix_view(weight));
    let (bias, residual) = (bias.to_contiguous(), residual.to_contiguous());
    let residual = Some(contiguous_f32(&residual));
    gemm::affine(matrix(&x), matrix(&weight), contiguous_f32(&bias), residual)
}

/// Gradients of a linear layer's input, weight and bias from its output's gradient `grad`
/// `[N, out]`: `dx = grad·Wᵀ` `[N, in]`, `dW = xᵀ·grad` `[in, out]`, `db` = column sums `[out]`
/// (an empty `[0]` tensor unless `with_bias`).
fn linear_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    with_bias: bool,
) -> [FlexTensor; 3] {
    let (x, weight, grad) = (matrix_view(x), matrix_view(weight), grad.to_contiguous());
    let (x_m, w_m, g_m) = (matrix(&x), matrix(&weight), matrix(&grad));
    let dx = gemm::product(g_m, w_m.t());
    let dw = gemm::product(x_m.t(), g_m);
    let [_, d_out] = grad.shape().dims::<2>();
    let db = if with_bias {
        column_sums(contiguous_f32(&grad), d_out)
    } else {
        Vec::new()
    };
    let d_out = db.len();
    let db = FlexTensor::new(
        Bytes::from_elems(db),
        Layout::contiguous(Shape::new([d_out])),
        DType::F32,
    );
    [dx, dw, db]
}

/// `tensor` itself when it is a 2-D f32 view the GEMM kernels can read (strides not negative),
/// a contiguous copy otherwise.
fn matrix_view(tensor: &FlexTensor) -> FlexTensor {
    if tensor.layout().num_dims() == 2 && tensor.layout().has_positive_strides() {
        tensor.clone()
    } else {
        tensor.to_contiguous()
    }
}

/// The matrix of a 2-D f32 tensor with non-negative strides (see [`matrix_view`]).
fn matrix(tensor: &FlexTensor) -> MatRef<'_> {
    let layout = tensor.layout();
    let Some((rows, cols, row_stride, col_stride)) = layout.as_2d_strides() else {
        unreachable!("made 2-D by the caller")
    };
    let stride = |s: isize| usize::try_from(s).unwrap_or_else(|_| unreachable!("strides checked"));
    let data = &tensor.storage::<f32>()[layout.start_offset()..];
    MatRef::strided(data, rows, cols, stride(row_stride), stride(col_stride))
}

/// Defines a kernel: a struct of the given fields whose body runs inside pulp's dispatch,
/// compiled for the CPU's widest SIMD instructions (call it as `arch.dispatch(Name { .. })`).
/// A closure given to `dispatch` is compiled on its own, for the baseline CPU, and does not
/// vectorise; a body written here is inlined into the dispatching function.
macro_rules! kernel {
    (
        $(#[$doc:meta])*
        struct $name:ident<$lt:lifetime> { $($field:ident: $ty:ty),* $(,)? } -> $out:ty $body:block
    ) => {
        $(#[$doc])*
        struct $name<$lt> {
            $($field: $ty),*
        }
        impl<$lt> pulp::WithSimd for $name<$lt> {
            type Output = $out;
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) -> $out {
                let Self { $($field),* } = self;
                $body
            }
        }
    };
}

/// Rows processed per parallel task.
const ROWS_PER_TASK: usize = 64;

/// Independent accumulators of the reductions below: one SIMD register of f32 lanes, so that
/// a sum is not one long chain of dependent additions (which the compiler may not reorder).
const LANES: usize = 16;

/// `Σ f(a[i], b[i], c[i])` over the shortest slice, accumulated in [`LANES`] interleaved
/// partial sums.
#[inline(always)]
fn sum_map3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
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
fn sum_map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    sum_map3(a, b, b, |x, y, _| f(x, y))
}

/// `Σ f(a[i])`, as [`sum_map2`].
#[inline(always)]
fn sum_map(a: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    sum_map2(a, a, |x, _| f(x))
}

/// The largest element (−∞ for none), in [`LANES`] interleaved partial maxima.
#[inline(always)]
fn max_of(a: &[f32]) -> f32 {
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

/// The sums of the columns of the row-major matrix `m` with rows of `cols` (a bias's
/// gradient): each task adds a fixed block of rows into its own row of sums, then the rows of
/// sums are added in order (so the result does not depend on how the threads split the work).
fn column_sums(m: &[f32], cols: usize) -> Vec<f32> {
    const ROWS_PER_SUM: usize = 256;
    let arch = pulp::Arch::new();
    let partial: Vec<Vec<f32>> = m
        .par_chunks(cols * ROWS_PER_SUM)
        .map(|rows| {
            let mut sums = vec![0.0; cols];
            arch.dispatch(AddRows {
                sums: &mut sums,
                rows,
            });
            sums
        })
        .collect();
    let mut sums = vec![0.0; cols];
    for p in &partial {
        sums.iter_mut().zip(p).for_each(|(s, p)| *s += p);
    }
    sums
}

kernel! {
    /// Adds every row of `rows` (rows as long as `sums`) into `sums`.
    struct AddRows<'a> { sums: &'a mut [f32], rows: &'a [f32] } -> () {
        for row in rows.chunks_exact(sums.len()) {
            for (s, x) in sums.iter_mut().zip(row) {
                *s += x;
            }
        }
    }
}

/// `softmax(scores·scale)` over the last axis of `[B, nh, T, T]`, with key `j > i` masked
/// out of query row `i` (set to 0); in `scores`' own buffer when nothing else holds it.
fn causal_softmax(scores: FlexTensor, scale: f32) -> FlexTensor {
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
            })
        });
    probs
}

kernel! {
    /// Causally masked softmax of `rows` (of length `t`, the first being row `first_row` of
    /// the scores), in place.
    struct SoftmaxRows<'a> { rows: &'a mut [f32], first_row: usize, t: usize, scale: f32 } -> () {
        for (r, row) in rows.chunks_mut(t).enumerate() {
            let i = (first_row + r) % t; // query position
            let (seen, future) = row.split_at_mut(i + 1);
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
fn softmax_backward(probs: &FlexTensor, dprobs: FlexTensor, scale: f32) -> FlexTensor {
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

/// Elements per parallel task of the element-wise kernels.
const ELEMENTS_PER_TASK: usize = 1 << 14;

/// `gelu(x)` element-wise.
fn gelu_forward(x: &FlexTensor) -> FlexTensor {
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
fn gelu_backward(x: &FlexTensor, grad: FlexTensor) -> FlexTensor {
    map_in_place(grad, x, |x, g| g * gelu_and_slope(x).1)
}

/// `out ← f(a, out)` element by element (`a` of `out`'s shape), split across the thread pool
/// and vectorised for the CPU's widest SIMD instructions.
fn map_in_place(out: FlexTensor, a: &FlexTensor, f: impl Fn(f32, f32) -> f32 + Sync) -> FlexTensor {
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
struct MapTask<'a, F> {
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
fn writable(tensor: FlexTensor) -> FlexTensor {
    if tensor.is_contiguous() && tensor.dtype() == DType::F32 {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

/// The f32 elements of a contiguous tensor, to write (its view, not the whole buffer).
fn elements_mut(tensor: &mut FlexTensor) -> &mut [f32] {
    let (start, end) = tensor
        .layout()
        .contiguous_offsets()
        .unwrap_or_else(|| unreachable!("made contiguous by `writable`"));
    &mut tensor.storage_mut::<f32>()[start..end]
}

/// `(gelu(x), gelu'(x))` = `(x·Φ(x), Φ(x) + x·φ(x))`, with one exponential for both.
#[inline(always)]
fn gelu_and_slope(x: f32) -> (f32, f32) {
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

/// `exp(x)` for `x ≤ 0` without a library call, so that loops of it vectorise: `x = n·ln2 + r`
/// with `|r| ≤ ln2/2`, a degree-6 Taylor polynomial for `exp(r)` (relative error ≤ 1.2e-7) and
/// `2ⁿ` built from its exponent bits. Below −87 (where `exp` is under 2⁻¹²⁵) it returns
/// `exp(−87)`, which every caller here multiplies by something at most 1.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
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

/// LayerNorm of the rows of `x` `[..., d]`: `(x − mean)·rstd·γ + β` with
/// `rstd = 1/√(var + ε)` (biased variance, as PyTorch and Burn), and each row's `[mean, rstd]`.
fn layer_norm_forward(
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
fn layer_norm_backward(
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

/// Class ids of an integer tensor, as indices.
fn class_ids(targets: FlexTensor) -> Vec<usize> {
    targets
        .into_data()
        .iter::<i64>()
        .map(|t| usize::try_from(t).unwrap_or(usize::MAX))
        .collect()
}

/// The mean over rows of `logsumexp(z) − z[target]` for the rows `z` of `logits` `[N, V]`, as a
/// `[1]` tensor, and the softmax probabilities `[N, V]`. Panics on a class id out of range, as
/// Burn's cross-entropy does.
fn cross_entropy_forward(logits: &FlexTensor, targets: &[usize]) -> (FlexTensor, FlexTensor) {
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
fn cross_entropy_backward(probs: FlexTensor, targets: &[usize], upstream: f32) -> FlexTensor {
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

/// [`adamw_step`] on the CPU backend: parameter and moments updated in their own buffers when
/// nothing else holds them.
fn adamw_kernel(
    state: AdamWTensors<Flex>,
    grad: &FlexTensor,
    step: AdamWStep,
) -> AdamWTensors<Flex> {
    let AdamWStep {
        lr,
        beta_1,
        beta_2,
        epsilon,
        weight_decay,
        time,
    } = step;
    let grad = grad.to_contiguous();
    let g = contiguous_f32(&grad);
    let [mut param, mut moment_1, mut moment_2] =
        [state.param, state.moment_1, state.moment_2].map(writable);
    // As Burn's AdamW computes them, in f32.
    let constants = AdamWConstants {
        beta_1,
        beta_2,
        decay: (1.0 - lr * f64::from(weight_decay)) as f32,
        lr: lr as f32,
        correction_1: 1.0 - beta_1.powi(time),
        correction_2: 1.0 - beta_2.powi(time),
        epsilon,
    };
    let arch = pulp::Arch::new();
    elements_mut(&mut param)
        .par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(elements_mut(&mut moment_1).par_chunks_mut(ELEMENTS_PER_TASK))
        .zip(elements_mut(&mut moment_2).par_chunks_mut(ELEMENTS_PER_TASK))
        .zip(g.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|(((p, m), v), g)| {
            arch.dispatch(AdamWChunk {
                p,
                m,
                v,
                g,
                c: &constants,
            })
        });
    AdamWTensors {
        param,
        moment_1,
        moment_2,
    }
}

/// The per-step constants of [`adamw_kernel`].
struct AdamWConstants {
    beta_1: f32,
    beta_2: f32,
    decay: f32,
    lr: f32,
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
}

kernel! {
    /// AdamW over one chunk of parameters `p`, moments `m`, `v` and gradients `g`.
    struct AdamWChunk<'a> {
        p: &'a mut [f32],
        m: &'a mut [f32],
        v: &'a mut [f32],
        g: &'a [f32],
        c: &'a AdamWConstants,
    } -> () {
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            *m = *m * c.beta_1 + g * (1.0 - c.beta_1);
            *v = *v * c.beta_2 + g * g * (1.0 - c.beta_2);
            let delta = (*m / c.correction_1) / ((*v / c.correction_2).sqrt() + c.epsilon);
            *p = *p * c.decay - delta * c.lr;
        }
    }
}

/// The f32 elements of a contiguous tensor.
fn contiguous_f32(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .unwrap_or_else(|| unreachable!("made contiguous f32 by the caller"))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor, Tolerance};

    use super::*;

    fn qkv(device: &Device, shape: [usize; 4]) -> [Tensor<4>; 3] {
        device.seed(7);
        [0, 1, 2].map(|_| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device))
    }

    #[test]
    fn the_cpu_backend_takes_the_fused_path() {
        // Otherwise the comparisons below would compare Burn's attention with itself.
        for device in [Device::flex(), Device::flex().autodiff()] {
            let [q, _, _] = qkv(&device, [1, 1, 2, 2]);
            assert!(available(&q), "{device:?}");
        }
    }

    #[test]
    fn fused_attention_matches_burns_attention_forward() {
        let device = Device::flex();
        let [q, k, v] = qkv(&device, [2, 3, 17, 8]);
        let fused = causal_attention(q.clone(), k.clone(), v.clone());
        let unfused = unfused_causal_attention(q, k, v);
        fused
            .into_data()
            .assert_approx_eq::<f32>(&unfused.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn fused_attention_matches_burns_attention_gradients() {
        let device = Device::flex().autodiff();
        let [q, k, v] = qkv(&device, [2, 3, 17, 8]).map(|t| t.require_grad());
        // A weighted sum, so every output element gets a different gradient.
        let weights = Tensor::<4>::random([2, 3, 17, 8], Distribution::Normal(0.0, 1.0), &device);
        let loss = |out: Tensor<4>| (out * weights.clone()).sum();
        let g_fused = loss(causal_attention(q.clone(), k.clone(), v.clone())).backward();
        let g_unfused = loss(unfused_causal_attention(q.clone(), k.clone(), v.clone())).backward();
        for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
            let fused = x
                .grad(&g_fused)
                .unwrap_or_else(|| panic!("no fused grad of {name}"));
            let unfused = x
                .grad(&g_unfused)
                .unwrap_or_else(|| panic!("no grad of {name}"));
            fused
                .into_data()
                .assert_approx_eq::<f32>(&unfused.into_data(), Tolerance::absolute(1e-5));
        }
    }

    #[test]
    fn exp_matches_the_library_exp() {
        // Every 1/64 from −90 to 0, relative error (absolute below exp(−87)).
        for i in 0..=90 * 64 {
            let x = -(i as f32) / 64.0;
            let (ours, exact) = (exp_nonpositive(x), x.exp());
            let err = (ours - exact).abs() / exact.max(1e-30);
            assert!(x < -87.0 || err < 3e-7, "exp({x}): {ours} vs {exact}");
            assert!(ours <= (-87f32).exp() * 1.000_001 || x >= -87.0);
        }
    }

    #[test]
    fn fused_gelu_matches_burns_gelu_and_its_gradient() {
        let device = Device::flex().autodiff();
        device.seed(3);
        // Wide inputs, covering both tails.
        let x = (Tensor::<2>::random([37, 129], Distribution::Normal(0.0, 1.0), &device) * 4.0)
            .require_grad();
        let weights = Tensor::<2>::random([37, 129], Distribution::Normal(0.0, 1.0), &device);
        let fused = gelu(x.clone());
        let unfused = burn::tensor::activation::gelu(x.clone());
        fused
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&unfused.clone().into_data(), Tolerance::absolute(1e-6));
        let g_fused = (fused * weights.clone()).sum().backward();
        let g_unfused = (unfused * weights).sum().backward();
        let grad = |g| {
            x.grad(g)
                .unwrap_or_else(|| panic!("no gradient"))
                .into_data()
        };
        grad(&g_fused).assert_approx_eq::<f32>(&grad(&g_unfused), Tolerance::absolute(1e-6));
    }

    /// A linear layer with random weight and bias (away from zero), both tracked.
    fn random_linear(device: &Device, d_in: usize, d_out: usize) -> Linear {
        let param = |t: Tensor<2>| burn::module::Param::from_tensor(t.require_grad());
        Linear {
            weight: param(Tensor::random(
                [d_in, d_out],
                Distribution::Normal(0.0, 1.0),
                device,
            )),
            bias: Some(burn::module::Param::from_tensor(
                Tensor::<1>::random([d_out], Distribution::Normal(0.5, 1.0), device).require_grad(),
            )),
        }
    }

    #[test]
    fn fused_linear_matches_burns_linear_and_its_gradients() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let (d_in, d_out) = (40, 72);
        let layer = random_linear(&device, d_in, d_out);
        // A 3-D input (the layer sees [3·37, in]) and a transposed, strided one.
        let x = Tensor::<3>::random([3, 37, d_in], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let x_t =
            Tensor::<2>::random([d_in, 50], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let weights = Tensor::<3>::random([3, 37, d_out], Distribution::Normal(0.0, 1.0), &device);
        let weights_t = Tensor::<2>::random([50, d_out], Distribution::Normal(0.0, 1.0), &device);
        let loss = |fused: bool| {
            let (y, y_t) = if fused {
                (
                    linear(x.clone(), &layer),
                    linear(x_t.clone().transpose(), &layer),
                )
            } else {
                (
                    layer.forward(x.clone()),
                    layer.forward(x_t.clone().transpose()),
                )
            };
            let values = (y.clone().into_data(), y_t.clone().into_data());
            let loss = (y * weights.clone()).sum() + (y_t * weights_t.clone()).sum();
            (values, loss.backward())
        };
        let ((y, y_t), g_fused) = loss(true);
        let ((y_ref, y_t_ref), g_ref) = loss(false);
        y.assert_approx_eq::<f32>(&y_ref, Tolerance::absolute(1e-4));
        y_t.assert_approx_eq::<f32>(&y_t_ref, Tolerance::absolute(1e-4));
        let grad = |t: Option<TensorData>| t.unwrap_or_else(|| panic!("no gradient"));
        let check = |a: Option<TensorData>, b: Option<TensorData>| {
            grad(a).assert_approx_eq::<f32>(&grad(b), Tolerance::absolute(1e-3));
        };
        check(
            x.grad(&g_fused).map(|g| g.into_data()),
            x.grad(&g_ref).map(|g| g.into_data()),
        );
        check(
            x_t.grad(&g_fused).map(|g| g.into_data()),
            x_t.grad(&g_ref).map(|g| g.into_data()),
        );
        let weight = layer.weight.val();
        check(
            weight.grad(&g_fused).map(|g| g.into_data()),
            weight.grad(&g_ref).map(|g| g.into_data()),
        );
        let bias = layer
            .bias
            .as_ref()
            .map(|b| b.val())
            .unwrap_or_else(|| unreachable!());
        check(
            bias.grad(&g_fused).map(|g| g.into_data()),
            bias.grad(&g_ref).map(|g| g.into_data()),
        );
    }

    #[test]
    fn column_sums_add_every_row() {
        let (rows, cols) = (600, 13); // three tasks of rows, a partial last one
        let m: Vec<f32> = (0..rows * cols).map(|i| (i % 17) as f32 - 8.0).collect();
        let sums = column_sums(&m, cols);
        for (j, s) in sums.iter().enumerate() {
            let expected: f32 = (0..rows).map(|i| m[i * cols + j]).sum();
            assert!((s - expected).abs() < 1e-5, "column {j}");
        }
    }

    #[test]
    fn fused_linear_add_matches_a_residual_plus_burns_linear_and_its_gradients() {
        let device = Device::flex().autodiff();
        device.seed(17);
        let (d_in, d_out) = (24, 16);
        let layer = random_linear(&device, d_in, d_out);
        let random = |shape: [usize; 2]| {
            Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad()
        };
        let (residual, x) = (random([70, d_out]), random([70, d_in]));
        let weights = Tensor::<2>::random([70, d_out], Distribution::Normal(0.0, 1.0), &device);
        let fused = linear_add(residual.clone(), x.clone(), &layer);
        let reference = residual.clone() + layer.forward(x.clone());
        fused
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&reference.clone().into_data(), Tolerance::absolute(1e-4));
        // The residual also feeds the loss directly, as in a block: its gradients add up.
        let g_fused = ((fused + residual.clone()) * weights.clone())
            .sum()
            .backward();
        let g_ref = ((reference + residual.clone()) * weights).sum().backward();
        let grad = |t: Option<TensorData>| t.unwrap_or_else(|| panic!("no gradient"));
        let check = |a: Option<TensorData>, b: Option<TensorData>| {
            grad(a).assert_approx_eq::<f32>(&grad(b), Tolerance::absolute(1e-4));
        };
        for t in [&residual, &x, &layer.weight.val()] {
            check(
                t.grad(&g_fused).map(|g| g.into_data()),
                t.grad(&g_ref).map(|g| g.into_data()),
            );
        }
        let bias = layer
            .bias
            .as_ref()
            .map(|b| b.val())
            .unwrap_or_else(|| unreachable!());
        check(
            bias.grad(&g_fused).map(|g| g.into_data()),
            bias.grad(&g_ref).map(|g| g.into_data()),
        );
    }

    #[test]
    fn fused_matmul_matches_burns_matmul_with_a_transposed_weight_and_its_gradients() {
        let device = Device::flex().autodiff();
        device.seed(13);
        // A tied head: x [2, 9, 24] times the embedding [V = 30, 24] transposed.
        let x =
            Tensor::<3>::random([2, 9, 24], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let embedding =
            Tensor::<2>::random([30, 24], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let weights = Tensor::<3>::random([2, 9, 30], Distribution::Normal(0.0, 1.0), &device);
        let fused = matmul(x.clone(), embedding.clone().transpose());
        let reference = x.clone().matmul(embedding.clone().transpose().unsqueeze());
        fused
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&reference.clone().into_data(), Tolerance::absolute(1e-4));
        let g_fused = (fused * weights.clone()).sum().backward();
        let g_ref = (reference * weights).sum().backward();
        let grad = |t: Option<TensorData>| t.unwrap_or_else(|| panic!("no gradient"));
        grad(x.grad(&g_fused).map(|g| g.into_data())).assert_approx_eq::<f32>(
            &grad(x.grad(&g_ref).map(|g| g.into_data())),
            Tolerance::absolute(1e-4),
        );
        grad(embedding.grad(&g_fused).map(|g| g.into_data())).assert_approx_eq::<f32>(
            &grad(embedding.grad(&g_ref).map(|g| g.into_data())),
            Tolerance::absolute(1e-4),
        );
    }

    #[test]
    fn fused_layer_norm_matches_burns_layer_norm_and_its_gradients() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let d = 48;
        let mut norm = burn::nn::LayerNormConfig::new(d)
            .with_epsilon(LAYER_NORM_EPSILON)
            .init(&device);
        // A non-trivial gain and bias, and rows far from zero mean and unit variance.
        let vector = |shift: f64| {
            burn::module::Param::from_tensor(
                Tensor::<1>::random([d], Distribution::Normal(shift, 0.5), &device).require_grad(),
            )
        };
        norm.gamma = vector(1.0);
        norm.beta = Some(vector(0.0));
        let x = (Tensor::<3>::random([3, 37, d], Distribution::Normal(2.0, 3.0), &device))
            .require_grad();
        let weights = Tensor::<3>::random([3, 37, d], Distribution::Normal(0.0, 1.0), &device);
        let fused = layer_norm(x.clone(), &norm);
        let unfused = norm.forward(x.clone());
        fused
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&unfused.clone().into_data(), Tolerance::absolute(1e-5));
        let g_fused = (fused * weights.clone()).sum().backward();
        let g_unfused = (unfused * weights).sum().backward();
        let close = |a: Option<Tensor<3>>, b: Option<Tensor<3>>| {
            let (a, b) = (
                a.unwrap_or_else(|| panic!("no gradient")),
                b.unwrap_or_else(|| panic!("no gradient")),
            );
            a.into_data()
                .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-4));
        };
        close(x.grad(&g_fused), x.grad(&g_unfused));
        let beta = norm
            .beta
            .as_ref()
            .map(|b| b.val())
            .unwrap_or_else(|| unreachable!());
        for (name, p) in [("gamma", norm.gamma.val()), ("beta", beta)] {
            let a = p
                .grad(&g_fused)
                .unwrap_or_else(|| panic!("no fused {name} gradient"));
            let b = p
                .grad(&g_unfused)
                .unwrap_or_else(|| panic!("no {name} gradient"));
            a.into_data()
                .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-4));
        }
    }

    #[test]
    fn fused_cross_entropy_matches_burns_and_its_gradient() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let (n, v) = (150, 37);
        let logits =
            (Tensor::<2>::random([n, v], Distribution::Normal(0.0, 3.0), &device)).require_grad();
        let ids: Vec<i64> = (0..n as i64).map(|i| (i * 7) % v as i64).collect();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(ids, [n]), &device);
        // Scaled, so the upstream gradient is not 1.
        let fused = cross_entropy(logits.clone(), targets.clone()) * 3.0;
        let unfused = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(logits.clone(), targets)
            * 3.0;
        fused
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&unfused.clone().into_data(), Tolerance::absolute(1e-5));
        let grad = |loss: Tensor<1>| {
            logits
                .grad(&loss.backward())
                .unwrap_or_else(|| panic!("no gradient"))
                .into_data()
        };
        grad(fused).assert_approx_eq::<f32>(&grad(unfused), Tolerance::absolute(1e-6));
    }

    #[test]
    fn kernels_write_in_place_only_into_buffers_nothing_else_holds() {
        let x = FlexTensor::from_data(TensorData::new(vec![-1.0f32, 0.5, 2.0, 3.0], [2, 2]));
        let grad = FlexTensor::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]));
        let before = grad.clone().into_data();
        // `grad` is shared with `kept`: the kernel must leave `kept` as it was.
        let kept = grad.clone();
        let dx = gelu_backward(&x, grad);
        assert_eq!(kept.into_data(), before);
        assert_ne!(dx.into_data(), before);
        // Unshared, the result takes over the buffer.
        let grad = FlexTensor::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]));
        let buffer = grad.bytes().as_ptr();
        assert_eq!(gelu_backward(&x, grad).bytes().as_ptr(), buffer);
    }

    #[test]
    fn gelu_on_a_strided_view_reads_it_in_logical_order() {
        let device = Device::flex();
        let x = Tensor::<2>::from_floats([[-1.0, 0.5, 2.0], [3.0, -0.25, 0.0]], &device);
        let xt = x.clone().transpose(); // not contiguous
        gelu(xt.clone()).into_data().assert_approx_eq::<f32>(
            &burn::tensor::activation::gelu(xt).into_data(),
            Tolerance::absolute(1e-6),
        );
    }

    #[test]
    fn fused_self_attention_matches_the_unfused_composition() {
        // [B·T, 3d] with B 3, T 11, d 12 (4 heads of 3): values and the gradient of qkv.
        let device = Device::flex().autodiff();
        device.seed(13);
        let qkv =
            Tensor::<2>::random([33, 36], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let weights = Tensor::<2>::random([33, 12], Distribution::Normal(0.0, 1.0), &device);
        let fused = causal_self_attention(qkv.clone(), 3, 4);
        let unfused = unfused_causal_self_attention(qkv.clone(), 3, 4);
        fused
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&unfused.clone().into_data(), Tolerance::absolute(1e-5));
        let grad = |out: Tensor<2>| {
            qkv.grad(&(out * weights.clone()).sum().backward())
                .unwrap_or_else(|| panic!("no gradient"))
                .into_data()
        };
        grad(fused).assert_approx_eq::<f32>(&grad(unfused), Tolerance::absolute(1e-5));
    }

    #[test]
    fn the_future_does_not_reach_the_past() {
        // Changing the last position's keys and values leaves every earlier output unchanged.
        let device = Device::flex();
        let [q, k, v] = qkv(&device, [1, 2, 9, 4]);
        let before = causal_attention(q.clone(), k.clone(), v.clone());
        let bump = Tensor::<4>::ones([1, 2, 1, 4], &device) * 5.0;
        let k2 = k.slice_assign([0..1, 0..2, 8..9, 0..4], bump.clone());
        let v2 = v.slice_assign([0..1, 0..2, 8..9, 0..4], bump);
        let after = causal_attention(q, k2, v2);
        let past = |t: &Tensor<4>| t.clone().slice([0..1, 0..2, 0..8, 0..4]).into_data();
        past(&after).assert_eq(&past(&before), true);
        // ...while the last position's output does change.
        let last = |t: Tensor<4>| t.slice([0..1, 0..2, 8..9, 0..4]).into_data();
        assert_ne!(last(after), last(before));
    }
}
