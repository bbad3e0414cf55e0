//! The analysis of a transfer study: from the final losses of its from-scratch and
//! fine-tuned runs on the target corpus, the effective data transferred per cell, the
//! effective-data multiplier, where training from scratch catches up with fine-tuning
//! ("ossification"), each method's cost, and the laws of transfer per method
//! (`D_T = k·D_F^α·N^β`, Hernandez et al. 2021; `L = A·N^(−α)·D_F^(−β) + E`, Zhang et al.
//! 2024). Seeds are averaged before anything is read off a curve.

use serde::{Deserialize, Serialize};

use crate::transfer::{
    FinetunePoint, MultiplicativeLaw, TransferLaw, TransferPoint, Transferred, effective_data,
    fit_multiplicative, fit_transfer,
};

/// One run of a transfer study on the target corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferRow {
    /// The ladder's name for its size.
    pub size: String,
    /// Parameters, in the study's convention.
    pub n: f64,
    /// The adaptation method of a fine-tuned run; none: trained from scratch. A study of
    /// several LoRA ranks names each (`lora r=8`), so that each is a method of its own.
    pub method: Option<String>,
    /// The rank of a LoRA run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_rank: Option<usize>,
    /// Tokens of the target corpus it trained on (`D_F` of a fine-tuned run).
    pub tokens: f64,
    /// Final validation loss on the target corpus.
    pub loss: f64,
    /// Parameters that trained (a fine-tuned run).
    pub trainable_params: Option<u64>,
    /// Bytes it must keep: the adapters of a LoRA run, else the weights.
    pub kept_bytes: Option<u64>,
    /// Peak resident memory of its process.
    pub peak_rss_bytes: Option<u64>,
}

/// The from-scratch loss against data of one size (seeds averaged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScratchCurve {
    /// Size name.
    pub size: String,
    /// N.
    pub n: f64,
    /// `(D, mean loss)`, ascending D.
    pub points: Vec<(f64, f64)>,
}

/// One fine-tuned cell: a size, a method and an amount of fine-tuning data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferCell {
    /// Size name.
    pub size: String,
    /// N.
    pub n: f64,
    /// Method.
    pub method: String,
    /// The rank, of a LoRA cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_rank: Option<usize>,
    /// Fine-tuning data.
    pub d_f: f64,
    /// Mean fine-tuned loss over seeds.
    pub loss: f64,
    /// Seeds averaged.
    pub seeds: usize,
    /// Mean from-scratch loss on the same data, if that was trained.
    pub scratch_loss: Option<f64>,
    /// The effective data transferred, when the from-scratch curve gives it.
    pub transferred: Option<Transferred>,
    /// Why there is no `D_T`.
    pub no_transfer: Option<String>,
    /// Training from scratch on the same data did at least as well: pre-training did not
    /// help here.
    pub overtaken: bool,
}

/// One method at one size: its quality across `D_F` and its cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSummary {
    /// Method.
    pub method: String,
    /// Size name.
    pub size: String,
    /// N.
    pub n: f64,
    /// `(D_F, mean loss)`, ascending.
    pub losses: Vec<(f64, f64)>,
    /// Parameters that trained.
    pub trainable_params: Option<u64>,
    /// Bytes kept per fine-tuned model (adapters alone for LoRA).
    pub kept_bytes: Option<u64>,
    /// Largest peak resident memory of its runs.
    pub peak_rss_bytes: Option<u64>,
    /// The least `D_F` at which training from scratch did at least as well.
    pub overtaken_at: Option<f64>,
}

/// The laws of one method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodLaws {
    /// Method.
    pub method: String,
    /// `D_T = k·D_F^α·N^β` over its cells with `D_T > 0`.
    pub transfer: Option<TransferLaw>,
    /// Why that law is missing.
    pub transfer_missing: Option<String>,
    /// `L = A·N^(−α)·D_F^(−β) + E` over its cells.
    pub multiplicative: Option<MultiplicativeLaw>,
    /// Why that law is missing.
    pub multiplicative_missing: Option<String>,
}

/// Zhang et al. 2024's law against the LoRA rank at one size: `L = A·r^(−α)·D_F^(−β) + E`
/// over the cells of every rank and `D_F` (a study of several ranks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankLaw {
    /// Size name.
    pub size: String,
    /// N.
    pub n: f64,
    /// The ranks fitted, ascending.
    pub ranks: Vec<usize>,
    /// The law, X = r.
    pub law: Option<MultiplicativeLaw>,
    /// Why it is missing.
    pub missing: Option<String>,
}

/// A transfer study's analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferAnalysis {
    /// The from-scratch curves, one per size, smallest first.
    pub scratch: Vec<ScratchCurve>,
    /// The fine-tuned cells, by method, size and D_F.
    pub cells: Vec<TransferCell>,
    /// Each method at each size.
    pub methods: Vec<MethodSummary>,
    /// Each method's laws.
    pub laws: Vec<MethodLaws>,
    /// The law against the LoRA rank, per size, when the study has several ranks.
    #[serde(default)]
    pub rank_laws: Vec<RankLaw>,
}

/// Mean of `values`.
fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The distinct values of `key` over `rows`, in first-seen order.
fn distinct<T: PartialEq + Clone>(rows: &[TransferRow], key: impl Fn(&TransferRow) -> T) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for r in rows {
        let k = key(r);
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// Mean loss per amount of data of the rows `keep` selects, ascending data.
fn mean_curve(rows: &[TransferRow], keep: impl Fn(&TransferRow) -> bool) -> Vec<(f64, f64, usize)> {
    let chosen: Vec<&TransferRow> = rows.iter().filter(|r| keep(r)).collect();
    let mut ds: Vec<f64> = chosen.iter().map(|r| r.tokens).collect();
    ds.sort_by(f64::total_cmp);
    ds.dedup();
    ds.into_iter()
        .map(|d| {
            let losses: Vec<f64> = (chosen.iter())
                .filter(|r| r.tokens == d)
                .map(|r| r.loss)
                .collect();
            (d, mean(&losses), losses.len())
        })
        .collect()
}

/// Analyses the target-corpus runs of a transfer study (rows with a finite, positive loss;
/// others, diverged runs, are left out by the caller); the laws' intervals come from
/// `bootstrap` replicates at coverage `level`, seeded by `seed`.
pub fn analyse_transfer(
    rows: &[TransferRow],
    bootstrap: usize,
    level: f64,
    seed: u64,
) -> TransferAnalysis {
    let mut sizes: Vec<(String, f64)> = distinct(rows, |r| (r.size.clone(), r.n));
    sizes.sort_by(|a, b| a.1.total_cmp(&b.1));
    let methods: Vec<String> = distinct(rows, |r| r.method.clone())
        .into_iter()
        .flatten()
        .collect();
    let scratch: Vec<ScratchCurve> = (sizes.iter())
        .map(|(size, n)| ScratchCurve {
            size: size.clone(),
            n: *n,
            points: mean_curve(rows, |r| &r.size == size && r.method.is_none())
                .into_iter()
                .map(|(d, l, _)| (d, l))
                .collect(),
        })
        .collect();
    let mut cells = Vec::new();
    let mut summaries = Vec::new();
    for method in &methods {
        for (curve, (size, n)) in scratch.iter().zip(&sizes) {
            let of_cell = |r: &TransferRow| &r.size == size && r.method.as_ref() == Some(method);
            let points = mean_curve(rows, of_cell);
            if points.is_empty() {
                continue;
            }
            let lora_rank = rows.iter().find(|r| of_cell(r)).and_then(|r| r.lora_rank);
            let mut overtaken_at = None;
            for &(d_f, loss, seeds) in &points {
                let scratch_loss = (curve.points.iter()).find(|p| p.0 == d_f).map(|p| p.1);
                let (transferred, no_transfer) = match effective_data(&curve.points, loss, d_f) {
                    Ok(t) => (Some(t), None),
                    Err(e) => (None, Some(e.to_string())),
                };
                let overtaken = scratch_loss.is_some_and(|s| s <= loss);
                if overtaken && overtaken_at.is_none() {
                    overtaken_at = Some(d_f);
                }
                cells.push(TransferCell {
                    size: size.clone(),
                    n: *n,
                    method: method.clone(),
                    lora_rank,
                    d_f,
                    loss,
                    seeds,
                    scratch_loss,
                    transferred,
                    no_transfer,
                    overtaken,
                });
            }
            let largest = |f: fn(&TransferRow) -> Option<u64>| {
                rows.iter().filter(|r| of_cell(r)).filter_map(f).max()
            };
            summaries.push(MethodSummary {
                method: method.clone(),
                size: size.clone(),
                n: *n,
                losses: points.iter().map(|&(d, l, _)| (d, l)).collect(),
                trainable_params: largest(|r| r.trainable_params),
                kept_bytes: largest(|r| r.kept_bytes),
                peak_rss_bytes: largest(|r| r.peak_rss_bytes),
                overtaken_at,
            });
        }
    }
    let laws = (methods.iter())
        .map(|method| {
            let mine: Vec<&TransferCell> = cells.iter().filter(|c| &c.method == method).collect();
            let transfer_points: Vec<TransferPoint> = (mine.iter())
                .filter_map(|c| {
                    c.transferred.map(|t| TransferPoint {
                        n: c.n,
                        d_f: c.d_f,
                        d_t: t.d_t,
                    })
                })
                .collect();
            let loss_points: Vec<FinetunePoint> = (mine.iter())
                .map(|c| FinetunePoint {
                    x: c.n,
                    d_f: c.d_f,
                    loss: c.loss,
                })
                .collect();
            let (transfer, transfer_missing) =
                split(fit_transfer(&transfer_points, bootstrap, level, seed));
            let (multiplicative, multiplicative_missing) =
                split(fit_multiplicative(&loss_points, bootstrap, level, seed));
            MethodLaws {
                method: method.clone(),
                transfer,
                transfer_missing,
                multiplicative,
                multiplicative_missing,
            }
        })
        .collect();
    let rank_laws = rank_laws(&sizes, &cells, bootstrap, level, seed);
    TransferAnalysis {
        scratch,
        cells,
        methods: summaries,
        laws,
        rank_laws,
    }
}

/// The law against the LoRA rank at each size whose LoRA cells have two ranks or more.
fn rank_laws(
    sizes: &[(String, f64)],
    cells: &[TransferCell],
    bootstrap: usize,
    level: f64,
    seed: u64,
) -> Vec<RankLaw> {
    (sizes.iter())
        .filter_map(|(size, n)| {
            let lora: Vec<(usize, &TransferCell)> = (cells.iter())
                .filter(|c| &c.size == size)
                .filter_map(|c| c.lora_rank.map(|r| (r, c)))
                .collect();
            let mut ranks: Vec<usize> = lora.iter().map(|&(r, _)| r).collect();
            ranks.sort_unstable();
            ranks.dedup();
            if ranks.len() < 2 {
                return None;
            }
            let points: Vec<FinetunePoint> = (lora.iter())
                .map(|&(r, c)| FinetunePoint {
                    x: r as f64,
                    d_f: c.d_f,
                    loss: c.loss,
                })
                .collect();
            let (law, missing) = split(fit_multiplicative(&points, bootstrap, level, seed));
            Some(RankLaw {
                size: size.clone(),
                n: *n,
                ranks,
                law,
                missing,
            })
        })
        .collect()
}

/// A fit, or why it is missing.
fn split<T>(fit: Result<T, crate::AnalysisError>) -> (Option<T>, Option<String>) {
    match fit {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A study made from known curves: from scratch L = 1 + 40·D^(-0.3) at every size; a
    /// fine-tuned model of size N reaches the loss of D_F + D_T from-scratch tokens with
    /// D_T = 50·D_F^0.2·N^0.4, except the `probe`, which is no better than scratch on 1e5
    /// tokens whatever D_F.
    fn rows() -> Vec<TransferRow> {
        let scratch = |d: f64| 1.0 + 40.0 * d.powf(-0.3);
        let mut rows = Vec::new();
        let row = |size: &str, n: f64, method: Option<&str>, tokens: f64, loss: f64| TransferRow {
            size: size.into(),
            n,
            method: method.map(str::to_string),
            lora_rank: None,
            tokens,
            loss,
            trainable_params: method.map(|m| if m == "full" { n as u64 } else { 10 }),
            kept_bytes: method.map(|_| 400),
            peak_rss_bytes: method.map(|_| 1 << 20),
        };
        for (size, n) in [("s", 1e4), ("m", 1e5), ("l", 1e6)] {
            for d in [1e3, 1e4, 1e5, 1e6, 1e7, 1e8] {
                rows.push(row(size, n, None, d, scratch(d)));
            }
            for d_f in [1e3, 1e4, 1e5, 1e6] {
                let d_t = 50.0 * f64::powf(d_f, 0.2) * f64::powf(n, 0.4);
                rows.push(row(size, n, Some("full"), d_f, scratch(d_f + d_t)));
                rows.push(row(size, n, Some("probe"), d_f, scratch(1e5)));
            }
        }
        rows
    }

    #[test]
    fn the_cells_give_back_the_transfer_they_were_made_with() {
        let a = analyse_transfer(&rows(), 0, 0.95, 0);
        assert_eq!(a.scratch.len(), 3);
        assert_eq!(a.scratch[0].points.len(), 6);
        assert_eq!(a.cells.len(), 2 * 3 * 4);
        for c in a.cells.iter().filter(|c| c.method == "full") {
            let want = 50.0 * c.d_f.powf(0.2) * c.n.powf(0.4);
            let t = c.transferred.unwrap();
            // The log interpolation of a bending curve runs high by at most ~15% (see
            // `effective_data`); D_T by no more than that share of D_E.
            assert!((t.d_e / (c.d_f + want) - 1.0).abs() < 0.16, "{c:?}");
            assert!(!c.overtaken && c.scratch_loss.unwrap() > c.loss);
        }
        let full = a.laws.iter().find(|l| l.method == "full").unwrap();
        let law = full.transfer.as_ref().unwrap();
        assert!((law.alpha - 0.2).abs() < 0.05, "{law:?}");
        assert!((law.beta.unwrap() - 0.4).abs() < 0.05, "{law:?}");
        assert!(full.multiplicative.is_some(), "{full:?}");
    }

    #[test]
    fn where_scratch_catches_up_the_cell_says_so() {
        let a = analyse_transfer(&rows(), 0, 0.95, 0);
        for s in a.methods.iter().filter(|s| s.method == "probe") {
            // Equal to scratch at 1e5, worse beyond.
            assert_eq!(s.overtaken_at, Some(1e5), "{s:?}");
            assert_eq!(s.trainable_params, Some(10));
        }
        let probe_1e6 = (a.cells.iter())
            .find(|c| c.method == "probe" && c.d_f == 1e6 && c.size == "m")
            .unwrap();
        assert!(probe_1e6.overtaken);
        assert!(probe_1e6.transferred.unwrap().d_t < 0.0);
        let probe = a.laws.iter().find(|l| l.method == "probe").unwrap();
        // D_T > 0 up to 1e5 (there 0 but for rounding) and negative at 1e6: three points a
        // size fitted, one left out.
        let law = probe.transfer.as_ref().unwrap();
        assert_eq!((law.points, law.dropped), (9, 3), "{law:?}");
    }

    #[test]
    fn seeds_are_averaged_and_a_missing_curve_is_said() {
        let mut rows = rows();
        let extra: Vec<TransferRow> = (rows.iter())
            .filter(|r| r.size == "s" && r.method.is_none())
            .map(|r| TransferRow {
                loss: r.loss + 0.2,
                ..r.clone()
            })
            .collect();
        rows.extend(extra);
        let a = analyse_transfer(&rows, 0, 0.95, 0);
        let s = &a.scratch[0];
        assert!((s.points[0].1 - (1.0 + 40.0 * 1e3f64.powf(-0.3) + 0.1)).abs() < 1e-12);
        // A size fine-tuned but never trained from scratch has no D_T, and says why.
        let lonely = TransferRow {
            size: "x".into(),
            n: 1e7,
            method: Some("full".into()),
            lora_rank: None,
            tokens: 1e3,
            loss: 2.0,
            trainable_params: None,
            kept_bytes: None,
            peak_rss_bytes: None,
        };
        let a = analyse_transfer(&[lonely], 0, 0.95, 0);
        assert!(a.cells[0].transferred.is_none());
        assert!(
            a.cells[0]
                .no_transfer
                .as_deref()
                .unwrap()
                .contains("at least two")
        );
        assert!(a.laws[0].transfer_missing.is_some());
    }

    /// LoRA at three ranks whose losses follow `L = 2·r^(−0.3)·D_F^(−0.1) + 0.5` exactly:
    /// the rank law gives its constants back; one rank gives no rank law.
    #[test]
    fn the_rank_law_recovers_its_constants() {
        let mut rows = rows();
        for r in [2usize, 8, 32] {
            for d_f in [1e3, 1e4, 1e5, 1e6] {
                rows.push(TransferRow {
                    size: "m".into(),
                    n: 1e5,
                    method: Some(format!("lora r={r}")),
                    lora_rank: Some(r),
                    tokens: d_f,
                    loss: 2.0 * (r as f64).powf(-0.3) * d_f.powf(-0.1) + 0.5,
                    trainable_params: Some(100 * r as u64),
                    kept_bytes: None,
                    peak_rss_bytes: None,
                });
            }
        }
        let a = analyse_transfer(&rows, 20, 0.95, 0);
        assert_eq!(a.rank_laws.len(), 1);
        let law = &a.rank_laws[0];
        assert_eq!(
            (law.size.as_str(), law.ranks.as_slice()),
            ("m", &[2, 8, 32][..])
        );
        let fit = law.law.as_ref().unwrap();
        assert!((fit.alpha.unwrap() - 0.3).abs() < 0.01, "{fit:?}");
        assert!((fit.beta - 0.1).abs() < 0.01, "{fit:?}");
        assert!((fit.e - 0.5).abs() < 0.01, "{fit:?}");
        assert!((fit.a - 2.0).abs() < 0.05, "{fit:?}");
        let cell = (a.cells.iter()).find(|c| c.method == "lora r=8").unwrap();
        assert_eq!(cell.lora_rank, Some(8));
        // One rank: no rank law.
        let one: Vec<TransferRow> = (rows.iter())
            .filter(|r| r.lora_rank.is_none_or(|k| k == 8))
            .cloned()
            .collect();
        assert!(analyse_transfer(&one, 0, 0.95, 0).rank_laws.is_empty());
    }
}
