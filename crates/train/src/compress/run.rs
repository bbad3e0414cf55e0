//! Compressing a trained run: a language model scored on its run's own validation sample, an
//! image classifier on its validation and test splits, and the compressed model's directory.

use burn::tensor::Device;
use serde::Serialize;

use super::{
    COMPRESSION_FILE, ClassifierScores, CompressionRecord, LmScores, Method, ModelFacts,
    SplitScore, bad, compress,
};
use crate::TrainError;

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
