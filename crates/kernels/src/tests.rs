//! The kernels against Burn's own operations: values and gradients.

use burn::tensor::{Device, Distribution, Tolerance};

use burn::backend::flex::FlexTensor;
use burn::nn::Linear;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Gradients, Int, Tensor, TensorData};

use crate::gelu::*;
use crate::linear::*;
use crate::simd::*;
use crate::*;

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

/// Panics unless `t` has a gradient in both `fused` and `reference` and they agree within
/// `tolerance`.
fn assert_same_grad<const D: usize>(
    t: &Tensor<D>,
    fused: &Gradients,
    reference: &Gradients,
    tolerance: f64,
) {
    let grad = |g| {
        t.grad(g)
            .unwrap_or_else(|| panic!("no gradient"))
            .into_data()
    };
    grad(fused).assert_approx_eq::<f32>(&grad(reference), Tolerance::absolute(tolerance));
}

/// The bias of a layer built with one.
fn bias_of(layer: &Linear) -> Tensor<1> {
    let bias = layer.bias.as_ref().map(|b| b.val());
    bias.unwrap_or_else(|| unreachable!("built with a bias"))
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
    let x =
        Tensor::<3>::random([3, 37, d_in], Distribution::Normal(0.0, 1.0), &device).require_grad();
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
    assert_same_grad(&x, &g_fused, &g_ref, 1e-3);
    assert_same_grad(&x_t, &g_fused, &g_ref, 1e-3);
    assert_same_grad(&layer.weight.val(), &g_fused, &g_ref, 1e-3);
    assert_same_grad(&bias_of(&layer), &g_fused, &g_ref, 1e-3);
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
    for t in [&residual, &x, &layer.weight.val()] {
        assert_same_grad(t, &g_fused, &g_ref, 1e-4);
    }
    assert_same_grad(&bias_of(&layer), &g_fused, &g_ref, 1e-4);
}

#[test]
fn fused_matmul_matches_burns_matmul_with_a_transposed_weight_and_its_gradients() {
    let device = Device::flex().autodiff();
    device.seed(13);
    // A tied head: x [2, 9, 24] times the embedding [V = 30, 24] transposed.
    let x = Tensor::<3>::random([2, 9, 24], Distribution::Normal(0.0, 1.0), &device).require_grad();
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
    assert_same_grad(&x, &g_fused, &g_ref, 1e-4);
    assert_same_grad(&embedding, &g_fused, &g_ref, 1e-4);
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
    let x =
        (Tensor::<3>::random([3, 37, d], Distribution::Normal(2.0, 3.0), &device)).require_grad();
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
    let qkv = Tensor::<2>::random([33, 36], Distribution::Normal(0.0, 1.0), &device).require_grad();
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

/// A convolution `c_in → c_out` with a `k.0 × k.1` kernel and `padding`, random kernel and
/// bias (when `bias`), both tracked.
fn random_conv(
    device: &Device,
    [c_in, c_out]: [usize; 2],
    k: [usize; 2],
    padding: burn::nn::PaddingConfig2d,
    bias: bool,
) -> burn::nn::conv::Conv2d {
    let mut conv = burn::nn::conv::Conv2dConfig::new([c_in, c_out], k)
        .with_padding(padding)
        .with_bias(bias)
        .init(device);
    conv.weight = burn::module::Param::from_tensor(
        Tensor::random(
            [c_out, c_in, k[0], k[1]],
            Distribution::Normal(0.0, 0.5),
            device,
        )
        .require_grad(),
    );
    conv.bias = bias.then(|| {
        burn::module::Param::from_tensor(
            Tensor::<1>::random([c_out], Distribution::Normal(0.2, 0.5), device).require_grad(),
        )
    });
    conv
}

#[test]
fn fused_convolution_matches_burns_convolution_and_its_gradients() {
    use burn::nn::PaddingConfig2d::{Explicit, Same, Valid};
    let device = Device::flex().autodiff();
    device.seed(5);
    // Same-padded 3×3 with a bias and ReLU (the CNN's), 1×1 without a bias (the ResNet's
    // shortcut), a 5×3 kernel, unpadded and padded by hand; odd image sizes; a batch larger
    // than one backward task (8 images) with a ragged last task.
    let cases = [
        (11, [3, 4], [3, 3], Same, true, true, [7, 9]),
        (2, [5, 6], [1, 1], Same, false, false, [6, 5]),
        (3, [2, 3], [5, 3], Same, true, false, [8, 7]),
        (2, [3, 2], [3, 3], Valid, true, true, [5, 6]),
        (1, [2, 2], [3, 3], Explicit(2, 1, 2, 1), false, true, [4, 4]),
    ];
    for (batch, channels, k, padding, bias, relu, [h, w]) in cases {
        let case = format!("{batch} {channels:?} {k:?} {padding:?} bias {bias} relu {relu}");
        let conv = random_conv(&device, channels, k, padding, bias);
        let x = Tensor::<4>::random(
            [batch, channels[0], h, w],
            Distribution::Normal(0.0, 1.0),
            &device,
        )
        .require_grad();
        let fused = conv2d(x.clone(), &conv, relu);
        let unfused = unfused_conv2d(x.clone(), &conv, relu);
        assert_eq!(fused.dims(), unfused.dims(), "{case}");
        fused
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&unfused.clone().into_data(), Tolerance::absolute(1e-4));
        let weights = Tensor::<4>::random(fused.dims(), Distribution::Normal(0.0, 1.0), &device);
        let g_fused = (fused * weights.clone()).sum().backward();
        let g_unfused = (unfused * weights).sum().backward();
        assert_same_grad(&x, &g_fused, &g_unfused, 1e-4);
        assert_same_grad(&conv.weight.val(), &g_fused, &g_unfused, 1e-3);
        if let Some(b) = &conv.bias {
            assert_same_grad(&b.val(), &g_fused, &g_unfused, 1e-3);
        }
    }
}

#[test]
fn the_convolution_leaves_an_untracked_input_without_a_gradient() {
    // The first layer's input (the images) needs no gradient: none is computed for it, and the
    // kernel's and bias's gradients on that path are still Burn's.
    let device = Device::flex().autodiff();
    device.seed(6);
    let conv = random_conv(
        &device,
        [2, 3],
        [3, 3],
        burn::nn::PaddingConfig2d::Same,
        true,
    );
    let x = Tensor::<4>::random([3, 2, 5, 5], Distribution::Normal(0.0, 1.0), &device);
    let grads = conv2d(x.clone(), &conv, true).sum().backward();
    assert!(x.grad(&grads).is_none());
    let reference = unfused_conv2d(x, &conv, true).sum().backward();
    assert_same_grad(&conv.weight.val(), &grads, &reference, 1e-4);
    if let Some(bias) = &conv.bias {
        assert_same_grad(&bias.val(), &grads, &reference, 1e-4);
    }
}

#[test]
fn fused_max_pool_matches_burns_and_its_gradient() {
    let device = Device::flex().autodiff();
    device.seed(8);
    // Even and odd sizes (a last odd row or column is dropped).
    for dims in [[2, 3, 8, 6], [3, 2, 7, 9], [1, 1, 1, 4]] {
        let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device).require_grad();
        let fused = max_pool2x2(x.clone());
        let unfused = unfused_max_pool2x2(x.clone());
        assert_eq!(fused.dims(), unfused.dims(), "{dims:?}");
        fused
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&unfused.clone().into_data(), Tolerance::absolute(0.0));
        let weights = Tensor::<4>::random(fused.dims(), Distribution::Normal(0.0, 1.0), &device);
        let g_fused = (fused * weights.clone()).sum().backward();
        let g_unfused = (unfused * weights).sum().backward();
        assert_same_grad(&x, &g_fused, &g_unfused, 0.0);
    }
}

#[test]
fn the_convolution_does_not_depend_on_the_thread_count() {
    // The weight gradient's partial sums are added in a fixed order.
    let device = Device::flex().autodiff();
    device.seed(9);
    let conv = random_conv(
        &device,
        [3, 4],
        [3, 3],
        burn::nn::PaddingConfig2d::Same,
        true,
    );
    let x = Tensor::<4>::random([19, 3, 6, 6], Distribution::Normal(0.0, 1.0), &device);
    let weight_grad = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let grads = conv2d(x.clone(), &conv, true).sum().backward();
            conv.weight.val().grad(&grads).unwrap().into_data()
        })
    };
    assert_eq!(weight_grad(1), weight_grad(3));
}

#[test]
fn fused_recurrent_layers_match_burns_step_by_step_layers_and_their_gradients() {
    let device = Device::flex().autodiff();
    device.seed(12);
    // LSTM (no recurrent bias, as the models build it) and GRU (with one), sequences padded
    // to different lengths (the mask keeps a padded position's state), one of length 0.
    // 37 sequences are two parallel tasks (32 sequences each at most).
    for (gates, with_bias, b) in [
        (4, false, 3),
        (3, true, 3),
        (4, true, 3),
        (4, false, 37),
        (3, true, 37),
    ] {
        let (t, h) = (6, 5);
        let mut hidden = random_linear(&device, h, gates * h);
        if !with_bias {
            hidden.bias = None;
        }
        let projected =
            Tensor::<3>::random([b, t, gates * h], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
        let lengths: Vec<usize> = (0..b).map(|i| [6, 3, 0][i % 3]).collect();
        let mask: Vec<f32> = lengths
            .iter()
            .flat_map(|&n| (0..t).map(move |s| f32::from(u8::from(s < n))))
            .collect();
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, t]), &device);
        let fused = recurrent(projected.clone(), &hidden, mask.clone(), gates);
        let unfused = unfused_recurrent(projected.clone(), &hidden, mask, gates);
        fused
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&unfused.clone().into_data(), Tolerance::absolute(1e-5));
        let weights = Tensor::<3>::random([b, t, h], Distribution::Normal(0.0, 1.0), &device);
        let g_fused = (fused * weights.clone()).sum().backward();
        let g_unfused = (unfused * weights).sum().backward();
        assert_same_grad(&projected, &g_fused, &g_unfused, 1e-5);
        assert_same_grad(&hidden.weight.val(), &g_fused, &g_unfused, 1e-5);
        if let Some(bias) = &hidden.bias {
            assert_same_grad(&bias.val(), &g_fused, &g_unfused, 1e-5);
        }
    }
}

/// A batch norm over `c` channels with a random gain and shift, both tracked.
fn random_batch_norm(device: &Device, c: usize) -> burn::nn::BatchNorm {
    let mut norm = burn::nn::BatchNormConfig::new(c).init(device);
    norm.gamma = burn::module::Param::from_tensor(
        Tensor::<1>::random([c], Distribution::Normal(1.0, 0.5), device).require_grad(),
    );
    norm.beta = burn::module::Param::from_tensor(
        Tensor::<1>::random([c], Distribution::Normal(0.0, 0.5), device).require_grad(),
    );
    norm
}

#[test]
fn fused_batch_norm_matches_burns_in_training_its_gradients_and_running_statistics() {
    let device = Device::flex().autodiff();
    device.seed(13);
    for (dims, relu) in [
        ([5, 3, 4, 6], true),
        ([2, 4, 3, 3], false),
        ([1, 2, 1, 5], true),
    ] {
        let (fused_norm, reference_norm) = {
            let norm = random_batch_norm(&device, dims[1]);
            (norm.clone(), norm)
        };
        // Shifted and scaled, so that the statistics matter.
        let x = (Tensor::<4>::random(dims, Distribution::Normal(0.5, 2.0), &device)).require_grad();
        let fused = batch_norm(x.clone(), &fused_norm, relu);
        let unfused = unfused_batch_norm(x.clone(), &reference_norm, relu);
        fused
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&unfused.clone().into_data(), Tolerance::absolute(1e-5));
        let weights = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
        let g_fused = (fused * weights.clone()).sum().backward();
        let g_unfused = (unfused * weights).sum().backward();
        assert_same_grad(&x, &g_fused, &g_unfused, 1e-4);
        assert_same_grad(&fused_norm.gamma.val(), &g_fused, &g_unfused, 1e-4);
        assert_same_grad(&fused_norm.beta.val(), &g_fused, &g_unfused, 1e-4);
        for (ours, burns) in [
            (&fused_norm.running_mean, &reference_norm.running_mean),
            (&fused_norm.running_var, &reference_norm.running_var),
        ] {
            ours.value()
                .into_data()
                .assert_approx_eq::<f32>(&burns.value().into_data(), Tolerance::absolute(1e-6));
        }
    }
}

#[test]
fn fused_batch_norm_matches_burns_in_inference() {
    // The running statistics (moved by one training pass), on the plain device.
    let device = Device::flex().autodiff();
    device.seed(14);
    let norm = random_batch_norm(&device, 3);
    let x = Tensor::<4>::random([4, 3, 5, 5], Distribution::Normal(1.0, 3.0), &device);
    let _ = batch_norm(x.clone(), &norm, false);
    let norm = burn::module::Module::valid(&norm);
    let x = x.inner();
    for relu in [false, true] {
        batch_norm(x.clone(), &norm, relu)
            .into_data()
            .assert_approx_eq::<f32>(
                &unfused_batch_norm(x.clone(), &norm, relu).into_data(),
                Tolerance::absolute(1e-5),
            );
    }
}

#[test]
fn fused_masked_self_attention_matches_burns_attention_with_a_padding_bias() {
    // Bidirectional (the encoder's) and causal (the GPT classifier's), sequences of several
    // lengths: full, partly padding, one real token, and a length past T (taken as T).
    let device = Device::flex().autodiff();
    device.seed(15);
    let (t, heads, d) = (7, 2, 8);
    let lengths = [7, 4, 1, 9];
    for causal in [false, true] {
        let qkv = Tensor::<2>::random(
            [lengths.len() * t, 3 * d],
            Distribution::Normal(0.0, 1.0),
            &device,
        )
        .require_grad();
        let fused = self_attention(qkv.clone(), &lengths, heads, causal);
        let unfused = unfused_self_attention(qkv.clone(), &lengths, heads, causal);
        fused
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&unfused.clone().into_data(), Tolerance::absolute(1e-5));
        let weights = Tensor::<2>::random(fused.dims(), Distribution::Normal(0.0, 1.0), &device);
        let g_fused = (fused * weights.clone()).sum().backward();
        let g_unfused = (unfused * weights).sum().backward();
        assert_same_grad(&qkv, &g_fused, &g_unfused, 1e-5);
    }
}

#[test]
fn the_recurrent_layer_does_not_depend_on_the_thread_count() {
    // Its tasks are fixed groups of sequences whose weight-gradient shares are added in order.
    let device = Device::flex().autodiff();
    device.seed(16);
    let (b, t, h) = (70, 5, 4);
    let hidden = random_linear(&device, h, 4 * h);
    let projected = Tensor::<3>::random([b, t, 4 * h], Distribution::Normal(0.0, 1.0), &device);
    let mask = Tensor::<2>::ones([b, t], &device);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let out = recurrent(projected.clone(), &hidden, mask.clone(), 4);
            let grads = out.clone().sum().backward();
            let du = hidden.weight.val().grad(&grads).unwrap().into_data();
            (out.into_data(), du)
        })
    };
    assert_eq!(run(1), run(3));
}
