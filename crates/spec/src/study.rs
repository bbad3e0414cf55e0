//! The spec of a scaling study: a family of runs over model sizes, data budgets, compute
//! budgets and seeds, sharing one corpus and one set of training settings.
//!
//! A study is written in TOML (see `examples/quickstart.toml`):
//!
//! ```toml
//! name = "quickstart"
//! seeds = [0]
//! [model]            # the base model; each size below overrides its shape
//! ctx_len = 64
//! [sizes]            # the size ladder: depths of the size dial, presets, or explicit shapes
//! depths = [1, 2, 3]
//! [budget]           # exactly one axis: tokens, tokens_per_param, or iso-FLOP budgets
//! tokens = [200000]
//! [train]            # shared settings; the budget comes from [budget]
//! lr = 3e-3
//! ```
//!
//! [`StudySpec::check`] validates everything that does not need the corpus; the sweep crate
//! expands the study into runs.

use serde::{Deserialize, Serialize};

use crate::{DataSpec, GptPreset, LmSpec, ParamCounts, SpecError, TaskSpec, TrainSpec};

/// Schema version of study files' resolved records and of the study store. Version 2 keeps
/// every run, of either kind, in the one `runs` table (version 1 kept classification runs in a
/// table of their own; such stores are migrated when opened).
pub const STUDY_SCHEMA_VERSION: u32 = 2;

/// A scaling study as the user writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySpec {
    /// A short name, used in reports.
    pub name: String,
    /// What the study is for, shown in the report.
    #[serde(default)]
    pub description: String,
    /// Every (size, budget) pair is trained once per seed.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// The base model: context length, dropout, tying, aspect ratio; sizes override its shape.
    #[serde(default)]
    pub model: LmSpec,
    /// The corpus and tokenizer, shared by every run.
    #[serde(default)]
    pub data: DataSpec,
    /// Optimisation settings shared by every run. Leave the budget keys unset.
    #[serde(default)]
    pub train: TrainSpec,
    /// A synthetic task every run trains on (alone or mixed into the corpus) and is
    /// evaluated on at every evaluation point.
    #[serde(default)]
    pub task: Option<TaskSpec>,
    /// The size ladder.
    pub sizes: SizeLadder,
    /// The budget axis.
    pub budget: BudgetAxis,
    /// Which parameter count N means in `tokens_per_param` and in the fits.
    #[serde(default)]
    pub param_convention: ParamConvention,
    /// Analysis settings.
    #[serde(default)]
    pub analysis: AnalysisSpec,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// Model sizes of a study. Every entry of every list is one size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SizeLadder {
    /// Values of the size dial (layers; width = depth × the model's aspect ratio).
    pub depths: Vec<usize>,
    /// Named presets (nano, micro, mini, small, gpt2-small).
    pub presets: Vec<GptPreset>,
    /// Explicit shapes.
    pub shapes: Vec<ShapeSpec>,
}

/// An explicit GPT shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeSpec {
    /// Transformer blocks.
    pub n_layers: usize,
    /// Residual width.
    pub d_model: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// MLP width (default 4 × d_model).
    #[serde(default)]
    pub d_ff: Option<usize>,
}

/// The budget axis of a study: give exactly one of the three lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetAxis {
    /// Training tokens: every size is trained on each of these.
    pub tokens: Vec<u64>,
    /// Tokens per parameter: size N is trained on `ratio × N` tokens (Chinchilla's ~20).
    pub tokens_per_param: Vec<f64>,
    /// IsoFLOP budgets C: every size is trained to exactly C FLOPs, so D = C / (FLOPs per
    /// token), which is C/(6N) when N counts the matrix weights and attention is neglected.
    pub flops: Vec<f64>,
    /// With `flops`: at each budget, train only the sizes that would see at least this many
    /// tokens per parameter (N in the study's convention). Together with
    /// `max_tokens_per_param` this centres each IsoFLOP profile's ladder on the region where
    /// its optimum can lie, as Hoffmann et al. 2022 chose a range of sizes per budget, instead
    /// of training tiny models for many epochs at large budgets.
    pub min_tokens_per_param: Option<f64>,
    /// With `flops`: at each budget, train only the sizes that would see at most this many
    /// tokens per parameter.
    pub max_tokens_per_param: Option<f64>,
}

/// The budget axis, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "values")]
pub enum BudgetKind {
    /// Fixed token budgets.
    Tokens(Vec<u64>),
    /// Token budgets proportional to N.
    TokensPerParam(Vec<f64>),
    /// IsoFLOP budgets.
    Flops(Vec<f64>),
}

/// Which parameter count is N.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamConvention {
    /// Every parameter (Hoffmann et al. 2022).
    #[default]
    Total,
    /// Without embeddings and an untied head (Kaplan et al. 2020).
    NonEmbedding,
}

impl ParamConvention {
    /// The name used in records and reports.
    pub fn name(self) -> &'static str {
        match self {
            ParamConvention::Total => "total",
            ParamConvention::NonEmbedding => "non_embedding",
        }
    }

    /// N of a model with these counts.
    pub fn count(self, params: ParamCounts) -> f64 {
        match self {
            ParamConvention::Total => params.total as f64,
            ParamConvention::NonEmbedding => params.non_embedding as f64,
        }
    }
}

/// What every study of a size ladder checks first: a `name` (`example` shows one), at least
/// one seed, and the ladder.
pub(crate) fn check_ladder_study(
    name: &str,
    seeds: &[u64],
    sizes: &SizeLadder,
    example: &str,
) -> Result<(), SpecError> {
    if name.trim().is_empty() {
        return Err(SpecError::invalid(
            "name",
            "\"\"",
            format!("give the study a short name, e.g. name = \"{example}\""),
        ));
    }
    if seeds.is_empty() {
        return Err(SpecError::invalid(
            "seeds",
            "[]",
            "give at least one seed, e.g. seeds = [0]",
        ));
    }
    sizes.check()
}

/// How the study's results are analysed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisSpec {
    /// Bootstrap replicates for every interval.
    pub bootstrap: usize,
    /// The largest this many sizes are held out of the fit and predicted (0: no check).
    pub hold_out: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// Starts of the full Chinchilla fit: unset runs L-BFGS from all 4,500 points of
    /// Hoffmann et al.'s grid (the default, and what the README's figures use); a number k
    /// starts from the k grid points with the lowest objective, for quicker reports.
    pub fit_starts: Option<usize>,
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        AnalysisSpec {
            bootstrap: 200,
            hold_out: 1,
            seed: 0,
            fit_starts: None,
        }
    }
}

impl StudySpec {
    /// Checks what can be checked without the corpus, and returns the budget axis.
    pub fn check(&self) -> Result<BudgetKind, SpecError> {
        check_ladder_study(&self.name, &self.seeds, &self.sizes, "quickstart")?;
        if self.analysis.fit_starts == Some(0) {
            return Err(SpecError::invalid(
                "analysis.fit_starts",
                0,
                "start the fit from at least one grid point, or leave it unset for the paper's whole grid",
            ));
        }
        if self.train.budget_tokens.is_some() || self.train.budget_flops.is_some() {
            return Err(SpecError::invalid(
                "train.budget_tokens/budget_flops",
                "set",
                "a study's budgets come from [budget]; remove them from [train]",
            ));
        }
        let b = &self.budget;
        let given = [
            !b.tokens.is_empty(),
            !b.tokens_per_param.is_empty(),
            !b.flops.is_empty(),
        ]
        .iter()
        .filter(|&&x| x)
        .count();
        if given != 1 {
            return Err(SpecError::invalid(
                "budget",
                format!("{given} axes given"),
                "give exactly one of budget.tokens, budget.tokens_per_param, budget.flops",
            ));
        }
        if let Some(t) = b.tokens.iter().find(|&&t| t == 0) {
            return Err(SpecError::invalid(
                "budget.tokens",
                t,
                "token budgets must be > 0",
            ));
        }
        if let Some(r) = b
            .tokens_per_param
            .iter()
            .find(|r| !(r.is_finite() && **r > 0.0))
        {
            return Err(SpecError::invalid(
                "budget.tokens_per_param",
                r,
                "ratios must be finite and > 0 (Chinchilla's optimum is about 20)",
            ));
        }
        for (key, value) in [
            ("budget.min_tokens_per_param", b.min_tokens_per_param),
            ("budget.max_tokens_per_param", b.max_tokens_per_param),
        ] {
            if let Some(v) = value {
                if b.flops.is_empty() {
                    return Err(SpecError::invalid(
                        key,
                        v,
                        "a tokens-per-parameter window only applies to IsoFLOP budgets (budget.flops)",
                    ));
                }
                if !(v.is_finite() && v > 0.0) {
                    return Err(SpecError::invalid(
                        key,
                        v,
                        "must be a finite number of tokens per parameter > 0, e.g. 5",
                    ));
                }
            }
        }
        if let (Some(lo), Some(hi)) = (b.min_tokens_per_param, b.max_tokens_per_param)
            && lo >= hi
        {
            return Err(SpecError::invalid(
                "budget.min_tokens_per_param",
                lo,
                format!("must be below budget.max_tokens_per_param ({hi})"),
            ));
        }
        if let Some(c) = b.flops.iter().find(|c| !(c.is_finite() && **c > 0.0)) {
            return Err(SpecError::invalid(
                "budget.flops",
                c,
                "FLOP budgets must be finite and > 0, e.g. 1e13",
            ));
        }
        Ok(if !b.tokens.is_empty() {
            BudgetKind::Tokens(b.tokens.clone())
        } else if !b.tokens_per_param.is_empty() {
            BudgetKind::TokensPerParam(b.tokens_per_param.clone())
        } else {
            BudgetKind::Flops(b.flops.clone())
        })
    }

    /// The base model with each size of the ladder applied, in the order written.
    pub fn size_specs(&self) -> Vec<(String, LmSpec)> {
        self.sizes.specs(&self.model)
    }
}

impl SizeLadder {
    /// Whether it names no size.
    pub fn is_empty(&self) -> bool {
        self.depths.is_empty() && self.presets.is_empty() && self.shapes.is_empty()
    }

    /// Checks the ladder: at least one size, depths of at least one layer.
    pub fn check(&self) -> Result<(), SpecError> {
        if self.is_empty() {
            return Err(SpecError::invalid(
                "sizes",
                "(empty)",
                "list the model sizes, e.g. [sizes] depths = [1, 2, 3, 4]",
            ));
        }
        if let Some(d) = self.depths.iter().find(|&&d| d == 0) {
            return Err(SpecError::invalid(
                "sizes.depths",
                d,
                "depths are numbers of layers, at least 1",
            ));
        }
        Ok(())
    }

    /// `model` with each size applied, named, in the order written.
    pub fn specs(&self, model: &LmSpec) -> Vec<(String, LmSpec)> {
        let base = LmSpec {
            preset: None,
            depth: None,
            n_layers: None,
            d_model: None,
            n_heads: None,
            d_ff: None,
            ..model.clone()
        };
        let mut out = Vec::new();
        for &depth in &self.depths {
            out.push((
                format!("depth{depth}"),
                LmSpec {
                    depth: Some(depth),
                    ..base.clone()
                },
            ));
        }
        for &preset in &self.presets {
            out.push((
                preset.to_string(),
                LmSpec {
                    preset: Some(preset),
                    ..base.clone()
                },
            ));
        }
        for shape in &self.shapes {
            out.push((
                format!("L{}-d{}-h{}", shape.n_layers, shape.d_model, shape.n_heads),
                LmSpec {
                    n_layers: Some(shape.n_layers),
                    d_model: Some(shape.d_model),
                    n_heads: Some(shape.n_heads),
                    d_ff: shape.d_ff,
                    ..base.clone()
                },
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUDY: &str = r#"
        name = "t"
        [model]
        ctx_len = 64
        [sizes]
        depths = [1, 2]
        presets = ["nano"]
        shapes = [{ n_layers = 2, d_model = 96, n_heads = 3 }]
        [budget]
        tokens_per_param = [10.0, 20.0]
    "#;

    #[test]
    fn a_study_parses_and_expands_its_sizes() {
        let s: StudySpec = toml::from_str(STUDY).unwrap();
        assert_eq!(
            s.check().unwrap(),
            BudgetKind::TokensPerParam(vec![10.0, 20.0])
        );
        let sizes = s.size_specs();
        let names: Vec<&str> = sizes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["depth1", "depth2", "nano", "L2-d96-h3"]);
        let shape = sizes[3].1.resolve(256).unwrap();
        assert_eq!((shape.n_layers, shape.d_model, shape.n_heads), (2, 96, 3));
        assert_eq!(shape.ctx_len, 64);
        assert_eq!(s.seeds, vec![0]);
    }

    #[test]
    fn bad_studies_name_the_key() {
        let bad = STUDY.replace("tokens_per_param = [10.0, 20.0]", "tokens = [0]");
        let s: StudySpec = toml::from_str(&bad).unwrap();
        assert!(s.check().unwrap_err().to_string().contains("budget.tokens"));

        let two = STUDY.replace("[budget]", "[budget]\nflops = [1e12]");
        let s: StudySpec = toml::from_str(&two).unwrap();
        assert!(s.check().unwrap_err().to_string().contains("exactly one"));

        let typo = STUDY.replace("depths", "depth");
        let err = toml::from_str::<StudySpec>(&typo).unwrap_err().to_string();
        assert!(err.contains("depth"), "{err}");

        let mut s: StudySpec = toml::from_str(STUDY).unwrap();
        s.train.budget_tokens = Some(5);
        assert!(s.check().unwrap_err().to_string().contains("[budget]"));
        s.train.budget_tokens = None;
        s.sizes = SizeLadder::default();
        assert!(s.check().unwrap_err().to_string().contains("sizes"));
    }
}
