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

use burn::module::{Lora, Module, ModuleMapper, ModuleVisitor, Param, ParamGroup};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Tensor;
use scalelab_models::FamilyModel;
use scalelab_spec::{Adapt, Family, Head, InitConfig, Parent, SpecError};

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
    if crate::hf::is_hf_dir(&dir) {
        return read_hf_parent(&dir);
    }
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
    // An encoder pre-trained on sentence pairs has segment embeddings (left out otherwise).
    let segments = config["model"]["segments"].as_bool().unwrap_or(false);
    Ok(Parent {
        run_id,
        family,
        language_model,
        dir: dir.display().to_string(),
        segments,
    })
}

/// A `transformers` GPT-2 directory as a parent: a GPT whose identity is its weights' hash
/// (`hf-…`, see [`crate::hf::weights_id`]).
fn read_hf_parent(dir: &Path) -> Result<Parent, TrainError> {
    let weights = dir.join(crate::hf::HF_WEIGHTS);
    let bytes = std::fs::read(&weights).map_err(|e| {
        parent_error(
            dir,
            format!(
                "a transformers directory without its weights ({}: {e})",
                weights.display()
            ),
            "save the model with save_pretrained(DIR, safe_serialization=True)",
        )
    })?;
    hf_shape(dir)?;
    Ok(Parent {
        run_id: crate::hf::weights_id(&bytes),
        family: Family::Gpt,
        language_model: true,
        dir: dir.display().to_string(),
        segments: false,
    })
}

/// The GPT shape of the `transformers` GPT-2 directory `dir`, its warnings said on stderr.
fn hf_shape(dir: &Path) -> Result<scalelab_spec::LmConfig, TrainError> {
    let (shape, warnings) = crate::hf::read_config(dir)?;
    for warning in warnings {
        eprintln!("warning: {}: {warning}", dir.display());
    }
    Ok(shape)
}

/// The safetensors bytes of a parent's weights in scalelab's names: a run's own file, or a
/// `transformers` GPT-2's converted.
fn parent_weights(dir: &Path) -> Result<(Vec<u8>, PathBuf), TrainError> {
    let hf = crate::hf::is_hf_dir(dir);
    let weights = dir.join(if hf {
        crate::hf::HF_WEIGHTS
    } else {
        WEIGHTS_FILE
    });
    let bytes = std::fs::read(&weights).map_err(|source| TrainError::Io {
        action: "read",
        path: weights.clone(),
        source,
    })?;
    if !hf {
        return Ok((bytes, weights));
    }
    let shape = hf_shape(dir)?;
    Ok((crate::hf::from_gpt2(&bytes, &shape, &weights)?, weights))
}

/// What a child of the parent in `dir` must be to take its weights, for hints: a GPT-2
/// checkpoint's shape as `train` flags.
fn shape_hint(dir: &Path) -> Option<String> {
    if !crate::hf::is_hf_dir(dir) {
        return None;
    }
    let s = hf_shape(dir).ok()?;
    Some(format!(
        "this GPT-2 is --n-layers {} --d-model {} --n-heads {} --ctx {}{} (d_ff {}), vocabulary {}: train with those flags and its tokenizer ({}: `data.tokenizer_file`, or --tokenizer byte for a 256-symbol byte vocabulary)",
        s.n_layers,
        s.d_model,
        s.n_heads,
        s.ctx_len,
        if s.tie_embeddings { " --tie" } else { "" },
        s.d_ff,
        s.vocab_size,
        dir.join("tokenizer.json").display()
    ))
}

/// Whether the tensor at `path` belongs to the field `field` (its name, or under it).
pub(crate) fn under(path: &str, field: &str) -> bool {
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
    let (bytes, weights) = parent_weights(dir)?;
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
        let head_hint = if let Some(hint) = shape_hint(dir) {
            hint
        } else if misfits
            .iter()
            .all(|m| under(m.split([' ', ':']).next().unwrap_or(""), M::HEAD))
        {
            "the output layers differ (other classes or vocabulary): set init.head = \"reset\""
                .into()
        } else {
            "give this run the parent's shape (same depth, width and input), or start from scratch"
                .into()
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

/// The parameters of `model`'s body (everything but its output layer) and the share of the
/// learning rate they train at, when `init` sets one other than 1 (`init.body_lr_ratio`).
pub(crate) fn body_lr<M: FamilyModel>(
    model: &M,
    init: Option<&InitConfig>,
) -> Option<crate::engine::BodyLr> {
    let ratio = init.and_then(|i| i.body_lr_ratio)?;
    struct Body {
        path: Vec<String>,
        head: &'static str,
        ids: Vec<burn::module::ParamId>,
    }
    impl ModuleVisitor for Body {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !under(&self.path.join("."), self.head) {
                self.ids.push(param.id);
            }
        }
    }
    let mut body = Body {
        path: Vec::new(),
        head: M::HEAD,
        ids: Vec::new(),
    };
    model.visit(&mut body);
    Some((body.ids, ratio))
}

/// What a [`ByPath`] mapper does to each float parameter, knowing its path.
pub(crate) trait MapAtPath {
    /// The parameter at `path`, changed or not.
    fn map_at<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>>;
}

/// A module mapper that tracks the path of every float parameter (`blocks.0.qkv.weight`,
/// `….weight.lora.a`) and hands it to `T`.
pub(crate) struct ByPath<T> {
    path: Vec<String>,
    inner: T,
}

pub(crate) fn by_path<T: MapAtPath>(inner: T) -> ByPath<T> {
    ByPath {
        path: Vec::new(),
        inner,
    }
}

impl<T: MapAtPath> ModuleMapper for ByPath<T> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        self.inner.map_at(&path, param)
    }
}

/// Sets `require_grad` of the float parameters whose path `trains` accepts, and of the others
/// to `others` (none: leaves them as they are).
struct TrainsWhere<F: Fn(&str) -> bool> {
    trains: F,
    others: Option<bool>,
}

impl<F: Fn(&str) -> bool> MapAtPath for TrainsWhere<F> {
    fn map_at<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if (self.trains)(path) {
            param.set_require_grad(true)
        } else {
            match self.others {
                Some(others) => param.set_require_grad(others),
                None => param,
            }
        }
    }
}

/// `model` with only the weights that `init` trains left trainable: frozen in part, or with
/// LoRA adapters attached (Burn's `Module::apply_lora`).
pub(crate) fn adapt<M: FamilyModel>(model: M, init: Option<&InitConfig>) -> Result<M, TrainError> {
    let Some(init) = init else {
        return Ok(model);
    };
    let head_trains = |path: &str| under(path, M::HEAD);
    let model = match &init.adapt {
        Adapt::Full => model,
        // Frozen whole (dropout and batch statistics too), then the head trains again.
        Adapt::Probe => {
            let probed = model.freeze().map(&mut by_path(TrainsWhere {
                trains: head_trains,
                others: Some(false),
            }));
            if trainable_params(&probed) == 0 {
                return Err(TrainError::Spec(SpecError::invalid(
                    "init.adapt",
                    "probe",
                    "this model's output layer is its token embedding (model.tie_embeddings = \
                     true), so a probe would train nothing: train the parent without --tie \
                     (tie_embeddings = false) or use lora or freeze",
                )));
            }
            probed
        }
        Adapt::Freeze { layers } => {
            let frozen = |path: &str| {
                M::INPUT.iter().any(|field| under(path, field))
                    || path
                        .strip_prefix(M::LAYERS)
                        .and_then(|rest| rest.strip_prefix('.'))
                        .and_then(|rest| rest.split('.').next())
                        .and_then(|index| index.parse::<usize>().ok())
                        .is_some_and(|i| i < *layers)
            };
            model.map(&mut by_path(TrainsWhere {
                trains: |path: &str| !frozen(path),
                others: Some(false),
            }))
        }
        Adapt::Lora {
            rank,
            alpha,
            targets,
        } => {
            let patterns = lora_patterns::<M>(targets)?;
            check_lora_rank(&model, &patterns, *rank)?;
            let group = ParamGroup::from_any_regexes(patterns).map_err(|e| {
                TrainError::Spec(SpecError::invalid(
                    "init.lora_targets",
                    targets.join(", "),
                    format!("{e:?}"),
                ))
            })?;
            let model = model
                .apply_lora(Lora::new(*rank, *alpha).set_param_group(group))
                .map(&mut by_path(AdapterIds { next: ADAPTER_IDS }));
            // A head that starts afresh (new classes) must learn (PEFT's `modules_to_save`);
            // a kept one stays as the parent left it.
            if init.head == Some(Head::Keep) {
                model
            } else {
                model.map(&mut by_path(TrainsWhere {
                    trains: head_trains,
                    others: None,
                }))
            }
        }
    };
    Ok(model)
}

/// The first id of the adapter factors: above every id a family's builder hands out.
const ADAPTER_IDS: u64 = 1 << 48;

/// Gives the adapter factors ids in the order they are visited, as the families' builders
/// give theirs, so that a resumed run's optimiser state (kept by id) finds them again (Burn
/// draws them at random).
struct AdapterIds {
    next: u64,
}

impl MapAtPath for AdapterIds {
    fn map_at<const D: usize>(
        &mut self,
        path: &str,
        mut param: Param<Tensor<D>>,
    ) -> Param<Tensor<D>> {
        if is_adapter(path) {
            param.id = burn::module::ParamId::from(self.next);
            self.next += 1;
        }
        param
    }
}

/// The path patterns of the LoRA `targets` of family `M`.
fn lora_patterns<M: FamilyModel>(targets: &[String]) -> Result<Vec<&'static str>, TrainError> {
    targets
        .iter()
        .map(|target| {
            M::LORA_TARGETS
                .iter()
                .find(|(name, _)| name == target)
                .map(|(_, pattern)| *pattern)
                .ok_or_else(|| {
                    let known: Vec<&str> = M::LORA_TARGETS.iter().map(|(n, _)| *n).collect();
                    TrainError::Spec(SpecError::invalid(
                        "init.lora_targets",
                        target,
                        format!("this family's targets are {}", known.join(", ")),
                    ))
                })
        })
        .collect()
}

/// Refuses a rank larger than the smaller side of a matrix it adapts (the update would not
/// be low-rank; PEFT refuses it too).
fn check_lora_rank<M: FamilyModel>(
    model: &M,
    patterns: &[&str],
    rank: usize,
) -> Result<(), TrainError> {
    let regexes: Vec<regex::Regex> = patterns
        .iter()
        .filter_map(|p| regex::Regex::new(p).ok())
        .collect();
    let mut adapted = 0;
    for t in model.collect(None, None, false) {
        if !regexes.iter().any(|r| r.is_match(&t.name)) {
            continue;
        }
        adapted += 1;
        let dims = t.shape.as_slice();
        let smaller = dims.iter().copied().min().unwrap_or(0);
        if rank > smaller {
            return Err(TrainError::Spec(SpecError::invalid(
                "init.lora_rank",
                rank,
                format!(
                    "{} is {:?}: a rank of at most {smaller} (the smaller side) adapts it",
                    t.name, dims
                ),
            )));
        }
    }
    if adapted == 0 {
        return Err(TrainError::Spec(SpecError::invalid(
            "init.lora_targets",
            patterns.join(" | "),
            "no weight matrix of this model is a LoRA target (a model without hidden layers has none)",
        )));
    }
    Ok(())
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

/// Writes the weights of `model` into `run_dir`: [`WEIGHTS_FILE`] with LoRA adapters merged
/// into the dense weights (what a child run or an evaluation loads), and, if it has
/// adapters, [`ADAPTERS_FILE`] with them alone. Returns the two files' bytes.
pub(crate) fn save_weights<M: Module>(
    run_dir: &Path,
    model: &M,
) -> Result<(u64, Option<u64>), TrainError> {
    let adapters = save_adapters(&run_dir.join(ADAPTERS_FILE), model)?;
    let merged = model.clone().materialize();
    let bytes = crate::checkpoint::weight_bytes(&merged, run_dir)?;
    crate::fsutil::write_atomic(&run_dir.join(WEIGHTS_FILE), &bytes)?;
    Ok((bytes.len() as u64, adapters))
}

/// The LoRA adapters a run leaves beside its merged weights (LoRA runs only): the small file
/// to keep per task, applied to the parent's weights by [`load_adapters`].
pub const ADAPTERS_FILE: &str = "adapters.safetensors";

/// Whether a tensor path is a LoRA adapter factor (Burn names the reparameterisation's
/// module `lora`).
fn is_adapter(path: &str) -> bool {
    path.split('.').any(|segment| segment == LORA_MODULE)
}

/// The name Burn gives a LoRA reparameterisation in tensor paths.
const LORA_MODULE: &str = "lora";

/// Writes the LoRA adapters of `model` alone to `path`, atomically; none if it has none.
pub fn save_adapters<M: Module>(path: &Path, model: &M) -> Result<Option<u64>, TrainError> {
    let has_adapters = model
        .collect(None, None, false)
        .iter()
        .any(|t| is_adapter(&t.name));
    if !has_adapters {
        return Ok(None);
    }
    let mut store = SafetensorsStore::from_bytes(None).with_predicate(|path, _| is_adapter(path));
    let failed = |e: String| parent_error(path, format!("saving adapters: {e}"), "report this");
    model
        .save_into(&mut store)
        .map_err(|e| failed(e.to_string()))?;
    let bytes = store.get_bytes().map_err(|e| failed(e.to_string()))?;
    crate::fsutil::write_atomic(path, &bytes)?;
    Ok(Some(bytes.len() as u64))
}

/// Loads the adapters of `path` (written by [`save_adapters`]) into `model`, which carries
/// adapters of the same targets and rank (see [`adapt`]).
pub fn load_adapters<M: Module>(model: M, path: &Path) -> Result<M, TrainError> {
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes)).allow_partial(true);
    let mut model = model;
    let result = model.load_from(&mut store).map_err(|e| {
        parent_error(
            path,
            format!("adapters do not load: {e}"),
            "use the adapters of a run with the same targets and rank",
        )
    })?;
    let missing: Vec<&str> = result
        .missing
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| is_adapter(p))
        .collect();
    if !result.errors.is_empty() || !missing.is_empty() || result.applied.is_empty() {
        return Err(parent_error(
            path,
            format!(
                "adapters do not fit (missing {missing:?}, errors {:?})",
                result.errors
            ),
            "use the adapters of a run with the same targets and rank",
        ));
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tolerance};
    use scalelab_models::{ImageClassifier, Mlp, SeededInit};
    use scalelab_spec::family::MlpConfig;

    #[test]
    fn a_path_is_under_its_field_and_not_under_a_longer_name() {
        assert!(under("classifier.weight", "classifier"));
        assert!(under("classifier", "classifier"));
        assert!(!under("classifier_extra.weight", "classifier"));
        assert!(!under("hidden.0.weight", "classifier"));
    }

    /// Sets every LoRA `b` factor (zero when attached) to `value`, so that the adapters
    /// change the model's outputs.
    struct FillB {
        value: f32,
    }

    impl MapAtPath for FillB {
        fn map_at<const D: usize>(
            &mut self,
            path: &str,
            param: Param<Tensor<D>>,
        ) -> Param<Tensor<D>> {
            if is_adapter(path) && path.ends_with(".b") {
                let value = self.value;
                param.map(|t| t.ones_like() * value)
            } else {
                param
            }
        }
    }

    fn mlp(device: &Device) -> Mlp {
        let shape = MlpConfig {
            inputs: 12,
            hidden: vec![16, 8],
            classes: 3,
            dropout: 0.0,
        };
        Mlp::init(&shape, &mut SeededInit::new(3), device)
    }

    fn lora() -> InitConfig {
        InitConfig {
            parent: None,
            parent_family: None,
            head: None,
            adapt: Adapt::Lora {
                rank: 2,
                alpha: 4.0,
                targets: vec!["hidden".into()],
            },
            body_lr_ratio: None,
        }
    }

    #[test]
    fn the_body_is_every_parameter_but_the_head() {
        let model = mlp(&Default::default());
        let full = |ratio| InitConfig {
            adapt: Adapt::Full,
            body_lr_ratio: ratio,
            ..lora()
        };
        assert_eq!(body_lr(&model, Some(&full(None))), None);
        let (ids, ratio) = body_lr(&model, Some(&full(Some(0.1)))).unwrap();
        assert_eq!(ratio, 0.1);
        // Every float tensor but the head's weight and bias.
        let all = model.collect(None, None, false).len();
        assert_eq!(ids.len(), all - 2);
    }

    #[test]
    fn lora_counts_merges_and_its_adapters_save_and_load_alone() {
        let device = Device::flex().autodiff();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        device.seed(1);
        let tuned = adapt(mlp(&device), Some(&lora())).unwrap_or_else(|e| panic!("{e}"));
        // Rank 2 on 12×16 and 16×8: 2·(12 + 16) + 2·(16 + 8) = 104 adapter weights, and the
        // head (8·3 + 3 = 27), initialised afresh here, trains too.
        assert_eq!(trainable_params(&tuned), 104 + 27);
        let tuned = tuned.map(&mut by_path(FillB { value: 0.05 }));
        let (_, adapter_bytes) = save_weights(dir.path(), &tuned).unwrap_or_else(|e| panic!("{e}"));
        assert!(adapter_bytes.is_some());

        // The same base with adapters loaded from their file alone, and the merged weights
        // loaded into a plain model, give the adapted model's outputs.
        device.seed(2); // other random A factors, which the file must replace
        let reloaded = adapt(mlp(&device), Some(&lora())).unwrap_or_else(|e| panic!("{e}"));
        let reloaded = load_adapters(reloaded, &dir.path().join(ADAPTERS_FILE))
            .unwrap_or_else(|e| panic!("{e}"));
        let merged = crate::checkpoint::load_into(&dir.path().join(WEIGHTS_FILE), mlp(&device))
            .unwrap_or_else(|e| panic!("{e}"));
        let x = Tensor::<4>::random([5, 1, 3, 4], Distribution::Normal(0.0, 1.0), &device);
        let out = |m: &Mlp| m.classify_images(x.clone()).into_data();
        let base = out(&mlp(&device));
        let want = out(&tuned);
        let values =
            |d: &burn::tensor::TensorData| d.clone().try_to_vec::<f32>().unwrap_or_default();
        let moved = values(&want)
            .iter()
            .zip(values(&base))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(moved > 1e-2, "the adapters change the outputs (by {moved})");
        out(&reloaded).assert_approx_eq::<f32>(&want, Tolerance::absolute(1e-5));
        out(&merged).assert_approx_eq::<f32>(&want, Tolerance::absolute(1e-5));
    }
}
