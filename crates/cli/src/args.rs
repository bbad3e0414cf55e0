//! Command-line arguments. Flags are parsed raw here and merged over a spec file into a
//! `RunSpec`; the library resolves and checks it once.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use scalelab_spec::{GptSpec, RunSpec};

use crate::read_toml;

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
}

/// Model-shape flags shared by `train` and `info`; each overrides the spec file.
#[derive(Debug, Args)]
pub struct ModelFlags {
    /// Named shape: nano, micro, mini, small, gpt2-small.
    #[arg(long)]
    pub preset: Option<String>,
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
}

impl ModelFlags {
    fn apply(&self, model: &mut GptSpec) {
        if let Some(preset) = &self.preset {
            model.preset = Some(preset.clone());
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
    pub corpus: Option<String>,
    /// Path of the corpus (a text file, a directory of .txt files, or a .jsonl file); the
    /// corpus kind follows from it when --corpus is not given.
    #[arg(long)]
    pub data: Option<String>,
    /// Tokenizer: byte or bpe.
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Training budget in tokens.
    #[arg(long, conflicts_with = "flops")]
    pub tokens: Option<u64>,
    /// Training budget in FLOPs (6·N_matmul + 12·L·T·d per token).
    #[arg(long)]
    pub flops: Option<f64>,
    /// Sequences per micro-batch.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Micro-batches per optimiser step.
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Evaluate every this many tokens.
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Size of the fixed validation sample in tokens.
    #[arg(long)]
    pub eval_tokens: Option<u64>,
    /// Checkpoint every this many tokens (0: at the end only).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Seed of initialisation and sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory that holds run directories.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Stop after the first checkpoint at or past this many tokens; run again to resume.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Discard this run's checkpoint and record, and train from the start.
    #[arg(long)]
    pub fresh: bool,
    /// Print the run record as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Threads of the tensor backend (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
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
                    "jsonl".into()
                } else if std::path::Path::new(path).is_dir() {
                    "dir".into()
                } else {
                    "text".into()
                };
            }
        }
        set(&mut spec.data.corpus, self.corpus.clone());
        set(&mut spec.data.tokenizer, self.tokenizer.clone());
        if self.tokens.is_some() {
            spec.train.budget_tokens = self.tokens;
            spec.train.budget_flops = None;
        }
        if self.flops.is_some() {
            spec.train.budget_flops = self.flops;
            spec.train.budget_tokens = None;
        }
        set(&mut spec.train.batch_size, self.batch);
        set(&mut spec.train.grad_accum, self.grad_accum);
        set(&mut spec.train.lr, self.lr);
        set(&mut spec.train.eval_every_tokens, self.eval_every);
        set(&mut spec.train.eval_tokens, self.eval_tokens);
        set(
            &mut spec.train.checkpoint_every_tokens,
            self.checkpoint_every,
        );
        set(&mut spec.seed, self.seed);
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
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl InfoArgs {
    /// The model spec with the flags applied.
    pub fn spec(&self) -> Result<GptSpec> {
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
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}
