//! A run that starts from a parent run's final weights, and which of its weights train (see
//! `scalelab_spec::init`).
//!
//! Every run leaves the weights its record describes in [`WEIGHTS_FILE`]. A child of the
//! same family takes them tensor by tensor, matched by name: every tensor of the child but
//! its head must come from the parent with the same shape; the head (the family's
//! [`FamilyModel::HEAD`]) is loaded too, or left as initialised, as `init.head` says. Then
//! `init.adapt` freezes what does not train: the body of a linear probe (with its dropout
//! and batch statistics, so it stays bit-identical), or the input layer and the first
//! layers.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Tensor;
use scalelab_models::FamilyModel;
use scalelab_spec::{Adapt, Family, Head, InitConfig, Parent};

use crate::{RunOptions, TrainError};

/// The final weights every run leaves in its directory: the model its record describes
/// (with early stopping, the best weights kept).
pub const WEIGHTS_FILE: &str = "weights.safetensors";

fn parent_error(path: &Path, message: impl Into<String>, hint: impl Into<String>) -> TrainError {
    TrainError::Parent {
        path: path.to_path_buf(),
        message: message.into(),
        hint: hint.into(),
    }
}

/// The directory of the run named by `init.from` (a run directory, or its `record.json`).
pub fn parent_dir(from: &str) -> PathBuf {
    let path = PathBuf::from(from);
    if path.file_name().is_some_and(|n| n == "record.json") {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        path
    }
}

/// Reads the parent run named by `init.from`: its record must say it completed, and its
/// final weights must be there.
pub fn read_parent(from: &str) -> Result<Parent, TrainError> {
    let dir = parent_dir(from);
    let record = dir.join("record.json");
    let text = std::fs::read_to_string(&record).map_err(|e| {
        parent_error(
            &dir,
            format!("no run record there ({}: {e})", record.display()),
            "name the directory of a finished run (it holds record.json), e.g. runs/<run id>",
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        parent_error(
            &dir,
            format!("{} is not a run record: {e}", record.display()),
            "name a run directory written by scalelab",
        )
    })?;
    let field = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let run_id = field(&value["run_id"]).ok_or_else(|| {
        parent_error(
            &dir,
            "its record has no run_id",
            "name a run directory written by scalelab",
        )
    })?;
    let status = field(&value["status"]["status"]).unwrap_or_default();
    if status != "completed" {
        return Err(parent_error(
            &dir,
            format!("run {run_id} did not complete (status `{status}`)"),
            "start from a run that completed: finish it first (run the same command again to resume it)",
        ));
    }
    let config = &value["config"];
    // A classifier's config names its data set; a language model's does not. A language
    // model's family is left out when it is the GPT.
    let language_model = config.get("dataset").is_none();
    let family = match field(&config["model"]["family"]) {
        None if language_model => Family::Gpt,
        None => {
            return Err(parent_error(
                &dir,
                "its record names no model family",
                "name a run directory written by scalelab",
            ));
        }
        Some(name) => name.parse::<Family>().map_err(|e| {
            parent_error(
                &dir,
                e.to_string(),
                "name a run directory written by scalelab",
            )
        })?,
    };
    if !dir.join(WEIGHTS_FILE).is_file() {
        return Err(parent_error(
            &dir,
            format!(
                "run {run_id} kept no final weights ({WEIGHTS_FILE}; runs trained before transfer existed did not)"
            ),
            "train the parent again (the same command with --fresh) so that it keeps them",
        ));
    }
    Ok(Parent {
        run_id,
        family,
        language_model,
        dir: dir.display().to_string(),
    })
}

/// Whether the tensor at `path` belongs to the field `field` (its name, or under it).
fn under(path: &str, field: &str) -> bool {
    path == field
        || path
            .strip_prefix(field)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The model a fresh run of `init` starts from: `model` as initialised, or with the weights
/// of the parent in `options.init_from` loaded into it (see the module docs).
pub(crate) fn start_from<M: FamilyModel>(
    model: M,
    init: Option<&InitConfig>,
    options: &RunOptions,
) -> Result<M, TrainError> {
    let Some(parent) = init.and_then(|i| i.parent.as_ref()) else {
        return Ok(model);
    };
    let keep_head = init.and_then(|i| i.head) == Some(Head::Keep);
    let dir = options.init_from.as_deref().ok_or_else(|| {
        parent_error(
            Path::new("(none)"),
            format!("this run starts from run {parent}, but no directory of it was given"),
            "set init.from (or --init-from) to the parent's run directory",
        )
    })?;
    load_parent(model, parent, keep_head, dir)
}

/// Loads the weights of run `parent` from `dir` into `model`, its head too if `keep_head`.
fn load_parent<M: FamilyModel>(
    mut model: M,
    parent: &str,
    keep_head: bool,
    dir: &Path,
) -> Result<M, TrainError> {
    let found = read_parent(&dir.display().to_string())?;
    if found.run_id != parent {
        return Err(parent_error(
            dir,
            format!(
                "it holds run {}, but this run's config names parent {parent}",
                found.run_id
            ),
            "point init.from at the parent's directory again (its id is part of this run's identity)",
        ));
    }
    let weights = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights).map_err(|source| TrainError::Io {
        action: "read",
        path: weights.clone(),
        source,
    })?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let theirs: Vec<_> = {
        use burn::store::ModuleStore;
        let all = store.get_all_tensors().map_err(|e| {
            parent_error(
                &weights,
                format!("its weights do not read: {e}"),
                "train the parent again with --fresh",
            )
        })?;
        all.values().cloned().collect()
    };
    let ours = model.collect(None, None, false);
    let mut misfits = Vec::new();
    for t in &ours {
        if under(&t.name, M::HEAD) && !keep_head {
            continue;
        }
        match theirs.iter().find(|p| p.name == t.name) {
            None => misfits.push(format!("{} (not in the parent)", t.name)),
            Some(p) if p.shape != t.shape => misfits.push(format!(
                "{}: {:?} here, {:?} in the parent",
                t.name,
                t.shape.as_slice(),
                p.shape.as_slice()
            )),
            Some(_) => {}
        }
    }
    if !misfits.is_empty() {
        let head_hint = if misfits
            .iter()
            .all(|m| under(m.split([' ', ':']).next().unwrap_or(""), M::HEAD))
        {
            "the output layers differ (other classes or vocabulary): set init.head = \"reset\""
        } else {
            "give this run the parent's shape (same depth, width and input), or start from scratch"
        };
        let shown: Vec<&str> = misfits.iter().take(4).map(String::as_str).collect();
        return Err(parent_error(
            dir,
            format!(
                "the weights of run {parent} do not fit this model: {}{}",
                shown.join("; "),
                if misfits.len() > 4 {
                    format!(" (and {} more)", misfits.len() - 4)
                } else {
                    String::new()
                }
            ),
            head_hint,
        ));
    }
    let taken: Vec<_> = theirs
        .into_iter()
        .filter(|p| keep_head || !under(&p.name, M::HEAD))
        .filter(|p| ours.iter().any(|t| t.name == p.name))
        .collect();
    let result = model.apply(taken, None, None, false);
    if !result.errors.is_empty() {
        return Err(parent_error(
            &weights,
            format!("its weights do not load: {:?}", result.errors),
            "train the parent again with --fresh",
        ));
    }
    Ok(model)
}

/// Sets `require_grad` of every float parameter to what `trains` says of its path.
struct TrainsWhere<F: Fn(&str) -> bool> {
    path: Vec<String>,
    trains: F,
}

impl<F: Fn(&str) -> bool> ModuleMapper for TrainsWhere<F> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.set_require_grad((self.trains)(&self.path.join(".")))
    }
}

/// `model` with only the weights that `init` trains left trainable.
pub(crate) fn adapt<M: FamilyModel>(model: M, init: Option<&InitConfig>) -> Result<M, TrainError> {
    let adapt = init.map_or(Adapt::Full, |i| i.adapt);
    let model = match adapt {
        Adapt::Full => return Ok(model),
        // Frozen whole (dropout and batch statistics too), then the head trains again.
        Adapt::Probe => model.freeze().map(&mut TrainsWhere {
            path: Vec::new(),
            trains: |path: &str| under(path, M::HEAD),
        }),
        Adapt::Freeze { layers } => {
            let frozen = |path: &str| {
                M::INPUT.iter().any(|field| under(path, field))
                    || path
                        .strip_prefix(M::LAYERS)
                        .and_then(|rest| rest.strip_prefix('.'))
                        .and_then(|rest| rest.split('.').next())
                        .and_then(|index| index.parse::<usize>().ok())
                        .is_some_and(|i| i < layers)
            };
            model.map(&mut TrainsWhere {
                path: Vec::new(),
                trains: |path: &str| !frozen(path),
            })
        }
    };
    Ok(model)
}

/// Parameters of `model` that train (require gradients).
pub fn trainable_params<M: Module>(model: &M) -> u64 {
    struct Count(u64);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            if value.is_require_grad() {
                self.0 += value.shape().num_elements() as u64;
            }
        }
    }
    let mut count = Count(0);
    model.visit(&mut count);
    count.0
}

/// Writes the weights `model` into `run_dir`'s [`WEIGHTS_FILE`], atomically.
pub(crate) fn save_weights<M: Module>(run_dir: &Path, model: &M) -> Result<u64, TrainError> {
    let path = run_dir.join(WEIGHTS_FILE);
    let bytes = crate::checkpoint::weight_bytes(model, run_dir)?;
    crate::fsutil::write_atomic(&path, &bytes)?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn a_path_is_under_its_field_and_not_under_a_longer_name() {
        assert!(under("classifier.weight", "classifier"));
        assert!(under("classifier", "classifier"));
        assert!(!under("classifier_extra.weight", "classifier"));
        assert!(!under("hidden.0.weight", "classifier"));
    }
}
