//! GPT: a decoder-only Transformer language model (Radford et al. 2019, "Language Models are
//! Unsupervised Multitask Learners"), in the shape nanoGPT uses: learned token and position
//! embeddings, pre-LayerNorm blocks of causal self-attention and a GELU MLP, a final
//! LayerNorm and a linear head, optionally tied to the token embedding.
//!
//! Read top to bottom: cost accounting (parameters, FLOPs), initialisation, the block, the
//! model. Shapes are noted as `[B, T, d]`: batch, time (context), width; `nh` heads of `hs`.
//! Training code lives in `scalelab-train`; this file only builds and runs the model.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, Linear};
use burn::tensor::{Device, Int, Tensor};
use scalelab_spec::LmConfig;

use crate::init::{InitKind, ParamFactory, WeightInit};
use crate::registry::{FamilyModel, LanguageModel};
use scalelab_kernels::{
    causal_self_attention, cross_entropy, gelu, layer_norm, linear, linear_add, matmul,
    self_attention,
};

// Cost accounting lives with the shapes: `scalelab_spec::family::gpt`.

/// Mean cross-entropy in nats, `[1]`, of `logits` `[B, T, V]` against `targets` `[B, T]` at
/// positions `start..T` (every language model's loss).
pub(crate) fn next_token_loss(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    start: usize,
) -> Tensor<1> {
    let [b, t, _] = logits.dims();
    let (mut logits, mut targets) = (logits, targets);
    if start > 0 {
        logits = logits.narrow(1, start, t - start); // [B, T - start, V]
        targets = targets.narrow(1, start, t - start); // [B, T - start]
    }
    let [_, n, v] = logits.dims();
    cross_entropy(logits.reshape([b * n, v]), targets.reshape([b * n]))
}

// ---------------------------------------------------------------------------------------------
// The model.
// ---------------------------------------------------------------------------------------------

/// One pre-LayerNorm Transformer block: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
#[derive(Module, Debug)]
pub struct Block {
    ln1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ln2: LayerNorm,
    fc: Linear,
    fc_proj: Linear,
    dropout: Dropout,
    n_heads: usize,
}

impl Block {
    /// A block of width `d`, MLP width `f` and `n_heads` heads: weights N(0, std²), the two
    /// residual projections N(0, residual_std²), zero biases, unit norms.
    #[allow(clippy::too_many_arguments, reason = "the shape of the block, named")]
    pub(crate) fn new(
        p: &mut ParamFactory,
        name: &str,
        d: usize,
        f: usize,
        n_heads: usize,
        dropout: f64,
        std: f64,
        residual_std: f64,
    ) -> Self {
        Block {
            ln1: p.layer_norm(&format!("{name}.ln1"), d),
            qkv: p.linear(&format!("{name}.qkv"), d, 3 * d, std, true),
            proj: p.linear(&format!("{name}.proj"), d, d, residual_std, true),
            ln2: p.layer_norm(&format!("{name}.ln2"), d),
            fc: p.linear(&format!("{name}.fc"), d, f, std, true),
            fc_proj: p.linear(&format!("{name}.fc_proj"), f, d, residual_std, true),
            dropout: DropoutConfig::new(dropout).init(),
            n_heads,
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_with(x, None, true)
    }

    /// The block with each sequence's keys after its length (`key_lengths`, when given) hidden
    /// as padding, and causal or bidirectional attention.
    pub(crate) fn forward_with(
        &self,
        x: Tensor<3>,
        key_lengths: Option<&[usize]>,
        is_causal: bool,
    ) -> Tensor<3> {
        self.forward_observed(x, key_lengths, is_causal, &mut |_, _| {})
    }

    /// [`forward_with`](Self::forward_with), showing `observe` the input `[B·T, in]` of each of
    /// its linear layers by the layer's name (`qkv`, `proj`, `fc`, `fc_proj`): what Wanda's
    /// calibration measures.
    pub(crate) fn forward_observed(
        &self,
        x: Tensor<3>,
        key_lengths: Option<&[usize]>,
        is_causal: bool,
        observe: &mut dyn FnMut(&'static str, &Tensor<2>),
    ) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let nh = self.n_heads;
        // The linear layers see the batch as one [B·T, ·] matrix: one large GEMM each, which
        // the CPU backend splits across cores, instead of B small ones.
        let x = x.reshape([b * t, d]); // [B·T, d]

        // Causal self-attention.
        let normed = layer_norm(x.clone(), &self.ln1); // [B·T, d]
        observe("qkv", &normed);
        let qkv = linear(normed, &self.qkv); // [B·T, 3d]
        let y = match key_lengths {
            // The common case, fused on the CPU backend (`scalelab-kernels`).
            None if is_causal => causal_self_attention(qkv, b, nh), // [B·T, d]
            None => self_attention(qkv, &vec![t; b], nh, is_causal), // [B·T, d]
            Some(lengths) => self_attention(qkv, lengths, nh, is_causal), // [B·T, d]
        };
        observe("proj", &y);
        let x = self.residual(x, y, &self.proj); // [B·T, d]

        // MLP.
        let normed = layer_norm(x.clone(), &self.ln2); // [B·T, d]
        observe("fc", &normed);
        let h = gelu(linear(normed, &self.fc)); // [B·T, d_ff]
        observe("fc_proj", &h);
        let x = self.residual(x, h, &self.fc_proj); // [B·T, d]
        x.reshape([b, t, d])
    }

    /// `x + dropout(layer(y))`: without dropout one fused operation (`scalelab-kernels`).
    fn residual(&self, x: Tensor<2>, y: Tensor<2>, layer: &Linear) -> Tensor<2> {
        if self.dropout.prob == 0.0 {
            linear_add(x, y, layer)
        } else {
            x + self.dropout.forward(linear(y, layer))
        }
    }
}

/// A GPT language model.
#[derive(Module, Debug)]
pub struct Gpt {
    token_embedding: Embedding,
    position_embedding: Embedding,
    /// One block per layer, or one block run at every layer (cross-layer sharing).
    blocks: Vec<Block>,
    /// Layers the blocks run as: `blocks.len()`, or more when one block is shared.
    n_layers: usize,
    ln_f: LayerNorm,
    /// `None` when the head is tied to the token embedding.
    head: Option<Linear>,
    dropout: Dropout,
}

impl Gpt {
    /// Next-token logits for every position of `tokens` `[B, T]` → `[B, T, V]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let mut x = self.dropout.forward(self.embed(tokens)); // [B, T, d]
        for layer in 0..self.n_layers {
            // Shared: the one block at every layer.
            x = self.blocks[layer % self.blocks.len()].forward(x); // [B, T, d]
        }
        let x = layer_norm(x, &self.ln_f); // [B, T, d]
        match &self.head {
            Some(head) => linear(x, head), // [B, T, V]
            // Tied: multiply by the token embedding transposed, [V, d] → [d, V].
            None => matmul(x, self.token_embedding.weight.val().transpose()),
        }
    }

    /// Token plus position embeddings of `tokens` `[B, T]` → `[B, T, d]`.
    fn embed(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [_, t] = tokens.dims();
        let device = tokens.device();
        let positions = Tensor::<1, Int>::arange(0..t as i64, &device).reshape([1, t]); // [1, T]
        self.token_embedding.forward(tokens) // [B, T, d]
            + self.position_embedding.forward(positions) // [1, T, d], broadcast over B
    }

    /// The L2 norm over every position of `tokens` `[B, T]` of each input feature of each
    /// block's linear layers, keyed by the layer's weight name (`blocks.0.qkv.weight`; a block
    /// shared by several layers sums its inputs at all of them): Wanda's `‖X_j‖` (Sun et al.
    /// 2023).
    pub fn input_norms(&self, tokens: Tensor<2, Int>) -> Vec<(String, Vec<f32>)> {
        let mut x = self.embed(tokens); // [B, T, d]
        let mut sums: Vec<(String, Vec<f32>)> = Vec::new();
        for layer in 0..self.n_layers {
            let index = layer % self.blocks.len();
            let mut observe = |name: &'static str, input: &Tensor<2>| {
                let squares = input.clone().square().sum_dim(0); // [1, in]
                let values = squares
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap_or_default();
                let key = format!("blocks.{index}.{name}.weight");
                match sums.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, acc)) => acc.iter_mut().zip(&values).for_each(|(a, v)| *a += v),
                    None => sums.push((key, values)),
                }
            };
            x = self.blocks[index].forward_observed(x, None, true, &mut observe);
        }
        for (_, acc) in &mut sums {
            acc.iter_mut().for_each(|a| *a = a.sqrt());
        }
        sums
    }

    /// Mean next-token cross-entropy in nats, `[1]`, of `tokens` `[B, T]` against `targets` `[B, T]`.
    pub fn loss(&self, tokens: Tensor<2, Int>, targets: Tensor<2, Int>) -> Tensor<1> {
        self.loss_from(tokens, targets, 0)
    }
}

/// The LoRA targets of a stack of Transformer [`Block`]s (the GPT's and the encoder's).
pub(crate) const BLOCK_LORA_TARGETS: &[(&str, &str)] = &[
    ("attn", r"^blocks\.\d+\.(qkv|proj)\.weight$"),
    ("mlp", r"^blocks\.\d+\.(fc|fc_proj)\.weight$"),
];

impl FamilyModel for Gpt {
    type Shape = LmConfig;
    const HEAD: &'static str = "head";
    const INPUT: &'static [&'static str] = &["token_embedding", "position_embedding"];
    const LAYERS: &'static str = "blocks";
    const LORA_TARGETS: &'static [(&'static str, &'static str)] = BLOCK_LORA_TARGETS;

    /// Builds a GPT with GPT-2/nanoGPT initialisation: weights from N(0, 0.02), the two residual
    /// projections of each block from N(0, 0.02/sqrt(2·n_layers)), zero biases, unit norms.
    fn init(config: &LmConfig, init: &mut dyn WeightInit, device: &Device) -> Self {
        const STD: f64 = 0.02;
        let residual_std = STD / (2.0 * config.n_layers as f64).sqrt();
        let (d, f) = (config.d_model, config.d_ff);
        let mut p = ParamFactory::new(init, device);
        let token_embedding = Embedding {
            weight: p.param(
                "token_embedding.weight",
                [config.vocab_size, d],
                InitKind::Normal { std: STD },
            ),
        };
        let position_embedding = Embedding {
            weight: p.param(
                "position_embedding.weight",
                [config.ctx_len, d],
                InitKind::Normal { std: STD },
            ),
        };
        // With cross-layer sharing (ALBERT, Lan et al. 2020) one block serves every layer.
        let distinct = if config.share_layers {
            1
        } else {
            config.n_layers
        };
        let blocks = (0..distinct)
            .map(|i| {
                Block::new(
                    &mut p,
                    &format!("blocks.{i}"),
                    d,
                    f,
                    config.n_heads,
                    config.dropout,
                    STD,
                    residual_std,
                )
            })
            .collect();
        let ln_f = p.layer_norm("ln_f", d);
        let head =
            (!config.tie_embeddings).then(|| p.linear("head", d, config.vocab_size, STD, false));
        Self {
            token_embedding,
            position_embedding,
            blocks,
            n_layers: config.n_layers,
            ln_f,
            head,
            dropout: DropoutConfig::new(config.dropout).init(),
        }
    }
}

impl LanguageModel for Gpt {
    fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.forward(tokens)
    }

    fn input_norms(&self, tokens: Tensor<2, Int>) -> Option<Vec<(String, Vec<f32>)>> {
        Some(Gpt::input_norms(self, tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::{FormulaInit, SeededInit};
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::TensorData;
    use scalelab_spec::{GptPreset, LmSpec};

    /// Walks the module and calls `f(top-level field name, rank, element count)` per parameter.
    fn for_each_param(model: &Gpt, f: &mut dyn FnMut(&str, usize, u64)) {
        struct Walk<'a> {
            path: Vec<String>,
            f: &'a mut dyn FnMut(&str, usize, u64),
        }
        impl ModuleVisitor for Walk<'_> {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.path.push(name.to_string());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let n = param.val().shape().num_elements() as u64;
                let top = self.path.first().map(String::as_str).unwrap_or("");
                (self.f)(top, D, n);
            }
        }
        model.visit(&mut Walk {
            path: Vec::new(),
            f,
        });
    }

    /// Counts every parameter tensor's elements, split by where they sit: (total, embedding).
    fn brute_force_counts(model: &Gpt) -> (u64, u64) {
        let (mut total, mut embedding) = (0, 0);
        for_each_param(model, &mut |top, _, n| {
            total += n;
            if matches!(top, "token_embedding" | "position_embedding" | "head") {
                embedding += n;
            }
        });
        (total, embedding)
    }

    fn config(spec: LmSpec, vocab: usize) -> LmConfig {
        spec.resolve(vocab).unwrap()
    }

    /// A GPT whose four layers share one block has the parameters of the one-layer GPT of the
    /// same width and the training FLOPs of the four-layer one; its logits are those of the
    /// unshared four-layer GPT whose blocks all hold the shared block's weights.
    #[test]
    fn shared_layers_count_one_block_and_compute_all() {
        let device = Device::flex();
        let shared = config(
            LmSpec {
                share_layers: true,
                ..LmSpec::with_depth(4)
            },
            256,
        );
        let one = LmConfig {
            n_layers: 1,
            share_layers: false,
            ..shared.clone()
        };
        let four = LmConfig {
            share_layers: false,
            ..shared.clone()
        };
        assert_eq!(shared.param_counts(), one.param_counts());
        assert_eq!(shared.flops_per_token(), four.flops_per_token());
        let model = Gpt::init(&shared, &mut SeededInit::new(0), &device);
        assert_eq!(model.blocks.len(), 1);
        let mut unshared = Gpt::init(&four, &mut SeededInit::new(1), &device);
        let block = model.blocks[0].clone();
        unshared.blocks = vec![block.clone(), block.clone(), block.clone(), block];
        unshared.token_embedding = model.token_embedding.clone();
        unshared.position_embedding = model.position_embedding.clone();
        unshared.ln_f = model.ln_f.clone();
        unshared.head = model.head.clone();
        let tokens = Tensor::<2, Int>::from_data(
            TensorData::new(vec![1i64, 5, 9, 200, 3, 7], [1, 6]),
            &device,
        );
        let a = model.forward(tokens.clone()).into_data().convert::<f32>();
        let b = unshared.forward(tokens).into_data().convert::<f32>();
        assert_eq!(a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
    }

    #[test]
    fn param_counts_match_brute_force() {
        let device = Device::flex();
        let shapes = [
            config(LmSpec::with_preset(GptPreset::Nano), 256),
            config(LmSpec::with_depth(1), 300),
            config(
                LmSpec {
                    tie_embeddings: true,
                    d_ff: Some(100),
                    ctx_len: 17,
                    ..LmSpec::with_preset(GptPreset::Micro)
                },
                1000,
            ),
            // Cross-layer sharing: one block's parameters for four layers.
            config(
                LmSpec {
                    share_layers: true,
                    ..LmSpec::with_depth(4)
                },
                256,
            ),
        ];
        for c in shapes {
            let model = Gpt::init(&c, &mut SeededInit::new(0), &device);
            let counts = c.param_counts();
            let (total, embedding) = brute_force_counts(&model);
            assert_eq!(counts.total, total, "{c:?}");
            assert_eq!(counts.total, model.num_params() as u64, "{c:?}");
            assert_eq!(counts.embedding, embedding, "{c:?}");
            assert_eq!(counts.total, counts.non_embedding + counts.embedding);
        }
    }

    #[test]
    fn gpt2_small_has_124m_parameters() {
        // GPT-2 small, tied head, 50257 tokens, 1024 positions: 124,439,808 parameters
        // (nanoGPT prints "number of parameters: 123.65M" after subtracting the 786,432
        // position-embedding weights: 124,439,808 − 786,432 = 123,653,376).
        let c = config(
            LmSpec {
                tie_embeddings: true,
                ctx_len: 1024,
                ..LmSpec::with_preset(GptPreset::Gpt2Small)
            },
            50257,
        );
        let counts = c.param_counts();
        assert_eq!(counts.total, 124_439_808);
        assert_eq!(counts.total - 1024 * 768, 123_653_376);
        // Kaplan's approximation N ≈ 12·L·d² = 84,934,656 ignores biases and norms.
        assert_eq!(counts.non_embedding, 85_056_000);
    }

    #[test]
    fn flops_follow_from_matmul_shapes() {
        // Count matrix products independently, from the weights the model actually holds:
        // every rank-2 parameter except the two embedding tables, plus the tied head.
        let device = Device::flex();
        for tie in [false, true] {
            let c = config(
                LmSpec {
                    tie_embeddings: tie,
                    ..LmSpec::with_preset(GptPreset::Nano)
                },
                256,
            );
            let model = Gpt::init(&c, &mut SeededInit::new(0), &device);
            let mut matmul_weights = 0;
            for_each_param(&model, &mut |top, rank, n| {
                if rank == 2 && !top.ends_with("embedding") {
                    matmul_weights += n;
                }
            });
            let matmul = matmul_weights
                + if tie {
                    (c.vocab_size * c.d_model) as u64
                } else {
                    0
                };
            let attention = 12 * c.n_layers * c.ctx_len * c.d_model;
            assert_eq!(c.flops_per_token(), (6 * matmul) as f64 + attention as f64);
        }
        // By hand for nano (L2, d64, V256, T256): matmul weights 2·(4·64² + 2·64·256) + 64·256
        // = 2·49152 + 16384 = 114688; 6·114688 + 12·2·256·64 = 688128 + 393216 = 1081344.
        let c = config(LmSpec::with_preset(GptPreset::Nano), 256);
        assert_eq!(c.flops_per_token(), 1_081_344.0);
    }

    #[test]
    fn initialisation_statistics() {
        let device = Device::flex();
        let c = config(LmSpec::with_preset(GptPreset::Micro), 256);
        let model = Gpt::init(&c, &mut SeededInit::new(7), &device);
        let std = |t: Tensor<2>| {
            let v: Vec<f32> = t.into_data().try_to_vec::<f32>().unwrap();
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
            (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        let qkv = std(model.blocks[0].qkv.weight.val());
        let proj = std(model.blocks[0].proj.weight.val());
        assert!((qkv - 0.02).abs() < 0.001, "{qkv}");
        // 0.02 / sqrt(2·4) = 0.00707
        assert!((proj - 0.02 / 8f64.sqrt()).abs() < 0.0005, "{proj}");
        let bias: Vec<f32> = model.blocks[0]
            .qkv
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(bias.iter().all(|&b| b == 0.0));
        // Same seed, same weights; another seed, other weights.
        let again = Gpt::init(&c, &mut SeededInit::new(7), &device);
        let other = Gpt::init(&c, &mut SeededInit::new(8), &device);
        let w = |m: &Gpt| -> Vec<f32> {
            m.blocks[0]
                .fc
                .weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(w(&model), w(&again));
        assert_ne!(w(&model), w(&other));
    }

    /// Parity with PyTorch: same weights, same batch, same loss.
    ///
    /// The weights come from `FormulaInit` (value i of a tensor in Burn's `[in, out]` layout is
    /// `scale · sin(0.37·i + 0.11·k)`, k the tensor's index in creation order, scale 0.02,
    /// ones for norm gains and zeros for biases), so Python can rebuild them without sharing a
    /// random generator. Reference produced with PyTorch 2.15.0, fp32, CPU, by
    /// `crates/models/tests/gpt_reference.py`:
    ///
    /// ```text
    /// python3 crates/models/tests/gpt_reference.py
    /// ```
    #[test]
    fn loss_matches_pytorch_reference() {
        for (tie, expected) in [(false, REFERENCE_LOSS_UNTIED), (true, REFERENCE_LOSS_TIED)] {
            let c = LmConfig {
                n_layers: 2,
                d_model: 32,
                n_heads: 4,
                d_ff: 128,
                ctx_len: 16,
                vocab_size: 50,
                dropout: 0.0,
                tie_embeddings: tie,
                share_layers: false,
                family: Default::default(),
            };
            let device = Device::flex();
            let model = Gpt::init(&c, &mut FormulaInit::new(0.3), &device);
            let (b, t) = (3, 16);
            let tokens: Vec<i64> = (0..b * t).map(|i| ((i * 7 + 3) % 50) as i64).collect();
            let targets: Vec<i64> = (0..b * t).map(|i| ((i * 11 + 5) % 50) as i64).collect();
            let x = Tensor::<2, Int>::from_data(TensorData::new(tokens, [b, t]), &device);
            let y = Tensor::<2, Int>::from_data(TensorData::new(targets, [b, t]), &device);
            let loss: f32 = model.loss(x.clone(), y.clone()).into_scalar();
            assert!(
                (loss as f64 - expected).abs() < 1e-4,
                "tied={tie}: {loss} vs {expected}"
            );
            // The autodiff device runs the same forward pass.
            let ad = Device::flex().autodiff();
            let model = Gpt::init(&c, &mut FormulaInit::new(0.3), &ad);
            let loss: f32 = model.loss(x.to_device(&ad), y.to_device(&ad)).into_scalar();
            assert!(
                (loss as f64 - expected).abs() < 1e-4,
                "autodiff tied={tie}: {loss}"
            );
        }
    }

    // Printed by crates/models/tests/gpt_reference.py (PyTorch 2.15.0): "tie=False loss=8.7119379",
    // "tie=True loss=8.3502131".
    const REFERENCE_LOSS_UNTIED: f64 = 8.7119379;
    const REFERENCE_LOSS_TIED: f64 = 8.3502131;
}
