//! The compression methods on one weight matrix (row-major `[inputs, outputs]`, an output a
//! column; a convolution's kernel is read as `[in·kh·kw, out]`): magnitude, global, Wanda,
//! whole neurons, heads and channels, N:M, and quantise–dequantise through Burn's scheme.

use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
use burn::tensor::{Device, Tensor, TensorData};

use super::bad;
use crate::TrainError;

/// Bytes of a float32 matrix of `params` elements of which `nonzero` are not zero, stored as
/// its non-zero values and a bitmask of their places (one bit per element), or dense where
/// that is smaller: the storage convention of every pruned matrix's bytes here (a format with
/// indices instead of a mask would cost more above ~3% density).
pub fn pruned_bytes(params: u64, nonzero: u64) -> u64 {
    (4 * nonzero + params.div_ceil(8)).min(4 * params)
}

/// The indices of the `k` smallest magnitudes of `values` (ties: the lower index first).
fn smallest(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].abs().total_cmp(&values[b].abs()).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Zeros exactly `round(sparsity × len)` of `values`, the smallest in magnitude.
pub fn prune_magnitude(values: &mut [f32], sparsity: f64) {
    let k = (sparsity * values.len() as f64).round() as usize;
    for i in smallest(values, k.min(values.len())) {
        values[i] = 0.0;
    }
}

/// Zeros exactly `round(sparsity × total)` weights over all `layers` together, the smallest
/// in magnitude anywhere.
pub fn prune_global(layers: &mut [Vec<f32>], sparsity: f64) {
    let total: usize = layers.iter().map(Vec::len).sum();
    let k = ((sparsity * total as f64).round() as usize).min(total);
    let mut all: Vec<(f32, usize, usize)> = layers
        .iter()
        .enumerate()
        .flat_map(|(l, v)| v.iter().enumerate().map(move |(i, x)| (x.abs(), l, i)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    for &(_, l, i) in &all[..k] {
        layers[l][i] = 0.0;
    }
}

/// Wanda on a `[inputs, outputs]` matrix (row-major): in each output column, exactly
/// `round(sparsity × inputs)` weights with the smallest `|W_ij|·norms[i]` zeroed (ties: the
/// lower input first).
pub fn prune_wanda(
    values: &mut [f32],
    inputs: usize,
    outputs: usize,
    norms: &[f32],
    sparsity: f64,
) {
    let k = ((sparsity * inputs as f64).round() as usize).min(inputs);
    for col in 0..outputs {
        let scores: Vec<f32> = (0..inputs)
            .map(|r| values[r * outputs + col].abs() * norms[r])
            .collect();
        for r in smallest(&scores, k) {
            values[r * outputs + col] = 0.0;
        }
    }
}

/// The indices of the `round(sparsity × scores.len())` smallest `scores`.
fn weakest(scores: &[f32], sparsity: f64) -> Vec<usize> {
    let k = ((sparsity * scores.len() as f64).round() as usize).min(scores.len());
    smallest(scores, k)
}

fn norm(values: impl Iterator<Item = f32>) -> f32 {
    values.map(|x| x * x).sum::<f32>().sqrt()
}

/// Structured pruning of an MLP of width `d` and hidden width `f` (`fc` `[d, f]`, `fc_proj`
/// `[f, d]`, row-major): the share `sparsity` of hidden neurons with the smallest
/// `‖fc[:, k]‖·‖fc_proj[k, :]‖` lose their input column and output row.
pub fn prune_neurons(fc: &mut [f32], fc_proj: &mut [f32], d: usize, f: usize, sparsity: f64) {
    let scores: Vec<f32> = (0..f)
        .map(|k| {
            norm((0..d).map(|r| fc[r * f + k])) * norm(fc_proj[k * d..(k + 1) * d].iter().copied())
        })
        .collect();
    for k in weakest(&scores, sparsity) {
        (0..d).for_each(|r| fc[r * f + k] = 0.0);
        fc_proj[k * d..(k + 1) * d].fill(0.0);
    }
}

/// Structured pruning of a block's attention of width `d` and `n_heads` heads (`qkv`
/// `[d, 3d]`: queries, keys, values, each head-major; `proj` `[d, d]`, its rows head-major):
/// `round(sparsity × n_heads)` heads with the smallest product of their value columns' and
/// output rows' norms lose their query, key and value columns and their output rows.
pub fn prune_heads(qkv: &mut [f32], proj: &mut [f32], d: usize, n_heads: usize, sparsity: f64) {
    let hs = d / n_heads;
    let cols = |h: usize, part: usize| (part * d + h * hs)..(part * d + (h + 1) * hs);
    let scores: Vec<f32> = (0..n_heads)
        .map(|h| {
            let v = norm(
                (0..d)
                    .flat_map(|r| cols(h, 2).map(move |c| (r, c)))
                    .map(|(r, c)| qkv[r * 3 * d + c]),
            );
            v * norm(proj[h * hs * d..(h + 1) * hs * d].iter().copied())
        })
        .collect();
    for h in weakest(&scores, sparsity) {
        for r in 0..d {
            for part in 0..3 {
                for c in cols(h, part) {
                    qkv[r * 3 * d + c] = 0.0;
                }
            }
        }
        proj[h * hs * d..(h + 1) * hs * d].fill(0.0);
    }
}

/// Structured pruning of a convolution held as the matrix `[inputs, outputs]` (an output
/// channel a column): the share `sparsity` of output channels with the smallest L2 norm lose
/// their whole kernel; returns which.
pub fn prune_channels(
    values: &mut [f32],
    inputs: usize,
    outputs: usize,
    sparsity: f64,
) -> Vec<usize> {
    let scores: Vec<f32> = (0..outputs)
        .map(|o| norm((0..inputs).map(|r| values[r * outputs + o])))
        .collect();
    let removed = weakest(&scores, sparsity);
    for &o in &removed {
        (0..inputs).for_each(|r| values[r * outputs + o] = 0.0);
    }
    removed
}

/// N:M pruning of a `[inputs, outputs]` matrix (row-major, Burn's linear layout): in each
/// output column, of every `m` consecutive inputs the `n` largest in magnitude are kept.
pub fn prune_n_of_m(values: &mut [f32], inputs: usize, outputs: usize, n: usize, m: usize) {
    for col in 0..outputs {
        for group in 0..inputs / m {
            let idx: Vec<usize> = (0..m).map(|r| (group * m + r) * outputs + col).collect();
            let group_values: Vec<f32> = idx.iter().map(|&i| values[i]).collect();
            for j in smallest(&group_values, m - n) {
                values[idx[j]] = 0.0;
            }
        }
    }
}

/// Quantises and dequantises a `[inputs, outputs]` matrix through Burn's symmetric scheme.
pub fn quantize_dequantize(
    values: Vec<f32>,
    inputs: usize,
    outputs: usize,
    bits: u32,
    block: usize,
) -> Result<Vec<f32>, TrainError> {
    let value = match bits {
        8 => QuantValue::Q8S,
        4 => QuantValue::Q4S,
        other => {
            return Err(bad(
                format!("{other}-bit quantisation is not offered"),
                "use --bits 8 or --bits 4",
            ));
        }
    };
    // Values kept natively (not packed into u32 words), scales in f32.
    let scheme = QuantScheme::default()
        .with_value(value)
        .with_store(QuantStore::Native);
    let scheme = if block == 0 {
        scheme.per_tensor(ScaleDtype::F32)
    } else {
        // A block is `block` consecutive inputs of one output: [block, 1] of [inputs, outputs].
        scheme.per_block([block as u8, 1], ScaleDtype::F32)
    };
    let device = Device::flex();
    let tensor = Tensor::<2>::from_data(TensorData::new(values, [inputs, outputs]), &device);
    let data = tensor.quantize_dynamic(&scheme).dequantize().into_data();
    data.convert::<f32>().try_to_vec::<f32>().map_err(|e| {
        bad(
            format!("reading dequantised weights: {e:?}"),
            "report this as a bug",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn zeros(v: &[f32]) -> usize {
        v.iter().filter(|x| **x == 0.0).count()
    }

    /// Per layer: exactly the asked share is zero in each layer, and no kept weight is smaller
    /// than a pruned one was.
    #[test]
    fn magnitude_pruning_zeros_exactly_the_smallest_share() {
        let original = values(1000, 1);
        let mut v = original.clone();
        prune_magnitude(&mut v, 0.3);
        assert_eq!(zeros(&v), 300);
        let largest_pruned = original
            .iter()
            .zip(&v)
            .filter(|(_, p)| **p == 0.0)
            .map(|(o, _)| o.abs())
            .fold(0.0, f32::max);
        let smallest_kept = v
            .iter()
            .filter(|x| **x != 0.0)
            .map(|x| x.abs())
            .fold(f32::MAX, f32::min);
        assert!(largest_pruned <= smallest_kept);
    }

    /// Global: exactly the asked share of all weights is zero, unevenly across layers (a layer
    /// of small weights loses more).
    #[test]
    fn global_pruning_hits_the_total_and_prefers_small_layers() {
        let big: Vec<f32> = values(600, 2);
        let small: Vec<f32> = values(400, 3).iter().map(|x| x * 0.1).collect();
        let mut layers = vec![big, small];
        prune_global(&mut layers, 0.5);
        assert_eq!(zeros(&layers[0]) + zeros(&layers[1]), 500);
        assert_eq!(
            zeros(&layers[1]),
            400,
            "every small weight is below every large one's median"
        );
    }

    /// Wanda: exactly the asked share of each output's weights is zeroed, by |W|·‖X‖: a
    /// large weight on an input that is nearly silent goes before a small weight on a loud
    /// one (by magnitude the 1.0 would stay and the 0.1 go).
    #[test]
    fn wanda_prunes_by_weight_times_input_norm_in_each_output() {
        let (inputs, outputs) = (4, 2);
        // Column 0: weights 1.0, 0.1, 0.5, 0.2 on inputs of norm 0.01, 100, 1, 1.
        // Scores 0.01, 10, 0.5, 0.2: the two smallest are inputs 0 and 3.
        let mut v = vec![1.0, 1.0, 0.1, 1.0, 0.5, 1.0, 0.2, 1.0];
        let norms = [0.01, 100.0, 1.0, 1.0];
        prune_wanda(&mut v, inputs, outputs, &norms, 0.5);
        let column =
            |v: &[f32], c: usize| (0..inputs).map(|r| v[r * outputs + c]).collect::<Vec<_>>();
        assert_eq!(column(&v, 0), [0.0, 0.1, 0.5, 0.0]);
        // Column 1: equal weights, so the two quietest inputs (0, then 2 or 3: the lower).
        assert_eq!(column(&v, 1), [0.0, 1.0, 0.0, 1.0]);
        // Exactly round(s × inputs) a column at other shares.
        let mut w = values(64 * 8, 9);
        let norms: Vec<f32> = (0..64).map(|i| 1.0 + i as f32).collect();
        prune_wanda(&mut w, 64, 8, &norms, 0.75);
        for c in 0..8 {
            assert_eq!((0..64).filter(|r| w[r * 8 + c] == 0.0).count(), 48);
        }
    }

    /// Structured, neurons: exactly the asked share of hidden neurons loses its whole input
    /// column and output row, the weakest by the product of their norms; the rest untouched.
    #[test]
    fn neuron_pruning_removes_whole_neurons_the_weakest_first() {
        let (d, f) = (4, 8);
        let mut fc = values(d * f, 11);
        let mut fc_proj = values(f * d, 12);
        // Neuron 5 made the weakest: its input column tiny.
        (0..d).for_each(|r| fc[r * f + 5] *= 1e-3);
        let (fc0, proj0) = (fc.clone(), fc_proj.clone());
        prune_neurons(&mut fc, &mut fc_proj, d, f, 0.25);
        let dead: Vec<usize> = (0..f)
            .filter(|&k| (0..d).all(|r| fc[r * f + k] == 0.0))
            .collect();
        assert_eq!(dead.len(), 2);
        assert!(dead.contains(&5));
        for k in 0..f {
            let row = &fc_proj[k * d..(k + 1) * d];
            if dead.contains(&k) {
                assert!(row.iter().all(|x| *x == 0.0));
            } else {
                assert_eq!(row, &proj0[k * d..(k + 1) * d]);
                assert!((0..d).all(|r| fc[r * f + k] == fc0[r * f + k]));
            }
        }
    }

    /// Structured, heads: half of four heads lose their query, key and value columns and
    /// their output rows; the head with the weakest values goes first.
    #[test]
    fn head_pruning_removes_whole_heads() {
        let (d, heads) = (8, 4);
        let hs = d / heads;
        let mut qkv = values(d * 3 * d, 13);
        let mut proj = values(d * d, 14);
        // Head 2's value columns made tiny.
        for r in 0..d {
            for c in 2 * d + 2 * hs..2 * d + 3 * hs {
                qkv[r * 3 * d + c] *= 1e-3;
            }
        }
        prune_heads(&mut qkv, &mut proj, d, heads, 0.5);
        let dead: Vec<usize> = (0..heads)
            .filter(|&h| proj[h * hs * d..(h + 1) * hs * d].iter().all(|x| *x == 0.0))
            .collect();
        assert_eq!(dead.len(), 2);
        assert!(dead.contains(&2));
        for h in 0..heads {
            for part in 0..3 {
                let zero = (0..d).all(|r| {
                    (part * d + h * hs..part * d + (h + 1) * hs).all(|c| qkv[r * 3 * d + c] == 0.0)
                });
                assert_eq!(zero, dead.contains(&h), "head {h}, part {part}");
            }
        }
        assert_eq!(zeros(&qkv), 2 * 3 * d * hs);
    }

    /// 2:4: every group of four consecutive inputs of every output keeps exactly two, its two
    /// largest.
    #[test]
    fn n_of_m_keeps_n_in_every_group() {
        let (inputs, outputs) = (8, 3);
        let original = values(inputs * outputs, 4);
        let mut v = original.clone();
        prune_n_of_m(&mut v, inputs, outputs, 2, 4);
        for col in 0..outputs {
            for group in 0..inputs / 4 {
                let idx: Vec<usize> = (0..4).map(|r| (group * 4 + r) * outputs + col).collect();
                let kept: Vec<usize> = idx.iter().copied().filter(|&i| v[i] != 0.0).collect();
                assert_eq!(kept.len(), 2);
                let min_kept = kept
                    .iter()
                    .map(|&i| original[i].abs())
                    .fold(f32::MAX, f32::min);
                for &i in &idx {
                    if v[i] == 0.0 {
                        assert!(original[i].abs() <= min_kept);
                    }
                }
            }
        }
    }

    /// Symmetric quantisation with scale s = max|w| / (2^(b−1) − 1) per scale group moves each
    /// weight by at most s/2 (rounding to the nearest level): checked per tensor and per block
    /// at 8 and 4 bits, with a little slack for float rounding.
    #[test]
    fn quantise_dequantise_error_is_at_most_half_a_step() {
        let (inputs, outputs) = (16, 4);
        let w = values(inputs * outputs, 5);
        for bits in [8u32, 4] {
            let levels = ((1u32 << (bits - 1)) - 1) as f32;
            for block in [0usize, 4, 16] {
                let q = quantize_dequantize(w.clone(), inputs, outputs, bits, block).unwrap();
                for col in 0..outputs {
                    for r in 0..inputs {
                        let group: Vec<usize> = match r.checked_div(block) {
                            None => (0..w.len()).collect(),
                            Some(b) => (b * block..(b + 1) * block)
                                .map(|i| i * outputs + col)
                                .collect(),
                        };
                        let s = group.iter().map(|&i| w[i].abs()).fold(0.0, f32::max) / levels;
                        let i = r * outputs + col;
                        assert!(
                            (q[i] - w[i]).abs() <= 0.5 * s * 1.0001 + 1e-7,
                            "{bits} bits, block {block}: {} vs {}",
                            q[i],
                            w[i]
                        );
                    }
                }
                let distinct: std::collections::BTreeSet<u32> =
                    q.iter().map(|x| x.to_bits()).collect();
                if block == 0 {
                    assert!(
                        distinct.len() <= (2 * levels as usize) + 1,
                        "{bits} bits: {} levels",
                        distinct.len()
                    );
                }
            }
        }
    }
}
