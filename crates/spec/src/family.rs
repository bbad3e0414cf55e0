//! The one registry of model families, and each family's cost accounting from its shape
//! alone: exact trainable parameters in both conventions and training FLOPs.
//!
//! A family is a line of [`Family`] and two files: `family/<name>.rs` here (its resolved
//! shape, which implements [`Shape`]: parameter counts, FLOPs, a description; no tensor
//! library, so that planning a study, checking a budget and reporting need no Burn) and
//! `<name>.rs` in `scalelab-models` (its Burn modules, built from that shape through the
//! models crate's `Family` trait; its tests check the counts here against the built model's
//! parameters). The match from a resolved shape to its family's code is written once:
//! [`ClassifierConfig::shape`] here, and the models crate's registry for the modules.

pub mod cnn;
pub mod encoder;
pub mod gpt;
pub mod mlp;
pub mod resnet;
pub mod rnn;

use crate::{
    Budget, ClassifierConfig, ClassifyConfig, LmConfig, ParamCounts, RnnCell, RunConfig,
    SampleBudget,
};

pub use cnn::CnnConfig;
pub use encoder::EncoderConfig;
pub use gpt::LM_FLOPS_CONVENTION;
pub use mlp::MlpConfig;
pub use resnet::ResnetConfig;
pub use rnn::RnnConfig;

crate::named! {
    /// Every model family scalelab builds, by the name specs write (`model.family`). What
    /// each trains for is [`Family::purposes`].
    #[derive(Default)]
    pub enum Family under "model.family" {
        /// The decoder-only Transformer (GPT-2's shape): language models.
        #[default]
        Gpt = "gpt",
        /// Stacked LSTM layers: language models and text classifiers.
        Lstm = "lstm",
        /// Stacked GRU layers: language models and text classifiers.
        Gru = "gru",
        /// Multilayer perceptron: image classifiers.
        Mlp = "mlp",
        /// VGG-style CNN: image classifiers.
        Cnn = "cnn",
        /// ResNet-style CNN with batch norm: image classifiers.
        Resnet = "resnet",
        /// Bidirectional Transformer encoder (BERT-style): text classifiers and taggers.
        Encoder = "encoder",
    }
}

/// What a model of a family can be trained as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A language model (`scalelab train`, scaling studies).
    LanguageModel,
    /// A classifier of images (`scalelab classify` on digits, MNIST, Fashion-MNIST).
    ImageClassifier,
    /// A classifier or tagger of token sequences (`scalelab classify` on text sets).
    TextClassifier,
}

impl Family {
    /// What this family trains as.
    pub fn purposes(self) -> &'static [Purpose] {
        use Purpose::*;
        match self {
            Family::Gpt => &[LanguageModel, TextClassifier],
            Family::Lstm | Family::Gru => &[LanguageModel, TextClassifier],
            Family::Mlp | Family::Cnn | Family::Resnet => &[ImageClassifier],
            Family::Encoder => &[TextClassifier],
        }
    }

    /// Whether a model of this family can be trained as `purpose`.
    pub fn serves(self, purpose: Purpose) -> bool {
        self.purposes().contains(&purpose)
    }

    /// The families that serve `purpose`, as a hint lists them.
    pub fn serving(purpose: Purpose) -> String {
        use crate::names::Named;
        let names: Vec<&str> = Self::ALL
            .iter()
            .filter(|f| f.serves(purpose))
            .map(|f| f.name())
            .collect();
        match names.split_last() {
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    /// Whether this is the Transformer language model (the default, left out of serialised
    /// language-model configs so that run ids of GPT runs do not change).
    pub fn is_gpt(&self) -> bool {
        *self == Self::Gpt
    }

    /// The groups of weight matrices LoRA can adapt in this family (`init.lora_targets`),
    /// all of them by default; the output layer is never one (as PEFT's `all-linear`
    /// leaves it out). The ResNet has none: its weights are convolution kernels.
    pub fn lora_targets(self) -> &'static [&'static str] {
        match self {
            Family::Gpt | Family::Encoder => &["attn", "mlp"],
            Family::Lstm | Family::Gru => &["input", "recurrent"],
            Family::Mlp => &["hidden"],
            Family::Cnn => &["fc"],
            Family::Resnet => &[],
        }
    }

    /// The recurrent cell of the LSTM and GRU families.
    pub fn rnn_cell(self) -> Option<RnnCell> {
        match self {
            Family::Lstm => Some(RnnCell::Lstm),
            Family::Gru => Some(RnnCell::Gru),
            _ => None,
        }
    }
}

impl RnnCell {
    /// The family of a recurrent model with this cell.
    pub fn family(self) -> Family {
        match self {
            RnnCell::Lstm => Family::Lstm,
            RnnCell::Gru => Family::Gru,
        }
    }
}

impl Purpose {
    /// What a spec asking a `family` that cannot serve this purpose is told: the one message
    /// of that refusal, wherever it is found.
    pub fn refuse(self, family: Family) -> crate::SpecError {
        let hint = match self {
            Purpose::LanguageModel => format!(
                "a language model is a {} (gpt is the default)",
                Family::serving(self)
            ),
            Purpose::ImageClassifier => {
                format!("the data set is images: use {}", Family::serving(self))
            }
            Purpose::TextClassifier => {
                format!("the data set is text: use {}", Family::serving(self))
            }
        };
        crate::SpecError::invalid("model.family", family, hint)
    }
}

/// What every family's resolved shape answers, without building a model.
pub trait Shape {
    /// Its family.
    fn family(&self) -> Family;
    /// Exact trainable parameters, in both conventions.
    fn param_counts(&self) -> ParamCounts;
    /// Training FLOPs (forward and backward) per example: per token of a language model,
    /// per sample of a classifier.
    fn flops_per_example(&self) -> f64;
    /// A short description, e.g. `mlp 784-256-256-10`.
    fn describe(&self) -> String;
}

impl Shape for LmConfig {
    fn family(&self) -> Family {
        self.family
    }

    fn param_counts(&self) -> ParamCounts {
        LmConfig::param_counts(self)
    }

    fn flops_per_example(&self) -> f64 {
        self.flops_per_token()
    }

    fn describe(&self) -> String {
        LmConfig::describe(self)
    }
}

impl ClassifierConfig {
    /// The family's shape: the one match from a resolved classifier to its family's file.
    pub fn shape(&self) -> &dyn Shape {
        match self {
            ClassifierConfig::Mlp(c) => c,
            ClassifierConfig::Cnn(c) => c,
            ClassifierConfig::Resnet(c) => c,
            ClassifierConfig::Rnn(c) => c,
            ClassifierConfig::Encoder(c) | ClassifierConfig::Gpt(c) => c,
        }
    }

    /// Its family.
    pub fn family(&self) -> Family {
        self.shape().family()
    }

    /// Exact parameter counts of this classifier.
    pub fn param_counts(&self) -> ParamCounts {
        self.shape().param_counts()
    }

    /// Training FLOPs per sample ([`FlopsConvention::SixForwardMacsPerSample`](crate::FlopsConvention)).
    pub fn flops_per_sample(&self) -> f64 {
        self.shape().flops_per_example()
    }

    /// A short description, e.g. `mlp 784-256-256-10`.
    pub fn describe(&self) -> String {
        self.shape().describe()
    }
}

impl LmConfig {
    /// A short label of the shape: `GPT 4L d128 4h`, `LSTM 2L d64`.
    pub fn label(&self) -> String {
        match self.family.rnn_cell() {
            None => format!(
                "GPT {}L{} d{} {}h",
                self.n_layers,
                if self.share_layers { " shared" } else { "" },
                self.d_model,
                self.n_heads
            ),
            Some(cell) => format!("{} {}L d{}", cell.name(), self.n_layers, self.d_model),
        }
    }

    /// The whole shape in words.
    pub fn describe(&self) -> String {
        match self.family.rnn_cell() {
            None => format!(
                "{} layers, d_model {}, {} heads of {}, d_ff {}, ctx {}, vocab {}{}",
                self.n_layers,
                self.d_model,
                self.n_heads,
                self.head_dim(),
                self.d_ff,
                self.ctx_len,
                self.vocab_size,
                match (self.tie_embeddings, self.share_layers) {
                    (true, true) => ", tied head, one block shared by all layers",
                    (true, false) => ", tied head",
                    (false, true) => ", one block shared by all layers",
                    (false, false) => "",
                }
            ),
            Some(cell) => format!(
                "{} of {} layers × {} units (embedding {}), ctx {}, vocab {}, untied head",
                cell.name(),
                self.n_layers,
                self.d_model,
                self.d_model,
                self.ctx_len,
                self.vocab_size
            ),
        }
    }

    /// How [`flops_per_token`](Self::flops_per_token) counts, in a formula.
    pub fn flops_formula(&self) -> &'static str {
        match self.family.rnn_cell() {
            None => "6·N_matmul + 12·L·T·d",
            Some(_) => "6·(gate and head matrices)",
        }
    }

    /// Exact parameter counts of this language model, whatever its family.
    pub fn param_counts(&self) -> ParamCounts {
        match self.family.rnn_cell() {
            None => gpt::gpt_param_counts(self),
            Some(cell) => rnn::rnn_lm_param_counts(cell, self),
        }
    }

    /// Training FLOPs per token under [`LM_FLOPS_CONVENTION`] (the recurrent models have no
    /// attention term).
    pub fn flops_per_token(&self) -> f64 {
        match self.family.rnn_cell() {
            None => gpt::gpt_flops_per_token(self),
            Some(cell) => rnn::rnn_lm_flops_per_token(cell, self),
        }
    }

    /// Forward FLOPs per token of inference under the same convention: a third of the
    /// training count (forward, not forward and backward), less 2 for each of `pruned` zeroed
    /// weights of its matrices (a multiply-add a sparse kernel skips).
    pub fn inference_flops_per_token(&self, pruned: u64) -> f64 {
        self.flops_per_token() / 3.0 - 2.0 * pruned as f64
    }

    /// Peak resident memory, in bytes, of training this GPT on micro-batches of `batch`
    /// sequences on the CPU, estimated (none for the recurrent families, whose memory is not
    /// modelled): 130 MB for the program and its corpus, 16 bytes a parameter (f32 weights,
    /// gradients and Adam's two moments), 4·B·T·L·(21·d + 1.75·h·T) bytes of activations kept
    /// for the backward pass (the `h·T` term: attention scores and probabilities), and 12
    /// bytes a logit. The constants were fitted to the peak memory of six runs from 84k to
    /// 86M parameters (README, "Reliability"), which the estimate meets within 3% for the
    /// four largest (40% high for one small run); on two shapes left out of the fit it was
    /// 23% high and 7% low.
    pub fn training_memory_bytes(&self, batch: usize) -> Option<f64> {
        if self.family.rnn_cell().is_some() {
            return None;
        }
        let (b, t, l, d, h, v) = (
            batch as f64,
            self.ctx_len as f64,
            self.n_layers as f64,
            self.d_model as f64,
            self.n_heads as f64,
            self.vocab_size as f64,
        );
        let n = self.param_counts().total as f64;
        let activations = 4.0 * b * t * l * (21.0 * d + 1.75 * h * t);
        Some(130e6 + 16.0 * n + activations + 12.0 * b * t * v)
    }
}

impl RunConfig {
    /// `(optimiser steps, tokens per step)` of this run: its budget (tokens, or FLOPs at
    /// [`LmConfig::flops_per_token`]) rounded up to whole steps, at least one.
    pub fn planned_steps(&self) -> (u64, u64) {
        let t = &self.train;
        let tokens_per_step = (t.batch_size * t.grad_accum * self.model.ctx_len) as u64;
        let budget_tokens = match t.budget {
            Budget::Tokens(tokens) => tokens,
            Budget::Flops(flops) => (flops / self.model.flops_per_token()) as u64,
        };
        (
            budget_tokens.div_ceil(tokens_per_step).max(1),
            tokens_per_step,
        )
    }
}

impl ClassifyConfig {
    /// `(optimiser steps, samples per step)` of this run: its budget (samples, or FLOPs at
    /// [`ClassifierConfig::flops_per_sample`]) rounded up to whole steps, at least one.
    pub fn planned_steps(&self) -> (u64, u64) {
        let batch = self.train.batch_size as u64;
        let samples = match self.train.budget {
            SampleBudget::Samples(s) => s,
            SampleBudget::Flops(f) => (f / self.model.flops_per_sample()) as u64,
        };
        (samples.div_ceil(batch).max(1), batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClassifySpec, InputShape, run_id};

    /// The memory estimate by hand: a 1-layer d64 GPT (83,904 parameters) at batch 16 of 16
    /// tokens is 130e6 + 16·83,904 + 4·16·16·1·(21·64 + 1.75·1·16) + 12·16·16·256 bytes.
    #[test]
    fn the_training_memory_estimate_adds_what_it_says() {
        let spec = crate::LmSpec {
            preset: None,
            depth: None,
            n_layers: Some(1),
            d_model: Some(64),
            n_heads: Some(1),
            ctx_len: 16,
            ..crate::LmSpec::default()
        };
        let config = spec.resolve(256).unwrap();
        assert_eq!(config.param_counts().total, 83_904);
        let want =
            130e6 + 16.0 * 83_904.0 + 4.0 * 256.0 * (21.0 * 64.0 + 28.0) + 12.0 * 256.0 * 256.0;
        assert_eq!(config.training_memory_bytes(16), Some(want));
        let lstm = crate::LmSpec {
            family: Family::Lstm,
            ..spec
        };
        assert_eq!(lstm.resolve(256).unwrap().training_memory_bytes(16), None);
    }

    /// Run ids hash the resolved config's JSON, so the registry must write every family's
    /// config exactly as the enum of struct variants before it did.
    #[test]
    fn configs_serialise_as_before_the_registry_so_run_ids_stay() {
        // The config and id of a record that scalelab wrote before the registry (at commit
        // 7a5bfba): the `mlp` preset on digits, 20,000 samples at lr 1e-3.
        let json = r#"{"seed":0,"dataset":"digits","data_dir":null,"train_fraction":1.0,"val_fraction":0.1,"model":{"family":"mlp","inputs":64,"hidden":[256,256],"classes":10,"dropout":0.0},"train":{"batch_size":64,"lr":0.001,"budget":{"samples":20000},"warmup_fraction":0.02,"min_lr_ratio":0.0,"weight_decay":0.0,"l1":0.0,"l2":0.0,"eval_every_samples":0,"early_stopping_patience":0},"augment":{"shift_pixels":0.0,"rotate_degrees":0.0,"scale":0.0,"token_dropout":0.0,"token_swap":0.0},"folds":0,"fold":null}"#;
        let config: ClassifyConfig = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&config).unwrap(), json);
        assert_eq!(run_id(&config).unwrap(), "b695e8c03a54cc93");
        // The spec resolves to that very config.
        let mut spec = ClassifySpec::default();
        spec.model.preset = Some(crate::ClassifierPreset::Mlp);
        spec.train.budget_samples = Some(20_000);
        spec.train.lr = 1e-3;
        let resolved = spec
            .resolve(InputShape::Image([1, 8, 8]), 10, None)
            .unwrap();
        assert_eq!(run_id(&resolved).unwrap(), "b695e8c03a54cc93");

        // Every other family, in the field order of the variants before the registry.
        let text = InputShape::Tokens {
            vocab: 100,
            ctx: 8,
            per_token: false,
        };
        let image = InputShape::Image([1, 8, 8]);
        for (family, input, expected) in [
            (
                Family::Cnn,
                image,
                r#"{"family":"cnn","input":[1,8,8],"stages":[32,64],"fc":128,"classes":10,"dropout":0.0}"#,
            ),
            (
                Family::Resnet,
                image,
                r#"{"family":"resnet","input":[1,8,8],"stages":[16,32],"classes":10,"dropout":0.0}"#,
            ),
            (
                Family::Gru,
                text,
                r#"{"family":"rnn","cell":"gru","vocab":100,"ctx":8,"embed":64,"hidden":128,"layers":1,"classes":10,"dropout":0.0}"#,
            ),
            (
                Family::Encoder,
                text,
                r#"{"family":"encoder","vocab":100,"ctx":8,"d_model":64,"n_layers":2,"n_heads":4,"classes":10,"dropout":0.0}"#,
            ),
            (
                Family::Gpt,
                text,
                r#"{"family":"gpt","vocab":100,"ctx":8,"d_model":64,"n_layers":2,"n_heads":4,"classes":10,"dropout":0.0,"causal":true}"#,
            ),
        ] {
            let spec = crate::ClassifierSpec {
                family,
                ..Default::default()
            };
            let config = spec.resolve(input, 10).unwrap();
            assert_eq!(serde_json::to_string(&config).unwrap(), expected);
            assert_eq!(config.family(), family);
            let back: ClassifierConfig = serde_json::from_str(expected).unwrap();
            assert_eq!(back, config);
        }
    }

    #[test]
    fn every_family_serves_a_purpose_and_hints_list_them() {
        use crate::Named;
        for &family in Family::ALL {
            assert!(!family.purposes().is_empty(), "{family}");
        }
        assert_eq!(Family::serving(Purpose::LanguageModel), "gpt, lstm or gru");
        assert_eq!(
            Family::serving(Purpose::ImageClassifier),
            "mlp, cnn or resnet"
        );
        assert_eq!(
            Family::serving(Purpose::TextClassifier),
            "gpt, lstm, gru or encoder"
        );
        assert_eq!(RnnCell::Gru.family().rnn_cell(), Some(RnnCell::Gru));
    }
}
