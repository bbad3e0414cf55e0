//! Where initial weights come from. Every parameter of every model is drawn through a
//! [`WeightInit`], in a fixed order, on the host: so the same seed gives the same weights on
//! every backend and in every process, whatever else runs beside it.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// How a parameter tensor should start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InitKind {
    /// Independent draws from N(0, std²).
    Normal {
        /// Standard deviation.
        std: f64,
    },
    /// All zeros (biases).
    Zeros,
    /// All ones (norm gains).
    Ones,
}

/// Produces the initial values of one parameter tensor, row-major in `shape`.
pub trait WeightInit {
    /// Values for the tensor `name` of `shape`, asked for in the model's creation order.
    fn values(&mut self, name: &str, shape: &[usize], kind: InitKind) -> Vec<f32>;
}

/// The standard initialiser: normal draws from a ChaCha8 generator seeded by the run's seed.
pub struct SeededInit {
    rng: ChaCha8Rng,
}

impl SeededInit {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl WeightInit for SeededInit {
    fn values(&mut self, _name: &str, shape: &[usize], kind: InitKind) -> Vec<f32> {
        let n = shape.iter().product();
        match kind {
            InitKind::Zeros => vec![0.0; n],
            InitKind::Ones => vec![1.0; n],
            InitKind::Normal { std } => match Normal::new(0.0, std) {
                Ok(normal) => (0..n)
                    .map(|_| normal.sample(&mut self.rng) as f32)
                    .collect(),
                // A non-finite or negative std is a programming error in a model file;
                // fall back to zeros rather than panic in a user's run.
                Err(_) => vec![0.0; n],
            },
        }
    }
}

/// Deterministic weights that a short script in any language can rebuild: element `i` of the
/// `k`-th tensor created is `amplitude · sin(0.37·i + 0.11·k)`; norm gains are ones and
/// biases zeros. Used by parity tests against reference implementations.
pub struct FormulaInit {
    /// Scale of the sine weights.
    pub amplitude: f64,
    next_tensor: u64,
}

impl FormulaInit {
    /// A formula initialiser with the given amplitude.
    pub fn new(amplitude: f64) -> Self {
        Self {
            amplitude,
            next_tensor: 0,
        }
    }
}

impl WeightInit for FormulaInit {
    fn values(&mut self, _name: &str, shape: &[usize], kind: InitKind) -> Vec<f32> {
        let k = self.next_tensor as f64;
        self.next_tensor += 1;
        let n = shape.iter().product();
        match kind {
            InitKind::Zeros => vec![0.0; n],
            InitKind::Ones => vec![1.0; n],
            InitKind::Normal { .. } => (0..n)
                .map(|i| (self.amplitude * (0.37 * i as f64 + 0.11 * k).sin()) as f32)
                .collect(),
        }
    }
}
