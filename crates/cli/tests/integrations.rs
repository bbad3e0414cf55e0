//! What scalelab writes for other tools, read by those tools: TensorBoard event files by the
//! `tensorboard` package, GPT-2 exports by `transformers`, runs logged to a real `mlflow
//! server`. The Python side is scripts/verify/*.py, run with the interpreter named by
//! SCALELAB_VERIFY_PYTHON (.ci/run makes it with scripts/verify-venv.sh); without it these
//! tests say loudly that they skipped.
#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{manifest_dir, scalelab_line, stderr};

/// The verification interpreter, or `None` (said loudly) when none is set up.
fn python() -> Option<PathBuf> {
    match std::env::var_os("SCALELAB_VERIFY_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED an integration check: SCALELAB_VERIFY_PYTHON is not set (export SCALELAB_VERIFY_PYTHON=$(scripts/verify-venv.sh) to run it)"
            );
            None
        }
    }
}

/// Runs `scripts/verify/SCRIPT ARGS` with `python` in `cwd`; asserts it passed, returns its
/// standard output.
fn check(python: &Path, script: &str, args: &[&str], cwd: &Path) -> String {
    let script = Path::new(&manifest_dir())
        .join("../../scripts/verify")
        .join(script);
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed:\n{text}{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = writeln!(std::io::stderr(), "{}", text.trim_end());
    text
}

fn run_id(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    record["run_id"].as_str().unwrap().to_string()
}

#[test]
fn tensorboard_reads_every_scalar_and_hparam_of_a_language_model_and_a_classifier() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let lm = run_id(&scalelab_line(
        "train --n-layers 1 --d-model 16 --n-heads 2 --ctx 16 --batch 2 --tokens 2048 --eval-every 512 --eval-tokens 256 --threads 1 --out runs --tensorboard tb/lm --json -q",
        cwd,
    ));
    let classifier = run_id(&scalelab_line(
        "classify --preset mlp --samples 512 --threads 1 --out runs --tensorboard tb/classifier --json",
        cwd,
    ));
    // The event files are there whether or not the checker is.
    for dir in ["tb/lm", "tb/classifier"] {
        let files: Vec<_> = std::fs::read_dir(cwd.join(dir)).unwrap().collect();
        assert_eq!(files.len(), 1, "{dir}");
    }
    // `export` writes the same file again, replacing it.
    let out = scalelab_line(
        &format!("export runs/{lm} --format tensorboard --out tb/lm"),
        cwd,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(cwd.join("tb/lm")).unwrap().count(), 1);
    let Some(python) = python() else {
        return;
    };
    for (id, dir) in [(lm, "tb/lm"), (classifier, "tb/classifier")] {
        let text = check(
            &python,
            "tensorboard_check.py",
            &[&format!("runs/{id}"), dir],
            cwd,
        );
        assert!(text.contains("match its record"), "{text}");
    }
}

/// Public-domain English (Dickens, "A Tale of Two Cities", 1859) and a line of non-ASCII text.
const TEXT: &str = "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair, we had everything before us, we had nothing before us, we were all going direct to Heaven, we were all going direct the other way--in short, the period was so far like the present period, that some of its noisiest authorities insisted on its being received, for good or for evil, in the superlative degree of comparison only.\n\nThere were a king with a large jaw and a queen with a plain face, on the throne of England; there were a king with a large jaw and a queen with a fair face, on the throne of France. In both countries it was clearer than crystal to the lords of the State preserves of loaves and fishes, that things in general were settled for ever.\n\nCafé, naïve, “quoted” — x ≥ 1 😀\n";

/// The text every model is scored on, written to `cwd/text.txt`: [`TEXT`] three times
/// (3,012 bytes).
fn text(cwd: &Path) -> PathBuf {
    let path = cwd.join("text.txt");
    let body: String = (1..=3)
        .map(|i| format!("Chapter {i}\n\n{TEXT}\n"))
        .collect();
    std::fs::write(&path, body).unwrap();
    path
}

/// `scalelab eval DIR --data text.txt --json`'s loss.
fn scalelab_loss(dir: &str, cwd: &Path) -> f64 {
    let out = scalelab_line(
        &format!("eval {dir} --data text.txt --threads 1 --json"),
        cwd,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["loss"].as_f64().unwrap()
}

/// transformers' loss over the same windows.
fn transformers_loss(python: &Path, dir: &str, cwd: &Path) -> f64 {
    let out = check(python, "hf_check.py", &["score", dir, "text.txt"], cwd);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v["loss"].as_f64().unwrap()
}

fn same_loss(what: &str, ours: f64, theirs: f64) {
    let _ = writeln!(
        std::io::stderr(),
        "{what}: scalelab {ours:.8}, transformers {theirs:.8}, difference {:.1e}",
        (ours - theirs).abs()
    );
    assert!((ours - theirs).abs() <= 1e-4, "{what}: {ours} vs {theirs}");
}

/// Both directions of the GPT-2 mapping, checked by `transformers` (issue 21): GPT runs (byte
/// and BPE tokenizers, tied and untied heads) exported and loaded by AutoModelForCausalLM
/// give scalelab's loss on the same windows; GPT-2s of two sizes made by transformers itself
/// are scored by scalelab to transformers' loss, and one fine-tunes here and goes back.
#[test]
fn transformers_loads_exported_runs_and_scalelab_reads_its_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    text(cwd);
    let mut exported = Vec::new();
    for (name, flags) in [
        (
            "untied-byte",
            "--n-layers 2 --d-model 32 --n-heads 2 --ctx 32",
        ),
        (
            "tied-byte",
            "--n-layers 1 --d-model 24 --n-heads 3 --ctx 16 --tie",
        ),
        (
            "bpe",
            "--n-layers 1 --d-model 32 --n-heads 2 --ctx 24 --tokenizer bpe",
        ),
        // One block shared by three layers: a GPT-2 of three equal blocks.
        (
            "shared",
            "--n-layers 3 --d-model 32 --n-heads 2 --ctx 16 --share-layers",
        ),
    ] {
        let id = run_id(&scalelab_line(
            &format!(
                "train {flags} --batch 4 --tokens 8192 --eval-every 4096 --eval-tokens 512 --threads 1 --out runs --json -q"
            ),
            cwd,
        ));
        let out = scalelab_line(
            &format!("export runs/{id} --format hf --out hf/{name}"),
            cwd,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        for file in ["config.json", "model.safetensors", "tokenizer.json"] {
            assert!(
                cwd.join("hf").join(name).join(file).is_file(),
                "{name}: {file}"
            );
        }
        // The exported directory reads back into scalelab to the run's own loss.
        let own = scalelab_loss(&format!("runs/{id}"), cwd);
        assert_eq!(own, scalelab_loss(&format!("hf/{name}"), cwd), "{name}");
        exported.push((name, own));
    }
    // A classifier has no GPT-2 form, and says so.
    let classifier = run_id(&scalelab_line(
        "classify --preset mlp --samples 128 --threads 1 --out runs --json",
        cwd,
    ));
    let out = scalelab_line(
        &format!("export runs/{classifier} --format hf --out hf/none"),
        cwd,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("classifier"), "{}", stderr(&out));
    let Some(python) = python() else {
        return;
    };
    for (name, own) in &exported {
        let theirs = transformers_loss(&python, &format!("hf/{name}"), cwd);
        same_loss(&format!("export {name}"), *own, theirs);
    }
    for (name, shape) in [
        (
            "made-untied",
            "--layers 3 --embd 48 --heads 4 --positions 24 --untied",
        ),
        ("made-tied", "--layers 2 --embd 64 --heads 2 --positions 40"),
        (
            "made-half",
            "--layers 1 --embd 32 --heads 4 --positions 16 --dtype float16",
        ),
        (
            "made-bf16",
            "--layers 1 --embd 32 --heads 4 --positions 16 --untied --dtype bfloat16",
        ),
    ] {
        let mut args = vec!["make", name, "hf/untied-byte"];
        args.extend(shape.split_whitespace());
        check(&python, "hf_check.py", &args, cwd);
        same_loss(
            &format!("import {name}"),
            scalelab_loss(name, cwd),
            transformers_loss(&python, name, cwd),
        );
    }
    // Fine-tuned here from a transformers checkpoint, named by its weights, and back.
    let out = scalelab_line(
        "train --init-from made-untied --n-layers 3 --d-model 48 --n-heads 4 --ctx 24 --batch 4 --lr 1e-3 --tokens 4096 --eval-every 2048 --eval-tokens 512 --threads 1 --out runs --json -q",
        cwd,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parent = record["config"]["init"]["parent"].as_str().unwrap();
    assert!(parent.starts_with("hf-"), "{parent}");
    let curve = record["curve"].as_array().unwrap();
    let (first, last) = (
        curve[0]["val_loss"].as_f64().unwrap(),
        curve[curve.len() - 1]["val_loss"].as_f64().unwrap(),
    );
    assert!(
        last < first,
        "fine-tuning lowered the loss: {first} -> {last}"
    );
    let id = record["run_id"].as_str().unwrap();
    let out = scalelab_line(&format!("export runs/{id} --format hf --out hf/tuned"), cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    same_loss(
        "fine-tuned and exported",
        scalelab_loss(&format!("runs/{id}"), cwd),
        transformers_loss(&python, "hf/tuned", cwd),
    );
}

/// `generate` gives the same text for the same seed; `compare` finds no difference between a
/// model and itself and finds a planted one (a model trained five times longer); bad inputs
/// are refused by name.
#[test]
fn generate_repeats_its_seed_and_compare_finds_the_known_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    text(cwd);
    let train = |tokens: u32| {
        run_id(&scalelab_line(
            &format!(
                "train --n-layers 1 --d-model 32 --n-heads 2 --ctx 32 --batch 4 --lr 3e-3 --tokens {tokens} --eval-every {tokens} --eval-tokens 512 --threads 1 --out runs --json -q"
            ),
            cwd,
        ))
    };
    let (short, long) = (train(4096), train(40960));
    let sample = |seed: u32| {
        let out = scalelab_line(
            &format!(
                "generate runs/{long} --prompt The --tokens 48 --seed {seed} --threads 1 --json"
            ),
            cwd,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["tokens"].as_array().unwrap().len(), 48);
        v["completion"].as_str().unwrap().to_string()
    };
    assert_eq!(sample(3), sample(3));
    assert_ne!(sample(3), sample(4));
    let compare = |a: &str, b: &str| {
        let out = scalelab_line(
            &format!(
                "compare runs/{a} runs/{b} --data text.txt --bootstrap 999 --threads 1 --json"
            ),
            cwd,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let same = compare(&short, &short);
    assert_eq!(same["difference"].as_f64(), Some(0.0));
    assert_eq!(same["p_value"].as_f64(), Some(1.0));
    let planted = compare(&short, &long);
    let difference = planted["difference"].as_f64().unwrap();
    let interval = planted["interval"].as_array().unwrap();
    assert!(difference > 0.0, "the shorter run is worse: {planted}");
    assert!(interval[0].as_f64().unwrap() > 0.0, "{planted}");
    assert!(planted["p_value"].as_f64().unwrap() < 0.01, "{planted}");
    assert!(
        (difference - (planted["loss_a"].as_f64().unwrap() - planted["loss_b"].as_f64().unwrap()))
            .abs()
            < 1e-9
    );
    // Refused by name: a text too short for one window, a bad temperature, models that do not
    // see the same windows.
    std::fs::write(cwd.join("short.txt"), "tiny").unwrap();
    let out = scalelab_line(&format!("eval runs/{short} --data short.txt"), cwd);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("at least ctx + 1 = 33"),
        "{}",
        stderr(&out)
    );
    let out = scalelab_line(&format!("generate runs/{short} --temperature=-1"), cwd);
    assert!(stderr(&out).contains("--temperature"), "{}", stderr(&out));
    let other = run_id(&scalelab_line(
        "train --n-layers 1 --d-model 32 --n-heads 2 --ctx 16 --batch 4 --tokens 2048 --eval-every 2048 --eval-tokens 256 --threads 1 --out runs --json -q",
        cwd,
    ));
    let out = scalelab_line(
        &format!("compare runs/{short} runs/{other} --data text.txt"),
        cwd,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("same windows"), "{}", stderr(&out));
}

/// A local `mlflow server` (SQLite store, artifacts proxied), stopped when dropped.
struct MlflowServer {
    child: std::process::Child,
    uri: String,
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MlflowServer {
    fn start(python: &Path, dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("mlflow-server.log")).unwrap();
        let child = Command::new(python)
            .args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("mlartifacts"))
            .args(["--workers", "1"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let server = Self {
            child,
            uri: format!("http://127.0.0.1:{port}"),
        };
        // Up when /health answers (a cold start of mlflow 3 takes several seconds).
        let start = std::time::Instant::now();
        loop {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::Read;
                let _ = write!(stream, "GET /health HTTP/1.0\r\n\r\n");
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.contains("200 OK") {
                    return server;
                }
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(120),
                "mlflow server did not start: {}",
                std::fs::read_to_string(dir.join("mlflow-server.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }
}

const TINY_STUDY: &str = r#"
name = "tiny"
[model]
ctx_len = 16
aspect_ratio = 16
head_dim = 8
[sizes]
depths = [1, 2]
[budget]
tokens = [8192]
[train]
batch_size = 4
eval_every_tokens = 4096
eval_tokens = 256
[analysis]
bootstrap = 0
"#;

/// Runs and studies logged to a real `mlflow server` (issue 21): every validation loss exact,
/// parameters and the record artifact there, one MLflow run per scalelab run however often it
/// is logged; a server that is down fails nothing and what it missed is synced later.
#[test]
fn mlflow_server_holds_every_logged_run_once_and_a_down_server_fails_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    // Down: nothing listens on port 1. The run succeeds, says so, and keeps what it missed.
    let out = scalelab_line(
        "train --n-layers 1 --d-model 16 --n-heads 2 --ctx 16 --batch 2 --tokens 2048 --eval-every 1024 --eval-tokens 256 --threads 1 --out runs --mlflow http://127.0.0.1:1 --json -q",
        cwd,
    );
    let down = run_id(&out);
    assert!(
        stderr(&out).contains("not logged to MLflow"),
        "{}",
        stderr(&out)
    );
    assert!(
        cwd.join("runs")
            .join(&down)
            .join("mlflow-pending.json")
            .is_file()
    );
    std::fs::write(cwd.join("tiny.toml"), TINY_STUDY).unwrap();
    let out = scalelab_line(
        "study run tiny.toml --dir tiny --jobs 2 --no-report --mlflow http://127.0.0.1:1",
        cwd,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no more runs of this study run will be tried"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("study sync"), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).matches("not logged to MLflow").count(),
        1,
        "one failed request for the whole study: {}",
        stderr(&out)
    );
    let Some(python) = python() else {
        return;
    };
    let server = MlflowServer::start(&python, cwd);
    let uri = server.uri.clone();
    let lm = format!(
        "train --n-layers 1 --d-model 16 --n-heads 2 --ctx 16 --batch 2 --tokens 4096 --eval-every 1024 --eval-tokens 256 --threads 1 --out runs --mlflow {uri} --mlflow-experiment e1 --json -q"
    );
    let lm_id = run_id(&scalelab_line(&lm, cwd));
    let classifier = run_id(&scalelab_line(
        &format!(
            "classify --preset mlp --samples 512 --threads 1 --out runs --mlflow {uri} --mlflow-experiment e1 --json"
        ),
        cwd,
    ));
    // The run the server missed: the same command again logs it (it is not retrained).
    let out = scalelab_line(
        &format!(
            "train --n-layers 1 --d-model 16 --n-heads 2 --ctx 16 --batch 2 --tokens 2048 --eval-every 1024 --eval-tokens 256 --threads 1 --out runs --mlflow {uri} --json -q"
        ),
        cwd,
    );
    assert_eq!(run_id(&out), down);
    assert!(
        !cwd.join("runs")
            .join(&down)
            .join("mlflow-pending.json")
            .exists()
    );
    // Logged again (the run is already trained): found by its tag, not duplicated.
    let out = scalelab_line(&lm, cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    // The study the server missed, synced now (its runs: experiment = the study's name).
    let out = scalelab_line(&format!("study sync tiny --mlflow {uri}"), cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 runs logged to MLflow now"));
    let out = scalelab_line(&format!("study sync tiny --mlflow {uri}"), cwd);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("0 runs logged to MLflow now, 2 logged before")
    );
    // A study run with the server up logs each run as it is recorded; the sweep at its end
    // finds them all logged.
    let out = scalelab_line(
        &format!(
            "study run tiny.toml --dir tiny-live --jobs 2 --no-report --mlflow {uri} --mlflow-experiment live"
        ),
        cwd,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("MLflow: 0 runs logged at the end, 2 before"),
        "{}",
        stderr(&out)
    );
    check(
        &python,
        "mlflow_check.py",
        &[
            &uri,
            "e1",
            &format!("runs/{lm_id}"),
            &format!("runs/{classifier}"),
        ],
        cwd,
    );
    let study_runs: Vec<String> = std::fs::read_dir(cwd.join("tiny/runs"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    let mut args = vec![uri.as_str(), "tiny"];
    args.extend(study_runs.iter().map(String::as_str));
    check(&python, "mlflow_check.py", &args, cwd);
    drop(server);
}

/// `compare` of classifiers: McNemar's exact test on the runs' shared test predictions; a run
/// against itself shows nothing, a run trained 32 times longer is found better.
#[test]
fn compare_classifiers_with_mcnemar() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let train = |samples: u32| {
        run_id(&scalelab_line(
            &format!("classify --preset mlp --samples {samples} --threads 1 --out runs --json"),
            cwd,
        ))
    };
    let (short, long) = (train(128), train(4096));
    let compare = |a: &str, b: &str| {
        let out = scalelab_line(
            &format!("compare runs/{a} runs/{b} --bootstrap 999 --json"),
            cwd,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let same = compare(&short, &short);
    assert_eq!(same["difference"].as_f64(), Some(0.0));
    assert_eq!(same["p_value"].as_f64(), Some(1.0));
    assert_eq!(same["only_a_right"].as_u64(), Some(0));
    let planted = compare(&short, &long);
    let _ = writeln!(std::io::stderr(), "{planted}");
    assert!(planted["difference"].as_f64().unwrap() < 0.0, "{planted}");
    assert!(planted["p_value"].as_f64().unwrap() < 0.01, "{planted}");
    assert!(planted["interval"][1].as_f64().unwrap() < 0.0, "{planted}");
    // The accuracies are the records' test accuracies.
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cwd.join("runs").join(&long).join("record.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(planted["accuracy_b"], record["test"]["accuracy"]);
    // A classifier and a language model are not compared.
    let lm = run_id(&scalelab_line(
        "train --n-layers 1 --d-model 16 --n-heads 2 --ctx 16 --batch 2 --tokens 1024 --eval-every 1024 --eval-tokens 256 --threads 1 --out runs --json -q",
        cwd,
    ));
    let out = scalelab_line(&format!("compare runs/{short} runs/{lm} --data x"), cwd);
    assert!(
        stderr(&out).contains("not the same kind"),
        "{}",
        stderr(&out)
    );
}

/// `eval --task` scores a run's own task on its held-out examples to the values its record's
/// last evaluation holds (the same weights, the same examples).
#[test]
fn eval_task_repeats_the_records_last_task_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    std::fs::write(
        cwd.join("copy.toml"),
        "[model]\nctx_len = 6\nn_layers = 1\nd_model = 16\nn_heads = 2\n[task]\nname = \"copy\"\nlength = 3\ntest_size = 50\n[train]\nbatch_size = 8\nbudget_tokens = 4096\neval_every_tokens = 2048\n",
    )
    .unwrap();
    let out = scalelab_line("train -c copy.toml --threads 1 --out runs --json -q", cwd);
    let id = run_id(&out);
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let curve = record["curve"].as_array().unwrap();
    let last = &curve[curve.len() - 1]["task_test"];
    let out = scalelab_line(&format!("eval runs/{id} --task --threads 1 --json"), cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let metrics: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "examples",
        "exact_match",
        "token_accuracy",
        "edit_distance",
        "log_prob",
        "brier",
    ] {
        assert_eq!(metrics[key], last[key], "{key}: {metrics} vs {last}");
    }
    // A run without a task says so.
    let plain = run_id(&scalelab_line(
        "train --n-layers 1 --d-model 16 --n-heads 2 --ctx 16 --batch 2 --tokens 1024 --eval-every 1024 --eval-tokens 256 --threads 1 --out runs --json -q",
        cwd,
    ));
    let out = scalelab_line(&format!("eval runs/{plain} --task"), cwd);
    assert!(
        stderr(&out).contains("no synthetic task"),
        "{}",
        stderr(&out)
    );
}

/// `scalelab bench --family` (issue 23's instrument) runs the repository's PyTorch eager peer
/// of the same model (scripts/peers/torch_classifier.py) in the same invocation: the peer's
/// parameter count equals scalelab's for an MLP and a CNN, and both ratios are reported.
#[test]
fn the_classifier_bench_times_the_same_model_in_pytorch() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let peer = Path::new(&manifest_dir()).join("../../scripts/peers/torch_classifier.py");
    // The peer's parameters: the same, but for PyTorch's LSTM, whose second bias per gate
    // adds 4H a layer (here H = 16).
    for (flags, extra) in [
        ("--family mlp --depth 1 --width 32", 0),
        ("--family cnn --preset cnn-small", 0),
        ("--family resnet --preset resnet-small", 0),
        ("--family lstm --depth 1 --width 16 --seq-len 8", 4 * 16),
        ("--family gru --depth 2 --width 16 --seq-len 8", 0),
        ("--family encoder --depth 1 --width 32 --seq-len 8", 0),
    ] {
        let out = scalelab_line(
            &format!(
                "bench {flags} --images 16 --inference-batch 32 --steps 2 --warmup 1 --threads 1 --json --peer-python {} --classifier-peer {}",
                python.display(),
                peer.display()
            ),
            dir.path(),
        );
        assert!(out.status.success(), "{flags}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ours = v["scalelab"]["params"].as_u64().unwrap();
        assert_eq!(
            ours + extra,
            v["peer"]["params"].as_u64().unwrap(),
            "{flags}: {v}"
        );
        for key in ["train_ratio", "inference_ratio"] {
            let r = v[key].as_f64().unwrap();
            assert!(r.is_finite() && r > 0.0, "{flags}: {key} {r}");
        }
        let _ = writeln!(
            std::io::stderr(),
            "bench {flags}: training {:.2}, inference {:.2} (scalelab / PyTorch)",
            v["train_ratio"].as_f64().unwrap(),
            v["inference_ratio"].as_f64().unwrap()
        );
    }
}
