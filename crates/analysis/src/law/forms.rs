//! The three laws in log space, each with its analytic gradient in θ, its grid of starts and
//! its constants in the paper's names: Chinchilla's `L = E + A/N^α + B/D^β` (Hoffmann et al.
//! 2022), the power law `L = E + A·x^−α`, and Kaplan's `L = ((N_c/N)^(α_N/α_D) + D_c/D)^α_D`
//! (Kaplan et al. 2020), and Frantar et al. 2023's sparsity law
//! `L = (a_S(1 − S)^b_S + c_S)·N^−b_N + a_D·D^−b_D + c`.

use super::LawKind;

/// A law written as `log L̂ = f(θ; ln N, ln D)` with an analytic gradient in θ.
pub(crate) trait LogLaw: Sync {
    /// Number of free parameters.
    const DIM: usize;
    /// `log L̂(θ; x)` at `x = [ln N, ln D, ln(1 − S)]`; writes `∂ log L̂ / ∂θ` into `grad`.
    fn log_predict(&self, theta: &[f64], x: &[f64; 3], grad: &mut [f64]) -> f64;
    /// Grid of initialisations.
    fn grid(&self) -> Vec<Vec<f64>>;
    /// The constants in the paper's names, derived ones last.
    fn constants(&self, theta: &[f64]) -> Vec<(&'static str, f64)>;
    /// The kind, for the result.
    fn kind(&self) -> LawKind;
}

/// `log(Σ exp(tᵢ))` and the softmax weights, written into `w`.
pub(crate) fn log_sum_exp(t: &[f64], w: &mut [f64]) -> f64 {
    let m = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for (wi, ti) in w.iter_mut().zip(t) {
        *wi = (ti - m).exp();
        s += *wi;
    }
    for wi in w.iter_mut() {
        *wi /= s;
    }
    m + s.ln()
}

pub(crate) fn range(from: f64, to: f64, step: f64) -> Vec<f64> {
    let n = ((to - from) / step).round() as usize;
    (0..=n).map(|i| from + step * i as f64).collect()
}

/// θ = [a, b, e, α, β] with A = eᵃ, B = eᵇ, E = eᵉ (Hoffmann et al. 2022, appendix D.2).
pub(crate) struct ChinchillaLaw;

impl LogLaw for ChinchillaLaw {
    const DIM: usize = 5;

    fn log_predict(&self, t: &[f64], x: &[f64; 3], g: &mut [f64]) -> f64 {
        let (a, b, e, alpha, beta) = (t[0], t[1], t[2], t[3], t[4]);
        let mut w = [0.0; 3];
        let r = log_sum_exp(&[a - alpha * x[0], b - beta * x[1], e], &mut w);
        g[0] = w[0];
        g[1] = w[1];
        g[2] = w[2];
        g[3] = -w[0] * x[0];
        g[4] = -w[1] * x[1];
        r
    }

    /// α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, −0.5, …, 1}, a, b ∈ {0, 5, …, 25}: 4,500 starts.
    fn grid(&self) -> Vec<Vec<f64>> {
        let mut out = Vec::new();
        for &a in &range(0.0, 25.0, 5.0) {
            for &b in &range(0.0, 25.0, 5.0) {
                for &e in &range(-1.0, 1.0, 0.5) {
                    for &alpha in &range(0.0, 2.0, 0.5) {
                        for &beta in &range(0.0, 2.0, 0.5) {
                            out.push(vec![a, b, e, alpha, beta]);
                        }
                    }
                }
            }
        }
        out
    }

    fn constants(&self, t: &[f64]) -> Vec<(&'static str, f64)> {
        let (alpha, beta) = (t[3], t[4]);
        vec![
            ("E", t[2].exp()),
            ("A", t[0].exp()),
            ("B", t[1].exp()),
            ("alpha", alpha),
            ("beta", beta),
            ("a", beta / (alpha + beta)),
            ("b", alpha / (alpha + beta)),
        ]
    }

    fn kind(&self) -> LawKind {
        LawKind::Chinchilla
    }
}

/// θ = [a, e, α] with A = eᵃ, E = eᵉ.
pub(crate) struct PowerLaw;

impl LogLaw for PowerLaw {
    const DIM: usize = 3;

    fn log_predict(&self, t: &[f64], x: &[f64; 3], g: &mut [f64]) -> f64 {
        let mut w = [0.0; 2];
        let r = log_sum_exp(&[t[0] - t[2] * x[0], t[1]], &mut w);
        g[0] = w[0];
        g[1] = w[1];
        g[2] = -w[0] * x[0];
        r
    }

    /// a ∈ {0, 5, …, 30}, e ∈ {−1, −0.5, …, 1}, α ∈ {0.05, 0.1, 0.2, 0.35, 0.5, 1, 1.5, 2}.
    fn grid(&self) -> Vec<Vec<f64>> {
        let mut out = Vec::new();
        for &a in &range(0.0, 30.0, 5.0) {
            for &e in &range(-1.0, 1.0, 0.5) {
                for alpha in [0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 1.5, 2.0] {
                    out.push(vec![a, e, alpha]);
                }
            }
        }
        out
    }

    fn constants(&self, t: &[f64]) -> Vec<(&'static str, f64)> {
        vec![("E", t[1].exp()), ("A", t[0].exp()), ("alpha", t[2])]
    }

    fn kind(&self) -> LawKind {
        LawKind::Power
    }
}

/// θ = [u, v, α_N, α_D] with N_c = eᵘ, D_c = eᵛ:
/// `log L̂ = α_D · LSE((α_N/α_D)(u − ln N), v − ln D)`.
pub(crate) struct KaplanLaw;

impl LogLaw for KaplanLaw {
    const DIM: usize = 4;

    fn log_predict(&self, t: &[f64], x: &[f64; 3], g: &mut [f64]) -> f64 {
        let (u, v, an, ad) = (t[0], t[1], t[2], t[3]);
        if ad <= 0.0 {
            g.iter_mut().for_each(|gi| *gi = f64::NAN);
            return f64::NAN;
        }
        let s1 = an / ad * (u - x[0]);
        let mut w = [0.0; 2];
        let s = log_sum_exp(&[s1, v - x[1]], &mut w);
        g[0] = w[0] * an;
        g[1] = ad * w[1];
        g[2] = w[0] * (u - x[0]);
        g[3] = s - w[0] * s1;
        ad * s
    }

    /// u, v ∈ {5, 10, …, 40}, α_N, α_D ∈ {0.05, 0.1, 0.2, 0.5, 1}.
    fn grid(&self) -> Vec<Vec<f64>> {
        let mut out = Vec::new();
        for &u in &range(5.0, 40.0, 5.0) {
            for &v in &range(5.0, 40.0, 5.0) {
                for an in [0.05, 0.1, 0.2, 0.5, 1.0] {
                    for ad in [0.05, 0.1, 0.2, 0.5, 1.0] {
                        out.push(vec![u, v, an, ad]);
                    }
                }
            }
        }
        out
    }

    fn constants(&self, t: &[f64]) -> Vec<(&'static str, f64)> {
        vec![
            ("N_c", t[0].exp()),
            ("D_c", t[1].exp()),
            ("alpha", t[2]),
            ("beta", t[3]),
        ]
    }

    fn kind(&self) -> LawKind {
        LawKind::Kaplan
    }
}

/// θ = [α_S, b_S, γ_S, b_N, α_D, b_D, γ] with a_S = e^α_S, c_S = e^γ_S, a_D = e^α_D, c = e^γ
/// (Frantar et al. 2023, "Scaling Laws for Sparsely Connected Foundation Models", eq. 1):
/// `log L̂ = LSE(α_S + b_S ln(1−S) − b_N ln N, γ_S − b_N ln N, α_D − b_D ln D, γ)`.
pub(crate) struct SparsityLaw;

impl LogLaw for SparsityLaw {
    const DIM: usize = 7;

    fn log_predict(&self, t: &[f64], x: &[f64; 3], g: &mut [f64]) -> f64 {
        let (ln_n, ln_d, ln_dense) = (x[0], x[1], x[2]);
        let mut w = [0.0; 4];
        let r = log_sum_exp(
            &[
                t[0] + t[1] * ln_dense - t[3] * ln_n,
                t[2] - t[3] * ln_n,
                t[4] - t[5] * ln_d,
                t[6],
            ],
            &mut w,
        );
        g[0] = w[0];
        g[1] = w[0] * ln_dense;
        g[2] = w[1];
        g[3] = -(w[0] + w[1]) * ln_n;
        g[4] = w[2];
        g[5] = -w[2] * ln_d;
        g[6] = w[3];
        r
    }

    /// α_S, γ_S, α_D ∈ {0, 5, 10, 15}, b_S ∈ {0.5, 1, 2}, b_N, b_D ∈ {0.1, 0.3, 0.6},
    /// γ ∈ {−1, 0, 1}: 5,184 starts.
    fn grid(&self) -> Vec<Vec<f64>> {
        let mut out = Vec::new();
        for &a_s in &range(0.0, 15.0, 5.0) {
            for b_s in [0.5, 1.0, 2.0] {
                for &c_s in &range(0.0, 15.0, 5.0) {
                    for b_n in [0.1, 0.3, 0.6] {
                        for &a_d in &range(0.0, 15.0, 5.0) {
                            for b_d in [0.1, 0.3, 0.6] {
                                for c in [-1.0, 0.0, 1.0] {
                                    out.push(vec![a_s, b_s, c_s, b_n, a_d, b_d, c]);
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn constants(&self, t: &[f64]) -> Vec<(&'static str, f64)> {
        vec![
            ("a_S", t[0].exp()),
            ("b_S", t[1]),
            ("c_S", t[2].exp()),
            ("b_N", t[3]),
            ("a_D", t[4].exp()),
            ("b_D", t[5]),
            ("c", t[6].exp()),
        ]
    }

    fn kind(&self) -> LawKind {
        LawKind::Sparsity
    }
}
