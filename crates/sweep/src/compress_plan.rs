//! Compression studies resolved into planned runs (see `scalelab_spec::compress_study`): for
//! every size and seed one dense run from scratch (the frontier); for the compressed sizes,
//! runs trained with gradual pruning to each sparsity or with shared layers and, for the
//! penalty curve, dense runs at the further budgets; students of the first compressed size, each waiting for its
//! teacher. The one-shot compressions are not runs (nothing trains): the plan lists them
//! ([`CompressionPlan::one_shot`]) for the study's runner to apply once their parents are
//! recorded.

use std::path::Path;

use scalelab_spec::{CompressionStudySpec, DistillConfig, Method, RunSpec, TrainSpec, run_id};
use serde::{Deserialize, Serialize};

use crate::plan::{BudgetPoint, PlannedRun, add_role_runs, model_n, role_jobs, study_vocab};
use crate::schedule::{Job, PlannedStudy, run_dir};
use crate::{Store, SweepError};

/// What a run of a compression study is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum CompressRole {
    /// A dense model trained from scratch: the frontier at `dense.tokens`, the penalty curve
    /// at the other budgets.
    Dense,
    /// Trained from scratch with gradual magnitude pruning to `sparsity`.
    Gradual {
        /// The final sparsity of every layer's matrices.
        sparsity: f64,
    },
    /// Trained from scratch with one block shared by all its layers.
    Shared,
    /// A dense model distilled from `teacher` (a run id).
    Student {
        /// The teacher's run id.
        teacher: String,
    },
}

impl CompressRole {
    /// A short name: `dense`, `gradual0.5`, `shared`, `student`.
    pub fn name(&self) -> String {
        match self {
            CompressRole::Dense => "dense".into(),
            CompressRole::Gradual { sparsity } => format!("gradual{sparsity}"),
            CompressRole::Shared => "shared".into(),
            CompressRole::Student { .. } => "student".into(),
        }
    }
}

/// One run of a compression study, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedCompress {
    /// The run (its `size` is the ladder's name for the size).
    pub run: PlannedRun,
    /// What it is for.
    pub role: CompressRole,
}

impl PlannedCompress {
    /// The run that must be recorded before this one starts (a student's teacher).
    pub fn after(&self) -> Option<String> {
        match &self.role {
            CompressRole::Student { teacher } => Some(teacher.clone()),
            _ => None,
        }
    }
}

/// A whole compression study, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompressionPlan {
    /// The study as written.
    pub spec: CompressionStudySpec,
    /// Its runs.
    pub runs: Vec<PlannedCompress>,
    /// The sizes compressed.
    pub compressed: Vec<String>,
    /// The one-shot methods, expanded (one per level).
    pub methods: Vec<Method>,
    /// The quantisation whose penalty is read against tokens per parameter, if any.
    pub penalty: Option<Method>,
    /// Vocabulary size of the tokenizer.
    pub vocab_size: usize,
}

impl CompressionPlan {
    /// Total training FLOPs of the study.
    pub fn total_flops(&self) -> f64 {
        self.runs.iter().map(|r| r.run.flops).sum()
    }

    /// The planned run with `run_id`.
    pub fn get(&self, run_id: &str) -> Option<&PlannedCompress> {
        self.runs.iter().find(|r| r.run.run_id == run_id)
    }

    /// Every one-shot compression of the study: `(run id, method)`, a dense run of a
    /// compressed size at `dense.tokens` by each method, and every dense run by the penalty's
    /// quantisation.
    pub fn one_shot(&self) -> Vec<(String, Method)> {
        let mut out: Vec<(String, Method)> = Vec::new();
        for r in &self.runs {
            if r.role != CompressRole::Dense {
                continue;
            }
            let main = r.run.tokens_budget() == Some(self.spec.dense.tokens);
            if main && self.compressed.contains(&r.run.size) {
                out.extend(self.methods.iter().map(|m| (r.run.run_id.clone(), *m)));
            }
            if let Some(p) = self.penalty
                && !out.iter().any(|(id, m)| *id == r.run.run_id && *m == p)
            {
                out.push((r.run.run_id.clone(), p));
            }
        }
        out
    }
}

/// Expands a compression study written in `study_file` into its runs, their directories under
/// `study_dir` (where students find their teachers).
pub fn plan_compression_study(
    spec: &CompressionStudySpec,
    study_dir: &Path,
    study_file: &Path,
) -> Result<CompressionPlan, SweepError> {
    let err = |source| SweepError::Spec {
        path: study_file.to_path_buf(),
        source,
    };
    let methods = spec.check().map_err(err)?;
    let penalty = match &spec.compress.penalty {
        Some(p) => Method::from_name(p, &[])
            .ok()
            .and_then(|m| m.first().copied()),
        None => None,
    };
    let (vocab_size, data) = study_vocab(&spec.data, study_dir, study_file)?;
    let convention = spec.param_convention;
    let sizes = spec.sizes.specs(&spec.model);
    let mut named = Vec::new();
    for (name, model) in &sizes {
        named.push((
            name.clone(),
            model_n(model, vocab_size, convention).map_err(err)?,
        ));
    }
    let compressed = spec.compressed_sizes(&named).map_err(err)?;
    let c = &spec.compress;
    let mut runs: Vec<PlannedCompress> = Vec::new();
    let push = |runs: &mut Vec<PlannedCompress>, planned: PlannedCompress| {
        if !runs.iter().any(|r| r.run.run_id == planned.run.run_id) {
            runs.push(planned);
        }
    };
    for &seed in &spec.seeds {
        let resolve_shared = |size: &str, train: TrainSpec, tokens: u64, shared: bool| {
            let model = (sizes.iter().find(|(n, _)| n == size))
                .map(|(_, m)| m.clone())
                .unwrap_or_default();
            let model = scalelab_spec::LmSpec {
                share_layers: shared,
                ..model
            };
            let run_spec = RunSpec {
                seed,
                model,
                data: data.clone(),
                train: TrainSpec {
                    budget_tokens: Some(tokens),
                    ..train
                },
                task: None,
                init: Default::default(),
                device: Default::default(),
            };
            PlannedRun::resolve(
                size,
                run_spec,
                vocab_size,
                None,
                convention,
                BudgetPoint::Tokens(tokens),
            )
            .map_err(err)
        };
        let resolve =
            |size: &str, train: TrainSpec, tokens: u64| resolve_shared(size, train, tokens, false);
        let dense = |size: &str, tokens: u64| {
            Ok::<_, SweepError>(PlannedCompress {
                run: resolve(size, spec.train.clone(), tokens)?,
                role: CompressRole::Dense,
            })
        };
        let mut teacher: Option<PlannedRun> = None;
        for (size, _) in &sizes {
            let run = dense(size, spec.dense.tokens)?;
            if teacher.is_none() && compressed.first() == Some(size) {
                teacher = Some(run.run.clone());
            }
            push(&mut runs, run);
        }
        for size in &compressed {
            if c.gradual {
                for &sparsity in &c.sparsities {
                    let train = TrainSpec {
                        prune_sparsity: sparsity,
                        prune_start: c.prune_start,
                        prune_end: c.prune_end,
                        ..spec.train.clone()
                    };
                    let run = resolve(size, train, spec.dense.tokens)?;
                    push(
                        &mut runs,
                        PlannedCompress {
                            run,
                            role: CompressRole::Gradual { sparsity },
                        },
                    );
                }
            }
            if c.shared {
                let run = resolve_shared(size, spec.train.clone(), spec.dense.tokens, true)?;
                push(
                    &mut runs,
                    PlannedCompress {
                        run,
                        role: CompressRole::Shared,
                    },
                );
            }
            for &tokens in &c.penalty_tokens {
                push(&mut runs, dense(size, tokens)?);
            }
        }
        if let Some(teacher) = &teacher {
            for size in &c.students {
                let train = TrainSpec {
                    distill_from: Some(run_dir(study_dir, &teacher.run_id).display().to_string()),
                    distill_temperature: c.distill_temperature,
                    distill_hard_weight: c.distill_hard_weight,
                    ..spec.train.clone()
                };
                let mut run = resolve(size, train, spec.dense.tokens)?;
                // The student's identity names its teacher, as `scalelab train` resolves it
                // from the teacher's directory.
                run.config.train.distill = Some(DistillConfig {
                    teacher: teacher.run_id.clone(),
                    temperature: c.distill_temperature,
                    hard_weight: c.distill_hard_weight,
                });
                run.run_id = run_id(&run.config).map_err(err)?;
                push(
                    &mut runs,
                    PlannedCompress {
                        run,
                        role: CompressRole::Student {
                            teacher: teacher.run_id.clone(),
                        },
                    },
                );
            }
        }
    }
    Ok(CompressionPlan {
        spec: spec.clone(),
        runs,
        compressed,
        methods,
        penalty,
        vocab_size,
    })
}

impl PlannedStudy for CompressionPlan {
    /// The study's runs as jobs; a student waits for its teacher.
    fn jobs(&self) -> Result<Vec<Job>, SweepError> {
        role_jobs((self.runs.iter()).map(|r| (&r.run, r.role.name(), r.after())))
    }

    fn add_planned(&self, store: &mut Store) -> Result<(), SweepError> {
        let runs = (self.runs.iter()).map(|r| (&r.run, r.role.name()));
        add_role_runs(store, runs, self.spec.param_convention)
    }
}

/// Whether a spec is a compression study's: it has `[compress]`.
pub fn is_compression_study(table: &toml::Table) -> bool {
    table.contains_key("compress")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUDY: &str = r#"
        name = "c"
        seeds = [0, 1]
        [model]
        ctx_len = 32
        [sizes]
        depths = [1, 2]
        [train]
        batch_size = 4
        [dense]
        tokens = 4096
        [compress]
        one_shot = ["magnitude", "int4-channel"]
        sparsities = [0.5, 0.75]
        gradual = true
        students = ["depth1"]
        penalty = "int4-channel"
        penalty_tokens = [2048]
    "#;

    /// Per seed: two dense sizes, two gradual runs and one penalty budget of the largest, one
    /// student of it; the one-shot list covers the methods on the compressed size and the
    /// penalty on every dense run, each once.
    #[test]
    fn the_plan_has_every_role_and_a_student_waits_for_its_teacher() {
        let spec: CompressionStudySpec = toml::from_str(STUDY).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let plan = plan_compression_study(&spec, dir.path(), Path::new("c.toml")).unwrap();
        assert_eq!(plan.compressed, ["depth2"]);
        assert_eq!(plan.runs.len(), 2 * (2 + 2 + 1 + 1));
        let students: Vec<&PlannedCompress> = (plan.runs.iter())
            .filter(|r| matches!(r.role, CompressRole::Student { .. }))
            .collect();
        for s in &students {
            let teacher = plan.get(&s.after().unwrap()).unwrap();
            assert_eq!(teacher.run.size, "depth2");
            assert_eq!(teacher.run.seed, s.run.seed);
            assert_eq!(teacher.role, CompressRole::Dense);
            assert_eq!(
                s.run.config.train.distill.as_ref().unwrap().teacher,
                teacher.run.run_id
            );
        }
        let dense_small = (plan.runs.iter())
            .find(|r| r.run.size == "depth1" && r.role == CompressRole::Dense && r.run.seed == 0)
            .unwrap();
        assert_ne!(students[0].run.run_id, dense_small.run.run_id);
        let one_shot = plan.one_shot();
        // Per seed: 3 methods on depth2 (magnitude ×2, int4) + int4 on depth1 and on depth2's
        // penalty budget.
        assert_eq!(one_shot.len(), 2 * 5);
        let gradual = (plan.runs.iter())
            .filter(|r| matches!(r.role, CompressRole::Gradual { .. }))
            .count();
        assert_eq!(gradual, 4);
    }
}
