//! The project's CPU kernels: fused operations for the CPU (`flex`) backend, added through Burn's backend extension
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
//!
//! One file an operation: `attention.rs`, `linear.rs`, `gelu.rs`, `layer_norm.rs`,
//! `cross_entropy.rs`, `adamw.rs`; `ops.rs` holds the tensor-level functions the models call,
//! `flex.rs` and `autodiff.rs` the backend extension's two implementations (plain and with
//! hand-written backward passes), `simd.rs` the shared reductions and element maps, `gemm.rs`
//! and `buffer.rs` the matrix products and the written-once output buffers, `alloc.rs` the
//! allocator's one option. All of the project's `unsafe` code is in this crate (`gemm.rs`,
//! `buffer.rs`, `alloc.rs`), each block with its safety argument.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::Backend;
use burn::backend::backend_extension;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::tensor::{DType, Tensor};

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

    /// Self-attention of `lengths.len()` sequences from their packed projections `qkv`
    /// `[B·T, 3d]` to `[B·T, d]`, each query seeing only the keys before its sequence's length
    /// (`lengths` `[B]`, the rest padding) and, when `causal`, none after itself.
    fn masked_self_attention(
        qkv: FloatTensor<Self>,
        lengths: IntTensor<Self>,
        heads: usize,
        scale: f32,
        causal: bool,
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

    /// A 2-D convolution at stride 1 of `x` `[B, C_in, H, W]` with `weight`
    /// `[C_out, C_in, kh, kw]`, zero padding `pad_h` rows and `pad_w` columns on each side,
    /// plus `bias` `[C_out]` (none when it is empty, `[0]`), through a ReLU when `relu`.
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        pad_h: usize,
        pad_w: usize,
        relu: bool,
    ) -> FloatTensor<Self>;

    /// A whole LSTM (`gates` 4) or GRU (`gates` 3) layer: its states `[B, T, H]` from the
    /// input projections `projected` `[B, T, G·H]` of every step, the recurrent weight `u`
    /// `[H, G·H]` and bias `bias` `[G·H]` (none when empty), and `mask` `[B, T]` (a position
    /// whose mask is 0 keeps the state).
    fn fused_recurrent(
        projected: FloatTensor<Self>,
        u: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        gates: usize,
    ) -> FloatTensor<Self>;

    /// Each channel's mean and biased variance over a batch `x` `[B, C, ...]`, `[2, C]` (means,
    /// then variances); not differentiated.
    fn fused_channel_stats(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Batch norm of `x` `[B, C, ...]` with the statistics `mean` and `var` `[C]`, gain `gamma`
    /// and shift `beta` `[C]`, through a ReLU when `relu`. With `batch_stats` the statistics
    /// are `x`'s own ([`FusedOps::fused_channel_stats`]) and the backward pass differentiates
    /// through them; otherwise they are constants.
    #[allow(clippy::too_many_arguments)]
    fn fused_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f32,
        relu: bool,
        batch_stats: bool,
    ) -> FloatTensor<Self>;

    /// A 2×2 max-pool at stride 2 of `x` `[B, C, H, W]` → `[B, C, H/2, W/2]`.
    fn fused_max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// LayerNorm over the last axis of `x` with gain `gamma` and bias `beta` `[d]`.
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self>;
}

/// The epsilon of every LayerNorm the models build (PyTorch's default), which the fused
/// LayerNorm uses too.
pub const LAYER_NORM_EPSILON: f64 = 1e-5;

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

pub mod adamw;
pub mod alloc;
mod attention;
mod autodiff;
mod batch_norm;
mod buffer;
mod conv;
mod cross_entropy;
mod flex;
mod gelu;
mod gemm;
mod layer_norm;
mod linear;
pub mod ops;
mod recurrent;
mod simd;
#[cfg(test)]
mod tests;

pub use adamw::{AdamWStep, AdamWTensors, FusedOptim, adamw_step};
pub use ops::{
    batch_norm, causal_attention, causal_self_attention, conv2d, cross_entropy, gelu, layer_norm,
    linear, linear_add, matmul, max_pool2x2, recurrent, self_attention, unfused_batch_norm,
    unfused_causal_attention, unfused_causal_self_attention, unfused_conv2d, unfused_max_pool2x2,
    unfused_recurrent, unfused_self_attention,
};
