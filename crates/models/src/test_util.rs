//! Helpers of the model tests: parameter counting by walking a module, and a gradient check
//! of autodiff against central finite differences.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::init::{InitKind, SeededInit, WeightInit};

/// Whether a visited float tensor is trained: on an autodiff device, state such as batch
/// norm's running statistics is visited too but does not require gradients.
fn trainable<const D: usize>(param: &Param<Tensor<D>>) -> bool {
    let value = param.val();
    !value.device().is_autodiff() || value.is_require_grad()
}

/// Trainable scalars of a module, counted by visiting its parameters (build the model on an
/// autodiff device when it holds running statistics).
/// Token ids `[rows, t]`: each row's tokens, padded with `pad` (or cut) to `t`.
pub(crate) fn padded_tokens(
    rows: &[&[i64]],
    t: usize,
    pad: i64,
    device: &Device,
) -> Tensor<2, Int> {
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|r| r.iter().copied().chain(std::iter::repeat(pad)).take(t))
        .collect();
    Tensor::<2, Int>::from_data(TensorData::new(ids, [rows.len(), t]), device)
}

pub(crate) fn count_params<M: Module>(model: &M) -> u64 {
    struct Count(u64);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if trainable(param) {
                self.0 += param.val().shape().num_elements() as u64;
            }
        }
    }
    let mut count = Count(0);
    model.visit(&mut count);
    count.0
}

/// Replays recorded initial values, with one element optionally nudged.
struct Replay {
    tensors: Vec<Vec<f32>>,
    next: usize,
    nudge: Option<(usize, usize, f32)>,
}

impl WeightInit for Replay {
    fn values(&mut self, _: &str, _: &[usize], _: InitKind) -> Vec<f32> {
        let mut values = self.tensors[self.next].clone();
        if let Some((t, i, delta)) = self.nudge
            && t == self.next
        {
            values[i] += delta;
        }
        self.next += 1;
        values
    }
}

/// Records what a seeded initialiser hands out, with biases and gains made non-trivial so
/// that their gradients are exercised too.
struct Record(SeededInit, Vec<Vec<f32>>);

impl WeightInit for Record {
    fn values(&mut self, name: &str, shape: &[usize], _: InitKind) -> Vec<f32> {
        let values = self.0.values(name, shape, InitKind::Normal { std: 0.3 });
        self.1.push(values.clone());
        values
    }
}

/// Checks the autodiff gradient of `loss = Σ logits ⊙ weights` with respect to every
/// parameter element (up to `per_tensor` of each tensor) against a central difference.
pub(crate) fn gradient_check<M: Module>(
    build: impl Fn(&mut dyn WeightInit, &Device) -> M,
    forward: impl Fn(&M, Tensor<4>) -> Tensor<2>,
    input: ([usize; 4], Vec<f32>),
    per_tensor: usize,
) {
    let ad = Device::default().autodiff();
    let mut record = Record(SeededInit::new(5), Vec::new());
    let model = build(&mut record, &ad);
    let tensors = record.1;
    let x = |d: &Device| Tensor::<4>::from_data(TensorData::new(input.1.clone(), input.0), d);
    let loss = |logits: Tensor<2>| {
        let [b, k] = logits.dims();
        let weights: Vec<f32> = (0..b * k).map(|i| ((i as f32) * 0.7).sin()).collect();
        let weights = Tensor::<2>::from_data(TensorData::new(weights, [b, k]), &logits.device());
        (logits * weights).sum()
    };
    let grads = loss(forward(&model, x(&ad))).backward();
    let grads = GradientsParams::from_grads(grads, &model);

    struct Collect<'a>(&'a GradientsParams, Vec<Vec<f32>>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !trainable(param) {
                return;
            }
            let n = param.val().shape().num_elements();
            let grad = self.0.get::<D>(param.id).map_or_else(
                || vec![0.0; n],
                |g| g.into_data().try_to_vec::<f32>().unwrap_or_default(),
            );
            self.1.push(grad);
        }
    }
    let mut collect = Collect(&grads, Vec::new());
    model.visit(&mut collect);
    let analytic = collect.1;
    assert_eq!(
        analytic.len(),
        tensors.len(),
        "one gradient per parameter tensor"
    );

    let eval = |nudge: (usize, usize, f32)| -> f64 {
        let mut replay = Replay {
            tensors: tensors.clone(),
            next: 0,
            nudge: Some(nudge),
        };
        // On the autodiff device, so that layers with a training mode (batch norm) take the
        // same path as the differentiated pass.
        let model = build(&mut replay, &ad);
        f64::from(loss(forward(&model, x(&ad))).into_scalar::<f32>())
    };
    // Small enough that a nudge rarely crosses a ReLU or max-pool kink (batch norm puts many
    // pre-activations near zero), large enough for f32 differences of an O(1) loss.
    let eps = 1e-3f32;
    for (t, grad) in analytic.iter().enumerate() {
        let stride = (grad.len() / per_tensor).max(1);
        for i in (0..grad.len()).step_by(stride) {
            let numeric = (eval((t, i, eps)) - eval((t, i, -eps))) / (2.0 * f64::from(eps));
            let exact = f64::from(grad[i]);
            assert!(
                (numeric - exact).abs() <= 2e-2 * (1.0 + exact.abs()),
                "tensor {t} element {i}: autodiff {exact}, finite difference {numeric}"
            );
        }
    }
}
