//! What compression during training asks of a run (`[train]`): gradual pruning's schedule and
//! distillation's teacher. Resolved by `TrainSpec::resolve`; carried out by `scalelab-train`.

use serde::{Deserialize, Serialize};

/// Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune", eq. 1 with an
/// initial sparsity of 0): between `start` and `end` (shares of the budget's tokens) each weight
/// matrix of the model's layers is pruned to `sparsity · (1 − (1 − p)³)`, p the share of the
/// way, its smallest-magnitude weights zeroed and kept at zero from then on. `start = end = 0`
/// keeps the zeros the weights start with and prunes no more: a pruned parent's child.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneConfig {
    /// Final share of zero weights in each matrix, in (0, 1).
    pub sparsity: f64,
    /// Where pruning starts (share of the budget).
    pub start: f64,
    /// Where it reaches `sparsity`.
    pub end: f64,
}

impl PruneConfig {
    /// The sparsity due after `seen` of `total` tokens.
    pub fn sparsity_at(&self, seen: u64, total: u64) -> f64 {
        let at = seen as f64 / total.max(1) as f64;
        if at <= self.start {
            return 0.0;
        }
        let p = ((at - self.start) / (self.end - self.start).max(f64::MIN_POSITIVE)).min(1.0);
        self.sparsity * (1.0 - (1.0 - p).powi(3))
    }
}

/// Distillation (Hinton et al. 2015): the loss is `λ·CE(y, s) + (1 − λ)·τ²·KL(p_t^τ ‖ p_s^τ)`,
/// `p^τ` the softmax of logits divided by τ, averaged over the predicted positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// The teacher's id (a run's, or `hf-…` for a transformers checkpoint): part of the
    /// student's identity; its directory is given at run time (`train.distill_from`).
    pub teacher: String,
    /// τ.
    pub temperature: f64,
    /// λ.
    pub hard_weight: f64,
}

/// A one-shot compression of a trained model's weight matrices (see `scalelab_train::compress`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Method {
    /// Zero the smallest-magnitude share `sparsity` of the weights, of each layer or of all
    /// layers together (`global`).
    Magnitude {
        /// Share of weights set to zero, in [0, 1).
        sparsity: f64,
        /// One threshold over every layer rather than the same share in each.
        global: bool,
    },
    /// Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language
    /// Models"): in each output, zero the share `sparsity` of its weights with the smallest
    /// `|W_ij|·‖X_j‖`, `‖X_j‖` the L2 norm of input j over calibration tokens.
    Wanda {
        /// Share of each output's weights set to zero, in [0, 1).
        sparsity: f64,
    },
    /// Structured: in each block, zero the share `sparsity` of its MLP's hidden neurons (a
    /// neuron's input column and output row) with the smallest product of those two norms.
    Neurons {
        /// Share of each block's neurons removed, in [0, 1).
        sparsity: f64,
    },
    /// Structured: in each block, zero `round(sparsity × heads)` attention heads (a head's
    /// query, key and value columns and its rows of the output projection) with the smallest
    /// product of its value columns' and output rows' norms.
    Heads {
        /// Share of each block's heads removed, in [0, 1).
        sparsity: f64,
    },
    /// Structured: in each convolution of a CNN, zero the share `sparsity` of its output
    /// channels with the smallest kernel norm (the whole kernel, its bias, and the next layer's
    /// weights on the channel).
    Channels {
        /// Share of each convolution's channels removed, in [0, 1).
        sparsity: f64,
    },
    /// Keep the `n` largest-magnitude of every `m` consecutive inputs of each output.
    NOfM {
        /// Kept per group.
        n: usize,
        /// Group size.
        m: usize,
    },
    /// Symmetric `bits`-bit quantisation (8 or 4).
    Quantize {
        /// 8 or 4.
        bits: u32,
        /// Which weights share a scale.
        scales: Scales,
    },
}

/// Which weights of a matrix share a quantisation scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scales {
    /// The whole matrix.
    Tensor,
    /// Each output channel (a column of the `[inputs, outputs]` matrix).
    Channel,
    /// Each run of this many consecutive inputs of an output (at most 255, Burn's block limit).
    Block(usize),
}

impl Method {
    /// Its tag in a compressed model's id and in reports: `magnitude0.5`,
    /// `global-magnitude0.5`, `wanda0.5`, `2of4`, `int8-channel`, `int4-block32`.
    pub fn tag(&self) -> String {
        match *self {
            Method::Magnitude { sparsity, global } => {
                format!("{}magnitude{sparsity}", if global { "global-" } else { "" })
            }
            Method::Wanda { sparsity } => format!("wanda{sparsity}"),
            Method::Neurons { sparsity } => format!("neurons{sparsity}"),
            Method::Heads { sparsity } => format!("heads{sparsity}"),
            Method::Channels { sparsity } => format!("channels{sparsity}"),
            Method::NOfM { n, m } => format!("{n}of{m}"),
            Method::Quantize { bits, scales } => format!("int{bits}-{}", scales.tag()),
        }
    }

    /// The method's name without its level: `magnitude`, `global-magnitude`,
    /// `wanda`, `neurons`, `heads`, `2:4`, `int8-channel` (how a compression study lists it).
    pub fn family_name(&self) -> String {
        match *self {
            Method::Magnitude { global: false, .. } => "magnitude".into(),
            Method::Magnitude { global: true, .. } => "global-magnitude".into(),
            Method::Wanda { .. } => "wanda".into(),
            Method::Neurons { .. } => "neurons".into(),
            Method::Heads { .. } => "heads".into(),
            Method::Channels { .. } => "channels".into(),
            Method::NOfM { n, m } => format!("{n}:{m}"),
            Method::Quantize { bits, scales } => format!("int{bits}-{}", scales.tag()),
        }
    }

    /// The share of weights it zeros, where it is set by a level (`None` for N:M, whose
    /// share is fixed, and quantisation).
    pub fn sparsity(&self) -> Option<f64> {
        match *self {
            Method::Magnitude { sparsity, .. }
            | Method::Wanda { sparsity }
            | Method::Neurons { sparsity }
            | Method::Heads { sparsity }
            | Method::Channels { sparsity } => Some(sparsity),
            _ => None,
        }
    }

    /// The methods a compression study's `compress.one_shot` entry `name` stands for: a
    /// pruning method once per sparsity of `sparsities`, the others once.
    pub fn from_name(name: &str, sparsities: &[f64]) -> Result<Vec<Method>, String> {
        let each = |make: &dyn Fn(f64) -> Method| sparsities.iter().map(|&s| make(s)).collect();
        match name {
            "magnitude" => {
                return Ok(each(&|sparsity| Method::Magnitude {
                    sparsity,
                    global: false,
                }));
            }
            "wanda" => return Ok(each(&|sparsity| Method::Wanda { sparsity })),
            "neurons" => return Ok(each(&|sparsity| Method::Neurons { sparsity })),
            "heads" => return Ok(each(&|sparsity| Method::Heads { sparsity })),
            "channels" => return Ok(each(&|sparsity| Method::Channels { sparsity })),
            "global-magnitude" => {
                return Ok(each(&|sparsity| Method::Magnitude {
                    sparsity,
                    global: true,
                }));
            }
            _ => {}
        }
        if let Some((n, m)) = name.split_once(':') {
            let (n, m) = (n.parse::<usize>(), m.parse::<usize>());
            return match (n, m) {
                (Ok(n), Ok(m)) if 1 <= n && n <= m && m <= 64 => Ok(vec![Method::NOfM { n, m }]),
                _ => Err(
                    "an N:M pattern keeps N of every M weights, 1 ≤ N ≤ M ≤ 64, e.g. \"2:4\""
                        .into(),
                ),
            };
        }
        let quant = || -> Option<Method> {
            let rest = name.strip_prefix("int")?;
            let (bits, scales) = rest.split_once('-')?;
            let bits: u32 = bits.parse().ok().filter(|b| *b == 8 || *b == 4)?;
            let scales = match scales {
                "tensor" => Scales::Tensor,
                "channel" => Scales::Channel,
                block => {
                    let b: usize = block.strip_prefix("block")?.parse().ok()?;
                    (1..=255).contains(&b).then_some(Scales::Block(b))?
                }
            };
            Some(Method::Quantize { bits, scales })
        };
        quant().map(|m| vec![m]).ok_or_else(|| {
            "one-shot methods are magnitude, global-magnitude, wanda, neurons, heads, channels, an N:M pattern (\"2:4\"), \
             or int8/int4 with -tensor, -channel or -block<B> scales (\"int4-block32\")"
                .into()
        })
    }
}

impl Scales {
    fn tag(&self) -> String {
        match self {
            Scales::Tensor => "tensor".into(),
            Scales::Channel => "channel".into(),
            Scales::Block(b) => format!("block{b}"),
        }
    }
}
