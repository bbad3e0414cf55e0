//! The spec of a compression study: is a compressed large model better than a dense small
//! model trained from scratch at the same bytes, non-zero parameters or inference FLOPs?
//!
//! Every size of a ladder is trained from scratch on the same tokens: these dense models
//! draw the frontier. The sizes named in `compress.sizes` are then compressed one-shot by
//! each method at each level, trained again from scratch with gradual pruning to each
//! sparsity, and serve as the teacher of smaller students; every result is placed against
//! the dense frontier.
//!
//! ```toml
//! name = "compression"
//! [model]
//! ctx_len = 64
//! [sizes]
//! shapes = [{ n_layers = 1, d_model = 32, n_heads = 2 }, { n_layers = 4, d_model = 64, n_heads = 4 }]
//! [dense]
//! tokens = 400000
//! [compress]
//! one_shot = ["magnitude", "2:4", "int8-channel", "int4-channel"]
//! sparsities = [0.5, 0.75]
//! gradual = true
//! students = ["L1-d32-h2"]
//! ```

use serde::{Deserialize, Serialize};

use crate::compress::Method;
use crate::{DataSpec, LmSpec, ParamConvention, SizeLadder, SpecError, TrainSpec};

/// A compression study as the user writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionStudySpec {
    /// A short name, used in reports.
    pub name: String,
    /// What the study is for, shown in the report.
    #[serde(default)]
    pub description: String,
    /// Every run is trained once per seed.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// The base model; each size overrides its shape.
    #[serde(default)]
    pub model: LmSpec,
    /// The corpus every run trains on and is scored on.
    #[serde(default)]
    pub data: DataSpec,
    /// The dense sizes, each trained from scratch: the frontier.
    pub sizes: SizeLadder,
    /// Optimisation settings shared by every run. Leave the budget keys unset.
    #[serde(default)]
    pub train: TrainSpec,
    /// The dense runs' budget.
    pub dense: DenseSpec,
    /// What is compressed, and how.
    pub compress: CompressSpec,
    /// Which parameter count is N (non-embedding, as Frantar et al. 2023 count it, by default).
    #[serde(default = "non_embedding")]
    pub param_convention: ParamConvention,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

fn non_embedding() -> ParamConvention {
    ParamConvention::NonEmbedding
}

/// `[dense]`: the budget of every dense run (and of the compressed sizes' other runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseSpec {
    /// Training tokens of every size.
    pub tokens: u64,
}

/// `[compress]`: the methods, their levels, and the sizes they are applied to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressSpec {
    /// The ladder's sizes (by their names in the plan: `L4-d64-h4`, `depth2`, `nano`) that are
    /// compressed; empty: the largest.
    #[serde(default)]
    pub sizes: Vec<String>,
    /// One-shot methods applied to each trained compressed size: `magnitude`,
    /// `global-magnitude`, `wanda`, `neurons` and `heads` (structured) at every sparsity, an N:M pattern (`2:4`), `int8`/`int4`
    /// with `-tensor`, `-channel` or `-block<B>` scales.
    #[serde(default)]
    pub one_shot: Vec<String>,
    /// Sparsities of the pruning methods (one-shot and gradual), each in (0, 1).
    #[serde(default)]
    pub sparsities: Vec<f64>,
    /// Train each compressed size from scratch again with gradual magnitude pruning (Zhu &
    /// Gupta 2017) to each sparsity, on the dense runs' tokens.
    #[serde(default)]
    pub gradual: bool,
    /// Where gradual pruning starts and ends, as shares of the budget.
    #[serde(default = "prune_start")]
    pub prune_start: f64,
    /// See `prune_start`.
    #[serde(default = "prune_end")]
    pub prune_end: f64,
    /// Train each compressed size from scratch again with one block shared by all its layers
    /// (ALBERT-style weight sharing: the parameters of one block, the FLOPs of all).
    #[serde(default)]
    pub shared: bool,
    /// Dense sizes trained again as students of the first compressed size (the teacher), on
    /// the dense runs' tokens.
    #[serde(default)]
    pub students: Vec<String>,
    /// Distillation's τ.
    #[serde(default = "temperature")]
    pub distill_temperature: f64,
    /// Distillation's λ (the hard labels' weight).
    #[serde(default = "hard_weight")]
    pub distill_hard_weight: f64,
    /// A quantisation (`int4-channel`, …) applied to every dense run, and to the compressed
    /// sizes trained at `penalty_tokens`: its loss penalty against tokens per parameter (Kumar
    /// et al. 2024). Unset: none.
    #[serde(default)]
    pub penalty: Option<String>,
    /// Further budgets at which the compressed sizes are trained (dense) for the penalty curve.
    #[serde(default)]
    pub penalty_tokens: Vec<u64>,
}

fn prune_start() -> f64 {
    TrainSpec::default().prune_start
}

fn prune_end() -> f64 {
    TrainSpec::default().prune_end
}

fn temperature() -> f64 {
    TrainSpec::default().distill_temperature
}

fn hard_weight() -> f64 {
    TrainSpec::default().distill_hard_weight
}

impl CompressionStudySpec {
    /// Checks what can be checked before planning; returns the one-shot methods, expanded.
    pub fn check(&self) -> Result<Vec<Method>, SpecError> {
        crate::study::check_ladder_study(&self.name, &self.seeds, &self.sizes, "compression")?;
        if self.train.budget_tokens.is_some() || self.train.budget_flops.is_some() {
            return Err(SpecError::invalid(
                "train.budget_tokens/budget_flops",
                "set",
                "a compression study's budget is dense.tokens (and compress.penalty_tokens); remove it from [train]",
            ));
        }
        if self.train.prune_sparsity != 0.0 || self.train.distill_from.is_some() {
            return Err(SpecError::invalid(
                "train.prune_sparsity/distill_from",
                "set",
                "a compression study prunes and distils by [compress]; remove them from [train]",
            ));
        }
        if self.dense.tokens == 0 {
            return Err(SpecError::invalid(
                "dense.tokens",
                0,
                "train every size on at least one batch of tokens, e.g. 400000",
            ));
        }
        if let Some(t) = self.compress.penalty_tokens.iter().find(|&&t| t == 0) {
            return Err(SpecError::invalid(
                "compress.penalty_tokens",
                t,
                "token budgets must be > 0",
            ));
        }
        let c = &self.compress;
        for &s in &c.sparsities {
            if !(s.is_finite() && s > 0.0 && s < 1.0) {
                return Err(SpecError::invalid(
                    "compress.sparsities",
                    s,
                    "each sparsity is a share of weights zeroed, above 0 and below 1, e.g. 0.5",
                ));
            }
        }
        let mut methods = Vec::new();
        for name in &c.one_shot {
            let expanded = Method::from_name(name, &c.sparsities)
                .map_err(|hint| SpecError::invalid("compress.one_shot", name, hint))?;
            if expanded.is_empty() {
                return Err(SpecError::invalid(
                    "compress.sparsities",
                    "[]",
                    format!(
                        "{name} prunes to each of compress.sparsities: list them, e.g. sparsities = [0.5, 0.75]"
                    ),
                ));
            }
            for m in expanded {
                if methods.contains(&m) {
                    return Err(SpecError::invalid(
                        "compress.one_shot",
                        name,
                        "list each method once",
                    ));
                }
                methods.push(m);
            }
        }
        if c.gradual && c.sparsities.is_empty() {
            return Err(SpecError::invalid(
                "compress.sparsities",
                "[]",
                "gradual pruning trains to each of compress.sparsities: list them, e.g. sparsities = [0.5, 0.75]",
            ));
        }
        if !((0.0..1.0).contains(&c.prune_start)
            && c.prune_start < c.prune_end
            && c.prune_end <= 1.0)
        {
            return Err(SpecError::invalid(
                "compress.prune_start/prune_end",
                format!("{}/{}", c.prune_start, c.prune_end),
                "shares of the budget with 0 <= prune_start < prune_end <= 1, e.g. 0.1 and 0.7",
            ));
        }
        if let Some(p) = &c.penalty {
            match Method::from_name(p, &[]) {
                Ok(m) if matches!(m.as_slice(), [Method::Quantize { .. }]) => {}
                _ => {
                    return Err(SpecError::invalid(
                        "compress.penalty",
                        p,
                        "name a quantisation, e.g. \"int4-channel\" or \"int8-tensor\"",
                    ));
                }
            }
        }
        if c.one_shot.is_empty()
            && !c.gradual
            && !c.shared
            && c.students.is_empty()
            && c.penalty.is_none()
        {
            return Err(SpecError::invalid(
                "compress",
                "(nothing to do)",
                "list compress.one_shot methods, or set gradual = true, shared = true, students or penalty",
            ));
        }
        Ok(methods)
    }

    /// The sizes compressed, by name, checked against the ladder's `names` (with their N):
    /// `compress.sizes`, or the largest.
    pub fn compressed_sizes(&self, names: &[(String, f64)]) -> Result<Vec<String>, SpecError> {
        let known = |key: &str, size: &String| {
            if names.iter().any(|(n, _)| n == size) {
                Ok(())
            } else {
                let all: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
                Err(SpecError::invalid(
                    key,
                    size,
                    format!("name one of the ladder's sizes: {}", all.join(", ")),
                ))
            }
        };
        for s in &self.compress.sizes {
            known("compress.sizes", s)?;
        }
        for s in &self.compress.students {
            known("compress.students", s)?;
        }
        if !self.compress.sizes.is_empty() {
            return Ok(self.compress.sizes.clone());
        }
        Ok(names
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(n, _)| vec![n.clone()])
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUDY: &str = r#"
        name = "c"
        [sizes]
        depths = [1, 2]
        [dense]
        tokens = 4096
        [compress]
        one_shot = ["magnitude", "2:4", "int4-block32", "int8-channel"]
        sparsities = [0.5, 0.75]
    "#;

    fn spec(extra: &str) -> CompressionStudySpec {
        toml::from_str(&format!("{STUDY}{extra}")).unwrap()
    }

    /// Pruning methods expand to one method per sparsity, the others to one.
    #[test]
    fn one_shot_methods_expand_by_sparsity() {
        let methods = spec("").check().unwrap();
        let tags: Vec<String> = methods.iter().map(Method::tag).collect();
        assert_eq!(
            tags,
            [
                "magnitude0.5",
                "magnitude0.75",
                "2of4",
                "int4-block32",
                "int8-channel"
            ]
        );
    }

    /// Bad entries are named with their key.
    #[test]
    fn bad_entries_are_named() {
        let err = |s: CompressionStudySpec| s.check().unwrap_err().to_string();
        let mut s = spec("");
        s.compress.one_shot.push("int3-channel".into());
        assert!(err(s).contains("int3-channel"));
        let mut s = spec("");
        s.compress.sparsities = vec![1.0];
        assert!(err(s).contains("compress.sparsities"));
        let mut s = spec("");
        s.compress.one_shot.push("magnitude".into());
        assert!(err(s).contains("once"));
        let mut s = spec("");
        s.compress.penalty = Some("magnitude".into());
        assert!(err(s).contains("compress.penalty"));
        let mut s = spec("");
        s.dense.tokens = 0;
        assert!(err(s).contains("dense.tokens"));
        let s = spec("");
        let names = [("depth1".to_string(), 1.0), ("depth2".to_string(), 2.0)];
        assert_eq!(s.compressed_sizes(&names).unwrap(), ["depth2"]);
        let mut s = spec("");
        s.compress.students = vec!["depth9".into()];
        let e = s.compressed_sizes(&names).unwrap_err().to_string();
        assert!(e.contains("depth9") && e.contains("depth1, depth2"), "{e}");
    }
}
