//! The tensor-level operations the models call: each runs the fused kernel where
//! [`available`](crate::available) says it serves the tensor, and Burn's own composition elsewhere
//! (the `unfused_*` functions, which the tests compare against).

use burn::backend::Dispatch;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{BatchNorm, LayerNorm, Linear};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Int, Tensor, TensorData};

use crate::{FusedOps, LAYER_NORM_EPSILON, available};

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
    let [q, k, v] = split_heads(qkv, batch, heads);
    let y = unfused_causal_attention(q, k, v); // [B, nh, T, hs]
    y.swap_dims(1, 2).reshape([n, three_d / 3]) // [B·T, d]
}

/// The queries, keys and values `[B, nh, T, hs]` of packed projections `qkv` `[B·T, 3d]` of
/// `batch` sequences: chunk, reshape and swap into heads (the unfused references' layout).
fn split_heads(qkv: Tensor<2>, batch: usize, heads: usize) -> [Tensor<4>; 3] {
    let [n, three_d] = qkv.dims();
    let (t, hs) = (n / batch, three_d / 3 / heads);
    let mut qkv = qkv
        .chunk(3, 1) // 3 × [B·T, d]
        .into_iter()
        .map(|z| z.reshape([batch, t, heads, hs]).swap_dims(1, 2)); // [B, nh, T, hs]
    let (Some(q), Some(k), Some(v)) = (qkv.next(), qkv.next(), qkv.next()) else {
        unreachable!("chunk(3) yields three tensors")
    };
    [q, k, v]
}

/// Self-attention of `lengths.len()` sequences from their packed projections `qkv`
/// `[B·T, 3d]` (as [`causal_self_attention`]) to `[B·T, d]`, each query seeing only the first
/// `lengths[b]` keys of its sequence (the rest are padding; a length is taken as at least 1
/// and at most `T`) and, when `causal`, no key after itself. On the CPU backend one
/// operation (the masked softmax zeroes the hidden keys' probabilities); elsewhere Burn's
/// attention with −10⁹ added to the hidden keys' scores.
pub fn self_attention(qkv: Tensor<2>, lengths: &[usize], heads: usize, causal: bool) -> Tensor<2> {
    let [n, three_d] = qkv.dims();
    let batch = lengths.len();
    if !available(&qkv) || batch == 0 || n % batch != 0 {
        return unfused_self_attention(qkv, lengths, heads, causal);
    }
    let t = n / batch;
    let hs = three_d / 3 / heads;
    let lengths: Vec<i64> = lengths.iter().map(|&l| l.clamp(1, t) as i64).collect();
    let lengths = Tensor::<1, Int>::from_data(TensorData::new(lengths, [batch]), &qkv.device());
    Tensor::from_dispatch(<Dispatch as FusedOps>::masked_self_attention(
        qkv.into_dispatch(),
        lengths.into_dispatch(),
        heads,
        1.0 / (hs as f32).sqrt(),
        causal,
    ))
}

/// [`self_attention`] as Burn's operations: the reference the fused operation is tested
/// against.
pub fn unfused_self_attention(
    qkv: Tensor<2>,
    lengths: &[usize],
    heads: usize,
    causal: bool,
) -> Tensor<2> {
    let [n, three_d] = qkv.dims();
    let (batch, d) = (lengths.len().max(1), three_d / 3);
    let t = n / batch;
    let device = qkv.device();
    // −1e9 on padding keys, 0 elsewhere, for every head and query: [B, nh, T, T].
    let hidden: Vec<f32> = lengths
        .iter()
        .flat_map(|&len| (0..t).map(move |s| if s < len.clamp(1, t) { 0.0 } else { -1e9 }))
        .collect();
    let bias = Tensor::<2>::from_data(TensorData::new(hidden, [batch, t]), &device)
        .reshape([batch, 1, 1, t])
        .expand([batch, heads, t, t]);
    let [q, k, v] = split_heads(qkv, batch, heads);
    let options = AttentionModuleOptions {
        scale: None, // 1/sqrt(hs)
        softcap: None,
        is_causal: causal,
    };
    let y = attention(q, k, v, None, Some(bias), options); // [B, nh, T, hs]
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
pub(crate) fn as_rows<const D: usize>(
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

/// `conv` applied to `x` `[B, C_in, H, W]`, through a ReLU when `relu`. On the CPU backend, for
/// convolutions at stride 1 without dilation or groups and with the same padding on both
/// sides, one operation per image: the patch matrix times the kernel through the `gemm`
/// crate into the output, which starts as the bias, and the ReLU in the same pass; backward,
/// two products per image and the patch matrix folded back (see `conv.rs`). Burn's
/// convolution (and `relu`) elsewhere; both compute the same function.
pub fn conv2d(x: Tensor<4>, conv: &Conv2d, relu: bool) -> Tensor<4> {
    let [_, c_in, h, w] = x.dims();
    let [kh, kw] = conv.kernel_size;
    // The padding on each side, where it is the same on both.
    let pad = match conv.padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Same => (kh % 2 == 1 && kw % 2 == 1).then_some([kh / 2, kw / 2]),
        PaddingConfig2d::Explicit(top, left, bottom, right) => {
            (top == bottom && left == right).then_some([top, left])
        }
    };
    let plain = conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1;
    let Some([top, left]) = pad.filter(|&[ph, pw]| {
        plain && available(&x) && c_in > 0 && h + 2 * ph >= kh && w + 2 * pw >= kw
    }) else {
        return unfused_conv2d(x, conv, relu);
    };
    let bias = bias_or_empty(conv.bias.as_ref(), &x.device());
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_conv2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.into_dispatch(),
        top,
        left,
        relu,
    ))
}

/// Burn's convolution, then `relu` when asked: the reference [`conv2d`] is tested against.
pub fn unfused_conv2d(x: Tensor<4>, conv: &Conv2d, relu: bool) -> Tensor<4> {
    relu_if(conv.forward(x), relu)
}

/// A layer's bias, or the empty `[0]` tensor the fused operations read as "no bias".
fn bias_or_empty(
    bias: Option<&burn::module::Param<Tensor<1>>>,
    device: &burn::tensor::Device,
) -> Tensor<1> {
    match bias {
        Some(bias) => bias.val(),
        None => Tensor::<1>::zeros([0], device),
    }
}

/// `relu(y)` when `relu`, else `y`: the activation the unfused references apply after.
fn relu_if<const D: usize>(y: Tensor<D>, relu: bool) -> Tensor<D> {
    if relu {
        burn::tensor::activation::relu(y)
    } else {
        y
    }
}

/// A 2×2 max-pool at stride 2 of `x` `[B, C, H, W]` → `[B, C, H/2, W/2]`. On the CPU backend
/// one pass forward that keeps each window's winner and one scatter backward; Burn's
/// `max_pool2d` (which keeps its indices as a 64-bit integer tensor) elsewhere.
pub fn max_pool2x2(x: Tensor<4>) -> Tensor<4> {
    if !available(&x) {
        return unfused_max_pool2x2(x);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_max_pool2x2(x.into_dispatch()))
}

/// Burn's 2×2 max-pool at stride 2: the reference [`max_pool2x2`] is tested against.
pub fn unfused_max_pool2x2(x: Tensor<4>) -> Tensor<4> {
    burn::nn::pool::MaxPool2dConfig::new([2, 2])
        .init()
        .forward(x)
}

/// A whole LSTM (`gates` 4) or GRU (`gates` 3) layer with PyTorch's gate layouts, from the
/// input projections `projected` `[B, T, G·H]` of every position (bias included) and the
/// recurrent projection `hidden` (`H → G·H`): the states `[B, T, H]`; a position whose `mask`
/// `[B, T]` is 0 keeps the previous state. On the CPU backend one operation (one GEMM and one
/// gate pass a step, forward and backward: `recurrent.rs`); Burn's operations step by step
/// elsewhere. Both compute the same function.
pub fn recurrent(
    projected: Tensor<3>,
    hidden: &Linear,
    mask: Tensor<2>,
    gates: usize,
) -> Tensor<3> {
    if !available(&projected) || !(gates == 3 || gates == 4) {
        return unfused_recurrent(projected, hidden, mask, gates);
    }
    let bias = bias_or_empty(hidden.bias.as_ref(), &projected.device());
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_recurrent(
        projected.into_dispatch(),
        hidden.weight.val().into_dispatch(),
        bias.into_dispatch(),
        mask.into_dispatch(),
        gates,
    ))
}

/// [`recurrent`] as Burn's operations, step by step: the reference the fused layer is tested
/// against.
pub fn unfused_recurrent(
    projected: Tensor<3>,
    hidden: &Linear,
    mask: Tensor<2>,
    gates: usize,
) -> Tensor<3> {
    let [b, t, _] = projected.dims();
    let device = projected.device();
    let h_units = hidden.weight.dims()[0];
    let mut h = Tensor::<2>::zeros([b, h_units], &device); // [B, H]
    let mut c = Tensor::<2>::zeros([b, h_units], &device); // [B, H] (LSTM cell state)
    let mut outputs = Vec::with_capacity(t);
    for step in 0..t {
        let x_t = projected
            .clone()
            .narrow(1, step, 1)
            .reshape([b, gates * h_units]);
        let m = mask.clone().narrow(1, step, 1); // [B, 1]
        let hz = hidden.forward(h.clone()); // [B, G·H]
        let (h_new, c_new) = if gates == 4 {
            // LSTM, gates i, f, g, o.
            let z = x_t + hz;
            let gate = |k: usize| z.clone().narrow(1, k * h_units, h_units);
            let (i, f, g, o) = (
                sigmoid(gate(0)),
                sigmoid(gate(1)),
                tanh(gate(2)),
                sigmoid(gate(3)),
            );
            let c_new = f * c.clone() + i * g;
            (o * tanh(c_new.clone()), c_new)
        } else {
            // GRU, gates r, z, n: n = tanh(x_n + r ⊙ (h U_n + b_hn)).
            let xg = |k: usize| x_t.clone().narrow(1, k * h_units, h_units);
            let hg = |k: usize| hz.clone().narrow(1, k * h_units, h_units);
            let r = sigmoid(xg(0) + hg(0));
            let z = sigmoid(xg(1) + hg(1));
            let n = tanh(xg(2) + r * hg(2));
            let h_new = (z.clone().neg() + 1.0) * n + z * h.clone();
            (h_new, c.clone())
        };
        // Padding keeps the state: h ← m·h_new + (1 − m)·h.
        h = h_new * m.clone() + h * (m.clone().neg() + 1.0);
        c = c_new * m.clone() + c * (m.neg() + 1.0);
        outputs.push(h.clone().unsqueeze_dim::<3>(1)); // [B, 1, H]
    }
    Tensor::cat(outputs, 1) // [B, T, H]
}

/// `norm` applied to images `x` `[B, C, H, W]`, through a ReLU when `relu`; as Burn's
/// `BatchNorm::forward`, training (the batch's own statistics, the running statistics updated
/// with its momentum) on an autodiff device when the layer trains, inference (the running
/// statistics) otherwise. On the CPU backend two fused operations (`batch_norm.rs`): the
/// statistics, and the normalisation with its backward pass; Burn's batch norm elsewhere.
pub fn batch_norm(x: Tensor<4>, norm: &BatchNorm, relu: bool) -> Tensor<4> {
    if !available(&x) {
        return unfused_batch_norm(x, norm, relu);
    }
    let device = x.device();
    let train = device.is_autodiff() && norm.training.is_enabled();
    let (mean, var) = if train {
        let stats = Tensor::<2>::from_dispatch(<Dispatch as FusedOps>::fused_channel_stats(
            x.clone().detach().into_dispatch(),
        )); // [2, C]
        let c = stats.dims()[1];
        let mean = stats.clone().narrow(0, 0, 1).reshape([c]);
        let var = stats.narrow(0, 1, 1).reshape([c]);
        // The running statistics, exactly as Burn's batch norm updates them.
        let m = norm.momentum;
        let running_mean = norm.running_mean.value_sync().to_device(&device);
        let running_var = norm.running_var.value_sync().to_device(&device);
        norm.running_mean.update(
            running_mean
                .mul_scalar(1.0 - m)
                .add(mean.clone().mul_scalar(m))
                .detach(),
        );
        norm.running_var.update(
            running_var
                .mul_scalar(1.0 - m)
                .add(var.clone().mul_scalar(m))
                .detach(),
        );
        (mean, var)
    } else {
        let mean = norm.running_mean.value().to_device(&device);
        (mean, norm.running_var.value().to_device(&device))
    };
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_batch_norm(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        mean.into_dispatch(),
        var.into_dispatch(),
        norm.epsilon as f32,
        relu,
        train,
    ))
}

/// Burn's batch norm, then `relu` when asked: the reference [`batch_norm`] is tested against.
pub fn unfused_batch_norm(x: Tensor<4>, norm: &BatchNorm, relu: bool) -> Tensor<4> {
    relu_if(norm.forward(x), relu)
}
