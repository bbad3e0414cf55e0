//! Training with scalelab's fused CPU kernels follows the same loss curve as training with
//! Burn's own operations. A separate test binary, because switching the kernels off is
//! process-wide.

use burn::tensor::Device;
use scalelab_models::fused::set_fused;
use scalelab_spec::GptConfig;
use scalelab_train::bench::bench_gpt_step;

#[test]
fn fused_and_unfused_training_follow_the_same_loss_curve() {
    let config = GptConfig {
        n_layers: 2,
        d_model: 64,
        n_heads: 4,
        d_ff: 256,
        ctx_len: 32,
        vocab_size: 256,
        dropout: 0.0,
        tie_embeddings: false,
        family: Default::default(),
    };
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
    assert!(fused[39] < fused[0] - 0.1, "{fused:?}");
    for (step, (a, b)) in fused.iter().zip(&unfused).enumerate() {
        assert!(
            (a - b).abs() < 1e-4,
            "step {step}: fused {a} vs unfused {b}"
        );
    }
}
