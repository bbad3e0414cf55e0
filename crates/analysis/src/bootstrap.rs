//! Nonparametric bootstrap helpers: resampling with replacement and percentile intervals.

use rand::Rng;

use crate::Interval;

/// `n` indices drawn uniformly with replacement from `0..n`.
pub fn resample<R: Rng>(n: usize, rng: &mut R) -> Vec<usize> {
    (0..n).map(|_| rng.random_range(0..n)).collect()
}

/// The `q`-quantile of sorted data, linearly interpolated (Hyndman & Fan type 7, numpy's
/// default).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The central percentile interval of `samples` at coverage `level`; `None` with fewer than
/// two finite samples.
pub fn percentile_interval(samples: &[f64], level: f64) -> Option<Interval> {
    let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if s.len() < 2 {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Some(Interval {
        lo: quantile_sorted(&s, tail),
        hi: quantile_sorted(&s, 1.0 - tail),
        level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// numpy.quantile([1, 2, 3, 4], [0.025, 0.5, 0.975]) = [1.075, 2.5, 3.925].
    #[test]
    fn quantiles_match_numpy_type_7() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert!((quantile_sorted(&s, 0.025) - 1.075).abs() < 1e-12);
        assert!((quantile_sorted(&s, 0.5) - 2.5).abs() < 1e-12);
        assert!((quantile_sorted(&s, 0.975) - 3.925).abs() < 1e-12);
        let i = percentile_interval(&[4.0, 1.0, f64::NAN, 3.0, 2.0], 0.95).unwrap();
        assert!((i.lo - 1.075).abs() < 1e-12 && (i.hi - 3.925).abs() < 1e-12);
        assert!(percentile_interval(&[1.0], 0.95).is_none());
    }
}
