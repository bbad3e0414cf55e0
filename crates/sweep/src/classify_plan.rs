//! Classification studies resolved into planned runs: every cell of the grid (model ×
//! training fraction × regulariser × seed × fold) resolved and checked before anything
//! trains, with its id, counts, samples and FLOPs.

use std::path::Path;

use scalelab_spec::{
    ClassifyConfig, ClassifyRecord, ClassifySpec, ClassifyStudySpec, InputShape, ParamCounts,
    SampleBudget, StudyCell, run_id,
};
use serde::{Deserialize, Serialize};

use crate::SweepError;

/// One run of a classification study, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedClassify {
    /// Identity: hash of the resolved config (the same as `scalelab classify` computes).
    pub run_id: String,
    /// Its place in the grid.
    pub cell: StudyCell,
    /// The spec the child process trains (its fold set).
    pub spec: ClassifySpec,
    /// Its resolved config.
    pub config: ClassifyConfig,
    /// Parameter counts in both conventions.
    pub params: ParamCounts,
    /// Training FLOPs per sample.
    pub flops_per_sample: f64,
    /// Samples the run will train on (the budget rounded up to whole steps).
    pub samples: u64,
    /// Training FLOPs it will spend.
    pub flops: f64,
}

impl PlannedClassify {
    /// Plans one run of `spec` in `cell` for data of `input` with `classes` classes.
    pub fn new(
        cell: StudyCell,
        spec: ClassifySpec,
        input: InputShape,
        classes: usize,
    ) -> Result<Self, scalelab_spec::SpecError> {
        let config = spec.resolve(input, classes, None)?;
        Self::of_config(cell, spec, config)
    }

    /// The planned row of a run already recorded (a store migrated from schema version 1,
    /// which kept only finished classification runs): counts, samples and FLOPs from its
    /// record's config, its id the record's; its spec is left at the default, as a recorded
    /// run is never trained again.
    pub fn of_record(
        cell: StudyCell,
        record: &ClassifyRecord,
    ) -> Result<Self, scalelab_spec::SpecError> {
        let mut planned = Self::of_config(cell, ClassifySpec::default(), record.config.clone())?;
        planned.run_id.clone_from(&record.run_id);
        Ok(planned)
    }

    fn of_config(
        cell: StudyCell,
        spec: ClassifySpec,
        config: ClassifyConfig,
    ) -> Result<Self, scalelab_spec::SpecError> {
        let (steps, per_step) = config.planned_steps();
        let samples = steps.saturating_mul(per_step);
        let flops_per_sample = config.model.flops_per_sample();
        Ok(PlannedClassify {
            run_id: run_id(&config)?,
            cell,
            spec,
            params: config.model.param_counts(),
            flops_per_sample,
            samples,
            flops: samples as f64 * flops_per_sample,
            config,
        })
    }

    /// `samples` or `flops`: the axis of its budget, and the value on it.
    pub fn budget(&self) -> (&'static str, f64) {
        match self.config.train.budget {
            SampleBudget::Samples(s) => ("samples", s as f64),
            SampleBudget::Flops(f) => ("flops", f),
        }
    }
}

/// A classification study, resolved: every cell planned, in the grid's order (model,
/// training fraction, regulariser, seed, fold).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyPlan {
    /// The study as written.
    pub spec: ClassifyStudySpec,
    /// Its runs, in the grid's order.
    pub runs: Vec<PlannedClassify>,
}

impl ClassifyPlan {
    /// Total training FLOPs of the study.
    pub fn total_flops(&self) -> f64 {
        self.runs.iter().map(|r| r.flops).sum()
    }
}

/// Expands and resolves every cell of `spec` for data of `input` with `classes` classes,
/// before anything trains: a cell that does not resolve is an error naming the file, the
/// cell and the key.
pub fn plan_classify_study(
    spec: &ClassifyStudySpec,
    input: InputShape,
    classes: usize,
    file: &Path,
) -> Result<ClassifyPlan, SweepError> {
    let to_err = |source| SweepError::Spec {
        path: file.to_path_buf(),
        source,
    };
    let cells = spec.expand().map_err(to_err)?;
    let mut runs = Vec::with_capacity(cells.len());
    for (i, (cell, run_spec)) in cells.into_iter().enumerate() {
        let label = format!("{} (run {})", cell.model, i + 1);
        let planned =
            PlannedClassify::new(cell, run_spec, input, classes).map_err(|e| SweepError::Cell {
                path: file.to_path_buf(),
                cell: label,
                source: e,
            })?;
        runs.push(planned);
    }
    Ok(ClassifyPlan {
        spec: spec.clone(),
        runs,
    })
}
