//! One-shot compression of a trained model's weights: magnitude pruning (per layer, or with
//! one global threshold), Wanda, structured pruning (whole MLP neurons, attention heads, CNN
//! channels), N:M semi-structured pruning (N kept of every M consecutive inputs of an output,
//! NVIDIA's 2:4), and post-training weight quantisation through Burn's quantisation
//! (`QuantScheme`: symmetric 8- or 4-bit values, one scale per tensor, per output channel or
//! per block of inputs), kept as the dequantised float weights (quantise–dequantise, "fake"
//! quantisation: the CPU backend computes in float, so the loss is that of the quantised model
//! and the bytes are counted, not stored).
//!
//! Only the layers' weight matrices and convolution kernels are compressed (outside the
//! model's input and output layers: a GPT's qkv, projection and MLP matrices); embeddings, the
//! head, biases and norms stay as they are, as in Frantar et al. 2023 and Zhu & Gupta 2017.
//!
//! This file holds the records and the pass over a weights file ([`compress`]); `matrix.rs`
//! the methods on one matrix; `run.rs` the compression of a trained run and its scoring.

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::TrainError;

mod matrix;
mod run;

pub use matrix::{
    prune_channels, prune_global, prune_heads, prune_magnitude, prune_n_of_m, prune_neurons,
    prune_wanda, pruned_bytes, quantize_dequantize,
};
pub use run::{
    CALIBRATION_WINDOWS, Compressed, compress_classifier_run, compress_run, write_compressed,
};
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

pub(crate) fn bad(message: String, hint: &str) -> TrainError {
    TrainError::Compress {
        message,
        hint: hint.into(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
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
}
