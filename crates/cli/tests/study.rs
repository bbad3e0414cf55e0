//! Studies end to end: plan, run, a `kill -9` of the study process mid-run and its resumption
//! with no lost or duplicated runs, status, export, report; and `fit`/`plan` on CSV input.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{assert_says, scalelab, scalelab_line, stderr};

/// Four tiny GPTs on the embedded corpus: each trains in a second or two.
const TINY: &str = r#"
name = "tiny"
[model]
ctx_len = 16
aspect_ratio = 16
head_dim = 8
[sizes]
depths = [1, 2]
shapes = [{ n_layers = 1, d_model = 8, n_heads = 1 }, { n_layers = 2, d_model = 24, n_heads = 3 }]
[budget]
tokens = [6144]
[train]
batch_size = 4
eval_every_tokens = 2048
eval_tokens = 512
[analysis]
bootstrap = 20
"#;

fn completed_ids(dir: &Path) -> Vec<String> {
    let out = scalelab(&["study", "status", dir.to_str().unwrap(), "--json"], dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    runs.iter()
        .filter(|r| r["status"] == "completed")
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect()
}

/// Training processes of the study in `dir`: those started with `--exit-with-parent` whose
/// `--run-dir` (relative to their working directory, as the study gives it) lies in `dir`.
fn training_children_of(dir: &Path) -> usize {
    training_pids(dir).len()
}

/// Plans the study `file` in `cwd` (into `cwd/study`), runs it one run at a time, kills the
/// study process with SIGKILL once its first run is recorded, checks the orphaned training
/// process exits, and reruns it: every planned run completes exactly once, finished runs are
/// not trained again, and a third invocation trains nothing.
fn killed_study_resumes(cwd: &Path, file: &str, runs: usize) {
    let dir = cwd.join("study");
    let out = scalelab_line(&format!("study plan {file} --dir study --json"), cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let planned: Vec<String> = plan["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(planned.len(), runs);

    // Start the study one run at a time and kill it once the first run is recorded.
    let mut child = Command::new(env!("CARGO_BIN_EXE_scalelab"))
        .args(["study", "run", file, "--dir", "study", "--jobs", "1"])
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no run finished"
        );
        if dir.join("study.sqlite").is_file() && !completed_ids(&dir).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let first = completed_ids(&dir);
    assert!(!first.is_empty() && first.len() < runs, "{first:?}");
    let first_record =
        std::fs::read_to_string(dir.join("runs").join(&first[0]).join("record.json")).unwrap();

    // The orphaned training process notices its parent is gone and exits.
    let start = Instant::now();
    while training_children_of(&dir) > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "orphan still training"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Rerun: everything completes, finished runs are not retrained.
    let out = scalelab_line(&format!("study run {file} --dir study"), cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{} already done", first.len())),
        "{err}"
    );
    let mut done = completed_ids(&dir);
    done.sort();
    let mut want = planned.clone();
    want.sort();
    assert_eq!(done, want, "every planned run completed exactly once");
    let again =
        std::fs::read_to_string(dir.join("runs").join(&first[0]).join("record.json")).unwrap();
    assert_eq!(first_record, again, "a finished run was trained again");

    // A third invocation trains nothing.
    let out = scalelab_line(&format!("study run {file} --dir study --no-report"), cwd);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("{runs} already done")), "{err}");
    assert!(!err.contains("start "), "{err}");
}

#[test]
fn a_study_killed_with_sigkill_resumes_without_losing_or_duplicating_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    std::fs::write(cwd.join("tiny.toml"), TINY).unwrap();
    let dir = cwd.join("study");
    killed_study_resumes(cwd, "tiny.toml", 4);

    // The report and the exports exist and say what they hold.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Scaling study: tiny"));
    assert!(html.contains("final validation loss against parameters"));
    let out = scalelab(&["study", "export", "study"], cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(dir.join("runs.csv")).unwrap();
    assert!(csv.starts_with("schema_version,run_id,"));
    assert_eq!(csv.lines().count(), 5);

    // The exported table feeds `scalelab fit`.
    let out = scalelab_line(
        "fit --input study/runs.csv --law power --bootstrap 0 --json",
        cwd,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let fit: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(fit["alpha"].as_f64().unwrap().is_finite());
}

#[test]
fn bad_study_files_and_csvs_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    std::fs::write(
        cwd.join("bad.toml"),
        TINY.replace("tokens = [6144]", "tokens = [0]"),
    )
    .unwrap();
    let out = scalelab(&["study", "plan", "bad.toml"], cwd);
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out, &["bad.toml", "budget.tokens", "hint:"]);

    std::fs::write(cwd.join("typo.toml"), TINY.replace("depths", "depht")).unwrap();
    let out = scalelab(&["study", "plan", "typo.toml"], cwd);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("depht"), "{}", stderr(&out));

    let out = scalelab(&["study", "status", "nowhere"], cwd);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a study directory"));

    std::fs::write(cwd.join("cols.csv"), "params,tokens,loss\n1e6,1e9,3.0\n").unwrap();
    let out = scalelab(&["fit", "--input", "cols.csv"], cwd);
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out, &["no column `N`", "params, tokens, loss"]);

    std::fs::write(cwd.join("neg.csv"), "N,D,loss\n1e6,1e9,3.0\n2e6,1e9,-2.5\n").unwrap();
    let out = scalelab(&["fit", "--input", "neg.csv"], cwd);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 3, column `loss`"),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        cwd.join("few.csv"),
        "N,D,loss\n1e6,1e9,3.0\n2e6,2e9,2.8\n4e6,4e9,2.6\n",
    )
    .unwrap();
    let out = scalelab(&["fit", "--input", "few.csv"], cwd);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("need at least 6 points"),
        "{}",
        stderr(&out)
    );
}

/// `scalelab plan` with the paper's constants reproduces the hand computation in
/// crates/analysis/src/optimal.rs (N_opt = 1.824e9, D/N = 50.08 at 1e21 FLOPs).
#[test]
fn plan_prints_the_compute_optimal_allocation() {
    let tmp = tempfile::tempdir().unwrap();
    let out = scalelab(&["plan", "--flops", "1e21", "--json"], tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let x = &v["allocations"][0];
    assert!((x["n_opt"].as_f64().unwrap() / 1824217696.8955524 - 1.0).abs() < 1e-9);
    assert!((x["tokens_per_param"].as_f64().unwrap() - 50.083586415566465).abs() < 1e-6);
    let out = scalelab(&["plan", "--flops=-5"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("flops"), "{}", stderr(&out));
}

/// Four tiny GPTs learning to copy three letters, evaluated on the task as they train.
const TASK_STUDY: &str = r#"
name = "copy"
[model]
ctx_len = 6
[sizes]
shapes = [
  { n_layers = 1, d_model = 8, n_heads = 1 },
  { n_layers = 1, d_model = 16, n_heads = 2 },
  { n_layers = 2, d_model = 16, n_heads = 2 },
  { n_layers = 2, d_model = 32, n_heads = 4 },
]
[budget]
tokens = [5760]
[task]
name = "copy"
length = 3
test_size = 100
[train]
batch_size = 32
eval_every_tokens = 1920
eval_per_decade = 4
"#;

#[test]
fn task_studies_report_abilities_and_export_for_the_emergence_test() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    std::fs::write(cwd.join("copy.toml"), TASK_STUDY).unwrap();
    let out = scalelab_line("study run copy.toml --dir s", cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let html = std::fs::read_to_string(cwd.join("s/report.html")).unwrap();
    for heading in [
        "Abilities over training",
        "Abilities against model size",
        "Emergence verdicts",
        "over model size N",
        "over training tokens",
        "This study trains on a task",
    ] {
        assert!(html.contains(heading), "the report lacks {heading}");
    }
    let out = scalelab(&["study", "export", "s"], cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    // 4 sizes × 5 metrics, ready for `scalelab emergence`.
    let csv = std::fs::read_to_string(cwd.join("s/emergence_n.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 20, "{csv}");
    let out = scalelab(
        &["emergence", "--input", "s/emergence_n.csv", "--json"],
        cwd,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["task"], "copy");
    assert_eq!(v[0]["metrics"].as_array().unwrap().len(), 5);
    let curves = std::fs::read_to_string(cwd.join("s/task_curves.csv")).unwrap();
    assert!(
        curves
            .lines()
            .any(|l| l.contains(",train,copy,exact_match,"))
    );
    // Every run keeps its test examples' scores beside its record; the export gathers each
    // size's, and their means are the record's.
    let runs: Vec<std::path::PathBuf> = std::fs::read_dir(cwd.join("s/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for run in &runs {
        let examples = std::fs::read_to_string(run.join("task_examples.csv")).unwrap();
        let mut lines = examples.lines();
        assert_eq!(
            lines.next(),
            Some("example,answer_tokens,exact_match,log_prob,correct_tokens")
        );
        let rows: Vec<Vec<String>> = lines
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect();
        assert_eq!(rows.len(), 100);
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("record.json")).unwrap())
                .unwrap();
        let last = record["curve"].as_array().unwrap().last().unwrap()["task_test"].clone();
        let mean = |col: usize, f: &dyn Fn(&str) -> f64| {
            rows.iter().map(|r| f(&r[col])).sum::<f64>() / rows.len() as f64
        };
        let exact = mean(2, &|v| f64::from(u8::from(v == "true")));
        let log_prob = mean(3, &|v| v.parse().unwrap());
        assert!((exact - last["exact_match"].as_f64().unwrap()).abs() < 1e-9);
        assert!((log_prob - last["log_prob"].as_f64().unwrap()).abs() < 1e-6);
    }
    let examples = std::fs::read_to_string(cwd.join("s/emergence_n_examples.csv")).unwrap();
    assert_eq!(examples.lines().count(), 1 + 4 * 100);
    let out = scalelab_line(
        "emergence --input s/emergence_n.csv --per-example s/emergence_n_examples.csv --json",
        cwd,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v[0]["mirage"].is_string(), "{}", v[0]);
}

#[test]
fn a_damaged_stored_study_file_is_named_not_replaced_by_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    std::fs::write(cwd.join("tiny.toml"), TINY).unwrap();
    let out = scalelab_line("study run tiny.toml --dir s --no-report", cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = scalelab(&["study", "report", "s"], cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let db = rusqlite::Connection::open(cwd.join("s/study.sqlite")).unwrap();
    db.execute(
        "UPDATE meta SET value = '[analysis' WHERE key = 'spec_toml'",
        [],
    )
    .unwrap();
    drop(db);
    let out = scalelab(&["study", "report", "s"], cwd);
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out, &["study.sqlite", "does not parse", "hint:"]);
}

#[test]
fn every_example_study_plans() {
    let root = std::path::Path::new(&common::manifest_dir()).join("../..");
    // `study plan` writes the runs' order (plan.json) into the study directory: a
    // temporary one, not the repository's studies/.
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "quickstart",
        "two-budgets",
        "chinchilla-large",
        "grokking",
        "induction",
        "transfer",
    ] {
        let path = root.join("examples").join(format!("{name}.toml"));
        let dir = tmp.path().join(name);
        let out = scalelab(
            &[
                "study",
                "plan",
                &path.to_string_lossy(),
                "--dir",
                &dir.to_string_lossy(),
            ],
            &root,
        );
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let plan = String::from_utf8_lossy(&out.stdout);
        assert!(plan.contains(&format!("study {name} (")), "{name}: {plan}");
    }
}

#[test]
fn a_study_of_recurrent_language_models_runs_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let spec = r#"
name = "lstm-sizes"
seeds = [0]
[model]
family = "lstm"
ctx_len = 32
[sizes]
shapes = [{ n_layers = 1, d_model = 16, n_heads = 1 }, { n_layers = 1, d_model = 32, n_heads = 1 }]
[budget]
tokens = [10240]
[train]
batch_size = 8
lr = 1e-2
eval_every_tokens = 5120
eval_tokens = 2048
"#;
    std::fs::write(cwd.join("lstm.toml"), spec).unwrap();
    let out = scalelab_line("study run lstm.toml --dir s", cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 completed"), "{}", stderr(&out));
    // The plan's parameter counts are the recurrent model's: 256·16 embedding + 16·256 head
    // as the embedding part, 16·4·16 input and hidden weights and 4·16 biases otherwise.
    let out = scalelab(&["study", "export", "s"], cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = std::fs::read_to_string(cwd.join("s/runs.csv")).unwrap();
    let small = 2 * 16 * 4 * 16 + 4 * 16;
    assert!(runs.contains(&format!(",{small},")), "{runs}");
    assert!(cwd.join("s/report.html").is_file());
}

/// A tiny IsoFLOP study: four budgets, a window of tokens per parameter that moves its
/// ladder with the budget.
const TINY_ISOFLOP: &str = r#"
name = "tiny-iso"
param_convention = "total"
[model]
ctx_len = 16
[sizes]
shapes = [
  { n_layers = 1, d_model = 8, n_heads = 1 },
  { n_layers = 1, d_model = 16, n_heads = 2 },
  { n_layers = 2, d_model = 16, n_heads = 2 },
  { n_layers = 2, d_model = 24, n_heads = 3 },
  { n_layers = 2, d_model = 32, n_heads = 4 },
]
[budget]
flops = [1e8, 2e8, 4e8, 8e8]
min_tokens_per_param = 0.05
max_tokens_per_param = 2.0
[train]
batch_size = 4
lr = 1e-2
eval_every_tokens = 1024
eval_tokens = 512
[analysis]
bootstrap = 20
fit_starts = 16
"#;

/// An IsoFLOP study runs, records each run's passes over its data, and `study report
/// --json` gives all three approaches with intervals and cautions, the consistency block,
/// the held-out budget and both parameter conventions; `plan --study` gives every number
/// with an interval; the main command ends with the plan for ten times the largest budget.
#[test]
fn an_isoflop_study_answers_the_compute_optimal_question() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    std::fs::write(cwd.join("iso.toml"), TINY_ISOFLOP).unwrap();
    let out = scalelab_line("study run iso.toml --dir s", cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.contains("compute-optimal plan for 10x the largest budget"),
        "{stdout}"
    );
    assert!(stdout.contains("8.000e9"), "{stdout}");

    let out = scalelab(&["study", "report", "s", "--json"], cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["param_convention"], "total");
    assert_eq!(v["budgets"].as_array().unwrap().len(), 4);
    assert!(v["unique_tokens"].as_f64().unwrap() > 1e6);
    // Runs this small are noise-dominated: an approach the data do not support is null and
    // a note says why (the numbers themselves are tested in crates/analysis).
    let notes = v["notes"].to_string();
    for (approach, name) in [
        ("approach1", "approach 1"),
        ("approach2", "approach 2"),
        ("approach3", "approach 3"),
    ] {
        let x = &v[approach];
        if x.is_null() {
            assert!(
                notes.contains(name),
                "{approach} is null without a note: {notes}"
            );
            continue;
        }
        assert!(x["a"].as_f64().is_some(), "{approach}: {x}");
        assert!(x["intervals"].get("a").is_some(), "{approach}: {x}");
        assert!(x["cautions"].is_array(), "{approach}");
    }
    if !v["approach3"].is_null() {
        for key in ["E", "A", "B", "alpha", "beta", "a", "b"] {
            assert!(v["approach3"][key].as_f64().is_some(), "{key}");
            assert!(v["approach3"]["intervals"].get(key).is_some(), "{key}");
        }
    }
    if !v["approach2"].is_null() {
        let budgets = v["approach2"]["budgets"].as_array().unwrap();
        assert_eq!(budgets.len(), 4);
        assert!(budgets[0].get("n_opt_interval").is_some());
    }
    let c = &v["consistency"];
    assert!(c["a"].as_array().is_some(), "{c}");
    assert!(c["pairs"].as_array().is_some() && c["summary"].as_str().is_some());
    let h = &v["held_out"];
    assert_eq!(h["budget"].as_f64(), Some(8e8));
    for key in [
        "predicted_n_opt",
        "predicted_loss",
        "measured_loss",
        "relative_error",
    ] {
        assert!(h.get(key).is_some(), "{key}: {h}");
    }
    assert!(h["measured_loss"].as_f64().unwrap() > 0.0);
    let conventions: Vec<&str> = v["conventions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["param_convention"].as_str().unwrap())
        .collect();
    assert_eq!(conventions, ["total", "non_embedding"]);
    assert!(v["bootstrap"]["schemes"]["approach2"].as_str().is_some());
    let html = std::fs::read_to_string(cwd.join("s/report.html")).unwrap();
    for section in [
        "The compute-optimal answer, three ways",
        "held-out budget",
        "N counted two ways",
    ] {
        assert!(html.contains(section), "{section}");
    }

    // Each record says how many passes over its data the run made.
    let record = std::fs::read_dir(cwd.join("s/runs"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("record.json")).ok())
        .next()
        .unwrap();
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert!(record["epochs"].as_f64().unwrap() > 0.0);
    assert!(record["unique_train_tokens"].as_u64().unwrap() > 1_000_000);

    let out = scalelab_line("plan --study s --flops 1e9,1e13 --json", cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &p["allocations"][0];
    for key in ["n_opt", "d_opt", "tokens_per_param", "loss"] {
        assert!(first[key]["lo"].as_f64().is_some(), "{key}: {first}");
        assert!(first["best"][key].as_f64().is_some(), "{key}");
    }
    let out = scalelab_line("plan --study s --flops 1e13", cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("decades beyond"), "{}", stderr(&out));
}

/// Six MLPs on the embedded digits: each trains in about a second on one thread.
const DIGITS_GRID: &str = r#"
name = "grid"
seeds = [0, 1, 2]
train_fractions = [0.5, 1.0]
models = [{ family = "mlp", depth = 2, width = 384 }]
[base.train]
budget_samples = 20000
lr = 3e-3
"#;

#[test]
fn a_classification_study_runs_as_a_study_in_parallel_and_survives_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    std::fs::write(cwd.join("grid.toml"), DIGITS_GRID).unwrap();
    killed_study_resumes(cwd, "grid.toml", 6);
    let dir = cwd.join("study");

    // One store, one runs table: every run is of kind `classify`, and its planned samples are
    // the budget rounded up to whole batches of 64.
    let out = scalelab(&["study", "status", "study", "--json"], cwd);
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 6);
    assert!(runs.iter().all(|r| r["kind"] == "classify"), "{runs:?}");
    assert!(
        runs.iter().all(|r| r["planned_tokens"] == 20032),
        "{runs:?}"
    );

    // A fresh directory runs the grid several runs at a time.
    let out = scalelab_line("study run grid.toml --dir again --jobs 3", cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("3 at a time"), "{}", stderr(&out));
    // Every run trains the same to the last digit whichever process and order it ran in.
    let results = |d: &str| std::fs::read_to_string(cwd.join(d).join("results.csv")).unwrap();
    let strip_wall = |csv: String| -> Vec<String> {
        csv.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(strip_wall(results("study")), strip_wall(results("again")));

    // Report and export serve both kinds.
    std::fs::remove_file(dir.join("report.html")).unwrap();
    let out = scalelab(&["study", "report", "study"], cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("train–test gap") && html.contains("<svg"));
    let out = scalelab_line("study export study --out exported", cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(cwd.join("exported/results.csv")).unwrap(),
        results("study")
    );

    // A store of schema version 1 (classification runs in a table of their own, as
    // `classify-study` wrote them) is migrated when opened, and reads back the same.
    let db = rusqlite::Connection::open(dir.join("study.sqlite")).unwrap();
    db.execute_batch(
        "CREATE TABLE classify_runs (run_id TEXT PRIMARY KEY, model TEXT NOT NULL,
            family TEXT NOT NULL, params_total INTEGER NOT NULL, train_fraction REAL NOT NULL,
            train_examples INTEGER NOT NULL, regulariser TEXT NOT NULL, seed INTEGER NOT NULL,
            train_accuracy REAL NOT NULL, test_accuracy REAL NOT NULL, test_loss REAL NOT NULL,
            cell_json TEXT NOT NULL, record_json TEXT NOT NULL);
         INSERT INTO classify_runs SELECT run_id, size, 'mlp', params_total, 0, 0, '', seed,
            0, 0, 0, cell_json, record_json FROM runs ORDER BY rowid;
         DELETE FROM runs;
         ALTER TABLE runs DROP COLUMN kind;
         ALTER TABLE runs DROP COLUMN cell_json;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(db);
    std::fs::remove_file(dir.join("results.csv")).unwrap();
    let out = scalelab(&["study", "report", "study"], cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(strip_wall(results("study")), strip_wall(results("again")));
    let out = scalelab(&["study", "status", "study", "--json"], cwd);
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 6);
    assert!(runs.iter().all(|r| r["status"] == "completed"), "{runs:?}");

    // A store that has lost its name and study file is reported under its directory's name.
    let db = rusqlite::Connection::open(dir.join("study.sqlite")).unwrap();
    db.execute_batch("DELETE FROM meta").unwrap();
    drop(db);
    let out = scalelab(&["study", "report", "study"], cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("Classification study: study</h1>"),
        "{html:.300}"
    );
}

/// `study status --json` of `dir`.
fn status_json(cwd: &Path, dir: &str) -> serde_json::Value {
    let out = scalelab(&["study", "status", dir, "--json"], cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A finished study whose store is lost, or overwritten with garbage, is rebuilt by `study
/// repair` from its study.toml and its runs' records to the same status, the damaged store
/// kept aside; then `study run` has nothing left to train. Scaling and classification
/// studies alike.
#[test]
fn study_repair_rebuilds_a_lost_or_damaged_store_from_the_records() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    for (file, text, runs) in [("tiny.toml", TINY, 4), ("grid.toml", DIGITS_GRID, 6)] {
        std::fs::write(cwd.join(file), text).unwrap();
        let out = scalelab_line(&format!("study run {file} --dir s --no-report"), cwd);
        assert!(out.status.success(), "{}", stderr(&out));
        let before = status_json(cwd, "s");
        assert_eq!(before.as_array().unwrap().len(), runs);

        // Garbage where the store was: status refuses it, repair keeps it and rebuilds.
        std::fs::write(cwd.join("s/study.sqlite"), b"not a database, just bytes").unwrap();
        let out = scalelab(&["study", "status", "s"], cwd);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let out = scalelab_line("study repair s", cwd);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_says(
            &out,
            &[
                "kept the old store as",
                &format!("{runs} of {runs} runs recorded"),
            ],
        );
        let kept: Vec<_> = std::fs::read_dir(cwd.join("s"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("study.sqlite.damaged-")
            })
            .collect();
        assert_eq!(
            std::fs::read(kept[0].path()).unwrap(),
            b"not a database, just bytes"
        );
        assert_eq!(status_json(cwd, "s"), before, "{file}");

        // A store deleted outright: the same.
        std::fs::remove_file(cwd.join("s/study.sqlite")).unwrap();
        let out = scalelab_line("study repair s", cwd);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(status_json(cwd, "s"), before, "{file}");
        let again = scalelab_line(&format!("study run {file} --dir s --no-report"), cwd);
        assert!(
            stderr(&again).contains(&format!(
                "0 completed now, 0 diverged, 0 failed, {runs} were already done"
            )),
            "{}",
            stderr(&again)
        );
        std::fs::remove_dir_all(cwd.join("s")).unwrap();
    }
    // Without the study file there is nothing to plan from: said, with the way out.
    std::fs::create_dir_all(cwd.join("empty")).unwrap();
    let out = scalelab_line("study repair empty", cwd);
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out, &["study.toml", "hint:", "study run FILE --dir"]);
}

/// Process ids of the training children of the study in `dir` (see
/// [`training_children_of`]).
fn training_pids(dir: &Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmd
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if !args.iter().any(|a| a == "--exit-with-parent") {
                return None;
            }
            let run_dir = args.iter().skip_while(|a| *a != "--run-dir").nth(1)?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            cwd.join(run_dir).starts_with(&dir).then_some(pid)
        })
        .collect()
}

/// 100 tiny runs (2 depths × 5 budgets × 10 seeds), two at a time.
const SOAK: &str = r#"
name = "soak"
seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
[model]
ctx_len = 8
aspect_ratio = 16
head_dim = 8
[sizes]
depths = [1, 2]
[budget]
tokens = [4096, 8192, 16384, 32768, 65536]
[train]
batch_size = 4
eval_every_tokens = 16384
eval_tokens = 256
checkpoint_every_tokens = 4096
[analysis]
bootstrap = 0
"#;

/// The soak test of the scheduler (issue 22): a study of 100 tiny runs is killed again and
/// again with SIGKILL at seeded random moments, the study process or one of its training
/// children, and restarted each time, until it ends by itself; then every run is recorded
/// exactly once with a record that reads as its own, and a last invocation trains nothing.
/// Prints what it did.
#[test]
fn a_soak_of_random_kills_loses_duplicates_and_corrupts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    std::fs::write(cwd.join("soak.toml"), SOAK).unwrap();
    let dir = cwd.join("s");
    // xorshift64*, seeded: the kills are the same every time.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    };
    let (mut parent_kills, mut child_kills, mut invocations) = (0, 0, 0);
    let started = Instant::now();
    let mut running: Option<std::process::Child> = None;
    loop {
        assert!(invocations < 300, "the study never finished");
        let study = running.get_or_insert_with(|| {
            invocations += 1;
            Command::new(env!("CARGO_BIN_EXE_scalelab"))
                .args([
                    "study",
                    "run",
                    "soak.toml",
                    "--dir",
                    "s",
                    "--jobs",
                    "2",
                    "--no-report",
                ])
                .current_dir(cwd)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        });
        // Let it work for 0.1 to 1 s; then kill the study (one time in four), or one of its
        // children (two in four), or nothing.
        std::thread::sleep(Duration::from_millis(100 + next(900)));
        if let Some(status) = study.try_wait().unwrap() {
            // Exit 1: some runs failed (the killed children); the next invocation retries.
            assert!(matches!(status.code(), Some(0 | 1)), "{status}");
            running = None;
            if status.success() {
                break;
            }
            continue;
        }
        match next(4) {
            0 => {
                study.kill().unwrap();
                study.wait().unwrap();
                running = None;
                parent_kills += 1;
                // Orphans notice and leave; a new study must not race them.
                let t = Instant::now();
                while !training_pids(&dir).is_empty() {
                    assert!(
                        t.elapsed() < Duration::from_secs(30),
                        "orphans still training"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            1 | 2 => {
                let pids = training_pids(&dir);
                if !pids.is_empty() {
                    let pid = pids[next(pids.len() as u64) as usize];
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                    child_kills += 1;
                }
            }
            _ => {}
        }
    }
    // Every planned run is recorded once, as completed, with its own record.
    let ids = completed_ids(&dir);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        (ids.len(), unique.len()),
        (100, 100),
        "lost or duplicated runs"
    );
    for id in &ids {
        let text = std::fs::read_to_string(dir.join("runs").join(id).join("record.json")).unwrap();
        let record: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(record["run_id"], id.as_str(), "a record is another run's");
        assert_eq!(record["status"]["status"], "completed");
        // Trained to its end once: killed runs resume, a finished one is never trained again.
        let log = std::fs::read_to_string(dir.join("runs").join(id).join("stderr.log")).unwrap();
        assert_eq!(
            log.matches("record written to").count(),
            1,
            "run {id}: {log}"
        );
    }
    let out = scalelab_line("study run soak.toml --dir s --no-report", cwd);
    assert!(
        stderr(&out).contains("0 completed now, 0 diverged, 0 failed, 100 were already done"),
        "{}",
        stderr(&out)
    );
    let _ = writeln!(
        std::io::stderr(),
        "soak: 100 runs, {invocations} invocations, {parent_kills} kills of the study, {child_kills} of a training child, {:.0} s: 0 lost, 0 duplicated, 0 corrupted",
        started.elapsed().as_secs_f64()
    );
}

/// A record written by a newer scalelab (a schema version this one does not know) is named
/// as such, left byte for byte as it was, and its run is failed, not trained over it.
#[test]
fn a_record_of_a_newer_schema_is_named_and_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    std::fs::write(cwd.join("tiny.toml"), TINY).unwrap();
    let out = scalelab_line("study run tiny.toml --dir s --no-report", cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = completed_ids(&cwd.join("s"))[0].clone();
    let path = cwd.join("s/runs").join(&id).join("record.json");
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    record["schema_version"] = serde_json::json!(999);
    let newer = serde_json::to_string_pretty(&record).unwrap();
    std::fs::write(&path, &newer).unwrap();
    std::fs::remove_file(cwd.join("s/study.sqlite")).unwrap();

    let out = scalelab_line("study run tiny.toml --dir s --no-report", cwd);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("3 were already done"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        newer,
        "the record was overwritten"
    );
    let status = scalelab(&["study", "status", "s", "--json"], cwd);
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&status.stdout).unwrap();
    let run = runs.iter().find(|r| r["run_id"] == id.as_str()).unwrap();
    assert_eq!(run["status"], "failed");
    let message = run["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("schema version 999") && message.contains("newer scalelab"),
        "{run}"
    );
}
