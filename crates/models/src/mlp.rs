//! MLP: a multilayer perceptron classifier (Rumelhart, Hinton & Williams 1986). The input is
//! flattened, passed through `depth` hidden layers of `width` ReLU units, and a linear layer
//! gives the class logits. Depth 0 is multinomial logistic regression.
//!
//! Read top to bottom: cost accounting, the model. Shapes: `[B, …]` batch first; `I` inputs
//! per example, `H` hidden units, `K` classes.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use crate::init::{ParamFactory, WeightInit};
use crate::registry::{FamilyModel, ImageClassifier};
use burn::tensor::Device;
use scalelab_spec::family::MlpConfig;

// Cost accounting lives with the shapes: `scalelab_spec::family::mlp`.

// ---------------------------------------------------------------------------------------------
// The model.
// ---------------------------------------------------------------------------------------------

/// A multilayer perceptron.
#[derive(Module, Debug)]
pub struct Mlp {
    hidden: Vec<Linear>,
    classifier: Linear,
    dropout: Dropout,
}

impl Mlp {
    /// Class logits `[B, K]` of inputs `[B, C, H, W]` (any shape after the batch; flattened).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let [b, c, h, w] = x.dims();
        let mut x = x.reshape([b, c * h * w]); // [B, I]
        for layer in &self.hidden {
            x = relu(layer.forward(self.dropout.forward(x))); // [B, H]
        }
        self.classifier.forward(self.dropout.forward(x)) // [B, K]
    }
}

impl FamilyModel for Mlp {
    type Shape = MlpConfig;
    const HEAD: &'static str = "classifier";
    const INPUT: &'static [&'static str] = &[];
    const LAYERS: &'static str = "hidden";
    const LORA_TARGETS: &'static [(&'static str, &'static str)] =
        &[("hidden", r"^hidden\.\d+\.weight$")];

    /// Builds an MLP. Hidden weights are He-normal (std √(2/fan_in), He et al. 2015), the
    /// classifier's N(0, 1/fan_in); biases zero.
    fn init(c: &MlpConfig, init: &mut dyn WeightInit, device: &Device) -> Self {
        let &MlpConfig {
            inputs,
            ref hidden,
            classes,
            dropout,
        } = c;
        let mut p = ParamFactory::new(init, device);
        let mut fan_in = inputs;
        let hidden = hidden
            .iter()
            .enumerate()
            .map(|(i, &width)| {
                let std = (2.0 / fan_in as f64).sqrt();
                let layer = p.linear(&format!("hidden.{i}"), fan_in, width, std, true);
                fan_in = width;
                layer
            })
            .collect();
        let classifier = p.linear(
            "classifier",
            fan_in,
            classes,
            (1.0 / fan_in as f64).sqrt(),
            true,
        );
        Self {
            hidden,
            classifier,
            dropout: DropoutConfig::new(dropout).init(),
        }
    }
}

impl ImageClassifier for Mlp {
    fn classify_images(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::{InitKind, SeededInit};
    use crate::test_util::count_params;
    use burn::tensor::{Device, TensorData};
    use scalelab_spec::family::mlp::*;

    /// An MLP's shape without dropout.
    fn shape(inputs: usize, hidden: &[usize], classes: usize) -> MlpConfig {
        MlpConfig {
            inputs,
            hidden: hidden.to_vec(),
            classes,
            dropout: 0.0,
        }
    }

    #[test]
    fn counts_match_the_built_model() {
        let device = Device::default();
        for hidden in [vec![], vec![7], vec![5, 3, 4]] {
            let model = Mlp::init(&shape(12, &hidden, 4), &mut SeededInit::new(0), &device);
            assert_eq!(
                count_params(&model),
                mlp_param_counts(12, &hidden, 4).total,
                "{hidden:?}"
            );
        }
        // Logistic regression on MNIST: 784·10 weights + 10 biases.
        assert_eq!(mlp_param_counts(784, &[], 10).total, 7850);
        // 784-256-256-10: (784·256+256) + (256·256+256) + (256·10+10) = 269,322.
        assert_eq!(mlp_param_counts(784, &[256, 256], 10).total, 269_322);
        assert_eq!(
            mlp_flops_per_sample(784, &[256, 256], 10),
            6.0 * (784.0 * 256.0 + 256.0 * 256.0 + 2560.0)
        );
    }

    #[test]
    fn forward_by_hand() {
        // One hidden unit: relu(x·w1 + b1)·w2 + b2 with hand-set weights.
        struct Fixed(Vec<Vec<f32>>);
        impl WeightInit for Fixed {
            fn values(&mut self, _: &str, _: &[usize], _: InitKind) -> Vec<f32> {
                self.0.remove(0)
            }
        }
        let mut init = Fixed(vec![
            vec![1.0, -2.0], // hidden weight [2, 1]
            vec![0.5],       // hidden bias
            vec![3.0, -1.0], // classifier weight [1, 2]
            vec![0.0, 1.0],  // classifier bias
        ]);
        let device = Device::default();
        let model = Mlp::init(&shape(2, &[1], 2), &mut init, &device);
        let x = Tensor::<4>::from_data(TensorData::new(vec![2.0f32, 0.25], [1, 1, 1, 2]), &device);
        // h = relu(2 - 0.5 + 0.5) = 2; logits = (6, -2 + 1) = (6, -1).
        let logits = model.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(logits, vec![6.0, -1.0]);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let input: Vec<f32> = (0..12).map(|i| ((i as f32) * 1.3).cos()).collect();
        crate::test_util::gradient_check(
            |init, device| Mlp::init(&shape(6, &[5, 4], 3), init, device),
            |model, x| model.forward(x),
            ([2, 1, 2, 3], input),
            8,
        );
    }
}
