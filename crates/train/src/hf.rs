//! Hugging Face `transformers` GPT-2 checkpoints: a GPT run written as a `GPT2LMHeadModel`
//! directory (`config.json`, `model.safetensors`), and such a directory read as a GPT.
//!
//! scalelab's GPT is GPT-2's architecture (Radford et al. 2019): learned positions,
//! pre-LayerNorm blocks (ε = 1e-5), one fused QKV projection split q, k, v along its output,
//! attention scaled by 1/√head_dim, a 4× GELU MLP, a final LayerNorm, a bias-free head tied or
//! not. Burn keeps a linear layer's weight as `[in, out]`, which is the layout of GPT-2's
//! `Conv1D`, so block weights map by name alone; only an untied head, an `nn.Linear` in
//! `transformers` (`[out, in]`), is transposed. The differences, said where they arise:
//! scalelab's GELU is the exact (erf) one, `activation_function = "gelu"`; a checkpoint with
//! GPT-2's own tanh approximation (`gelu_new`) is read with a warning (its activations differ
//! by up to ~5e-4), and every other setting scalelab cannot compute is refused with the reason.
//!
//! The name table is here once; both directions use it.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use scalelab_spec::{Family, LmConfig};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::TrainError;

/// The weights file of a `transformers` model directory.
pub const HF_WEIGHTS: &str = "model.safetensors";
/// Its config.
pub const HF_CONFIG: &str = "config.json";

fn refuse(path: &Path, message: impl Into<String>, hint: impl Into<String>) -> TrainError {
    TrainError::HuggingFace {
        path: path.to_path_buf(),
        message: message.into(),
        hint: hint.into(),
    }
}

/// Whether `dir` is a `transformers` model directory rather than a scalelab run.
pub fn is_hf_dir(dir: &Path) -> bool {
    dir.join(HF_CONFIG).is_file() && !dir.join("record.json").is_file()
}

/// The identity of a checkpoint's weights: `hf-` and the first 16 hex digits of the SHA-256
/// of its safetensors file, so that runs started from it name it by content.
pub fn weights_id(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("hf-{hex}")
}

/// `(scalelab name, GPT-2 name, transposed)` of every tensor of a GPT of `n_layers` blocks;
/// the head only when untied.
fn names(n_layers: usize, tied: bool) -> Vec<(String, String, bool)> {
    let mut table = vec![
        (
            "token_embedding.weight".into(),
            "transformer.wte.weight".into(),
            false,
        ),
        (
            "position_embedding.weight".into(),
            "transformer.wpe.weight".into(),
            false,
        ),
        ("ln_f.gamma".into(), "transformer.ln_f.weight".into(), false),
        ("ln_f.beta".into(), "transformer.ln_f.bias".into(), false),
    ];
    for i in 0..n_layers {
        for (ours, theirs) in [
            ("ln1.gamma", "ln_1.weight"),
            ("ln1.beta", "ln_1.bias"),
            ("qkv.weight", "attn.c_attn.weight"),
            ("qkv.bias", "attn.c_attn.bias"),
            ("proj.weight", "attn.c_proj.weight"),
            ("proj.bias", "attn.c_proj.bias"),
            ("ln2.gamma", "ln_2.weight"),
            ("ln2.beta", "ln_2.bias"),
            ("fc.weight", "mlp.c_fc.weight"),
            ("fc.bias", "mlp.c_fc.bias"),
            ("fc_proj.weight", "mlp.c_proj.weight"),
            ("fc_proj.bias", "mlp.c_proj.bias"),
        ] {
            table.push((
                format!("blocks.{i}.{ours}"),
                format!("transformer.h.{i}.{theirs}"),
                false,
            ));
        }
    }
    if !tied {
        table.push(("head.weight".into(), "lm_head.weight".into(), true));
    }
    table
}

/// A 2-D float32 tensor's bytes transposed: `[rows, cols]` → `[cols, rows]`.
fn transpose(data: &[u8], rows: usize, cols: usize) -> Vec<u8> {
    let mut out = vec![0u8; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            let from = 4 * (r * cols + c);
            let to = 4 * (c * rows + r);
            out[to..to + 4].copy_from_slice(&data[from..from + 4]);
        }
    }
    out
}

/// Float32 bytes of a tensor stored as F32, F16 or BF16.
fn as_f32(view: &TensorView<'_>, name: &str, path: &Path) -> Result<Vec<u8>, TrainError> {
    let data = view.data();
    let widen = |f: fn([u8; 2]) -> f32| -> Vec<u8> {
        data.chunks_exact(2)
            .flat_map(|c| f([c[0], c[1]]).to_le_bytes())
            .collect()
    };
    match view.dtype() {
        Dtype::F32 => Ok(data.to_vec()),
        Dtype::F16 => Ok(widen(|b| half::f16::from_le_bytes(b).to_f32())),
        Dtype::BF16 => Ok(widen(|b| half::bf16::from_le_bytes(b).to_f32())),
        other => Err(refuse(
            path,
            format!(
                "tensor {name} is {other:?}; scalelab reads float32, float16 and bfloat16 weights"
            ),
            "save the model in one of those (model.to(torch.float32).save_pretrained(DIR))",
        )),
    }
}

/// Named float32 tensors (`(name, shape, little-endian bytes)`) as a safetensors file, or why
/// not (the GPT-2 export and compression both write through it).
pub(crate) fn f32_safetensors(
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, String> {
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot lay out the weights: {e}"))?;
    safetensors::serialize(views, metadata).map_err(|e| format!("cannot write the weights: {e}"))
}

/// Writes named float32 tensors as a safetensors file.
fn serialize(
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
    metadata: HashMap<String, String>,
    path: &Path,
) -> Result<Vec<u8>, TrainError> {
    f32_safetensors(&tensors, Some(metadata)).map_err(|e| refuse(path, e, "report this as a bug"))
}

fn read_safetensors<'a>(bytes: &'a [u8], path: &Path) -> Result<SafeTensors<'a>, TrainError> {
    SafeTensors::deserialize(bytes).map_err(|e| {
        refuse(
            path,
            format!("not a safetensors file: {e}"),
            "give the weights file of a scalelab run or of a transformers model directory",
        )
    })
}

/// `transformers`' `config.json` of a GPT-2 with `model`'s shape, or why there is none.
pub fn gpt2_config(model: &LmConfig, path: &Path) -> Result<Value, TrainError> {
    if model.family != Family::Gpt {
        return Err(refuse(
            path,
            format!(
                "a {} language model has no GPT-2 form (only the GPT family maps onto GPT2LMHeadModel)",
                model.family
            ),
            "export a GPT run, or use the run's own weights.safetensors",
        ));
    }
    Ok(json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": model.vocab_size,
        "n_positions": model.ctx_len,
        "n_embd": model.d_model,
        "n_layer": model.n_layers,
        "n_head": model.n_heads,
        "n_inner": model.d_ff,
        // scalelab's GELU is the exact, erf-based one (torch.nn.functional.gelu).
        "activation_function": "gelu",
        "resid_pdrop": model.dropout,
        "embd_pdrop": model.dropout,
        "attn_pdrop": 0.0,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "scale_attn_weights": true,
        "scale_attn_by_inverse_layer_idx": false,
        "reorder_and_upcast_attn": false,
        "tie_word_embeddings": model.tie_embeddings,
        "use_cache": true,
        "bos_token_id": null,
        "eos_token_id": null,
        "torch_dtype": "float32",
    }))
}

/// The GPT shape of a `transformers` GPT-2 `config.json`, with warnings for what scalelab
/// computes slightly differently; refuses what it cannot compute.
pub fn lm_config(config: &Value, path: &Path) -> Result<(LmConfig, Vec<String>), TrainError> {
    let model_type = config["model_type"].as_str().unwrap_or("");
    if model_type != "gpt2" {
        return Err(refuse(
            path,
            format!("model_type is {model_type:?}; scalelab reads GPT-2 checkpoints (\"gpt2\")"),
            "give a GPT2LMHeadModel directory (config.json with model_type \"gpt2\")",
        ));
    }
    // GPT2Config's defaults, for keys a config leaves out.
    let size = |key: &str, default: usize| -> Result<usize, TrainError> {
        match &config[key] {
            Value::Null => Ok(default),
            v => v
                .as_u64()
                .filter(|&n| n > 0 && n <= 1 << 24)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    refuse(
                        path,
                        format!("{key} = {v} is not a size from 1 to 2^24"),
                        "check config.json",
                    )
                }),
        }
    };
    let flag = |key: &str, default: bool| config[key].as_bool().unwrap_or(default);
    let d_model = size("n_embd", 768)?;
    let n_heads = size("n_head", 12)?;
    if d_model % n_heads != 0 {
        return Err(refuse(
            path,
            format!("n_embd = {d_model} is not a multiple of n_head = {n_heads}"),
            "check config.json",
        ));
    }
    let d_ff = match &config["n_inner"] {
        Value::Null => 4 * d_model,
        _ => size("n_inner", 4 * d_model)?,
    };
    let mut warnings = Vec::new();
    match config["activation_function"].as_str().unwrap_or("gelu_new") {
        "gelu" => {}
        tanh @ ("gelu_new" | "gelu_pytorch_tanh" | "gelu_fast") => warnings.push(format!(
            "activation_function = {tanh:?} is GELU's tanh approximation; scalelab computes the exact (erf) GELU, which differs by up to ~5e-4 per activation, so losses differ slightly from transformers'"
        )),
        other => {
            return Err(refuse(
                path,
                format!("activation_function = {other:?}: scalelab's GPT uses GELU"),
                "give a GPT-2 with a GELU activation",
            ));
        }
    }
    let eps = config["layer_norm_epsilon"].as_f64().unwrap_or(1e-5);
    if (eps - 1e-5).abs() > 1e-12 {
        return Err(refuse(
            path,
            format!("layer_norm_epsilon = {eps}: scalelab's LayerNorm uses 1e-5"),
            "give a GPT-2 with layer_norm_epsilon 1e-5",
        ));
    }
    if !flag("scale_attn_weights", true) || flag("scale_attn_by_inverse_layer_idx", false) {
        return Err(refuse(
            path,
            "its attention is scaled otherwise than by 1/sqrt(head_dim) (scale_attn_weights false or scale_attn_by_inverse_layer_idx true)",
            "give a GPT-2 with the standard attention scaling",
        ));
    }
    let dropout = config["resid_pdrop"].as_f64().unwrap_or(0.1);
    Ok((
        LmConfig {
            n_layers: size("n_layer", 12)?,
            d_model,
            n_heads,
            d_ff,
            ctx_len: size("n_positions", 1024)?,
            vocab_size: size("vocab_size", 50257)?,
            dropout: if (0.0..1.0).contains(&dropout) {
                dropout
            } else {
                0.0
            },
            tie_embeddings: flag("tie_word_embeddings", true),
            share_layers: false,
            family: Family::Gpt,
        },
        warnings,
    ))
}

/// The GPT shape of the `transformers` directory `dir` (its `config.json`), with warnings.
pub fn read_config(dir: &Path) -> Result<(LmConfig, Vec<String>), TrainError> {
    let path = dir.join(HF_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        refuse(
            dir,
            format!("cannot read {}: {e}", path.display()),
            "give a transformers model directory (save_pretrained writes config.json)",
        )
    })?;
    let config: Value = serde_json::from_str(&text).map_err(|e| {
        refuse(
            dir,
            format!("{} does not parse: {e}", path.display()),
            "check the file",
        )
    })?;
    lm_config(&config, &path)
}

/// A GPT run's weights (scalelab's safetensors) in GPT-2's names and layout (a run with
/// shared layers: its one block written as every block).
pub fn to_gpt2(ours: &[u8], model: &LmConfig, path: &Path) -> Result<Vec<u8>, TrainError> {
    let st = read_safetensors(ours, path)?;
    // A model whose layers share one block is a GPT-2 whose blocks are all that block.
    let table: Vec<(String, String, bool)> = names(model.n_layers, model.tie_embeddings)
        .into_iter()
        .map(|(ours, theirs, t)| match ours.strip_prefix("blocks.") {
            Some(rest) if model.share_layers => {
                let leaf = rest.split_once('.').map_or(rest, |(_, leaf)| leaf);
                (format!("blocks.0.{leaf}"), theirs, t)
            }
            _ => (ours, theirs, t),
        })
        .collect();
    let extra: Vec<String> = st
        .names()
        .into_iter()
        .filter(|n| !table.iter().any(|(o, _, _)| o == n))
        .map(str::to_string)
        .collect();
    if !extra.is_empty() {
        return Err(refuse(
            path,
            format!(
                "the run's weights hold tensors GPT-2 has no place for: {}",
                extra.join(", ")
            ),
            "export a plain GPT run (LoRA adapters are not merged into the weights)",
        ));
    }
    let mut tensors = Vec::new();
    for (ours_name, theirs, transposed) in table {
        let view = st.tensor(&ours_name).map_err(|_| {
            refuse(
                path,
                format!("tensor {ours_name} is missing"),
                "the weights do not belong to this record's model; train the run again",
            )
        })?;
        let data = as_f32(&view, &ours_name, path)?;
        let shape = view.shape().to_vec();
        let (shape, data) = match (transposed, shape.as_slice()) {
            (true, &[rows, cols]) => (vec![cols, rows], transpose(&data, rows, cols)),
            _ => (shape, data),
        };
        tensors.push((theirs, shape, data));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    serialize(tensors, metadata, path)
}

/// A `transformers` GPT-2's weights in scalelab's names and layout, checked against `model`.
/// The causal-mask buffers older checkpoints keep (`attn.bias`, `attn.masked_bias`) are
/// skipped; names with or without the `transformer.` prefix are read; a tied model's
/// `lm_head.weight`, a copy of the token embedding, is left out.
pub fn from_gpt2(theirs: &[u8], model: &LmConfig, path: &Path) -> Result<Vec<u8>, TrainError> {
    let st = read_safetensors(theirs, path)?;
    let mut tensors = Vec::new();
    for (ours, theirs_name, transposed) in names(model.n_layers, model.tie_embeddings) {
        let bare = theirs_name
            .strip_prefix("transformer.")
            .unwrap_or(&theirs_name);
        let view = st
            .tensor(&theirs_name)
            .or_else(|_| st.tensor(bare))
            .map_err(|_| {
                refuse(
                    path,
                    format!("tensor {theirs_name} is missing"),
                    if ours == "head.weight" {
                        "an untied GPT-2 (tie_word_embeddings false) needs lm_head.weight"
                    } else {
                        "the weights do not match config.json's n_layer"
                    },
                )
            })?;
        let data = as_f32(&view, &theirs_name, path)?;
        let shape = view.shape().to_vec();
        let (shape, data) = match (transposed, shape.as_slice()) {
            (true, &[rows, cols]) => (vec![cols, rows], transpose(&data, rows, cols)),
            _ => (shape, data),
        };
        tensors.push((ours, shape, data));
    }
    let metadata = HashMap::from([(
        "producer".to_string(),
        "scalelab (from transformers GPT-2)".to_string(),
    )]);
    serialize(tensors, metadata, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(tied: bool) -> LmConfig {
        LmConfig {
            n_layers: 2,
            d_model: 4,
            n_heads: 2,
            d_ff: 16,
            ctx_len: 8,
            vocab_size: 6,
            dropout: 0.0,
            tie_embeddings: tied,
            share_layers: false,
            family: Family::Gpt,
        }
    }

    /// Weights with every tensor a run of `model` has, each element its own index (so a
    /// transposition or a swapped name shows).
    fn weights(model: &LmConfig) -> Vec<u8> {
        let (d, f, v, t) = (model.d_model, model.d_ff, model.vocab_size, model.ctx_len);
        let mut tensors = Vec::new();
        for (name, _, _) in names(model.n_layers, model.tie_embeddings) {
            let leaf = name.rsplit('.').nth(1).unwrap_or("");
            let last = name.rsplit('.').next().unwrap_or("");
            let shape = match (leaf, last) {
                ("token_embedding", _) => vec![v, d],
                ("position_embedding", _) => vec![t, d],
                ("head", _) => vec![d, v],
                ("qkv", "weight") => vec![d, 3 * d],
                ("qkv", _) => vec![3 * d],
                ("fc", "weight") => vec![d, f],
                ("fc", _) => vec![f],
                ("fc_proj", "weight") => vec![f, d],
                ("proj", "weight") => vec![d, d],
                _ => vec![d],
            };
            let n: usize = shape.iter().product();
            let data = (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect();
            tensors.push((name, shape, data));
        }
        serialize(tensors, HashMap::new(), Path::new("test")).unwrap()
    }

    #[test]
    fn export_then_import_gives_back_the_same_weights() {
        for tied in [false, true] {
            let m = model(tied);
            let ours = weights(&m);
            let theirs = to_gpt2(&ours, &m, Path::new("x")).unwrap();
            let back = from_gpt2(&theirs, &m, Path::new("x")).unwrap();
            let (a, b) = (
                SafeTensors::deserialize(&ours).unwrap(),
                SafeTensors::deserialize(&back).unwrap(),
            );
            let mut names_a = a.names();
            names_a.sort();
            let mut names_b = b.names();
            names_b.sort();
            assert_eq!(names_a, names_b);
            for name in names_a {
                let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
                assert_eq!(x.shape(), y.shape(), "{name}");
                assert_eq!(x.data(), y.data(), "{name}");
            }
        }
    }

    /// The untied head goes out as `nn.Linear`'s `[vocab, d]`: element (v, i) of GPT-2's
    /// `lm_head.weight` is element (i, v) of scalelab's `head.weight`; block weights keep
    /// their `[in, out]` layout (GPT-2's Conv1D).
    #[test]
    fn the_head_is_transposed_and_conv1d_weights_are_not() {
        let m = model(false);
        let theirs = to_gpt2(&weights(&m), &m, Path::new("x")).unwrap();
        let st = SafeTensors::deserialize(&theirs).unwrap();
        let head = st.tensor("lm_head.weight").unwrap();
        assert_eq!(head.shape(), &[6, 4]);
        let at =
            |data: &[u8], i: usize| f32::from_le_bytes(data[4 * i..4 * i + 4].try_into().unwrap());
        // lm_head[v=1][i=2] = head[i=2][v=1] = 2·6 + 1.
        assert_eq!(at(head.data(), 4 + 2), 13.0);
        let c_attn = st.tensor("transformer.h.0.attn.c_attn.weight").unwrap();
        assert_eq!(c_attn.shape(), &[4, 12]);
        assert_eq!(at(c_attn.data(), 5), 5.0);
    }

    #[test]
    fn configs_round_trip_and_refusals_say_why() {
        let m = model(true);
        let config = gpt2_config(&m, Path::new("x")).unwrap();
        let (back, warnings) = lm_config(&config, Path::new("x")).unwrap();
        assert_eq!(back, m);
        assert!(warnings.is_empty());
        let mut tanh = config.clone();
        tanh["activation_function"] = json!("gelu_new");
        assert_eq!(lm_config(&tanh, Path::new("x")).unwrap().1.len(), 1);
        for (key, value, says) in [
            ("model_type", json!("llama"), "model_type"),
            ("activation_function", json!("relu"), "relu"),
            ("layer_norm_epsilon", json!(1e-6), "1e-5"),
            ("scale_attn_by_inverse_layer_idx", json!(true), "scaled"),
            ("n_embd", json!(5), "multiple"),
            ("n_layer", json!(-1), "n_layer"),
        ] {
            let mut bad = config.clone();
            bad[key] = value;
            let err = lm_config(&bad, Path::new("x")).unwrap_err().to_string();
            assert!(err.contains(says), "{key}: {err}");
        }
        let mut lstm = m.clone();
        lstm.family = Family::Lstm;
        assert!(gpt2_config(&lstm, Path::new("x")).is_err());
    }

    /// A shared-layer model exports as a GPT-2 whose every block is its one block.
    #[test]
    fn shared_layers_export_as_copies_of_the_one_block() {
        let mut shared = model(true);
        shared.share_layers = true;
        let one = LmConfig {
            n_layers: 1,
            share_layers: false,
            ..shared.clone()
        };
        let theirs = to_gpt2(&weights(&one), &shared, Path::new("x")).unwrap();
        let st = SafeTensors::deserialize(&theirs).unwrap();
        for leaf in ["attn.c_attn.weight", "mlp.c_proj.bias", "ln_2.weight"] {
            let a = st.tensor(&format!("transformer.h.0.{leaf}")).unwrap();
            let b = st.tensor(&format!("transformer.h.1.{leaf}")).unwrap();
            assert_eq!(a.data(), b.data(), "{leaf}");
        }
    }

    #[test]
    fn extra_tensors_are_refused_not_dropped() {
        let m = model(true);
        let untied = model(false);
        // An untied run's head has no place in a tied GPT-2.
        let err = to_gpt2(&weights(&untied), &m, Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("head.weight"), "{err}");
    }
}
