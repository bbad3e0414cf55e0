//! `scalelab classify` end to end: the embedded digits train to a sensible accuracy, records
//! are typed and complete, k folds are summarised, and bad data or specs fail clearly.

mod common;
use common::{assert_says, scalelab, scalelab_line, stderr};

use std::path::Path;

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e})"))
}

/// The JSON that `scalelab LINE`, run in `dir`, prints (it must succeed).
fn json_of(line: &str, dir: &Path) -> serde_json::Value {
    json(&scalelab_line(line, dir))
}

#[test]
fn an_mlp_learns_the_digits_and_records_every_metric() {
    let dir = tempfile::tempdir().unwrap();
    let r = json_of(
        "classify --dataset digits --preset mlp --samples 20000 --threads 1 --json",
        dir.path(),
    );
    assert_eq!(r["schema_version"], 2);
    assert_eq!(r["status"]["status"], "completed");
    assert_eq!(r["flops_convention"], "six_forward_macs_per_sample");
    // 64-256-256-10: (64·256+256) + (256·256+256) + (256·10+10).
    assert_eq!(r["params"]["total"], 85_002);
    let test = &r["test"];
    let accuracy = test["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.93, "test accuracy {accuracy}");
    let [lo, hi] = [0, 1].map(|i| test["accuracy_interval"][i].as_f64().unwrap());
    assert!(lo < accuracy && accuracy < hi);
    // The confusion matrix counts every test image once, and its diagonal is the accuracy.
    let confusion = test["confusion"].as_array().unwrap();
    let n: u64 = confusion
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum();
    assert_eq!(n, test["examples"].as_u64().unwrap());
    let diagonal: u64 = (0..10).map(|i| confusion[i][i].as_u64().unwrap()).sum();
    assert!((diagonal as f64 / n as f64 - accuracy).abs() < 1e-12);
    assert_eq!(test["per_class"].as_array().unwrap().len(), 10);
    // Train, validation and test are disjoint parts of the 1,797 images.
    let total = ["train", "validation", "test"]
        .iter()
        .map(|k| r[k]["examples"].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(total, 1797);
    let record = dir
        .path()
        .join("runs")
        .join(r["run_id"].as_str().unwrap())
        .join("record.json");
    assert!(record.is_file());
}

#[test]
fn folds_are_summarised_and_early_stopping_keeps_the_best_weights() {
    let dir = tempfile::tempdir().unwrap();
    let s = json_of(
        "classify --preset logistic --samples 20000 --lr 1e-2 --folds 3 --threads 1 --json",
        dir.path(),
    );
    assert_eq!(s["folds"], 3);
    assert_eq!(s["run_ids"].as_array().unwrap().len(), 3);
    let acc = &s["validation"]["accuracy"];
    let folds: Vec<f64> = acc["folds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let mean = folds.iter().sum::<f64>() / 3.0;
    assert!((acc["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert!(mean > 0.8, "logistic regression on the digits: {mean}");

    // A large learning rate and a long budget overfit; patience 2 stops and keeps the best.
    let r = json_of(
        "classify --preset mlp --samples 60000 --lr 3e-3 --patience 2 --train-fraction 0.2 --threads 1 --json",
        dir.path(),
    );
    let curve = r["curve"].as_array().unwrap();
    let best = curve
        .iter()
        .min_by(|a, b| {
            a["val_loss"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["val_loss"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(r["kept_samples"], best["samples"]);
    // The kept weights are the best point's: their validation loss is that point's.
    let kept_loss = r["validation"]["loss"].as_f64().unwrap();
    assert!((kept_loss - best["val_loss"].as_f64().unwrap()).abs() < 1e-5);
    if r["stopped_early"] == true {
        let last = curve.last().unwrap()["samples"].as_u64().unwrap();
        assert!(last < r["config"]["train"]["budget"]["samples"].as_u64().unwrap());
    }
}

/// Writes an IDX file of unsigned bytes.
fn idx(path: &Path, dims: &[u32], values: &[u8]) {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(values);
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

#[test]
fn idx_files_are_read_and_their_faults_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    std::fs::create_dir_all(&data).unwrap();
    // A tiny MNIST-shaped set: 40 training and 20 test images of 4×4; class c lights row c.
    let images = |n: usize| -> (Vec<u8>, Vec<u8>) {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let c = i % 4;
            labels.push(c as u8);
            for row in 0..4 {
                pixels.extend([if row == c { 255 } else { 0 }; 4]);
            }
        }
        (pixels, labels)
    };
    let (p, l) = images(40);
    idx(&data.join("train-images-idx3-ubyte"), &[40, 4, 4], &p);
    idx(&data.join("train-labels-idx1-ubyte"), &[40], &l);
    let (p, l) = images(20);
    idx(&data.join("t10k-images-idx3-ubyte"), &[20, 4, 4], &p);
    idx(&data.join("t10k-labels-idx1-ubyte"), &[20], &l);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "classify",
            "--dataset",
            "mnist",
            "--data-dir",
            "mnist",
            "--preset",
            "logistic",
            "--samples",
            "4000",
            "--lr",
            "1e-2",
            "--threads",
            "1",
            "--json",
        ];
        args.extend(extra);
        scalelab(&args, dir.path())
    };
    let r = json(&run(&[]));
    assert_eq!(r["test"]["examples"], 20);
    assert_eq!(r["test"]["accuracy"], 1.0, "four separable classes");

    // A truncated image file: the error names the file, the byte and the counts.
    let images_path = data.join("t10k-images-idx3-ubyte");
    let bytes = std::fs::read(&images_path).unwrap();
    std::fs::write(&images_path, &bytes[..bytes.len() - 3]).unwrap();
    let out = run(&[]);
    assert!(!out.status.success());
    assert_says(
        &out,
        &["t10k-images-idx3-ubyte, byte 16", "promise 320 values"],
    );
    std::fs::write(&images_path, &bytes).unwrap();

    // Labels that disagree with the images in number.
    idx(&data.join("t10k-labels-idx1-ubyte"), &[19], &[0; 19]);
    assert_says(&run(&[]), &["t10k-labels-idx1-ubyte", "20 images"]);

    // A missing file says how to fetch the set.
    std::fs::remove_file(data.join("t10k-labels-idx1-ubyte")).unwrap();
    assert_says(
        &run(&[]),
        &["does not exist", "scripts/fetch-data.sh mnist"],
    );
}

#[test]
fn bad_specs_name_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    // A misspelt name is a usage error (exit 2, as any bad flag value); a value out of
    // range is refused when the spec resolves (exit 1).
    for (args, expected, code) in [
        (vec!["--family", "transformer"], "model.family", 2),
        (vec!["--dataset", "cifar10"], "data.dataset", 2),
        (vec!["--folds", "1"], "folds", 1),
        (vec!["--dropout", "1.5"], "model.dropout", 1),
        (vec!["--train-fraction", "0"], "data.train_fraction", 1),
        (vec!["--preset", "resnet-9000"], "model.preset", 2),
        (vec!["--family", "cnn", "--depth", "4"], "model.depth", 1),
        (vec!["--family", "resnet", "--depth", "5"], "model.depth", 1),
    ] {
        let mut all = vec!["classify", "--samples", "64"];
        all.extend(args.iter().copied());
        let out = scalelab(&all, dir.path());
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(expected) && err.contains("hint:"),
            "{args:?}: {err}"
        );
    }
    // The same names misspelt in a spec file are refused where the file is read, naming the
    // file, the key and every name there is.
    for (toml, expected) in [
        (
            "[model]\nfamily = \"transformer\"\n",
            "unknown model.family `transformer`",
        ),
        (
            "[model]\npreset = \"cnn-9000\"\n",
            "unknown model.preset `cnn-9000`",
        ),
        (
            "[data]\ndataset = \"cifar10\"\n",
            "unknown data.dataset `cifar10`",
        ),
        (
            "[train]\noptimizer = \"lion\"\n",
            "unknown train.optimizer `lion`",
        ),
    ] {
        std::fs::write(dir.path().join("bad.toml"), toml).unwrap();
        let out = scalelab(&["classify", "--config", "bad.toml"], dir.path());
        assert_eq!(out.status.code(), Some(1), "{toml}");
        let err = stderr(&out);
        assert!(
            err.contains(expected) && err.contains("bad.toml") && err.contains("use one of:"),
            "{toml}: {err}"
        );
    }
    assert!(
        !dir.path().join("runs").exists(),
        "nothing is written for a bad spec"
    );
}

#[test]
fn a_classification_study_runs_its_grid_resumes_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"
name = "tiny"
seeds = [0, 1]
train_fractions = [0.2, 1.0]
models = [{ preset = "logistic" }, { family = "mlp", depth = 1, width = 32 }]
regularisers = [{ name = "none" }, { name = "dropout", dropout = 0.3 }]
[base.train]
budget_samples = 3000
lr = 1e-2
"#;
    std::fs::write(dir.path().join("tiny.toml"), spec).unwrap();
    let out = scalelab(
        &["classify-study", "tiny.toml", "--threads", "1"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("16 completed now"),
        "{}",
        stderr(&out)
    );
    let study = dir.path().join("studies/tiny");
    let csv = std::fs::read_to_string(study.join("results.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(
        rows.len(),
        2 * 2 * 2 * 2,
        "models × fractions × regularisers × seeds"
    );
    // Every run has its own record; the two fractions train on nested, larger sets.
    let runs = std::fs::read_dir(study.join("runs")).unwrap().count();
    assert_eq!(runs, 16);
    assert!(csv.contains(",logistic,mlp,650,0.2,") && csv.contains(",mlp-d1-w32,mlp,"));
    let report = std::fs::read_to_string(study.join("report.html")).unwrap();
    assert!(report.contains("train–test gap") && report.contains("<svg"));

    // Nothing trains again and the results stay the same.
    let trained_nothing = |again: &std::process::Output, csv: &str| {
        assert!(again.status.success(), "{}", stderr(again));
        let err = stderr(again);
        assert!(
            err.contains("16 already done") && !err.contains("start "),
            "{err}"
        );
        let now = std::fs::read_to_string(study.join("results.csv")).unwrap();
        assert_eq!(now, csv);
    };
    // Run again (as `study run`, which `classify-study` stands for).
    let again = scalelab_line("study run tiny.toml --threads-per-run 1", dir.path());
    trained_nothing(&again, &csv);

    // Without its SQLite store, the study imports the runs' records instead of training.
    assert!(study.join("study.sqlite").is_file());
    std::fs::remove_file(study.join("study.sqlite")).unwrap();
    let again = scalelab(
        &["classify-study", "tiny.toml", "--threads", "1"],
        dir.path(),
    );
    trained_nothing(&again, &csv);

    // Folds in the base spec: every cell runs once per fold, each validated on its fold.
    let folded = "name = \"folded\"\nmodels = [{ preset = \"logistic\" }]\n[base]\nfolds = 3\n[base.train]\nbudget_samples = 2000\nlr = 1e-2\n";
    std::fs::write(dir.path().join("folded.toml"), folded).unwrap();
    let out = scalelab(
        &["classify-study", "folded.toml", "--threads", "1"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(dir.path().join("studies/folded/results.csv")).unwrap();
    let folds: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(8).unwrap())
        .collect();
    assert_eq!(folds, vec!["0", "1", "2"], "{csv}");

    // A bad grid names the file and the key.
    std::fs::write(dir.path().join("bad.toml"), "name = \"bad\"\nmodels = []\n").unwrap();
    let out = scalelab(&["classify-study", "bad.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("bad.toml") && err.contains("models"), "{err}");
}

#[test]
fn a_resnet_with_batch_norm_learns_the_digits() {
    // Evaluation uses the running statistics of batch norm (inference mode): a model that
    // only worked with batch statistics would fail here.
    let dir = tempfile::tempdir().unwrap();
    let r = json_of(
        "classify --preset resnet-small --samples 8000 --lr 3e-3 --threads 1 --json",
        dir.path(),
    );
    assert_eq!(r["config"]["model"]["family"], "resnet");
    // Stem 9·16 + 32, block 16→16: 2·(9·256 + 32), block 16→32: 9·512 + 64 + 9·1024 + 64 +
    // 512 + 64, classifier 32·10 + 10.
    assert_eq!(r["params"]["total"], 19_706);
    let accuracy = r["test"]["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.85, "test accuracy {accuracy}");
}

#[test]
fn recurrent_models_learn_sentiment_sentences() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sent");
    common::write_sentiment_standin(&data);
    for preset in ["lstm", "gru", "encoder-small"] {
        let r = json_of(
            &format!(
                "classify --dataset sentiment --data-dir sent --preset {preset} --samples 3000 --lr 3e-3 --threads 1 --json"
            ),
            dir.path(),
        );
        if preset == "encoder-small" {
            assert_eq!(r["config"]["model"]["family"], "encoder");
        } else {
            assert_eq!(r["config"]["model"]["family"], "rnn");
            assert_eq!(r["config"]["model"]["cell"], preset);
        }
        // 120 sentences: a quarter is the test set.
        assert_eq!(r["test"]["examples"], 30);
        let accuracy = r["test"]["accuracy"].as_f64().unwrap();
        assert!(accuracy >= 0.9, "{preset}: test accuracy {accuracy}");
        assert!(r["params"]["embedding"].as_u64().unwrap() > 0);
        assert!(
            r["param_convention"]
                .as_str()
                .unwrap()
                .contains("token and position embeddings")
        );
    }

    // An image family on text, and a missing directory, are clear errors.
    let out = scalelab_line(
        "classify --dataset sentiment --data-dir sent --preset mlp",
        dir.path(),
    );
    assert_says(&out, &["model.family", "lstm, gru or encoder"]);
    let out = scalelab_line(
        "classify --dataset sentiment --data-dir nowhere",
        dir.path(),
    );
    assert_says(&out, &["imdb.json", "fetch-data.sh sentiment"]);
}

#[test]
fn taggers_learn_part_of_speech_and_report_per_token_metrics() {
    // A small tagged corpus in the OANC file's layout: determiner, adjective, noun, verb.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pos");
    std::fs::create_dir_all(&data).unwrap();
    let (dets, adjs) = (["the", "a", "every"], ["red", "small", "old", "quick"]);
    let (nouns, verbs) = (
        ["cat", "dog", "car", "tree", "bird"],
        ["runs", "sleeps", "falls"],
    );
    let mut lines = String::new();
    for i in 0..120 {
        let mut line = format!("{}/DT ", dets[i % 3]);
        if i % 2 == 0 {
            line.push_str(&format!("{}/JJ ", adjs[i % 4]));
        }
        line.push_str(&format!("{}/NN {}/VBZ ./.\n", nouns[i % 5], verbs[i % 3]));
        lines.push_str(&line);
    }
    std::fs::write(data.join("tagged-en-oanc.txt"), lines).unwrap();
    for preset in ["encoder-small", "lstm"] {
        let r = json_of(
            &format!(
                "classify --dataset pos --data-dir pos --preset {preset} --samples 3000 --lr 3e-3 --threads 1 --json"
            ),
            dir.path(),
        );
        assert_eq!(r["config"]["model"]["per_token"], true, "{preset}");
        // 30 test sentences of 4 or 5 tokens: every token is an example.
        let n = r["test"]["examples"].as_u64().unwrap();
        assert!((120..=150).contains(&n), "{preset}: {n} test tokens");
        assert_eq!(r["test"]["per_class"].as_array().unwrap().len(), 5);
        let accuracy = r["test"]["accuracy"].as_f64().unwrap();
        assert!(accuracy > 0.95, "{preset}: token accuracy {accuracy}");
    }
    let out = scalelab_line("classify --dataset pos --data-dir nowhere", dir.path());
    let err = stderr(&out);
    assert!(err.contains("fetch-data.sh pos"), "{err}");
}

#[test]
fn the_example_spec_runs() {
    let dir = tempfile::tempdir().unwrap();
    let spec = std::path::Path::new(&common::manifest_dir()).join("../../examples/digits.toml");
    let out = scalelab(
        &[
            "classify",
            "-c",
            &spec.to_string_lossy(),
            "--samples",
            "3000",
            "--threads",
            "1",
            "--json",
        ],
        dir.path(),
    );
    let r = json(&out);
    assert_eq!(r["params"]["total"], 85_002);
    assert_eq!(r["config"]["train"]["budget"]["samples"], 3000);
}

#[test]
fn the_optimiser_is_a_choice_and_adamw_keeps_its_run_ids() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "classify",
            "--dataset",
            "digits",
            "--preset",
            "mlp",
            "--samples",
            "20000",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = scalelab(&args, dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        json(&out)
    };
    let adamw = run(&[]);
    // The default is left out of the config, so the id is the one it had before the choice.
    assert!(adamw["config"]["train"].get("optimizer").is_none());
    let sgd = run(&["--optimizer", "sgd", "--lr", "0.05", "--nesterov"]);
    assert_eq!(
        sgd["config"]["train"]["optimizer"]["sgd"],
        serde_json::json!({ "momentum": 0.9, "nesterov": true })
    );
    assert_ne!(adamw["run_id"], sgd["run_id"]);
    for r in [&adamw, &sgd] {
        let accuracy = r["test"]["accuracy"].as_f64().unwrap();
        assert!(accuracy > 0.93, "test accuracy {accuracy}");
    }
    // Without weight decay Adam and AdamW are the same algorithm (Loshchilov & Hutter 2019):
    // Burn's Adam and the fused AdamW land on the same accuracy.
    let adam = run(&["--optimizer", "adam"]);
    let diff =
        adam["test"]["accuracy"].as_f64().unwrap() - adamw["test"]["accuracy"].as_f64().unwrap();
    assert!(diff.abs() < 0.01, "adam − adamw accuracy {diff}");
    let out = scalelab_line("classify --dataset digits --optimizer lion", dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("adamw, adam, sgd"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_interrupted_classifier_resumes_from_its_checkpoint_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &str| -> Vec<String> {
        [
            "classify",
            "--dataset",
            "digits",
            "--preset",
            "mlp",
            "--samples",
            "12000",
            "--train-fraction",
            "0.1",
            "--lr",
            "0.01",
            "--patience",
            "3",
            "--checkpoint-every",
            "3000",
            "--json",
            "--out",
            out,
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |a: &[String]| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        scalelab(&a, dir.path())
    };
    // On 121 images the MLP overfits: its best validation loss is at 6,016 samples and early
    // stopping ends it at 9,664. Stopped after the checkpoint at 9,000 samples, as if killed,
    // the checkpoint keeps both the weights at 9,024 and the best ones at 6,016.
    let mut stopped = args("pieces");
    stopped.extend(["--stop-after".into(), "9000".into()]);
    let out = run(&stopped);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stopped at 9024 samples"),
        "{}",
        stderr(&out)
    );
    // Run again: it resumes and finishes; an uninterrupted run gives the same record.
    let resumed = json(&run(&args("pieces")));
    let whole = json(&run(&args("whole")));
    assert_eq!(resumed["run_id"], whole["run_id"]);
    assert_eq!(resumed["resumed"], true, "it continued from its checkpoint");
    assert_eq!(whole["resumed"], false);
    for key in [
        "curve",
        "kept_samples",
        "stopped_early",
        "train",
        "validation",
        "test",
    ] {
        assert_eq!(resumed[key], whole[key], "{key}");
    }
    assert_eq!(whole["stopped_early"], true);
    assert_eq!(whole["kept_samples"], 6016);
    assert_eq!(whole["samples_seen"], 9664);
}

/// Distillation of classifiers (issue 18; Hinton et al. 2015): a student of the digits names
/// its teacher in its config (so its id); with λ = 1 the teacher is ignored and the run
/// trains exactly as one without a teacher (the same losses at every evaluation), with λ < 1
/// it learns from the teacher and ends elsewhere; a language model or a directory that is no
/// run is refused by name.
#[test]
fn a_classifier_distils_from_a_classifier_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let base = "classify --dataset digits --family mlp --depth 1 --width 32 --samples 6000 --threads 1 --json";
    let teacher = json_of(
        "classify --dataset digits --preset mlp --samples 12000 --threads 1 --json",
        cwd,
    );
    let teacher_id = teacher["run_id"].as_str().unwrap();
    let plain = json_of(base, cwd);
    let hard_only = json_of(
        &format!("{base} --distill-from runs/{teacher_id} --distill-hard-weight 1"),
        cwd,
    );
    assert_eq!(
        hard_only["config"]["train"]["distill"]["teacher"],
        teacher_id
    );
    assert_ne!(hard_only["run_id"], plain["run_id"]);
    let losses = |r: &serde_json::Value| -> Vec<f64> {
        r["curve"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["val_loss"].as_f64().unwrap())
            .collect()
    };
    let (a, b) = (losses(&plain), losses(&hard_only));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-4, "{a:?} vs {b:?}");
    }
    let distilled = json_of(
        &format!(
            "{base} --distill-from runs/{teacher_id} --distill-temperature 4 --distill-hard-weight 0.3"
        ),
        cwd,
    );
    assert_eq!(distilled["config"]["train"]["distill"]["temperature"], 4.0);
    let last = |r: &serde_json::Value| *losses(r).last().unwrap();
    assert!((last(&distilled) - last(&plain)).abs() > 1e-4);
    // Refused: a language model, a directory that is not a run.
    let lm = scalelab_line(
        "train --n-layers 1 --d-model 16 --n-heads 1 --ctx 16 --batch 4 --tokens 2048 --threads 1 --out lms --json -q",
        cwd,
    );
    let lm: serde_json::Value = serde_json::from_slice(&lm.stdout).unwrap();
    let out = scalelab_line(
        &format!(
            "{base} --distill-from lms/{}",
            lm["run_id"].as_str().unwrap()
        ),
        cwd,
    );
    assert_says(&out, &["train.distill_from", "not a classifier's record"]);
    let out = scalelab_line(&format!("{base} --distill-from nowhere"), cwd);
    assert_says(&out, &["train.distill_from = nowhere", "cannot read"]);
}

/// `scalelab compress` of image classifiers (issue 18): a CNN pruned by whole channels loses
/// exactly half of each convolution's kernels and the next layer's weights on them; every compressed classifier is scored on its
/// run's own validation split (so "before" is the record's validation accuracy) and on the
/// test split; an MLP prunes by magnitude and quantises; a text classifier is refused by name.
#[test]
fn image_classifiers_compress_by_channels_magnitude_and_quantisation() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let cnn = json_of(
        "classify --dataset digits --family cnn --depth 1 --width 4 --samples 4000 --threads 1 --json",
        cwd,
    );
    let id = cnn["run_id"].as_str().unwrap();
    let compress = |run: &str, flags: &str| {
        json_of(
            &format!("compress runs/{run} {flags} --threads 1 --json"),
            cwd,
        )
    };
    let channels = compress(id, "--method channels --sparsity 0.5");
    // Half of each convolution's output channels go, and with them the next layer's weights
    // on them: the first convolution keeps half its kernels, the second a quarter (half its
    // outputs of half its inputs), the dense layer half its inputs (one channel's map each).
    let nonzero: Vec<(String, u64, u64)> = (channels["layers"].as_array().unwrap().iter())
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["params"].as_u64().unwrap(),
                l["nonzero"].as_u64().unwrap(),
            )
        })
        .collect();
    let share = |name: &str| {
        let (_, params, nonzero) = nonzero.iter().find(|l| l.0 == name).unwrap();
        *nonzero as f64 / *params as f64
    };
    assert_eq!(share("convs.0.weight"), 0.5, "{nonzero:?}");
    assert_eq!(share("convs.1.weight"), 0.25, "{nonzero:?}");
    assert_eq!(share("fc.weight"), 0.5, "{nonzero:?}");
    let before = channels["validation_before"]["accuracy"].as_f64().unwrap();
    assert_eq!(before, cnn["validation"]["accuracy"].as_f64().unwrap());
    let test_before = channels["test_before"]["accuracy"].as_f64().unwrap();
    assert_eq!(test_before, cnn["test"]["accuracy"].as_f64().unwrap());
    assert!(channels["test_after"]["accuracy"].as_f64().unwrap() <= 1.0);
    let mlp = json_of(
        "classify --dataset digits --preset mlp --samples 4000 --threads 1 --json",
        cwd,
    );
    let mlp_id = mlp["run_id"].as_str().unwrap();
    let magnitude = compress(mlp_id, "--method magnitude --sparsity 0.5");
    for l in magnitude["layers"].as_array().unwrap() {
        let params = l["params"].as_u64().unwrap();
        assert_eq!(l["nonzero"].as_u64().unwrap(), params - params / 2, "{l}");
    }
    let int8 = compress(mlp_id, "--method quantize --bits 8");
    let (a, b) = (
        int8["test_before"]["accuracy"].as_f64().unwrap(),
        int8["test_after"]["accuracy"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 0.01, "{a} -> {b}");
    // Channels of an MLP: there are none, and it says so.
    let out = scalelab_line(
        &format!("compress runs/{mlp_id} --method channels --sparsity 0.5"),
        cwd,
    );
    assert_says(&out, &["no convolutions", "CNN"]);
}
