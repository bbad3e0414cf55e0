//! The learning-rate schedule as a function of training progress in tokens: linear warm-up to
//! the peak, then cosine decay to `min_lr_ratio × peak` at the end of the budget (as in GPT-3
//! and nanoGPT, but measured in tokens rather than steps).

use std::f64::consts::PI;

/// Learning rate for the step that ends with `tokens` trained, out of `total_tokens`.
pub fn learning_rate(
    peak: f64,
    min_lr_ratio: f64,
    warmup_fraction: f64,
    tokens: u64,
    total_tokens: u64,
) -> f64 {
    let total = total_tokens.max(1) as f64;
    let t = (tokens as f64).min(total);
    let warmup = warmup_fraction * total;
    if t < warmup {
        return peak * t / warmup;
    }
    let min = peak * min_lr_ratio;
    let progress = if total > warmup {
        (t - warmup) / (total - warmup)
    } else {
        1.0
    };
    min + 0.5 * (peak - min) * (1.0 + (PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_peak_midpoint_and_end() {
        let lr = |t| learning_rate(1e-3, 0.1, 0.1, t, 1000);
        assert!((lr(50) - 0.5e-3).abs() < 1e-15, "half-way through warm-up");
        assert!((lr(100) - 1e-3).abs() < 1e-15, "peak at the end of warm-up");
        // Half-way through the decay: min + (peak - min)/2 = 1e-4 + 4.5e-4.
        assert!((lr(550) - 5.5e-4).abs() < 1e-15);
        assert!((lr(1000) - 1e-4).abs() < 1e-15, "min at the end");
        assert!((lr(5000) - 1e-4).abs() < 1e-15, "stays at min past the end");
        assert!(lr(300) > lr(400), "decreasing after warm-up");
    }

    #[test]
    fn no_warmup_starts_at_peak() {
        assert!((learning_rate(2.0, 0.0, 0.0, 0, 10) - 2.0).abs() < 1e-15);
        assert!(learning_rate(2.0, 0.0, 0.0, 10, 10).abs() < 1e-15);
    }
}
