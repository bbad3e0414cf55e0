//! The `scalelab` program end to end: exit codes, error messages that name the key and the
//! fix, `info` against hand-computed counts, a real run, and a run killed with SIGKILL.

use std::process::Command;

mod common;
use common::{assert_says, scalelab, scalelab_line, stderr};

#[test]
fn info_prints_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let out = scalelab_line("info --preset nano --ctx 128 --json", dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // nano at ctx 128, vocab 256, untied: blocks 2·(4·64 + 3·64² + 3·64 + 64² + 64 + 2·64·256 + 256 + 64)
    // = 2·49,984 = 99,968; final norm 128; embeddings 256·64 + 128·64 + 64·256 = 40,960.
    assert_eq!(v["params"]["non_embedding"], 99_968 + 128);
    assert_eq!(v["params"]["embedding"], 40_960);
    assert_eq!(v["params"]["total"], 99_968 + 128 + 40_960);
}

#[test]
fn bad_inputs_exit_nonzero_with_key_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("typo.toml"),
        "[train]\nlearnig_rate = 0.1\n",
    )
    .unwrap();
    let out = scalelab(&["train", "--config", "typo.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out, &["typo.toml", "learnig_rate"]);

    std::fs::write(
        dir.path().join("range.toml"),
        "[model]\npreset = \"mini\"\nn_heads = 3\n",
    )
    .unwrap();
    let out = scalelab(&["train", "--config", "range.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out, &["model.n_heads", "hint:"]);

    let out = scalelab(&["train", "--data", "missing.txt"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.txt"), "{}", stderr(&out));

    std::fs::write(dir.path().join("empty.txt"), "").unwrap();
    let out = scalelab(&["train", "--data", "empty.txt"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no text"), "{}", stderr(&out));

    let out = scalelab(&["train", "--threads", "0"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !dir.path().join("runs").exists(),
        "nothing written for a rejected run"
    );
}

const TINY: &[&str] = &[
    "train",
    "--preset",
    "nano",
    "--ctx",
    "32",
    "--batch",
    "4",
    "--eval-every",
    "5120",
    "--eval-tokens",
    "2048",
    "--threads",
    "1",
    "--quiet",
];

#[test]
fn train_writes_a_record_and_skips_it_when_done() {
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("book.txt");
    std::fs::write(
        &book,
        "It was the best of times, it was the worst of times. ".repeat(300),
    )
    .unwrap();
    let mut args = TINY.to_vec();
    args.extend(["--tokens", "20480", "--data", "book.txt", "--json"]);
    let out = scalelab(&args, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["schema_version"], 1);
    assert_eq!(record["status"]["status"], "completed");
    assert_eq!(record["tokens_seen"], 20480);
    assert_eq!(record["config"]["data"]["source"]["kind"], "text");
    let run_id = record["run_id"].as_str().unwrap();
    let run_dir = dir.path().join("runs").join(run_id);
    assert!(run_dir.join("record.json").is_file());
    assert!(run_dir.join("checkpoint/model.safetensors").is_file());
    // A repetitive text is learnt quickly.
    assert!(record["final_val_loss"].as_f64().unwrap() < 2.5, "{record}");

    // Running the same spec again does not train: it reports the finished record.
    let again = scalelab(&args, dir.path());
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("already trained"),
        "{}",
        stderr(&again)
    );
    let second: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(second, record);
}

#[test]
fn killed_run_resumes_to_a_valid_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = TINY.to_vec();
    args.extend(["--checkpoint-every", "1024", "--tokens", "81920", "--json"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_scalelab"))
        .args(&args)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first checkpoint, let it train on a little, then SIGKILL it mid-step.
    let runs = dir.path().join("runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let run_dir = loop {
        let found = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path());
        if let Some(dir) = found.filter(|d| d.join("checkpoint/state.json").is_file()) {
            break dir;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint within two minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !run_dir.join("record.json").exists(),
        "killed before the end: no record yet"
    );

    let out = scalelab(&args, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["tokens_seen"], 81920);
    assert_eq!(record["resumed"], true);
    assert_eq!(
        record["curve"][0]["tokens"], 0,
        "the curve still starts at the beginning"
    );
}

#[test]
fn recurrent_language_models_train_through_the_same_loop() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("book.txt"),
        "It was the best of times, it was the worst of times. ".repeat(300),
    )
    .unwrap();
    for family in ["lstm", "gru"] {
        let out = scalelab_line(
            &format!(
                "train --family {family} --n-layers 1 --d-model 32 --ctx 32 --batch 4 --lr 1e-2 --tokens 20480 --eval-every 5120 --eval-tokens 2048 --threads 1 --data book.txt --json -q"
            ),
            dir.path(),
        );
        assert!(out.status.success(), "{family}: {}", stderr(&out));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["config"]["model"]["family"], family);
        // Embedding 256·32 and head 32·256 are the embedding part; one layer of G gates has
        // 32·G·32 input and hidden weights and G·32 biases (GRU: two bias vectors).
        let gates = if family == "lstm" { 4 } else { 3 };
        let biases = if family == "lstm" { 1 } else { 2 };
        assert_eq!(r["params"]["embedding"], 2 * 256 * 32);
        assert_eq!(
            r["params"]["non_embedding"],
            2 * 32 * gates * 32 + biases * gates * 32
        );
        let curve = r["curve"].as_array().unwrap();
        let first = curve[0]["val_loss"].as_f64().unwrap();
        let last = r["final_val_loss"].as_f64().unwrap();
        assert!(last < first - 1.0, "{family}: {first} -> {last}");
    }
    // A GPT's record does not name a family, so GPT run ids are unchanged.
    let mut args = TINY.to_vec();
    args.extend(["--tokens", "1024", "--data", "book.txt", "--json"]);
    let out = scalelab(&args, dir.path());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["config"]["model"].get("family").is_none());
    let out = scalelab(&["train", "--family", "rwkv"], dir.path());
    assert_says(&out, &["model.family", "gpt, lstm, gru, mlp"]);
    // A family that exists but is no language model is refused when the spec resolves.
    let out = scalelab(&["train", "--family", "cnn"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_says(
        &out,
        &["model.family", "a language model is a gpt, lstm or gru"],
    );
}

/// `fit --law sparsity` (Frantar et al. 2023) recovers the constants of noise-free points
/// from a CSV with columns S, N, D, loss, on log and on linear residuals; a sparsity of 1 and
/// a missing S column are refused by name.
#[test]
fn fit_sparsity_recovers_constants_from_a_csv_and_refuses_bad_sparsities() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let truth = [30.0, 1.2, 10.0, 0.35, 400.0, 0.3, 1.7];
    let mut csv = String::from("S,N,D,loss\n");
    for s in [0.0f64, 0.5, 0.75, 0.875] {
        for n in [1e6f64, 3e6, 1e7, 3e7, 1e8] {
            for d in [1e8f64, 1e9, 1e10] {
                let loss = (truth[0] * (1.0 - s).powf(truth[1]) + truth[2]) * n.powf(-truth[3])
                    + truth[4] * d.powf(-truth[5])
                    + truth[6];
                csv.push_str(&format!("{s},{n},{d},{loss:.12}\n"));
            }
        }
    }
    std::fs::write(cwd.join("sparse.csv"), csv).unwrap();
    for flags in ["", "--residuals linear --huber-delta 1e-2"] {
        let out = scalelab_line(
            &format!("fit --law sparsity --input sparse.csv --bootstrap 0 --json {flags}"),
            cwd,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let fit: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for (name, want) in ["a_S", "b_S", "c_S", "b_N", "a_D", "b_D", "c"]
            .iter()
            .zip(truth)
        {
            let got = fit[name].as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-3 * want,
                "{flags} {name}: {got} vs {want}"
            );
        }
        assert!(fit["intervals"].is_object() && fit["objective"].is_number());
    }
    std::fs::write(cwd.join("bad.csv"), "S,N,D,loss\n1.0,1e6,1e8,3\n").unwrap();
    let out = scalelab_line("fit --law sparsity --input bad.csv", cwd);
    assert_says(&out, &["bad.csv", "line 2", "`S`", "below 1"]);
    std::fs::write(cwd.join("nos.csv"), "N,D,loss\n1e6,1e8,3\n").unwrap();
    let out = scalelab_line("fit --law sparsity --input nos.csv", cwd);
    assert_says(&out, &["nos.csv", "no column `S`"]);
}

/// `scalelab compress` (issue 18, one-shot): magnitude pruning zeros exactly the asked share of
/// every layer's weights, 2:4 keeps half of each layer, 8-bit per-channel quantisation stores a
/// quarter of the matrices' bytes (plus a scale per channel) and a pruned matrix its non-zero
/// values plus a one-bit mask; each compressed model is scored before and after on the run's
/// own validation sample (so "before" is the record's final loss) and reads back into `eval`.
#[test]
fn compress_prunes_and_quantises_exactly_as_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let out = scalelab_line(
        "train --n-layers 2 --d-model 32 --n-heads 2 --ctx 16 --batch 4 --tokens 8192 --eval-every 8192 --eval-tokens 512 --threads 1 --out runs --json -q",
        cwd,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = record["run_id"].as_str().unwrap();
    let compress = |flags: &str| {
        let out = scalelab_line(
            &format!("compress runs/{id} {flags} --threads 1 --json"),
            cwd,
        );
        assert!(out.status.success(), "{flags}: {}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let layers = |r: &serde_json::Value| r["layers"].as_array().unwrap().clone();
    // 2 blocks × (qkv, proj, fc, fc_proj).
    let magnitude = compress("--method magnitude --sparsity 0.25");
    assert_eq!(layers(&magnitude).len(), 8);
    for layer in layers(&magnitude) {
        let params = layer["params"].as_u64().unwrap();
        assert_eq!(
            layer["nonzero"].as_u64().unwrap(),
            params - params / 4,
            "{layer}"
        );
        let nonzero = params - params / 4;
        assert_eq!(
            layer["bytes"].as_u64().unwrap(),
            4 * nonzero + params.div_ceil(8),
            "{layer}"
        );
    }
    // "Before" is the run's own final validation loss: the same windows, scored again.
    let final_loss = record["final_val_loss"].as_f64().unwrap();
    let before = magnitude["val_loss_before"].as_f64().unwrap();
    assert!(
        (before - final_loss).abs() < 1e-4,
        "{before} vs {final_loss}"
    );
    assert_eq!(magnitude["val_tokens"].as_u64().unwrap(), 512);
    let pruned: u64 = layers(&magnitude)
        .iter()
        .map(|l| l["params"].as_u64().unwrap() / 4)
        .sum();
    assert_eq!(
        magnitude["nonzero"]["non_embedding"].as_u64().unwrap(),
        record["params"]["non_embedding"].as_u64().unwrap() - pruned
    );
    // Wanda: the asked share of each output's weights, measured on training windows.
    let wanda = compress("--method wanda --sparsity 0.5");
    assert_eq!(layers(&wanda).len(), 8);
    for layer in layers(&wanda) {
        let params = layer["params"].as_u64().unwrap();
        assert_eq!(layer["nonzero"].as_u64().unwrap(), params / 2, "{layer}");
    }
    assert_eq!(wanda["method"]["method"], "wanda");
    // Structured: half the neurons empty half of each MLP matrix and leave attention whole;
    // one of two heads empties half of each attention matrix and leaves the MLP whole.
    for (method, emptied) in [
        ("neurons", ["fc.weight", "fc_proj.weight"]),
        ("heads", ["qkv.weight", "proj.weight"]),
    ] {
        let r = compress(&format!("--method {method} --sparsity 0.5"));
        for layer in layers(&r) {
            let name = layer["name"].as_str().unwrap();
            let params = layer["params"].as_u64().unwrap();
            let hit = emptied.iter().any(|e| name.ends_with(&format!(".{e}")));
            let expected = if hit { params / 2 } else { params };
            assert_eq!(
                layer["nonzero"].as_u64().unwrap(),
                expected,
                "{method}: {layer}"
            );
        }
    }
    let two_four = compress("--method n-of-m --n 2 --m 4");
    for layer in layers(&two_four) {
        assert_eq!(
            layer["nonzero"].as_u64().unwrap(),
            layer["params"].as_u64().unwrap() / 2
        );
    }
    let int8 = compress("--method quantize --bits 8 --granularity channel");
    for layer in layers(&int8) {
        let name = layer["name"].as_str().unwrap();
        let outputs = if name.ends_with("qkv.weight") {
            96
        } else if name.ends_with("fc.weight") {
            128
        } else {
            32
        };
        assert_eq!(
            layer["bytes"].as_u64().unwrap(),
            layer["params"].as_u64().unwrap() + 4 * outputs,
            "{layer}"
        );
    }
    // Quantisation at 8 bits barely moves the loss; every record scores the same windows.
    let (before, after) = (
        int8["val_loss_before"].as_f64().unwrap(),
        int8["val_loss_after"].as_f64().unwrap(),
    );
    assert!((after - before).abs() < 0.01, "{before} -> {after}");
    assert_eq!(before, magnitude["val_loss_before"].as_f64().unwrap());
    // The compressed model reads back into eval, under its own id.
    std::fs::write(
        cwd.join("text.txt"),
        "the quick brown fox jumps over the lazy dog. ".repeat(20),
    )
    .unwrap();
    let out = scalelab_line(&format!("eval runs/{id}-2of4 --data text.txt --json"), cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let scored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(scored["model"], format!("{id}-2of4"));
    // Asked for what cannot be done, it says so by name.
    let out = scalelab_line(
        &format!("compress runs/{id} --method n-of-m --n 2 --m 5"),
        cwd,
    );
    assert_says(&out, &["not a multiple of M = 5"]);
    let out = scalelab_line(
        &format!("compress runs/{id} --method quantize --bits 3"),
        cwd,
    );
    assert_says(&out, &["3-bit", "--bits 8"]);
}

/// Pruning during training (`--prune-to`, Zhu & Gupta's schedule): every layer's matrices end
/// exactly at the asked sparsity, the record counts the non-zero parameters in both
/// conventions, pruned weights stay zero in the kept weights, and a run stopped at a
/// checkpoint inside the pruning window resumes to the uninterrupted run's losses.
#[test]
fn pruning_during_training_hits_its_sparsity_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let line = "train --n-layers 2 --d-model 32 --n-heads 2 --ctx 16 --batch 4 --tokens 16384 --eval-every 4096 --eval-tokens 512 --threads 1 --prune-to 0.6 --checkpoint-every 4096";
    let whole = scalelab_line(&format!("{line} --out whole --json -q"), cwd);
    assert!(whole.status.success(), "{}", stderr(&whole));
    let whole: serde_json::Value = serde_json::from_slice(&whole.stdout).unwrap();
    let sparsity = &whole["sparsity"];
    let mut zeros = 0;
    for layer in sparsity["layers"].as_array().unwrap() {
        let (params, z) = (
            layer["params"].as_u64().unwrap(),
            layer["zeros"].as_u64().unwrap(),
        );
        assert_eq!(z, (0.6 * params as f64).round() as u64, "{layer}");
        zeros += z;
    }
    assert_eq!(sparsity["layers"].as_array().unwrap().len(), 8);
    for convention in ["total", "non_embedding"] {
        assert_eq!(
            sparsity["nonzero"][convention].as_u64().unwrap(),
            whole["params"][convention].as_u64().unwrap() - zeros
        );
    }
    // Stopped inside the window (pruning runs from 10% to 70% of the budget), then resumed.
    let out = scalelab_line(&format!("{line} --out pieces --stop-after 8192 -q"), cwd);
    assert!(
        out.status.success() || out.status.code() == Some(130),
        "{}",
        stderr(&out)
    );
    let resumed = scalelab_line(&format!("{line} --out pieces --json -q"), cwd);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let resumed: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(resumed["resumed"], true);
    let losses = |r: &serde_json::Value| -> Vec<f64> {
        r["curve"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["val_loss"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(losses(&resumed), losses(&whole));
    assert_eq!(resumed["sparsity"], whole["sparsity"]);
    // Bad settings are refused by name.
    let out = scalelab_line("train --prune-to 1.0 --tokens 1000", cwd);
    assert_says(&out, &["train.prune_sparsity", "below 1"]);
    let out = scalelab_line(
        "train --prune-to 0.5 --prune-start 0.8 --prune-end 0.5 --tokens 1000",
        cwd,
    );
    assert_says(&out, &["train.prune_end", "prune_start"]);
}

/// Distillation (`--distill-from`): the student's record names its teacher (part of its
/// identity), λ = 1 (the hard labels alone) trains exactly as a run without a teacher, and a
/// teacher of another vocabulary or a shorter context is refused by name.
#[test]
fn distillation_names_its_teacher_and_reduces_to_plain_training_at_lambda_one() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let common =
        "--batch 4 --tokens 4096 --eval-every 2048 --eval-tokens 512 --threads 1 --json -q";
    let teacher = scalelab_line(
        &format!("train --n-layers 2 --d-model 32 --n-heads 2 --ctx 32 --out runs {common}"),
        cwd,
    );
    assert!(teacher.status.success(), "{}", stderr(&teacher));
    let teacher: serde_json::Value = serde_json::from_slice(&teacher.stdout).unwrap();
    let teacher_id = teacher["run_id"].as_str().unwrap();
    let student = |extra: &str, out: &str| {
        let out = scalelab_line(
            &format!(
                "train --n-layers 1 --d-model 16 --n-heads 2 --ctx 32 --out {out} {extra} {common}"
            ),
            cwd,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let distilled = student(&format!("--distill-from runs/{teacher_id}"), "s1");
    assert_eq!(
        distilled["config"]["train"]["distill"]["teacher"],
        teacher_id
    );
    assert_eq!(distilled["config"]["train"]["distill"]["temperature"], 2.0);
    let plain = student("", "s2");
    assert_ne!(plain["run_id"], distilled["run_id"]);
    let losses = |r: &serde_json::Value| -> Vec<f64> {
        r["curve"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["val_loss"].as_f64().unwrap())
            .collect()
    };
    assert_ne!(losses(&plain), losses(&distilled));
    let hard_only = student(
        &format!("--distill-from runs/{teacher_id} --distill-hard-weight 1"),
        "s3",
    );
    let (a, b) = (losses(&plain), losses(&hard_only));
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() < 1e-4,
            "λ = 1 trains as without a teacher: {a:?} vs {b:?}"
        );
    }
    let out = scalelab_line(
        &format!(
            "train --n-layers 1 --d-model 16 --n-heads 2 --ctx 64 --distill-from runs/{teacher_id} --tokens 1000"
        ),
        cwd,
    );
    assert_says(&out, &["train.distill_from", "context", "at most 32"]);
    let out = scalelab_line(
        &format!(
            "train --n-layers 1 --d-model 16 --n-heads 2 --ctx 32 --tokenizer bpe --distill-from runs/{teacher_id} --tokens 1000"
        ),
        cwd,
    );
    assert_says(&out, &["train.distill_from", "vocabulary"]);
}

/// A run started from a parent pruned during training keeps the parent's zeros through its own
/// training (the masks survive fine-tuning), and says so in its config and record.
#[test]
fn fine_tuning_a_pruned_parent_keeps_its_zeros() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let shape = "--n-layers 1 --d-model 32 --n-heads 2 --ctx 16 --batch 4 --eval-tokens 512 --threads 1 --json -q";
    let parent = scalelab_line(
        &format!("train {shape} --tokens 8192 --eval-every 4096 --prune-to 0.5 --out runs"),
        cwd,
    );
    assert!(parent.status.success(), "{}", stderr(&parent));
    let parent: serde_json::Value = serde_json::from_slice(&parent.stdout).unwrap();
    let id = parent["run_id"].as_str().unwrap();
    let child = scalelab_line(
        &format!(
            "train {shape} --tokens 4096 --eval-every 2048 --init-from runs/{id} --out children"
        ),
        cwd,
    );
    assert!(child.status.success(), "{}", stderr(&child));
    let child: serde_json::Value = serde_json::from_slice(&child.stdout).unwrap();
    assert_eq!(child["config"]["train"]["prune"]["sparsity"], 0.5);
    assert_eq!(child["config"]["train"]["prune"]["end"], 0.0);
    assert_eq!(child["sparsity"]["layers"], parent["sparsity"]["layers"]);
    // It trained: its losses moved.
    let curve = child["curve"].as_array().unwrap();
    assert_ne!(curve[0]["val_loss"], curve[curve.len() - 1]["val_loss"]);
}

/// `scalelab bench --family`: an image classifier's training step and inference batch, timed
/// (without a peer: its own figures only), the model's parameters those of its spec, the loss
/// falling on the repeated batch; a text family, and an image family not benchmarked yet, are
/// refused by name.
#[test]
fn the_classifier_bench_times_a_training_step_and_an_inference_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let out = scalelab_line(
        "bench --family cnn --preset cnn-small --images 8 --inference-batch 16 --steps 3 --warmup 2 --threads 1 --json",
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 1→8→8 and 8→16→16 kernels of 3×3 with biases, 16·7·7→64, 64→10.
    let params = (8 * 9 + 8)
        + (8 * 8 * 9 + 8)
        + (8 * 16 * 9 + 16)
        + (16 * 16 * 9 + 16)
        + (16 * 49 * 64 + 64)
        + (64 * 10 + 10);
    assert_eq!(v["scalelab"]["params"], params);
    assert!(v["scalelab"]["train_step_ms"].as_f64().unwrap() > 0.0);
    assert!(v["scalelab"]["inference_ms"].as_f64().unwrap() > 0.0);
    let [first, last] = [0, 1].map(|i| v["scalelab"]["loss"][i].as_f64().unwrap());
    assert!(last < first, "{first} -> {last}");
    assert!(v["peer"].is_null());
    // A text family on sentences: an LSTM of 16 units over 64-wide embeddings of 1,001 tokens.
    let out = scalelab_line(
        "bench --family lstm --depth 1 --width 16 --images 4 --inference-batch 8 --seq-len 6 --steps 3 --warmup 1 --json",
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let params = 1001 * 64 + (64 * 4 * 16 + 4 * 16) + 16 * 4 * 16 + (16 * 2 + 2);
    assert_eq!(v["scalelab"]["params"], params);
    assert_eq!(v["scalelab"]["inference_batch"], 8);
    let out = scalelab_line("bench --family gpt", tmp.path());
    assert_says(&out, &["--family gpt", "no PyTorch peer", "lstm"]);
    let out = scalelab_line("bench --family gru --seq-len 0", tmp.path());
    assert_says(&out, &["--seq-len", "at least 1"]);
}
