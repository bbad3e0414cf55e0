//! The spec of one training run (model, data, optimisation, budget) and its resolved form.
//!
//! A run spec is what a user writes in TOML or sets with flags. It is checked once, here,
//! into a [`RunConfig`]: unknown keys are rejected by serde, ranges by [`RunSpec::resolve`].
//! Training length is a budget of tokens or FLOPs, never a number of steps.

use crate::compress::{DistillConfig, PruneConfig};
use serde::{Deserialize, Serialize};

use crate::init::{InitConfig, InitSpec, Parent};
use crate::{
    GptPreset, LmConfig, LmSpec, Optimiser, OptimiserKind, SpecError, TaskConfig, TaskSpec,
};

/// One training run as the user describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSpec {
    /// Seed of the weight initialisation, batch sampling and dropout.
    pub seed: u64,
    /// The model.
    pub model: LmSpec,
    /// The corpus and tokenizer.
    pub data: DataSpec,
    /// Optimisation and budget.
    pub train: TrainSpec,
    /// A synthetic task to train on (alone or mixed into the corpus) and to evaluate.
    pub task: Option<TaskSpec>,
    /// Where the weights start (a parent run) and which of them train.
    pub init: InitSpec,
    /// Where it trains. Not part of the run's identity (the same spec on another device is
    /// the same experiment); recorded in its record's `machine.backend`.
    #[serde(skip_serializing_if = "TrainDevice::is_cpu")]
    pub device: TrainDevice,
}

crate::named! {
    /// Where a run trains (`device`; `--device`).
    #[derive(Default)]
    pub enum TrainDevice under "device" {
        /// The CPU, through Burn's `flex` backend and the project's fused kernels.
        #[default]
        Cpu = "cpu",
        /// A GPU through Burn's wgpu backend (Vulkan, Metal or DirectX 12): a build with the
        /// `gpu` feature.
        Gpu = "gpu",
    }
}

impl TrainDevice {
    /// Whether it is the CPU (the default, left out of a written spec).
    pub fn is_cpu(&self) -> bool {
        *self == TrainDevice::Cpu
    }
}

impl Default for RunSpec {
    fn default() -> Self {
        Self {
            seed: 0,
            // A 0.9M-parameter GPT at context 128: the README's few-minute CPU run.
            model: LmSpec {
                ctx_len: 128,
                ..LmSpec::with_preset(GptPreset::Micro)
            },
            data: DataSpec::default(),
            train: TrainSpec::default(),
            task: None,
            init: InitSpec::default(),
            device: TrainDevice::Cpu,
        }
    }
}

crate::named! {
    /// The kinds of corpus (`data.corpus`).
    #[derive(Default)]
    pub enum CorpusKind under "data.corpus" {
        /// The corpus shipped in the binary.
        #[default]
        Embedded = "embedded",
        /// One UTF-8 file at `data.path`.
        Text = "text",
        /// Every `*.txt` file of the directory `data.path`, in name order.
        Dir = "dir",
        /// One JSON object a line at `data.path`, its text under `data.text_field`.
        Jsonl = "jsonl",
    }
}

crate::named! {
    /// The kinds of tokenizer (`data.tokenizer`).
    #[derive(Default)]
    pub enum TokenizerKind under "data.tokenizer" {
        /// One token per byte, vocabulary 256.
        #[default]
        Byte = "byte",
        /// Byte-level BPE, trained on the corpus or read from `data.tokenizer_file`.
        Bpe = "bpe",
    }
}

/// Where the text comes from and how it becomes tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSpec {
    /// Where the text comes from (see [`CorpusKind`]).
    pub corpus: CorpusKind,
    /// Path for the `text`, `dir` and `jsonl` corpora.
    pub path: Option<String>,
    /// Field holding the text in a `jsonl` corpus.
    pub text_field: String,
    /// `byte` (vocabulary 256) or `bpe`.
    pub tokenizer: TokenizerKind,
    /// Vocabulary size when a BPE tokenizer is trained on the corpus.
    pub bpe_vocab_size: usize,
    /// A Hugging Face `tokenizer.json` to load instead of training one (implies `bpe`).
    pub tokenizer_file: Option<String>,
    /// Fraction of the corpus held out for validation.
    pub val_fraction: f64,
}

impl Default for DataSpec {
    fn default() -> Self {
        Self {
            corpus: CorpusKind::Embedded,
            path: None,
            text_field: "text".to_string(),
            tokenizer: TokenizerKind::Byte,
            bpe_vocab_size: 4096,
            tokenizer_file: None,
            val_fraction: 0.05,
        }
    }
}

/// Optimisation settings and the training budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpec {
    /// Sequences in one micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed before one optimiser step.
    pub grad_accum: usize,
    /// Peak learning rate, reached at the end of warm-up.
    pub lr: f64,
    /// Final learning rate of the cosine decay, as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Fraction of the budget spent in linear warm-up.
    pub warmup_fraction: f64,
    /// Decoupled weight decay (AdamW), applied to matrices and embeddings only.
    pub weight_decay: f64,
    /// AdamW β₁.
    pub beta1: f64,
    /// AdamW β₂ (0.95 as in GPT-3 and nanoGPT).
    pub beta2: f64,
    /// AdamW ε.
    pub epsilon: f64,
    /// Clip the global gradient norm to this value; 0 disables clipping.
    pub grad_clip: f64,
    /// Training budget in tokens. Give exactly one of `budget_tokens` and `budget_flops`.
    pub budget_tokens: Option<u64>,
    /// Training budget in FLOPs (see the FLOP convention of the run record).
    pub budget_flops: Option<f64>,
    /// Evaluate on the validation sample every this many training tokens.
    pub eval_every_tokens: u64,
    /// Size of the fixed validation sample, in tokens.
    pub eval_tokens: u64,
    /// Save a checkpoint every this many training tokens (0: only at the end).
    pub checkpoint_every_tokens: u64,
    /// Also evaluate at this many log-spaced points per decade of training tokens, from the
    /// first step on (as the Pythia suite keeps checkpoints), so that abilities can be traced
    /// over training time; 0: only every `eval_every_tokens`.
    pub eval_per_decade: u32,
    /// Keep the weights at every log-spaced evaluation in `snapshots/` of the run directory.
    pub keep_snapshots: bool,
    /// The optimiser: `adamw` (default), `adam` or `sgd` (see `scalelab_spec::optim`).
    pub optimizer: OptimiserKind,
    /// SGD's momentum factor (0: plain SGD).
    pub momentum: f64,
    /// SGD with Nesterov's momentum.
    pub nesterov: bool,
    /// L1 penalty `l1 · Σ|w|` over every weight matrix and embedding (rank ≥ 2), added to
    /// the loss; 0: off.
    pub l1: f64,
    /// L2 penalty `l2/2 · Σw²` over the same tensors; 0: off.
    pub l2: f64,
    /// Stop after this many evaluations without a better validation loss, keeping the best
    /// weights (their loss is the run's final loss); 0: train the whole budget.
    pub early_stopping_patience: usize,
    /// Gradual magnitude pruning during training (Zhu & Gupta 2017) to this final sparsity of
    /// every layer's weight matrices; 0: dense.
    pub prune_sparsity: f64,
    /// Where pruning starts, as a share of the budget's tokens.
    pub prune_start: f64,
    /// Where it reaches `prune_sparsity`, as a share of the budget; training then goes on
    /// with the masks fixed.
    pub prune_end: f64,
    /// Distil from the trained language model in this directory (a run or a transformers
    /// GPT-2 directory): the loss mixes the hard labels' cross-entropy with the KL divergence
    /// from the teacher's softened predictions (Hinton et al. 2015).
    pub distill_from: Option<String>,
    /// The softmax temperature τ of distillation (the KL term is scaled by τ²).
    pub distill_temperature: f64,
    /// λ: the weight of the hard labels' loss; 1 − λ weighs the teacher's.
    pub distill_hard_weight: f64,
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            batch_size: 16,
            grad_accum: 1,
            lr: 3e-3,
            min_lr_ratio: 0.1,
            warmup_fraction: 0.05,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            epsilon: 1e-8,
            grad_clip: 1.0,
            budget_tokens: None,
            budget_flops: None,
            eval_every_tokens: 200_000,
            eval_tokens: 32_768,
            checkpoint_every_tokens: 0,
            eval_per_decade: 0,
            keep_snapshots: false,
            optimizer: OptimiserKind::AdamW,
            momentum: crate::optim::default_momentum(),
            nesterov: false,
            l1: 0.0,
            l2: 0.0,
            early_stopping_patience: 0,
            prune_sparsity: 0.0,
            prune_start: 0.1,
            prune_end: 0.7,
            distill_from: None,
            distill_temperature: 2.0,
            distill_hard_weight: 0.5,
        }
    }
}

/// A training budget: how much the run may consume.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// Train on this many tokens.
    Tokens(u64),
    /// Train until this many training FLOPs are spent.
    Flops(f64),
}

/// Where the text comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CorpusSource {
    /// The public-domain corpus embedded in the program.
    Embedded,
    /// One UTF-8 text file.
    Text {
        /// Its path.
        path: String,
    },
    /// Every `*.txt` file of a directory, in name order.
    Dir {
        /// Its path.
        path: String,
    },
    /// JSON Lines, one document a line.
    Jsonl {
        /// Its path.
        path: String,
        /// The field holding each document's text.
        text_field: String,
    },
}

/// How text becomes tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TokenizerSpec {
    /// One token per byte, vocabulary 256.
    Byte,
    /// Byte-level BPE trained on the training split with this vocabulary size.
    BpeTrain {
        /// Target vocabulary size.
        vocab_size: usize,
    },
    /// A Hugging Face `tokenizer.json` file.
    BpeFile {
        /// Its path.
        path: String,
    },
}

/// Resolved data settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Where the text comes from.
    pub source: CorpusSource,
    /// How it is tokenized.
    pub tokenizer: TokenizerSpec,
    /// Fraction held out for validation.
    pub val_fraction: f64,
}

/// Resolved optimisation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// Fraction of the budget in warm-up.
    pub warmup_fraction: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW β₁.
    pub beta1: f64,
    /// AdamW β₂.
    pub beta2: f64,
    /// AdamW ε.
    pub epsilon: f64,
    /// Global gradient-norm clip; 0 is off.
    pub grad_clip: f64,
    /// The budget.
    pub budget: Budget,
    /// Evaluation interval in tokens.
    pub eval_every_tokens: u64,
    /// Validation sample size in tokens.
    pub eval_tokens: u64,
    /// Checkpoint interval in tokens (0: at the end only).
    pub checkpoint_every_tokens: u64,
    /// Log-spaced evaluations per decade of tokens (0: none). Absent from older records.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub eval_per_decade: u32,
    /// Keep weight snapshots at the log-spaced evaluations. Absent from older records.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep_snapshots: bool,
    /// The optimiser (AdamW, the default, is left out of the serialised config).
    #[serde(default, skip_serializing_if = "Optimiser::is_default")]
    pub optimizer: Optimiser,
    /// L1 penalty coefficient (0, left out of the serialised config: off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub l1: f64,
    /// L2 penalty coefficient (0, left out: off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub l2: f64,
    /// Evaluations without improvement before stopping (0, left out: never).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub early_stopping_patience: usize,
    /// Gradual magnitude pruning (none, left out: dense).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneConfig>,
    /// Distillation from a teacher (none, left out: the hard labels alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillConfig>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Whether `v` is its type's zero: settings off by default are left out of serialised
/// configs, so that the ids of runs from before a setting existed stay the same.
pub(crate) fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A fully resolved run: everything training needs, nothing a user could set inconsistently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seed of initialisation, sampling and dropout.
    pub seed: u64,
    /// Model shape.
    pub model: LmConfig,
    /// Data settings.
    pub data: DataConfig,
    /// Optimisation settings.
    pub train: TrainConfig,
    /// The synthetic task, if any. Absent (not null) when there is none, so that the identity
    /// of text-only runs is what it was before tasks existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskConfig>,
    /// The parent run and which weights train; absent for a run trained whole from scratch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitConfig>,
}

impl DataSpec {
    /// Resolves the data settings. The model is resolved later, once the tokenizer is known.
    pub fn resolve(&self) -> Result<DataConfig, SpecError> {
        let need_path = |kind: &str| {
            self.path.clone().ok_or_else(|| {
                SpecError::invalid(
                    "data.path",
                    "(missing)",
                    format!("corpus `{kind}` reads a file: set `data.path` (or --data PATH)"),
                )
            })
        };
        let source = match self.corpus {
            CorpusKind::Embedded => CorpusSource::Embedded,
            CorpusKind::Text => CorpusSource::Text {
                path: need_path("text")?,
            },
            CorpusKind::Dir => CorpusSource::Dir {
                path: need_path("dir")?,
            },
            CorpusKind::Jsonl => CorpusSource::Jsonl {
                path: need_path("jsonl")?,
                text_field: self.text_field.clone(),
            },
        };
        let tokenizer = match (self.tokenizer, &self.tokenizer_file) {
            (_, Some(path)) => TokenizerSpec::BpeFile { path: path.clone() },
            (TokenizerKind::Byte, None) => TokenizerSpec::Byte,
            (TokenizerKind::Bpe, None) => {
                if !(257..=1 << 20).contains(&self.bpe_vocab_size) {
                    return Err(SpecError::invalid(
                        "data.bpe_vocab_size",
                        self.bpe_vocab_size,
                        "a byte-level BPE needs more than 256 tokens; 1024 to 50257 is usual",
                    ));
                }
                TokenizerSpec::BpeTrain {
                    vocab_size: self.bpe_vocab_size,
                }
            }
        };
        if !(self.val_fraction > 0.0 && self.val_fraction < 0.5) {
            return Err(SpecError::invalid(
                "data.val_fraction",
                self.val_fraction,
                "hold out a fraction in (0, 0.5), for example 0.05",
            ));
        }
        Ok(DataConfig {
            source,
            tokenizer,
            val_fraction: self.val_fraction,
        })
    }
}

/// `v` if it is finite and within `[lo, hi]`, else the error naming `key` with `hint`.
pub(crate) fn in_range(key: &str, v: f64, lo: f64, hi: f64, hint: &str) -> Result<(), SpecError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err(SpecError::invalid(key, v, hint))
    }
}

impl TrainSpec {
    /// Checks ranges and resolves the budget.
    pub fn resolve(&self) -> Result<TrainConfig, SpecError> {
        let budget = match (self.budget_tokens, self.budget_flops) {
            (Some(_), Some(_)) => {
                return Err(SpecError::invalid(
                    "train.budget_flops",
                    "(set together with budget_tokens)",
                    "give exactly one of `budget_tokens` and `budget_flops`",
                ));
            }
            (Some(0), None) => {
                return Err(SpecError::invalid(
                    "train.budget_tokens",
                    0,
                    "train on at least one batch of tokens",
                ));
            }
            (Some(tokens), None) => Budget::Tokens(tokens),
            (None, Some(flops)) if flops.is_finite() && flops > 0.0 => Budget::Flops(flops),
            (None, Some(flops)) => {
                return Err(SpecError::invalid(
                    "train.budget_flops",
                    flops,
                    "a positive number of FLOPs, for example 1e13",
                ));
            }
            (None, None) => Budget::Tokens(800_000),
        };
        if self.batch_size == 0 {
            return Err(SpecError::invalid(
                "train.batch_size",
                0,
                "must be at least 1",
            ));
        }
        if self.grad_accum == 0 {
            return Err(SpecError::invalid(
                "train.grad_accum",
                0,
                "must be at least 1",
            ));
        }
        in_range(
            "train.lr",
            self.lr,
            1e-12,
            1e6,
            "a positive learning rate, e.g. 1e-3",
        )?;
        in_range(
            "train.min_lr_ratio",
            self.min_lr_ratio,
            0.0,
            1.0,
            "a fraction in [0, 1]",
        )?;
        in_range(
            "train.warmup_fraction",
            self.warmup_fraction,
            0.0,
            0.5,
            "a fraction in [0, 0.5]",
        )?;
        in_range(
            "train.weight_decay",
            self.weight_decay,
            0.0,
            10.0,
            "0 to 10; 0.1 is usual",
        )?;
        in_range(
            "train.beta1",
            self.beta1,
            0.0,
            0.999_999,
            "in [0, 1); 0.9 is usual",
        )?;
        in_range(
            "train.beta2",
            self.beta2,
            0.0,
            0.999_999,
            "in [0, 1); 0.95 is usual",
        )?;
        in_range(
            "train.epsilon",
            self.epsilon,
            1e-30,
            1.0,
            "small and positive, e.g. 1e-8",
        )?;
        for (key, v) in [("train.l1", self.l1), ("train.l2", self.l2)] {
            in_range(
                key,
                v,
                0.0,
                10.0,
                "a coefficient in [0, 10]; 0 turns it off",
            )?;
        }
        in_range(
            "train.grad_clip",
            self.grad_clip,
            0.0,
            1e9,
            "0 (off) or a positive norm, e.g. 1.0",
        )?;
        if self.eval_every_tokens == 0 {
            return Err(SpecError::invalid(
                "train.eval_every_tokens",
                0,
                "evaluate every N > 0 tokens, e.g. 200000",
            ));
        }
        if self.keep_snapshots && self.eval_per_decade == 0 {
            return Err(SpecError::invalid(
                "train.keep_snapshots",
                true,
                "snapshots are kept at the log-spaced evaluations: set eval_per_decade, e.g. 4",
            ));
        }
        if self.eval_tokens == 0 {
            return Err(SpecError::invalid(
                "train.eval_tokens",
                0,
                "use a validation sample of at least one context, e.g. 65536",
            ));
        }
        if !(self.prune_sparsity.is_finite() && (0.0..1.0).contains(&self.prune_sparsity)) {
            return Err(SpecError::invalid(
                "train.prune_sparsity",
                self.prune_sparsity,
                "the final share of zero weights, from 0 (dense) to below 1, e.g. 0.5",
            ));
        }
        let prune = (self.prune_sparsity > 0.0)
            .then(|| {
                if !(0.0..1.0).contains(&self.prune_start) {
                    return Err(SpecError::invalid(
                        "train.prune_start",
                        self.prune_start,
                        "where pruning starts, a share of the budget from 0 to below 1, e.g. 0.1",
                    ));
                }
                if !(self.prune_start < self.prune_end && self.prune_end <= 1.0) {
                    return Err(SpecError::invalid(
                        "train.prune_end",
                        self.prune_end,
                        format!(
                            "pruning runs from prune_start = {} to prune_end, shares of the budget with 0 <= prune_start < prune_end <= 1, e.g. 0.1 and 0.7",
                            self.prune_start
                        ),
                    ));
                }
                Ok(PruneConfig {
                    sparsity: self.prune_sparsity,
                    start: self.prune_start,
                    end: self.prune_end,
                })
            })
            .transpose()?;
        in_range(
            "train.distill_temperature",
            self.distill_temperature,
            1e-3,
            1e3,
            "a positive temperature, e.g. 2 (Hinton et al. used 1 to 20)",
        )?;
        in_range(
            "train.distill_hard_weight",
            self.distill_hard_weight,
            0.0,
            1.0,
            "the hard labels' share of the loss, from 0 to 1, e.g. 0.5",
        )?;
        Ok(TrainConfig {
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            lr: self.lr,
            min_lr_ratio: self.min_lr_ratio,
            warmup_fraction: self.warmup_fraction,
            weight_decay: self.weight_decay,
            beta1: self.beta1,
            beta2: self.beta2,
            epsilon: self.epsilon,
            grad_clip: self.grad_clip,
            budget,
            eval_every_tokens: self.eval_every_tokens,
            eval_tokens: self.eval_tokens,
            checkpoint_every_tokens: self.checkpoint_every_tokens,
            eval_per_decade: self.eval_per_decade,
            keep_snapshots: self.keep_snapshots,
            optimizer: Optimiser::resolve(self.optimizer, self.momentum, self.nesterov)?,
            l1: self.l1,
            l2: self.l2,
            early_stopping_patience: self.early_stopping_patience,
            prune,
            // The teacher's id is read from its directory by the caller (`train`).
            distill: None,
        })
    }
}

impl RunSpec {
    /// Resolves the whole run for a tokenizer of `vocab_size` tokens, starting from `parent`
    /// (read from `init.from` by the caller) if the spec names one.
    pub fn resolve(
        &self,
        vocab_size: usize,
        parent: Option<&Parent>,
    ) -> Result<RunConfig, SpecError> {
        let model = self.model.resolve(vocab_size)?;
        let init = self.init.resolve(model.family, true, parent)?;
        let data = self.data.resolve()?;
        let task = match &self.task {
            None => None,
            Some(spec) => {
                let task = spec.resolve()?;
                if data.tokenizer != TokenizerSpec::Byte {
                    return Err(SpecError::invalid(
                        "data.tokenizer",
                        "bpe",
                        "tasks are written in the byte vocabulary: use `tokenizer = \"byte\"`",
                    ));
                }
                let needed = task.kind.context_needed();
                if task.mix >= 1.0 && model.ctx_len != needed {
                    return Err(SpecError::invalid(
                        "model.ctx_len",
                        model.ctx_len,
                        format!(
                            "task `{}` trained alone is read in sequences of {needed} tokens: set \
                             ctx_len = {needed}, so that tokens and FLOPs count what is trained",
                            task.kind.name()
                        ),
                    ));
                }
                if model.ctx_len < needed {
                    return Err(SpecError::invalid(
                        "model.ctx_len",
                        model.ctx_len,
                        format!(
                            "task `{}` needs a context of at least {needed} tokens",
                            task.kind.name()
                        ),
                    ));
                }
                Some(task)
            }
        };
        let train = self.train.resolve()?;
        let per_step = train.batch_size as f64 * train.grad_accum as f64 * model.ctx_len as f64;
        let (budget_key, tokens) = match train.budget {
            Budget::Tokens(t) => ("train.budget_tokens", t as f64),
            Budget::Flops(f) => ("train.budget_flops", f / model.flops_per_token()),
        };
        check_budget(
            (
                "train.batch_size",
                "batch_size × grad_accum × ctx_len tokens a step",
            ),
            (per_step, MAX_TOKENS_PER_STEP),
            (budget_key, "tokens"),
            tokens,
        )?;
        Ok(RunConfig {
            seed: self.seed,
            model,
            data,
            train,
            task,
            init,
        })
    }
}

/// Most tokens (or samples) a run may train on: 2^50, about 1.1e15, eight hundred times the
/// 1.4T tokens of Chinchilla. It keeps every count of steps, tokens and FLOPs within u64 and
/// f64 precision.
pub const MAX_BUDGET: f64 = (1u64 << 50) as f64;

/// Most tokens one optimiser step may take: 2^24, about 16.8M, four times the 4M-token
/// batches of the largest models trained today. A step's batches are held in memory at once
/// (8 bytes a token id), so a larger step would exhaust memory before it trained.
pub const MAX_TOKENS_PER_STEP: f64 = (1u64 << 24) as f64;

/// Most samples one classifier step may take: 2^16, more than all of MNIST's 60,000 training
/// images in one batch (an image is held as 4-byte floats).
pub const MAX_SAMPLES_PER_STEP: f64 = (1u64 << 16) as f64;

/// Refuses a run whose `per_step` units a step (the spec key and what they are) exceed
/// `max_per_step`, or whose budget of `units` (its key and unit) exceeds [`MAX_BUDGET`].
pub(crate) fn check_budget(
    (step_key, step_what): (&str, &str),
    (per_step, max_per_step): (f64, f64),
    (budget_key, unit): (&str, &str),
    units: f64,
) -> Result<(), SpecError> {
    if per_step > max_per_step {
        return Err(SpecError::invalid(
            step_key,
            format!("{per_step:.3e} ({step_what})"),
            format!("at most {max_per_step} a step; use a smaller batch"),
        ));
    }
    // NaN (a FLOPs budget over a zero count) is refused too.
    if units.is_nan() || units > MAX_BUDGET {
        return Err(SpecError::invalid(
            budget_key,
            format!("{units:.3e} {unit}"),
            format!("at most {MAX_BUDGET:.3e} {unit} a run; give a smaller budget"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzz harness (crates/cli/tests/fuzz.rs): each panicked with an overflow.
    #[test]
    fn extreme_numbers_are_refused_by_key() {
        let err = |spec: RunSpec| spec.resolve(256, None).unwrap_err().to_string();
        let mut spec = RunSpec::default();
        spec.model.preset = None;
        spec.model.head_dim = usize::MAX;
        assert!(err(spec).contains("model.d_model"));
        let mut spec = RunSpec::default();
        spec.train.grad_accum = 1 << 32;
        assert!(err(spec).contains("train.batch_size"));
        let mut spec = RunSpec::default();
        spec.train.budget_tokens = Some(u64::MAX);
        assert!(err(spec).contains("train.budget_tokens"));
        let mut spec = RunSpec::default();
        spec.train.budget_flops = Some(1e308);
        assert!(err(spec).contains("train.budget_flops"));
        // At the limits, not beyond: 2^24 tokens a step and 2^50 tokens are accepted.
        let mut spec = RunSpec::default();
        spec.model.ctx_len = 1 << 10;
        spec.train.batch_size = 1 << 14;
        spec.train.budget_tokens = Some(1 << 50);
        let (steps, per_step) = spec.resolve(256, None).unwrap().planned_steps();
        assert_eq!((steps, per_step), (1 << 26, 1 << 24));
    }

    #[test]
    fn default_spec_resolves() {
        let run = RunSpec::default().resolve(256, None).unwrap();
        assert_eq!(run.train.budget, Budget::Tokens(800_000));
        assert_eq!(run.data.source, CorpusSource::Embedded);
        assert_eq!(run.model.d_model, 128);
    }

    #[test]
    fn toml_spec_round_trips_and_rejects_typos() {
        let text = r#"
            seed = 3
            [model]
            depth = 2
            [data]
            corpus = "text"
            path = "book.txt"
            [train]
            budget_flops = 1e12
        "#;
        let spec: RunSpec = toml::from_str(text).unwrap();
        let run = spec.resolve(256, None).unwrap();
        assert_eq!(run.train.budget, Budget::Flops(1e12));
        assert_eq!(
            run.data.source,
            CorpusSource::Text {
                path: "book.txt".into()
            }
        );

        let err = toml::from_str::<RunSpec>("[train]\nlearning_rate = 1e-3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("learning_rate"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_key_and_fix() {
        let mut spec = RunSpec::default();
        spec.train.lr = -1.0;
        let err = spec.resolve(256, None).unwrap_err().to_string();
        assert!(err.contains("train.lr") && err.contains("hint:"), "{err}");

        let mut spec = RunSpec::default();
        spec.train.budget_tokens = Some(10);
        spec.train.budget_flops = Some(1e9);
        assert!(
            spec.resolve(256, None)
                .unwrap_err()
                .to_string()
                .contains("exactly one")
        );

        let mut spec = RunSpec::default();
        spec.data.corpus = CorpusKind::Text;
        let err = spec.resolve(256, None).unwrap_err().to_string();
        assert!(err.contains("data.path"), "{err}");
    }
}
