//! Fused operations for the CPU (`flex`) backend, added through Burn's backend extension
//! with hand-written backward passes.
//!
//! Causal self-attention, `softmax(q·kᵀ·scale + causal mask)·v`, is the one fused operation so
//! far. Burn's autodiff runs attention as eleven recorded operations (two matmuls, a scale, a
//! mask built and filled with −∞, a NaN-safe softmax of six element-wise passes) and
//! differentiates each; here the forward pass is two matmuls around one row-parallel pass that
//! scales, masks and normalises, and the backward pass is four matmuls around one row-parallel
//! pass (`dS = P ⊙ (dP − rowsum(dP ⊙ P))·scale`). The probabilities `P` are kept for the
//! backward pass, as the unfused graph keeps them too.
//!
//! Devices other than `flex` (and `flex` with autodiff) are not listed in the extension, so
//! [`causal_attention`] uses Burn's own attention there.

use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension, tensor::FloatTensor};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

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
}

/// Causal self-attention of `q`, `k`, `v` `[B, nh, T, hs]` → `[B, nh, T, hs]`, scaled by
/// `1/√hs`: the fused kernel on the CPU backend (with or without autodiff), Burn's attention
/// elsewhere. Both compute the same function.
pub fn causal_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    if !fused_device(&q) {
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

/// Whether the fused kernels serve `tensor`'s device: `flex`, with or without autodiff, in f32.
fn fused_device(tensor: &Tensor<4>) -> bool {
    let device = tensor.device();
    let flex = burn::tensor::Device::flex();
    tensor.dtype() == DType::F32 && (device == flex || device == flex.clone().autodiff())
}

impl FusedOps for Flex {
    fn causal_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, scale: f32) -> FlexTensor {
        attention_forward(q, k, v, scale).0
    }
}

/// Forward pass: the output `[B, nh, T, hs]` and the probabilities `P` `[B, nh, T, T]`.
fn attention_forward(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    scale: f32,
) -> (FlexTensor, FlexTensor) {
    let scores = Flex::float_matmul(q, Flex::float_swap_dims(k, 2, 3)); // [B, nh, T, T]
    let probs = causal_softmax(&scores, scale); // [B, nh, T, T], zero above the diagonal
    let out = Flex::float_matmul(probs.clone(), v); // [B, nh, T, hs]
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
    // out = P·v: dv = Pᵀ·grad, dP = grad·vᵀ.
    let dv = Flex::float_matmul(Flex::float_swap_dims(probs.clone(), 2, 3), grad.clone());
    let dp = Flex::float_matmul(grad, Flex::float_swap_dims(v, 2, 3)); // [B, nh, T, T]
    // P = softmax(S), S = q·kᵀ·scale: dS·scale in one pass.
    let ds = softmax_backward(&probs, &dp, scale); // [B, nh, T, T]
    let dq = Flex::float_matmul(ds.clone(), k); // [B, nh, T, hs]
    let dk = Flex::float_matmul(Flex::float_swap_dims(ds, 2, 3), q); // [B, nh, T, hs]
    [dq, dk, dv]
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
                _checkpointer: &mut Checkpointer,
            ) {
                let grad = grads.consume::<Flex>(&ops.node);
                let (q, k, v, probs, scale) = ops.state;
                let grads_qkv = attention_backward(q, k, v, probs, grad, scale);
                for (parent, g) in ops.parents.into_iter().zip(grads_qkv) {
                    if let Some(node) = parent {
                        grads.register::<Flex>(node.id, g);
                    }
                }
            }
        }

        match CausalAttention
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let [q, k, v] = [q, k, v].map(|x| x.into_primitive());
                let (out, probs) = attention_forward(q.clone(), k.clone(), v.clone(), scale);
                let state = (q, k, v, probs, scale);
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => {
                let [q, k, v] = [q, k, v].map(|x| x.into_primitive());
                prep.finish(attention_forward(q, k, v, scale).0)
            }
        }
    }
}

/// Rows processed per parallel task.
const ROWS_PER_TASK: usize = 64;

/// `softmax(scores·scale)` over the last axis of `[B, nh, T, T]`, with key `j > i` masked
/// out of query row `i` (set to 0).
fn causal_softmax(scores: &FlexTensor, scale: f32) -> FlexTensor {
    let shape = scores.shape();
    let t = shape[shape.num_dims() - 1];
    let scores = scores.to_contiguous();
    let input = contiguous_f32(&scores);
    let mut out = FlexTensor::empty(shape, DType::F32);
    out.storage_mut::<f32>()
        .par_chunks_mut(t * ROWS_PER_TASK)
        .zip(input.par_chunks(t * ROWS_PER_TASK))
        .enumerate()
        .for_each(|(chunk, (out, input))| {
            for (r, (o, s)) in out.chunks_mut(t).zip(input.chunks(t)).enumerate() {
                let i = (chunk * ROWS_PER_TASK + r) % t; // query position
                let (o_seen, o_future) = o.split_at_mut(i + 1);
                let s_seen = &s[..=i];
                let max = s_seen.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) * scale;
                let mut sum = 0.0;
                for (o, &x) in o_seen.iter_mut().zip(s_seen) {
                    *o = (x * scale - max).exp();
                    sum += *o;
                }
                let inv = 1.0 / sum;
                o_seen.iter_mut().for_each(|o| *o *= inv);
                o_future.fill(0.0);
            }
        });
    out
}

/// `P ⊙ (dP − rowsum(dP ⊙ P))·scale`: the gradient of the pre-scale scores from that of the
/// probabilities `P`, rows of the last axis.
fn softmax_backward(probs: &FlexTensor, dprobs: &FlexTensor, scale: f32) -> FlexTensor {
    let shape = probs.shape();
    let t = shape[shape.num_dims() - 1];
    let (probs, dprobs) = (probs.to_contiguous(), dprobs.to_contiguous());
    let (p, dp) = (contiguous_f32(&probs), contiguous_f32(&dprobs));
    let mut out = FlexTensor::empty(shape, DType::F32);
    out.storage_mut::<f32>()
        .par_chunks_mut(t * ROWS_PER_TASK)
        .zip(p.par_chunks(t * ROWS_PER_TASK))
        .zip(dp.par_chunks(t * ROWS_PER_TASK))
        .for_each(|((out, p), dp)| {
            for ((o, p), dp) in out.chunks_mut(t).zip(p.chunks(t)).zip(dp.chunks(t)) {
                let dot: f32 = p.iter().zip(dp).map(|(p, d)| p * d).sum();
                for ((o, &p), &d) in o.iter_mut().zip(p).zip(dp) {
                    *o = p * (d - dot) * scale;
                }
            }
        });
    out
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
            assert!(fused_device(&q), "{device:?}");
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
