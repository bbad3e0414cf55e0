//! Linear layers (with a bias, a residual, or neither) through the `gemm` crate, and the bias
//! gradient's column sums.

use burn::backend::TensorMetadata;
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Shape};
use rayon::prelude::*;

use crate::gemm::{self, MatRef};
use crate::simd::contiguous_f32;

/// `x·weight + bias`: `x` `[N, in]`, `weight` `[in, out]`, `bias` `[out]` → `[N, out]`.
pub(crate) fn linear_forward(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> FlexTensor {
    let (x, weight, bias) = (matrix_view(x), matrix_view(weight), bias.to_contiguous());
    gemm::affine(matrix(&x), matrix(&weight), contiguous_f32(&bias), None)
}

/// `x·weight`: `x` `[N, in]`, `weight` `[in, out]` (any non-negative strides) → `[N, out]`.
pub(crate) fn matmul_forward(x: &FlexTensor, weight: &FlexTensor) -> FlexTensor {
    let (x, weight) = (matrix_view(x), matrix_view(weight));
    gemm::product(matrix(&x), matrix(&weight))
}

/// `residual + x·weight + bias`, `residual` `[N, out]`.
pub(crate) fn linear_add_forward(
    residual: &FlexTensor,
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
) -> FlexTensor {
    let (x, weight) = (matrix_view(x), matrix_view(weight));
    let (bias, residual) = (bias.to_contiguous(), residual.to_contiguous());
    let residual = Some(contiguous_f32(&residual));
    gemm::affine(matrix(&x), matrix(&weight), contiguous_f32(&bias), residual)
}

/// Gradients of a linear layer's input, weight and bias from its output's gradient `grad`
/// `[N, out]`: `dx = grad·Wᵀ` `[N, in]`, `dW = xᵀ·grad` `[in, out]`, `db` = column sums `[out]`
/// (an empty `[0]` tensor unless `with_bias`).
pub(crate) fn linear_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    with_bias: bool,
) -> [FlexTensor; 3] {
    let (x, weight, grad) = (matrix_view(x), matrix_view(weight), grad.to_contiguous());
    let (x_m, w_m, g_m) = (matrix(&x), matrix(&weight), matrix(&grad));
    let dx = gemm::product(g_m, w_m.t());
    let dw = gemm::product(x_m.t(), g_m);
    let [_, d_out] = grad.shape().dims::<2>();
    let db = if with_bias {
        column_sums(contiguous_f32(&grad), d_out)
    } else {
        Vec::new()
    };
    let d_out = db.len();
    let db = FlexTensor::new(
        Bytes::from_elems(db),
        Layout::contiguous(Shape::new([d_out])),
        DType::F32,
    );
    [dx, dw, db]
}

/// `tensor` itself when it is a 2-D f32 view the GEMM kernels can read (strides not negative),
/// a contiguous copy otherwise.
pub(crate) fn matrix_view(tensor: &FlexTensor) -> FlexTensor {
    if tensor.layout().num_dims() == 2 && tensor.layout().has_positive_strides() {
        tensor.clone()
    } else {
        tensor.to_contiguous()
    }
}

/// The matrix of a 2-D f32 tensor with non-negative strides (see [`matrix_view`]).
pub(crate) fn matrix(tensor: &FlexTensor) -> MatRef<'_> {
    let layout = tensor.layout();
    let Some((rows, cols, row_stride, col_stride)) = layout.as_2d_strides() else {
        unreachable!("made 2-D by the caller")
    };
    let stride = |s: isize| usize::try_from(s).unwrap_or_else(|_| unreachable!("strides checked"));
    let data = &tensor.storage::<f32>()[layout.start_offset()..];
    MatRef::strided(data, rows, cols, stride(row_stride), stride(col_stride))
}

/// The sums of the columns of the row-major matrix `m` with rows of `cols` (a bias's
/// gradient): each task adds a fixed block of rows into its own row of sums, then the rows of
/// sums are added in order (so the result does not depend on how the threads split the work).
pub(crate) fn column_sums(m: &[f32], cols: usize) -> Vec<f32> {
    const ROWS_PER_SUM: usize = 256;
    let arch = pulp::Arch::new();
    let partial: Vec<Vec<f32>> = m
        .par_chunks(cols * ROWS_PER_SUM)
        .map(|rows| {
            let mut sums = vec![0.0; cols];
            arch.dispatch(AddRows {
                sums: &mut sums,
                rows,
            });
            sums
        })
        .collect();
    let mut sums = vec![0.0; cols];
    for p in &partial {
        sums.iter_mut().zip(p).for_each(|(s, p)| *s += p);
    }
    sums
}

kernel! {
    /// Adds every row of `rows` (rows as long as `sums`) into `sums`.
    struct AddRows<'a> { sums: &'a mut [f32], rows: &'a [f32] } -> () {
        for row in rows.chunks_exact(sums.len()) {
            for (s, x) in sums.iter_mut().zip(row) {
                *s += x;
            }
        }
    }
}
