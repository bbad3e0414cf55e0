//! Synthetic tasks: seeded, exact generators of prompt/answer examples, their train/test
//! split, and the batches a model trains on.
//!
//! An example's identity is its prompt (the answer is a function of it), so "disjoint splits"
//! means no prompt is in both. The test set is drawn first, from a ChaCha8 stream keyed by the
//! task seed; a fixed training set is drawn next from another stream, skipping test prompts;
//! with no fixed training set every batch draws fresh examples and rejects test prompts. The
//! `mod_*` tasks enumerate the whole table and shuffle it instead, as Power et al. 2022 split
//! it. Nothing depends on the training seed, so every run of a study sees the same test set.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scalelab_spec::{ModOp, RESIDUE_TOKEN_BASE, TaskConfig, TaskKind, TaskTrainSet};

use crate::{Batch, TokenData};

/// Separator between packed examples when a task is mixed into a corpus.
const SEPARATOR: u32 = b'\n' as u32;
/// Streams of the split generator.
const TEST_STREAM: u64 = 1;
const TRAIN_STREAM: u64 = 2;
const PROBE_STREAM: u64 = 3;
/// Key mixed into the training seed for a task's batches, so they do not reuse the corpus's.
const BATCH_KEY: u64 = 0x7a5c_0000_0000_0001;

/// One example: a prompt and its answer, as byte-vocabulary token ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Example {
    /// What the model reads.
    pub prompt: Vec<u32>,
    /// What it should continue with.
    pub answer: Vec<u32>,
}

impl Example {
    /// The example as text (residue tokens of the `mod_*` tasks are shown as `<r>`).
    pub fn render(&self) -> String {
        let token = |&t: &u32| match u8::try_from(t) {
            Ok(b) if b.is_ascii() => char::from(b).to_string(),
            _ => format!("<{}>", t.saturating_sub(RESIDUE_TOKEN_BASE)),
        };
        let prompt: String = self.prompt.iter().map(token).collect();
        let answer: String = self.answer.iter().map(token).collect();
        format!("{prompt}{answer}")
    }
}

fn ascii(text: &str) -> Vec<u32> {
    text.bytes().map(u32::from).collect()
}

/// a⁻¹ mod p for prime p, by Fermat's little theorem.
fn inverse_mod(b: u64, p: u64) -> u64 {
    let (mut result, mut base, mut exp) = (1u64, b % p, p - 2);
    while exp > 0 {
        if exp & 1 == 1 {
            result = result * base % p;
        }
        base = base * base % p;
        exp >>= 1;
    }
    result
}

/// The example `a ∘ b mod p`.
pub fn modular_example(op: ModOp, modulus: u32, a: u32, b: u32) -> Example {
    let (p, x, y) = (u64::from(modulus), u64::from(a), u64::from(b));
    let c = match op {
        ModOp::Add => (x + y) % p,
        ModOp::Sub => (x + p - y) % p,
        ModOp::Mul => x * y % p,
        ModOp::Div => x * inverse_mod(y, p) % p,
    };
    let residue = |r: u64| RESIDUE_TOKEN_BASE + r as u32;
    Example {
        prompt: vec![
            residue(x),
            u32::from(op.symbol()),
            residue(y),
            u32::from(b'='),
        ],
        answer: vec![residue(c)],
    }
}

/// One random example of a task (the `mod_*` tasks draw a random pair).
pub fn random_example(kind: &TaskKind, rng: &mut impl Rng) -> Example {
    let letters = |rng: &mut dyn rand::RngCore, n: usize| -> String {
        (0..n)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect()
    };
    match *kind {
        TaskKind::ModularArithmetic { op, modulus } => {
            let a = rng.random_range(0..modulus);
            let low = u32::from(op == ModOp::Div);
            let b = rng.random_range(low..modulus);
            modular_example(op, modulus, a, b)
        }
        TaskKind::Addition { digits } | TaskKind::Multiplication { digits } => {
            let bound = 10u64.pow(digits as u32);
            let (a, b) = (rng.random_range(0..bound), rng.random_range(0..bound));
            let (symbol, value, width) = match kind {
                TaskKind::Addition { .. } => ('+', a + b, digits + 1),
                _ => ('*', a * b, 2 * digits),
            };
            Example {
                prompt: ascii(&format!("{a:0digits$}{symbol}{b:0digits$}=")),
                answer: ascii(&format!("{value:0width$}")),
            }
        }
        TaskKind::Copy { length } | TaskKind::Reverse { length } => {
            let text = letters(rng, length);
            let answer = match kind {
                TaskKind::Copy { .. } => text.clone(),
                _ => text.chars().rev().collect(),
            };
            Example {
                prompt: ascii(&format!("{text}|")),
                answer: ascii(&answer),
            }
        }
        TaskKind::Recall { pairs } => {
            let mut keys: Vec<u8> = (b'a'..=b'z').collect();
            keys.shuffle(rng);
            keys.truncate(pairs);
            let values: Vec<u8> = (0..pairs)
                .map(|_| b'0' + rng.random_range(0..10u8))
                .collect();
            let query = rng.random_range(0..pairs);
            let mut prompt: Vec<u32> = keys
                .iter()
                .zip(&values)
                .flat_map(|(&k, &v)| [u32::from(k), u32::from(v)])
                .collect();
            prompt.extend([u32::from(b'|'), u32::from(keys[query])]);
            Example {
                prompt,
                answer: vec![u32::from(values[query])],
            }
        }
        TaskKind::Parity { bits } => {
            let bits: Vec<bool> = (0..bits).map(|_| rng.random_bool(0.5)).collect();
            let ones = bits.iter().filter(|&&b| b).count();
            let mut prompt: Vec<u32> = bits
                .iter()
                .map(|&b| u32::from(if b { b'1' } else { b'0' }))
                .collect();
            prompt.push(u32::from(b'='));
            Example {
                prompt,
                answer: vec![u32::from(b'0') + (ones % 2) as u32],
            }
        }
    }
}

fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// `n` examples with distinct prompts, none in `exclude`. The task spec guarantees the space
/// is large enough (see `TaskSpec::resolve`).
fn distinct(
    kind: &TaskKind,
    rng: &mut ChaCha8Rng,
    n: usize,
    exclude: &HashSet<Vec<u32>>,
) -> Vec<Example> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let example = random_example(kind, rng);
        if !exclude.contains(&example.prompt) && seen.insert(example.prompt.clone()) {
            out.push(example);
        }
    }
    out
}

/// A task's examples: the test set, and the training set or the rule that draws it.
pub struct TaskData {
    /// The resolved task.
    pub config: TaskConfig,
    /// Held-out examples, in a fixed order.
    pub test: Vec<Example>,
    /// The fixed training set; `None` when every batch draws fresh examples.
    pub train: Option<Vec<Example>>,
    test_prompts: HashSet<Vec<u32>>,
}

impl TaskData {
    /// Generates the split of a task.
    pub fn generate(config: &TaskConfig) -> Self {
        let kind = &config.kind;
        let (test, train) = match (kind, config.train) {
            (TaskKind::ModularArithmetic { op, modulus }, TaskTrainSet::Fraction(f)) => {
                let low = u32::from(*op == ModOp::Div);
                let mut table: Vec<Example> = (0..*modulus)
                    .flat_map(|a| (low..*modulus).map(move |b| (a, b)))
                    .map(|(a, b)| modular_example(*op, *modulus, a, b))
                    .collect();
                table.shuffle(&mut stream(config.seed, TRAIN_STREAM));
                let n_train = (f * table.len() as f64).round() as usize;
                let mut test = table.split_off(n_train);
                test.truncate(config.test_size);
                (test, Some(table))
            }
            _ => {
                let none = HashSet::new();
                let test = distinct(
                    kind,
                    &mut stream(config.seed, TEST_STREAM),
                    config.test_size,
                    &none,
                );
                let prompts: HashSet<Vec<u32>> = test.iter().map(|e| e.prompt.clone()).collect();
                let train = match config.train {
                    TaskTrainSet::Size(n) => Some(distinct(
                        kind,
                        &mut stream(config.seed, TRAIN_STREAM),
                        n,
                        &prompts,
                    )),
                    _ => None,
                };
                (test, train)
            }
        };
        let test_prompts = test.iter().map(|e| e.prompt.clone()).collect();
        Self {
            config: config.clone(),
            test,
            train,
            test_prompts,
        }
    }

    /// Whether `prompt` is held out.
    pub fn is_test_prompt(&self, prompt: &[u32]) -> bool {
        self.test_prompts.contains(prompt)
    }

    /// One training example drawn with `rng`: uniform over the fixed training set, or a fresh
    /// example that is not in the test set.
    pub fn train_example(&self, rng: &mut impl Rng) -> Example {
        match &self.train {
            Some(train) => train[rng.random_range(0..train.len())].clone(),
            None => loop {
                let example = random_example(&self.config.kind, rng);
                if !self.is_test_prompt(&example.prompt) {
                    return example;
                }
            },
        }
    }

    /// A fixed sample of at most `n` training examples, to measure training accuracy.
    pub fn train_probe(&self, n: usize) -> Vec<Example> {
        let mut rng = stream(self.config.seed, PROBE_STREAM);
        match &self.train {
            Some(train) => train.iter().take(n).cloned().collect(),
            None => (0..n).map(|_| self.train_example(&mut rng)).collect(),
        }
    }

    /// Training batch `index` of a run with `seed` on the task alone: one example a row,
    /// loss on the answer tokens only.
    pub fn train_batch(&self, seed: u64, index: u64, batch: usize) -> Batch {
        let mut rng = stream(seed ^ BATCH_KEY, index);
        let examples: Vec<Example> = (0..batch).map(|_| self.train_example(&mut rng)).collect();
        answer_batch(&examples)
    }

    /// A window of `ctx + 1` tokens over training examples packed one after another with a
    /// newline between them, starting inside the first one, for language modelling.
    fn packed_window(&self, rng: &mut impl Rng, ctx: usize) -> (Vec<i64>, Vec<i64>) {
        let mut stream = Vec::with_capacity(2 * ctx + 2);
        let skip = rng.random_range(0..=self.config.kind.context_needed() + 1);
        while stream.len() < skip + ctx + 1 {
            let example = self.train_example(rng);
            stream.extend(example.prompt);
            stream.extend(example.answer);
            stream.push(SEPARATOR);
        }
        let window = &stream[skip..skip + ctx + 1];
        (
            window[..ctx].iter().map(|&t| i64::from(t)).collect(),
            window[1..].iter().map(|&t| i64::from(t)).collect(),
        )
    }
}

/// A batch of whole examples, one a row: inputs are the prompt and the answer but its last
/// token, and the loss counts from the position that predicts the first answer token.
///
/// # Panics
/// If `examples` is empty or the examples differ in length (one task's never do).
pub fn answer_batch(examples: &[Example]) -> Batch {
    let prompt_len = examples[0].prompt.len();
    let len = prompt_len + examples[0].answer.len();
    let mut inputs = Vec::with_capacity(examples.len() * (len - 1));
    let mut targets = Vec::with_capacity(examples.len() * (len - 1));
    for e in examples {
        assert_eq!(e.prompt.len() + e.answer.len(), len, "examples of one task");
        let tokens: Vec<i64> = e
            .prompt
            .iter()
            .chain(&e.answer)
            .map(|&t| i64::from(t))
            .collect();
        inputs.extend(&tokens[..len - 1]);
        targets.extend(&tokens[1..]);
    }
    Batch {
        inputs,
        targets,
        batch: examples.len(),
        ctx: len - 1,
        loss_start: prompt_len - 1,
    }
}

/// Levenshtein distance between two token sequences (insertions, deletions and
/// substitutions of one token each cost 1).
pub fn edit_distance(a: &[u32], b: &[u32]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(x != y);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// What a run trains on: a corpus, a task alone, or a task mixed into a corpus.
pub enum TrainingData {
    /// Language modelling on a corpus.
    Text(TokenData),
    /// A task alone: one example a sequence, loss on the answer.
    Task(TaskData),
    /// A corpus with a share `mix` of its training sequences replaced by packed examples.
    Mixed {
        /// The corpus.
        text: TokenData,
        /// The task.
        task: TaskData,
    },
}

/// Examples per validation batch on a task.
const VAL_EXAMPLES_PER_BATCH: usize = 256;

impl TrainingData {
    /// The corpus and task data for a run: `text` is needed unless the task trains alone.
    pub fn new(text: Option<TokenData>, task: Option<&TaskConfig>) -> Option<Self> {
        match (text, task) {
            (Some(text), None) => Some(Self::Text(text)),
            (_, Some(task)) if task.mix >= 1.0 => Some(Self::Task(TaskData::generate(task))),
            (Some(text), Some(task)) => Some(Self::Mixed {
                text,
                task: TaskData::generate(task),
            }),
            (None, _) => None,
        }
    }

    /// The task, if the run has one.
    pub fn task(&self) -> Option<&TaskData> {
        match self {
            Self::Text(_) => None,
            Self::Task(task) | Self::Mixed { task, .. } => Some(task),
        }
    }

    /// Training batch number `index` of a run with `seed`.
    pub fn train_batch(&self, seed: u64, index: u64, batch: usize, ctx: usize) -> Batch {
        match self {
            Self::Text(text) => text.train_batch(seed, index, batch, ctx),
            Self::Task(task) => task.train_batch(seed, index, batch),
            Self::Mixed { text, task } => {
                let mut out = text.train_batch(seed, index, batch, ctx);
                let mut rng = stream(seed ^ BATCH_KEY, index);
                for row in 0..batch {
                    if rng.random_bool(task.config.mix) {
                        let (inputs, targets) = task.packed_window(&mut rng, ctx);
                        out.inputs[row * ctx..(row + 1) * ctx].copy_from_slice(&inputs);
                        out.targets[row * ctx..(row + 1) * ctx].copy_from_slice(&targets);
                    }
                }
                out
            }
        }
    }

    /// The fixed validation batches: the corpus sample, or the task's test set (answer loss).
    pub fn val_batches(&self, tokens: u64, batch: usize, ctx: usize) -> Vec<Batch> {
        match self {
            Self::Text(text) | Self::Mixed { text, .. } => text.val_batches(tokens, batch, ctx),
            Self::Task(task) => task
                .test
                .chunks(VAL_EXAMPLES_PER_BATCH)
                .map(answer_batch)
                .collect(),
        }
    }

    /// Distinct tokens of the corpus's training split; `None` for a task trained alone.
    pub fn unique_train_tokens(&self) -> Option<u64> {
        match self {
            Self::Text(text) | Self::Mixed { text, .. } => Some(text.train.len() as u64),
            Self::Task(_) => None,
        }
    }

    /// Bytes of text per validation token (1 for tasks: they are in the byte vocabulary).
    pub fn val_bytes_per_token(&self) -> f64 {
        match self {
            Self::Text(text) | Self::Mixed { text, .. } => text.val_bytes_per_token,
            Self::Task(_) => 1.0,
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use scalelab_spec::TaskSpec;

    fn task(spec: TaskSpec) -> TaskData {
        TaskData::generate(&spec.resolve().unwrap())
    }

    fn named(name: &str) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            ..TaskSpec::default()
        }
    }

    fn text(tokens: &[u32]) -> String {
        tokens.iter().map(|&t| char::from(t as u8)).collect()
    }

    /// Parses the operands back out of a prompt and checks the answer with u128 arithmetic.
    fn check_arithmetic(e: &Example, op: char, digits: usize) {
        let prompt = text(&e.prompt);
        let (a, rest) = prompt.split_once(op).unwrap();
        let b = rest.strip_suffix('=').unwrap();
        assert_eq!((a.len(), b.len()), (digits, digits), "{prompt}");
        let (a, b): (u128, u128) = (a.parse().unwrap(), b.parse().unwrap());
        let value: u128 = text(&e.answer).parse().unwrap();
        assert_eq!(
            value,
            if op == '+' { a + b } else { a * b },
            "{}",
            e.render()
        );
    }

    #[test]
    fn arithmetic_answers_are_right() {
        for digits in [1, 3, 9] {
            for (name, op, width) in [("add", '+', digits + 1), ("mul", '*', 2 * digits)] {
                let t = task(TaskSpec {
                    digits,
                    test_size: if digits == 1 { 20 } else { 200 },
                    ..named(name)
                });
                for e in t.test.iter().chain(&t.train_probe(50)) {
                    check_arithmetic(e, op, digits);
                    assert_eq!(e.answer.len(), width);
                }
            }
        }
        // Hand-checked: 999 + 999 = 1998, 999 × 999 = 998001.
        let nines = |s: &str| ascii(s);
        let add = Example {
            prompt: nines("999+999="),
            answer: nines("1998"),
        };
        check_arithmetic(&add, '+', 3);
    }

    #[test]
    fn modular_answers_are_right_for_every_pair() {
        for (name, op) in [
            ("mod_add", ModOp::Add),
            ("mod_sub", ModOp::Sub),
            ("mod_mul", ModOp::Mul),
            ("mod_div", ModOp::Div),
        ] {
            let t = task(TaskSpec {
                modulus: 13,
                test_size: 1000,
                ..named(name)
            });
            let train = t.train.as_ref().unwrap();
            let all: Vec<&Example> = train.iter().chain(&t.test).collect();
            let expected = if op == ModOp::Div { 13 * 12 } else { 13 * 13 };
            assert_eq!(all.len(), expected, "{name}: the whole table, split");
            for e in all {
                let a = e.prompt[0] - RESIDUE_TOKEN_BASE;
                let b = e.prompt[2] - RESIDUE_TOKEN_BASE;
                let c = e.answer[0] - RESIDUE_TOKEN_BASE;
                assert_eq!(e.prompt[1], u32::from(op.symbol()));
                assert!(c < 13);
                // Check against the definition: c ∘⁻¹ b = a.
                match op {
                    ModOp::Add => assert_eq!((c + 13 - b) % 13, a),
                    ModOp::Sub => assert_eq!((c + b) % 13, a),
                    ModOp::Mul => assert_eq!(a * b % 13, c),
                    ModOp::Div => assert_eq!(c * b % 13, a),
                }
            }
        }
        assert_eq!(inverse_mod(3, 7), 5); // 3·5 = 15 = 2·7 + 1
    }

    #[test]
    fn sequence_tasks_are_right() {
        let copy = task(named("copy"));
        let reverse = task(named("reverse"));
        for e in &copy.test {
            assert_eq!(&e.prompt[..8], &e.answer[..]);
            assert_eq!(e.prompt[8], u32::from(b'|'));
        }
        for e in &reverse.test {
            let mut r = e.answer.clone();
            r.reverse();
            assert_eq!(&e.prompt[..8], &r[..]);
        }
        let parity = task(TaskSpec {
            length: 16,
            ..named("parity")
        });
        for e in &parity.test {
            let ones = e.prompt.iter().filter(|&&t| t == u32::from(b'1')).count();
            assert_eq!(text(&e.answer), if ones % 2 == 0 { "0" } else { "1" });
        }
        for e in &task(named("recall")).test {
            let p = &e.prompt;
            let query = p[p.len() - 1];
            let keys: Vec<u32> = p[..8].iter().step_by(2).copied().collect();
            let unique: HashSet<&u32> = keys.iter().collect();
            assert_eq!(unique.len(), 4, "distinct keys: {}", e.render());
            let at = keys.iter().position(|&k| k == query).unwrap();
            assert_eq!(e.answer, vec![p[2 * at + 1]], "{}", e.render());
        }
    }

    #[test]
    fn splits_are_disjoint_and_seeded() {
        for spec in [
            TaskSpec {
                train_size: Some(500),
                ..named("add")
            },
            TaskSpec {
                modulus: 31,
                ..named("mod_mul")
            },
            named("recall"),
        ] {
            let a = task(spec.clone());
            let b = task(spec.clone());
            assert_eq!(a.test, b.test, "same seed, same test set");
            assert_eq!(a.train, b.train, "same seed, same training set");
            let test: HashSet<&Vec<u32>> = a.test.iter().map(|e| &e.prompt).collect();
            assert_eq!(test.len(), a.test.len(), "test prompts are distinct");
            for e in a.train_probe(2000) {
                assert!(
                    !test.contains(&e.prompt),
                    "{} is in both splits",
                    e.render()
                );
            }
            let mut rng = stream(7, 0);
            for _ in 0..2000 {
                assert!(!a.is_test_prompt(&a.train_example(&mut rng).prompt));
            }
            let other = task(TaskSpec { seed: 1, ..spec });
            assert_ne!(a.test, other.test, "another seed, another split");
        }
    }

    #[test]
    fn answer_batches_mask_the_prompt() {
        let e = Example {
            prompt: ascii("ab|"),
            answer: ascii("ab"),
        };
        let batch = answer_batch(&[e]);
        assert_eq!(batch.ctx, 4);
        assert_eq!(
            text(&batch.inputs.iter().map(|&t| t as u32).collect::<Vec<_>>()),
            "ab|a"
        );
        assert_eq!(
            text(&batch.targets.iter().map(|&t| t as u32).collect::<Vec<_>>()),
            "b|ab"
        );
        // Targets from position 2 on are the answer.
        assert_eq!(batch.loss_start, 2);
    }

    #[test]
    fn edit_distances() {
        let d = |a: &str, b: &str| edit_distance(&ascii(a), &ascii(b));
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("abc", "abc"), 0);
        assert_eq!(d("0579", "0597"), 2);
    }
}
