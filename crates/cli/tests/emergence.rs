//! `scalelab emergence` end to end on CSV files whose answers are known, and its errors.

mod common;
use common::{scalelab, stderr};

/// The metrics of an 8-token answer whose per-token accuracy is p(N) = 1 − 70·N^-0.5, each
/// token right independently (Schaeffer et al. 2023 §2): exact match p^8, edit distance
/// 8·(1 − p), log-probability 8·ln p. 1,000 test examples per point.
fn schaeffer_csv() -> String {
    let mut csv = String::from("scale,task,metric,value,n_test\n");
    for i in 0..11 {
        let n = 10f64.powf(4.0 + 0.5 * f64::from(i));
        let p = 1.0 - 70.0 * n.powf(-0.5);
        for (metric, value) in [
            ("exact_match", p.powi(8)),
            ("token_accuracy", p),
            ("edit_distance", 8.0 * (1.0 - p)),
            ("log_prob", 8.0 * p.ln()),
        ] {
            csv.push_str(&format!("{n},add8,{metric},{value},1000\n"));
        }
    }
    csv
}

#[test]
fn exact_match_is_flagged_and_called_a_mirage() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("results.csv"), schaeffer_csv()).unwrap();
    let out = scalelab(
        &["emergence", "--input", "results.csv", "--json"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let task = &v[0];
    assert_eq!(task["task"], "add8");
    let metric = |name: &str| {
        task["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(metric("exact_match")["emergent"], true);
    for name in ["token_accuracy", "edit_distance", "log_prob"] {
        assert_eq!(metric(name)["emergent"], false, "{name}");
    }
    let em = metric("exact_match");
    let t = em["transition_scale"].as_f64().unwrap();
    assert!((1e5..1e6).contains(&t), "{t}");
    assert!(em["sharpness"].as_f64().unwrap() > 0.25);
    assert!(em["extrapolation_error"].as_f64().unwrap() > 0.2);
    assert_eq!(task["mirage"], "mirage");
    assert!(
        task["mirage_explanation"]
            .as_str()
            .unwrap()
            .contains("Schaeffer"),
        "{}",
        task["mirage_explanation"]
    );
}

#[test]
fn bad_tables_name_file_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).unwrap();
        let out = scalelab(&["emergence", "--input", name], dir.path());
        assert_eq!(out.status.code(), Some(1), "{name} must fail");
        stderr(&out)
    };
    let err = run(
        "metric.csv",
        "scale,task,metric,value\n1e6,add,accuracy,0.5\n",
    );
    assert!(
        err.contains("metric.csv: line 2")
            && err.contains("unknown metric `accuracy`")
            && err.contains("exact_match"),
        "{err}"
    );
    let err = run(
        "few.csv",
        "scale,task,metric,value\n1e6,add,exact_match,0\n1e7,add,exact_match,0.1\n1e8,add,exact_match,0.9\n",
    );
    assert!(
        err.contains("few.csv") && err.contains("at least 4") && err.contains("got 3"),
        "{err}"
    );
    let err = run(
        "range.csv",
        "scale,task,metric,value\n1e6,add,exact_match,0\n1e7,add,exact_match,0.1\n1e8,add,exact_match,1.5\n1e9,add,exact_match,1\n",
    );
    assert!(
        err.contains("range.csv") && err.contains("1.5") && err.contains("[0, 1]"),
        "{err}"
    );
    let err = run("cols.csv", "size,task,metric,value\n1,a,brier,0.1\n");
    assert!(err.contains("no column `scale`"), "{err}");
    let err = run(
        "n.csv",
        "scale,task,metric,value,n_test\n1e6,add,exact_match,0,-3\n",
    );
    assert!(err.contains("line 2, column `n_test`"), "{err}");
}

#[test]
fn unknown_tasks_are_refused_with_the_list() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("run.toml"),
        "[model]\nctx_len = 8\n[task]\nname = \"modadd\"\n",
    )
    .unwrap();
    let out = scalelab(&["train", "-c", "run.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("task.name") && err.contains("modadd") && err.contains("mod_add"),
        "{err}"
    );
    // A context too short for the task names both keys.
    std::fs::write(
        dir.path().join("short.toml"),
        "[model]\nctx_len = 8\n[task]\nname = \"copy\"\nlength = 8\n",
    )
    .unwrap();
    let out = scalelab(&["train", "-c", "short.toml"], dir.path());
    let err = stderr(&out);
    assert!(
        err.contains("model.ctx_len") && err.contains("ctx_len = 16"),
        "{err}"
    );
}
