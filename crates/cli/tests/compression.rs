//! Compression studies end to end (issue 18): dense models, one-shot compressions, gradual
//! pruning and a distilled student, set against the dense frontier in a report and a table;
//! resumed without redoing anything; bad study files named.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::path::Path;

mod common;
use common::{assert_says, scalelab_line, stderr};

const STUDY: &str = r#"
name = "tinycompress"
seeds = [0, 1]
[model]
ctx_len = 16
[sizes]
shapes = [{ n_layers = 1, d_model = 8, n_heads = 1 }, { n_layers = 1, d_model = 16, n_heads = 2 }, { n_layers = 2, d_model = 16, n_heads = 2 }]
[train]
batch_size = 4
eval_tokens = 512
[dense]
tokens = 6144
[compress]
one_shot = ["magnitude", "2:4", "int8-channel"]
sparsities = [0.5]
gradual = true
shared = true
students = ["L1-d8-h1"]
penalty = "int4-channel"
penalty_tokens = [3072]
"#;

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The whole study: every planned run recorded; each student's identity names the teacher
/// it waited for (the dense model of the compressed size and its own seed); each one-shot
/// model scored on its parent's own validation sample ("before" is the parent's final loss);
/// the table holds the three dense sizes and every method with its place on each axis, the
/// gradual model's non-zero count the one its record gives; the report has its verdict and
/// figures; and running the study again trains and compresses nothing more.
#[test]
fn a_compression_study_sets_every_method_against_the_dense_frontier() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    std::fs::write(cwd.join("c.toml"), STUDY).unwrap();
    let out = scalelab_line("study run c.toml --dir st", cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = scalelab_line("study plan c.toml --dir st --json", cwd);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let runs = plan["runs"].as_array().unwrap();
    // Per seed: 3 dense, 1 gradual, 1 shared, 1 penalty budget, 1 student.
    assert_eq!(runs.len(), 14);
    let record = |id: &str| read_json(&cwd.join("st/runs").join(id).join("record.json"));
    for r in runs {
        let id = r["run_id"].as_str().unwrap();
        let rec = record(id);
        assert_eq!(rec["status"]["status"], "completed", "{id}");
        if r["role"] == "student" {
            let teacher = r["after"].as_str().unwrap();
            assert_eq!(rec["config"]["train"]["distill"]["teacher"], teacher);
            let t = runs.iter().find(|t| t["run_id"] == teacher).unwrap();
            assert_eq!(
                (t["size"].as_str(), &t["role"]),
                (Some("L2-d16-h2"), &"dense".into())
            );
            assert_eq!(t["seed"], r["seed"]);
        }
    }
    // One-shot: 3 methods on the compressed size plus the penalty's int4 on each dense run.
    let one_shot = plan["one_shot"].as_array().unwrap();
    assert_eq!(one_shot.len(), 2 * (3 + 4));
    for o in one_shot {
        let id = o["run_id"].as_str().unwrap();
        let dir = cwd
            .join("st/runs")
            .join(id)
            .join("compressed")
            .join(o["method"].as_str().unwrap());
        let c = read_json(&dir.join("compression.json"));
        let before = c["val_loss_before"].as_f64().unwrap();
        let final_loss = record(id)["final_val_loss"].as_f64().unwrap();
        assert!(
            (before - final_loss).abs() < 1e-4,
            "{id}: {before} vs {final_loss}"
        );
    }
    let table = std::fs::read_to_string(cwd.join("st/compression.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(table.as_bytes());
    let header = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let methods: Vec<(&str, &str)> = rows.iter().map(|r| (&r[0], &r[1])).collect();
    for m in [
        ("dense", ""),
        ("magnitude", "0.5"),
        ("2:4", ""),
        ("int8-channel", ""),
        ("gradual", "0.5"),
        ("shared", ""),
        ("distilled", ""),
    ] {
        assert!(methods.contains(&m), "{m:?} missing from {methods:?}");
    }
    assert_eq!(methods.iter().filter(|m| m.0 == "dense").count(), 3);
    for r in rows.iter().filter(|r| &r[0] != "dense") {
        for axis in ["nonzero", "bytes", "inference_flops"] {
            let verdict = &r[col(&format!("{axis}_verdict"))];
            assert!(
                ["beats", "worse", "within noise"].contains(&verdict),
                "{r:?}"
            );
            let delta: f64 = r[col(&format!("{axis}_delta"))].parse().unwrap();
            assert!(delta.is_finite());
        }
    }
    // The gradual model's non-zero parameters: the mean of its records' counts.
    let gradual_nonzero: f64 = runs
        .iter()
        .filter(|r| r["role"] == "gradual0.5")
        .map(|r| {
            record(r["run_id"].as_str().unwrap())["sparsity"]["nonzero"]["non_embedding"]
                .as_f64()
                .unwrap()
        })
        .sum::<f64>()
        / 2.0;
    let row = rows.iter().find(|r| &r[0] == "gradual").unwrap();
    assert_eq!(row[col("nonzero")].parse::<f64>().unwrap(), gradual_nonzero);
    // The shared model: one block's parameters, the dense model's inference FLOPs.
    let shared = rows.iter().find(|r| &r[0] == "shared").unwrap();
    let dense_big = rows
        .iter()
        .find(|r| &r[0] == "dense" && &r[2] == "L2-d16-h2")
        .unwrap();
    let n = |r: &csv::StringRecord, c: &str| r[col(c)].parse::<f64>().unwrap();
    assert!(n(shared, "nonzero") < 0.6 * n(dense_big, "nonzero"));
    assert_eq!(
        n(shared, "inference_flops"),
        n(dense_big, "inference_flops")
    );
    let report = std::fs::read_to_string(cwd.join("st/report.html")).unwrap();
    for part in [
        "Verdict",
        "dense from scratch",
        "loss against bytes of weights",
        "Precision penalty",
    ] {
        assert!(report.contains(part), "{part}");
    }
    // Again: nothing trains, nothing is compressed again.
    let stamp = |o: &serde_json::Value| {
        let id = o["run_id"].as_str().unwrap();
        std::fs::metadata(
            cwd.join("st/runs")
                .join(id)
                .join("compressed")
                .join(o["method"].as_str().unwrap())
                .join("compression.json"),
        )
        .unwrap()
        .modified()
        .unwrap()
    };
    let before: Vec<_> = one_shot.iter().map(stamp).collect();
    let out = scalelab_line("study run c.toml --dir st", cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_says(&out, &["0 completed now", "14 were already done"]);
    assert!(!stderr(&out).contains("one-shot compressions in"));
    let after: Vec<_> = one_shot.iter().map(stamp).collect();
    assert_eq!(before, after);
}

/// A study file that names what is not there is refused with the key, the value and the fix.
#[test]
fn a_bad_compression_study_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let write = |from: &str, to: &str| {
        std::fs::write(cwd.join("c.toml"), STUDY.replace(from, to)).unwrap();
        scalelab_line("study plan c.toml --dir st", cwd)
    };
    let out = write("students = [\"L1-d8-h1\"]", "students = [\"L9-d8-h1\"]");
    assert_says(
        &out,
        &[
            "compress.students",
            "L9-d8-h1",
            "L1-d8-h1, L1-d16-h2, L2-d16-h2",
        ],
    );
    let out = write("\"int8-channel\"", "\"int3-channel\"");
    assert_says(&out, &["compress.one_shot", "int3-channel", "int4-block32"]);
    let out = write("sparsities = [0.5]", "sparsities = [1.5]");
    assert_says(&out, &["compress.sparsities", "1.5"]);
    let out = write("tokens = 6144", "tokens = 0");
    assert_says(&out, &["dense.tokens", "0"]);
}
