//! Expanding a study spec into runs: one per (size, budget, seed), each with its resolved
//! config, identity, parameters, tokens and FLOPs, before anything trains.

use std::path::Path;

use scalelab_data::{Tokenizer, load_corpus};
use scalelab_spec::run_id;
use scalelab_spec::{
    BudgetKind, DataSpec, LmSpec, ParamConvention, ParamCounts, Parent, RunConfig, RunSpec,
    SpecError, StudySpec, TokenizerSpec,
};
use serde::{Deserialize, Serialize};

use crate::SweepError;

/// Where a run sits on the study's budget axis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum BudgetPoint {
    /// A fixed token budget.
    Tokens(u64),
    /// A token budget of `ratio × N`.
    TokensPerParam(f64),
    /// An IsoFLOP budget C.
    Flops(f64),
}

impl BudgetPoint {
    /// Kind, as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            BudgetPoint::Tokens(_) => "tokens",
            BudgetPoint::TokensPerParam(_) => "tokens_per_param",
            BudgetPoint::Flops(_) => "flops",
        }
    }

    /// Value, as stored.
    pub fn value(&self) -> f64 {
        match *self {
            BudgetPoint::Tokens(t) => t as f64,
            BudgetPoint::TokensPerParam(r) => r,
            BudgetPoint::Flops(c) => c,
        }
    }
    /// Every point of a budget axis, in the order the study file lists them.
    pub fn all(budget: &BudgetKind) -> Vec<BudgetPoint> {
        match budget {
            BudgetKind::Tokens(t) => t.iter().map(|&t| BudgetPoint::Tokens(t)).collect(),
            BudgetKind::TokensPerParam(r) => {
                r.iter().map(|&r| BudgetPoint::TokensPerParam(r)).collect()
            }
            BudgetKind::Flops(c) => c.iter().map(|&c| BudgetPoint::Flops(c)).collect(),
        }
    }
}

/// One run of a study, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRun {
    /// Identity: hash of the resolved config (the same as `scalelab train` computes).
    pub run_id: String,
    /// Which size of the ladder.
    pub size: String,
    /// The run spec the child process trains.
    pub spec: RunSpec,
    /// Its resolved config.
    pub config: RunConfig,
    /// Parameter counts in both conventions.
    pub params: ParamCounts,
    /// N in the study's convention.
    pub n: f64,
    /// Training FLOPs per token.
    pub flops_per_token: f64,
    /// Tokens the run will train on (the budget rounded up to whole steps).
    pub tokens: u64,
    /// Training FLOPs it will spend.
    pub flops: f64,
    /// Its place on the budget axis.
    pub budget: BudgetPoint,
    /// Its seed.
    pub seed: u64,
}

impl PlannedRun {
    /// Resolves `spec` (for a tokenizer of `vocab_size` tokens, from `parent` if it starts
    /// from one) into a planned run of the ladder's `size` at `budget`, N counted by
    /// `convention`.
    pub fn resolve(
        size: &str,
        spec: RunSpec,
        vocab_size: usize,
        parent: Option<&Parent>,
        convention: ParamConvention,
        budget: BudgetPoint,
    ) -> Result<PlannedRun, SpecError> {
        let config = spec.resolve(vocab_size, parent)?;
        let params = config.model.param_counts();
        let (steps, tokens_per_step) = config.planned_steps();
        let tokens = steps.saturating_mul(tokens_per_step);
        let flops_per_token = config.model.flops_per_token();
        Ok(PlannedRun {
            run_id: run_id(&config)?,
            size: size.to_string(),
            seed: spec.seed,
            spec,
            params,
            n: convention.count(params),
            flops_per_token,
            tokens,
            flops: tokens as f64 * flops_per_token,
            budget,
            config,
        })
    }
}

impl PlannedRun {
    /// The token budget the run was planned at, if it was planned at one.
    pub fn tokens_budget(&self) -> Option<u64> {
        match self.budget {
            BudgetPoint::Tokens(t) => Some(t),
            _ => None,
        }
    }
}

/// The runs of a study whose runs have roles (a transfer or compression study), each as
/// `(run, role name, the run it waits for)`, as jobs labelled `SIZE:ROLE`.
pub(crate) fn role_jobs<'a>(
    runs: impl Iterator<Item = (&'a PlannedRun, String, Option<String>)>,
) -> Result<Vec<crate::schedule::Job>, SweepError> {
    runs.map(|(run, role, after)| {
        let label = format!("{}:{role}", run.size);
        let size = (run.n, run.tokens, run.flops);
        let job =
            crate::schedule::Job::new(crate::RunKind::Lm, &run.run_id, &label, size, &run.spec)?;
        Ok(job.after(after))
    })
    .collect()
}

/// Enters such runs into `store` as planned, their size labelled `SIZE:ROLE`.
pub(crate) fn add_role_runs<'a>(
    store: &mut crate::Store,
    runs: impl Iterator<Item = (&'a PlannedRun, String)>,
    convention: ParamConvention,
) -> Result<(), SweepError> {
    let runs: Vec<PlannedRun> = runs
        .map(|(run, role)| PlannedRun {
            size: format!("{}:{role}", run.size),
            ..run.clone()
        })
        .collect();
    store.add_planned(&runs, convention.name())
}

/// N of `model` in `convention`, for a tokenizer of `vocab_size` tokens.
pub fn model_n(
    model: &LmSpec,
    vocab_size: usize,
    convention: ParamConvention,
) -> Result<f64, SpecError> {
    Ok(convention.count(model.resolve(vocab_size)?.param_counts()))
}

/// The token budget of `ratio` tokens per parameter for a model of `n` parameters (at
/// least one token).
pub fn tokens_for(ratio: f64, n: f64) -> u64 {
    (ratio * n).round().max(1.0) as u64
}

/// A whole study, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyPlan {
    /// The study as written.
    pub spec: StudySpec,
    /// Its runs, smallest FLOPs first.
    pub runs: Vec<PlannedRun>,
    /// Vocabulary size of the shared tokenizer.
    pub vocab_size: usize,
    /// Runs that resolved to a run already planned (same config), left out.
    pub duplicates: usize,
}

impl StudyPlan {
    /// Total training FLOPs of the study.
    pub fn total_flops(&self) -> f64 {
        self.runs.iter().map(|r| r.flops).sum()
    }
}

/// The study's tokenizer vocabulary, and the data spec its runs use.
///
/// A byte tokenizer needs nothing. A BPE is trained once on the corpus, saved in
/// `study_dir/tokenizer.json`, and every run loads that file, so all runs share one
/// vocabulary and their identities are known before they start.
pub fn study_vocab(
    data: &DataSpec,
    study_dir: &Path,
    study_file: &Path,
) -> Result<(usize, DataSpec), SweepError> {
    let config = data.resolve().map_err(|source| SweepError::Spec {
        path: study_file.to_path_buf(),
        source,
    })?;
    match &config.tokenizer {
        TokenizerSpec::Byte => Ok((Tokenizer::Byte.vocab_size(), data.clone())),
        TokenizerSpec::BpeFile { .. } => Ok((
            Tokenizer::build(&config.tokenizer, &[])?.vocab_size(),
            data.clone(),
        )),
        TokenizerSpec::BpeTrain { .. } => {
            let path = study_dir.join("tokenizer.json");
            if !path.is_file() {
                let corpus = load_corpus(&config.source)?;
                let docs: Vec<&str> = corpus.documents.iter().map(String::as_str).collect();
                let tokenizer = Tokenizer::build(&config.tokenizer, &docs)?;
                std::fs::create_dir_all(study_dir).map_err(|e| SweepError::io(study_dir, e))?;
                tokenizer.save(&path)?;
            }
            let spec = DataSpec {
                tokenizer: scalelab_spec::TokenizerKind::Bpe,
                tokenizer_file: Some(path.to_string_lossy().into_owned()),
                ..data.clone()
            };
            let file = TokenizerSpec::BpeFile {
                path: path.to_string_lossy().into_owned(),
            };
            Ok((Tokenizer::build(&file, &[])?.vocab_size(), spec))
        }
    }
}

/// Expands a study into its runs for a tokenizer of `vocab_size` tokens; `data` is the data
/// spec the runs use (see [`study_vocab`]).
pub fn plan_study(
    spec: &StudySpec,
    data: &DataSpec,
    vocab_size: usize,
    study_file: &Path,
) -> Result<StudyPlan, SweepError> {
    let err = |source| SweepError::Spec {
        path: study_file.to_path_buf(),
        source,
    };
    let budget = spec.check().map_err(err)?;
    let mut runs: Vec<PlannedRun> = Vec::new();
    let mut duplicates = 0;
    let points = BudgetPoint::all(&budget);
    for (size, model) in spec.size_specs() {
        for &point in &points {
            for &seed in &spec.seeds {
                let mut train = spec.train.clone();
                match point {
                    BudgetPoint::Tokens(t) => train.budget_tokens = Some(t),
                    BudgetPoint::TokensPerParam(r) => {
                        let n = model_n(&model, vocab_size, spec.param_convention).map_err(err)?;
                        train.budget_tokens = Some(tokens_for(r, n))
                    }
                    BudgetPoint::Flops(c) => train.budget_flops = Some(c),
                }
                let run_spec = RunSpec {
                    seed,
                    model: model.clone(),
                    data: data.clone(),
                    train,
                    task: spec.task.clone(),
                    init: Default::default(),
                    // The study's runner says where its runs train (`--device`).
                    device: Default::default(),
                };
                let planned = PlannedRun::resolve(
                    &size,
                    run_spec,
                    vocab_size,
                    None,
                    spec.param_convention,
                    point,
                )
                .map_err(err)?;
                if let BudgetPoint::Flops(c) = point
                    && !in_window(&spec.budget, c / planned.flops_per_token / planned.n)
                {
                    continue;
                }
                if runs.iter().any(|r| r.run_id == planned.run_id) {
                    duplicates += 1;
                    continue;
                }
                runs.push(planned);
            }
        }
    }
    if let BudgetKind::Flops(budgets) = &budget
        && (spec.budget.min_tokens_per_param.is_some()
            || spec.budget.max_tokens_per_param.is_some())
    {
        for &c in budgets {
            let sizes = runs
                .iter()
                .filter(|r| r.budget == BudgetPoint::Flops(c) && r.seed == spec.seeds[0])
                .count();
            if sizes < 3 {
                return Err(err(scalelab_spec::SpecError::invalid(
                    "budget.min_tokens_per_param/max_tokens_per_param",
                    format!("{sizes} size(s) at C = {c:e}"),
                    "an IsoFLOP profile needs at least three sizes for its parabola; widen the window or add sizes to the ladder",
                )));
            }
        }
    }
    runs.sort_by(|a, b| a.flops.total_cmp(&b.flops));
    Ok(StudyPlan {
        spec: spec.clone(),
        runs,
        vocab_size,
        duplicates,
    })
}

/// Whether `tokens_per_param` lies in the study's IsoFLOP window (ends included).
fn in_window(budget: &scalelab_spec::BudgetAxis, tokens_per_param: f64) -> bool {
    budget
        .min_tokens_per_param
        .is_none_or(|lo| tokens_per_param >= lo)
        && budget
            .max_tokens_per_param
            .is_none_or(|hi| tokens_per_param <= hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study(budget: &str) -> StudySpec {
        toml::from_str(&format!(
            "name = \"t\"\nseeds = [0, 1]\n[model]\nctx_len = 32\n[sizes]\ndepths = [1, 2]\n[budget]\n{budget}\n[train]\nbatch_size = 4\n"
        ))
        .unwrap()
    }

    #[test]
    fn runs_cover_sizes_budgets_and_seeds_with_exact_costs() {
        let s = study("tokens_per_param = [2.0]");
        let plan = plan_study(&s, &s.data, 256, Path::new("t.toml")).unwrap();
        assert_eq!(plan.runs.len(), 4);
        for r in &plan.runs {
            // Budget = 2·N tokens, rounded up to whole steps of 4 × 32 tokens.
            let want = (2.0 * r.params.total as f64).round() as u64;
            assert_eq!(r.tokens, want.div_ceil(128) * 128, "{}", r.size);
            assert_eq!(r.flops, r.tokens as f64 * r.flops_per_token);
            assert_eq!(r.run_id.len(), 16);
        }
        let mut ids: Vec<&str> = plan.runs.iter().map(|r| r.run_id.as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 4, "seeds give distinct runs");
        assert!(plan.runs.windows(2).all(|w| w[0].flops <= w[1].flops));
    }

    #[test]
    fn isoflop_runs_spend_their_budget() {
        let s = study("flops = [1e11]");
        let plan = plan_study(&s, &s.data, 256, Path::new("t.toml")).unwrap();
        for r in &plan.runs {
            // Rounded up by less than one step.
            let step_flops = 128.0 * r.flops_per_token;
            assert!(r.flops >= 1e11 - step_flops && r.flops < 1e11 + step_flops);
        }
    }

    /// The window keeps, at each budget, exactly the sizes whose D/N lies inside it, so
    /// larger budgets train larger models; a window that leaves fewer than three sizes at
    /// some budget is refused.
    #[test]
    fn isoflop_windows_move_the_ladder_with_the_budget() {
        let mut s =
            study("flops = [1e10, 1e12]\nmin_tokens_per_param = 5.0\nmax_tokens_per_param = 400.0");
        s.sizes.depths = vec![];
        s.sizes.shapes = [
            (1, 8),
            (1, 16),
            (1, 24),
            (2, 24),
            (2, 32),
            (2, 48),
            (3, 48),
            (3, 64),
        ]
        .iter()
        .map(|&(n_layers, d_model)| scalelab_spec::ShapeSpec {
            n_layers,
            d_model,
            n_heads: d_model / 8,
            d_ff: None,
        })
        .collect();
        s.seeds = vec![0];
        let plan = plan_study(&s, &s.data, 256, Path::new("t.toml")).unwrap();
        for c in [1e10, 1e12] {
            let at: Vec<&PlannedRun> = plan
                .runs
                .iter()
                .filter(|r| r.budget == BudgetPoint::Flops(c))
                .collect();
            assert!(at.len() >= 3, "{c}: {}", at.len());
            for r in &at {
                let ratio = c / r.flops_per_token / r.n;
                assert!((5.0..=400.0).contains(&ratio), "{} at {c}: {ratio}", r.size);
            }
        }
        let largest = |c: f64| {
            plan.runs
                .iter()
                .filter(|r| r.budget == BudgetPoint::Flops(c))
                .map(|r| r.n)
                .fold(0.0, f64::max)
        };
        assert!(largest(1e12) > largest(1e10));
        let narrow =
            study("flops = [1e12]\nmin_tokens_per_param = 20.0\nmax_tokens_per_param = 21.0");
        let err = plan_study(&narrow, &narrow.data, 256, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least three sizes"), "{err}");
    }

    #[test]
    fn a_bad_study_names_its_file() {
        let s = study("tokens = [0]");
        let err = plan_study(&s, &s.data, 256, Path::new("my.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("my.toml") && err.contains("budget.tokens"),
            "{err}"
        );
    }
}
