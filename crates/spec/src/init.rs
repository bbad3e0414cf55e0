//! Where a run's weights start and which of them train: from scratch (the default), or from
//! a parent run's weights (`init.from`), fine-tuned whole, as a linear probe, or with its
//! first layers frozen.
//!
//! The parent is named in the spec by its run directory; what the resolved config keeps is
//! the parent's run id (its identity, so that runs from different parents have different
//! ids) and its family. Reading the parent's record is the caller's (this crate reads no
//! files): it hands [`InitSpec::resolve`] a [`Parent`].

use serde::{Deserialize, Serialize};

use crate::{Family, SpecError};

crate::named! {
    /// What happens to the output layer (`init.head`) when a run starts from a parent.
    #[derive(Default)]
    pub enum HeadChoice under "init.head" {
        /// Keep the parent's head for a language model (the same vocabulary keeps its
        /// meaning), replace it for a classifier (new classes: "replace the last fully
        /// connected layer").
        #[default]
        Auto = "auto",
        /// Load the parent's head too (its shape must match).
        Keep = "keep",
        /// Re-initialise the head.
        Reset = "reset",
    }
}

crate::named! {
    /// Which weights train (`init.adapt`).
    #[derive(Default)]
    pub enum AdaptKind under "init.adapt" {
        /// Every weight (full fine-tuning, or training from scratch).
        #[default]
        Full = "full",
        /// Only the output layer: a linear probe of the body's features (the body's weights
        /// stay bit-identical, its dropout and batch statistics frozen too).
        Probe = "probe",
        /// Everything but the input layer (embeddings, stem) and the first
        /// `init.freeze_layers` layers.
        Freeze = "freeze",
        /// Low-rank adapters (Hu et al. 2021) on the `init.lora_targets` matrices, the rest
        /// frozen (a re-initialised head trains too).
        Lora = "lora",
    }
}

/// The `[init]` section of a run spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InitSpec {
    /// The directory of the run whose final weights this run starts from (its
    /// `record.json` and `weights.safetensors`); none: from scratch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// What happens to the output layer.
    pub head: HeadChoice,
    /// Which weights train.
    pub adapt: AdaptKind,
    /// With `adapt = "freeze"`: how many layers (after the input layer) stay frozen.
    pub freeze_layers: usize,
    /// With `adapt = "lora"`: the rank r of each adapter `ΔW = (α/r)·A·B`.
    pub lora_rank: usize,
    /// With `adapt = "lora"`: α (the adapters' output is scaled by α/r).
    pub lora_alpha: f64,
    /// With `adapt = "lora"`: which groups of matrices get adapters (see
    /// `Family::lora_targets`); empty: all of the family's.
    pub lora_targets: Vec<String>,
    /// With a parent and `adapt = "full"` or `"freeze"`: the body (every weight but the
    /// output layer) trains at this share of the learning rate, the head at the whole
    /// (discriminative fine-tuning); 1: one rate for all.
    pub body_lr_ratio: f64,
}

impl Default for InitSpec {
    fn default() -> Self {
        Self {
            from: None,
            head: HeadChoice::Auto,
            adapt: AdaptKind::Full,
            freeze_layers: 0,
            // PEFT's LoraConfig defaults.
            lora_rank: 8,
            lora_alpha: 8.0,
            lora_targets: Vec::new(),
            body_lr_ratio: 1.0,
        }
    }
}

/// A finished run to start from, as its record tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parent {
    /// Its run id.
    pub run_id: String,
    /// Its family.
    pub family: Family,
    /// Whether it is a language model (else a classifier).
    pub language_model: bool,
    /// Where it was read from, for messages.
    pub dir: String,
    /// Whether it has segment embeddings (an encoder pre-trained on sentence pairs), which a
    /// child then has too.
    pub segments: bool,
}

/// What the output layer does, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// Loaded from the parent.
    Keep,
    /// Initialised afresh.
    Reset,
}

/// Which weights train, resolved.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Adapt {
    /// Every weight.
    #[default]
    Full,
    /// The output layer only.
    Probe,
    /// All but the input layer and the first `layers` layers.
    Freeze {
        /// Frozen layers after the input layer.
        layers: usize,
    },
    /// Low-rank adapters on the `targets` matrices; everything else frozen but a
    /// re-initialised head.
    Lora {
        /// r.
        rank: usize,
        /// α.
        alpha: f64,
        /// The family's groups of matrices adapted.
        targets: Vec<String>,
    },
}

/// The resolved `[init]` of a run; absent from a config that trains every weight from
/// scratch, so those runs keep the ids they had before transfer existed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// The parent's run id, if the run starts from one (part of the run's identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The parent's family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_family: Option<Family>,
    /// What happens to the head (with a parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Head>,
    /// Which weights train.
    pub adapt: Adapt,
    /// The body's share of the learning rate, when it is not 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_lr_ratio: Option<f64>,
}

impl InitConfig {
    /// The seed a run's weights are initialised from: `seed`, or, for a run whose head is
    /// re-initialised over a parent's weights, `seed` mixed with the parent's id. Otherwise a
    /// child with its parent's seed (both default to 0) would get the parent's *initial*
    /// head, which the parent's trained body still maps to the parent's classes (a probe from
    /// MNIST to Fashion-MNIST then scored below chance).
    pub fn weight_seed(init: Option<&InitConfig>, seed: u64) -> u64 {
        match init {
            Some(InitConfig {
                parent: Some(parent),
                head: Some(Head::Reset),
                ..
            }) => {
                // FNV-1a of the parent's id.
                let hash = parent.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
                seed ^ hash
            }
            _ => seed,
        }
    }
}

impl InitSpec {
    /// Resolves the section for a run of `family` (a language model or not) whose parent,
    /// read from `init.from` by the caller, is `parent`.
    pub fn resolve(
        &self,
        family: Family,
        language_model: bool,
        parent: Option<&Parent>,
    ) -> Result<Option<InitConfig>, SpecError> {
        let adapt = match self.adapt {
            AdaptKind::Full => Adapt::Full,
            AdaptKind::Probe => Adapt::Probe,
            AdaptKind::Freeze if self.freeze_layers == 0 => {
                return Err(SpecError::invalid(
                    "init.freeze_layers",
                    0,
                    "freeze at least one layer (or use adapt = \"full\")",
                ));
            }
            AdaptKind::Freeze => Adapt::Freeze {
                layers: self.freeze_layers,
            },
            AdaptKind::Lora => self.lora(family)?,
        };
        if self.adapt != AdaptKind::Freeze && self.freeze_layers > 0 {
            return Err(SpecError::invalid(
                "init.freeze_layers",
                self.freeze_layers,
                "freezing layers needs adapt = \"freeze\" (--adapt freeze)",
            ));
        }
        let parent = match (&self.from, parent) {
            (None, _) => None,
            (Some(from), None) => {
                return Err(SpecError::invalid(
                    "init.from",
                    from,
                    "starting from a parent run is for single runs (`scalelab train` and \
                     `scalelab classify`) and transfer studies, which read the parent first",
                ));
            }
            (Some(_), Some(p)) => Some(p),
        };
        // A GPT language model's body is a GPT classifier's (its head is replaced): the one
        // pairing across kinds.
        let lm_to_classifier =
            |p: &Parent| p.language_model && !language_model && family == Family::Gpt;
        if let Some(p) = parent
            && (p.family != family || (p.language_model != language_model && !lm_to_classifier(p)))
        {
            let kind = |lm: bool| if lm { "language model" } else { "classifier" };
            return Err(SpecError::invalid(
                "init.from",
                &p.dir,
                format!(
                    "run {} is a {} {}; this run is a {} {}: a run starts from a parent of \
                         its own family and kind (or a GPT classifier from a GPT language \
                         model), its layers matched by name",
                    p.run_id,
                    p.family,
                    kind(p.language_model),
                    family,
                    kind(language_model)
                ),
            ));
        }
        if parent.is_none() && self.head != HeadChoice::Auto {
            return Err(SpecError::invalid(
                "init.head",
                self.head,
                "a head is kept or reset only when the run starts from a parent: set init.from",
            ));
        }
        if self.adapt != AdaptKind::Lora && self.lora_targets != InitSpec::default().lora_targets {
            return Err(SpecError::invalid(
                "init.lora_targets",
                self.lora_targets.join(", "),
                "LoRA targets need adapt = \"lora\" (--adapt lora)",
            ));
        }
        let ratio = self.body_lr_ratio;
        if !(ratio.is_finite() && ratio > 0.0 && ratio <= 1.0) {
            return Err(SpecError::invalid(
                "init.body_lr_ratio",
                ratio,
                "the body's share of the learning rate, in (0, 1], e.g. 0.1; 1: one rate for all",
            ));
        }
        if ratio != 1.0 && parent.is_none() {
            return Err(SpecError::invalid(
                "init.body_lr_ratio",
                ratio,
                "a slower body is for fine-tuning a parent's weights: set init.from",
            ));
        }
        if ratio != 1.0 && !matches!(adapt, Adapt::Full | Adapt::Freeze { .. }) {
            return Err(SpecError::invalid(
                "init.body_lr_ratio",
                ratio,
                "with adapt = \"probe\" or \"lora\" the body does not train: use adapt = \"full\" or \"freeze\"",
            ));
        }
        if parent.is_none() && adapt == Adapt::Full {
            return Ok(None);
        }
        let head = parent.map(|_| match (self.head, language_model) {
            (HeadChoice::Keep, _) | (HeadChoice::Auto, true) => Head::Keep,
            (HeadChoice::Reset, _) | (HeadChoice::Auto, false) => Head::Reset,
        });
        Ok(Some(InitConfig {
            parent: parent.map(|p| p.run_id.clone()),
            parent_family: parent.map(|p| p.family),
            head,
            adapt,
            body_lr_ratio: (ratio != 1.0).then_some(ratio),
        }))
    }
}

impl InitSpec {
    /// The LoRA settings, checked for a model of `family`.
    fn lora(&self, family: Family) -> Result<Adapt, SpecError> {
        let known = family.lora_targets();
        if known.is_empty() {
            return Err(SpecError::invalid(
                "init.adapt",
                "lora",
                format!(
                    "the {family} family has no weight matrices for LoRA (its weights are \
                     convolution kernels): use probe, freeze or full"
                ),
            ));
        }
        if !(1..=1 << 16).contains(&self.lora_rank) {
            return Err(SpecError::invalid(
                "init.lora_rank",
                self.lora_rank,
                "a rank of at least 1 and at most the adapted layers' width, e.g. 8",
            ));
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return Err(SpecError::invalid(
                "init.lora_alpha",
                self.lora_alpha,
                "a positive scale numerator, e.g. 8 (the adapters are scaled by alpha / rank)",
            ));
        }
        let mut targets: Vec<String> = if self.lora_targets.is_empty() {
            known.iter().map(|t| t.to_string()).collect()
        } else {
            self.lora_targets.clone()
        };
        if let Some(unknown) = targets.iter().find(|t| !known.contains(&t.as_str())) {
            return Err(SpecError::invalid(
                "init.lora_targets",
                unknown,
                format!(
                    "the {family} family's LoRA targets are {} (its output layer is never one)",
                    known.join(", ")
                ),
            ));
        }
        targets.sort();
        targets.dedup();
        Ok(Adapt::Lora {
            rank: self.lora_rank,
            alpha: self.lora_alpha,
            targets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_head_over_a_parent_is_seeded_apart_from_the_parent() {
        let with = |parent: Option<&str>, head| InitConfig {
            parent: parent.map(str::to_string),
            parent_family: None,
            head,
            adapt: Adapt::Full,
            body_lr_ratio: None,
        };
        // From scratch, or keeping the parent's head: the run's own seed.
        assert_eq!(InitConfig::weight_seed(None, 7), 7);
        let keep = with(Some("0123456789abcdef"), Some(Head::Keep));
        assert_eq!(InitConfig::weight_seed(Some(&keep), 7), 7);
        // A new head over a parent: mixed with the parent's id, so seed 0 over a parent of
        // seed 0 is not the parent's initial head; the same parent, the same seed.
        let a = with(Some("0123456789abcdef"), Some(Head::Reset));
        let b = with(Some("fedcba9876543210"), Some(Head::Reset));
        let (sa, sb) = (
            InitConfig::weight_seed(Some(&a), 0),
            InitConfig::weight_seed(Some(&b), 0),
        );
        assert!(sa != 0 && sb != 0 && sa != sb);
        assert_eq!(InitConfig::weight_seed(Some(&a), 0), sa);
        assert_ne!(InitConfig::weight_seed(Some(&a), 1), sa);
    }

    fn parent(family: Family, language_model: bool) -> Parent {
        Parent {
            run_id: "00aa11bb22cc33dd".into(),
            family,
            language_model,
            dir: "runs/00aa11bb22cc33dd".into(),
            segments: false,
        }
    }

    fn from() -> InitSpec {
        InitSpec {
            from: Some("runs/00aa11bb22cc33dd".into()),
            ..InitSpec::default()
        }
    }

    #[test]
    fn from_scratch_resolves_to_nothing_so_ids_stay() {
        assert_eq!(
            InitSpec::default()
                .resolve(Family::Mlp, false, None)
                .unwrap(),
            None
        );
    }

    #[test]
    fn the_head_is_kept_for_language_models_and_reset_for_classifiers() {
        let p = parent(Family::Mlp, false);
        let c = from()
            .resolve(Family::Mlp, false, Some(&p))
            .unwrap()
            .unwrap();
        assert_eq!(c.parent.as_deref(), Some("00aa11bb22cc33dd"));
        assert_eq!((c.head, c.adapt), (Some(Head::Reset), Adapt::Full));
        let p = parent(Family::Gpt, true);
        let c = from()
            .resolve(Family::Gpt, true, Some(&p))
            .unwrap()
            .unwrap();
        assert_eq!(c.head, Some(Head::Keep));
        let spec = InitSpec {
            head: HeadChoice::Reset,
            ..from()
        };
        let c = spec.resolve(Family::Gpt, true, Some(&p)).unwrap().unwrap();
        assert_eq!(c.head, Some(Head::Reset));
    }

    #[test]
    fn another_family_or_kind_is_refused_naming_both() {
        let p = parent(Family::Cnn, false);
        let err = from()
            .resolve(Family::Mlp, false, Some(&p))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("init.from") && err.contains("cnn classifier") && err.contains("mlp"),
            "{err}"
        );
        let p = parent(Family::Lstm, true);
        let err = from()
            .resolve(Family::Lstm, false, Some(&p))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lstm language model"), "{err}");
    }

    #[test]
    fn freezing_needs_layers_and_the_freeze_method() {
        let spec = InitSpec {
            adapt: AdaptKind::Freeze,
            ..InitSpec::default()
        };
        let err = spec.resolve(Family::Mlp, false, None).unwrap_err();
        assert!(err.to_string().contains("init.freeze_layers"), "{err}");
        let spec = InitSpec {
            freeze_layers: 2,
            ..InitSpec::default()
        };
        assert!(spec.resolve(Family::Mlp, false, None).is_err());
        // A probe of random features (no parent) is a baseline, not an error.
        let spec = InitSpec {
            adapt: AdaptKind::Probe,
            ..InitSpec::default()
        };
        let c = spec.resolve(Family::Mlp, false, None).unwrap().unwrap();
        assert_eq!((c.parent, c.head, c.adapt), (None, None, Adapt::Probe));
    }
}
