//! Compute-optimal allocation: for a budget of C training FLOPs with C = 6·N·D, the model
//! size N and token count D that minimise the fitted loss.
//!
//! For the Chinchilla law `L = E + A/N^α + B/D^β` minimised under `C = 6ND`
//! (Hoffmann et al. 2022, eq. 4):
//!
//! ```text
//! N_opt(C) = G·(C/6)^a,  D_opt(C) = G⁻¹·(C/6)^b,
//! G = (αA / (βB))^(1/(α+β)),  a = β/(α+β),  b = α/(α+β).
//! ```

use serde::{Deserialize, Serialize};

use crate::{AnalysisError, LawFit, LawKind};

/// The constants of a Chinchilla law.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Chinchilla {
    /// Irreducible loss E.
    pub e: f64,
    /// Parameter-term coefficient A.
    pub a: f64,
    /// Data-term coefficient B.
    pub b: f64,
    /// Parameter exponent α.
    pub alpha: f64,
    /// Data exponent β.
    pub beta: f64,
}

impl Chinchilla {
    /// Hoffmann et al. 2022, eq. 10: E = 1.69, A = 406.4, B = 410.7, α = 0.34, β = 0.28.
    pub const PAPER: Chinchilla = Chinchilla {
        e: 1.69,
        a: 406.4,
        b: 410.7,
        alpha: 0.34,
        beta: 0.28,
    };

    /// The constants of a fitted Chinchilla law.
    pub fn from_fit(fit: &LawFit) -> Result<Chinchilla, AnalysisError> {
        if fit.law != LawKind::Chinchilla {
            return Err(AnalysisError::InvalidArgument {
                name: "law",
                value: format!("{:?}", fit.law),
                hint: "compute-optimal allocation needs a Chinchilla fit (--law chinchilla)",
            });
        }
        let g = |k: &str| fit.get(k).unwrap_or(f64::NAN);
        Ok(Chinchilla {
            e: g("E"),
            a: g("A"),
            b: g("B"),
            alpha: g("alpha"),
            beta: g("beta"),
        })
    }

    /// Loss at (N, D).
    pub fn loss(&self, n: f64, d: f64) -> f64 {
        self.e + self.a * n.powf(-self.alpha) + self.b * d.powf(-self.beta)
    }

    /// The compute-optimal N, D and loss for `flops` training FLOPs.
    pub fn optimal(&self, flops: f64) -> Result<Allocation, AnalysisError> {
        if !(flops.is_finite() && flops > 0.0) {
            return Err(AnalysisError::InvalidArgument {
                name: "flops",
                value: flops.to_string(),
                hint: "a compute budget must be a finite number of FLOPs > 0, for example 1e18",
            });
        }
        if !(self.alpha > 0.0 && self.beta > 0.0 && self.a > 0.0 && self.b > 0.0) {
            return Err(AnalysisError::InvalidArgument {
                name: "alpha/beta",
                value: format!("alpha = {}, beta = {}", self.alpha, self.beta),
                hint: "the loss must fall with both N and D (A, B, alpha, beta > 0) for an optimum to exist",
            });
        }
        let s = self.alpha + self.beta;
        let g = (self.alpha * self.a / (self.beta * self.b)).powf(1.0 / s);
        let n = g * (flops / 6.0).powf(self.beta / s);
        let d = flops / (6.0 * n);
        Ok(Allocation {
            flops,
            n_opt: n,
            d_opt: d,
            tokens_per_param: d / n,
            loss: self.loss(n, d),
            n_exponent: self.beta / s,
            d_exponent: self.alpha / s,
        })
    }
}

/// A compute-optimal allocation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    /// Budget C in FLOPs.
    pub flops: f64,
    /// Optimal parameters.
    pub n_opt: f64,
    /// Optimal tokens, `C / (6·N_opt)`.
    pub d_opt: f64,
    /// `D_opt / N_opt`.
    pub tokens_per_param: f64,
    /// Predicted loss at the optimum.
    pub loss: f64,
    /// a in N_opt ∝ C^a.
    pub n_exponent: f64,
    /// b in D_opt ∝ C^b.
    pub d_exponent: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand computation (Python, same formulas):
    /// ```python
    /// E,A,B,al,be = 1.69,406.4,410.7,0.34,0.28
    /// G = (al*A/(be*B))**(1/(al+be)); N = G*(C/6)**(be/(al+be)); D = (C/6)**(al/(al+be))/G
    /// # C = 5.76e23 -> N = 32189859151.368168, D = 2982305686662.796, L = 1.9307481017316481
    /// # C = 1e21    -> N = 1824217696.8955524, D = 91363364663.27403, D/N = 50.083586415566465
    /// ```
    #[test]
    fn allocation_matches_hand_computed_values() {
        let p = Chinchilla::PAPER;
        let x = p.optimal(5.76e23).unwrap();
        assert!((x.n_opt / 32189859151.368168 - 1.0).abs() < 1e-12);
        assert!((x.d_opt / 2982305686662.796 - 1.0).abs() < 1e-12);
        assert!((x.loss - 1.9307481017316481).abs() < 1e-12);
        assert!((6.0 * x.n_opt * x.d_opt / 5.76e23 - 1.0).abs() < 1e-12);
        let y = p.optimal(1e21).unwrap();
        assert!((y.n_opt / 1824217696.8955524 - 1.0).abs() < 1e-12);
        assert!((y.tokens_per_param - 50.083586415566465).abs() < 1e-9);
        assert!((x.n_exponent - 0.28 / 0.62).abs() < 1e-15);
    }

    /// The allocation is a minimum along the iso-FLOP line: moving N either way costs loss.
    #[test]
    fn allocation_is_the_minimum_on_its_isoflop_line() {
        let p = Chinchilla::PAPER;
        let c = 1e20;
        let x = p.optimal(c).unwrap();
        for f in [0.9, 1.1, 0.5, 2.0] {
            let n = x.n_opt * f;
            assert!(p.loss(n, c / (6.0 * n)) > x.loss);
        }
    }

    #[test]
    fn bad_budgets_and_constants_are_refused() {
        assert!(Chinchilla::PAPER.optimal(0.0).is_err());
        assert!(Chinchilla::PAPER.optimal(f64::NAN).is_err());
        let flat = Chinchilla {
            beta: 0.0,
            ..Chinchilla::PAPER
        };
        assert!(flat.optimal(1e20).is_err());
    }
}
