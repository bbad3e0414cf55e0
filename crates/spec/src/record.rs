//! The typed, versioned record that a training run writes: what ran, on what, what it cost,
//! and how its loss fell. Later tools read these records; nothing is ever parsed from logs.
//!
//! Bump [`RUN_RECORD_SCHEMA_VERSION`] whenever a field changes meaning or is removed.

use serde::{Deserialize, Serialize};

use crate::RunConfig;

/// Schema version of [`RunRecord`].
pub const RUN_RECORD_SCHEMA_VERSION: u32 = 1;

/// Parameter counts of a model in both conventions of the scaling-law literature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCounts {
    /// Every trainable parameter, embeddings and head included, each shared tensor once.
    /// This is N in Hoffmann et al. 2022 (Chinchilla).
    pub total: u64,
    /// Parameters outside the token embedding, position embedding and an untied output head.
    /// This is N in Kaplan et al. 2020.
    pub non_embedding: u64,
    /// `total - non_embedding`.
    pub embedding: u64,
}

impl ParamCounts {
    /// Names the two conventions, for records and printed tables.
    pub const CONVENTION: &'static str = "total = all parameters (Chinchilla, Hoffmann et al. 2022); non_embedding = total minus token/position embeddings and an untied output head (Kaplan et al. 2020)";
}

/// How training FLOPs are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlopsConvention {
    /// `6·N_matmul + 12·L·T·d` per token: 2 FLOPs per multiply-add for every weight that takes
    /// part in a matrix product (all blocks' matrices and the output head; embedding lookups
    /// are free), ×3 for forward plus backward, plus the attention scores and weighted sum
    /// over the full context T (PaLM, Chowdhery et al. 2022, appendix B; nanoGPT's MFU).
    /// Biases, norms, softmax and the optimiser are not counted.
    SixNMatmulPlusAttention,
    /// `6 ×` the multiply-adds of one sample's forward pass through every matrix product and
    /// convolution (2 FLOPs per multiply-add, ×3 for forward plus backward); biases,
    /// activations, pooling and norms are not counted. The convention of the supervised
    /// families (MLP, CNN), per sample rather than per token.
    SixForwardMacsPerSample,
}

/// One evaluation on the fixed validation sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Optimiser steps taken.
    pub step: u64,
    /// Training tokens consumed so far.
    pub tokens: u64,
    /// Training FLOPs spent so far (see the record's convention).
    pub flops: f64,
    /// Mean training loss (nats/token) over the steps since the previous point; none before
    /// the first step.
    pub train_loss: Option<f64>,
    /// Validation loss in nats per token.
    pub val_loss: f64,
    /// Validation loss in bits per byte of text.
    pub val_bpb: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Wall-clock seconds of training so far (evaluation time included).
    pub wall_secs: f64,
    /// L2 norm of all parameters (the weight norm that grokking studies track).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_norm: Option<f64>,
    /// The task's metrics on its test set, for runs with a task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_test: Option<TaskMetrics>,
    /// The same metrics on a fixed sample of training examples (as many as the test set, at
    /// most), to see memorisation apart from generalisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_train: Option<TaskMetrics>,
}

/// File beside a task run's `record.json` with every test example's scores at the run's last
/// evaluation, one [`ExampleScore`] a row: the distribution the emergence lab's mirage test
/// can use instead of the means.
pub const TASK_EXAMPLES_FILE: &str = "task_examples.csv";

/// One test example's scores at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExampleScore {
    /// Index of the example in the task's test set.
    pub example: usize,
    /// Tokens in its answer.
    pub answer_tokens: usize,
    /// Whether greedy decoding reproduced the whole answer.
    pub exact_match: bool,
    /// Log-probability (nats) of the whole right answer, teacher-forced.
    pub log_prob: f64,
    /// Answer tokens whose teacher-forced argmax is right.
    pub correct_tokens: usize,
}

/// A model's abilities on a set of task examples, every metric from the same outputs
/// (Schaeffer et al. 2023 compare exactly these).
///
/// Teacher-forced metrics feed the correct answer prefix; generated ones decode greedily from
/// the prompt. Exact match is the same either way: every teacher-forced argmax is right if and
/// only if greedy decoding reproduces the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMetrics {
    /// Examples evaluated; the resolution of `exact_match` is `1 / examples`.
    pub examples: usize,
    /// Tokens in each answer.
    pub answer_tokens: usize,
    /// Share of examples whose whole answer is right (discontinuous).
    pub exact_match: f64,
    /// Share of answer tokens whose teacher-forced argmax is right.
    pub token_accuracy: f64,
    /// Mean Levenshtein distance, in tokens, between the greedy answer and the right one.
    pub edit_distance: f64,
    /// Mean log-probability (nats) of the whole right answer, teacher-forced.
    pub log_prob: f64,
    /// Mean multi-class Brier score per answer token, `Σ_k (p_k − 1[k = y])²`, in [0, 2].
    pub brier: f64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum RunStatus {
    /// The budget was spent.
    Completed,
    /// The loss became NaN or infinite; training stopped at `tokens`.
    Diverged {
        /// Training tokens consumed when divergence was detected.
        tokens: u64,
        /// What was seen.
        reason: String,
    },
}

/// The machine a run trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Host name.
    pub hostname: String,
    /// CPU model name.
    pub cpu: String,
    /// Logical cores available to the process.
    pub cores: usize,
    /// Operating system and architecture.
    pub os: String,
    /// Tensor backend and device, e.g. `burn-flex (cpu)`.
    pub backend: String,
}

/// The one record envelope: what every run's `record.json` says whatever its kind (its
/// schema, id, resolved config, source revision, parameter counts and conventions, how it
/// ended, its wall time and machine), around the kind's own results `R`, whose fields sit
/// beside these in the JSON (`serde(flatten)`), so records written before the envelope read
/// as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record<C, R> {
    /// Schema version of the kind's record ([`RUN_RECORD_SCHEMA_VERSION`],
    /// [`CLASSIFY_RECORD_SCHEMA_VERSION`](crate::CLASSIFY_RECORD_SCHEMA_VERSION)).
    pub schema_version: u32,
    /// Hash of the resolved config: a run's identity ([`run_id`](crate::run_id)).
    pub run_id: String,
    /// The full resolved config (the seed is in it).
    pub config: C,
    /// Source revision of the program that trained, with `-dirty` for local changes.
    pub git_revision: String,
    /// Exact trainable parameter counts (a classifier's image families have no embeddings,
    /// so for them `non_embedding = total`).
    pub params: ParamCounts,
    /// Names the parameter-count conventions used in `params`.
    pub param_convention: String,
    /// How FLOPs are counted.
    pub flops_convention: FlopsConvention,
    /// How the run ended (classification records of schema version 1 have none: their runs
    /// completed, as a diverged run then wrote no record).
    #[serde(default = "completed")]
    pub status: RunStatus,
    /// Whether the run continued from a checkpoint.
    #[serde(default)]
    pub resumed: bool,
    /// Wall-clock seconds of the whole run, resumed segments added.
    pub wall_secs: f64,
    /// Worker threads of the tensor backend.
    pub threads: usize,
    /// Where it ran.
    pub machine: Machine,
    /// For a run that starts from a parent or trains only some weights: what it trained and
    /// what it keeps (absent from runs trained whole from scratch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptation: Option<Adaptation>,
    /// What this kind of run measured.
    #[serde(flatten)]
    pub result: R,
}

/// What an adapted run (fine-tuned, probed, partly frozen) trained and keeps, to compare
/// methods by (as PEFT's tables do: quality against trainable parameters, memory and bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adaptation {
    /// The parent run's id, if it started from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Parameters that trained (the rest stayed as they started, bit for bit).
    pub trainable_params: u64,
    /// Bytes of the final weights file (`weights.safetensors`, LoRA adapters merged in).
    pub weights_bytes: u64,
    /// Bytes of the LoRA adapters alone (`adapters.safetensors`), for a LoRA run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_bytes: Option<u64>,
    /// Peak resident memory of the training process (0 where the system does not say).
    pub peak_rss_bytes: u64,
}

fn completed() -> RunStatus {
    RunStatus::Completed
}

/// What the resolved config of each kind of run declares in its record's envelope.
pub trait RecordKind {
    /// Schema version of the kind's record.
    const SCHEMA_VERSION: u32;
    /// The parameter-count conventions of `params`.
    const PARAM_CONVENTION: &'static str;
    /// How the kind counts FLOPs.
    const FLOPS_CONVENTION: FlopsConvention;
    /// Exact trainable parameters of the run's model.
    fn param_counts(&self) -> ParamCounts;
    /// Where its weights start and which train (none: all, from scratch).
    fn init(&self) -> Option<&crate::InitConfig>;
}

impl RecordKind for RunConfig {
    const SCHEMA_VERSION: u32 = RUN_RECORD_SCHEMA_VERSION;
    const PARAM_CONVENTION: &'static str = ParamCounts::CONVENTION;
    const FLOPS_CONVENTION: FlopsConvention = crate::family::LM_FLOPS_CONVENTION;

    fn param_counts(&self) -> ParamCounts {
        self.model.param_counts()
    }

    fn init(&self) -> Option<&crate::InitConfig> {
        self.init.as_ref()
    }
}

impl RecordKind for crate::ClassifyConfig {
    const SCHEMA_VERSION: u32 = crate::CLASSIFY_RECORD_SCHEMA_VERSION;
    const PARAM_CONVENTION: &'static str = crate::CLASSIFY_PARAM_CONVENTION;
    const FLOPS_CONVENTION: FlopsConvention = FlopsConvention::SixForwardMacsPerSample;

    fn param_counts(&self) -> ParamCounts {
        self.model.param_counts()
    }

    fn init(&self) -> Option<&crate::InitConfig> {
        self.init.as_ref()
    }
}

/// A language-model run's record.
pub type RunRecord = Record<RunConfig, LmResult>;

/// What a language-model run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmResult {
    /// Training FLOPs per token.
    pub flops_per_token: f64,
    /// Tokens per optimiser step (`batch_size × grad_accum × ctx_len`).
    pub tokens_per_step: u64,
    /// Training tokens consumed.
    pub tokens_seen: u64,
    /// Training FLOPs spent.
    pub train_flops: f64,
    /// Evaluations over training.
    pub curve: Vec<CurvePoint>,
    /// Validation loss (nats/token) at the end, if an evaluation ran.
    pub final_val_loss: Option<f64>,
    /// Validation bits per byte at the end.
    pub final_val_bpb: Option<f64>,
    /// Peak resident memory of the process in bytes (0 where the OS does not say).
    pub peak_rss_bytes: u64,
    /// Seconds since the Unix epoch when the run (first) started.
    pub started_unix_secs: u64,
    /// Distinct tokens in the training split of the corpus (none for a task trained alone,
    /// whose examples are drawn afresh). Absent in records written before it was kept.
    #[serde(default)]
    pub unique_train_tokens: Option<u64>,
    /// Passes over those tokens: `tokens_seen / unique_train_tokens`. Above 1 the run
    /// repeated data (batches are random windows, so a pass is a count of tokens, not of
    /// ordered sweeps).
    #[serde(default)]
    pub epochs: Option<f64>,
    /// With early stopping: the training tokens at the evaluation whose weights were kept,
    /// whose validation loss is `final_val_loss`. Absent without early stopping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_tokens: Option<u64>,
    /// Whether early stopping ended the run before its budget.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped_early: bool,
    /// What pruning during training left (`train.prune`), of the final weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<SparsityReport>,
}

/// The sparsity of a pruned model's final weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparsityReport {
    /// The sparsity asked of every pruned matrix.
    pub target: f64,
    /// Each pruned matrix: its name, elements and zeros.
    pub layers: Vec<LayerSparsity>,
    /// Non-zero parameters, in the record's two conventions (embeddings and head unpruned).
    pub nonzero: ParamCounts,
}

/// One pruned matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSparsity {
    /// Its path, e.g. `blocks.0.qkv.weight`.
    pub name: String,
    /// Its elements.
    pub params: u64,
    /// Its zeros.
    pub zeros: u64,
}
