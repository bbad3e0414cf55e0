//! A whole LSTM or GRU layer over a sequence as one operation: per time step one GEMM for the
//! recurrent projection (the input projection of every step is one GEMM before it, made by the
//! caller) and one pass that computes the gates, the new state and the padding mask; backward,
//! the steps in reverse with one pass and two GEMMs each (the recurrent weight's gradient and
//! the state's). Burn's autodiff records some twenty operations per step (narrows, sigmoids,
//! products, the mask's arithmetic), each with its own buffers.
//!
//! Gate layouts are PyTorch's: LSTM `i, f, g, o`; GRU `r, z, n` with
//! `n = tanh(x_n + r ⊙ (h·U_n + b_hn))` and `h' = (1 − z) ⊙ n + z ⊙ h`. A position whose mask is
//! 0 keeps the previous state: `h ← m·h' + (1 − m)·h` (and the LSTM's cell likewise).

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::tensor::Shape;

use rayon::prelude::*;

use crate::buffer::{self, tensor};
use crate::gemm::{self, MatRef};
use crate::simd::{contiguous_f32, exp_nonpositive};

/// Sequences per parallel task. Sequences are independent, so each task runs its own through
/// every step, with its own products (no step waits for another task); the count is fixed, so
/// results do not depend on how many threads share the tasks.
const SEQUENCES_PER_TASK: usize = 32;

/// What the backward pass keeps of a recurrent layer's forward pass.
#[derive(Debug, Clone)]
pub(crate) struct RecurrentState {
    /// Sequences, steps, hidden units, gates (4: LSTM, 3: GRU).
    dims: [usize; 4],
    /// The recurrent weight `[H, G·H]`.
    u: FlexTensor,
    /// `[B, T]` mask.
    mask: Vec<f32>,
    /// Each task's sequences' steps.
    tasks: Vec<TaskSteps>,
    /// Whether the recurrent projection has a bias.
    with_bias: bool,
}

/// One task's sequences (`Bc` of them) through every step, time-major.
#[derive(Debug, Clone)]
struct TaskSteps {
    /// `[T, Bc, H]`: the state after each step.
    out: Vec<f32>,
    /// Per step `[T, Bc, 4, H]`: LSTM `i, f, g, o`; GRU `r, z, n, h·U_n + b_hn` (empty when no
    /// backward pass follows).
    acts: Vec<f32>,
    /// LSTM: per step `[T, Bc, 2, H]` the cell state before the step and the new (unmasked)
    /// cell state; GRU or no backward pass: empty.
    cells: Vec<f32>,
}

/// The logistic function, from `exp(−|x|)` (so that loops of it vectorise; see
/// [`exp_nonpositive`]).
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let s = 1.0 / (1.0 + e); // σ(|x|)
    if x >= 0.0 { s } else { e * s }
}

/// `tanh(x) = 2σ(2x) − 1`.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// The four `h`-long gate blocks of a row.
#[inline(always)]
fn gates4(row: &[f32], h: usize) -> [&[f32]; 4] {
    let (a, rest) = row.split_at(h);
    let (b, rest) = rest.split_at(h);
    let (c, d) = rest.split_at(h);
    [a, b, c, &d[..h]]
}

/// The three `h`-long gate blocks of a GRU row (and an empty fourth).
#[inline(always)]
fn gates3(row: &[f32], h: usize) -> [&[f32]; 4] {
    let (a, rest) = row.split_at(h);
    let (b, c) = rest.split_at(h);
    [a, b, &c[..h], &[]]
}

/// The three `h`-long gate blocks of a GRU row, writable.
#[inline(always)]
fn gates3_mut(row: &mut [f32], h: usize) -> [&mut [f32]; 3] {
    let (a, rest) = row.split_at_mut(h);
    let (b, c) = rest.split_at_mut(h);
    [a, b, &mut c[..h]]
}

/// The four `h`-long gate blocks of a row, writable.
#[inline(always)]
fn gates4_mut(row: &mut [f32], h: usize) -> [&mut [f32]; 4] {
    let (a, rest) = row.split_at_mut(h);
    let (b, rest) = rest.split_at_mut(h);
    let (c, d) = rest.split_at_mut(h);
    [a, b, c, &mut d[..h]]
}

kernel! {
    /// One LSTM step of one sequence: gates from `x + hz`, the new cell and state (masked
    /// by `m`); the gates and the cell before and after are kept.
    struct LstmStep<'a> {
        x: &'a [f32], hz: &'a [f32], acts: &'a mut [f32], cells: &'a mut [f32],
        cell: &'a mut [f32], state: &'a mut [f32], m: f32,
    } -> () {
        let h = state.len();
        let ([xi, xf, xg, xo], [zi, zf, zg, zo]) = (gates4(x, h), gates4(hz, h));
        let [ai, af, ag, ao] = gates4_mut(acts, h);
        let (c_before, c_after) = cells.split_at_mut(h);
        // Every slice exactly h long, so that the loop has no bounds checks and vectorises.
        let (c_before, c_after, cell) = (&mut c_before[..h], &mut c_after[..h], &mut cell[..h]);
        for j in 0..h {
            let i = sigmoid(xi[j] + zi[j]);
            let f = sigmoid(xf[j] + zf[j]);
            let g = tanh(xg[j] + zg[j]);
            let o = sigmoid(xo[j] + zo[j]);
            let c_new = f * cell[j] + i * g;
            let h_new = o * tanh(c_new);
            (ai[j], af[j], ag[j], ao[j]) = (i, f, g, o);
            (c_before[j], c_after[j]) = (cell[j], c_new);
            cell[j] = m * c_new + (1.0 - m) * cell[j];
            state[j] = m * h_new + (1.0 - m) * state[j];
        }
    }
}

kernel! {
    /// One GRU step of one sequence (`hz = h·U + b_h`); keeps `r, z, n` and `hz_n`.
    struct GruStep<'a> {
        x: &'a [f32], hz: &'a [f32], acts: &'a mut [f32], state: &'a mut [f32], m: f32,
    } -> () {
        let h = state.len();
        let ([xr, xz, xn, _], [zr, zz, zn, _]) = (gates3(x, h), gates3(hz, h));
        let [ar, az, an, ahn] = gates4_mut(acts, h);
        for j in 0..h {
            let r = sigmoid(xr[j] + zr[j]);
            let z = sigmoid(xz[j] + zz[j]);
            let n = tanh(xn[j] + r * zn[j]);
            let h_new = (1.0 - z) * n + z * state[j];
            (ar[j], az[j], an[j], ahn[j]) = (r, z, n, zn[j]);
            state[j] = m * h_new + (1.0 - m) * state[j];
        }
    }
}

kernel! {
    /// One LSTM step of one sequence backward: the gates' pre-activation gradients into `dx`
    /// and `dhz`; `d_state` and `d_cell` become the gradients of the state and cell before the
    /// step (the recurrent product's share of `d_state` is added by the caller).
    struct LstmStepBack<'a> {
        acts: &'a [f32], cells: &'a [f32], grad: &'a [f32], dx: &'a mut [f32],
        dhz: &'a mut [f32], d_state: &'a mut [f32], d_cell: &'a mut [f32], m: f32,
    } -> () {
        let h = d_state.len();
        let [ai, af, ag, ao] = gates4(acts, h);
        let (c_before, c_after) = (&cells[..h], &cells[h..2 * h]);
        let (grad, d_cell) = (&grad[..h], &mut d_cell[..h]);
        let [di, df, dg, dout] = gates4_mut(dx, h);
        for j in 0..h {
            let (i, f, g, o) = (ai[j], af[j], ag[j], ao[j]);
            let tc = tanh(c_after[j]);
            let d_total = grad[j] + d_state[j];
            let dh_new = m * d_total;
            let dc_new = m * d_cell[j] + dh_new * o * (1.0 - tc * tc);
            di[j] = dc_new * g * i * (1.0 - i);
            df[j] = dc_new * c_before[j] * f * (1.0 - f);
            dg[j] = dc_new * i * (1.0 - g * g);
            dout[j] = dh_new * tc * o * (1.0 - o);
            d_cell[j] = dc_new * f + (1.0 - m) * d_cell[j];
            d_state[j] = (1.0 - m) * d_total;
        }
        dhz[..4 * h].copy_from_slice(&dx[..4 * h]);
    }
}

kernel! {
    /// One GRU step of one sequence backward (see [`LstmStepBack`]); `h_prev` is the state
    /// before the step.
    struct GruStepBack<'a> {
        acts: &'a [f32], h_prev: &'a [f32], grad: &'a [f32], dx: &'a mut [f32],
        dhz: &'a mut [f32], d_state: &'a mut [f32], m: f32,
    } -> () {
        let h = d_state.len();
        let [ar, az, an, ahn] = gates4(acts, h);
        let (h_prev, grad) = (&h_prev[..h], &grad[..h]);
        let [dxr, dxz, dxn] = gates3_mut(dx, h);
        let [dzr, dzz, dzn] = gates3_mut(dhz, h);
        for j in 0..h {
            let (r, z, n) = (ar[j], az[j], an[j]);
            let d_total = grad[j] + d_state[j];
            let dh_new = m * d_total;
            let dan = dh_new * (1.0 - z) * (1.0 - n * n);
            let dar = dan * ahn[j] * r * (1.0 - r);
            let daz = dh_new * (h_prev[j] - n) * z * (1.0 - z);
            (dxr[j], dxz[j], dxn[j]) = (dar, daz, dan);
            (dzr[j], dzz[j], dzn[j]) = (dar, daz, dan * r);
            d_state[j] = dh_new * z + (1.0 - m) * d_total;
        }
    }
}

/// The layer's states `[B, T, H]` from the input projections `projected` `[B, T, G·H]` (bias
/// included), the recurrent weight `u` `[H, G·H]` and bias `bias` `[G·H]` (none when empty),
/// and `mask` `[B, T]`; and what the backward pass needs (when `keep`; without it the state
/// holds only the last step's gates, and serves no backward pass).
pub(crate) fn recurrent_forward(
    projected: &FlexTensor,
    u: &FlexTensor,
    bias: &FlexTensor,
    mask: &FlexTensor,
    gates: usize,
    keep: bool,
) -> (FlexTensor, RecurrentState) {
    let [b, t, gh] = projected.shape().dims::<3>();
    let h = gh / gates.max(1);
    let (x, u, bias, mask) = (
        projected.to_contiguous(),
        u.to_contiguous(),
        bias.to_contiguous(),
        mask.to_contiguous(),
    );
    let (x, bias) = (contiguous_f32(&x), contiguous_f32(&bias));
    let mask = contiguous_f32(&mask).to_vec();
    let layer = Layer {
        u: MatRef::row_major(contiguous_f32(&u), h, gh),
        bias,
        t,
        h,
        gates,
    };
    let n = SEQUENCES_PER_TASK;
    let tasks: Vec<TaskSteps> = x
        .par_chunks((n * t * gh).max(1))
        .zip(mask.par_chunks((n * t).max(1)))
        .map(|(x, mask)| layer.forward(x, mask, keep))
        .collect();
    // `[B, T, H]`, each task's sequences written front to back from its time-major states.
    let (out, _) = buffer::par_new_tensor(
        Shape::new([b, t, h]),
        n * t * h,
        tasks.par_iter(),
        |mut dst, task| {
            let bc = task.out.len() / (t * h).max(1);
            for bi in 0..bc {
                for step in 0..t {
                    dst.copy(&task.out[(step * bc + bi) * h..(step * bc + bi + 1) * h]);
                }
            }
            (dst.finish(), ())
        },
    );
    let state = RecurrentState {
        dims: [b, t, h, gates],
        u,
        mask,
        tasks,
        with_bias: !bias.is_empty(),
    };
    (out, state)
}

/// One recurrent layer's weights and shape, as each task reads them.
struct Layer<'a> {
    /// `[H, G·H]`.
    u: MatRef<'a>,
    /// `[G·H]`, or empty.
    bias: &'a [f32],
    t: usize,
    h: usize,
    gates: usize,
}

impl Layer<'_> {
    /// Runs the sequences of `x` `[Bc, T, G·H]` (masked by `mask` `[Bc, T]`) through every step.
    fn forward(&self, x: &[f32], mask: &[f32], keep: bool) -> TaskSteps {
        let Self {
            u,
            bias,
            t,
            h,
            gates,
        } = *self;
        let gh = gates * h;
        let b = x.len() / (t * gh).max(1);
        let lstm = gates == 4;
        // The states, and every step's gates and cells when the backward pass needs them,
        // appended step by step (time-major; written once, never zero-filled first).
        let mut out = Vec::with_capacity(t * b * h);
        let kept = if keep { t } else { 0 };
        let mut acts = Vec::with_capacity(kept * b * 4 * h);
        let mut cells = Vec::with_capacity(if lstm { kept * b * 2 * h } else { 0 });
        // This step's gates and cells.
        let mut step_acts = vec![0.0f32; b * 4 * h];
        let mut step_cells = vec![0.0f32; if lstm { b * 2 * h } else { 0 }];
        let (mut state, mut cell) = (vec![0.0f32; b * h], vec![0.0f32; b * h]);
        let mut hz = vec![0.0f32; b * gh];
        let arch = pulp::Arch::new();
        for step in 0..t {
            // hz = h·U + b_h for every sequence.
            for row in hz.chunks_exact_mut(gh) {
                match bias.is_empty() {
                    true => row.fill(0.0),
                    false => row.copy_from_slice(bias),
                }
            }
            if step > 0 {
                gemm::product_into(&mut hz, MatRef::row_major(&state, b, h), u, true, false);
            }
            for bi in 0..b {
                let m = mask[bi * t + step];
                let x = &x[(bi * t + step) * gh..(bi * t + step + 1) * gh];
                let hz = &hz[bi * gh..(bi + 1) * gh];
                let acts = &mut step_acts[bi * 4 * h..(bi + 1) * 4 * h];
                let state = &mut state[bi * h..(bi + 1) * h];
                if lstm {
                    arch.dispatch(LstmStep {
                        x,
                        hz,
                        acts,
                        cells: &mut step_cells[bi * 2 * h..(bi + 1) * 2 * h],
                        cell: &mut cell[bi * h..(bi + 1) * h],
                        state,
                        m,
                    });
                } else {
                    arch.dispatch(GruStep {
                        x,
                        hz,
                        acts,
                        state,
                        m,
                    });
                }
            }
            out.extend_from_slice(&state);
            if keep {
                acts.extend_from_slice(&step_acts);
                cells.extend_from_slice(&step_cells);
            }
        }
        TaskSteps { out, acts, cells }
    }

    /// The backward pass of one task's sequences: from their output's gradient `grad`
    /// `[Bc, T, H]`, writes their input projections' gradient into `dx` `[Bc, T, G·H]` and
    /// returns their share of the recurrent weight's and bias's gradients.
    fn backward(
        &self,
        steps: &TaskSteps,
        mask: &[f32],
        grad: &[f32],
        dx: &mut [f32],
        with_bias: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let Self { u, t, h, gates, .. } = *self;
        let gh = gates * h;
        let b = grad.len() / (t * h).max(1);
        let lstm = gates == 4;
        let out = &steps.out;
        // The gradients reaching the state (and the LSTM's cell) after each step from later
        // steps.
        let (mut d_state, mut d_cell) = (vec![0.0f32; b * h], vec![0.0f32; b * h]);
        // Every step's gradient of the recurrent pre-activations, time-major `[T, Bc, G·H]`:
        // the recurrent weight's gradient is one product over all steps at the end.
        let mut dz_all = vec![0.0f32; t * b * gh];
        let zeros = vec![0.0f32; h];
        let arch = pulp::Arch::new();
        for step in (0..t).rev() {
            for bi in 0..b {
                let m = mask[bi * t + step];
                let acts = &steps.acts[(step * b + bi) * 4 * h..(step * b + bi + 1) * 4 * h];
                let grad = &grad[(bi * t + step) * h..(bi * t + step + 1) * h];
                let dx = &mut dx[(bi * t + step) * gh..(bi * t + step + 1) * gh];
                let dhz = &mut dz_all[(step * b + bi) * gh..(step * b + bi + 1) * gh];
                let d_state = &mut d_state[bi * h..(bi + 1) * h];
                if lstm {
                    arch.dispatch(LstmStepBack {
                        acts,
                        cells: &steps.cells[(step * b + bi) * 2 * h..(step * b + bi + 1) * 2 * h],
                        grad,
                        dx,
                        dhz,
                        d_state,
                        d_cell: &mut d_cell[bi * h..(bi + 1) * h],
                        m,
                    });
                } else {
                    let h_prev = match step {
                        0 => &zeros[..],
                        _ => &out[((step - 1) * b + bi) * h..((step - 1) * b + bi + 1) * h],
                    };
                    arch.dispatch(GruStepBack {
                        acts,
                        h_prev,
                        grad,
                        dx,
                        dhz,
                        d_state,
                        m,
                    });
                }
            }
            if step > 0 {
                let dz = &dz_all[step * b * gh..(step + 1) * b * gh];
                let dz_m = MatRef::row_major(dz, b, gh);
                gemm::product_into(&mut d_state, dz_m, u.t(), true, false);
            }
        }
        // dU = Σ_steps h_{t−1}ᵀ·dz_t: the states before steps 1.. (the outputs of steps
        // ..T−1) against those steps' gradients, one product; step 0 starts from zero.
        let mut du = vec![0.0f32; h * gh];
        if t > 1 {
            let rows = (t - 1) * b;
            let h_prev = MatRef::row_major(&out[..rows * h], rows, h);
            let dz = MatRef::row_major(&dz_all[b * gh..], rows, gh);
            gemm::product_into(&mut du, h_prev.t(), dz, false, false);
        }
        let db = if with_bias {
            crate::linear::column_sums(&dz_all, gh)
        } else {
            Vec::new()
        };
        (du, db)
    }
}

/// Gradients of the input projections `[B, T, G·H]`, the recurrent weight `[H, G·H]` and its
/// bias `[G·H]` (empty without one) from the output's gradient `grad` `[B, T, H]`.
pub(crate) fn recurrent_backward(s: RecurrentState, grad: &FlexTensor) -> [FlexTensor; 3] {
    let [b, t, h, gates] = s.dims;
    let gh = gates * h;
    let grad = grad.to_contiguous();
    let grad = contiguous_f32(&grad);
    let layer = Layer {
        u: MatRef::row_major(contiguous_f32(&s.u), h, gh),
        bias: &[],
        t,
        h,
        gates,
    };
    let n = SEQUENCES_PER_TASK;
    let mut dx = vec![0.0f32; b * t * gh];
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut((n * t * gh).max(1))
        .zip(grad.par_chunks((n * t * h).max(1)))
        .zip(s.tasks.par_iter())
        .zip(s.mask.par_chunks((n * t).max(1)))
        .map(|(((dx, grad), steps), mask)| layer.backward(steps, mask, grad, dx, s.with_bias))
        .collect();
    // The tasks' shares added in order.
    let mut du = vec![0.0f32; h * gh];
    let mut db = vec![0.0f32; if s.with_bias { gh } else { 0 }];
    for (pu, pb) in &partial {
        du.iter_mut().zip(pu).for_each(|(d, p)| *d += p);
        db.iter_mut().zip(pb).for_each(|(d, p)| *d += p);
    }
    let db_len = db.len();
    [
        tensor(dx, Shape::new([b, t, gh])),
        tensor(du, Shape::new([h, gh])),
        tensor(db, Shape::new([db_len])),
    ]
}
