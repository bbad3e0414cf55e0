//! The spec of a synthetic task: what a model is trained or evaluated on when the question is
//! an ability (modular arithmetic, addition, copying, recall, parity) rather than a loss.
//!
//! ```toml
//! [task]
//! name = "mod_add"       # mod_add mod_sub mod_mul mod_div add mul copy reverse recall parity
//! modulus = 97           # the mod_* tasks
//! train_fraction = 0.4   # the mod_* tasks: the share of all pairs (a, b) trained on
//! test_size = 1000       # held-out examples, disjoint from the training examples
//! ```
//!
//! Every task is a prompt and an answer of fixed lengths in the byte vocabulary (256 tokens).
//! The text tasks are ASCII (`123+456=` → `0579`); modular arithmetic uses one token per
//! residue, `128 + r`, as Power et al. 2022 use one symbol per element, so `p ≤ 113`.

use serde::{Deserialize, Serialize};

use crate::SpecError;

/// Token of residue 0 in the modular-arithmetic tasks; residue `r` is `RESIDUE_TOKEN_BASE + r`.
pub const RESIDUE_TOKEN_BASE: u32 = 128;
/// Largest modulus whose residues fit in the byte vocabulary above the ASCII range.
pub const MAX_MODULUS: u32 = 113;

/// A synthetic task as the user writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskSpec {
    /// `mod_add`, `mod_sub`, `mod_mul`, `mod_div`, `add`, `mul`, `copy`, `reverse`, `recall`
    /// or `parity`.
    pub name: String,
    /// Modulus p of the `mod_*` tasks (prime for `mod_div`; at most 113).
    pub modulus: u32,
    /// Digits of each operand of `add` and `mul`.
    pub digits: usize,
    /// Symbols to copy or reverse (`copy`, `reverse`), or bits (`parity`).
    pub length: usize,
    /// Key–value pairs shown before the query (`recall`).
    pub pairs: usize,
    /// `mod_*` tasks: the share of all pairs (a, b) in the training set (Power et al. 2022
    /// train on a fraction of the whole table and test on the rest).
    pub train_fraction: f64,
    /// Other tasks: a fixed training set of this many examples; unset, every batch draws
    /// fresh examples (never one of the test set).
    pub train_size: Option<usize>,
    /// Held-out examples, disjoint from the training examples.
    pub test_size: usize,
    /// Share of training sequences drawn from the task. 1 trains on the task alone (one
    /// example per sequence, loss on the answer only); below 1 the examples are packed into
    /// sequences and mixed with the corpus, loss on every token (language modelling).
    pub mix: f64,
    /// Seed of the split: the same seed gives the same train and test examples.
    pub seed: u64,
}

impl Default for TaskSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            modulus: 97,
            digits: 3,
            length: 8,
            pairs: 4,
            train_fraction: 0.4,
            train_size: None,
            test_size: 1000,
            mix: 1.0,
            seed: 0,
        }
    }
}

/// The operation of a modular-arithmetic task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModOp {
    /// a + b mod p.
    Add,
    /// a − b mod p.
    Sub,
    /// a · b mod p.
    Mul,
    /// a · b⁻¹ mod p (b ≠ 0, p prime).
    Div,
}

impl ModOp {
    /// The ASCII symbol between the operands.
    pub fn symbol(self) -> u8 {
        match self {
            ModOp::Add => b'+',
            ModOp::Sub => b'-',
            ModOp::Mul => b'*',
            ModOp::Div => b'/',
        }
    }
}

/// A task, resolved: which generator and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TaskKind {
    /// `a ∘ b = c` over the integers mod `modulus`: prompt `[a, ∘, b, =]`, answer `[c]`.
    ModularArithmetic {
        /// The operation.
        op: ModOp,
        /// The modulus p.
        modulus: u32,
    },
    /// `123+456=` → `0579` (answer zero-padded to `digits + 1`).
    Addition {
        /// Digits of each operand.
        digits: usize,
    },
    /// `123*456=` → `056088` (answer zero-padded to `2 · digits`).
    Multiplication {
        /// Digits of each operand.
        digits: usize,
    },
    /// `qhxz|` → `qhxz`: letters a–z.
    Copy {
        /// Letters.
        length: usize,
    },
    /// `qhxz|` → `zxhq`.
    Reverse {
        /// Letters.
        length: usize,
    },
    /// In-context associative recall: `a3k7m1|k` → `7`, distinct keys a–z, values 0–9.
    Recall {
        /// Pairs before the query.
        pairs: usize,
    },
    /// `10110=` → `1`: the parity of the bits.
    Parity {
        /// Bits.
        bits: usize,
    },
}

impl TaskKind {
    /// The task's name as written in a spec.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::ModularArithmetic { op, .. } => match op {
                ModOp::Add => "mod_add",
                ModOp::Sub => "mod_sub",
                ModOp::Mul => "mod_mul",
                ModOp::Div => "mod_div",
            },
            TaskKind::Addition { .. } => "add",
            TaskKind::Multiplication { .. } => "mul",
            TaskKind::Copy { .. } => "copy",
            TaskKind::Reverse { .. } => "reverse",
            TaskKind::Recall { .. } => "recall",
            TaskKind::Parity { .. } => "parity",
        }
    }

    /// Tokens of every prompt.
    pub fn prompt_len(&self) -> usize {
        match *self {
            TaskKind::ModularArithmetic { .. } => 4,
            TaskKind::Addition { digits } | TaskKind::Multiplication { digits } => 2 * digits + 2,
            TaskKind::Copy { length } | TaskKind::Reverse { length } => length + 1,
            TaskKind::Recall { pairs } => 2 * pairs + 2,
            TaskKind::Parity { bits } => bits + 1,
        }
    }

    /// Tokens of every answer.
    pub fn answer_len(&self) -> usize {
        match *self {
            TaskKind::ModularArithmetic { .. }
            | TaskKind::Recall { .. }
            | TaskKind::Parity { .. } => 1,
            TaskKind::Addition { digits } => digits + 1,
            TaskKind::Multiplication { digits } => 2 * digits,
            TaskKind::Copy { length } | TaskKind::Reverse { length } => length,
        }
    }

    /// Positions a model reads to answer: prompt and answer but the answer's last token.
    pub fn context_needed(&self) -> usize {
        self.prompt_len() + self.answer_len() - 1
    }

    /// Number of distinct prompts, saturating at `u64::MAX`.
    pub fn distinct_prompts(&self) -> u64 {
        let pow = |base: u64, exp: usize| {
            (0..exp)
                .try_fold(1u64, |acc, _| acc.checked_mul(base))
                .unwrap_or(u64::MAX)
        };
        match *self {
            TaskKind::ModularArithmetic { op, modulus } => {
                let p = u64::from(modulus);
                if op == ModOp::Div { p * (p - 1) } else { p * p }
            }
            TaskKind::Addition { digits } | TaskKind::Multiplication { digits } => {
                pow(10, 2 * digits)
            }
            TaskKind::Copy { length } | TaskKind::Reverse { length } => pow(26, length),
            TaskKind::Recall { pairs } => {
                // Ordered distinct keys, any values, one of the keys queried.
                let keys = (0..pairs as u64).fold(1u64, |acc, i| acc.saturating_mul(26 - i));
                keys.saturating_mul(pow(10, pairs))
                    .saturating_mul(pairs as u64)
            }
            TaskKind::Parity { bits } => pow(2, bits),
        }
    }
}

/// Which examples a run trains on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum TaskTrainSet {
    /// This share of the whole table of a finite task.
    Fraction(f64),
    /// A fixed set of this many examples.
    Size(usize),
    /// Fresh examples in every batch, never one of the test set.
    Unlimited,
}

/// A task, resolved and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// The generator.
    pub kind: TaskKind,
    /// The training examples.
    pub train: TaskTrainSet,
    /// Held-out examples.
    pub test_size: usize,
    /// Share of training sequences drawn from the task (1: the task alone).
    pub mix: f64,
    /// Seed of the split.
    pub seed: u64,
}

impl TaskConfig {
    /// The task and its split, in words (the report's and the CLI's description).
    pub fn describe(&self) -> String {
        let task = self;
        let kind = match task.kind {
            TaskKind::ModularArithmetic { modulus, .. } => format!("modulus {modulus}"),
            TaskKind::Addition { digits } | TaskKind::Multiplication { digits } => {
                format!("{digits}-digit operands")
            }
            TaskKind::Copy { length } | TaskKind::Reverse { length } => format!("{length} letters"),
            TaskKind::Recall { pairs } => format!("{pairs} key-value pairs"),
            TaskKind::Parity { bits } => format!("{bits} bits"),
        };
        let train = match task.train {
            TaskTrainSet::Fraction(f) => format!(
                "{:.0}% of the {} pairs for training",
                100.0 * f,
                task.kind.distinct_prompts()
            ),
            TaskTrainSet::Size(n) => format!("{n} training examples"),
            TaskTrainSet::Unlimited => "fresh training examples every batch".into(),
        };
        let mix = if task.mix >= 1.0 {
            "trained on alone".to_string()
        } else {
            format!(
                "{:.0}% of training sequences, mixed into the corpus",
                100.0 * task.mix
            )
        };
        format!(
            "{} ({kind}; {train}; {} test examples; {mix})",
            task.kind.name(),
            task.test_size
        )
    }
}

/// Names of the tasks, for messages.
pub const TASK_NAMES: &str =
    "mod_add, mod_sub, mod_mul, mod_div, add, mul, copy, reverse, recall, parity";

impl TaskSpec {
    /// Checks the task and resolves it.
    pub fn resolve(&self) -> Result<TaskConfig, SpecError> {
        let range = |key: &str, value: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&value) {
                Ok(value)
            } else {
                Err(SpecError::invalid(
                    key,
                    value,
                    format!("task `{}` needs {lo} to {hi}", self.name),
                ))
            }
        };
        let modular = |op: ModOp| -> Result<TaskKind, SpecError> {
            let p = self.modulus;
            if !(2..=MAX_MODULUS).contains(&p) {
                return Err(SpecError::invalid(
                    "task.modulus",
                    p,
                    format!("use 2 to {MAX_MODULUS} (one token per residue); 97 and 113 are usual"),
                ));
            }
            if op == ModOp::Div && !is_prime(p) {
                return Err(SpecError::invalid(
                    "task.modulus",
                    p,
                    "mod_div needs a prime modulus so that every b ≠ 0 has an inverse, e.g. 97",
                ));
            }
            Ok(TaskKind::ModularArithmetic { op, modulus: p })
        };
        let kind = match self.name.as_str() {
            "mod_add" => modular(ModOp::Add)?,
            "mod_sub" => modular(ModOp::Sub)?,
            "mod_mul" => modular(ModOp::Mul)?,
            "mod_div" => modular(ModOp::Div)?,
            "add" => TaskKind::Addition {
                digits: range("task.digits", self.digits, 1, 9)?,
            },
            "mul" => TaskKind::Multiplication {
                digits: range("task.digits", self.digits, 1, 9)?,
            },
            "copy" => TaskKind::Copy {
                length: range("task.length", self.length, 1, 64)?,
            },
            "reverse" => TaskKind::Reverse {
                length: range("task.length", self.length, 1, 64)?,
            },
            "recall" => TaskKind::Recall {
                pairs: range("task.pairs", self.pairs, 1, 26)?,
            },
            "parity" => TaskKind::Parity {
                bits: range("task.length", self.length, 1, 64)?,
            },
            "" => {
                return Err(SpecError::invalid(
                    "task.name",
                    "(missing)",
                    format!("name the task: one of {TASK_NAMES}"),
                ));
            }
            other => {
                return Err(SpecError::invalid(
                    "task.name",
                    other,
                    format!("unknown task; use one of {TASK_NAMES}"),
                ));
            }
        };
        if self.test_size == 0 {
            return Err(SpecError::invalid(
                "task.test_size",
                0,
                "hold out at least one example; 1000 resolves accuracies to 0.1%",
            ));
        }
        if !(self.mix > 0.0 && self.mix <= 1.0) {
            return Err(SpecError::invalid(
                "task.mix",
                self.mix,
                "a share in (0, 1]: 1 trains on the task alone",
            ));
        }
        let distinct = kind.distinct_prompts();
        let test = self.test_size as u64;
        let train = match kind {
            TaskKind::ModularArithmetic { .. } => {
                if self.train_size.is_some() {
                    return Err(SpecError::invalid(
                        "task.train_size",
                        self.train_size.unwrap_or(0),
                        "the mod_* tasks train on a share of the table: set `train_fraction`",
                    ));
                }
                let f = self.train_fraction;
                let n_train = (f * distinct as f64).round() as u64;
                if !(f > 0.0 && f < 1.0) || n_train == 0 || n_train >= distinct {
                    return Err(SpecError::invalid(
                        "task.train_fraction",
                        f,
                        format!(
                            "a share in (0, 1) leaving examples on both sides of the split \
                             (the table has {distinct}); 0.3 to 0.5 shows grokking"
                        ),
                    ));
                }
                TaskTrainSet::Fraction(f)
            }
            _ => match self.train_size {
                Some(0) => {
                    return Err(SpecError::invalid(
                        "task.train_size",
                        0,
                        "train on at least one example, or leave it unset for fresh examples",
                    ));
                }
                Some(n) => {
                    if (n as u64).saturating_add(test) > distinct {
                        return Err(SpecError::invalid(
                            "task.train_size",
                            n,
                            format!(
                                "train_size + test_size exceeds the {distinct} distinct prompts \
                                 of this task; make the task larger or the sets smaller"
                            ),
                        ));
                    }
                    TaskTrainSet::Size(n)
                }
                None => TaskTrainSet::Unlimited,
            },
        };
        // Fresh examples are drawn by rejecting test prompts: keep the test set a small part.
        if train == TaskTrainSet::Unlimited && test.saturating_mul(4) > distinct {
            return Err(SpecError::invalid(
                "task.test_size",
                self.test_size,
                format!(
                    "the task has only {distinct} distinct prompts; hold out at most a quarter \
                     of them, or set a fixed `train_size`"
                ),
            ));
        }
        Ok(TaskConfig {
            kind,
            train,
            test_size: self.test_size,
            mix: self.mix,
            seed: self.seed,
        })
    }
}

fn is_prime(n: u32) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            ..TaskSpec::default()
        }
    }

    #[test]
    fn lengths_and_sizes() {
        let add = spec("add").resolve().unwrap().kind;
        assert_eq!((add.prompt_len(), add.answer_len()), (8, 4)); // "123+456=" → "0579"
        assert_eq!(add.distinct_prompts(), 1_000_000);
        let div = TaskSpec {
            modulus: 7,
            ..spec("mod_div")
        };
        assert_eq!(div.resolve().unwrap().kind.distinct_prompts(), 42);
        let recall = TaskSpec {
            pairs: 2,
            ..spec("recall")
        };
        // 26·25 key orders × 100 values × 2 queries.
        assert_eq!(recall.resolve().unwrap().kind.distinct_prompts(), 130_000);
    }

    #[test]
    fn bad_tasks_name_key_and_fix() {
        let err = spec("modadd").resolve().unwrap_err().to_string();
        assert!(
            err.contains("task.name") && err.contains("mod_add"),
            "{err}"
        );
        let err = TaskSpec {
            modulus: 91,
            ..spec("mod_div")
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(err.contains("prime"), "{err}");
        let err = TaskSpec {
            length: 4,
            ..spec("parity")
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(err.contains("only 16 distinct"), "{err}");
        assert!(
            TaskSpec {
                mix: 0.0,
                ..spec("copy")
            }
            .resolve()
            .is_err()
        );
    }
}
