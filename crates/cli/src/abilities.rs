//! The task half of a study's report: each completed run's record read from the store and
//! labelled, for the abilities analysis (`scalelab_analysis::abilities`), and the test
//! examples' scores read from beside the records.

use std::path::Path;

use anyhow::{Context, Result};
use scalelab_analysis::abilities::{self, AbilityAnalysis, AbilityRun};
use scalelab_spec::{ExampleScore, TASK_EXAMPLES_FILE};
use scalelab_sweep::{RunState, Store, StoredRun, run_dir};

use crate::human;

/// The abilities analysis of a study's completed runs; `None` when no run has a task.
pub(crate) fn analyse_abilities(
    store: &Store,
    runs: &[StoredRun],
    seed: u64,
) -> Result<Option<AbilityAnalysis>> {
    let budgets = {
        let mut b: Vec<u64> = runs.iter().map(|r| r.planned_tokens).collect();
        b.sort_unstable();
        b.dedup();
        b.len()
    };
    let mut read = Vec::new();
    for r in runs.iter().filter(|r| r.status == RunState::Completed) {
        if let Some(record) = store.run_record(&r.run_id)? {
            let label = if budgets > 1 {
                format!("{} · {} tokens", r.size, human(r.planned_tokens as f64))
            } else {
                r.size.clone()
            };
            read.push((r, label, record));
        }
    }
    let runs: Vec<AbilityRun<'_>> = read
        .iter()
        .map(|(r, label, record)| AbilityRun {
            label,
            size: &r.size,
            n: r.n,
            record,
        })
        .collect();
    Ok(abilities::analyse_abilities(&runs, seed))
}

/// Each size's per-example test scores at its last evaluation, from the `task_examples.csv`
/// beside the record of its completed run with the largest budget: `(N, scores)`, sizes in
/// order of first appearance; sizes whose run wrote none are left out.
pub(crate) fn final_examples(
    study_dir: &Path,
    runs: &[StoredRun],
) -> Result<Vec<(f64, Vec<ExampleScore>)>> {
    let mut sizes: Vec<&str> = Vec::new();
    for r in runs {
        if !sizes.contains(&r.size.as_str()) {
            sizes.push(&r.size);
        }
    }
    let mut out = Vec::new();
    for size in sizes {
        let Some(run) = runs
            .iter()
            .filter(|r| r.size == size && r.status == RunState::Completed)
            .max_by_key(|r| r.planned_tokens)
        else {
            continue;
        };
        let path = run_dir(study_dir, &run.run_id).join(TASK_EXAMPLES_FILE);
        if !path.exists() {
            continue;
        }
        let mut reader = csv::Reader::from_path(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let scores = reader
            .deserialize()
            .collect::<Result<Vec<ExampleScore>, _>>()
            .with_context(|| {
                format!(
                    "{}: not a table of example scores\nhint: the run writes it at its last evaluation; delete the file and re-run the run to rewrite it",
                    path.display()
                )
            })?;
        out.push((run.n, scores));
    }
    Ok(out)
}
