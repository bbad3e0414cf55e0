//! `scalelab fit` (a scaling law from a CSV table) and `scalelab plan` (compute-optimal
//! allocation for a FLOP budget).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use scalelab_analysis::optimal::{Chinchilla, plan_allocation};
use scalelab_analysis::transfer::{TransferPoint, fit_transfer};
use scalelab_analysis::{
    FitOptions, LawFit, Point, ResidualScale, SparsePoint, fit_chinchilla, fit_kaplan, fit_power,
    fit_sparsity,
};

use crate::args::{FitArgs, LawArg, PlanArgs, ResidualArg};
use crate::human;

/// The named columns of a CSV file, as numbers, with row numbers in errors; every value must
/// be positive but in the columns named by `signed` (finite there).
fn read_columns(path: &Path, names: &[&str], signed: &[&str]) -> Result<Vec<Vec<f64>>> {
    let (mut reader, _, index) = crate::open_csv(
        path,
        names,
        "name the columns N, D and loss (N, D_F and D_T for --law transfer; S, N, D and loss for --law sparsity), or choose others with --n-col, --d-col, --loss-col (--x for --law power, --s-col for --law sparsity)",
    )?;
    let mut columns = vec![Vec::new(); names.len()];
    for (row, record) in reader.records().enumerate() {
        let line = row + 2; // the header is line 1
        let record =
            record.with_context(|| format!("{}: line {line} is not valid CSV", path.display()))?;
        for (k, &i) in index.iter().enumerate() {
            let raw = record.get(i).unwrap_or("").trim();
            let value: f64 = raw.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{}: line {line}, column `{}`: `{raw}` is not a number\nhint: fix or delete that row",
                    path.display(),
                    names[k]
                )
            })?;
            if !value.is_finite() {
                bail!(
                    "{}: line {line}, column `{}`: {raw} is not a finite number\nhint: fix or delete that row",
                    path.display(),
                    names[k]
                );
            }
            if value <= 0.0 && !signed.contains(&names[k]) {
                bail!(
                    "{}: line {line}, column `{}`: {raw} must be a finite number > 0\nhint: parameters, tokens, FLOPs and losses are positive; fix or delete that row",
                    path.display(),
                    names[k]
                );
            }
            columns[k].push(value);
        }
    }
    Ok(columns)
}

/// The fit as JSON: constants at the top level, intervals under `intervals`.
pub(crate) fn fit_json(fit: &LawFit) -> serde_json::Value {
    let mut v = serde_json::Map::new();
    v.insert(
        "law".into(),
        serde_json::to_value(fit.law).unwrap_or_default(),
    );
    if !fit.axis.is_empty() {
        v.insert("axis".into(), fit.axis.clone().into());
    }
    let mut intervals = serde_json::Map::new();
    for c in &fit.constants {
        v.insert(c.name.clone(), c.value.into());
        intervals.insert(
            c.name.clone(),
            c.interval
                .map_or(serde_json::Value::Null, |i| serde_json::json!([i.lo, i.hi])),
        );
    }
    v.insert("intervals".into(), intervals.into());
    v.insert("objective".into(), fit.objective.into());
    v.insert("gradient_norm".into(), fit.gradient_norm.into());
    v.insert("points".into(), fit.points.into());
    v.insert("bootstrap_used".into(), fit.bootstrap_used.into());
    v.insert("huber_delta".into(), fit.huber_delta.into());
    v.insert("cautions".into(), fit.cautions().into());
    v.into()
}

pub fn fit(args: FitArgs) -> Result<ExitCode> {
    if !(args.level > 0.0 && args.level < 1.0) {
        bail!(
            "invalid value for `--level`: {}\nhint: give a coverage between 0 and 1, e.g. 0.95",
            args.level
        );
    }
    let opts = FitOptions {
        huber_delta: args.huber_delta,
        bootstrap: args.bootstrap,
        level: args.level,
        seed: args.seed,
        residuals: match args.residuals {
            ResidualArg::Log => ResidualScale::Log,
            ResidualArg::Linear => ResidualScale::Linear,
        },
        ..FitOptions::default()
    };
    let fit = match args.law {
        LawArg::Transfer => return fit_transfer_law(&args),
        LawArg::Sparsity => {
            let cols = read_columns(
                &args.input,
                &[
                    args.s_col.as_str(),
                    args.n_col.as_str(),
                    args.d_col.as_str(),
                    args.loss_col.as_str(),
                ],
                &[args.s_col.as_str()],
            )?;
            let points: Vec<SparsePoint> = (0..cols[0].len())
                .map(|i| SparsePoint {
                    s: cols[0][i],
                    n: cols[1][i],
                    d: cols[2][i],
                    loss: cols[3][i],
                })
                .collect();
            if let Some((i, p)) = points
                .iter()
                .enumerate()
                .find(|(_, p)| !(0.0..1.0).contains(&p.s))
            {
                bail!(
                    "{}: line {}, column `{}`: {} is not a sparsity\nhint: S is the share of zero weights, from 0 (dense) to below 1",
                    args.input.display(),
                    i + 2,
                    args.s_col,
                    p.s
                );
            }
            fit_sparsity(&points, &opts)
        }
        LawArg::Power => {
            let cols = read_columns(&args.input, &[args.x.as_str(), args.loss_col.as_str()], &[])?;
            fit_power(&args.x, &cols[0], &cols[1], &opts)
        }
        LawArg::Chinchilla | LawArg::Kaplan => {
            let cols = read_columns(
                &args.input,
                &[
                    args.n_col.as_str(),
                    args.d_col.as_str(),
                    args.loss_col.as_str(),
                ],
                &[],
            )?;
            let points: Vec<Point> = (0..cols[0].len())
                .map(|i| Point {
                    n: cols[0][i],
                    d: cols[1][i],
                    loss: cols[2][i],
                })
                .collect();
            if matches!(args.law, LawArg::Chinchilla) {
                fit_chinchilla(&points, &opts)
            } else {
                fit_kaplan(&points, &opts)
            }
        }
    }
    .map_err(|e| anyhow::anyhow!("{}: {e}", args.input.display()))?;
    if args.json {
        let mut json = fit_json(&fit);
        json["residuals"] = serde_json::to_value(opts.residuals)?;
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}   ({} points)", fit.law.formula(), fit.points);
    println!(
        "{:<8} {:>14}   {:.0}% bootstrap interval ({} replicates)",
        "",
        "value",
        args.level * 100.0,
        fit.bootstrap_used
    );
    for c in &fit.constants {
        println!(
            "{:<8} {:>14.6}   {}",
            c.name,
            c.value,
            c.interval
                .map_or("-".into(), |i| format!("[{:.6}, {:.6}]", i.lo, i.hi))
        );
    }
    println!(
        "objective (Huber, delta {}) {:.4e}; gradient norm at the optimum {:.1e}",
        fit.huber_delta, fit.objective, fit.gradient_norm
    );
    for c in fit.cautions() {
        eprintln!("caution: {c}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `scalelab fit --law transfer`: `D_T = k·D_F^α·N^β` from a table of N, D_F and D_T.
fn fit_transfer_law(args: &FitArgs) -> Result<ExitCode> {
    let (n, d_f, d_t) = ("N", "D_F", "D_T");
    let cols = read_columns(&args.input, &[n, d_f, d_t], &[d_t])?;
    let points: Vec<TransferPoint> = (0..cols[0].len())
        .map(|i| TransferPoint {
            n: cols[0][i],
            d_f: cols[1][i],
            d_t: cols[2][i],
        })
        .collect();
    let law = fit_transfer(&points, args.bootstrap, args.level, args.seed)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.input.display()))?;
    if args.json {
        let pair = |i: Option<scalelab_analysis::Interval>| i.map(|i| [i.lo, i.hi]);
        let value = serde_json::json!({
            "law": "transfer", "formula": "D_T = k * D_F^alpha * N^beta",
            "k": law.k, "alpha": law.alpha, "beta": law.beta,
            "intervals": {
                "k": pair(law.intervals.k), "alpha": pair(law.intervals.alpha),
                "beta": pair(law.intervals.beta),
            },
            "points": law.points, "dropped": law.dropped, "r2": law.r2,
            "bootstrap_used": law.bootstrap_used, "level": args.level,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "D_T = k * D_F^alpha * N^beta   ({} points; R^2 {:.4} in log space)",
        law.points, law.r2
    );
    println!(
        "{:<8} {:>14}   {:.0}% bootstrap interval ({} replicates)",
        "",
        "value",
        args.level * 100.0,
        law.bootstrap_used
    );
    let row = |name: &str, value: Option<f64>, i: Option<scalelab_analysis::Interval>| {
        let value = value.map_or("-".into(), |v| format!("{v:.6}"));
        let interval = i.map_or("-".into(), |i| format!("[{:.6}, {:.6}]", i.lo, i.hi));
        println!("{name:<8} {value:>14}   {interval}");
    };
    row("k", Some(law.k), law.intervals.k);
    row("alpha", Some(law.alpha), law.intervals.alpha);
    row("beta", law.beta, law.intervals.beta);
    if law.beta.is_none() {
        eprintln!("note: every row has the same N, so beta is not fitted (k includes N^beta)");
    }
    if law.dropped > 0 {
        eprintln!(
            "note: {} rows with D_T <= 0 (no transfer) are left out: a power law cannot hold them",
            law.dropped
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn plan(args: PlanArgs) -> Result<ExitCode> {
    if let Some(study) = &args.study {
        // The study's own law, its FLOP model and bootstrap replicates: every number with its
        // interval.
        let dir = crate::study::study_dir(study)?;
        let law = crate::study::law_of(&dir)?;
        let plans = args
            .flops
            .iter()
            .map(|&c| plan_allocation(&law.fit, &law.flop_model, c, law.unique_tokens, law.level))
            .collect::<Result<Vec<_>, _>>()?;
        if args.json {
            let value = serde_json::json!({
                "source": law.source, "law": Chinchilla::from_fit(&law.fit)?,
                "flop_model": law.flop_model, "largest_budget": law.largest_budget,
                "unique_tokens": law.unique_tokens, "cautions": law.fit.cautions(),
                "allocations": plans,
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            crate::study::print_plans(&law, &plans);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (law, source) = {
        let p = Chinchilla::PAPER;
        let given = [args.e, args.a, args.b, args.alpha, args.beta]
            .iter()
            .any(Option::is_some);
        (
            Chinchilla {
                e: args.e.unwrap_or(p.e),
                a: args.a.unwrap_or(p.a),
                b: args.b.unwrap_or(p.b),
                alpha: args.alpha.unwrap_or(p.alpha),
                beta: args.beta.unwrap_or(p.beta),
            },
            if given {
                "the constants given (Hoffmann et al. 2022 for any not given)".to_string()
            } else {
                "Hoffmann et al. 2022, eq. 10 (E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)"
                    .to_string()
            },
        )
    };
    let allocations = args
        .flops
        .iter()
        .map(|&c| law.optimal(c))
        .collect::<Result<Vec<_>, _>>()?;
    if args.json {
        let value = serde_json::json!({
            "law": law, "source": source, "allocations": allocations,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("law: {source}");
    println!(
        "{:>12} {:>12} {:>12} {:>16} {:>14}",
        "FLOPs", "N_opt", "D_opt", "tokens/param", "pred. loss"
    );
    for x in &allocations {
        println!(
            "{:>12.3e} {:>12} {:>12} {:>16.2} {:>14.4}",
            x.flops,
            human(x.n_opt),
            human(x.d_opt),
            x.tokens_per_param,
            x.loss
        );
    }
    Ok(ExitCode::SUCCESS)
}
