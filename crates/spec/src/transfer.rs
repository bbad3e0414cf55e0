//! The spec of a transfer study (Hernandez et al. 2021, "Scaling Laws for Transfer"): every
//! size of a ladder is pre-trained once on one corpus, then fine-tuned on each amount of
//! data `D_F` of another corpus by each adaptation method, and also trained from scratch on
//! that corpus, so that the analysis can read off the effective data transferred `D_T`.
//!
//! ```toml
//! name = "transfer"
//! [model]
//! ctx_len = 64
//! [sizes]
//! shapes = [{ n_layers = 2, d_model = 32, n_heads = 2 }]
//! [pretrain]                       # the broad corpus (default: the embedded one)
//! tokens = 400000
//! [finetune]                       # the target corpus
//! data = { corpus = "dir", path = "data/python" }
//! tokens = [8192, 32768, 131072]   # D_F
//! methods = ["full", "lora"]
//! ```

use serde::{Deserialize, Serialize};

use crate::Named;
use crate::{
    AdaptKind, DataSpec, InitSpec, LmSpec, ParamConvention, SizeLadder, SpecError, TokenizerKind,
    TrainSpec,
};

crate::named! {
    /// How a transfer study adapts its pre-trained models (`finetune.methods`).
    pub enum TransferMethod under "finetune.methods" {
        /// Every weight trains.
        Full = "full",
        /// The output layer alone (a linear probe of the pre-trained features).
        Probe = "probe",
        /// The input layer and the first `finetune.freeze_layers` layers frozen.
        Freeze = "freeze",
        /// Low-rank adapters (Hu et al. 2021).
        Lora = "lora",
        /// A linear probe first, then every weight from the probed model (Kumar et al.
        /// 2022): the probe's run, then a full fine-tuning run that starts from it, both on
        /// the same `D_F` tokens.
        LpFt = "lp-ft",
    }
}

impl TransferMethod {
    /// Which weights the method's (last) run trains.
    pub fn adapt(self) -> AdaptKind {
        match self {
            TransferMethod::Full | TransferMethod::LpFt => AdaptKind::Full,
            TransferMethod::Probe => AdaptKind::Probe,
            TransferMethod::Freeze => AdaptKind::Freeze,
            TransferMethod::Lora => AdaptKind::Lora,
        }
    }
}

/// A transfer study as the user writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferStudySpec {
    /// A short name, used in reports.
    pub name: String,
    /// What the study is for, shown in the report.
    #[serde(default)]
    pub description: String,
    /// Every run is trained once per seed (a fine-tuned run starts from the parent of its
    /// own seed).
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// The base model; each size overrides its shape.
    #[serde(default)]
    pub model: LmSpec,
    /// The pre-trained sizes N.
    pub sizes: SizeLadder,
    /// Optimisation settings shared by every run. Leave the budget keys unset.
    #[serde(default)]
    pub train: TrainSpec,
    /// Pre-training: its corpus and budget.
    #[serde(default)]
    pub pretrain: PretrainSpec,
    /// Fine-tuning: the target corpus, the amounts of it and the methods.
    pub finetune: FinetuneSpec,
    /// Which parameter count N means in the law (Hernandez et al. count non-embedding
    /// parameters, the default here).
    #[serde(default = "non_embedding")]
    pub param_convention: ParamConvention,
    /// Analysis settings.
    #[serde(default)]
    pub analysis: TransferAnalysisSpec,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

fn non_embedding() -> ParamConvention {
    ParamConvention::NonEmbedding
}

/// `[pretrain]`: what every size is pre-trained on, once.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainSpec {
    /// The pre-training corpus (default: the embedded English prose).
    pub data: DataSpec,
    /// Pre-training tokens, the same for every size.
    pub tokens: Option<u64>,
    /// Or tokens per parameter (N in the study's convention).
    pub tokens_per_param: Option<f64>,
}

/// `[finetune]`: the target distribution and the grid over it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneSpec {
    /// The target corpus; its validation split scores fine-tuned and from-scratch runs
    /// alike.
    pub data: DataSpec,
    /// The amounts of fine-tuning data D_F, in tokens.
    pub tokens: Vec<u64>,
    /// Further from-scratch budgets on the target corpus, so that the from-scratch curve
    /// reaches the fine-tuned losses (each D_F is always trained from scratch too).
    #[serde(default)]
    pub scratch_tokens: Vec<u64>,
    /// Adaptation methods (`full`, `probe`, `freeze`, `lora`, `lp-ft`), each run at every
    /// D_F.
    #[serde(default = "full_only")]
    pub methods: Vec<TransferMethod>,
    /// Peak learning rate of the fine-tuning runs (default: `train.lr`).
    #[serde(default)]
    pub lr: Option<f64>,
    /// With the `freeze` method: layers frozen after the embeddings.
    #[serde(default = "one")]
    pub freeze_layers: usize,
    /// With the `lora` method: rank r.
    #[serde(default = "lora_rank")]
    pub lora_rank: usize,
    /// With the `lora` method: several ranks, each fine-tuned at every `D_F` (replaces
    /// `lora_rank`), so that the analysis fits the loss against the rank as well.
    #[serde(default)]
    pub lora_ranks: Vec<usize>,
    /// With the `lora` method: α.
    #[serde(default = "lora_alpha")]
    pub lora_alpha: f64,
    /// With the `lora` method: the matrices adapted (empty: all of the family's).
    #[serde(default)]
    pub lora_targets: Vec<String>,
    /// With the `full`, `freeze` and `lp-ft` methods: the body's share of the learning
    /// rate (the output layer trains at the whole); 1: one rate for all.
    #[serde(default = "one_f64")]
    pub body_lr_ratio: f64,
}

fn one_f64() -> f64 {
    1.0
}

fn full_only() -> Vec<TransferMethod> {
    vec![TransferMethod::Full]
}

fn one() -> usize {
    1
}

fn lora_rank() -> usize {
    InitSpec::default().lora_rank
}

fn lora_alpha() -> f64 {
    InitSpec::default().lora_alpha
}

/// `[analysis]` of a transfer study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferAnalysisSpec {
    /// Bootstrap replicates of the law's intervals.
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
}

impl Default for TransferAnalysisSpec {
    fn default() -> Self {
        TransferAnalysisSpec {
            bootstrap: 200,
            seed: 0,
        }
    }
}

/// How much each size is pre-trained, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PretrainBudget {
    /// The same tokens for every size.
    Tokens(u64),
    /// Tokens per parameter.
    TokensPerParam(f64),
}

impl TransferStudySpec {
    /// Checks what can be checked without the corpora; returns the pre-training budget.
    pub fn check(&self) -> Result<PretrainBudget, SpecError> {
        crate::study::check_ladder_study(&self.name, &self.seeds, &self.sizes, "transfer")?;
        if self.train.budget_tokens.is_some() || self.train.budget_flops.is_some() {
            return Err(SpecError::invalid(
                "train.budget_tokens/budget_flops",
                "set",
                "a transfer study's budgets come from pretrain.tokens and finetune.tokens; remove them from [train]",
            ));
        }
        let budget = match (self.pretrain.tokens, self.pretrain.tokens_per_param) {
            (Some(t), None) if t > 0 => PretrainBudget::Tokens(t),
            (None, Some(r)) if r.is_finite() && r > 0.0 => PretrainBudget::TokensPerParam(r),
            (Some(t), None) => {
                return Err(SpecError::invalid(
                    "pretrain.tokens",
                    t,
                    "pre-train on at least one token",
                ));
            }
            (None, Some(r)) => {
                return Err(SpecError::invalid(
                    "pretrain.tokens_per_param",
                    r,
                    "must be finite and > 0, e.g. 20",
                ));
            }
            _ => {
                return Err(SpecError::invalid(
                    "pretrain",
                    "tokens and tokens_per_param",
                    "give exactly one of pretrain.tokens or pretrain.tokens_per_param",
                ));
            }
        };
        let f = &self.finetune;
        for (key, list) in [
            ("finetune.tokens", &f.tokens),
            ("finetune.scratch_tokens", &f.scratch_tokens),
        ] {
            if let Some(t) = list.iter().find(|&&t| t == 0) {
                return Err(SpecError::invalid(key, t, "token budgets must be > 0"));
            }
        }
        if f.tokens.is_empty() {
            return Err(SpecError::invalid(
                "finetune.tokens",
                "[]",
                "list the amounts of fine-tuning data D_F, e.g. tokens = [8192, 32768, 131072]",
            ));
        }
        if f.methods.is_empty() {
            return Err(SpecError::invalid(
                "finetune.methods",
                "[]",
                "list at least one method: full, probe, freeze, lora or lp-ft",
            ));
        }
        if let Some((i, m)) =
            (f.methods.iter().enumerate()).find(|(i, m)| f.methods[..*i].contains(m))
        {
            return Err(SpecError::invalid(
                "finetune.methods",
                format!("{m} (entry {})", i + 1),
                "list each method once",
            ));
        }
        if let Some((i, r)) =
            (f.lora_ranks.iter().enumerate()).find(|(i, r)| f.lora_ranks[..*i].contains(r))
        {
            return Err(SpecError::invalid(
                "finetune.lora_ranks",
                format!("{r} (entry {})", i + 1),
                "list each rank once",
            ));
        }
        if let Some(lr) = f.lr
            && !(lr.is_finite() && lr > 0.0)
        {
            return Err(SpecError::invalid(
                "finetune.lr",
                lr,
                "a learning rate is finite and > 0, e.g. 1e-3",
            ));
        }
        for (key, data) in [
            ("pretrain.data", &self.pretrain.data),
            ("finetune.data", &f.data),
        ] {
            if data.tokenizer == TokenizerKind::Bpe && data.tokenizer_file.is_none() {
                return Err(SpecError::invalid(
                    &format!("{key}.tokenizer"),
                    "bpe",
                    "pre-training and fine-tuning must share one vocabulary: use the byte \
                     tokenizer, or the same data.tokenizer_file in both",
                ));
            }
        }
        let (p, t) = (&self.pretrain.data, &f.data);
        if p == t {
            return Err(SpecError::invalid(
                "finetune.data",
                "the pre-training corpus",
                "fine-tuning on the corpus a model was pre-trained on measures no transfer; \
                 name another corpus, e.g. data = { corpus = \"dir\", path = \"data/python\" }",
            ));
        }
        if p.tokenizer != t.tokenizer || p.tokenizer_file != t.tokenizer_file {
            return Err(SpecError::invalid(
                "finetune.data.tokenizer",
                t.tokenizer_file.as_deref().unwrap_or(t.tokenizer.name()),
                format!(
                    "the pre-training corpus is read with {}; fine-tuning must use the same \
                     tokenizer (token ids keep their meaning only then)",
                    p.tokenizer_file.as_deref().unwrap_or(p.tokenizer.name())
                ),
            ));
        }
        Ok(budget)
    }

    /// The LoRA ranks fine-tuned: `finetune.lora_ranks`, else `finetune.lora_rank`.
    pub fn lora_ranks(&self) -> Vec<usize> {
        let f = &self.finetune;
        if f.lora_ranks.is_empty() {
            vec![f.lora_rank]
        } else {
            f.lora_ranks.clone()
        }
    }

    /// The `[init]` of a run fine-tuned by `method` from the parent at `from` (LoRA at
    /// `finetune.lora_rank`).
    pub fn init(&self, method: AdaptKind, from: &str) -> InitSpec {
        let f = &self.finetune;
        let lora = method == AdaptKind::Lora;
        let defaults = InitSpec::default();
        InitSpec {
            from: Some(from.to_string()),
            adapt: method,
            freeze_layers: if method == AdaptKind::Freeze {
                f.freeze_layers
            } else {
                0
            },
            lora_rank: if lora {
                f.lora_rank
            } else {
                defaults.lora_rank
            },
            lora_alpha: if lora {
                f.lora_alpha
            } else {
                defaults.lora_alpha
            },
            lora_targets: if lora {
                f.lora_targets.clone()
            } else {
                Vec::new()
            },
            body_lr_ratio: if matches!(method, AdaptKind::Full | AdaptKind::Freeze) {
                f.body_lr_ratio
            } else {
                defaults.body_lr_ratio
            },
            ..defaults
        }
    }

    /// Every budget trained from scratch on the target corpus, ascending, once each.
    pub fn scratch_budgets(&self) -> Vec<u64> {
        let mut all: Vec<u64> = (self.finetune.tokens.iter())
            .chain(&self.finetune.scratch_tokens)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUDY: &str = r#"
        name = "t"
        [sizes]
        depths = [1, 2]
        [pretrain]
        tokens = 1000
        [finetune]
        data = { corpus = "dir", path = "code" }
        tokens = [64, 256]
        scratch_tokens = [1024, 256]
        methods = ["full", "lora"]
    "#;

    #[test]
    fn a_transfer_study_parses_with_its_defaults() {
        let s: TransferStudySpec = toml::from_str(STUDY).unwrap();
        assert_eq!(s.check().unwrap(), PretrainBudget::Tokens(1000));
        assert_eq!(s.param_convention, ParamConvention::NonEmbedding);
        assert_eq!(s.scratch_budgets(), [64, 256, 1024]);
        let init = s.init(AdaptKind::Lora, "runs/p");
        assert_eq!(init.from.as_deref(), Some("runs/p"));
        assert_eq!((init.lora_rank, init.freeze_layers), (8, 0));
        let full = s.init(AdaptKind::Full, "runs/p");
        assert_eq!(full.adapt, AdaptKind::Full);
        assert!(full.lora_targets.is_empty());
        // A slower body applies where the body trains.
        let slow: TransferStudySpec =
            toml::from_str(&STUDY.replace("[finetune]", "[finetune]\nbody_lr_ratio = 0.1"))
                .unwrap();
        assert_eq!(slow.init(AdaptKind::Full, "p").body_lr_ratio, 0.1);
        assert_eq!(slow.init(AdaptKind::Lora, "p").body_lr_ratio, 1.0);
        assert_eq!(slow.init(AdaptKind::Probe, "p").body_lr_ratio, 1.0);
        // One rank unless several are listed.
        assert_eq!(s.lora_ranks(), [8]);
        let ranks: TransferStudySpec =
            toml::from_str(&STUDY.replace("[finetune]", "[finetune]\nlora_ranks = [2, 32]"))
                .unwrap();
        assert_eq!(ranks.lora_ranks(), [2, 32]);
    }

    #[test]
    fn bad_transfer_studies_name_the_key() {
        let check = |text: &str| {
            let s: TransferStudySpec = toml::from_str(text).unwrap();
            s.check().unwrap_err().to_string()
        };
        let err = check(&STUDY.replace("tokens = 1000", "tokens = 1000\ntokens_per_param = 2.0"));
        assert!(err.contains("exactly one of pretrain.tokens"), "{err}");
        let err = check(&STUDY.replace("tokens = [64, 256]", "tokens = []"));
        assert!(err.contains("finetune.tokens"), "{err}");
        let err = check(&STUDY.replace("\"full\", \"lora\"", "\"lora\", \"lora\""));
        assert!(err.contains("lora (entry 2)"), "{err}");
        let ranks = STUDY.replace("[finetune]", "[finetune]\nlora_ranks = [2, 8, 2]");
        let err = check(&ranks);
        assert!(
            err.contains("finetune.lora_ranks") && err.contains("2 (entry 3)"),
            "{err}"
        );
        let err = check(&STUDY.replace(
            "path = \"code\" }",
            "path = \"code\", tokenizer = \"bpe\" }",
        ));
        assert!(err.contains("finetune.data.tokenizer"), "{err}");
        let err = check(&STUDY.replace("[pretrain]", "[train]\nbudget_tokens = 5\n[pretrain]"));
        assert!(err.contains("train.budget_tokens"), "{err}");
        let typo = STUDY.replace("methods", "method");
        let err = toml::from_str::<TransferStudySpec>(&typo)
            .unwrap_err()
            .to_string();
        assert!(err.contains("method"), "{err}");
    }
}
