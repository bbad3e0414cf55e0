//! A trained language model put to use after training: loaded from its run directory (or a
//! `transformers` GPT-2 directory, see [`crate::hf`]), scored on any text, and sampled from.
//!
//! Scoring is defined so that a plain loop over the same windows in any framework reproduces
//! it: the text's tokens are cut into windows that start every `ctx` tokens, each window
//! `ctx + 1` tokens long (its first `ctx` are the input, its last `ctx` the targets), a last
//! window shorter than `ctx + 1` tokens is dropped, and the loss is the mean next-token
//! cross-entropy in nats over every predicted token. Every window predicts `ctx` tokens, so
//! the mean of the per-window means is that loss; the per-window means are what a paired
//! comparison of two models resamples.

use std::path::{Path, PathBuf};

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scalelab_data::Tokenizer;
use scalelab_models::{LanguageModel, SeededInit, UseLanguageModel, build_language_model};
use scalelab_spec::{LmConfig, Named, RunRecord, TaskConfig, TaskMetrics, TokenizerSpec};

use crate::TrainError;
use crate::checkpoint::load_bytes;
use crate::hf::{self, HF_WEIGHTS};
use crate::transfer::WEIGHTS_FILE;

/// A trained language model's shape, weights (in scalelab's layout) and tokenizer.
pub struct TrainedLm {
    /// Its run id, or `hf-…` for a `transformers` checkpoint.
    pub id: String,
    /// Its shape.
    pub config: LmConfig,
    /// Its weights as a safetensors file in scalelab's names.
    pub weights: Vec<u8>,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Where it was read from.
    pub dir: PathBuf,
    /// What scalelab computes differently from where the model came from.
    pub warnings: Vec<String>,
    /// The synthetic task the run trained on, if any.
    pub task: Option<TaskConfig>,
}

fn read(path: &Path) -> Result<Vec<u8>, TrainError> {
    std::fs::read(path).map_err(|source| TrainError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

fn not_a_model(dir: &Path, message: String) -> TrainError {
    TrainError::HuggingFace {
        path: dir.to_path_buf(),
        message,
        hint: "give a language-model run directory (it holds record.json and weights.safetensors) or a transformers GPT-2 directory (config.json, model.safetensors, tokenizer.json)".into(),
    }
}

/// Loads the language model in `dir`: a scalelab run directory or a `transformers` GPT-2
/// directory.
pub fn load(dir: &Path) -> Result<TrainedLm, TrainError> {
    if hf::is_hf_dir(dir) {
        return load_hf(dir);
    }
    let compressed = dir.join(crate::compress::COMPRESSION_FILE);
    if compressed.is_file() {
        let record: crate::compress::CompressionRecord =
            serde_json::from_slice(&read(&compressed)?).map_err(|e| {
                not_a_model(dir, format!("{} does not parse: {e}", compressed.display()))
            })?;
        return Ok(TrainedLm {
            id: record.id,
            tokenizer: tokenizer_of(&record.config.data.tokenizer, dir)?,
            config: record.config.model,
            weights: read(&dir.join(WEIGHTS_FILE))?,
            dir: dir.to_path_buf(),
            warnings: Vec::new(),
            task: record.config.task,
        });
    }
    let record_path = dir.join("record.json");
    let text = std::fs::read_to_string(&record_path)
        .map_err(|e| not_a_model(dir, format!("cannot read {}: {e}", record_path.display())))?;
    let record: RunRecord = serde_json::from_str(&text).map_err(|e| {
        not_a_model(
            dir,
            format!(
                "{} is not a language model's record: {e}",
                record_path.display()
            ),
        )
    })?;
    let tokenizer = tokenizer_of(&record.config.data.tokenizer, dir)?;
    Ok(TrainedLm {
        id: record.run_id.clone(),
        config: record.config.model.clone(),
        weights: read(&dir.join(WEIGHTS_FILE))?,
        tokenizer,
        dir: dir.to_path_buf(),
        warnings: Vec::new(),
        task: record.config.task.clone(),
    })
}

/// The tokenizer of a run trained with `spec`, whose `tokenizer.json` (a BPE's) is in `dir`.
fn tokenizer_of(spec: &TokenizerSpec, dir: &Path) -> Result<Tokenizer, TrainError> {
    Ok(match spec {
        TokenizerSpec::Byte => Tokenizer::Byte,
        _ => Tokenizer::build(
            &TokenizerSpec::BpeFile {
                path: dir.join("tokenizer.json").display().to_string(),
            },
            &[],
        )?,
    })
}

/// Loads a `transformers` GPT-2 directory.
fn load_hf(dir: &Path) -> Result<TrainedLm, TrainError> {
    let (model, warnings) = hf::read_config(dir)?;
    let weights_path = dir.join(HF_WEIGHTS);
    let theirs = read(&weights_path)?;
    let id = hf::weights_id(&theirs);
    let weights = hf::from_gpt2(&theirs, &model, &weights_path)?;
    let tokenizer_path = dir.join("tokenizer.json");
    let tokenizer = if tokenizer_path.is_file() {
        Tokenizer::build(
            &TokenizerSpec::BpeFile {
                path: tokenizer_path.display().to_string(),
            },
            &[],
        )?
    } else {
        return Err(not_a_model(
            dir,
            "it has no tokenizer.json (a fast tokenizer's file)".into(),
        ));
    };
    Ok(TrainedLm {
        id,
        config: model,
        weights,
        tokenizer,
        dir: dir.to_path_buf(),
        warnings,
        task: None,
    })
}

/// Mean next-token cross-entropy (nats) of each window of `tokens` (see the module docs),
/// `batch` windows at a time.
pub fn window_losses(
    lm: &TrainedLm,
    tokens: &[u32],
    batch: usize,
    device: &Device,
) -> Result<Vec<f64>, TrainError> {
    let ctx = lm.config.ctx_len;
    let windows: Vec<&[u32]> = (0..)
        .map(|i| i * ctx)
        .take_while(|&start| start + ctx < tokens.len())
        .map(|start| &tokens[start..start + ctx + 1])
        .collect();
    losses_of(lm, &windows, batch, device)
}

/// The mean loss (nats per token) of `lm` on each of `windows` (each `ctx + 1` tokens: the
/// inputs and the next token), `batch` windows at a time.
pub fn losses_of(
    lm: &TrainedLm,
    windows: &[&[u32]],
    batch: usize,
    device: &Device,
) -> Result<Vec<f64>, TrainError> {
    with_model(
        lm,
        device,
        Score {
            windows,
            batch: batch.max(1),
            device,
        },
    )?
}

/// Wanda's calibration of `lm`: the L2 norm of each input feature of each layer weight
/// matrix over the `[n, ctx]` token ids `inputs` (row-major), keyed by weight name. Refused
/// for a family that does not expose its layers' inputs.
pub fn input_norms(
    lm: &TrainedLm,
    inputs: &[i64],
    ctx: usize,
    device: &Device,
) -> Result<Vec<(String, Vec<f32>)>, TrainError> {
    struct Norms<'a> {
        inputs: &'a [i64],
        ctx: usize,
        device: &'a Device,
    }
    impl UseLanguageModel for Norms<'_> {
        type Out = Option<Vec<(String, Vec<f32>)>>;
        fn language_model<M: LanguageModel>(self, model: M) -> Self::Out {
            let model = model.valid();
            let n = self.inputs.len() / self.ctx.max(1);
            // A few windows at a time: the activations of all 128 at once are not needed.
            let mut total: Vec<(String, Vec<f32>)> = Vec::new();
            for chunk in self.inputs.chunks(16 * self.ctx) {
                let rows = chunk.len() / self.ctx;
                let tokens = Tensor::<2, Int>::from_data(
                    TensorData::new(chunk.to_vec(), [rows, self.ctx]),
                    self.device,
                );
                for (name, norms) in model.input_norms(tokens)? {
                    // Norms add as square roots of sums of squares.
                    match total.iter_mut().find(|(k, _)| *k == name) {
                        Some((_, acc)) => acc
                            .iter_mut()
                            .zip(&norms)
                            .for_each(|(a, b)| *a = (*a * *a + b * b).sqrt()),
                        None => total.push((name, norms)),
                    }
                }
            }
            (n > 0).then_some(total)
        }
    }
    with_model(
        lm,
        device,
        Norms {
            inputs,
            ctx,
            device,
        },
    )?
    .ok_or_else(|| TrainError::Compress {
        message: format!(
            "a {} does not expose its layers' inputs, which Wanda measures",
            lm.config.family.name()
        ),
        hint: "use magnitude pruning for this family".into(),
    })
}

/// The five task metrics of `lm` on the held-out examples of `task` (the split its run
/// trained beside), as the run's own evaluations compute them.
pub fn task_metrics(
    lm: &TrainedLm,
    task: &TaskConfig,
    device: &Device,
) -> Result<TaskMetrics, TrainError> {
    struct Task<'a> {
        examples: &'a [scalelab_data::Example],
        device: &'a Device,
    }
    impl UseLanguageModel for Task<'_> {
        type Out = TaskMetrics;
        fn language_model<M: LanguageModel>(self, model: M) -> TaskMetrics {
            crate::evaluate_task(&model.valid(), self.examples, self.device)
        }
    }
    let data = scalelab_data::TaskData::generate(task);
    with_model(
        lm,
        device,
        Task {
            examples: &data.test,
            device,
        },
    )
}

/// Samples `max_tokens` tokens after `prompt` (ids): at temperature 0 the most likely token
/// each time, else from the softmax of the logits divided by `temperature`, restricted to the
/// `top_k` most likely when given, drawn from a ChaCha8 generator seeded with `seed`.
pub fn generate(
    lm: &TrainedLm,
    prompt: &[u32],
    max_tokens: usize,
    temperature: f64,
    top_k: Option<usize>,
    seed: u64,
    device: &Device,
) -> Result<Vec<u32>, TrainError> {
    with_model(
        lm,
        device,
        Sample {
            prompt,
            ctx: lm.config.ctx_len,
            max_tokens,
            temperature,
            top_k,
            seed,
            device,
        },
    )?
}

/// A model as a function from token ids `[B, T]` to logits `[B, T, V]`.
pub type LogitsFn = Box<dyn Fn(Tensor<2, Int>) -> Tensor<3>>;

/// `lm`'s model on `device` as a [`LogitsFn`] (a distilled run's teacher).
pub fn logits_fn(lm: TrainedLm, device: &Device) -> Result<LogitsFn, TrainError> {
    struct Logits;
    impl UseLanguageModel for Logits {
        type Out = LogitsFn;
        fn language_model<M: LanguageModel + 'static>(self, model: M) -> Self::Out {
            Box::new(move |tokens| model.logits(tokens))
        }
    }
    with_model(&lm, device, Logits)
}

/// Builds `lm`'s model with its weights and hands it to `then`.
fn with_model<U: UseLanguageModel>(
    lm: &TrainedLm,
    device: &Device,
    then: U,
) -> Result<U::Out, TrainError> {
    struct Loaded<'a, U> {
        lm: &'a TrainedLm,
        then: U,
    }
    impl<U: UseLanguageModel> UseLanguageModel for Loaded<'_, U> {
        type Out = Result<U::Out, TrainError>;
        fn language_model<M: LanguageModel + 'static>(self, model: M) -> Self::Out {
            let model = load_bytes(self.lm.weights.clone(), &self.lm.dir, model).map_err(|e| {
                let message = match e {
                    TrainError::Checkpoint { message, .. } => message,
                    other => other.to_string(),
                };
                TrainError::HuggingFace {
                    path: self.lm.dir.clone(),
                    message: format!("its weights do not fit the model its config describes: {message}"),
                    hint: "its weights file and its config (config.json, or record.json) disagree: export or train it again".into(),
                }
            })?;
            Ok(self.then.language_model(model))
        }
    }
    build_language_model(
        &lm.config,
        &mut SeededInit::new(0),
        device,
        Loaded { lm, then },
    )
}

struct Score<'a> {
    windows: &'a [&'a [u32]],
    batch: usize,
    device: &'a Device,
}

impl UseLanguageModel for Score<'_> {
    type Out = Result<Vec<f64>, TrainError>;

    fn language_model<M: LanguageModel>(self, model: M) -> Self::Out {
        let model = model.valid();
        let mut losses = Vec::with_capacity(self.windows.len());
        for chunk in self.windows.chunks(self.batch) {
            let (b, t) = (chunk.len(), chunk[0].len() - 1);
            let ids = |range: std::ops::Range<usize>| -> Vec<i64> {
                chunk
                    .iter()
                    .flat_map(|w| w[range.clone()].iter().map(|&x| i64::from(x)))
                    .collect()
            };
            let inputs =
                Tensor::<2, Int>::from_data(TensorData::new(ids(0..t), [b, t]), self.device);
            let targets =
                Tensor::<2, Int>::from_data(TensorData::new(ids(1..t + 1), [b, t]), self.device);
            let logp = log_softmax(model.logits(inputs), 2); // [B, T, V]
            let picked = logp.gather(2, targets.reshape([b, t, 1])); // [B, T, 1]
            let per_window = picked.reshape([b, t]).mean_dim(1).neg(); // [B, 1]
            let values = floats(per_window.into_data())?;
            losses.extend(values.iter().map(|&x| f64::from(x)));
        }
        Ok(losses)
    }
}

struct Sample<'a> {
    prompt: &'a [u32],
    ctx: usize,
    max_tokens: usize,
    temperature: f64,
    top_k: Option<usize>,
    seed: u64,
    device: &'a Device,
}

impl UseLanguageModel for Sample<'_> {
    type Out = Result<Vec<u32>, TrainError>;

    fn language_model<M: LanguageModel>(self, model: M) -> Self::Out {
        let model = model.valid();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut tokens = self.prompt.to_vec();
        let mut out = Vec::with_capacity(self.max_tokens);
        let ctx = self.ctx;
        for _ in 0..self.max_tokens {
            // The last `ctx` tokens; an empty prompt starts from token 0.
            let window: Vec<i64> = if tokens.is_empty() {
                vec![0]
            } else {
                tokens[tokens.len().saturating_sub(ctx)..]
                    .iter()
                    .map(|&x| i64::from(x))
                    .collect()
            };
            let t = window.len();
            let inputs = Tensor::<2, Int>::from_data(TensorData::new(window, [1, t]), self.device);
            let logits = model.logits(inputs).narrow(1, t - 1, 1); // [1, 1, V]
            let logits = floats(logits.into_data())?;
            let next = pick(&logits, self.temperature, self.top_k, &mut rng);
            tokens.push(next);
            out.push(next);
        }
        Ok(out)
    }
}

/// A tensor's values read back as f32.
fn floats(data: TensorData) -> Result<Vec<f32>, TrainError> {
    data.convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| TrainError::HuggingFace {
            path: PathBuf::new(),
            message: format!("reading values back from the device: {e:?}"),
            hint: "report this as a bug".into(),
        })
}

/// The next token from `logits`: argmax at temperature 0, else a draw from the tempered
/// softmax over the `top_k` largest (ties keep the lower id first).
fn pick(logits: &[f32], temperature: f64, top_k: Option<usize>, rng: &mut impl Rng) -> u32 {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if temperature <= 0.0 || !temperature.is_finite() {
        return order.first().map_or(0, |&i| i as u32);
    }
    order.truncate(top_k.unwrap_or(order.len()).clamp(1, logits.len().max(1)));
    let top = f64::from(logits[order[0]]);
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((f64::from(logits[i]) - top) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (&i, w) in order.iter().zip(&weights) {
        if u < *w {
            return i as u32;
        }
        u -= w;
    }
    order.last().map_or(0, |&i| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_largest_and_top_one_is_greedy() {
        let logits = [0.1f32, 2.0, -1.0, 2.0];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(pick(&logits, 0.0, None, &mut rng), 1);
        for _ in 0..20 {
            assert_eq!(pick(&logits, 1.0, Some(1), &mut rng), 1);
        }
    }

    /// Over many draws at temperature 1 the shares follow the softmax: logits ln 1, ln 3 give
    /// 1/4 and 3/4.
    #[test]
    fn sampling_follows_the_softmax() {
        let logits = [0.0f32, 3f32.ln()];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| pick(&logits, 1.0, None, &mut rng) == 1)
            .count();
        let share = ones as f64 / n as f64;
        // 4.5 standard errors of a binomial share at p = 0.75.
        assert!(
            (share - 0.75).abs() < 4.5 * (0.75 * 0.25 / n as f64).sqrt(),
            "{share}"
        );
    }
}
