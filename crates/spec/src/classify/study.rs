//! Classification studies: a grid of models × training fractions × regularisers × seeds (× folds), expanded into runs.

use serde::{Deserialize, Serialize};

use super::{Augmentation, ClassifierSpec, ClassifySpec};
use crate::SpecError;

/// A regulariser, as one value of a classification study's regulariser axis: the keys it sets
/// override the base spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Regulariser {
    /// Its label in tables and plots (`none`, `dropout 0.3`, ...).
    pub name: String,
    /// `model.dropout`.
    pub dropout: Option<f64>,
    /// `train.weight_decay`.
    pub weight_decay: Option<f64>,
    /// `train.l1`.
    pub l1: Option<f64>,
    /// `train.l2`.
    pub l2: Option<f64>,
    /// `train.early_stopping_patience`.
    pub early_stopping_patience: Option<usize>,
    /// `train.optimizer` (the regulariser axis is the axis of training recipes: an
    /// optimiser, its learning rate and its momentum are values of it too).
    pub optimizer: Option<crate::optim::OptimiserKind>,
    /// `train.lr`.
    pub lr: Option<f64>,
    /// `train.momentum`.
    pub momentum: Option<f64>,
    /// `train.nesterov`.
    pub nesterov: Option<bool>,
    /// `[augment]`.
    pub augment: Option<Augmentation>,
}

/// A classification study: every model × training fraction × regulariser × seed.
///
/// ```toml
/// name = "digits-overfitting"
/// seeds = [0]
/// train_fractions = [0.1, 0.3, 1.0]
/// models = [{ preset = "logistic" }, { family = "mlp", depth = 1, width = 32 }]
/// regularisers = [{ name = "none" }, { name = "dropout 0.3", dropout = 0.3 }]
///
/// [base]                  # a classification spec (see ClassifySpec) shared by every run
/// data = { dataset = "digits" }
/// train = { budget_samples = 30000, lr = 3e-3 }
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifyStudySpec {
    /// Name; the study's directory is `studies/<name>`.
    pub name: String,
    /// One line for the report.
    pub description: String,
    /// Seeds of every cell (default `[0]`).
    pub seeds: Vec<u64>,
    /// Shared settings.
    pub base: ClassifySpec,
    /// The model axis.
    pub models: Vec<ClassifierSpec>,
    /// The data axis: shares of the training images (default `[1.0]`).
    pub train_fractions: Vec<f64>,
    /// The regulariser axis (default: none).
    pub regularisers: Vec<Regulariser>,
}

/// Where a run sits in a classification study's grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyCell {
    /// Label of the model (its preset, or family-depth-width).
    pub model: String,
    /// Share of the training images.
    pub train_fraction: f64,
    /// Name of the regulariser.
    pub regulariser: String,
    /// Seed.
    pub seed: u64,
    /// The held-out fold when the base spec asks for `folds = k` (each fold is a run, and the
    /// report averages folds as it averages seeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<usize>,
}

impl ClassifierSpec {
    /// A label: the preset's name, else the family, with `-dDEPTH` and `-wWIDTH` for the keys
    /// that are set.
    pub fn label(&self) -> String {
        let mut label = self
            .preset
            .map_or_else(|| self.family.to_string(), |p| p.to_string());
        if let Some(d) = self.depth {
            label.push_str(&format!("-d{d}"));
        }
        if let Some(w) = self.width {
            label.push_str(&format!("-w{w}"));
        }
        label
    }
}

impl ClassifyStudySpec {
    /// Every run of the grid as a spec, in order model, fraction, regulariser, seed (and fold,
    /// when the base spec asks for folds).
    pub fn expand(&self) -> Result<Vec<(StudyCell, ClassifySpec)>, SpecError> {
        let is_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !is_name {
            return Err(SpecError::invalid(
                "name",
                &self.name,
                "a name of letters, digits, - and _ (it names the study's directory)",
            ));
        }
        if self.models.is_empty() {
            return Err(SpecError::invalid(
                "models",
                "[]",
                "list at least one model, e.g. models = [{ preset = \"mlp\" }]",
            ));
        }
        let seeds = if self.seeds.is_empty() {
            vec![0]
        } else {
            self.seeds.clone()
        };
        let fractions = if self.train_fractions.is_empty() {
            vec![1.0]
        } else {
            self.train_fractions.clone()
        };
        let regularisers = if self.regularisers.is_empty() {
            vec![Regulariser {
                name: "none".into(),
                ..Regulariser::default()
            }]
        } else {
            self.regularisers.clone()
        };
        let folds: Vec<Option<usize>> = if self.base.folds >= 2 {
            (0..self.base.folds).map(Some).collect()
        } else {
            vec![None]
        };
        let mut runs = Vec::new();
        for model in &self.models {
            for &fraction in &fractions {
                for (i, reg) in regularisers.iter().enumerate() {
                    for (&seed, &fold) in
                        seeds.iter().flat_map(|s| folds.iter().map(move |f| (s, f)))
                    {
                        let mut spec = self.base.clone();
                        spec.seed = seed;
                        spec.model = model.clone();
                        spec.data.train_fraction = fraction;
                        spec.fold = fold;
                        if let Some(v) = reg.dropout {
                            spec.model.dropout = v;
                        }
                        if let Some(v) = reg.weight_decay {
                            spec.train.weight_decay = v;
                        }
                        if let Some(v) = reg.l1 {
                            spec.train.l1 = v;
                        }
                        if let Some(v) = reg.l2 {
                            spec.train.l2 = v;
                        }
                        if let Some(v) = reg.early_stopping_patience {
                            spec.train.early_stopping_patience = v;
                        }
                        if let Some(v) = reg.optimizer {
                            spec.train.optimizer = v;
                        }
                        if let Some(v) = reg.lr {
                            spec.train.lr = v;
                        }
                        if let Some(v) = reg.momentum {
                            spec.train.momentum = v;
                        }
                        if let Some(v) = reg.nesterov {
                            spec.train.nesterov = v;
                        }
                        if let Some(a) = &reg.augment {
                            spec.augment = a.clone();
                        }
                        let name = if reg.name.is_empty() {
                            format!("regulariser {}", i + 1)
                        } else {
                            reg.name.clone()
                        };
                        runs.push((
                            StudyCell {
                                model: model.label(),
                                train_fraction: fraction,
                                regulariser: name,
                                seed,
                                fold,
                            },
                            spec,
                        ));
                    }
                }
            }
        }
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_expands_in_order_with_every_fold_and_its_regularisers_applied() {
        let study = ClassifyStudySpec {
            name: "grid".into(),
            models: vec![
                ClassifierSpec {
                    preset: Some(crate::ClassifierPreset::Logistic),
                    ..ClassifierSpec::default()
                },
                ClassifierSpec {
                    depth: Some(1),
                    width: Some(32),
                    ..ClassifierSpec::default()
                },
            ],
            train_fractions: vec![0.5, 1.0],
            regularisers: vec![
                Regulariser::default(),
                Regulariser {
                    name: "l2".into(),
                    l2: Some(1e-3),
                    ..Regulariser::default()
                },
            ],
            base: ClassifySpec {
                folds: 2,
                ..ClassifySpec::default()
            },
            ..ClassifyStudySpec::default()
        };
        let runs = study.expand().unwrap();
        assert_eq!(
            runs.len(),
            2 * 2 * 2 * 2,
            "models × fractions × regularisers × folds"
        );
        let (first, spec) = &runs[0];
        assert_eq!(
            (first.model.as_str(), first.train_fraction, first.fold),
            ("logistic", 0.5, Some(0))
        );
        assert_eq!(spec.fold, Some(0));
        assert_eq!(
            first.regulariser, "regulariser 1",
            "an unnamed regulariser is numbered"
        );
        let (cell, spec) = &runs[3];
        assert_eq!((cell.regulariser.as_str(), cell.fold), ("l2", Some(1)));
        assert_eq!(spec.train.l2, 1e-3);
        assert_eq!(runs[8].0.model, "mlp-d1-w32");
    }

    #[test]
    fn a_grid_needs_a_name_for_its_directory_and_a_model() {
        let mut study = ClassifyStudySpec {
            name: "no/slashes".into(),
            models: vec![ClassifierSpec::default()],
            ..ClassifyStudySpec::default()
        };
        assert!(study.expand().unwrap_err().to_string().contains("name"));
        study.name = "ok".into();
        study.models.clear();
        assert!(study.expand().unwrap_err().to_string().contains("models"));
    }
}
