//! ResNet: a residual convolutional classifier with batch norm (He et al. 2016, "Deep
//! Residual Learning for Image Recognition"), scaled to small images. A 3×3 stem convolution,
//! then one basic block per stage — `relu(x' + bn(conv(relu(bn(conv(x'))))))` — where stage
//! `s > 0` first halves the image with a 2×2 max-pool and its shortcut projects the channels
//! with a 1×1 convolution and batch norm (He et al.'s option B); channels double each stage.
//! Global average pooling and a linear layer give the logits. Convolutions followed by batch
//! norm have no bias.
//!
//! Downsampling by max-pool rather than by strided convolution keeps every convolution
//! same-padded at stride 1: a simplification of the paper's blocks, said here.
//!
//! Read top to bottom: cost accounting, the block, the model. Shapes `[B, C, H, W]`.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use scalelab_kernels::{batch_norm, conv2d, max_pool2x2};

use crate::init::{ParamFactory, WeightInit};
use crate::registry::{FamilyModel, ImageClassifier};
use scalelab_spec::family::ResnetConfig;

use scalelab_spec::family::resnet::blocks;

// Cost accounting lives with the shapes: `scalelab_spec::family::resnet`.

// ---------------------------------------------------------------------------------------------
// The block.
// ---------------------------------------------------------------------------------------------

/// A basic residual block, optionally downsampling first.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// Whether the block first halves the image with a 2×2 max-pool.
    pool: bool,
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    /// 1×1 projection and its norm when the channels change.
    shortcut: Option<(Conv2d, BatchNorm)>,
}

impl BasicBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = if self.pool {
            max_pool2x2(x) // [B, c_in, H/2, W/2]
        } else {
            x
        };
        let h = batch_norm(conv2d(x.clone(), &self.conv1, false), &self.bn1, true); // relu: [B, c_out, H, W]
        let h = batch_norm(conv2d(h, &self.conv2, false), &self.bn2, false); // [B, c_out, H, W]
        let skip = match &self.shortcut {
            Some((conv, bn)) => batch_norm(conv2d(x, conv, false), bn, false), // [B, c_out, H, W]
            None => x,
        };
        relu(h + skip)
    }
}

// ---------------------------------------------------------------------------------------------
// The model.
// ---------------------------------------------------------------------------------------------

/// A residual network.
#[derive(Module, Debug)]
pub struct ResNet {
    stem: Conv2d,
    stem_bn: BatchNorm,
    blocks: Vec<BasicBlock>,
    classifier: Linear,
    dropout: Dropout,
}

impl ResNet {
    /// Class logits `[B, K]` of images `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = batch_norm(conv2d(x, &self.stem, false), &self.stem_bn, true); // relu: [B, c0, H, W]
        for block in &self.blocks {
            x = block.forward(x); // [B, c_s, H_s, W_s]
        }
        let [b, c, h, w] = x.dims();
        let pooled = x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c]); // [B, c]
        self.classifier.forward(self.dropout.forward(pooled)) // [B, K]
    }
}

impl FamilyModel for ResNet {
    type Shape = ResnetConfig;
    const HEAD: &'static str = "classifier";
    const INPUT: &'static [&'static str] = &["stem", "stem_bn"];
    const LAYERS: &'static str = "blocks";
    const LORA_TARGETS: &'static [(&'static str, &'static str)] = &[];

    /// Builds the network: He-normal kernels, unit gains and zero shifts in the norms, an
    /// N(0, 1/fan_in) classifier with zero bias.
    fn init(c: &ResnetConfig, init: &mut dyn WeightInit, device: &Device) -> Self {
        let &ResnetConfig {
            input,
            ref stages,
            classes,
            dropout,
        } = c;
        let mut p = ParamFactory::new(init, device);
        let c0 = stages.first().copied().unwrap_or(1);
        let stem = p.conv2d("stem", input[0], c0, 3, false);
        let stem_bn = p.batch_norm("stem_bn", c0);
        let blocks = blocks(input, stages)
            .iter()
            .enumerate()
            .map(|(i, &(ci, co, _, _))| {
                let (ci, co) = (ci as usize, co as usize);
                let name = format!("blocks.{i}");
                let conv1 = p.conv2d(&format!("{name}.conv1"), ci, co, 3, false);
                let bn1 = p.batch_norm(&format!("{name}.bn1"), co);
                let conv2 = p.conv2d(&format!("{name}.conv2"), co, co, 3, false);
                let bn2 = p.batch_norm(&format!("{name}.bn2"), co);
                let shortcut = (ci != co).then(|| {
                    (
                        p.conv2d(&format!("{name}.shortcut"), ci, co, 1, false),
                        p.batch_norm(&format!("{name}.shortcut_bn"), co),
                    )
                });
                BasicBlock {
                    pool: i > 0,
                    conv1,
                    bn1,
                    conv2,
                    bn2,
                    shortcut,
                }
            })
            .collect();
        let last = stages.last().copied().unwrap_or(c0);
        let classifier = p.linear(
            "classifier",
            last,
            classes,
            (1.0 / last as f64).sqrt(),
            true,
        );
        Self {
            stem,
            stem_bn,
            blocks,
            classifier,
            dropout: DropoutConfig::new(dropout).init(),
        }
    }
}

impl ImageClassifier for ResNet {
    fn classify_images(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::SeededInit;
    use crate::test_util::count_params;
    use scalelab_spec::family::resnet::*;

    /// A ResNet's shape without dropout.
    fn shape(input: [usize; 3], stages: &[usize], classes: usize) -> ResnetConfig {
        ResnetConfig {
            input,
            stages: stages.to_vec(),
            classes,
            dropout: 0.0,
        }
    }

    /// Multiply-adds counted convolution by convolution, output position by position.
    fn brute_force_macs(input: [usize; 3], stages: &[usize], classes: usize) -> u64 {
        let conv = |h: usize, w: usize, taps: usize, ci: usize, co: usize| {
            let mut macs = 0u64;
            for _ in 0..h * w * co {
                macs += (taps * ci) as u64;
            }
            macs
        };
        let (mut h, mut w) = (input[1], input[2]);
        let mut macs = conv(h, w, 9, input[0], stages[0]);
        let mut c = stages[0];
        for (i, &s) in stages.iter().enumerate() {
            if i > 0 {
                (h, w) = (h / 2, w / 2);
            }
            macs += conv(h, w, 9, c, s) + conv(h, w, 9, s, s);
            if c != s {
                macs += conv(h, w, 1, c, s);
            }
            c = s;
        }
        macs + (c * classes) as u64
    }

    #[test]
    fn counts_match_the_built_model_and_brute_force() {
        // On an autodiff device, where running statistics are told apart from parameters.
        let device = Device::default().autodiff();
        for (input, stages) in [
            ([1, 8, 8], vec![4]),
            ([1, 9, 7], vec![3, 6]),
            ([3, 8, 8], vec![2, 4, 8]),
        ] {
            let model = ResNet::init(&shape(input, &stages, 5), &mut SeededInit::new(0), &device);
            assert_eq!(
                count_params(&model),
                resnet_param_counts(input, &stages, 5).total,
                "{input:?} {stages:?}"
            );
            assert_eq!(
                resnet_flops_per_sample(input, &stages, 5),
                6.0 * brute_force_macs(input, &stages, 5) as f64
            );
            let x = Tensor::<4>::zeros([2, input[0], input[1], input[2]], &device);
            assert_eq!(model.forward(x).dims(), [2, 5]);
        }
        // resnet-small on MNIST, by hand: stem 9·16 + 32; block 0 (16→16): 2·(9·256 + 32);
        // block 1 (16→32): 9·512 + 64 + 9·1024 + 64 + 512 + 64; classifier 32·10 + 10.
        let expected = (144 + 32) + 2 * (2304 + 32) + (4608 + 64 + 9216 + 64 + 512 + 64) + 330;
        assert_eq!(
            resnet_param_counts([1, 28, 28], &[16, 32], 10).total,
            expected
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        // Batch norm in training mode normalises with the batch's own statistics; the finite
        // differences are taken through the same training-mode forward pass.
        let input: Vec<f32> = (0..3 * 2 * 6 * 6)
            .map(|i| ((i as f32) * 0.77).sin())
            .collect();
        crate::test_util::gradient_check(
            |init, device| ResNet::init(&shape([2, 6, 6], &[3, 4], 3), init, device),
            |model, x| model.forward(x),
            ([3, 2, 6, 6], input),
            5,
        );
    }
}
