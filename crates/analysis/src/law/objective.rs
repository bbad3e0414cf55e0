//! The fit's objective (Huber loss of log residuals, Hoffmann et al. 2022) and its minimiser:
//! L-BFGS with a More-Thuente line search from every start of a law's grid, keeping the best.

use argmin::core::{CostFunction, Error as ArgminError, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use std::sync::Mutex;

use rayon::prelude::*;

use super::Obs;
use super::forms::LogLaw;

pub(crate) fn huber(r: f64, delta: f64) -> f64 {
    if r.abs() <= delta {
        0.5 * r * r
    } else {
        delta * (r.abs() - 0.5 * delta)
    }
}

pub(crate) fn huber_grad(r: f64, delta: f64) -> f64 {
    r.clamp(-delta, delta)
}

/// The Huber objective over points; remembers the best point it has evaluated, so that a
/// line search that gives up near the optimum loses nothing.
pub(crate) struct Objective<'a, L: LogLaw> {
    law: &'a L,
    obs: &'a [Obs],
    loss: Residual,
    best: &'a Mutex<(f64, Vec<f64>)>,
}

/// How a point's residual is measured: the Huber δ, and whether on log losses (Hoffmann et
/// al. 2022) or on the losses themselves (Frantar et al. 2023 for vision models).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Residual {
    pub(crate) delta: f64,
    pub(crate) linear: bool,
}

impl Residual {
    /// The residual of a prediction `log_pred` against `log_y`, and its derivative in
    /// `log_pred`.
    fn of(self, log_pred: f64, log_y: f64) -> (f64, f64) {
        if self.linear {
            let pred = log_pred.exp();
            (pred - log_y.exp(), pred)
        } else {
            (log_pred - log_y, 1.0)
        }
    }
}

pub(crate) fn objective_value<L: LogLaw>(
    law: &L,
    obs: &[Obs],
    loss: Residual,
    theta: &[f64],
) -> f64 {
    let mut g = vec![0.0; L::DIM];
    obs.iter()
        .map(|o| {
            huber(
                loss.of(law.log_predict(theta, &o.x, &mut g), o.log_y).0,
                loss.delta,
            )
        })
        .sum()
}

pub(crate) fn objective_gradient<L: LogLaw>(
    law: &L,
    obs: &[Obs],
    loss: Residual,
    theta: &[f64],
) -> Vec<f64> {
    let mut g = vec![0.0; L::DIM];
    let mut total = vec![0.0; L::DIM];
    for o in obs {
        let (r, dr) = loss.of(law.log_predict(theta, &o.x, &mut g), o.log_y);
        let h = huber_grad(r, loss.delta) * dr;
        for (t, gi) in total.iter_mut().zip(&g) {
            *t += h * gi;
        }
    }
    total
}

impl<L: LogLaw> CostFunction for Objective<'_, L> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, theta: &Vec<f64>) -> Result<f64, ArgminError> {
        let c = objective_value(self.law, self.obs, self.loss, theta);
        if c.is_finite()
            && let Ok(mut best) = self.best.lock()
            && c < best.0
        {
            *best = (c, theta.clone());
        }
        Ok(if c.is_finite() { c } else { f64::INFINITY })
    }
}

impl<L: LogLaw> Gradient for Objective<'_, L> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, theta: &Vec<f64>) -> Result<Vec<f64>, ArgminError> {
        Ok(objective_gradient(self.law, self.obs, self.loss, theta))
    }
}

/// The end of one L-BFGS run.
pub(crate) struct Solution {
    pub(crate) theta: Vec<f64>,
    pub(crate) cost: f64,
}

pub(crate) fn lbfgs_from<L: LogLaw>(
    law: &L,
    obs: &[Obs],
    loss: Residual,
    start: &[f64],
    max_iters: u64,
) -> Option<Solution> {
    let start_cost = objective_value(law, obs, loss, start);
    if !start_cost.is_finite() {
        return None;
    }
    let best = Mutex::new((start_cost, start.to_vec()));
    let problem = Objective {
        law,
        obs,
        loss,
        best: &best,
    };
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-12)
        .and_then(|s| s.with_tolerance_cost(0.0));
    if let Ok(solver) = solver {
        // A run that ends in a line-search error still leaves its best point in `best`.
        let result = Executor::new(problem, solver)
            .configure(|state| state.param(start.to_vec()).max_iters(max_iters))
            .run();
        if let Ok(result) = &result
            && let Some(p) = result.state().get_best_param()
        {
            let c = result.state().get_best_cost();
            if let Ok(mut b) = best.lock()
                && c.is_finite()
                && c < b.0
            {
                *b = (c, p.clone());
            }
        }
    }
    let (cost, theta) = best.into_inner().ok()?;
    cost.is_finite().then_some(Solution { theta, cost })
}

pub(crate) fn best_of<L: LogLaw>(
    law: &L,
    obs: &[Obs],
    loss: Residual,
    starts: &[Vec<f64>],
    max_iters: u64,
) -> Option<Solution> {
    starts
        .par_iter()
        .filter_map(|s| lbfgs_from(law, obs, loss, s, max_iters))
        .min_by(|x, y| x.cost.total_cmp(&y.cost))
}

/// The `k` points of `grid` with the lowest objective on `obs`.
pub(crate) fn best_starts<L: LogLaw>(
    law: &L,
    obs: &[Obs],
    loss: Residual,
    grid: &[Vec<f64>],
    k: usize,
) -> Vec<Vec<f64>> {
    let mut ranked: Vec<(f64, &Vec<f64>)> = grid
        .iter()
        .map(|t| (objective_value(law, obs, loss, t), t))
        .filter(|(c, _)| c.is_finite())
        .collect();
    ranked.sort_by(|x, y| x.0.total_cmp(&y.0));
    ranked.iter().take(k).map(|(_, t)| (*t).clone()).collect()
}
