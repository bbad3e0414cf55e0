//! The scaling report of a small synthetic study, compared with the page kept in
//! `tests/snapshots/scaling.html.snap` (as uv's snapshot tests do; it is HTML), with wall times blanked: any change to what
//! the page says or draws shows up here as a diff to review. After an intended change,
//! rewrite the snapshot with `UPDATE_SNAPSHOTS=1 cargo test --workspace --test snapshot` and
//! review the diff.

use scalelab_analysis::study::analyse_study;
use scalelab_report::{ReportInput, render_html};
use scalelab_spec::{AnalysisSpec, RunKind, RunState, StoredCurvePoint, StoredRun};

/// Five sizes at three token budgets on L = 1.7 + 400/N^0.34 + 410/D^0.28 (Hoffmann et al.
/// 2022's constants), each with a three-point curve; the largest size's largest run failed.
fn study() -> (Vec<StoredRun>, Vec<Vec<StoredCurvePoint>>) {
    let loss = |n: f64, d: f64| 1.69 + 406.4 / n.powf(0.34) + 410.7 / d.powf(0.28);
    let mut runs = Vec::new();
    let mut curves = Vec::new();
    for (i, n) in [2e4f64, 6e4, 2e5, 6e5, 2e6].into_iter().enumerate() {
        for tokens in [1_000_000u64, 3_000_000, 10_000_000] {
            let flops_per_token = 6.0 * n;
            let failed = i == 4 && tokens == 10_000_000;
            runs.push(StoredRun {
                run_id: format!("run-{i}-{tokens}"),
                kind: RunKind::Lm,
                size: format!("size{i}"),
                seed: 0,
                n_layers: i as u64 + 1,
                d_model: 16 << i,
                n_heads: 1,
                params_total: (1.1 * n) as u64,
                params_non_embedding: n as u64,
                n,
                param_convention: "non_embedding".into(),
                flops_per_token,
                planned_tokens: tokens,
                planned_flops: tokens as f64 * flops_per_token,
                budget_kind: "tokens".into(),
                budget_value: tokens as f64,
                status: if failed {
                    RunState::Failed
                } else {
                    RunState::Completed
                },
                tokens_seen: if failed { 0 } else { tokens },
                train_flops: if failed {
                    0.0
                } else {
                    tokens as f64 * flops_per_token
                },
                final_val_loss: (!failed).then(|| loss(n, tokens as f64)),
                final_val_bpb: (!failed).then(|| loss(n, tokens as f64) / 2.0),
                wall_secs: 7777.0,
                message: failed.then(|| "training process ended without a record".into()),
                unique_train_tokens: Some(50_000_000),
            });
            curves.push(if failed {
                Vec::new()
            } else {
                [tokens / 4, tokens / 2, tokens]
                    .iter()
                    .map(|&t| StoredCurvePoint {
                        tokens: t,
                        flops: t as f64 * flops_per_token,
                        val_loss: loss(n, t as f64),
                        val_bpb: loss(n, t as f64) / 2.0,
                        train_loss: Some(loss(n, t as f64) + 0.01),
                    })
                    .collect()
            });
        }
    }
    (runs, curves)
}

/// Wall times vary from run to run of a real study; here they are blanked wherever the page
/// prints them (the summary's total and the runs table's column).
fn blank_wall_times(html: &str) -> String {
    html.replace("116655 s of run time", "[wall] s of run time")
        .replace("<td>7777</td>", "<td>[wall]</td>")
}

#[test]
fn the_scaling_report_matches_its_snapshot() {
    let (runs, curves) = study();
    let settings = AnalysisSpec {
        bootstrap: 0,
        ..AnalysisSpec::default()
    };
    let analysis = analyse_study(&runs, &curves, &settings);
    let input = ReportInput {
        name: "snapshot".into(),
        description: "A synthetic study on the Chinchilla law.".into(),
        spec_toml: "name = \"snapshot\"\n".into(),
        command: "scalelab study report studies/snapshot".into(),
        runs,
        curves,
        analysis,
        flops_convention: "6·N_matmul + 12·L·T·d".into(),
        abilities: None,
    };
    let html = blank_wall_times(&render_html(&input).unwrap());
    let path = std::path::Path::new(&manifest_dir()).join("tests/snapshots/scaling.html.snap");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &html).unwrap();
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\nhint: write it with UPDATE_SNAPSHOTS=1 and review it",
            path.display()
        )
    });
    if html != kept {
        let line = html
            .lines()
            .zip(kept.lines())
            .position(|(a, b)| a != b)
            .map_or(html.lines().count().min(kept.lines().count()), |i| i);
        panic!(
            "the report differs from {} from line {} on:\n  now:  {}\n  kept: {}\nhint: if the change is intended, rerun with UPDATE_SNAPSHOTS=1 and review the diff",
            path.display(),
            line + 1,
            html.lines().nth(line).unwrap_or(""),
            kept.lines().nth(line).unwrap_or("")
        );
    }
    // The page says what the study is and what was fitted.
    assert!(html.contains("snapshot") && html.contains("<svg"));
    assert_eq!(
        html.matches("[wall]").count(),
        16,
        "the total and the 15 runs' wall times were found and blanked"
    );
}

/// The package's directory, read when the test runs (cargo sets it), not when it was
/// compiled: a test binary reused from a build of another checkout must read this one's
/// files.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|e| panic!("CARGO_MANIFEST_DIR: {e}"))
}
