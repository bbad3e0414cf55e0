//! Distillation (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network"): a
//! student language model or classifier trained on `λ·CE(y, s) + (1 − λ)·τ²·KL(p_t^τ ‖ p_s^τ)`, where `p^τ`
//! is the softmax of the logits divided by the temperature τ, the teacher's computed without
//! gradients on the plain device. The τ² keeps the soft term's gradients on the scale of the
//! hard term's as τ changes (Hinton et al., §2).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use scalelab_data::Batch;
use scalelab_models::LanguageModel;
use scalelab_spec::{DistillConfig, RunConfig};

use crate::objective::token_tensors;
use crate::{RunOptions, TrainError};

/// `λ·CE + (1 − λ)·τ²·KL` of `student` against `targets` and `teacher` logits (`[B, T, V]`),
/// averaged over the positions from `start`, `[1]`.
pub(crate) fn distillation_loss(
    student: Tensor<3>,
    teacher: Tensor<3>,
    targets: Tensor<2, Int>,
    start: usize,
    temperature: f64,
    hard_weight: f64,
) -> Tensor<1> {
    let [b, t, v] = student.dims();
    let n = b * (t - start);
    let student = student.narrow(1, start, t - start).reshape([n, v]); // [n, V]
    let teacher = teacher.narrow(1, start, t - start).reshape([n, v]); // [n, V]
    let targets = targets.narrow(1, start, t - start).reshape([n, 1]); // [n, 1]
    row_distillation_loss(student, teacher, targets, temperature, hard_weight)
}

/// `λ·CE + (1 − λ)·τ²·KL` of `student` logits `[n, K]` against `targets` `[n, 1]` and the
/// `teacher`'s logits `[n, K]`, averaged over the rows, `[1]`: a language model's positions
/// or a classifier's examples.
pub(crate) fn row_distillation_loss(
    student: Tensor<2>,
    teacher: Tensor<2>,
    targets: Tensor<2, Int>,
    temperature: f64,
    hard_weight: f64,
) -> Tensor<1> {
    let hard = log_softmax(student.clone(), 1)
        .gather(1, targets)
        .neg()
        .mean(); // [1]
    let log_student = log_softmax(student.div_scalar(temperature), 1); // [n, V]
    let log_teacher = log_softmax(teacher.div_scalar(temperature), 1); // [n, V]
    let kl = (log_teacher.clone().exp() * (log_teacher - log_student))
        .sum_dim(1)
        .mean(); // [1]
    hard.mul_scalar(hard_weight) + kl.mul_scalar((1.0 - hard_weight) * temperature * temperature)
}

fn refuse(message: String, hint: &str) -> TrainError {
    TrainError::Compress {
        message,
        hint: hint.into(),
    }
}

/// The directory of the teacher `distill` names, given at run time (`train.distill_from`).
pub(crate) fn teacher_dir<'a>(
    distill: &DistillConfig,
    options: &'a RunOptions,
) -> Result<&'a std::path::Path, TrainError> {
    options.distill_from.as_deref().ok_or_else(|| {
        refuse(
            format!(
                "this run distils from {}, but no directory of it was given",
                distill.teacher
            ),
            "set train.distill_from (or --distill-from) to the teacher's directory",
        )
    })
}

/// Refuses a teacher directory `dir` that holds run `found` rather than the one `distill`
/// names.
pub(crate) fn check_teacher(
    found: &str,
    distill: &DistillConfig,
    dir: &std::path::Path,
) -> Result<(), TrainError> {
    if found == distill.teacher {
        return Ok(());
    }
    Err(refuse(
        format!(
            "{} holds {found}, but this run's config names teacher {}",
            dir.display(),
            distill.teacher
        ),
        "point distill_from at the teacher again (its id is part of this run's identity)",
    ))
}

/// A distilled run's teacher: its logits on the plain device, τ and λ.
pub(crate) struct Teacher {
    logits: crate::lm_eval::LogitsFn,
    device: Device,
    temperature: f64,
    hard_weight: f64,
}

impl Teacher {
    /// The teacher of `config` (none without `train.distill`), loaded from
    /// `options.distill_from`, which must hold the model the config names.
    pub(crate) fn for_run(
        config: &RunConfig,
        options: &RunOptions,
    ) -> Result<Option<Self>, TrainError> {
        let Some(distill) = &config.train.distill else {
            return Ok(None);
        };
        let dir = teacher_dir(distill, options)?;
        let teacher = crate::lm_eval::load(dir)?;
        check_teacher(&teacher.id, distill, dir)?;
        let device = options.device.clone();
        let logits = crate::lm_eval::logits_fn(teacher, &device)?;
        Ok(Some(Self {
            logits,
            device,
            temperature: distill.temperature,
            hard_weight: distill.hard_weight,
        }))
    }

    /// The distillation loss of `student` on `batch`.
    pub(crate) fn loss<M: LanguageModel>(
        &self,
        student: &M,
        batch: &Batch,
        device: &Device,
    ) -> Tensor<1> {
        let (inputs, targets) = token_tensors(batch, device);
        let student = student.logits(inputs); // [B, T, V]
        let plain = Tensor::<2, Int>::from_data(
            TensorData::new(batch.inputs.clone(), [batch.batch, batch.ctx]),
            &self.device,
        );
        // The teacher's logits enter the student's graph as constants.
        let teacher = Tensor::<3>::from_data((self.logits)(plain).into_data(), device); // [B, T, V]
        distillation_loss(
            student,
            teacher,
            targets,
            batch.loss_start,
            self.temperature,
            self.hard_weight,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One position, two tokens: the student is uniform (logits 0, 0), the teacher gives
    /// 3 : 1 (logits ln 3, 0), the label is token 0. CE = ln 2; at τ = 2 the teacher's softened
    /// p = (√3, 1)/(√3 + 1), KL = 0.0363408, τ²·KL = 0.1453631; with λ = 0.5 the loss is
    /// 0.4192552; at τ = 1, KL = 0.1308120 and the loss 0.4119796. (python3: p = softmax(z/τ);
    /// kl = Σ p_t·ln(p_t/p_s); 0.5·ln 2 + 0.5·τ²·kl.)
    #[test]
    fn the_loss_matches_the_hand_computed_value() {
        let device = Device::flex();
        let student =
            Tensor::<3>::from_data(TensorData::new(vec![0.0f32, 0.0], [1, 1, 2]), &device);
        let teacher =
            Tensor::<3>::from_data(TensorData::new(vec![3f32.ln(), 0.0], [1, 1, 2]), &device);
        let targets = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64], [1, 1]), &device);
        for (tau, want) in [(2.0, 0.419_255_156), (1.0, 0.411_979_608)] {
            let loss = distillation_loss(
                student.clone(),
                teacher.clone(),
                targets.clone(),
                0,
                tau,
                0.5,
            );
            let got = f64::from(loss.into_scalar::<f32>());
            assert!((got - want).abs() < 1e-6, "τ = {tau}: {got} vs {want}");
        }
        // λ = 1: the hard labels alone.
        let hard = distillation_loss(student, teacher, targets, 0, 2.0, 1.0);
        assert!((f64::from(hard.into_scalar::<f32>()) - std::f64::consts::LN_2).abs() < 1e-6);
    }
}
