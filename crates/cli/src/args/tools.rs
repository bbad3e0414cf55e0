//! Arguments of the commands that use or change a trained model (`export`, `eval`,
//! `generate`, `compare`, `compress`) and of compression during training.

use std::path::PathBuf;

use clap::Args;
use scalelab_spec::TrainSpec;

use super::set;

/// `scalelab eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The run directory, or a transformers GPT-2 directory (config.json, model.safetensors,
    /// tokenizer.json).
    pub run: PathBuf,
    /// The UTF-8 text to score, whole: windows start every ctx tokens and each predicts its
    /// next ctx tokens; a last window shorter than ctx + 1 tokens is dropped.
    #[arg(long, required_unless_present = "task")]
    pub data: Option<PathBuf>,
    /// Score the run's own synthetic task on its held-out examples instead: exact match,
    /// token accuracy, edit distance, log-probability and Brier score.
    #[arg(long, conflicts_with = "data")]
    pub task: bool,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[command(flatten)]
    pub host: HostFlags,
    /// Print JSON: loss (nats per token), bits_per_byte, windows, ctx, tokens_scored,
    /// text_tokens, text_bytes.
    #[arg(long)]
    pub json: bool,
}

/// Where a trained model runs.
#[derive(Debug, Args)]
pub struct HostFlags {
    /// Threads of the tensor backend (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// cpu, or gpu (a build with `--features gpu`).
    #[arg(long)]
    pub device: Option<scalelab_spec::TrainDevice>,
}

/// `scalelab compress`.
#[derive(Debug, Args)]
pub struct CompressArgs {
    /// The run directory of a trained language model (GPT, LSTM or GRU) or image classifier
    /// (MLP, CNN, ResNet).
    pub run: PathBuf,
    /// magnitude (the smallest weights of each layer, or of all with --global), wanda (the
    /// smallest |W|·‖X‖ of each output, a GPT's inputs measured on 128 training windows),
    /// neurons or heads (whole MLP neurons or attention heads of each GPT block, the weakest by
    /// weight norms), channels (whole output channels of each convolution of a CNN), n-of-m (N of every M consecutive inputs), or quantize (symmetric 8- or
    /// 4-bit, through Burn).
    #[arg(long, value_enum)]
    pub method: CompressMethod,
    /// magnitude, wanda: the share of each layer's (magnitude --global: all layers') weights
    /// set to zero; neurons, heads: the share of each block's neurons or heads removed.
    #[arg(long, required_if_eq_any([("method", "magnitude"), ("method", "wanda"), ("method", "neurons"), ("method", "heads"), ("method", "channels")]))]
    pub sparsity: Option<f64>,
    /// magnitude: one threshold over all layers.
    #[arg(long)]
    pub global: bool,
    /// n-of-m: weights kept per group.
    #[arg(long, default_value_t = 2)]
    pub n: usize,
    /// n-of-m: the group of consecutive inputs.
    #[arg(long, default_value_t = 4)]
    pub m: usize,
    /// quantize: 8 or 4.
    #[arg(long, default_value_t = 8)]
    pub bits: u32,
    /// quantize: one scale per tensor, per output channel, or per --block inputs.
    #[arg(long, value_enum, default_value_t = Granularity::Channel)]
    pub granularity: Granularity,
    /// quantize --granularity block: inputs sharing a scale (at most 255).
    #[arg(long, default_value_t = 64)]
    pub block: usize,
    /// Where to write the compressed model's directory (default: next to the run, RUN-TAG).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Validation tokens scored before and after, in windows spread evenly over the run's
    /// held-out split (default: the run's own validation sample, so that "before" is its
    /// final validation loss).
    #[arg(long)]
    pub eval_tokens: Option<u64>,
    #[command(flatten)]
    pub host: HostFlags,
    /// Print the compression record as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How `scalelab compress` compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressMethod {
    /// Magnitude pruning.
    Magnitude,
    /// Wanda (Sun et al. 2023): |W|·‖X‖ per output, calibrated on 128 training windows.
    Wanda,
    /// Structured: whole MLP neurons of each block.
    Neurons,
    /// Structured: whole attention heads of each block.
    Heads,
    /// Structured: whole output channels of each convolution (a CNN classifier).
    Channels,
    /// N:M semi-structured pruning.
    NOfM,
    /// Weight quantisation.
    Quantize,
}

/// Which weights share a quantisation scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Granularity {
    /// The whole tensor.
    Tensor,
    /// Each output channel.
    Channel,
    /// Each block of --block inputs of an output.
    Block,
}

/// `scalelab generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The run directory, or a transformers GPT-2 directory.
    pub run: PathBuf,
    /// The text to continue (empty: start from token 0).
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Tokens to sample.
    #[arg(long, default_value_t = 200)]
    pub tokens: usize,
    /// Softmax temperature; 0 takes the most likely token each time.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Sample only among the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Seed of the sampler: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub host: HostFlags,
    /// Print JSON: completion, tokens (ids), and the settings.
    #[arg(long)]
    pub json: bool,
}

/// `scalelab compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Model A: a run directory or a transformers GPT-2 directory.
    pub a: PathBuf,
    /// Model B, with A's tokenizer and context length (classifiers: A's test set).
    pub b: PathBuf,
    /// Language models: the UTF-8 text both are scored on, in the windows `eval` uses.
    /// Classifiers compare their predictions on their shared test set (McNemar's test), kept
    /// in each run's test_predictions.csv.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Bootstrap resamples of the windows.
    #[arg(long, default_value_t = 2000)]
    pub bootstrap: usize,
    /// Coverage of the interval.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[command(flatten)]
    pub host: HostFlags,
    /// Print JSON: loss_a, loss_b, difference (A − B, nats per token), interval, level,
    /// p_value, windows.
    #[arg(long)]
    pub json: bool,
}

/// `scalelab export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run directory (the one `train` or `classify` wrote, or a study's runs/ID).
    pub run: PathBuf,
    /// The format: tensorboard (an event file of every curve value and the hyperparameters,
    /// for `tensorboard --logdir OUT`), or hf (a GPT run as a transformers GPT2LMHeadModel
    /// directory: config.json, model.safetensors, tokenizer.json).
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The directory to write into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

/// What `scalelab export` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// A TensorBoard event file (events.out.tfevents.*).
    Tensorboard,
    /// A Hugging Face transformers GPT-2 directory.
    Hf,
}

/// The flags of `train` that compress a language model while it trains: gradual pruning and
/// distillation (`[train]` keys of the same names).
#[derive(Debug, Args)]
pub struct CompressionFlags {
    /// Prune during training (Zhu & Gupta's gradual magnitude pruning) to this final share of
    /// zero weights in every layer's matrices (`train.prune_sparsity`).
    #[arg(long, value_name = "SPARSITY")]
    pub prune_to: Option<f64>,
    /// Where pruning starts, as a share of the budget (default 0.1).
    #[arg(long, value_name = "SHARE")]
    pub prune_start: Option<f64>,
    /// Where it reaches its sparsity (default 0.7).
    #[arg(long, value_name = "SHARE")]
    pub prune_end: Option<f64>,
    #[command(flatten)]
    pub distill: DistillFlags,
}

impl CompressionFlags {
    /// Sets the `[train]` keys these flags give.
    pub(crate) fn apply(&self, train: &mut TrainSpec) {
        set(&mut train.prune_sparsity, self.prune_to);
        set(&mut train.prune_start, self.prune_start);
        set(&mut train.prune_end, self.prune_end);
        self.distill.apply(
            &mut train.distill_from,
            &mut train.distill_temperature,
            &mut train.distill_hard_weight,
        );
    }
}

/// Distillation's flags, for language models and classifiers alike.
#[derive(Debug, Clone, Default, Args)]
pub struct DistillFlags {
    /// Distil from the trained model in DIR (`train.distill_from`): for a language model a
    /// run or a transformers GPT-2 directory with the same tokenizer, for a classifier a
    /// classifier run of the same data set.
    #[arg(long, value_name = "DIR")]
    pub distill_from: Option<String>,
    /// Distillation's temperature τ (default 2).
    #[arg(long)]
    pub distill_temperature: Option<f64>,
    /// Distillation's weight λ of the hard labels (default 0.5).
    #[arg(long)]
    pub distill_hard_weight: Option<f64>,
}

impl DistillFlags {
    /// Sets the `[train]` keys these flags give.
    pub(crate) fn apply(&self, from: &mut Option<String>, temperature: &mut f64, hard: &mut f64) {
        if self.distill_from.is_some() {
            from.clone_from(&self.distill_from);
        }
        set(temperature, self.distill_temperature);
        set(hard, self.distill_hard_weight);
    }
}
