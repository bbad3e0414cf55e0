//! Where initial weights come from. Every parameter of every model is drawn through a
//! [`WeightInit`], in a fixed order, on the host: so the same seed gives the same weights on
//! every backend and in every process, whatever else runs beside it.

use burn::module::{Param, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, LayerNorm, LayerNormConfig, Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

pub use scalelab_kernels::LAYER_NORM_EPSILON;

/// How a parameter tensor should start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InitKind {
    /// Independent draws from N(0, std²).
    Normal {
        /// Standard deviation.
        std: f64,
    },
    /// All zeros (biases).
    Zeros,
    /// All ones (norm gains).
    Ones,
}

/// Produces the initial values of one parameter tensor, row-major in `shape`.
pub trait WeightInit {
    /// Values for the tensor `name` of `shape`, asked for in the model's creation order.
    fn values(&mut self, name: &str, shape: &[usize], kind: InitKind) -> Vec<f32>;
}

/// The standard initialiser: normal draws from a ChaCha8 generator seeded by the run's seed.
pub struct SeededInit {
    rng: ChaCha8Rng,
}

impl SeededInit {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl WeightInit for SeededInit {
    fn values(&mut self, _name: &str, shape: &[usize], kind: InitKind) -> Vec<f32> {
        let n = shape.iter().product();
        match kind {
            InitKind::Zeros => vec![0.0; n],
            InitKind::Ones => vec![1.0; n],
            InitKind::Normal { std } => match Normal::new(0.0, std) {
                Ok(normal) => (0..n)
                    .map(|_| normal.sample(&mut self.rng) as f32)
                    .collect(),
                // A non-finite or negative std is a programming error in a model file;
                // fall back to zeros rather than panic in a user's run.
                Err(_) => vec![0.0; n],
            },
        }
    }
}

/// Deterministic weights that a short script in any language can rebuild: element `i` of the
/// `k`-th tensor created is `amplitude · sin(0.37·i + 0.11·k)`; norm gains are ones and
/// biases zeros. Used by parity tests against reference implementations.
pub struct FormulaInit {
    /// Scale of the sine weights.
    pub amplitude: f64,
    next_tensor: u64,
}

impl FormulaInit {
    /// A formula initialiser with the given amplitude.
    pub fn new(amplitude: f64) -> Self {
        Self {
            amplitude,
            next_tensor: 0,
        }
    }
}

impl WeightInit for FormulaInit {
    fn values(&mut self, _name: &str, shape: &[usize], kind: InitKind) -> Vec<f32> {
        let k = self.next_tensor as f64;
        self.next_tensor += 1;
        let n = shape.iter().product();
        match kind {
            InitKind::Zeros => vec![0.0; n],
            InitKind::Ones => vec![1.0; n],
            InitKind::Normal { .. } => (0..n)
                .map(|i| (self.amplitude * (0.37 * i as f64 + 0.11 * k).sin()) as f32)
                .collect(),
        }
    }
}

/// Creates every parameter of a model through a [`WeightInit`] and gives each a stable id:
/// the order of creation numbers the parameters, so optimiser state saved by one process
/// loads in another.
pub(crate) struct ParamFactory<'a> {
    init: &'a mut dyn WeightInit,
    device: &'a Device,
    next_id: u64,
}

impl<'a> ParamFactory<'a> {
    pub(crate) fn new(init: &'a mut dyn WeightInit, device: &'a Device) -> Self {
        Self {
            init,
            device,
            next_id: 0,
        }
    }

    pub(crate) fn param<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        kind: InitKind,
    ) -> Param<Tensor<D>> {
        let values = self.init.values(name, &shape, kind);
        let tensor = Tensor::<D>::from_data(TensorData::new(values, shape), self.device);
        let mut param = Param::from_tensor(tensor);
        param.id = ParamId::from(self.next_id);
        self.next_id += 1;
        param
    }

    /// A linear layer `[d_in] → [d_out]`, weights from N(0, std²), zero bias.
    pub(crate) fn linear(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
        std: f64,
        bias: bool,
    ) -> Linear {
        Linear {
            weight: self.param(
                &format!("{name}.weight"),
                [d_in, d_out],
                InitKind::Normal { std },
            ),
            bias: bias.then(|| self.param(&format!("{name}.bias"), [d_out], InitKind::Zeros)),
        }
    }

    /// LayerNorm over `d`, epsilon 1e-5 as PyTorch's default, unit gain, zero bias.
    pub(crate) fn layer_norm(&mut self, name: &str, d: usize) -> LayerNorm {
        let mut norm = LayerNormConfig::new(d)
            .with_epsilon(LAYER_NORM_EPSILON)
            .init(self.device);
        norm.gamma = self.param(&format!("{name}.gamma"), [d], InitKind::Ones);
        norm.beta = Some(self.param(&format!("{name}.beta"), [d], InitKind::Zeros));
        norm
    }

    /// A same-padded `k×k` convolution `c_in → c_out`, He-normal weights
    /// (std √(2 / (c_in·k²)), He et al. 2015, for ReLU networks), an optional zero bias.
    pub(crate) fn conv2d(
        &mut self,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        bias: bool,
    ) -> Conv2d {
        let mut conv = Conv2dConfig::new([c_in, c_out], [k, k])
            .with_padding(PaddingConfig2d::Same)
            .with_bias(bias)
            .init(self.device);
        let std = (2.0 / (c_in * k * k) as f64).sqrt();
        conv.weight = self.param(
            &format!("{name}.weight"),
            [c_out, c_in, k, k],
            InitKind::Normal { std },
        );
        conv.bias = bias.then(|| self.param(&format!("{name}.bias"), [c_out], InitKind::Zeros));
        conv
    }

    /// Batch norm over `c` channels (Ioffe & Szegedy 2015): unit gain, zero shift, running
    /// statistics with momentum 0.1 and epsilon 1e-5 as PyTorch's defaults.
    pub(crate) fn batch_norm(&mut self, name: &str, c: usize) -> BatchNorm {
        let mut norm = BatchNormConfig::new(c)
            .with_epsilon(1e-5)
            .with_momentum(0.1)
            .init(self.device);
        norm.gamma = self.param(&format!("{name}.gamma"), [c], InitKind::Ones);
        norm.beta = self.param(&format!("{name}.beta"), [c], InitKind::Zeros);
        norm
    }
}
