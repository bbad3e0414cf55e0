//! The backend extension on the plain CPU backend: forward passes only.

use burn::backend::Flex;
use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;

use crate::FusedOps;
use crate::attention::{KeyMask, attention_forward, self_attention_forward};
use crate::batch_norm::{batch_norm_forward, channel_stats};
use crate::conv::{conv2d_forward, max_pool2x2_forward};
use crate::cross_entropy::{class_ids, cross_entropy_forward};
use crate::gelu::gelu_forward;
use crate::layer_norm::layer_norm_forward;
use crate::linear::{linear_add_forward, linear_forward, matmul_forward};
use crate::recurrent::recurrent_forward;

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
        let t = qkv.shape()[0] / batch.max(1);
        let mask = KeyMask {
            heads,
            lengths: vec![t; batch],
            causal: true,
        };
        self_attention_forward(&qkv, &mask, scale).0
    }

    fn masked_self_attention(
        qkv: FlexTensor,
        lengths: FlexTensor,
        heads: usize,
        scale: f32,
        causal: bool,
    ) -> FlexTensor {
        let mask = KeyMask {
            heads,
            lengths: class_ids(lengths),
            causal,
        };
        self_attention_forward(&qkv, &mask, scale).0
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

    fn fused_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        pad_h: usize,
        pad_w: usize,
        relu: bool,
    ) -> FlexTensor {
        conv2d_forward(&x, &weight, &bias, [pad_h, pad_w], relu)
    }

    fn fused_recurrent(
        projected: FlexTensor,
        u: FlexTensor,
        bias: FlexTensor,
        mask: FlexTensor,
        gates: usize,
    ) -> FlexTensor {
        recurrent_forward(&projected, &u, &bias, &mask, gates, false).0
    }

    fn fused_channel_stats(x: FlexTensor) -> FlexTensor {
        channel_stats(&x)
    }

    fn fused_batch_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        epsilon: f32,
        relu: bool,
        _batch_stats: bool,
    ) -> FlexTensor {
        batch_norm_forward(&x, [&gamma, &beta, &mean, &var], epsilon, relu)
    }

    fn fused_max_pool2x2(x: FlexTensor) -> FlexTensor {
        max_pool2x2_forward(&x).0
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
