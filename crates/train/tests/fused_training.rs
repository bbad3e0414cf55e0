//! Training with scalelab's fused CPU kernels follows the same loss curve as training with
//! Burn's own operations. A separate test binary, because switching the kernels off is
//! process-wide.

use burn::tensor::Device;
use scalelab_kernels::set_fused;
use scalelab_spec::LmConfig;
use scalelab_train::bench::bench_gpt_step;

/// `set_fused` is process-wide: the tests of this binary take turns.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn config(ctx_len: usize, tie_embeddings: bool) -> LmConfig {
    LmConfig {
        n_layers: 2,
        d_model: 64,
        n_heads: 4,
        d_ff: 256,
        ctx_len,
        vocab_size: 256,
        dropout: 0.0,
        tie_embeddings,
        share_layers: false,
        family: Default::default(),
    }
}

#[test]
fn fused_and_unfused_training_follow_the_same_loss_curve() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    // Untied and tied output heads (the tied one goes through the fused matmul of a
    // transposed embedding).
    for tie in [false, true] {
        let config = config(32, tie);
        // 40 AdamW steps on one fixed batch at lr 3e-4, from the same initial weights.
        let curve = |fused: bool| {
            set_fused(fused);
            bench_gpt_step(&config, 4, 0, 40, &Device::flex()).losses
        };
        let fused = curve(true);
        let unfused = curve(false);
        set_fused(true);
        assert_eq!(fused.len(), 40);
        // The curve moves, so agreement is not agreement at the starting point only.
        assert!(fused[39] < fused[0] - 0.1, "tied {tie}: {fused:?}");
        for (step, (a, b)) in fused.iter().zip(&unfused).enumerate() {
            assert!(
                (a - b).abs() < 1e-4,
                "tied {tie}, step {step}: fused {a} vs unfused {b}"
            );
        }
    }
}

#[test]
fn training_on_two_threads_is_deterministic() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    // Large enough that the GEMMs split across both threads and the reductions (bias and
    // LayerNorm gradients) run in several tasks: the sums must not depend on the split.
    let config = config(64, false);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let curve = || pool.install(|| bench_gpt_step(&config, 16, 0, 6, &Device::flex()).losses);
    let (first, second) = (curve(), curve());
    assert_eq!(first.len(), 6);
    assert_eq!(first, second, "bit-identical losses from the same start");
}
