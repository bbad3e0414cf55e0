//! One-shot compression of a trained model's weights: magnitude pruning (per layer, or with
//! one global threshold), N:M semi-structured pruning (N kept of every M consecutive inputs of
//! an output, NVIDIA's 2:4), and post-training weight quantisation through Burn's
//! quantisation (`QuantScheme`: symmetric 8- or 4-bit values, one scale per tensor, per
//! output channel or per block of inputs), kept as the dequantised float weights
//! (quantise–dequantise, "fake" quantisation: the CPU backend computes in float, so the loss
//! is that of the quantised model and the bytes are counted, not stored).
//!
//! Only the layers' weight matrices are compressed (2-D tensors outside the model's input
//! and output layers: a GPT's qkv, projection and MLP matrices); embeddings, the head,
//! biases and norms stay as they are, as in Frantar et al. 2023 and Zhu & Gupta 2017.

use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::TrainError;

pub use scalelab_spec::{Method, Scales};

/// The file a compressed model's directory describes itself in (beside its
/// `weights.safetensors` and, for a BPE, `tokenizer.json`).
pub const COMPRESSION_FILE: &str = "compression.json";

/// A compressed model: where it came from, how, and what it cost and kept; `C` its parent's
/// resolved config, `S` its scores before and after (a language model's by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompressionRecord<C = scalelab_spec::RunConfig, S = LmScores> {
    /// Schema version (1).
    pub schema_version: u32,
    /// `PARENT-TAG`, the compressed model's id.
    pub id: String,
    /// The run compressed.
    pub parent: String,
    /// Its resolved config (the compressed model's shape and data).
    pub config: C,
    /// What was done.
    pub method: Method,
    /// The parent's parameter counts (both conventions).
    pub params: scalelab_spec::ParamCounts,
    /// Non-zero parameters after compression, in the same conventions (embeddings and head
    /// untouched, so `embedding` is the parent's).
    pub nonzero: scalelab_spec::ParamCounts,
    /// The conventions of `params` and `nonzero`.
    pub param_convention: String,
    /// Bytes of the weights as the parent stores them (float32).
    pub bytes_dense: u64,
    /// Bytes of the weights compressed: quantised matrices at their bits plus a float32 scale
    /// per group; a pruned matrix as its non-zero float32 values plus a one-bit mask of where
    /// they are, or dense where that is smaller (see [`pruned_bytes`]).
    pub bytes: u64,
    /// The scores before and after.
    #[serde(flatten)]
    pub scores: S,
    /// Every compressed matrix.
    pub layers: Vec<LayerReport>,
}

impl<C, S> CompressionRecord<C, S> {
    /// The record of run `parent` (its `config`, its `params` counted in `convention`)
    /// compressed by `method` into `layers`, scored `scores`: the non-zero counts and bytes
    /// are the layers' plus the untouched tensors' (float32).
    fn new(
        parent: &str,
        (config, params, convention): (C, scalelab_spec::ParamCounts, &str),
        method: Method,
        layers: Vec<LayerReport>,
        scores: S,
    ) -> Self {
        let pruned: u64 = layers.iter().map(|l| l.params - l.nonzero).sum();
        let bytes = layers.iter().map(|l| l.bytes).sum::<u64>()
            + 4 * (params.total - layers.iter().map(|l| l.params).sum::<u64>());
        CompressionRecord {
            schema_version: 1,
            id: format!("{parent}-{}", method.tag()),
            parent: parent.to_string(),
            config,
            method,
            params,
            nonzero: scalelab_spec::ParamCounts {
                total: params.total - pruned,
                non_embedding: params.non_embedding - pruned,
                embedding: params.embedding,
            },
            param_convention: convention.to_string(),
            bytes_dense: 4 * params.total,
            bytes,
            scores,
            layers,
        }
    }
}

/// A language model's validation loss before and after compression, on the same windows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LmScores {
    /// Validation loss (nats per token) before.
    pub val_loss_before: f64,
    /// And after.
    pub val_loss_after: f64,
    /// Tokens scored for each.
    pub val_tokens: u64,
}

/// A classifier's loss and accuracy on one split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitScore {
    /// Mean cross-entropy (nats).
    pub loss: f64,
    /// Accuracy.
    pub accuracy: f64,
}

/// A classifier's validation and test scores before and after compression.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassifierScores {
    /// Validation split (the run's own) before.
    pub validation_before: SplitScore,
    /// And after.
    pub validation_after: SplitScore,
    /// Test split before.
    pub test_before: SplitScore,
    /// And after.
    pub test_after: SplitScore,
}

/// What compression did to one weight matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    /// The tensor's name.
    pub name: String,
    /// Its elements.
    pub params: u64,
    /// Its non-zero elements after compression.
    pub nonzero: u64,
    /// Its bytes after compression (quantised: bits/8 per value plus 4 per scale; otherwise
    /// [`pruned_bytes`]).
    pub bytes: u64,
}

fn bad(message: String, hint: &str) -> TrainError {
    TrainError::Compress {
        message,
        hint: hint.into(),
    }
}

/// Bytes of a float32 matrix of `params` elements of which `nonzero` are not zero, stored as
/// its non-zero values and a bitmask of their places (one bit per element), or dense where
/// that is smaller: the storage convention of every pruned matrix's bytes here (a format with
/// indices instead of a mask would cost more above ~3% density).
pub fn pruned_bytes(params: u64, nonzero: u64) -> u64 {
    (4 * nonzero + params.div_ceil(8)).min(4 * params)
}

/// The indices of the `k` smallest magnitudes of `values` (ties: the lower index first).
fn smallest(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].abs().total_cmp(&values[b].abs()).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Zeros exactly `round(sparsity × len)` of `values`, the smallest in magnitude.
pub fn prune_magnitude(values: &mut [f32], sparsity: f64) {
    let k = (sparsity * values.len() as f64).round() as usize;
    for i in smallest(values, k.min(values.len())) {
        values[i] = 0.0;
    }
}

/// Zeros exactly `round(sparsity × total)` weights over all `layers` together, the smallest
/// in magnitude anywhere.
pub fn prune_global(layers: &mut [Vec<f32>], sparsity: f64) {
    let total: usize = layers.iter().map(Vec::len).sum();
    let k = ((sparsity * total as f64).round() as usize).min(total);
    let mut all: Vec<(f32, usize, usize)> = layers
        .iter()
        .enumerate()
        .flat_map(|(l, v)| v.iter().enumerate().map(move |(i, x)| (x.abs(), l, i)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    for &(_, l, i) in &all[..k] {
        layers[l][i] = 0.0;
    }
}

/// Wanda on a `[inputs, outputs]` matrix (row-major): in each output column, exactly
/// `round(sparsity × inputs)` weights with the smallest `|W_ij|·norms[i]` zeroed (ties: the
/// lower input first).
pub fn prune_wanda(
    values: &mut [f32],
    inputs: usize,
    outputs: usize,
    norms: &[f32],
    sparsity: f64,
) {
    let k = ((sparsity * inputs as f64).round() as usize).min(inputs);
    for col in 0..outputs {
        let scores: Vec<f32> = (0..inputs)
            .map(|r| values[r * outputs + col].abs() * norms[r])
            .collect();
        for r in smallest(&scores, k) {
            values[r * outputs + col] = 0.0;
        }
    }
}

/// The indices of the `round(sparsity × scores.len())` smallest `scores`.
fn weakest(scores: &[f32], sparsity: f64) -> Vec<usize> {
    let k = ((sparsity * scores.len() as f64).round() as usize).min(scores.len());
    smallest(scores, k)
}

fn norm(values: impl Iterator<Item = f32>) -> f32 {
    values.map(|x| x * x).sum::<f32>().sqrt()
}

/// Structured pruning of an MLP of width `d` and hidden width `f` (`fc` `[d, f]`, `fc_proj`
/// `[f, d]`, row-major): the share `sparsity` of hidden neurons with the smallest
/// `‖fc[:, k]‖·‖fc_proj[k, :]‖` lose their input column and output row.
pub fn prune_neurons(fc: &mut [f32], fc_proj: &mut [f32], d: usize, f: usize, sparsity: f64) {
    let scores: Vec<f32> = (0..f)
        .map(|k| {
            norm((0..d).map(|r| fc[r * f + k])) * norm(fc_proj[k * d..(k + 1) * d].iter().copied())
        })
        .collect();
    for k in weakest(&scores, sparsity) {
        (0..d).for_each(|r| fc[r * f + k] = 0.0);
        fc_proj[k * d..(k + 1) * d].fill(0.0);
    }
}

/// Structured pruning of a block's attention of width `d` and `n_heads` heads (`qkv`
/// `[d, 3d]`: queries, keys, values, each head-major; `proj` `[d, d]`, its rows head-major):
/// `round(sparsity × n_heads)` heads with the smallest product of their value columns' and
/// output rows' norms lose their query, key and value columns and their output rows.
pub fn prune_heads(qkv: &mut [f32], proj: &mut [f32], d: usize, n_heads: usize, sparsity: f64) {
    let hs = d / n_heads;
    let cols = |h: usize, part: usize| (part * d + h * hs)..(part * d + (h + 1) * hs);
    let scores: Vec<f32> = (0..n_heads)
        .map(|h| {
            let v = norm(
                (0..d)
                    .flat_map(|r| cols(h, 2).map(move |c| (r, c)))
                    .map(|(r, c)| qkv[r * 3 * d + c]),
            );
            v * norm(proj[h * hs * d..(h + 1) * hs * d].iter().copied())
        })
        .collect();
    for h in weakest(&scores, sparsity) {
        for r in 0..d {
            for part in 0..3 {
                for c in cols(h, part) {
                    qkv[r * 3 * d + c] = 0.0;
                }
            }
        }
        proj[h * hs * d..(h + 1) * hs * d].fill(0.0);
    }
}

/// Structured pruning of a convolution held as the matrix `[inputs, outputs]` (an output
/// channel a column): the share `sparsity` of output channels with the smallest L2 norm lose
/// their whole kernel; returns which.
pub fn prune_channels(
    values: &mut [f32],
    inputs: usize,
    outputs: usize,
    sparsity: f64,
) -> Vec<usize> {
    let scores: Vec<f32> = (0..outputs)
        .map(|o| norm((0..inputs).map(|r| values[r * outputs + o])))
        .collect();
    let removed = weakest(&scores, sparsity);
    for &o in &removed {
        (0..inputs).for_each(|r| values[r * outputs + o] = 0.0);
    }
    removed
}

/// N:M pruning of a `[inputs, outputs]` matrix (row-major, Burn's linear layout): in each
/// output column, of every `m` consecutive inputs the `n` largest in magnitude are kept.
pub fn prune_n_of_m(values: &mut [f32], inputs: usize, outputs: usize, n: usize, m: usize) {
    for col in 0..outputs {
        for group in 0..inputs / m {
            let idx: Vec<usize> = (0..m).map(|r| (group * m + r) * outputs + col).collect();
            let group_values: Vec<f32> = idx.iter().map(|&i| values[i]).collect();
            for j in smallest(&group_values, m - n) {
                values[idx[j]] = 0.0;
            }
        }
    }
}

/// Quantises and dequantises a `[inputs, outputs]` matrix through Burn's symmetric scheme.
pub fn quantize_dequantize(
    values: Vec<f32>,
    inputs: usize,
    outputs: usize,
    bits: u32,
    block: usize,
) -> Result<Vec<f32>, TrainError> {
    let value = match bits {
        8 => QuantValue::Q8S,
        4 => QuantValue::Q4S,
        other => {
            return Err(bad(
                format!("{other}-bit quantisation is not offered"),
                "use --bits 8 or --bits 4",
            ));
        }
    };
    // Values kept natively (not packed into u32 words), scales in f32.
    let scheme = QuantScheme::default()
        .with_value(value)
        .with_store(QuantStore::Native);
    let scheme = if block == 0 {
        scheme.per_tensor(ScaleDtype::F32)
    } else {
        // A block is `block` consecutive inputs of one output: [block, 1] of [inputs, outputs].
        scheme.per_block([block as u8, 1], ScaleDtype::F32)
    };
    let device = Device::flex();
    let tensor = Tensor::<2>::from_data(TensorData::new(values, [inputs, outputs]), &device);
    let data = tensor.quantize_dynamic(&scheme).dequantize().into_data();
    data.convert::<f32>().try_to_vec::<f32>().map_err(|e| {
        bad(
            format!("reading dequantised weights: {e:?}"),
            "report this as a bug",
        )
    })
}

/// What some methods need to know of the model beyond its weights.
#[derive(Debug, Clone, Default)]
pub struct ModelFacts {
    /// Wanda's calibration: the L2 norm of each input of each matrix, by tensor name.
    pub input_norms: Vec<(String, Vec<f32>)>,
    /// Attention heads per block (structured head pruning).
    pub n_heads: usize,
}

/// Applies `method` to the tensors of `weights` (a safetensors file) for which `target` is
/// true (2-D float32 matrices), with what `facts` tells of the model; returns the new file
/// and a report per compressed matrix.
pub fn compress(
    weights: &[u8],
    method: &Method,
    target: &dyn Fn(&str) -> bool,
    facts: &ModelFacts,
) -> Result<(Vec<u8>, Vec<LayerReport>), TrainError> {
    let st = SafeTensors::deserialize(weights).map_err(|e| {
        bad(
            format!("the weights do not read: {e}"),
            "train the run again",
        )
    })?;
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>, bool)> = Vec::new();
    // Convolution kernels held as matrices: their index and original shape.
    let mut kernels: Vec<(usize, Vec<usize>)> = Vec::new();
    for name in names {
        let view = st
            .tensor(&name)
            .map_err(|e| bad(format!("tensor {name}: {e}"), "train the run again"))?;
        if view.dtype() != Dtype::F32 {
            return Err(bad(
                format!("tensor {name} is {:?}, not float32", view.dtype()),
                "compress a run scalelab trained",
            ));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let shape = view.shape().to_vec();
        let is_target = matches!(shape.len(), 2 | 4) && target(&name);
        if is_target && shape.len() == 4 {
            // A convolution's kernel `[out, in, kh, kw]` as the matrix `[in·kh·kw, out]` of
            // the other layers' layout (an output channel a column), transposed back at the end.
            let (out, rest) = (shape[0], shape[1] * shape[2] * shape[3]);
            let matrix: Vec<f32> = (0..rest * out)
                .map(|j| values[(j % out) * rest + j / out])
                .collect();
            kernels.push((tensors.len(), shape));
            tensors.push((name, vec![rest, out], matrix, true));
        } else {
            tensors.push((name, shape, values, is_target));
        }
    }
    let targets: Vec<usize> = (0..tensors.len()).filter(|&i| tensors[i].3).collect();
    if targets.is_empty() {
        return Err(bad(
            "the model has no weight matrices to compress".into(),
            "compress a GPT, LSTM, GRU, MLP or CNN run",
        ));
    }
    let mut bytes_of = vec![0u64; tensors.len()];
    match *method {
        Method::Magnitude { sparsity, global } => {
            if !(0.0..1.0).contains(&sparsity) {
                return Err(bad(
                    format!("sparsity {sparsity} is not in [0, 1)"),
                    "give the share of weights to zero, e.g. --sparsity 0.5",
                ));
            }
            if global {
                let mut layers: Vec<Vec<f32>> = targets
                    .iter()
                    .map(|&i| std::mem::take(&mut tensors[i].2))
                    .collect();
                prune_global(&mut layers, sparsity);
                for (&i, layer) in targets.iter().zip(layers) {
                    tensors[i].2 = layer;
                }
            } else {
                for &i in &targets {
                    prune_magnitude(&mut tensors[i].2, sparsity);
                }
            }
        }
        Method::Wanda { sparsity } => {
            if !(0.0..1.0).contains(&sparsity) {
                return Err(bad(
                    format!("sparsity {sparsity} is not in [0, 1)"),
                    "give the share of weights to zero, e.g. --sparsity 0.5",
                ));
            }
            for &i in &targets {
                let (name, shape) = (tensors[i].0.clone(), tensors[i].1.clone());
                let norm = (facts.input_norms.iter())
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v)
                    .filter(|v| v.len() == shape[0])
                    .ok_or_else(|| {
                        bad(
                            format!("no calibration of the inputs of {name}"),
                            "Wanda needs a GPT (its layers' inputs are measured); use magnitude pruning for other families",
                        )
                    })?;
                prune_wanda(&mut tensors[i].2, shape[0], shape[1], norm, sparsity);
            }
        }
        Method::Neurons { sparsity } | Method::Heads { sparsity } => {
            if !(0.0..1.0).contains(&sparsity) {
                return Err(bad(
                    format!("sparsity {sparsity} is not in [0, 1)"),
                    "give the share of neurons or heads to remove, e.g. --sparsity 0.5",
                ));
            }
            let heads = matches!(method, Method::Heads { .. });
            let (first, second) = if heads {
                (".qkv.weight", ".proj.weight")
            } else {
                (".fc.weight", ".fc_proj.weight")
            };
            let pairs: Vec<(usize, usize)> = (targets.iter())
                .filter(|&&i| tensors[i].0.ends_with(first))
                .filter_map(|&i| {
                    let partner = tensors[i].0.replace(first, second);
                    let j = tensors.iter().position(|t| t.0 == partner)?;
                    Some((i, j))
                })
                .collect();
            if pairs.is_empty() {
                return Err(bad(
                    "the model has no Transformer blocks to prune whole neurons or heads of".into(),
                    "structured pruning needs a GPT; use magnitude pruning for other families",
                ));
            }
            for (i, j) in pairs {
                let (rows, cols) = (tensors[i].1[0], tensors[i].1[1]);
                let mut a = std::mem::take(&mut tensors[i].2);
                if heads {
                    if facts.n_heads == 0 || rows % facts.n_heads != 0 {
                        return Err(bad(
                            format!("{} heads do not divide width {rows}", facts.n_heads),
                            "report this as a bug",
                        ));
                    }
                    prune_heads(&mut a, &mut tensors[j].2, rows, facts.n_heads, sparsity);
                } else {
                    prune_neurons(&mut a, &mut tensors[j].2, rows, cols, sparsity);
                }
                tensors[i].2 = a;
            }
        }
        Method::Channels { sparsity } => {
            if !(0.0..1.0).contains(&sparsity) {
                return Err(bad(
                    format!("sparsity {sparsity} is not in [0, 1)"),
                    "give the share of channels to remove, e.g. --sparsity 0.5",
                ));
            }
            if kernels.is_empty() {
                return Err(bad(
                    "the model has no convolutions to prune whole channels of".into(),
                    "channel pruning needs a CNN; use magnitude pruning for other families",
                ));
            }
            // Each convolution's channels chosen by its own trained kernels first, then the
            // next layers' weights on them zeroed (which changes no output).
            let mut chosen: Vec<(usize, usize, Vec<usize>)> = Vec::new();
            for &(i, _) in &kernels {
                let (rest, out) = (tensors[i].1[0], tensors[i].1[1]);
                chosen.push((
                    i,
                    out,
                    prune_channels(&mut tensors[i].2, rest, out, sparsity),
                ));
            }
            for (i, out, removed) in chosen {
                // The removed channels' biases too, so that they output exactly zero.
                let bias = tensors[i].0.replace(".weight", ".bias");
                if let Some(b) = tensors.iter().position(|t| t.0 == bias) {
                    for &o in &removed {
                        tensors[b].2[o] = 0.0;
                    }
                }
                // And the next layer's weights on them, which now only ever multiply zeros:
                // the next convolution's input channels (`convs.{i+1}`), or, after the last,
                // the dense layer's inputs of the flattened channel (`fc`, channel-major).
                let next = (tensors[i].0.strip_prefix("convs."))
                    .and_then(|rest| rest.strip_suffix(".weight"))
                    .and_then(|n| n.parse::<usize>().ok())
                    .map(|n| format!("convs.{}.weight", n + 1))
                    .filter(|name| tensors.iter().any(|t| t.0 == *name))
                    .unwrap_or_else(|| "fc.weight".into());
                if let Some(j) = tensors.iter().position(|t| t.0 == next && t.3) {
                    let (rows, cols) = (tensors[j].1[0], tensors[j].1[1]);
                    if rows % out == 0 {
                        // Rows of one input channel: k·k of a kernel, h·w of the flattened map.
                        let per = rows / out;
                        for &o in &removed {
                            tensors[j].2[o * per * cols..(o + 1) * per * cols].fill(0.0);
                        }
                    }
                }
            }
        }
        Method::NOfM { n, m } => {
            if m == 0 || n == 0 || n > m || m > 64 {
                return Err(bad(
                    format!("{n}:{m} is not an N:M pattern"),
                    "keep N of every M weights, 1 ≤ N ≤ M ≤ 64, e.g. --n 2 --m 4",
                ));
            }
            for &i in &targets {
                let (name, shape) = (&tensors[i].0, tensors[i].1.clone());
                if shape[0] % m != 0 {
                    return Err(bad(
                        format!("{name} has {} inputs, not a multiple of M = {m}", shape[0]),
                        "choose an M that divides every layer's input width",
                    ));
                }
                prune_n_of_m(&mut tensors[i].2, shape[0], shape[1], n, m);
            }
        }
        Method::Quantize { bits, scales } => {
            for &i in &targets {
                let (inputs, outputs) = (tensors[i].1[0], tensors[i].1[1]);
                let values = std::mem::take(&mut tensors[i].2);
                let groups = match scales {
                    Scales::Tensor => {
                        tensors[i].2 = quantize_dequantize(values, inputs, outputs, bits, 0)?;
                        1
                    }
                    Scales::Channel => {
                        // Each column quantised alone: one scale per output channel.
                        let mut out = values.clone();
                        for col in 0..outputs {
                            let column: Vec<f32> =
                                (0..inputs).map(|r| values[r * outputs + col]).collect();
                            let q = quantize_dequantize(column, inputs, 1, bits, 0)?;
                            for (r, x) in q.into_iter().enumerate() {
                                out[r * outputs + col] = x;
                            }
                        }
                        tensors[i].2 = out;
                        outputs
                    }
                    Scales::Block(block) => {
                        if block == 0 || block > 255 || inputs % block != 0 {
                            return Err(bad(
                                format!(
                                    "{} has {inputs} inputs: a block of {block} must be 1 to 255 and divide it",
                                    tensors[i].0
                                ),
                                "choose a --block that divides every layer's input width (e.g. 16 or 32), or per-tensor or per-channel scales",
                            ));
                        }
                        tensors[i].2 = quantize_dequantize(values, inputs, outputs, bits, block)?;
                        inputs / block * outputs
                    }
                };
                bytes_of[i] = (inputs * outputs) as u64 * u64::from(bits) / 8 + 4 * groups as u64;
            }
        }
    }
    let mut reports = Vec::new();
    for &i in &targets {
        let (name, shape, values, _) = &tensors[i];
        let params = (shape[0] * shape[1]) as u64;
        reports.push(LayerReport {
            name: name.clone(),
            params,
            nonzero: values.iter().filter(|x| **x != 0.0).count() as u64,
            bytes: if bytes_of[i] > 0 {
                bytes_of[i]
            } else {
                pruned_bytes(params, values.iter().filter(|x| **x != 0.0).count() as u64)
            },
        });
    }
    for (i, shape) in kernels {
        let (out, rest) = (shape[0], shape[1] * shape[2] * shape[3]);
        let matrix = std::mem::take(&mut tensors[i].2);
        tensors[i].2 = (0..rest * out)
            .map(|k| matrix[(k % rest) * out + k / rest])
            .collect();
        tensors[i].1 = shape;
    }
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, values, _)| {
            (
                name,
                shape,
                values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let bytes =
        crate::hf::f32_safetensors(&raw, None).map_err(|e| bad(e, "report this as a bug"))?;
    Ok((bytes, reports))
}

/// Windows of the training split Wanda measures its input norms on (Sun et al. use 128
/// sequences; here of the run's own context length).
pub const CALIBRATION_WINDOWS: usize = 128;

/// The seed that picks them.
const CALIBRATION_SEED: u64 = 0x57A4DA;

/// A run's model compressed by [`compress_run`] (or [`compress_classifier_run`]): its
/// record and its new weights.
pub struct Compressed<C = scalelab_spec::RunConfig, S = LmScores> {
    /// What was done and what it cost and kept.
    pub record: CompressionRecord<C, S>,
    /// The compressed weights (a safetensors file in scalelab's names).
    pub weights: Vec<u8>,
}

/// Compresses the trained language model in run directory `run` by `method` and scores it
/// before and after on its run's own validation sample (the windows its training evaluated,
/// so that "before" is the run's final validation loss), or on `eval_tokens` tokens of
/// windows chosen the same way.
pub fn compress_run(
    run: &std::path::Path,
    method: &Method,
    eval_tokens: Option<u64>,
    device: &Device,
) -> Result<Compressed, TrainError> {
    use scalelab_models::{FamilyModel, Gpt, RnnLm};
    let record_path = run.join("record.json");
    let text = std::fs::read_to_string(&record_path).map_err(|e| {
        bad(
            format!("cannot read {}: {e}", record_path.display()),
            "give the run directory of a trained language model",
        )
    })?;
    let record: scalelab_spec::RunRecord = serde_json::from_str(&text).map_err(|e| {
        bad(
            format!(
                "{} is not a language model's record: {e}",
                record_path.display()
            ),
            "give the run directory of a trained language model",
        )
    })?;
    let lm = crate::lm_eval::load(run)?;
    let (input, head) = if lm.config.family.is_gpt() {
        (Gpt::INPUT, Gpt::HEAD)
    } else {
        (RnnLm::INPUT, RnnLm::HEAD)
    };
    let under = |name: &str, field: &str| name == field || name.starts_with(&format!("{field}."));
    let target = |name: &str| !under(name, head) && !input.iter().any(|f| under(name, f));
    let data = &record.config.data;
    let corpus = scalelab_data::load_corpus(&data.source)?;
    let ctx = lm.config.ctx_len;
    let text = scalelab_data::TokenData::prepare(&corpus, data, ctx)?;
    // Wanda's calibration: windows of the training split, never the validation sample.
    let input_norms = match method {
        Method::Wanda { .. } => {
            let batch = text.train_batch(CALIBRATION_SEED, 0, CALIBRATION_WINDOWS, ctx);
            crate::lm_eval::input_norms(&lm, &batch.inputs, ctx, device)?
        }
        _ => Vec::new(),
    };
    let facts = ModelFacts {
        input_norms,
        n_heads: lm.config.n_heads,
    };
    let (weights, layers) = compress(&lm.weights, method, &target, &facts)?;
    let windows = text.val_windows(eval_tokens.unwrap_or(record.config.train.eval_tokens), ctx);
    let mean = |l: Vec<f64>| l.iter().sum::<f64>() / l.len().max(1) as f64;
    let before = mean(crate::lm_eval::losses_of(&lm, &windows, 16, device)?);
    let parent = lm.id.clone();
    // The same model with the compressed weights.
    let compressed = crate::lm_eval::TrainedLm { weights, ..lm };
    let after = mean(crate::lm_eval::losses_of(
        &compressed,
        &windows,
        16,
        device,
    )?);
    let scores = LmScores {
        val_loss_before: before,
        val_loss_after: after,
        val_tokens: (windows.len() * ctx) as u64,
    };
    let of = (
        record.config.clone(),
        record.params,
        record.param_convention.as_str(),
    );
    let record = CompressionRecord::new(&parent, of, *method, layers, scores);
    Ok(Compressed {
        record,
        weights: compressed.weights,
    })
}

/// Compresses the trained image classifier (MLP, CNN or ResNet) in run directory `run` by
/// `method` and scores it before and after on its run's own validation split and on the test
/// split.
pub fn compress_classifier_run(
    run: &std::path::Path,
    method: &Method,
    device: &Device,
) -> Result<Compressed<scalelab_spec::ClassifyConfig, ClassifierScores>, TrainError> {
    use scalelab_models::{Cnn, FamilyModel, Mlp, ResNet};
    use scalelab_spec::{ClassifierConfig, ClassifyRecord};
    let record_path = run.join("record.json");
    let record: ClassifyRecord = std::fs::read_to_string(&record_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or_else(|| {
            bad(
                format!(
                    "{} is not a trained classifier's record",
                    record_path.display()
                ),
                "give the run directory of a trained classifier or language model",
            )
        })?;
    let config = record.config.clone();
    let (input, head) = match &config.model {
        ClassifierConfig::Mlp(_) => (Mlp::INPUT, Mlp::HEAD),
        ClassifierConfig::Cnn(_) => (Cnn::INPUT, Cnn::HEAD),
        ClassifierConfig::Resnet(_) => {
            if matches!(method, Method::Channels { .. }) {
                return Err(bad(
                    "a ResNet normalises every convolution's output, so a zeroed channel is not removed".into(),
                    "prune a ResNet's channels by magnitude, or prune a CNN's channels",
                ));
            }
            (ResNet::INPUT, ResNet::HEAD)
        }
        _ => {
            return Err(bad(
                "compression of text classifiers is not offered".into(),
                "compress an image classifier (MLP, CNN, ResNet) or a language model",
            ));
        }
    };
    let under = |name: &str, field: &str| name == field || name.starts_with(&format!("{field}."));
    let target = |name: &str| !under(name, head) && !input.iter().any(|f| under(name, f));
    let weights_path = run.join(crate::transfer::WEIGHTS_FILE);
    let weights = std::fs::read(&weights_path).map_err(|source| TrainError::Io {
        action: "read",
        path: weights_path.clone(),
        source,
    })?;
    let (compressed, layers) = compress(&weights, method, &target, &ModelFacts::default())?;
    let splits = scalelab_data::load_images(
        config.dataset,
        config.data_dir.as_deref().map(std::path::Path::new),
    )?;
    let folds = config.fold.map(|f| (f, config.folds));
    let (_, val) = scalelab_data::classification_split(
        &splits.train,
        config.train_fraction,
        config.val_fraction,
        folds,
        config.seed,
    );
    let score = |bytes: Vec<u8>| -> Result<(SplitScore, SplitScore), TrainError> {
        let logits = crate::classify::classifier_logits::<scalelab_data::ImageBatch>(
            &config.model,
            bytes,
            &weights_path,
            device,
        )?
        .ok_or_else(|| bad("not an image classifier".into(), "report this as a bug"))?;
        let of = |m: scalelab_spec::ClassMetrics| SplitScore {
            loss: m.loss,
            accuracy: m.accuracy,
        };
        Ok((
            of(crate::classify::score_set(&logits, &val)),
            of(crate::classify::score_set(&logits, &splits.test)),
        ))
    };
    let (validation_before, test_before) = score(weights)?;
    let (validation_after, test_after) = score(compressed.clone())?;
    let scores = ClassifierScores {
        validation_before,
        validation_after,
        test_before,
        test_after,
    };
    let of = (config, record.params, record.param_convention.as_str());
    let record = CompressionRecord::new(&record.run_id, of, *method, layers, scores);
    Ok(Compressed {
        record,
        weights: compressed,
    })
}

/// Writes `model`, compressed from run directory `run`, into directory `out`: its weights,
/// the run's tokenizer (a BPE's), and its record last (each file atomically), so that a
/// directory with a record is whole.
pub fn write_compressed<C: Serialize, S: Serialize>(
    out: &std::path::Path,
    run: &std::path::Path,
    model: &Compressed<C, S>,
) -> Result<(), TrainError> {
    let io = |action: &'static str, path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(out).map_err(io("create", out))?;
    crate::fsutil::write_atomic(&out.join("weights.safetensors"), &model.weights)?;
    let tokenizer = run.join("tokenizer.json");
    if tokenizer.is_file() {
        let bytes = std::fs::read(&tokenizer).map_err(io("read", &tokenizer))?;
        crate::fsutil::write_atomic(&out.join("tokenizer.json"), &bytes)?;
    }
    let json = serde_json::to_string_pretty(&model.record).map_err(|e| {
        bad(
            format!("the compression record does not serialise: {e}"),
            "report this as a bug",
        )
    })?;
    crate::fsutil::write_atomic(&out.join(COMPRESSION_FILE), json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn zeros(v: &[f32]) -> usize {
        v.iter().filter(|x| **x == 0.0).count()
    }

    /// Per layer: exactly the asked share is zero in each layer, and no kept weight is smaller
    /// than a pruned one was.
    #[test]
    fn magnitude_pruning_zeros_exactly_the_smallest_share() {
        let original = values(1000, 1);
        let mut v = original.clone();
        prune_magnitude(&mut v, 0.3);
        assert_eq!(zeros(&v), 300);
        let largest_pruned = original
            .iter()
            .zip(&v)
            .filter(|(_, p)| **p == 0.0)
            .map(|(o, _)| o.abs())
            .fold(0.0, f32::max);
        let smallest_kept = v
            .iter()
            .filter(|x| **x != 0.0)
            .map(|x| x.abs())
            .fold(f32::MAX, f32::min);
        assert!(largest_pruned <= smallest_kept);
    }

    /// Global: exactly the asked share of all weights is zero, unevenly across layers (a layer
    /// of small weights loses more).
    #[test]
    fn global_pruning_hits_the_total_and_prefers_small_layers() {
        let big: Vec<f32> = values(600, 2);
        let small: Vec<f32> = values(400, 3).iter().map(|x| x * 0.1).collect();
        let mut layers = vec![big, small];
        prune_global(&mut layers, 0.5);
        assert_eq!(zeros(&layers[0]) + zeros(&layers[1]), 500);
        assert_eq!(
            zeros(&layers[1]),
            400,
            "every small weight is below every large one's median"
        );
    }

    /// Wanda: exactly the asked share of each output's weights is zeroed, by |W|·‖X‖: a
    /// large weight on an input that is nearly silent goes before a small weight on a loud
    /// one (by magnitude the 1.0 would stay and the 0.1 go).
    #[test]
    fn wanda_prunes_by_weight_times_input_norm_in_each_output() {
        let (inputs, outputs) = (4, 2);
        // Column 0: weights 1.0, 0.1, 0.5, 0.2 on inputs of norm 0.01, 100, 1, 1.
        // Scores 0.01, 10, 0.5, 0.2: the two smallest are inputs 0 and 3.
        let mut v = vec![1.0, 1.0, 0.1, 1.0, 0.5, 1.0, 0.2, 1.0];
        let norms = [0.01, 100.0, 1.0, 1.0];
        prune_wanda(&mut v, inputs, outputs, &norms, 0.5);
        let column =
            |v: &[f32], c: usize| (0..inputs).map(|r| v[r * outputs + c]).collect::<Vec<_>>();
        assert_eq!(column(&v, 0), [0.0, 0.1, 0.5, 0.0]);
        // Column 1: equal weights, so the two quietest inputs (0, then 2 or 3: the lower).
        assert_eq!(column(&v, 1), [0.0, 1.0, 0.0, 1.0]);
        // Exactly round(s × inputs) a column at other shares.
        let mut w = values(64 * 8, 9);
        let norms: Vec<f32> = (0..64).map(|i| 1.0 + i as f32).collect();
        prune_wanda(&mut w, 64, 8, &norms, 0.75);
        for c in 0..8 {
            assert_eq!((0..64).filter(|r| w[r * 8 + c] == 0.0).count(), 48);
        }
    }

    /// Structured, neurons: exactly the asked share of hidden neurons loses its whole input
    /// column and output row, the weakest by the product of their norms; the rest untouched.
    #[test]
    fn neuron_pruning_removes_whole_neurons_the_weakest_first() {
        let (d, f) = (4, 8);
        let mut fc = values(d * f, 11);
        let mut fc_proj = values(f * d, 12);
        // Neuron 5 made the weakest: its input column tiny.
        (0..d).for_each(|r| fc[r * f + 5] *= 1e-3);
        let (fc0, proj0) = (fc.clone(), fc_proj.clone());
        prune_neurons(&mut fc, &mut fc_proj, d, f, 0.25);
        let dead: Vec<usize> = (0..f)
            .filter(|&k| (0..d).all(|r| fc[r * f + k] == 0.0))
            .collect();
        assert_eq!(dead.len(), 2);
        assert!(dead.contains(&5));
        for k in 0..f {
            let row = &fc_proj[k * d..(k + 1) * d];
            if dead.contains(&k) {
                assert!(row.iter().all(|x| *x == 0.0));
            } else {
                assert_eq!(row, &proj0[k * d..(k + 1) * d]);
                assert!((0..d).all(|r| fc[r * f + k] == fc0[r * f + k]));
            }
        }
    }

    /// Structured, heads: half of four heads lose their query, key and value columns and
    /// their output rows; the head with the weakest values goes first.
    #[test]
    fn head_pruning_removes_whole_heads() {
        let (d, heads) = (8, 4);
        let hs = d / heads;
        let mut qkv = values(d * 3 * d, 13);
        let mut proj = values(d * d, 14);
        // Head 2's value columns made tiny.
        for r in 0..d {
            for c in 2 * d + 2 * hs..2 * d + 3 * hs {
                qkv[r * 3 * d + c] *= 1e-3;
            }
        }
        prune_heads(&mut qkv, &mut proj, d, heads, 0.5);
        let dead: Vec<usize> = (0..heads)
            .filter(|&h| proj[h * hs * d..(h + 1) * hs * d].iter().all(|x| *x == 0.0))
            .collect();
        assert_eq!(dead.len(), 2);
        assert!(dead.contains(&2));
        for h in 0..heads {
            for part in 0..3 {
                let zero = (0..d).all(|r| {
                    (part * d + h * hs..part * d + (h + 1) * hs).all(|c| qkv[r * 3 * d + c] == 0.0)
                });
                assert_eq!(zero, dead.contains(&h), "head {h}, part {part}");
            }
        }
        assert_eq!(zeros(&qkv), 2 * 3 * d * hs);
    }

    /// Channels: a convolution kernel `[out, in, kh, kw]` loses exactly the asked share of
    /// its output channels, the weakest, whole, with their biases; the rest of the file,
    /// layout included, is unchanged (the kernel is read as a matrix and written back).
    #[test]
    fn channel_pruning_removes_whole_output_channels_of_a_convolution() {
        let (out, inp, k) = (4usize, 2usize, 3usize);
        let rest = inp * k * k;
        let mut kernel = values(out * rest, 15);
        // Channel 1 the weakest.
        kernel[rest..2 * rest].iter_mut().for_each(|x| *x *= 1e-3);
        let bias = vec![0.5f32; out];
        let as_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let file = crate::hf::f32_safetensors(
            &[
                ("convs.0.bias".into(), vec![out], as_bytes(&bias)),
                (
                    "convs.0.weight".into(),
                    vec![out, inp, k, k],
                    as_bytes(&kernel),
                ),
            ],
            None,
        )
        .unwrap();
        let (pruned, layers) = compress(
            &file,
            &Method::Channels { sparsity: 0.5 },
            &|name: &str| name.starts_with("convs."),
            &ModelFacts::default(),
        )
        .unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].nonzero, (out * rest / 2) as u64);
        let st = SafeTensors::deserialize(&pruned).unwrap();
        let read = |name: &str| -> Vec<f32> {
            st.tensor(name)
                .unwrap()
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        assert_eq!(
            st.tensor("convs.0.weight").unwrap().shape(),
            [out, inp, k, k]
        );
        let (w, b) = (read("convs.0.weight"), read("convs.0.bias"));
        let dead: Vec<usize> = (0..out)
            .filter(|&o| w[o * rest..(o + 1) * rest].iter().all(|x| *x == 0.0))
            .collect();
        assert_eq!(dead.len(), 2);
        assert!(dead.contains(&1));
        for o in 0..out {
            if dead.contains(&o) {
                assert_eq!(b[o], 0.0);
            } else {
                assert_eq!(
                    &w[o * rest..(o + 1) * rest],
                    &kernel[o * rest..(o + 1) * rest]
                );
                assert_eq!(b[o], 0.5);
            }
        }
    }

    /// 2:4: every group of four consecutive inputs of every output keeps exactly two, its two
    /// largest.
    #[test]
    fn n_of_m_keeps_n_in_every_group() {
        let (inputs, outputs) = (8, 3);
        let original = values(inputs * outputs, 4);
        let mut v = original.clone();
        prune_n_of_m(&mut v, inputs, outputs, 2, 4);
        for col in 0..outputs {
            for group in 0..inputs / 4 {
                let idx: Vec<usize> = (0..4).map(|r| (group * 4 + r) * outputs + col).collect();
                let kept: Vec<usize> = idx.iter().copied().filter(|&i| v[i] != 0.0).collect();
                assert_eq!(kept.len(), 2);
                let min_kept = kept
                    .iter()
                    .map(|&i| original[i].abs())
                    .fold(f32::MAX, f32::min);
                for &i in &idx {
                    if v[i] == 0.0 {
                        assert!(original[i].abs() <= min_kept);
                    }
                }
            }
        }
    }

    /// Symmetric quantisation with scale s = max|w| / (2^(b−1) − 1) per scale group moves each
    /// weight by at most s/2 (rounding to the nearest level): checked per tensor and per block
    /// at 8 and 4 bits, with a little slack for float rounding.
    #[test]
    fn quantise_dequantise_error_is_at_most_half_a_step() {
        let (inputs, outputs) = (16, 4);
        let w = values(inputs * outputs, 5);
        for bits in [8u32, 4] {
            let levels = ((1u32 << (bits - 1)) - 1) as f32;
            for block in [0usize, 4, 16] {
                let q = quantize_dequantize(w.clone(), inputs, outputs, bits, block).unwrap();
                for col in 0..outputs {
                    for r in 0..inputs {
                        let group: Vec<usize> = match r.checked_div(block) {
                            None => (0..w.len()).collect(),
                            Some(b) => (b * block..(b + 1) * block)
                                .map(|i| i * outputs + col)
                                .collect(),
                        };
                        let s = group.iter().map(|&i| w[i].abs()).fold(0.0, f32::max) / levels;
                        let i = r * outputs + col;
                        assert!(
                            (q[i] - w[i]).abs() <= 0.5 * s * 1.0001 + 1e-7,
                            "{bits} bits, block {block}: {} vs {}",
                            q[i],
                            w[i]
                        );
                    }
                }
                let distinct: std::collections::BTreeSet<u32> =
                    q.iter().map(|x| x.to_bits()).collect();
                if block == 0 {
                    assert!(
                        distinct.len() <= (2 * levels as usize) + 1,
                        "{bits} bits: {} levels",
                        distinct.len()
                    );
                }
            }
        }
    }
}
