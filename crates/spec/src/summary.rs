//! Plain summaries of a study's runs, as the store holds them and the analyses and reports
//! read them: where a run stands, its shape, counts and budget, its final metrics, and its
//! evaluation curve. Defined here, beside the specs, so that `scalelab-analysis` and
//! `scalelab-report` read runs without the store (SQLite) or the trainer (Burn).

use serde::{Deserialize, Serialize};

use crate::RunStatus;

/// What a run trains: the kind column of the one `runs` table, and what a study is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// A language model (or a synthetic task) trained on tokens: a scaling study's run.
    #[default]
    Lm,
    /// A supervised classifier trained on samples: a classification study's run.
    Classify,
}

impl RunKind {
    /// Its name in the store and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            RunKind::Lm => "lm",
            RunKind::Classify => "classify",
        }
    }

    /// The kind of a name.
    pub fn from_name(name: &str) -> Option<RunKind> {
        [RunKind::Lm, RunKind::Classify]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// Where a run of a study stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Not trained yet.
    Planned,
    /// Its budget was spent and its record stored.
    Completed,
    /// Its loss became NaN or infinite; its record says where.
    Diverged,
    /// The training process ended without a record.
    Failed,
    /// Stopped by Ctrl-C or SIGTERM at a checkpoint; the next study run resumes it.
    Interrupted,
}

impl RunState {
    /// Every state, in the order reports count them.
    pub const ALL: [RunState; 5] = [
        RunState::Completed,
        RunState::Diverged,
        RunState::Failed,
        RunState::Interrupted,
        RunState::Planned,
    ];

    /// Its name in the store, JSON and tables.
    pub fn name(self) -> &'static str {
        match self {
            RunState::Planned => "planned",
            RunState::Completed => "completed",
            RunState::Diverged => "diverged",
            RunState::Failed => "failed",
            RunState::Interrupted => "interrupted",
        }
    }

    /// The state of a name.
    pub fn from_name(name: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the run has a record (completed or diverged): it is not trained again.
    pub fn is_recorded(self) -> bool {
        matches!(self, RunState::Completed | RunState::Diverged)
    }
}

impl From<&RunStatus> for RunState {
    fn from(status: &RunStatus) -> Self {
        match status {
            RunStatus::Completed => RunState::Completed,
            RunStatus::Diverged { .. } => RunState::Diverged,
        }
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A run as the store holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRun {
    /// Identity.
    pub run_id: String,
    /// What it trains. For a classifier the token columns below count samples (planned,
    /// seen, FLOPs per sample) and the shape columns are 0.
    pub kind: RunKind,
    /// Size label from the ladder (a classifier: its model's label).
    pub size: String,
    /// Seed.
    pub seed: u64,
    /// Blocks.
    pub n_layers: u64,
    /// Width.
    pub d_model: u64,
    /// Heads.
    pub n_heads: u64,
    /// Every parameter (Chinchilla convention).
    pub params_total: u64,
    /// Non-embedding parameters (Kaplan convention).
    pub params_non_embedding: u64,
    /// N in the study's convention.
    pub n: f64,
    /// Which convention `n` uses: `total` or `non_embedding`.
    pub param_convention: String,
    /// FLOPs per token.
    pub flops_per_token: f64,
    /// Planned tokens.
    pub planned_tokens: u64,
    /// Planned FLOPs.
    pub planned_flops: f64,
    /// `tokens`, `tokens_per_param` or `flops`.
    pub budget_kind: String,
    /// The budget value on that axis.
    pub budget_value: f64,
    /// Where it stands.
    pub status: RunState,
    /// Tokens trained (0 until recorded).
    pub tokens_seen: u64,
    /// FLOPs spent.
    pub train_flops: f64,
    /// Final validation loss (nats/token).
    pub final_val_loss: Option<f64>,
    /// Final validation bits per byte.
    pub final_val_bpb: Option<f64>,
    /// Wall seconds.
    pub wall_secs: f64,
    /// Why the run failed or diverged.
    pub message: Option<String>,
    /// Distinct tokens of the training split (from the record; none before it is recorded).
    pub unique_train_tokens: Option<u64>,
}

/// One evaluation of a stored run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StoredCurvePoint {
    /// Tokens trained.
    pub tokens: u64,
    /// FLOPs spent.
    pub flops: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// Validation bits per byte.
    pub val_bpb: f64,
    /// Mean training loss since the previous evaluation.
    pub train_loss: Option<f64>,
}
