//! The optimiser of a run, a choice every kind of run shares (and so a study axis): AdamW by
//! default, Adam, or SGD with momentum (optionally Nesterov's), as the classic image
//! classification recipes train (He et al. 2016: SGD, momentum 0.9).
//!
//! In a spec's `[train]`: `optimizer = "adamw"` (default), `"adam"` or `"sgd"`, with
//! `momentum` (SGD; default 0.9; 0 is plain SGD) and `nesterov` (default false). Weight decay is
//! decoupled for AdamW (Loshchilov & Hutter 2019) and an L2 term added to the gradient for
//! Adam and SGD (as PyTorch's `weight_decay` for them); matrices and embeddings only, as
//! always. SGD momentum has no dampening (PyTorch's default).

use serde::{Deserialize, Serialize};

use crate::SpecError;

crate::named! {
    /// The optimisers by name (`train.optimizer`).
    #[derive(Default)]
    pub enum OptimiserKind under "train.optimizer" {
        /// AdamW, the default.
        #[default]
        AdamW = "adamw",
        /// Adam.
        Adam = "adam",
        /// SGD, with `train.momentum` and `train.nesterov`.
        Sgd = "sgd",
    }
}

/// A resolved optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimiser {
    /// Adam with decoupled weight decay; the default (left out of serialised configs, so run
    /// ids of AdamW runs are those of before the choice existed).
    #[default]
    AdamW,
    /// Adam, weight decay as an L2 term of the gradient.
    Adam,
    /// Stochastic gradient descent with heavy-ball momentum, or Nesterov's.
    Sgd {
        /// Momentum factor in [0, 1).
        momentum: f64,
        /// Nesterov's momentum instead of heavy-ball.
        nesterov: bool,
    },
}

impl Optimiser {
    /// Whether this is the default (AdamW), which configs leave out.
    pub fn is_default(&self) -> bool {
        *self == Optimiser::AdamW
    }

    /// Resolves `train.optimizer`, `train.momentum` and `train.nesterov`.
    pub fn resolve(kind: OptimiserKind, momentum: f64, nesterov: bool) -> Result<Self, SpecError> {
        match kind {
            OptimiserKind::AdamW => Ok(Optimiser::AdamW),
            OptimiserKind::Adam => Ok(Optimiser::Adam),
            OptimiserKind::Sgd => {
                if !(momentum.is_finite() && (0.0..1.0).contains(&momentum)) {
                    return Err(SpecError::invalid(
                        "train.momentum",
                        momentum,
                        "a momentum factor in [0, 1), e.g. 0.9 (0: plain SGD)",
                    ));
                }
                if nesterov && momentum == 0.0 {
                    return Err(SpecError::invalid(
                        "train.nesterov",
                        true,
                        "Nesterov momentum needs train.momentum > 0",
                    ));
                }
                Ok(Optimiser::Sgd { momentum, nesterov })
            }
        }
    }

    /// Its name in tables.
    pub fn describe(&self) -> String {
        match self {
            Optimiser::AdamW => "adamw".into(),
            Optimiser::Adam => "adam".into(),
            Optimiser::Sgd {
                momentum,
                nesterov: true,
            } => format!("sgd (nesterov {momentum})"),
            Optimiser::Sgd { momentum, .. } => format!("sgd (momentum {momentum})"),
        }
    }
}

/// The default of `train.momentum`.
pub fn default_momentum() -> f64 {
    0.9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimisers_resolve_by_name_and_bad_settings_are_named() {
        assert_eq!(
            Optimiser::resolve(OptimiserKind::AdamW, 0.9, false),
            Ok(Optimiser::AdamW)
        );
        assert_eq!(
            Optimiser::resolve(OptimiserKind::Adam, 0.9, false),
            Ok(Optimiser::Adam)
        );
        assert_eq!(
            Optimiser::resolve(OptimiserKind::Sgd, 0.9, true),
            Ok(Optimiser::Sgd {
                momentum: 0.9,
                nesterov: true
            })
        );
        let err = |r: Result<Optimiser, SpecError>| r.unwrap_err().to_string();
        assert!(
            err("lion".parse::<OptimiserKind>().map(|_| Optimiser::Adam))
                .contains("adamw, adam, sgd")
        );
        assert!(err(Optimiser::resolve(OptimiserKind::Sgd, 1.0, false)).contains("train.momentum"));
        assert!(
            err(Optimiser::resolve(OptimiserKind::Sgd, f64::NAN, false)).contains("train.momentum")
        );
        assert!(err(Optimiser::resolve(OptimiserKind::Sgd, 0.0, true)).contains("train.nesterov"));
        assert!(Optimiser::AdamW.is_default() && !Optimiser::Adam.is_default());
    }
}
