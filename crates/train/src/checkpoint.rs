//! Checkpoints: the weights as safetensors, the optimiser state as burnpack, and the run's
//! state (resolved config, progress, curve so far) as JSON beside them.
//!
//! A checkpoint directory is written whole under a temporary name and then renamed into
//! place; the previous one is kept as `checkpoint.old` until the new one is in place, so a
//! process killed at any moment leaves at least one complete checkpoint.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Bytes;
use scalelab_spec::{CurvePoint, RunConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::fsutil::write_atomic;

/// Schema version of [`CheckpointState`].
pub const CHECKPOINT_SCHEMA_VERSION: u32 = 1;

const WEIGHTS: &str = "model.safetensors";
const OPTIMIZER: &str = "optimizer.bpk";
const STATE: &str = "state.json";
/// The best weights so far of a run with early stopping.
const BEST: &str = "best.safetensors";

/// Progress of a run at a checkpoint: of a language model by default (`C` its resolved config,
/// `P` a point of its curve); a classifier's counts samples where this says tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "C: Serialize, P: Serialize",
    deserialize = "C: DeserializeOwned, P: DeserializeOwned"
))]
pub struct CheckpointState<C = RunConfig, P = CurvePoint> {
    /// See [`CHECKPOINT_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Identity of the run the checkpoint belongs to.
    pub run_id: String,
    /// The run's resolved config.
    pub config: C,
    /// Optimiser steps taken.
    pub step: u64,
    /// Training tokens consumed.
    pub tokens_seen: u64,
    /// Evaluations so far.
    pub curve: Vec<P>,
    /// Sum and count of training losses since the last evaluation.
    pub pending_loss: (f64, u64),
    /// Wall seconds of training so far.
    pub wall_secs: f64,
    /// When the run first started.
    pub started_unix_secs: u64,
}

/// The checkpoint directory of a run directory.
pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint")
}

/// Saves a checkpoint of `model`, `optimizer` and `state` under `run_dir`, with the best
/// weights so far of a run with early stopping (`best`).
pub fn save<M: Module, C: Serialize, P: Serialize>(
    run_dir: &Path,
    model: &M,
    optimizer: &ModuleOptimizer,
    state: &CheckpointState<C, P>,
    best: Option<&M>,
) -> Result<(), TrainError> {
    let final_dir = checkpoint_dir(run_dir);
    let tmp_dir = run_dir.join(".checkpoint.tmp");
    let old_dir = run_dir.join("checkpoint.old");
    let io = |action, path: &Path, source| TrainError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    if tmp_dir.exists() {
        fs::remove_dir_all(&tmp_dir).map_err(|e| io("remove", &tmp_dir, e))?;
    }
    fs::create_dir_all(&tmp_dir).map_err(|e| io("create", &tmp_dir, e))?;
    let written = (|| {
        write_atomic(&tmp_dir.join(WEIGHTS), &weight_bytes(model, &tmp_dir)?)?;
        if let Some(best) = best {
            write_atomic(&tmp_dir.join(BEST), &weight_bytes(best, &tmp_dir)?)?;
        }
        let optim = optimizer
            .into_bytes()
            .map_err(|e| bad(&tmp_dir, format!("saving optimiser state: {e}")))?;
        write_atomic(&tmp_dir.join(OPTIMIZER), &optim)?;
        let json = serde_json::to_vec_pretty(state).map_err(|source| TrainError::Serialise {
            what: "checkpoint state",
            source,
        })?;
        write_atomic(&tmp_dir.join(STATE), &json)
    })();
    if let Err(e) = written {
        // The last good checkpoint is untouched; the half-written one is not kept.
        let _ = fs::remove_dir_all(&tmp_dir);
        return Err(e);
    }

    if old_dir.exists() {
        fs::remove_dir_all(&old_dir).map_err(|e| io("remove", &old_dir, e))?;
    }
    if final_dir.exists() {
        fs::rename(&final_dir, &old_dir).map_err(|e| io("move aside", &final_dir, e))?;
    }
    fs::rename(&tmp_dir, &final_dir).map_err(|e| io("rename into place", &tmp_dir, e))?;
    if old_dir.exists() {
        fs::remove_dir_all(&old_dir).map_err(|e| io("remove", &old_dir, e))?;
    }
    Ok(())
}

/// A model's weights as safetensors bytes; `dir` names the destination in errors.
pub(crate) fn weight_bytes<M: Module>(model: &M, dir: &Path) -> Result<Vec<u8>, TrainError> {
    let mut store = SafetensorsStore::from_bytes(None);
    model
        .save_into(&mut store)
        .map_err(|e| bad(dir, format!("saving weights: {e}")))?;
    store
        .get_bytes()
        .map_err(|e| bad(dir, format!("saving weights: {e}")))
}

/// Where the snapshot of a run's weights at `tokens` training tokens is kept.
pub fn snapshot_path(run_dir: &Path, tokens: u64) -> PathBuf {
    run_dir
        .join("snapshots")
        .join(format!("tokens-{tokens:012}.safetensors"))
}

/// Keeps the weights at `tokens` (no optimiser state), atomically, for later evaluation of
/// an ability at that point of training (as the Pythia suite keeps its checkpoints).
pub fn save_snapshot<M: Module>(
    run_dir: &Path,
    model: &M,
    tokens: u64,
) -> Result<PathBuf, TrainError> {
    let path = snapshot_path(run_dir, tokens);
    let dir = run_dir.join("snapshots");
    fs::create_dir_all(&dir).map_err(|source| TrainError::Io {
        action: "create",
        path: dir.clone(),
        source,
    })?;
    write_atomic(&path, &weight_bytes(model, &dir)?)?;
    Ok(path)
}

/// The newest complete checkpoint directory under `run_dir`, if any.
pub fn find(run_dir: &Path) -> Option<PathBuf> {
    [checkpoint_dir(run_dir), run_dir.join("checkpoint.old")]
        .into_iter()
        .find(|dir| dir.join(STATE).is_file())
}

/// Reads a checkpoint's state, checking that it belongs to `run_id`.
pub fn load_state<C: DeserializeOwned, P: DeserializeOwned>(
    dir: &Path,
    run_id: &str,
) -> Result<CheckpointState<C, P>, TrainError> {
    let path = dir.join(STATE);
    let text = fs::read_to_string(&path).map_err(|e| TrainError::Io {
        action: "read",
        path: path.clone(),
        source: e,
    })?;
    let state: CheckpointState<C, P> =
        serde_json::from_str(&text).map_err(|e| bad(&path, format!("state is not valid: {e}")))?;
    if state.schema_version != CHECKPOINT_SCHEMA_VERSION {
        return Err(bad(
            &path,
            format!(
                "schema version {} (this program reads {CHECKPOINT_SCHEMA_VERSION})",
                state.schema_version
            ),
        ));
    }
    if state.run_id != run_id {
        return Err(bad(
            &path,
            format!("it belongs to run {}, not {run_id}", state.run_id),
        ));
    }
    Ok(state)
}

/// Loads weights and optimiser state from `dir` into a freshly built `model` and `optimizer`.
pub fn load_weights<M: Module>(
    dir: &Path,
    model: M,
    optimizer: ModuleOptimizer,
) -> Result<(M, ModuleOptimizer), TrainError> {
    let model = load_into(&dir.join(WEIGHTS), model)?;
    let optim_path = dir.join(OPTIMIZER);
    let bytes = fs::read(&optim_path).map_err(|e| TrainError::Io {
        action: "read",
        path: optim_path.clone(),
        source: e,
    })?;
    let optimizer = optimizer
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| bad(&optim_path, format!("optimiser state does not load: {e}")))?;
    Ok((model, optimizer))
}

/// Loads the best weights so far kept in checkpoint `dir` into `model`.
pub fn load_best<M: Module>(dir: &Path, model: M) -> Result<M, TrainError> {
    load_into(&dir.join(BEST), model)
}

/// Loads the safetensors file `weights` into `model`, every tensor accounted for.
pub(crate) fn load_into<M: Module>(weights: &Path, model: M) -> Result<M, TrainError> {
    let bytes = fs::read(weights).map_err(|e| TrainError::Io {
        action: "read",
        path: weights.to_path_buf(),
        source: e,
    })?;
    load_bytes(bytes, weights, model)
}

/// Loads a safetensors file's `bytes` (read from `weights`, for messages) into `model`, every
/// tensor accounted for.
pub(crate) fn load_bytes<M: Module>(
    bytes: Vec<u8>,
    weights: &Path,
    mut model: M,
) -> Result<M, TrainError> {
    let weights = weights.to_path_buf();
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let applied = model
        .load_from(&mut store)
        .map_err(|e| bad(&weights, format!("weights do not load: {e}")))?;
    if !applied.missing.is_empty() || !applied.errors.is_empty() {
        return Err(bad(
            &weights,
            format!(
                "weights do not fit the model (missing: {:?}, errors: {:?})",
                applied.missing, applied.errors
            ),
        ));
    }
    Ok(model)
}

fn bad(path: &Path, message: String) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message,
        hint: "delete the run's checkpoint directory (or pass --fresh) to train from the start"
            .into(),
    }
}
