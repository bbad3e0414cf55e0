//! `scalelab emergence` end to end on CSV files whose answers are known, and its errors.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;
use common::{assert_says, scalelab, stderr};

/// The issue's table, built as Schaeffer et al. 2023 §2 build their mirage: per-token
/// probability of the right token p(N) = exp(−(c/N)^α) with c = 3e8, α = 0.6, at 14 scales
/// from 1e7 to 1.8e10; a 5-token answer, each token right independently: exact match p^5,
/// edit distance 5·(1 − p), log-probability of the answer 5·ln p. 1,000 test examples per
/// point; the answer length in a column when `length_column`.
fn schaeffer_csv(length_column: bool) -> String {
    let mut csv = String::from("scale,task,metric,value,n_test");
    csv.push_str(if length_column {
        ",answer_tokens\n"
    } else {
        "\n"
    });
    for i in 0..14 {
        let n = 10f64.powf(7.0 + f64::from(i) * (1.8e10f64.log10() - 7.0) / 13.0);
        let loss = (3e8 / n).powf(0.6);
        let p = (-loss).exp();
        for (metric, value) in [
            ("exact_match", (-5.0 * loss).exp()),
            ("edit_distance", 5.0 * (1.0 - p)),
            ("log_prob", -5.0 * loss),
        ] {
            csv.push_str(&format!("{n},add5,{metric},{value},1000"));
            csv.push_str(if length_column { ",5\n" } else { "\n" });
        }
    }
    csv
}

fn emergence_json(dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["emergence", "--input", "results.csv", "--json"];
    all.extend_from_slice(args);
    let out = scalelab(&all, dir);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_issues_table_is_called_a_mirage_with_its_evidence() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("results.csv"), schaeffer_csv(true)).unwrap();
    let v = emergence_json(dir.path(), &[]);
    let task = &v[0];
    assert_eq!(task["task"], "add5");
    let metric = |name: &str| {
        task["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == name)
            .unwrap()
            .clone()
    };
    let em = metric("exact_match");
    assert_eq!(em["emergent"], true);
    let t = em["transition_scale"].as_f64().unwrap();
    assert!((3e9..8e9).contains(&t), "{t}");
    assert!(em["sharpness"].as_f64().unwrap() > 0.25);
    assert!(em["extrapolation_error"].as_f64().unwrap() > 0.2);
    // A power law is a straight line in −ln(−log_prob): not sharp, no miss.
    let lp = metric("log_prob");
    assert_eq!(lp["emergent"], false);
    assert!(lp["extrapolation_error"].as_f64().unwrap().abs() < 1e-6);
    assert_eq!(task["mirage"], "mirage");
    let explanation = task["mirage_explanation"].as_str().unwrap();
    for words in [
        "log_prob",
        "predicted",
        "measured",
        "Transitions",
        "edit_distance",
    ] {
        assert!(explanation.contains(words), "{explanation}");
    }
    let p = &task["predicted_exact_match"];
    assert_eq!(p["fitted"], "log_prob");
    assert_eq!(p["answer_tokens"], 5.0);
    assert!((p["alpha"].as_f64().unwrap() - 0.6).abs() < 1e-3, "{p}");
    let at = &p["at_transition"];
    let (predicted, measured) = (
        at["predicted"].as_f64().unwrap(),
        at["measured"].as_f64().unwrap(),
    );
    assert!((predicted - measured).abs() < 1e-3, "{at}");
    let band = at["band"].as_array().unwrap();
    assert!(band[0].as_f64().unwrap() <= predicted && predicted <= band[1].as_f64().unwrap());

    // The answer length from the command line instead of a column: the same verdict.
    std::fs::write(dir.path().join("results.csv"), schaeffer_csv(false)).unwrap();
    let v = emergence_json(dir.path(), &["--answer-tokens", "5"]);
    assert_eq!(v[0]["mirage"], "mirage");
    assert_eq!(v[0]["predicted_exact_match"]["answer_tokens"], 5.0);
    // Without it the log-probability still predicts exp(log_prob); per-token accuracy is
    // absent, so asking for it leaves the verdict undetermined, saying why.
    let v = emergence_json(dir.path(), &["--per-token", "token_accuracy"]);
    assert_eq!(v[0]["mirage"], "undetermined");
    assert!(v[0]["predicted_exact_match"].is_null());
}

/// Schaeffer's construction with examples of different difficulty (c_e = 3e8·e^z for 200
/// z's spread over ±2): `(summary CSV of the means, per-example CSV, per-token CSV)`.
fn heterogeneous_csvs() -> (String, String, String) {
    let mut summary = String::from("scale,task,metric,value,n_test,answer_tokens\n");
    let mut examples = String::from("scale,task,example,log_prob,exact_match,answer_tokens\n");
    let mut tokens = String::from("scale,task,example,token_index,logprob\n");
    for i in 0..25 {
        let n = 10f64.powf(6.5 + 0.25 * f64::from(i));
        let losses: Vec<f64> = (0..200)
            .map(|e| (3e8 * (4.0 * f64::from(e) / 199.0 - 2.0).exp() / n).powf(0.6))
            .collect();
        let exact = losses.iter().map(|l| (-5.0 * l).exp()).sum::<f64>() / 200.0;
        let log_prob = -5.0 * losses.iter().sum::<f64>() / 200.0;
        summary.push_str(&format!("{n},add5,exact_match,{exact},200,5\n"));
        summary.push_str(&format!("{n},add5,log_prob,{log_prob},200,5\n"));
        for (e, l) in losses.iter().enumerate() {
            // Exact match left empty: the summary row carries it.
            examples.push_str(&format!("{n},add5,{e},{},,5\n", -5.0 * l));
            for t in 0..5 {
                tokens.push_str(&format!("{n},add5,{e},{t},{}\n", -l));
            }
        }
    }
    (summary, examples, tokens)
}

#[test]
fn per_example_scores_turn_a_misleading_mean_into_the_mirage() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, examples, tokens) = heterogeneous_csvs();
    std::fs::write(dir.path().join("results.csv"), summary).unwrap();
    std::fs::write(dir.path().join("examples.csv"), examples).unwrap();
    std::fs::write(dir.path().join("tokens.csv"), tokens).unwrap();
    // From the means alone exp(mean log p^L) under-predicts the mean of p^L.
    let v = emergence_json(dir.path(), &[]);
    assert_eq!(v[0]["mirage"], "real", "{}", v[0]["mirage_explanation"]);
    for file in ["examples.csv", "tokens.csv"] {
        let v = emergence_json(dir.path(), &["--per-example", file]);
        assert_eq!(
            v[0]["mirage"], "mirage",
            "{file}: {}",
            v[0]["mirage_explanation"]
        );
        let p = &v[0]["predicted_exact_match"];
        assert_eq!(p["examples"]["count"], 200, "{file}: {p}");
        assert_eq!(p["answer_tokens"], 5.0, "{file}");
    }
}

#[test]
fn bad_per_example_files_name_file_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).unwrap();
        let out = scalelab(&["emergence", "--per-example", name], dir.path());
        assert_eq!(out.status.code(), Some(1), "{name} must fail");
        stderr(&out)
    };
    let err = run("pos.csv", "scale,task,example,log_prob\n1e6,add,0,0.5\n");
    assert!(
        err.contains("pos.csv: line 2") && err.contains("log_prob") && err.contains("<= 0"),
        "{err}"
    );
    let err = run(
        "twice.csv",
        "scale,task,example,log_prob\n1e6,add,0,-1\n1e6,add,0,-2\n",
    );
    assert!(
        err.contains("line 3") && err.contains("appears twice"),
        "{err}"
    );
    let err = run("cols.csv", "scale,task,logprob\n1e6,add,-1\n");
    assert!(err.contains("no column `example`"), "{err}");
    let err = run(
        "em.csv",
        "scale,task,example,log_prob,exact_match\n1e6,add,0,-1,yes\n",
    );
    assert!(err.contains("`yes` is not 0 or 1"), "{err}");
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
    let err = run(
        "len.csv",
        "scale,task,metric,value,answer_tokens\n1e6,add,exact_match,0,0.5\n",
    );
    assert!(
        err.contains("line 2, column `answer_tokens`") && err.contains("0.5"),
        "{err}"
    );
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
    assert_says(&out, &["task.name", "modadd", "mod_add"]);
    // A context too short for the task names both keys.
    std::fs::write(
        dir.path().join("short.toml"),
        "[model]\nctx_len = 8\n[task]\nname = \"copy\"\nlength = 8\n",
    )
    .unwrap();
    let out = scalelab(&["train", "-c", "short.toml"], dir.path());
    assert_says(&out, &["model.ctx_len", "ctx_len = 16"]);
}
