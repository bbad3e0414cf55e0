//! Scaling-law science for scalelab: f64 in, structs out.
//!
//! - [`fit_power`]: `L = E + A·X^(-α)` against one scale axis (N, D or C);
//! - [`fit_chinchilla`]: `L(N, D) = E + A/N^α + B/D^β`, Hoffmann et al. 2022 approach 3,
//!   exactly as their appendix D.2 describes (log-space, log-sum-exp, Huber δ = 1e-3, L-BFGS
//!   from a grid of initialisations);
//! - [`fit_kaplan`]: `L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D`, Kaplan et al. 2020 eq. 1.5;
//! - [`bootstrap`] intervals for every constant and for derived exponents;
//! - [`frontier`] (approach 1), [`isoflop`] (approach 2) and [`optimal`] allocation, and
//!   [`compute_optimal`]: all three approaches of an IsoFLOP study, compared and checked on
//!   a held-out budget;
//! - [`extrapolation`]: fit the small runs, predict the large ones;
//! - [`summary`]: means over seeds;
//! - [`transfer`]: the effective data transferred by pre-training and its law (Hernandez
//!   et al. 2021);
//! - [`emergence`]: sharp, unpredictable jumps of an ability across scale, and the mirage
//!   test that asks whether smooth per-token improvement predicts them.
//!
//! No Burn and no I/O: callers bring numbers, this crate brings the statistics.

mod error;
mod law;
mod linear;

pub mod abilities;
pub mod bootstrap;
pub mod classify;
pub mod compress_study;
pub mod compute_optimal;
pub mod emergence;
pub mod extrapolation;
pub mod frontier;
pub mod isoflop;
pub mod optimal;
pub mod paired;
pub mod study;
pub mod summary;
pub mod transfer;
pub mod transfer_study;

pub use error::AnalysisError;
pub use law::{
    Constant, FitOptions, Interval, LawFit, LawKind, Point, Resampling, ResidualScale, SparsePoint,
    fit_chinchilla, fit_kaplan, fit_law, fit_power, fit_sparsity,
};
pub use linear::{Line, fit_line_loglog};
