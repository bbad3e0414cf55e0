//! Command-line arguments. Flags are parsed raw here and merged over a spec file into a
//! `RunSpec`; the library resolves and checks it once.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use scalelab_spec::{
    AdaptKind, ClassifierPreset, ClassifierSpec, ClassifySpec, CorpusKind, Dataset, Family,
    GptPreset, HeadChoice, InitSpec, LmSpec, Objective, OptimiserKind, RunSpec, TokenizerKind,
};

use crate::read_toml;

mod study;
mod tools;
pub use study::*;
pub use tools::*;

/// scalelab: train families of models across sizes and budgets, and measure how quality
/// grows with parameters, data and compute.
#[derive(Debug, Parser)]
#[command(name = "scalelab", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one model and write its run record (and checkpoint) under --out.
    Train(Box<TrainArgs>),
    /// Print a model's parameter counts and training FLOPs without training it.
    Info(InfoArgs),
    /// Time one training step of the reference models (optionally beside PyTorch).
    Bench(BenchArgs),
    /// Plan, run, inspect, report and export studies: scaling ladders and classification grids.
    #[command(subcommand)]
    Study(StudyCommand),
    /// Fit a scaling law to a CSV of (N, D, loss) rows, with bootstrap intervals.
    Fit(FitArgs),
    /// The compute-optimal model size and token count for a FLOP budget.
    Plan(PlanArgs),
    /// Test task metrics across scale for emergence, and tell real jumps from mirages.
    Emergence(EmergenceArgs),
    /// Train a supervised classifier (MLP, CNN) on labelled images, optionally k-fold.
    Classify(Box<ClassifyArgs>),
    /// Another name for `study run FILE --dir OUT/NAME` of a classification study (models ×
    /// training fractions × regularisers × seeds), kept for older commands.
    ClassifyStudy(ClassifyStudyArgs),
    /// Write a trained run in another tool's format: TensorBoard event files, or a GPT run as
    /// a Hugging Face `transformers` GPT-2 directory.
    Export(ExportArgs),
    /// Score a trained language model (a run directory or a transformers GPT-2 directory) on
    /// a whole text file: loss in nats per token and bits per byte.
    Eval(EvalArgs),
    /// Sample text from a trained language model.
    Generate(GenerateArgs),
    /// Compress a trained language model once: magnitude or N:M pruning, or 8/4-bit weight
    /// quantisation; writes the compressed model (for eval, generate, compare) with its
    /// validation loss before and after, non-zero parameters and bytes.
    Compress(CompressArgs),
    /// Compare two models on the same examples: language models on the same windows of a
    /// text (mean loss difference, paired-bootstrap interval and p-value), classifiers on
    /// their test set (accuracy difference, its interval, McNemar's exact test).
    Compare(CompareArgs),
}

/// `scalelab classify-study`.
#[derive(Debug, Args)]
pub struct ClassifyStudyArgs {
    /// The study's TOML file (see examples/digits-overfitting.toml).
    pub file: PathBuf,
    /// Directory that holds study directories.
    #[arg(long, default_value = "studies")]
    pub out: PathBuf,
    /// Threads of the tensor backend (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `scalelab emergence`.
#[derive(Debug, Args)]
pub struct EmergenceArgs {
    /// CSV with columns scale,task,metric,value and optionally n_test, answer_tokens; metric
    /// is one of exact_match, token_accuracy, edit_distance, log_prob, cross_entropy, brier.
    #[arg(long, required_unless_present = "per_example")]
    pub input: Option<PathBuf>,
    /// CSV of per-example scores: scale,task,example,token_index,logprob (one row per answer
    /// token) or scale,task,example,log_prob[,exact_match][,answer_tokens] (one row per
    /// example, as `study export` writes). The mirage test then predicts from the
    /// distribution across examples; means, n_test and answer_tokens missing from --input
    /// are taken from it.
    #[arg(long)]
    pub per_example: Option<PathBuf>,
    /// Tokens in every task's answer (overrides the CSV's answer_tokens column); exact match
    /// is predicted as p^L.
    #[arg(long)]
    pub answer_tokens: Option<f64>,
    /// The per-token quantity the mirage test fits: auto (cross_entropy, else log_prob, else
    /// token_accuracy), cross_entropy, log_prob or token_accuracy. token_accuracy predicts an
    /// exact match scored by greedy decoding.
    #[arg(long, default_value = "auto")]
    pub per_token: String,
    /// Least share of the observed change within one decade for a jump to count as sharp.
    #[arg(long, default_value_t = 0.25)]
    pub min_sharpness: f64,
    /// Least amount (in units of the observed range) by which the larger scales must beat
    /// the smaller scales' trend.
    #[arg(long, default_value_t = 0.2)]
    pub min_extrapolation_error: f64,
    /// Coverage of the transition interval.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Bootstrap replicates: binomial resampling of accuracies (when n_test is given) for
    /// transition intervals, residual resampling of the mirage test's per-token fit.
    #[arg(long, default_value_t = 200)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON: per task, each metric's emergent, transition_scale, sharpness,
    /// extrapolation_error, and the task's mirage verdict with predicted_exact_match.
    #[arg(long)]
    pub json: bool,
}

/// Where `fit` measures residuals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResidualArg {
    /// On log losses.
    Log,
    /// On losses.
    Linear,
}

/// Which law `fit` fits.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LawArg {
    /// L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022).
    Chinchilla,
    /// L(N, D) = [(N_c/N)^(alpha/beta) + D_c/D]^beta (Kaplan et al. 2020).
    Kaplan,
    /// L(X) = E + A*X^-alpha for one column X (--x).
    Power,
    /// L(S, N, D) = (a_S(1-S)^b_S + c_S)N^-b_N + a_D D^-b_D + c, N the non-zero parameters
    /// and S the sparsity (Frantar et al. 2023); columns S, N, D, loss.
    Sparsity,
    /// D_T = k * D_F^alpha * N^beta, the effective data transferred by pre-training
    /// (Hernandez et al. 2021), from columns N, D_F and D_T.
    Transfer,
}

/// `scalelab fit`.
#[derive(Debug, Args)]
pub struct FitArgs {
    /// CSV file with a header row; columns N, D and loss by default.
    #[arg(long)]
    pub input: PathBuf,
    /// The law to fit.
    #[arg(long, value_enum, default_value_t = LawArg::Chinchilla)]
    pub law: LawArg,
    /// Column holding N.
    #[arg(long, default_value = "N")]
    pub n_col: String,
    /// Column holding D.
    #[arg(long, default_value = "D")]
    pub d_col: String,
    /// Column holding the loss.
    #[arg(long, default_value = "loss")]
    pub loss_col: String,
    /// Column of the scale axis X for --law power (N, D, C, or any column).
    #[arg(long, default_value = "N")]
    pub x: String,
    /// Column holding the sparsity S (--law sparsity: the share of zero weights, 0 for
    /// dense; N is then the non-zero parameters).
    #[arg(long, default_value = "S")]
    pub s_col: String,
    /// Where residuals are measured: log (log L̂ − log L, Hoffmann et al.; Frantar et al.'s
    /// language models, with --huber-delta 1e-3) or linear (L̂ − L; Frantar et al.'s vision
    /// models, with --huber-delta 1e-2).
    #[arg(long, value_enum, default_value_t = ResidualArg::Log)]
    pub residuals: ResidualArg,
    /// Bootstrap replicates for the intervals (0: none).
    #[arg(long, default_value_t = 200)]
    pub bootstrap: usize,
    /// Interval coverage.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Huber delta (Hoffmann et al.: 1e-3).
    #[arg(long, default_value_t = 1e-3)]
    pub huber_delta: f64,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `scalelab plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Compute budget in FLOPs (repeat or comma-separate for several).
    #[arg(long, required = true, value_delimiter = ',')]
    pub flops: Vec<f64>,
    /// Take the law from this study's Chinchilla fit (its directory or TOML file).
    #[arg(long, conflicts_with_all = ["e", "a", "b", "alpha", "beta"])]
    pub study: Option<PathBuf>,
    /// E (default: Hoffmann et al. 2022's 1.69).
    #[arg(long = "E")]
    pub e: Option<f64>,
    /// A (default 406.4).
    #[arg(long = "A")]
    pub a: Option<f64>,
    /// B (default 410.7).
    #[arg(long = "B")]
    pub b: Option<f64>,
    /// alpha (default 0.34).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// beta (default 0.28).
    #[arg(long)]
    pub beta: Option<f64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Model-shape flags shared by `train` and `info`; each overrides the spec file.
#[derive(Debug, Args)]
pub struct ModelFlags {
    /// Named shape: nano, micro, mini, small, gpt2-small.
    #[arg(long)]
    pub preset: Option<GptPreset>,
    /// Size dial: number of layers (width = depth × aspect ratio).
    #[arg(long, conflicts_with = "preset")]
    pub depth: Option<usize>,
    /// Width per unit of depth when sizing by --depth.
    #[arg(long)]
    pub aspect_ratio: Option<usize>,
    /// Override the number of layers.
    #[arg(long)]
    pub n_layers: Option<usize>,
    /// Override the residual width.
    #[arg(long)]
    pub d_model: Option<usize>,
    /// Override the number of attention heads.
    #[arg(long)]
    pub n_heads: Option<usize>,
    /// Context length in tokens.
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Tie the output head to the token embedding.
    #[arg(long)]
    pub tie: bool,
    /// Share one block's weights across all layers (ALBERT's cross-layer sharing; GPT only).
    #[arg(long)]
    pub share_layers: bool,
    /// Language-model family: gpt (default), lstm or gru (n_layers layers of d_model units).
    #[arg(long)]
    pub family: Option<Family>,
}

impl ModelFlags {
    fn apply(&self, model: &mut LmSpec) {
        if let Some(preset) = &self.preset {
            model.preset = Some(*preset);
            model.depth = None;
        }
        if let Some(depth) = self.depth {
            model.depth = Some(depth);
            model.preset = None;
        }
        set(&mut model.aspect_ratio, self.aspect_ratio);
        if self.n_layers.is_some() {
            model.n_layers = self.n_layers;
        }
        if self.d_model.is_some() {
            model.d_model = self.d_model;
        }
        if self.n_heads.is_some() {
            model.n_heads = self.n_heads;
        }
        set(&mut model.ctx_len, self.ctx);
        if self.tie {
            model.tie_embeddings = true;
        }
        if self.share_layers {
            model.share_layers = true;
        }
        set(&mut model.family, self.family);
    }
}

/// `scalelab train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A TOML run spec (see examples/); flags below override its values.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Model shape.
    #[command(flatten)]
    pub model: ModelFlags,
    /// Corpus: embedded, text, dir or jsonl.
    #[arg(long)]
    pub corpus: Option<CorpusKind>,
    /// Path of the corpus (a text file, a directory of .txt files, or a .jsonl file); the
    /// corpus kind follows from it when --corpus is not given.
    #[arg(long)]
    pub data: Option<String>,
    /// Tokenizer: byte or bpe.
    #[arg(long)]
    pub tokenizer: Option<TokenizerKind>,
    /// A Hugging Face tokenizer.json to use instead of training one (e.g. a transformers
    /// GPT-2 directory's, with --init-from that directory).
    #[arg(long, value_name = "PATH")]
    pub tokenizer_file: Option<String>,
    /// Training budget in tokens.
    #[arg(long, conflicts_with = "flops")]
    pub tokens: Option<u64>,
    /// Training budget in FLOPs (6·N_matmul + 12·L·T·d per token).
    #[arg(long)]
    pub flops: Option<f64>,
    /// Micro-batches per optimiser step.
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Pruning and distillation during training.
    #[command(flatten)]
    pub compression: CompressionFlags,
    /// The training recipe.
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Where the weights start and which train.
    #[command(flatten)]
    pub init: InitArgs,
    /// Evaluate every this many tokens.
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Size of the fixed validation sample in tokens.
    #[arg(long)]
    pub eval_tokens: Option<u64>,
    /// Where the run writes, checkpoints and reports.
    #[command(flatten)]
    pub run: RunFlags,
    /// Discard this run's checkpoint and record, and train from the start.
    #[arg(long)]
    pub fresh: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

impl TrainArgs {
    /// The spec file (or the defaults) with the flags applied.
    pub fn spec(&self) -> Result<RunSpec> {
        let mut spec: RunSpec = match &self.config {
            Some(path) => read_toml(path)?,
            None => RunSpec::default(),
        };
        self.model.apply(&mut spec.model);
        if let Some(path) = &self.data {
            spec.data.path = Some(path.clone());
            if self.corpus.is_none() {
                spec.data.corpus = if path.ends_with(".jsonl") {
                    CorpusKind::Jsonl
                } else if std::path::Path::new(path).is_dir() {
                    CorpusKind::Dir
                } else {
                    CorpusKind::Text
                };
            }
        }
        set(&mut spec.data.corpus, self.corpus);
        set(&mut spec.data.tokenizer, self.tokenizer);
        if self.tokenizer_file.is_some() {
            spec.data.tokenizer_file = self.tokenizer_file.clone();
        }
        if self.tokens.is_some() {
            spec.train.budget_tokens = self.tokens;
            spec.train.budget_flops = None;
        }
        if self.flops.is_some() {
            spec.train.budget_flops = self.flops;
            spec.train.budget_tokens = None;
        }
        set(&mut spec.train.grad_accum, self.grad_accum);
        self.compression.apply(&mut spec.train);
        apply_recipe!(self.recipe, spec.train);
        self.init.apply(&mut spec.init);
        set(&mut spec.train.eval_every_tokens, self.eval_every);
        set(&mut spec.train.eval_tokens, self.eval_tokens);
        set(
            &mut spec.train.checkpoint_every_tokens,
            self.run.checkpoint_every,
        );
        set(&mut spec.seed, self.run.seed);
        set(&mut spec.device, self.run.device);
        Ok(spec)
    }
}

/// `scalelab info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A TOML run spec whose `[model]` to describe.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Model shape.
    #[command(flatten)]
    pub model: ModelFlags,
    /// Vocabulary size (256 for the byte tokenizer).
    #[arg(long, default_value_t = 256)]
    pub vocab: usize,
    /// Sequences a step, for the memory estimate (train's default: 16).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl InfoArgs {
    /// The model spec with the flags applied.
    pub fn spec(&self) -> Result<LmSpec> {
        let mut model = match &self.config {
            Some(path) => read_toml::<RunSpec>(path)?.model,
            None => RunSpec::default().model,
        };
        self.model.apply(&mut model);
        Ok(model)
    }
}

/// `scalelab bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Where to time the steps: cpu, or gpu (a build with `--features gpu`).
    #[arg(long, default_value = "cpu")]
    pub device: scalelab_spec::TrainDevice,
    /// Timed steps per model (after warm-up).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Warm-up steps per model.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// A Python with PyTorch, to run shared/peer/torch_gpt_step.py beside each measurement.
    #[arg(long)]
    pub peer_python: Option<PathBuf>,
    /// Path of the peer script.
    #[arg(long, default_value = "../shared/peer/torch_gpt_step.py")]
    pub peer_script: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Measure one model of this width instead of the two reference models (with --layers,
    /// --heads, --ctx, --batch and --threads).
    #[arg(long)]
    pub d_model: Option<usize>,
    /// Blocks of the --d-model model.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Attention heads of the --d-model model.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Context length of the --d-model model.
    #[arg(long, default_value_t = 128)]
    pub ctx: usize,
    /// Sequences per step of the --d-model model.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Threads of the --d-model model.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Run Burn's own operations instead of scalelab's fused CPU kernels (attention, GELU,
    /// LayerNorm, cross-entropy, linear layers; with --family also convolution, pooling, batch
    /// norm and the recurrent layers), to measure what the kernels save.
    #[arg(long)]
    pub unfused: bool,
    /// Compare a finished study instead (its directory): its recorded run times against the
    /// peer's step times at each of its shapes, and its FLOP/s against the SGEMM peak.
    #[arg(long, value_name = "DIR")]
    pub study: Option<PathBuf>,
    /// With --family (mlp, cnn, resnet, lstm, gru or encoder, and --preset, --depth, --width,
    /// --fc): benchmark that classifier instead, the image families on 28×28 MNIST-shaped
    /// images and 10 classes, the text families on full-length sentences of --seq-len tokens
    /// from --vocab and 2 classes (the shape of the sentiment set): one training step of
    /// --images examples and one inference batch of --inference-batch; given --peer-python,
    /// the repository's PyTorch eager peer of the same model (--classifier-peer) runs right
    /// after.
    #[command(flatten)]
    pub shape: ClassifierShapeFlags,
    /// The CNN's dense layer width, with --family.
    #[arg(long)]
    pub fc: Option<usize>,
    /// Images (or sentences) per training step, with --family.
    #[arg(long, visible_alias = "examples", default_value_t = 64)]
    pub images: usize,
    /// Tokens per sentence, with a text --family.
    #[arg(long, default_value_t = 48)]
    pub seq_len: usize,
    /// Vocabulary (the padding token included), with a text --family.
    #[arg(long, default_value_t = 1001)]
    pub vocab: usize,
    /// Examples per inference batch, with --family.
    #[arg(long, default_value_t = 500)]
    pub inference_batch: usize,
    /// The classifiers' PyTorch peer.
    #[arg(long, default_value = "scripts/peers/torch_classifier.py")]
    pub classifier_peer: PathBuf,
}

/// A classifier's shape from flags (`classify`, `bench --family`), over a spec's.
#[derive(Debug, Args)]
pub struct ClassifierShapeFlags {
    /// Model family: mlp, cnn, resnet (images); lstm, gru, encoder, gpt (text).
    #[arg(long)]
    pub family: Option<Family>,
    /// Named shape: logistic, mlp-small, mlp, mlp-large, cnn-small, cnn, resnet-small, resnet,
    /// lstm, gru, encoder-small.
    #[arg(long)]
    pub preset: Option<ClassifierPreset>,
    /// MLP hidden layers, CNN/ResNet stages, recurrent layers or encoder blocks.
    #[arg(long)]
    pub depth: Option<usize>,
    /// MLP hidden units, CNN/ResNet channels of the first stage, recurrent hidden units or the
    /// encoder's width.
    #[arg(long)]
    pub width: Option<usize>,
}

impl ClassifierShapeFlags {
    /// Sets the `[model]` keys these flags give.
    pub(crate) fn apply(&self, model: &mut ClassifierSpec) {
        set(&mut model.family, self.family);
        for (slot, value) in [
            (&mut model.depth, self.depth),
            (&mut model.width, self.width),
        ] {
            if value.is_some() {
                *slot = value;
            }
        }
        if self.preset.is_some() {
            model.preset = self.preset;
        }
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// `scalelab classify`.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// A TOML classification spec (see examples/digits.toml); flags below override it.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Data set: digits (embedded), mnist, fashion_mnist (images); sentiment, pang_lee (text);
    /// pos (part-of-speech tagging).
    #[arg(long)]
    pub dataset: Option<Dataset>,
    /// Directory of the data set's files (IDX, JSON, CSV or tagged text).
    #[arg(long)]
    pub data_dir: Option<String>,
    /// The model's shape.
    #[command(flatten)]
    pub shape: ClassifierShapeFlags,
    /// Attention heads of an encoder or GPT classifier.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Dropout probability.
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Text: bpe (default; trained on the training sentences) or byte (a byte-level language
    /// model's 256 values, for a GPT classifier that starts from one).
    #[arg(long)]
    pub tokenizer: Option<TokenizerKind>,
    /// Text: longest sequence in tokens (a GPT classifier from a language model: its context).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Budget in training samples (images seen, repeats counted).
    #[arg(long)]
    pub samples: Option<u64>,
    /// Budget in training FLOPs.
    #[arg(long)]
    pub flops: Option<f64>,
    /// The training recipe.
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Where the weights start and which train.
    #[command(flatten)]
    pub init: InitArgs,
    /// Share of the training images used (stratified).
    #[arg(long)]
    pub train_fraction: Option<f64>,
    /// k-fold cross-validation over the training images (k ≥ 2).
    #[arg(long)]
    pub folds: Option<usize>,
    /// What the run learns: classify (default), or mlm (masked-language-model pre-training
    /// of the encoder on a text data set's sentences, a parent for its classifiers).
    #[arg(long)]
    pub objective: Option<Objective>,
    /// Distillation from a trained classifier.
    #[command(flatten)]
    pub distill: DistillFlags,
    /// Where the run writes, checkpoints and reports.
    #[command(flatten)]
    pub run: RunFlags,
}

impl ClassifyArgs {
    /// The spec file with the flags applied.
    pub fn spec(&self) -> Result<ClassifySpec> {
        let mut spec: ClassifySpec = match &self.config {
            Some(path) => read_toml(path)?,
            None => ClassifySpec::default(),
        };
        set(&mut spec.data.dataset, self.dataset);
        if self.data_dir.is_some() {
            spec.data.dir = self.data_dir.clone();
        }
        self.shape.apply(&mut spec.model);
        if self.heads.is_some() {
            spec.model.heads = self.heads;
        }
        set(&mut spec.data.tokenizer, self.tokenizer);
        set(&mut spec.data.max_tokens, self.max_tokens);
        set(&mut spec.model.dropout, self.dropout);
        if self.samples.is_some() {
            spec.train.budget_samples = self.samples;
            spec.train.budget_flops = None;
        }
        if self.flops.is_some() {
            spec.train.budget_flops = self.flops;
            spec.train.budget_samples = None;
        }
        apply_recipe!(self.recipe, spec.train);
        self.distill.apply(
            &mut spec.train.distill_from,
            &mut spec.train.distill_temperature,
            &mut spec.train.distill_hard_weight,
        );
        self.init.apply(&mut spec.init);
        set(
            &mut spec.train.checkpoint_every_samples,
            self.run.checkpoint_every,
        );
        set(&mut spec.data.train_fraction, self.train_fraction);
        set(&mut spec.folds, self.folds);
        set(&mut spec.objective, self.objective);
        set(&mut spec.seed, self.run.seed);
        set(&mut spec.device, self.run.device);
        Ok(spec)
    }
}

/// The training recipe flags of `train` and `classify`: examples per step, learning rate,
/// optimiser, weight decay, penalties and early stopping.
#[derive(Debug, Args)]
pub struct RecipeArgs {
    /// Examples per optimiser step (a language model's sequences per micro-batch).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimiser: adamw (default), adam or sgd.
    #[arg(long)]
    pub optimizer: Option<OptimiserKind>,
    /// SGD's momentum factor (default 0.9; 0: plain SGD).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// SGD with Nesterov's momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay (decoupled for AdamW), on matrices and embeddings.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// L1 penalty coefficient (`l1 · Σ|w|` over weight matrices).
    #[arg(long)]
    pub l1: Option<f64>,
    /// L2 penalty coefficient (`l2/2 · Σw²` over weight matrices).
    #[arg(long)]
    pub l2: Option<f64>,
    /// Evaluations without a better validation loss before stopping early, keeping the
    /// best weights (0: never).
    #[arg(long)]
    pub patience: Option<usize>,
}

/// The flags of `train` and `classify` that start a run from a parent run's weights and
/// choose which weights train (the `[init]` table).
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Start from the final weights of the run in this directory (same family and kind).
    #[arg(long, value_name = "RUN_DIR")]
    pub init_from: Option<String>,
    /// The parent's output layer: auto (kept for a language model, reset for a
    /// classifier), keep or reset.
    #[arg(long)]
    pub head: Option<HeadChoice>,
    /// Which weights train: full, probe (the output layer only) or freeze (all but the
    /// input layer and the first --freeze-layers layers).
    #[arg(long)]
    pub adapt: Option<AdaptKind>,
    /// Layers frozen after the input layer, with --adapt freeze.
    #[arg(long)]
    pub freeze_layers: Option<usize>,
    /// LoRA's rank r, with --adapt lora (default 8).
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA's α (the adapters are scaled by α/r; default 8).
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// The groups of matrices LoRA adapts, comma separated (a GPT's or encoder's attn,mlp;
    /// an MLP's hidden; a CNN's fc; an LSTM's or GRU's input,recurrent); default: all.
    #[arg(long, value_delimiter = ',')]
    pub lora_targets: Option<Vec<String>>,
    /// With --init-from: the body trains at this share of the learning rate, the output
    /// layer at the whole (e.g. 0.1; default 1).
    #[arg(long)]
    pub body_lr_ratio: Option<f64>,
}

impl InitArgs {
    /// Sets the keys of `init` that the flags give.
    pub fn apply(&self, init: &mut InitSpec) {
        if self.init_from.is_some() {
            init.from.clone_from(&self.init_from);
        }
        set(&mut init.head, self.head);
        set(&mut init.adapt, self.adapt);
        set(&mut init.freeze_layers, self.freeze_layers);
        set(&mut init.lora_rank, self.lora_rank);
        set(&mut init.lora_alpha, self.lora_alpha);
        set(&mut init.lora_targets, self.lora_targets.clone());
        set(&mut init.body_lr_ratio, self.body_lr_ratio);
    }
}

/// Sets the keys of a `[train]` table (a language model's or a classifier's: the recipe keys
/// have the same names in both) that the recipe flags give.
macro_rules! apply_recipe {
    ($flags:expr, $train:expr) => {{
        let (flags, train) = (&$flags, &mut $train);
        set(&mut train.batch_size, flags.batch);
        set(&mut train.lr, flags.lr);
        set(&mut train.optimizer, flags.optimizer);
        set(&mut train.momentum, flags.momentum);
        if flags.nesterov {
            train.nesterov = true;
        }
        set(&mut train.weight_decay, flags.weight_decay);
        set(&mut train.l1, flags.l1);
        set(&mut train.l2, flags.l2);
        set(&mut train.early_stopping_patience, flags.patience);
    }};
}
use apply_recipe;

/// The flags of `train` and `classify` that say where a run writes and how it reports.
#[derive(Debug, Args)]
pub struct RunFlags {
    /// Seed of initialisation, batches, sampling, augmentation and splits.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Checkpoint every this many training tokens (a classifier: samples); a language model
    /// also checkpoints at the end, a classifier without it never.
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Stop after the first checkpoint at or past this many tokens (samples); run again to
    /// resume.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Directory that holds run directories.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Print the run record (a cross-validated classifier: its summary) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Threads of the tensor backend (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where to train: cpu, or gpu (a build with `--features gpu`); overrides the spec's
    /// `device`. Not part of the run's identity.
    #[arg(long)]
    pub device: Option<scalelab_spec::TrainDevice>,
    /// Also write the run's curves and hyperparameters as a TensorBoard event file into DIR
    /// (`tensorboard --logdir DIR`).
    #[arg(long, value_name = "DIR")]
    pub tensorboard: Option<PathBuf>,
    #[command(flatten)]
    pub mlflow: MlflowFlags,
    /// Write into exactly this run directory instead of OUT/RUN_ID (used by `study run`; a
    /// classification spec must then name one run: no folds, or its `fold`).
    #[arg(long, hide = true)]
    pub run_dir: Option<PathBuf>,
    /// Exit when standard input closes, i.e. when the parent study process is gone.
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}
