//! Fuzzed inputs: every parser and resolver a user's input reaches, fed seeded random and
//! extreme values, must answer with a value or an error, never a panic (issue 22). Each
//! property runs `FUZZ_CASES` cases (default 10,000; `FUZZ_SEED` picks another seed) and
//! prints how many it ran, so CI's log says what was tried.
//!
//! Inputs a user controls reach the program as TOML (specs), as flags (numbers up to
//! `u64::MAX`, which TOML cannot hold, so those are fed through serde's JSON path into the
//! same structs), and as files (IDX images, CSV digits, tagged and labelled sentences).

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use scalelab_spec::{
    ClassifySpec, ClassifyStudySpec, InputShape, StudySpec, TransferStudySpec, run_id,
};

/// Cases per property and the seed: `FUZZ_CASES`, `FUZZ_SEED` (defaults 10,000 and 1).
fn config() -> Config {
    let env = |key: &str, default: u64| {
        std::env::var(key)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Config {
        cases: env("FUZZ_CASES", 10_000) as u32,
        rng_seed: RngSeed::Fixed(env("FUZZ_SEED", 1)),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs `check` on `cases` values of `strategy` (see [`config`]); a panic fails the test with
/// proptest's smallest failing input. Prints the count past the test harness's capture, so
/// that CI's log shows it.
fn fuzz<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value) -> bool) {
    let (count, accepted) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut runner = TestRunner::new(config());
    let result = runner.run(&strategy, |value| {
        count.fetch_add(1, Ordering::Relaxed);
        if check(value) {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("fuzz {name}: {e}");
    }
    let (n, ok) = (
        count.load(Ordering::Relaxed),
        accepted.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        std::io::stderr(),
        "fuzz {name}: {n} cases ({ok} accepted, the rest refused with an error), no panic"
    );
    // A harness whose inputs were all refused at the first key would test little.
    assert!(ok > 0, "fuzz {name}: no input was accepted");
}

/// Integers at the edges TOML can hold, and ordinary ones.
fn toml_int() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(1),
        Just(-1),
        Just(2),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(1 << 31),
        Just(1 << 32),
        Just(1 << 53),
        Just(1 << 62),
        -4i64..4096,
    ]
}

/// Floats at the edges, NaN and the infinities included.
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0f64),
        Just(-0.0),
        Just(1.0),
        Just(-1.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(1e308),
        Just(-1e308),
        Just(1e-308),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        -10.0f64..10.0,
    ]
}

/// Names the specs know, and names they do not.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "gpt",
            "lstm",
            "gru",
            "rnn",
            "mlp",
            "cnn",
            "resnet",
            "encoder",
            "micro",
            "nano",
            "small",
            "byte",
            "bpe",
            "embedded",
            "dir",
            "file",
            "jsonl",
            "adamw",
            "sgd",
            "adam",
            "full",
            "probe",
            "freeze",
            "lora",
            "lp-ft",
            "keep",
            "reset",
            "auto",
            "mlm",
            "mlm-nsp",
            "classify",
            "digits",
            "mnist",
            "sentiment",
            "pos",
            "pang_lee",
            "addition",
            "modular",
            "copy",
            "induction",
            "tokens",
            "flops",
            "total",
            "non_embedding",
            "encoder-small",
            "mlp-small",
            "cnn-small",
            "",
            " ",
            "\u{0}",
        ])
        .prop_map(str::to_string),
        "[a-z_\\-]{0,12}",
        any::<String>(),
    ]
}

/// A TOML value of any kind, shallow.
fn toml_value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        4 => toml_int().prop_map(toml::Value::Integer),
        3 => float().prop_map(toml::Value::Float),
        3 => word().prop_map(toml::Value::String),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(toml::Value::Array)
    })
}

/// Keys of the run, classification and study specs, some of them misspelt.
const KEYS: &[&str] = &[
    "seed",
    "name",
    "description",
    "seeds",
    "folds",
    "fold",
    "param_convention",
    "objective",
    "models",
    "train_fractions",
    "regularisers",
    "model.preset",
    "model.depth",
    "model.aspect_ratio",
    "model.head_dim",
    "model.n_layers",
    "model.d_model",
    "model.n_heads",
    "model.d_ff",
    "model.ctx_len",
    "model.dropout",
    "model.tie_embeddings",
    "model.family",
    "model.width",
    "model.fc",
    "model.heads",
    "data.corpus",
    "data.path",
    "data.text_field",
    "data.tokenizer",
    "data.bpe_vocab_size",
    "data.tokenizer_file",
    "data.val_fraction",
    "data.dataset",
    "data.train_fraction",
    "data.max_tokens",
    "train.batch_size",
    "train.grad_accum",
    "train.lr",
    "train.min_lr_ratio",
    "train.warmup_fraction",
    "train.weight_decay",
    "train.beta1",
    "train.beta2",
    "train.epsilon",
    "train.grad_clip",
    "train.budget_tokens",
    "train.budget_flops",
    "train.budget_samples",
    "train.eval_every_tokens",
    "train.eval_tokens",
    "train.checkpoint_every_tokens",
    "train.eval_per_decade",
    "train.optimizer",
    "train.momentum",
    "train.l1",
    "train.l2",
    "train.early_stopping_patience",
    "train.eval_every_samples",
    "init.from",
    "init.adapt",
    "init.head",
    "init.lora_rank",
    "init.lora_alpha",
    "init.lora_targets",
    "init.freeze_layers",
    "init.body_lr_ratio",
    "task.kind",
    "task.mix",
    "task.digits",
    "task.modulus",
    "augment.rotate_degrees",
    "augment.scale",
    "augment.shift_pixels",
    "sizes.depths",
    "sizes.presets",
    "budget.tokens",
    "budget.flops",
    "budget.tokens_per_param",
    "budget.min_tokens_per_param",
    "budget.max_tokens_per_param",
    "analysis.bootstrap",
    "analysis.hold_out",
    "analysis.fit_starts",
    "pretrain.tokens",
    "pretrain.tokens_per_param",
    "finetune.tokens",
    "finetune.scratch_tokens",
    "finetune.methods",
    "finetune.lr",
    "finetune.lora_rank",
    "finetune.lora_ranks",
    "finetune.freeze_layers",
    "finetune.body_lr_ratio",
    "finetune.data.path",
    "mispelt",
    "train.lrr",
];

/// A table of a spec, TOML's or JSON's, whose dotted keys can be set.
trait Tree: Sized {
    /// The value type of its leaves.
    type Value;
    /// The table under `key`, made (or put in place of a leaf) if need be.
    fn child(&mut self, key: &str) -> &mut Self;
    /// Sets `key` to `value`.
    fn put(&mut self, key: &str, value: Self::Value);
    /// Sets `key` (dotted) to `value`, making the tables on the way.
    fn set(&mut self, key: &str, value: Self::Value) {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap_or(key);
        let mut table = self;
        for part in parts {
            table = table.child(part);
        }
        table.put(last, value);
    }
}

impl Tree for toml::Table {
    type Value = toml::Value;
    fn child(&mut self, key: &str) -> &mut Self {
        let entry = self
            .entry(key.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        match entry {
            toml::Value::Table(t) => t,
            _ => unreachable!("made a table above"),
        }
    }
    fn put(&mut self, key: &str, value: toml::Value) {
        self.insert(key.to_string(), value);
    }
}

impl Tree for serde_json::Map<String, serde_json::Value> {
    type Value = serde_json::Value;
    fn child(&mut self, key: &str) -> &mut Self {
        let entry = self
            .entry(key.to_string())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if !entry.is_object() {
            *entry = serde_json::Value::Object(serde_json::Map::new());
        }
        match entry {
            serde_json::Value::Object(t) => t,
            _ => unreachable!("made an object above"),
        }
    }
    fn put(&mut self, key: &str, value: serde_json::Value) {
        self.insert(key.to_string(), value);
    }
}

/// `base` with up to `most` keys of [`KEYS`] given random values, as text.
fn mutated(base: &'static str, most: usize) -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(KEYS), toml_value()), 0..most).prop_map(
        move |pairs| {
            let mut root: toml::Table = toml::from_str(base).unwrap_or_default();
            for (key, value) in pairs {
                root.set(key, value);
            }
            toml::to_string(&root).unwrap_or_default()
        },
    )
}

/// A spec's text: up to a dozen keys of [`KEYS`], each given a random value.
fn spec_text() -> impl Strategy<Value = String> {
    mutated("", 12)
}

/// A valid study of each kind, with up to three keys changed.
fn study_text() -> impl Strategy<Value = String> {
    const SCALING: &str =
        "name = \"s\"\nseeds = [0, 1]\n[sizes]\ndepths = [1, 2]\n[budget]\ntokens = [4096, 8192]\n";
    const TRANSFER: &str = "name = \"t\"\n[sizes]\ndepths = [1]\n[pretrain]\ntokens = 4096\n[finetune]\ndata = { corpus = \"dir\", path = \"code\" }\ntokens = [256, 512]\nmethods = [\"full\", \"lora\", \"lp-ft\"]\n";
    const GRID: &str = "name = \"g\"\nseeds = [0]\nmodels = [{ preset = \"mlp-small\" }, { family = \"cnn\", width = 4 }]\ntrain_fractions = [0.5, 1.0]\n[base.data]\ndataset = \"digits\"\n";
    prop_oneof![mutated(SCALING, 4), mutated(TRANSFER, 4), mutated(GRID, 4)]
}

/// Numbers as flags give them: any u64, and the edges of usize, which TOML cannot hold.
fn flag_number() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::json!(u64::MAX)),
        Just(serde_json::json!(u64::MAX - 1)),
        Just(serde_json::json!(usize::MAX / 2)),
        Just(serde_json::json!(u32::MAX)),
        Just(serde_json::json!(1u64 << 40)),
        Just(serde_json::json!(0)),
        any::<u64>().prop_map(|v| serde_json::json!(v)),
        float()
            .prop_filter("JSON holds finite numbers", |f| f.is_finite())
            .prop_map(|v| serde_json::json!(v)),
    ]
}

/// A spec as JSON whose numeric keys take flag-sized numbers.
fn flag_spec() -> impl Strategy<Value = serde_json::Value> {
    prop::collection::vec((prop::sample::select(KEYS), flag_number()), 1..6).prop_map(|pairs| {
        let mut root = serde_json::Map::new();
        for (key, value) in pairs {
            root.set(key, value);
        }
        serde_json::Value::Object(root)
    })
}

/// What the program does with a language-model run spec before it trains: resolve it, then
/// count its parameters, FLOPs and steps, and name it. Whether any vocabulary resolved.
fn use_run_spec(spec: &scalelab_spec::RunSpec) -> bool {
    let mut any = false;
    for vocab in [256, 1, 0, 50_257] {
        if let Ok(config) = spec.resolve(vocab, None) {
            let _ = config.planned_steps();
            let _ = config.model.param_counts();
            let _ = config.model.flops_per_token();
            let _ = run_id(&config);
            any = true;
        }
    }
    any
}

/// The same for a classification spec, on each kind of input.
fn use_classify_spec(spec: &ClassifySpec) -> bool {
    let mut any = false;
    let inputs = [
        InputShape::Image([1, 28, 28]),
        InputShape::Image([1, 8, 8]),
        InputShape::Tokens {
            vocab: 1001,
            ctx: 48,
            per_token: false,
        },
        InputShape::Tokens {
            vocab: 13_065,
            ctx: 48,
            per_token: true,
        },
    ];
    for input in inputs {
        if let Ok(config) = spec.resolve(input, 10, None) {
            let _ = config.planned_steps();
            let _ = config.model.param_counts();
            let _ = config.model.flops_per_sample();
            let _ = config.model.describe();
            let _ = run_id(&config);
            any = true;
        }
    }
    any
}

/// Study files: parse, check, and plan where planning needs no corpus.
/// Whether any kind of study was planned.
fn use_study_text(text: &str) -> bool {
    let file = Path::new("fuzz.toml");
    let mut any = false;
    if let Ok(s) = toml::from_str::<StudySpec>(text) {
        let _ = s.check();
        any |= scalelab_sweep::plan_study(&s, &s.data, 256, file).is_ok();
    }
    if let Ok(s) = toml::from_str::<TransferStudySpec>(text)
        && s.check().is_ok()
    {
        let _ = s.lora_ranks();
        let dir = Path::new("studies/fuzz");
        any |= scalelab_sweep::plan_transfer_study(&s, dir, file).is_ok();
    }
    if let Ok(s) = toml::from_str::<ClassifyStudySpec>(text)
        && let Ok(cells) = s.expand()
    {
        for (_, spec) in cells.iter().take(8) {
            use_classify_spec(spec);
        }
        let input = InputShape::Image([1, 8, 8]);
        any |= scalelab_sweep::plan_classify_study(&s, input, 10, file).is_ok();
    }
    any
}

#[test]
fn run_specs_from_toml_resolve_or_refuse() {
    fuzz("run specs (TOML)", spec_text(), |text| {
        toml::from_str::<scalelab_spec::RunSpec>(&text).is_ok_and(|spec| use_run_spec(&spec))
    });
}

#[test]
fn run_specs_with_flag_numbers_resolve_or_refuse() {
    fuzz("run specs (flag-sized numbers)", flag_spec(), |value| {
        serde_json::from_value::<scalelab_spec::RunSpec>(value)
            .is_ok_and(|spec| use_run_spec(&spec))
    });
}

#[test]
fn classification_specs_resolve_or_refuse() {
    fuzz(
        "classification specs (TOML and flags)",
        (spec_text(), flag_spec()),
        |(text, value)| {
            let a = toml::from_str::<ClassifySpec>(&text).is_ok_and(|s| use_classify_spec(&s));
            let b =
                serde_json::from_value::<ClassifySpec>(value).is_ok_and(|s| use_classify_spec(&s));
            a || b
        },
    );
}

#[test]
fn study_files_check_or_refuse() {
    fuzz("study files", study_text(), |text| use_study_text(&text));
}

/// An IDX header (two zero bytes, the element type, the rank, the sizes) and a body.
fn idx_bytes() -> impl Strategy<Value = Vec<u8>> {
    let dim = prop_oneof![Just(0u32), Just(1), Just(28), Just(u32::MAX), any::<u32>()];
    let kind = prop_oneof![Just(0x08u8), Just(0x09), Just(0x0d), any::<u8>()];
    (
        prop::collection::vec(dim, 0..4),
        kind,
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(dims, kind, tail)| {
            let mut bytes = vec![0u8, 0, kind, dims.len() as u8];
            for d in &dims {
                bytes.extend(d.to_be_bytes());
            }
            bytes.extend(&tail);
            bytes
        })
}

#[test]
fn image_files_parse_or_refuse() {
    let csv = prop_oneof![
        "([0-9]{1,2},){0,64}[0-9]{0,3}(\n([0-9]{1,2},){64}[0-9]{1,2}){0,2}",
        any::<String>(),
    ];
    fuzz(
        "IDX and digits CSV files",
        (idx_bytes(), csv),
        |(bytes, csv)| {
            let path = Path::new("fuzz.idx");
            let mut any = false;
            for cut in [bytes.len(), bytes.len() / 2, 3] {
                any |=
                    scalelab_data::images::parse_idx(path, &bytes[..cut.min(bytes.len())]).is_ok();
            }
            any | scalelab_data::images::parse_digits_csv(Path::new("fuzz.csv"), &csv).is_ok()
        },
    );
}

#[test]
fn sentence_files_parse_or_refuse() {
    let tagged = prop_oneof![
        "([A-Za-z.,]{0,6}/[A-Z$]{0,4} ?){0,12}(\n([A-Za-z]{1,6}/[A-Z]{1,3} ){1,8}){0,3}",
        any::<String>(),
    ];
    let json = prop_oneof![
        r#"\[(\{"text": "[a-z ]{0,12}", "class": (0|1|2|-1|null|"x"|1e400)\},? ?){0,4}\]"#,
        any::<String>(),
    ];
    let csv = prop_oneof![
        "(-?[0-9]{0,2}(\\.[0-9])?,[a-z \"]{0,12}\n){0,4}",
        any::<String>(),
    ];
    let max_tokens = prop_oneof![Just(0usize), Just(1), Just(48), Just(usize::MAX)];
    fuzz(
        "tagged, JSON and CSV sentence files",
        (tagged, json, csv, max_tokens),
        |(tagged, json, csv, max_tokens)| {
            let path = Path::new("fuzz.txt");
            let tagged = scalelab_data::tagged::parse_tagged(path, &tagged)
                .is_ok_and(|s| scalelab_data::tagged::tagged_splits(s, max_tokens).is_ok());
            let json = scalelab_data::text_sets::parse_sentiment_json(path, &json).is_ok();
            tagged | json | scalelab_data::text_sets::parse_pang_lee_csv(path, &csv).is_ok()
        },
    );
}

/// Numbers as a user may type them, at the edges and past them.
const TYPED: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "1e-320",
    "0.5",
    "",
    "x",
];

/// The program itself, given a tiny run and one to three flags at extreme values: it trains,
/// or refuses with a message (exit 1 or 2), or records a diverged run (exit 3), and never
/// panics. `FUZZ_PROCESS_CASES` commands (default 150: each is a process that may train).
#[test]
fn the_program_answers_extreme_flags_without_panicking() {
    const TRAIN: &[&str] = &[
        "--depth",
        "--aspect-ratio",
        "--n-layers",
        "--d-model",
        "--n-heads",
        "--grad-accum",
        "--lr",
        "--momentum",
        "--weight-decay",
        "--l1",
        "--l2",
        "--patience",
        "--eval-every",
        "--eval-tokens",
        "--seed",
        "--checkpoint-every",
        "--stop-after",
        "--lora-rank",
        "--lora-alpha",
        "--freeze-layers",
        "--body-lr-ratio",
    ];
    let cases = std::env::var("FUZZ_PROCESS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let flags = prop::collection::vec(
        (prop::sample::select(TRAIN), prop::sample::select(TYPED)),
        1..4,
    );
    let mut config = config();
    config.cases = cases;
    let count = AtomicU64::new(0);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&flags, |flags| {
        count.fetch_add(1, Ordering::Relaxed);
        let mut args: Vec<String> =
            "train --depth 1 --ctx 16 --tokens 256 --batch 2 --threads 1 --fresh"
                .split(' ')
                .map(str::to_string)
                .collect();
        for (flag, value) in &flags {
            args.push(format!("{flag}={value}"));
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scalelab"))
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("running scalelab: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        prop_assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        prop_assert!(
            matches!(out.status.code(), Some(0..=3)),
            "{args:?}: exit {:?}: {stderr}",
            out.status.code()
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("fuzz the program's flags: {e}");
    }
    let n = count.load(Ordering::Relaxed);
    let _ = writeln!(
        std::io::stderr(),
        "fuzz the program's flags: {n} commands, no panic"
    );
}

/// The commands issue 22 found panicking, and what this harness found, each refused with the
/// key and the limit.
#[test]
fn the_panics_found_are_clear_errors_now() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for (line, says) in [
        ("info --depth 100000", "model.d_model"),
        (
            "info --d-model 4000000000 --n-layers 4000000000",
            "more than the 1e13",
        ),
        ("train --tokens 18446744073709551615", "train.budget_tokens"),
        ("train --flops 1e308", "train.budget_flops"),
        (
            "train --tokens 256 --grad-accum 4294967296",
            "at most 16777216 a step",
        ),
        (
            "classify --batch 1000000 --samples 100",
            "at most 65536 a step",
        ),
        (
            "classify --samples 18446744073709551615",
            "train.budget_samples",
        ),
        // 786 GB estimated: refused before anything is allocated, not killed for memory
        // minutes later.
        (
            "train --n-layers 48 --d-model 4096 --n-heads 32 --ctx 2048 --batch 8",
            "more than this machine's",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scalelab"))
            .args(line.split(' '))
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("running scalelab: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{line}: {stderr}");
        assert!(stderr.contains(says), "{line}: no {says:?} in {stderr}");
        assert!(!stderr.contains("panicked"), "{line}: {stderr}");
    }
}

/// A CSV of `header`'s columns and rows of typed numbers (or words).
fn csv_text(columns: &'static [&'static str]) -> impl Strategy<Value = String> {
    let cell = prop_oneof![
        3 => prop::sample::select(TYPED).prop_map(str::to_string),
        3 => (1e-3f64..1e12).prop_map(|v| format!("{v:.4e}")),
        1 => word(),
    ];
    (
        prop::sample::subsequence(columns, 0..=columns.len()),
        prop::collection::vec(prop::collection::vec(cell, 0..8), 0..8),
    )
        .prop_map(|(header, rows)| {
            let mut text = header.join(",");
            for row in rows {
                text.push('\n');
                text.push_str(&row.join(","));
            }
            text
        })
}

/// What a file fuzzed into the program is, and the command that reads it.
#[derive(Debug, Clone)]
enum FileCase {
    /// `fit --law LAW --input f.csv`.
    Fit(&'static str, String),
    /// `emergence --input f.csv`.
    Emergence(String),
    /// `train --corpus text|jsonl --data f`.
    Corpus(&'static str, Vec<u8>),
    /// `study status DIR` over a damaged `study.sqlite`.
    Store(Vec<u8>),
    /// `train --init-from DIR` over a damaged run record.
    Record(Vec<u8>),
    /// `train --config spec.toml` whose `data.tokenizer_file` is damaged.
    Tokenizer(Vec<u8>),
    /// `train` resuming a checkpoint one of whose files (`state.json`, `model.safetensors`,
    /// `optimizer.bpk`) is damaged: replaced, or cut short.
    Checkpoint(&'static str, Vec<u8>, Option<usize>),
}

fn file_case() -> impl Strategy<Value = FileCase> {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        any::<String>().prop_map(String::into_bytes),
        "(\\{\"text\": \"[a-z \\\\]{0,20}\"\\}\n){0,6}".prop_map(String::into_bytes),
        Just(vec![b'a'; 1 << 16]),
    ];
    prop_oneof![
        (
            prop::sample::select(vec!["chinchilla", "kaplan", "power", "transfer"]),
            csv_text(&["N", "D", "loss", "D_F", "D_T", "x"]),
        )
            .prop_map(|(law, csv)| FileCase::Fit(law, csv)),
        csv_text(&[
            "scale",
            "task",
            "metric",
            "value",
            "n_test",
            "answer_tokens"
        ])
        .prop_map(FileCase::Emergence),
        (prop::sample::select(vec!["text", "jsonl"]), bytes.clone())
            .prop_map(|(kind, b)| FileCase::Corpus(kind, b)),
        bytes.clone().prop_map(FileCase::Store),
        bytes.clone().prop_map(FileCase::Record),
        prop_oneof![
            bytes.clone(),
            r#"\{"model": \{"type": "(BPE|WordPiece|Unigram|x)", "vocab": \{("[a-z]": [0-9]{1,3},? ?){0,4}\}\}\}"#
                .prop_map(String::into_bytes),
        ]
        .prop_map(FileCase::Tokenizer),
        (
            prop::sample::select(vec!["state.json", "model.safetensors", "optimizer.bpk"]),
            bytes,
            prop::option::of(0usize..4096),
        )
            .prop_map(|(file, b, cut)| FileCase::Checkpoint(file, b, cut)),
    ]
}

/// Damaged and hostile files given to the commands that read them: each is read or refused
/// (exit 1 or 2), never a panic. `FUZZ_FILE_CASES` files (default 1,000).
#[test]
fn the_program_answers_damaged_files_without_panicking() {
    let cases = std::env::var("FUZZ_FILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let root = dir.path();
    // A run stopped at its first checkpoint, kept whole to damage a copy of each case.
    const RESUMED: &str = "train --depth 1 --ctx 16 --tokens 4096 --batch 2 --threads 1 --checkpoint-every 1024 --out ck";
    let first = std::process::Command::new(env!("CARGO_BIN_EXE_scalelab"))
        .args(RESUMED.split(' '))
        .args(["--stop-after", "1024"])
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("running scalelab: {e}"));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let run = std::fs::read_dir(root.join("ck"))
        .unwrap_or_else(|e| panic!("{e}"))
        .find_map(|e| e.ok())
        .unwrap_or_else(|| panic!("no run directory"))
        .path();
    let pristine: Vec<(String, Vec<u8>)> = ["state.json", "model.safetensors", "optimizer.bpk"]
        .iter()
        .map(|f| {
            let path = run.join("checkpoint").join(f);
            (
                f.to_string(),
                std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            )
        })
        .collect();
    let mut config = config();
    config.cases = cases;
    let count = AtomicU64::new(0);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&file_case(), |case| {
        count.fetch_add(1, Ordering::Relaxed);
        let write = |name: &str, bytes: &[u8]| {
            let path = root.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
            }
            std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        };
        let _ = std::fs::remove_dir_all(root.join("s"));
        let line = match &case {
            FileCase::Fit(law, csv) => {
                write("f.csv", csv.as_bytes());
                format!("fit --law {law} --bootstrap 0 --input f.csv")
            }
            FileCase::Emergence(csv) => {
                write("e.csv", csv.as_bytes());
                "emergence --bootstrap 10 --input e.csv".to_string()
            }
            FileCase::Corpus(kind, bytes) => {
                write("corpus.txt", bytes);
                format!("train --corpus {kind} --data corpus.txt --depth 1 --ctx 16 --tokens 64 --batch 2 --threads 1 --fresh")
            }
            FileCase::Store(bytes) => {
                write("s/study.sqlite", bytes);
                "study status s".to_string()
            }
            FileCase::Record(bytes) => {
                write("s/record.json", bytes);
                write("s/weights.safetensors", bytes);
                "train --init-from s --depth 1 --ctx 16 --tokens 64 --threads 1 --fresh".to_string()
            }
            FileCase::Tokenizer(bytes) => {
                write("tok.json", bytes);
                write(
                    "spec.toml",
                    b"[data]\ntokenizer = \"bpe\"\ntokenizer_file = \"tok.json\"\n",
                );
                "train --config spec.toml --depth 1 --ctx 16 --tokens 64 --threads 1 --fresh"
                    .to_string()
            }
            FileCase::Checkpoint(file, bytes, cut) => {
                // As it was when stopped: no record yet, the checkpoint whole.
                let _ = std::fs::remove_file(run.join("record.json"));
                let _ = std::fs::create_dir_all(run.join("checkpoint"));
                for (name, original) in &pristine {
                    let path = run.join("checkpoint").join(name);
                    std::fs::write(&path, original).unwrap_or_else(|e| panic!("{e}"));
                }
                let damaged = match cut {
                    // Cut short: the original's first bytes.
                    Some(n) => {
                        let original = &pristine.iter().find(|(n2, _)| n2 == file).unwrap_or_else(|| panic!("{file}")).1;
                        original[..(*n).min(original.len())].to_vec()
                    }
                    None => bytes.clone(),
                };
                std::fs::write(run.join("checkpoint").join(file), damaged)
                    .unwrap_or_else(|e| panic!("{e}"));
                RESUMED.to_string()
            }
        };
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scalelab"))
            .args(line.split(' '))
            .current_dir(root)
            .output()
            .unwrap_or_else(|e| panic!("running scalelab: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        prop_assert!(!stderr.contains("panicked"), "{line}: {stderr}");
        prop_assert!(
            matches!(out.status.code(), Some(0..=3)),
            "{line}: exit {:?}: {stderr}",
            out.status.code()
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("fuzz files: {e}");
    }
    let n = count.load(Ordering::Relaxed);
    let _ = writeln!(std::io::stderr(), "fuzz damaged files: {n} files, no panic");
}
