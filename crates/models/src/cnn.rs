//! CNN: a VGG-style convolutional classifier (Simonyan & Zisserman 2015, "Very Deep
//! Convolutional Networks"), scaled to small images. Each stage is two same-padded 3×3
//! convolutions with ReLU and a 2×2 max-pool that halves the image; channels double from
//! stage to stage. The last feature map is flattened into a hidden ReLU layer and a linear
//! classifier.
//!
//! Read top to bottom: cost accounting, the model. Shapes: `[B, C, H, W]` batch, channels,
//! rows, columns; `K` classes.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Tensor};

use scalelab_kernels::{conv2d, max_pool2x2};

use crate::init::{ParamFactory, WeightInit};
use crate::registry::{FamilyModel, ImageClassifier};
use scalelab_spec::family::CnnConfig;

use scalelab_spec::family::cnn::{CONVS_PER_STAGE, KERNEL, convs, flat_features};

// Cost accounting lives with the shapes: `scalelab_spec::family::cnn`.

// ---------------------------------------------------------------------------------------------
// The model.
// ---------------------------------------------------------------------------------------------

/// A VGG-style convolutional network.
#[derive(Module, Debug)]
pub struct Cnn {
    convs: Vec<Conv2d>,
    fc: Linear,
    classifier: Linear,
    dropout: Dropout,
}

impl Cnn {
    /// Class logits `[B, K]` of images `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        for (i, conv) in self.convs.iter().enumerate() {
            x = conv2d(x, conv, true); // relu(conv(x)): [B, c_s, H_s, W_s]
            if i % CONVS_PER_STAGE == CONVS_PER_STAGE - 1 {
                x = max_pool2x2(x); // [B, c_s, H_s/2, W_s/2]
            }
        }
        let [b, c, h, w] = x.dims();
        let x = x.reshape([b, c * h * w]); // [B, F]
        let x = burn::tensor::activation::relu(self.fc.forward(self.dropout.forward(x))); // [B, fc]
        self.classifier.forward(self.dropout.forward(x)) // [B, K]
    }
}

impl FamilyModel for Cnn {
    type Shape = CnnConfig;
    const HEAD: &'static str = "classifier";
    const INPUT: &'static [&'static str] = &[];
    const LAYERS: &'static str = "convs";
    const LORA_TARGETS: &'static [(&'static str, &'static str)] = &[("fc", r"^fc\.weight$")];

    /// Builds the network: He-normal kernels and hidden weights, N(0, 1/fan_in) classifier,
    /// zero biases.
    fn init(c: &CnnConfig, init: &mut dyn WeightInit, device: &Device) -> Self {
        let &CnnConfig {
            input,
            ref stages,
            fc,
            classes,
            dropout,
        } = c;
        let mut p = ParamFactory::new(init, device);
        let convs = convs(input, stages)
            .iter()
            .enumerate()
            .map(|(i, &(ci, co, _, _))| {
                p.conv2d(
                    &format!("convs.{i}"),
                    ci as usize,
                    co as usize,
                    KERNEL,
                    true,
                )
            })
            .collect();
        let flat = flat_features(input, stages) as usize;
        let fc_layer = p.linear("fc", flat, fc, (2.0 / flat as f64).sqrt(), true);
        let classifier = p.linear("classifier", fc, classes, (1.0 / fc as f64).sqrt(), true);
        Self {
            convs,
            fc: fc_layer,
            classifier,
            dropout: DropoutConfig::new(dropout).init(),
        }
    }
}

impl ImageClassifier for Cnn {
    fn classify_images(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::SeededInit;
    use crate::test_util::count_params;
    use burn::tensor::TensorData;
    use scalelab_spec::family::cnn::*;

    /// A CNN's shape without dropout.
    fn shape(input: [usize; 3], stages: &[usize], fc: usize, classes: usize) -> CnnConfig {
        CnnConfig {
            input,
            stages: stages.to_vec(),
            fc,
            classes,
            dropout: 0.0,
        }
    }

    /// Multiply-adds of a same-padded 3×3 convolution counted one by one, as a naive loop
    /// would perform them (zero padding taps included, as in the closed form).
    fn brute_force_macs(input: [usize; 3], stages: &[usize], fc: usize, classes: usize) -> u64 {
        let [mut c, mut h, mut w] = input;
        let mut macs = 0u64;
        for &s in stages {
            for _ in 0..2 {
                for _out_channel in 0..s {
                    for _y in 0..h {
                        for _x in 0..w {
                            for _in_channel in 0..c {
                                for _tap in 0..9 {
                                    macs += 1;
                                }
                            }
                        }
                    }
                }
                c = s;
            }
            (h, w) = (h / 2, w / 2);
        }
        macs + (c * h * w * fc) as u64 + (fc * classes) as u64
    }

    #[test]
    fn counts_match_the_built_model_and_brute_force() {
        let device = Device::default();
        for (input, stages) in [
            ([1, 8, 8], vec![4]),
            ([1, 7, 9], vec![3, 6]),
            ([3, 8, 8], vec![2, 4, 8]),
        ] {
            let model = Cnn::init(
                &shape(input, &stages, 5, 3),
                &mut SeededInit::new(0),
                &device,
            );
            assert_eq!(
                count_params(&model),
                cnn_param_counts(input, &stages, 5, 3).total,
                "{input:?} {stages:?}"
            );
            assert_eq!(
                cnn_flops_per_sample(input, &stages, 5, 3),
                6.0 * brute_force_macs(input, &stages, 5, 3) as f64
            );
            // The forward pass agrees with the shapes the accounting assumes.
            let x = Tensor::<4>::zeros([2, input[0], input[1], input[2]], &device);
            assert_eq!(model.forward(x).dims(), [2, 3]);
        }
        // The `cnn` preset on MNIST: convs 1→32→32 | 32→64→64 on 28² and 14², fc 64·7·7→128→10.
        let expected = (9 * 32 + 32)
            + (9 * 32 * 32 + 32)
            + (9 * 32 * 64 + 64)
            + (9 * 64 * 64 + 64)
            + (64 * 49 * 128 + 128)
            + (128 * 10 + 10);
        assert_eq!(
            cnn_param_counts([1, 28, 28], &[32, 64], 128, 10).total,
            expected
        );
    }

    #[test]
    fn pooling_and_convolution_by_hand() {
        // One stage of one channel on a 2×2 image, every kernel tap 1 and the bias 0: each
        // same-padded output sums its 3×3 neighbourhood, here the whole image.
        struct Ones;
        impl WeightInit for Ones {
            fn values(&mut self, name: &str, shape: &[usize], _: crate::InitKind) -> Vec<f32> {
                let n = shape.iter().product();
                let v = if name.ends_with("bias") { 0.0 } else { 1.0 };
                vec![v; n]
            }
        }
        let device = Device::default();
        let model = Cnn::init(&shape([1, 2, 2], &[1], 1, 1), &mut Ones, &device);
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 2, 2]),
            &device,
        );
        // conv1: every output is 1+2+3+4 = 10; conv2: every output 4·10 = 40; pool: 40;
        // fc: 40; classifier: 40.
        let logits = model.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(logits, vec![40.0]);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let input: Vec<f32> = (0..2 * 2 * 6 * 6)
            .map(|i| ((i as f32) * 0.9).sin())
            .collect();
        crate::test_util::gradient_check(
            |init, device| Cnn::init(&shape([2, 6, 6], &[3, 4], 5, 3), init, device),
            |model, x| model.forward(x),
            ([2, 2, 6, 6], input),
            6,
        );
    }
}
