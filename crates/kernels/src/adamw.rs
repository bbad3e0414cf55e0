//! One AdamW step in one pass over a parameter, its gradient and its two moments.

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, ExtensionType, Flex, backend_extension};
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::simd::{ELEMENTS_PER_TASK, contiguous_f32, elements_mut, writable};

/// A parameter and its two AdamW moments, updated together.
#[derive(ExtensionType)]
pub struct AdamWTensors<B: Backend> {
    /// The parameter.
    pub param: FloatTensor<B>,
    /// The first moment (mean of gradients).
    pub moment_1: FloatTensor<B>,
    /// The second moment (mean of squared gradients).
    pub moment_2: FloatTensor<B>,
}

/// One AdamW step's constants.
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Added to the second moment's root.
    pub epsilon: f32,
    /// Decoupled weight decay (multiplied by the learning rate).
    pub weight_decay: f32,
    /// The step number, from 1 (for the moments' bias correction).
    pub time: i32,
}

/// The optimiser's fused operation. Optimisers update plain tensors (no autodiff), so it is
/// the CPU backend's alone.
#[backend_extension(Flex)]
pub trait FusedOptim: Backend {
    /// One AdamW step of `state` with gradient `grad`.
    fn adamw_step(
        #[extension_type] state: AdamWTensors<Self>,
        grad: FloatTensor<Self>,
        step: AdamWStep,
    ) -> AdamWTensors<Self>;
}

/// One AdamW step in one multi-threaded pass over the parameter, its gradient and its two
/// moments, computing what Burn's `AdamW` computes in about ten tensor operations:
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `p ← p·(1 − lr·wd) − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)`.
/// Returns the updated `[param, moment_1, moment_2]`. For tensors the fused kernels serve
/// ([`available`]); elsewhere run Burn's AdamW.
pub fn adamw_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: [Tensor<D>; 2],
    step: AdamWStep,
) -> [Tensor<D>; 3] {
    let [moment_1, moment_2] = moments.map(Tensor::into_dispatch);
    let out = <Dispatch as FusedOptim>::adamw_step(
        AdamWTensors {
            param: param.into_dispatch(),
            moment_1,
            moment_2,
        },
        grad.into_dispatch(),
        step,
    );
    [out.param, out.moment_1, out.moment_2].map(Tensor::from_dispatch)
}

impl FusedOptim for Flex {
    fn adamw_step(
        state: AdamWTensors<Flex>,
        grad: FlexTensor,
        step: AdamWStep,
    ) -> AdamWTensors<Flex> {
        adamw_kernel(state, &grad, step)
    }
}

/// [`adamw_step`] on the CPU backend: parameter and moments updated in their own buffers when
/// nothing else holds them.
pub(crate) fn adamw_kernel(
    state: AdamWTensors<Flex>,
    grad: &FlexTensor,
    step: AdamWStep,
) -> AdamWTensors<Flex> {
    let AdamWStep {
        lr,
        beta_1,
        beta_2,
        epsilon,
        weight_decay,
        time,
    } = step;
    let grad = grad.to_contiguous();
    let g = contiguous_f32(&grad);
    let [mut param, mut moment_1, mut moment_2] =
        [state.param, state.moment_1, state.moment_2].map(writable);
    // As Burn's AdamW computes them, in f32.
    let constants = AdamWConstants {
        beta_1,
        beta_2,
        decay: (1.0 - lr * f64::from(weight_decay)) as f32,
        lr: lr as f32,
        correction_1: 1.0 - beta_1.powi(time),
        correction_2: 1.0 - beta_2.powi(time),
        epsilon,
    };
    let arch = pulp::Arch::new();
    elements_mut(&mut param)
        .par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(elements_mut(&mut moment_1).par_chunks_mut(ELEMENTS_PER_TASK))
        .zip(elements_mut(&mut moment_2).par_chunks_mut(ELEMENTS_PER_TASK))
        .zip(g.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|(((p, m), v), g)| {
            arch.dispatch(AdamWChunk {
                p,
                m,
                v,
                g,
                c: &constants,
            })
        });
    AdamWTensors {
        param,
        moment_1,
        moment_2,
    }
}

/// The per-step constants of [`adamw_kernel`].
pub(crate) struct AdamWConstants {
    beta_1: f32,
    beta_2: f32,
    decay: f32,
    lr: f32,
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
}

kernel! {
    /// AdamW over one chunk of parameters `p`, moments `m`, `v` and gradients `g`.
    struct AdamWChunk<'a> {
        p: &'a mut [f32],
        m: &'a mut [f32],
        v: &'a mut [f32],
        g: &'a [f32],
        c: &'a AdamWConstants,
    } -> () {
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            *m = *m * c.beta_1 + g * (1.0 - c.beta_1);
            *v = *v * c.beta_2 + g * g * (1.0 - c.beta_2);
            let delta = (*m / c.correction_1) / ((*v / c.correction_2).sqrt() + c.epsilon);
            *p = *p * c.decay - delta * c.lr;
        }
    }
}
