//! Transfer studies resolved into planned runs (see `scalelab_spec::transfer`): for every
//! size and seed, one pre-training run on the broad corpus; on the target corpus, one
//! from-scratch run per budget and one fine-tuning run per amount of data `D_F` and method,
//! each starting from the pre-training run of its size and seed. A fine-tuning run's parent
//! is named by the id it will have, so the whole study is planned, and its ids known,
//! before anything trains; the runner starts a child only once its parent is recorded.

use std::path::Path;

use scalelab_spec::{
    AdaptKind, InitSpec, Named, Parent, PretrainBudget, RunSpec, TrainSpec, TransferMethod,
    TransferStudySpec,
};
use serde::{Deserialize, Serialize};

use crate::plan::{
    BudgetPoint, PlannedRun, add_role_runs, model_n, role_jobs, study_vocab, tokens_for,
};
use crate::schedule::{Job, PlannedStudy, run_dir};
use crate::{Store, SweepError};

/// What a run of a transfer study is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "role", content = "method")]
pub enum TransferRole {
    /// Pre-training on the broad corpus (the parent of its size's fine-tuning runs).
    Pretrain,
    /// Training from scratch on the target corpus.
    Scratch,
    /// Fine-tuning the pre-trained model on the target corpus by one method (LP-FT's
    /// probe stage is the `probe` method's run).
    Finetune(TransferMethod),
}

impl TransferRole {
    /// A short name: `pretrain`, `scratch` or the method.
    pub fn name(&self) -> &'static str {
        match self {
            TransferRole::Pretrain => "pretrain",
            TransferRole::Scratch => "scratch",
            TransferRole::Finetune(m) => m.name(),
        }
    }
}

/// One run of a transfer study, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedTransfer {
    /// The run (its `size` is the ladder's name for the size).
    pub run: PlannedRun,
    /// What it is for.
    pub role: TransferRole,
    /// The run id of its parent (a fine-tuning run), which must be recorded first.
    pub parent: Option<String>,
}

/// A whole transfer study, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferPlan {
    /// The study as written.
    pub spec: TransferStudySpec,
    /// Its runs: pre-training first, then for each size the target-corpus runs.
    pub runs: Vec<PlannedTransfer>,
    /// Vocabulary size of the shared tokenizer.
    pub vocab_size: usize,
}

impl TransferPlan {
    /// Total training FLOPs of the study.
    pub fn total_flops(&self) -> f64 {
        self.runs.iter().map(|r| r.run.flops).sum()
    }

    /// The planned run with `run_id`.
    pub fn get(&self, run_id: &str) -> Option<&PlannedTransfer> {
        self.runs.iter().find(|r| r.run.run_id == run_id)
    }
}

/// Expands a transfer study written in `study_file` into its runs, their directories under
/// `study_dir` (where fine-tuning runs find their parents).
pub fn plan_transfer_study(
    spec: &TransferStudySpec,
    study_dir: &Path,
    study_file: &Path,
) -> Result<TransferPlan, SweepError> {
    let err = |source| SweepError::Spec {
        path: study_file.to_path_buf(),
        source,
    };
    let budget = spec.check().map_err(err)?;
    // One vocabulary for both corpora (checked): the pre-training corpus's.
    let (vocab_size, pretrain_data) = study_vocab(&spec.pretrain.data, study_dir, study_file)?;
    let finetune_data = spec.finetune.data.clone();
    let convention = spec.param_convention;
    let mut runs: Vec<PlannedTransfer> = Vec::new();
    let push = |runs: &mut Vec<PlannedTransfer>, planned: PlannedTransfer| {
        if !runs.iter().any(|r| r.run.run_id == planned.run.run_id) {
            runs.push(planned);
        }
    };
    let with_budget = |train: &TrainSpec, tokens: u64| TrainSpec {
        budget_tokens: Some(tokens),
        ..train.clone()
    };
    let finetune_train = TrainSpec {
        lr: spec.finetune.lr.unwrap_or(spec.train.lr),
        ..spec.train.clone()
    };
    for (size, model) in spec.sizes.specs(&spec.model) {
        for &seed in &spec.seeds {
            let tokens = match budget {
                PretrainBudget::Tokens(t) => t,
                PretrainBudget::TokensPerParam(r) => {
                    tokens_for(r, model_n(&model, vocab_size, convention).map_err(err)?)
                }
            };
            let run_spec = |data: &scalelab_spec::DataSpec, train: TrainSpec| RunSpec {
                seed,
                model: model.clone(),
                data: data.clone(),
                train,
                task: None,
                init: Default::default(),
                device: Default::default(),
            };
            let resolve = |spec: RunSpec, parent: Option<&Parent>, tokens: u64| {
                PlannedRun::resolve(
                    &size,
                    spec,
                    vocab_size,
                    parent,
                    convention,
                    BudgetPoint::Tokens(tokens),
                )
                .map_err(err)
            };
            let pretrain = resolve(
                run_spec(&pretrain_data, with_budget(&spec.train, tokens)),
                None,
                tokens,
            )?;
            let parent_of = |run: &PlannedRun| Parent {
                run_id: run.run_id.clone(),
                family: model.family,
                language_model: true,
                dir: run_dir(study_dir, &run.run_id).display().to_string(),
                segments: false,
            };
            let parent = parent_of(&pretrain);
            push(
                &mut runs,
                PlannedTransfer {
                    run: pretrain,
                    role: TransferRole::Pretrain,
                    parent: None,
                },
            );
            for d in spec.scratch_budgets() {
                let run = resolve(
                    run_spec(&finetune_data, with_budget(&spec.train, d)),
                    None,
                    d,
                )?;
                push(
                    &mut runs,
                    PlannedTransfer {
                        run,
                        role: TransferRole::Scratch,
                        parent: None,
                    },
                );
            }
            // Each method once, LoRA at each rank.
            let ranks = spec.lora_ranks();
            let variants = (spec.finetune.methods.iter()).flat_map(|&method| {
                let ranks = if method == TransferMethod::Lora {
                    ranks.clone()
                } else {
                    vec![spec.finetune.lora_rank]
                };
                ranks.into_iter().map(move |rank| (method, rank))
            });
            for (method, rank) in variants {
                for &d_f in &spec.finetune.tokens {
                    // One stage: `adapt` from `from`, on D_F tokens.
                    let stage = |adapt: AdaptKind, from: &Parent| {
                        let init = spec.init(adapt, &from.dir);
                        let init = if adapt == AdaptKind::Lora {
                            InitSpec {
                                lora_rank: rank,
                                ..init
                            }
                        } else {
                            init
                        };
                        resolve(
                            RunSpec {
                                init,
                                ..run_spec(&finetune_data, with_budget(&finetune_train, d_f))
                            },
                            Some(from),
                            d_f,
                        )
                        .map_err(|e| in_cell(e, &size, method, rank, d_f, study_file))
                    };
                    let mut from = parent.clone();
                    if method == TransferMethod::LpFt {
                        let probe = stage(AdaptKind::Probe, &parent)?;
                        from = parent_of(&probe);
                        push(
                            &mut runs,
                            PlannedTransfer {
                                run: probe,
                                role: TransferRole::Finetune(TransferMethod::Probe),
                                parent: Some(parent.run_id.clone()),
                            },
                        );
                    }
                    let run = stage(method.adapt(), &from)?;
                    push(
                        &mut runs,
                        PlannedTransfer {
                            run,
                            role: TransferRole::Finetune(method),
                            parent: Some(from.run_id.clone()),
                        },
                    );
                }
            }
        }
    }
    Ok(TransferPlan {
        spec: spec.clone(),
        runs,
        vocab_size,
    })
}

/// A fine-tuning run that does not resolve, named by its cell.
fn in_cell(
    e: SweepError,
    size: &str,
    method: TransferMethod,
    rank: usize,
    d_f: u64,
    file: &Path,
) -> SweepError {
    let method = if method == TransferMethod::Lora {
        format!("{method} (rank {rank})")
    } else {
        method.to_string()
    };
    match e {
        SweepError::Spec { source, .. } => SweepError::Cell {
            path: file.to_path_buf(),
            cell: format!("size {size}, method {method}, D_F = {d_f}"),
            source,
        },
        other => other,
    }
}

impl PlannedStudy for TransferPlan {
    /// The study's runs as jobs; a fine-tuning job waits for its parent.
    fn jobs(&self) -> Result<Vec<Job>, SweepError> {
        role_jobs((self.runs.iter()).map(|r| (&r.run, r.role.name().to_string(), r.parent.clone())))
    }

    fn add_planned(&self, store: &mut Store) -> Result<(), SweepError> {
        let runs = (self.runs.iter()).map(|r| (&r.run, r.role.name().to_string()));
        add_role_runs(store, runs, self.spec.param_convention)
    }
}

/// Whether a spec is a transfer study's: it has `[pretrain]` or `[finetune]`.
pub fn is_transfer_study(table: &toml::Table) -> bool {
    table.contains_key("pretrain") || table.contains_key("finetune")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUDY: &str = r#"
        name = "t"
        seeds = [0, 1]
        [model]
        ctx_len = 32
        [sizes]
        depths = [1, 2]
        [train]
        batch_size = 4
        [pretrain]
        tokens = 4096
        [finetune]
        data = { corpus = "dir", path = "code" }
        tokens = [256, 1024]
        scratch_tokens = [4096]
        methods = ["full", "lora", "lp-ft"]
        lr = 1e-3
    "#;

    #[test]
    fn every_size_and_seed_gets_a_parent_its_scratch_runs_and_its_fine_tunings() {
        let spec: TransferStudySpec = toml::from_str(STUDY).unwrap();
        let dir = Path::new("studies/t");
        let plan = plan_transfer_study(&spec, dir, Path::new("t.toml")).unwrap();
        // Per size and seed: 1 pre-training, 3 from-scratch budgets, 3 methods × 2 D_F and
        // LP-FT's probe stage at each D_F.
        assert_eq!(plan.runs.len(), 2 * 2 * (1 + 3 + 6 + 2));
        let count = |role: TransferRole| plan.runs.iter().filter(|r| r.role == role).count();
        assert_eq!(count(TransferRole::Pretrain), 4);
        assert_eq!(count(TransferRole::Scratch), 12);
        assert_eq!(count(TransferRole::Finetune(TransferMethod::Lora)), 8);
        assert_eq!(count(TransferRole::Finetune(TransferMethod::Probe)), 8);
        for r in &plan.runs {
            match r.role {
                TransferRole::Pretrain => {
                    assert_eq!(r.run.tokens, 4096);
                    assert!(r.run.spec.data.path.is_none());
                }
                TransferRole::Scratch => {
                    assert!(r.parent.is_none() && r.run.spec.init.from.is_none());
                    assert_eq!(r.run.spec.train.lr, spec.train.lr);
                }
                TransferRole::Finetune(method) => {
                    let parent = plan.get(r.parent.as_deref().unwrap()).unwrap();
                    // LP-FT fine-tunes its probe (of the same D_F); the rest start from
                    // the pre-trained model.
                    if method == TransferMethod::LpFt {
                        assert_eq!(parent.role, TransferRole::Finetune(TransferMethod::Probe));
                        assert_eq!(parent.run.tokens, r.run.tokens);
                    } else {
                        assert_eq!(parent.role, TransferRole::Pretrain);
                    }
                    assert_eq!(
                        (&parent.run.size, parent.run.seed),
                        (&r.run.size, r.run.seed)
                    );
                    let from = r.run.spec.init.from.as_deref().unwrap();
                    assert_eq!(Path::new(from), run_dir(dir, &parent.run.run_id));
                    assert_eq!(r.run.spec.init.adapt, method.adapt());
                    assert_eq!(r.run.spec.train.lr, 1e-3);
                    let init = r.run.config.init.as_ref().unwrap();
                    assert_eq!(init.parent.as_deref(), Some(parent.run.run_id.as_str()));
                }
            }
        }
        // The jobs carry the dependency.
        let jobs = plan.jobs().unwrap();
        let waiting = jobs.iter().filter(|j| j.after.is_some()).count();
        assert_eq!(waiting, 4 * 2 * 4);
    }

    #[test]
    fn lora_runs_once_per_rank_and_the_other_methods_once() {
        let ranks = STUDY.replace("[finetune]", "[finetune]\nlora_ranks = [2, 8, 32]");
        let spec: TransferStudySpec = toml::from_str(&ranks).unwrap();
        let plan = plan_transfer_study(&spec, Path::new("s"), Path::new("t.toml")).unwrap();
        let lora: Vec<&PlannedTransfer> = (plan.runs.iter())
            .filter(|r| r.role == TransferRole::Finetune(TransferMethod::Lora))
            .collect();
        // 2 sizes × 2 seeds × 2 D_F × 3 ranks, each rank a run of its own.
        assert_eq!(lora.len(), 2 * 2 * 2 * 3);
        for rank in [2, 8, 32] {
            let at = lora.iter().filter(|r| r.run.spec.init.lora_rank == rank);
            assert_eq!(at.count(), 8, "rank {rank}");
        }
        let mut ids: Vec<&str> = lora.iter().map(|r| r.run.run_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 24);
        // The rest are as many as with one rank.
        let one: TransferStudySpec = toml::from_str(STUDY).unwrap();
        let one = plan_transfer_study(&one, Path::new("s"), Path::new("t.toml")).unwrap();
        assert_eq!(plan.runs.len(), one.runs.len() + 2 * 2 * 2 * 2);
    }

    #[test]
    fn fine_tuning_the_pretraining_corpus_is_refused() {
        let same = STUDY.replace("{ corpus = \"dir\", path = \"code\" }", "{}");
        let spec: TransferStudySpec = toml::from_str(&same).unwrap();
        let err = plan_transfer_study(&spec, Path::new("s"), Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.toml") && err.contains("finetune.data"),
            "{err}"
        );
    }
}
