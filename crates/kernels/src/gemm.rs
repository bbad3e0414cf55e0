//! Matrix products written straight into new buffers, through the `gemm` crate (the kernels
//! Burn's CPU backend calls too). Burn's `float_matmul` allocates every output with
//! `FlexTensor::empty`, which zero-fills a byte buffer and then copies it to align it: two
//! passes over memory the product is about to overwrite. Here an output is allocated
//! uninitialised and written once, by the product; a linear layer's output starts as its
//! bias, copied into every row, and the product is added to it.
//!
//! The unsafe code of this module is the `gemm` call (raw pointers and strides, which
//! [`MatRef`] checks against its slice when it is built) and its use of
//! [`buffer::new_tensor`] for outputs the product writes whole. Nothing unsafe is exported.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use burn::backend::Flex;
use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::{DType, Shape};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::buffer::{self, new_tensor};

/// Products of at least this many multiply-adds are split across the rayon pool's threads
/// (the threshold Burn's CPU backend uses); smaller ones run on the calling thread.
const PARALLEL_THRESHOLD: usize = 192 * 192 * 192;

/// A read-only `rows × cols` f32 matrix in a slice: element `(i, j)` at
/// `i·row_stride + j·col_stride`. Every element lies inside the slice (checked when built).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// The row-major matrix filling `data`.
    ///
    /// # Panics
    /// If `data` does not hold `rows · cols` elements.
    pub(crate) fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "a {rows} × {cols} row-major matrix"
        );
        Self::strided(data, rows, cols, cols, 1)
    }

    /// A strided view of `data`.
    ///
    /// # Panics
    /// If an element of the view lies outside `data`.
    pub(crate) fn strided(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        if rows > 0 && cols > 0 {
            let last = (rows - 1)
                .checked_mul(row_stride)
                .zip((cols - 1).checked_mul(col_stride))
                .and_then(|(r, c)| r.checked_add(c))
                .unwrap_or(usize::MAX);
            assert!(
                last < data.len(),
                "a {rows} × {cols} view with strides ({row_stride}, {col_stride}) reads element \
                 {last} of {}",
                data.len()
            );
        }
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// The transpose: the same elements, rows and columns swapped (no copy).
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// Whether a product of `m × k` by `k × n` is split across threads.
fn parallelism(m: usize, n: usize, k: usize, split: bool) -> Parallelism {
    if split && m.saturating_mul(n).saturating_mul(k) >= PARALLEL_THRESHOLD {
        Parallelism::Rayon(0) // the current pool's threads
    } else {
        Parallelism::None
    }
}

/// `dst ← a·b`, or `dst ← dst + a·b` when `accumulate` (then `dst` must be initialised: the
/// caller's contract, see [`product_into`] and [`product_into_uninit`]). The product's
/// `a.rows × b.cols` elements go row-major into `dst` with rows `dst_row_stride` apart (the
/// elements between rows are neither read nor written). Every element of the product is
/// written.
///
/// # Safety
/// When `accumulate`, the product's elements of `dst` are initialised.
unsafe fn product_raw(
    dst: &mut [MaybeUninit<f32>],
    dst_row_stride: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    accumulate: bool,
    split: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(
        b.rows, k,
        "inner dimensions of a {m} × {k} by {} × {n} product",
        b.rows
    );
    if m == 0 || n == 0 {
        return;
    }
    let end = (m - 1)
        .checked_mul(dst_row_stride)
        .and_then(|x| x.checked_add(n));
    assert!(
        n <= dst_row_stride && end.is_some_and(|end| end <= dst.len()),
        "a {m} × {n} product's output with rows {dst_row_stride} apart in {} elements",
        dst.len()
    );
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_row_stride).take(m) {
                row[..n].fill(MaybeUninit::new(0.0));
            }
        }
        return;
    }
    let as_isize = |x: usize| {
        isize::try_from(x).unwrap_or_else(|_| unreachable!("a slice's length fits isize"))
    };
    // SAFETY: `a` and `b` read only elements inside their slices (checked in
    // `MatRef::strided`), `dst` holds the `m × n` elements at strides (dst_row_stride, 1)
    // (checked above), and it cannot alias `a` or `b` (a unique borrow against shared ones). With
    // `read_dst` false the kernels write `dst` without reading it; with `accumulate` the
    // caller guarantees it is initialised.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().cast::<f32>(),
            1,
            as_isize(dst_row_stride),
            accumulate,
            a.data.as_ptr(),
            as_isize(a.col_stride),
            as_isize(a.row_stride),
            b.data.as_ptr(),
            as_isize(b.col_stride),
            as_isize(b.row_stride),
            1.0, // dst's weight when read
            1.0, // the product's weight
            false,
            false,
            false,
            parallelism(m, n, k, split),
        );
    }
}

/// `dst ← a·b` (or `dst ← dst + a·b` when `accumulate`), `dst` row-major `a.rows × b.cols`;
/// split across the rayon pool's threads when it is large and `split`.
pub(crate) fn product_into(
    dst: &mut [f32],
    a: MatRef<'_>,
    b: MatRef<'_>,
    accumulate: bool,
    split: bool,
) {
    assert_output_len(dst.len(), a, b);
    let len = dst.len();
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, the slice stays initialised (the
    // product writes only f32 values), and `dst` is borrowed for the whole call.
    let dst = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast(), len) };
    // SAFETY: every element of `dst` is initialised.
    unsafe { product_raw(dst, b.cols, a, b, accumulate, split) }
}

/// Panics unless an output of `len` elements holds the product `a·b`.
fn assert_output_len(len: usize, a: MatRef<'_>, b: MatRef<'_>) {
    let (rows, cols) = (a.rows, b.cols);
    assert_eq!(len, rows * cols, "a {rows} × {cols} product's output");
}

/// `dst ← a·b` into memory that need not be initialised; every element is written.
fn product_into_uninit(dst: &mut [MaybeUninit<f32>], a: MatRef<'_>, b: MatRef<'_>, split: bool) {
    assert_output_len(dst.len(), a, b);
    // SAFETY: not accumulating, so `dst` is only written.
    unsafe { product_raw(dst, b.cols, a, b, false, split) }
}

/// `a·b` as a new `[a.rows, b.cols]` tensor, split across threads when large.
pub(crate) fn product(a: MatRef<'_>, b: MatRef<'_>) -> FlexTensor {
    let shape = Shape::new([a.rows, b.cols]);
    // SAFETY: `product_into_uninit` writes every element.
    unsafe { new_tensor(shape, |dst| product_into_uninit(dst, a, b, true)) }
}

/// `residual + x·w + bias` (the bias added to every row; `residual`, when given, row-major
/// `[x.rows, w.cols]`) as a new `[x.rows, w.cols]` tensor: the rows start as the bias (plus
/// the residual's row) and the product is added to them.
///
/// # Panics
/// If `bias` does not have `w.cols` elements or `residual` not `x.rows · w.cols`.
pub(crate) fn affine(
    x: MatRef<'_>,
    w: MatRef<'_>,
    bias: &[f32],
    residual: Option<&[f32]>,
) -> FlexTensor {
    const ROWS_PER_TASK: usize = 64;
    let (rows, cols) = (x.rows, w.cols);
    assert_eq!(bias.len(), cols, "a bias per output column");
    if let Some(residual) = residual {
        assert_eq!(
            residual.len(),
            rows * cols,
            "a residual of the output's shape"
        );
    }
    let tasks = rows.div_ceil(ROWS_PER_TASK);
    let mut out = buffer::par_new_tensor(
        Shape::new([rows, cols]),
        ROWS_PER_TASK * cols,
        (0..tasks).into_par_iter(),
        |mut chunk, task| {
            for row in task * ROWS_PER_TASK..rows.min((task + 1) * ROWS_PER_TASK) {
                match residual {
                    None => chunk.copy(bias),
                    Some(r) => {
                        let r = &r[row * cols..(row + 1) * cols];
                        chunk.write(cols, r.iter().zip(bias).map(|(r, b)| r + b))
                    }
                };
            }
            (chunk.finish(), ())
        },
    )
    .0;
    product_into(out.storage_mut::<f32>(), x, w, true, true);
    out
}

/// The products `a(g)·b(g)` of `groups` pairs of same-shape matrices as a new
/// `[groups, rows, cols]` tensor; the groups are spread over the rayon pool's threads (each
/// product on one).
pub(crate) fn batched_product<'a>(
    groups: usize,
    a: impl Fn(usize) -> MatRef<'a> + Sync,
    b: impl Fn(usize) -> MatRef<'a> + Sync,
) -> FlexTensor {
    // One head per group, side by side: `[groups·rows, cols]`, the layout of `[groups, rows, cols]`.
    let out = heads_side_by_side(groups, 1, |g, _| a(g), |g, _| b(g));
    let [n, cols] = out.shape().dims::<2>();
    Flex::float_reshape(out, Shape::new([groups, n / groups.max(1), cols]))
}

/// The products `a(s, h)·b(s, h)` (each `rows × cols`) of `sequences × heads` pairs, written
/// side by side as a new `[sequences·rows, heads·cols]` matrix: sequence `s`'s rows, columns
/// `h·cols..(h+1)·cols` hold product `(s, h)`. This is how attention's per-head results merge
/// back into one row per token, written by the products themselves (no merge copy). The
/// sequences are spread over the rayon pool's threads (each product on one).
pub(crate) fn heads_side_by_side<'a>(
    sequences: usize,
    heads: usize,
    a: impl Fn(usize, usize) -> MatRef<'a> + Sync,
    b: impl Fn(usize, usize) -> MatRef<'a> + Sync,
) -> FlexTensor {
    let (rows, cols) = if sequences * heads == 0 {
        (0, 0)
    } else {
        (a(0, 0).rows, b(0, 0).cols)
    };
    let width = heads * cols;
    let shape = Shape::new([sequences * rows, width]);
    if rows * width == 0 {
        return FlexTensor::empty(shape, DType::F32);
    }
    let write = |dst: &mut [MaybeUninit<f32>]| {
        dst.par_chunks_mut(rows * width)
            .enumerate()
            .for_each(|(s, block)| {
                for h in 0..heads {
                    let (a, b) = (a(s, h), b(s, h));
                    assert!(a.rows == rows && b.cols == cols, "same-shape products");
                    // SAFETY: not accumulating, so the product is only written.
                    unsafe { product_raw(&mut block[h * cols..], width, a, b, false, false) };
                }
            });
    };
    // SAFETY: each sequence's block of `rows × width` is written whole: product `(s, h)` writes
    // columns `h·cols..(h+1)·cols` of all its `rows` rows, and the heads cover the width.
    unsafe { new_tensor(shape, write) }
}

/// The products of `groups` pairs of matrices whose operands are made per group (a
/// convolution's patch matrix of each image), as a new `[groups, rows, cols]` tensor, each
/// product then finished in place. For group `g`, `operands(scratch, g, write)` builds the
/// operands (in the task's own `scratch`, made by `new_scratch`) and calls `write(a, b)`, which
/// puts `a·b` (`rows × cols`) into the group's block; then `finish(g, block)` runs on it while it
/// is in cache. Groups go to the rayon pool's threads; or, when `split`, one at a time with
/// each product split across the threads.
///
/// # Panics
/// If `operands` does not call `write` for its group, or gives a product of another shape.
pub(crate) fn grouped_products<S>(
    [groups, rows, cols]: [usize; 3],
    split: bool,
    new_scratch: impl Fn() -> S + Sync,
    operands: impl Fn(&mut S, usize, &mut dyn FnMut(MatRef<'_>, MatRef<'_>)) + Sync,
    finish: impl Fn(usize, &mut [f32]) + Sync,
) -> FlexTensor {
    let shape = Shape::new([groups, rows, cols]);
    if rows * cols == 0 {
        return FlexTensor::empty(shape, DType::F32);
    }
    let group = |scratch: &mut S, (g, block): (usize, &mut [MaybeUninit<f32>])| {
        let mut written = false;
        operands(scratch, g, &mut |a, b| {
            product_into_uninit(block, a, b, split); // checks the shape
            written = true;
        });
        assert!(written, "group {g}'s product was not written");
        // SAFETY: `product_into_uninit` wrote every element of `block` (it asserts that the
        // product fills it), and `MaybeUninit<f32>` has the layout of `f32`.
        let block = unsafe {
            std::slice::from_raw_parts_mut(block.as_mut_ptr().cast::<f32>(), block.len())
        };
        finish(g, block);
    };
    let write = |dst: &mut [MaybeUninit<f32>]| {
        if split {
            let mut scratch = new_scratch();
            dst.chunks_mut(rows * cols)
                .enumerate()
                .for_each(|pair| group(&mut scratch, pair));
        } else {
            dst.par_chunks_mut(rows * cols)
                .enumerate()
                .for_each_init(&new_scratch, group);
        }
    };
    // SAFETY: every group's block is written whole (above), and the blocks tile the buffer.
    unsafe { new_tensor(shape, write) }
}

#[cfg(test)]
mod tests {
    use burn::backend::TensorMetadata;

    use super::*;

    /// The textbook triple loop.
    fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols)
                    .map(|p| {
                        a.data[i * a.row_stride + p * a.col_stride]
                            * b.data[p * b.row_stride + j * b.col_stride]
                    })
                    .sum();
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    fn close(x: &[f32], y: &[f32]) {
        assert_eq!(x.len(), y.len());
        for (i, (a, b)) in x.iter().zip(y).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "element {i}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn products_match_the_triple_loop_plain_and_transposed() {
        // Large enough (300·200·260 > 192³) to take the multi-threaded path too.
        for (m, k, n) in [(3, 5, 7), (300, 260, 200), (1, 1, 1), (4, 0, 3)] {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            let (a, b) = (MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n));
            let out = product(a, b);
            close(out.as_slice::<f32>().unwrap_or_default(), &naive(a, b));
            assert_eq!(out.shape().dims::<2>(), [m, n]);
            // (bᵀ)ᵀ·(aᵀ)ᵀ read through transposed strides: the same product.
            let bt: Vec<f32> = naive(b.t(), MatRef::row_major(&identity(k), k, k));
            let bt = MatRef::row_major(&bt, n, k).t();
            close(
                product(a, bt).as_slice::<f32>().unwrap_or_default(),
                &naive(a, b),
            );
        }
    }

    fn identity(n: usize) -> Vec<f32> {
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            m[i * n + i] = 1.0;
        }
        m
    }

    #[test]
    fn affine_adds_the_bias_and_residual_and_accumulation_adds_to_dst() {
        let (m, k, n) = (6, 4, 5);
        let (x, w, bias) = (values(m * k, 3), values(k * n, 4), values(n, 5));
        let (x, w) = (MatRef::row_major(&x, m, k), MatRef::row_major(&w, k, n));
        let expected: Vec<f32> = naive(x, w)
            .iter()
            .enumerate()
            .map(|(i, v)| v + bias[i % n])
            .collect();
        close(
            affine(x, w, &bias, None)
                .as_slice::<f32>()
                .unwrap_or_default(),
            &expected,
        );
        let residual = values(m * n, 7);
        let with_residual: Vec<f32> = expected.iter().zip(&residual).map(|(e, r)| e + r).collect();
        close(
            affine(x, w, &bias, Some(&residual))
                .as_slice::<f32>()
                .unwrap_or_default(),
            &with_residual,
        );
        let mut dst = values(m * n, 6);
        let before = dst.clone();
        product_into(&mut dst, x, w, true, true);
        let sum: Vec<f32> = naive(x, w)
            .iter()
            .zip(&before)
            .map(|(p, d)| p + d)
            .collect();
        close(&dst, &sum);
    }

    #[test]
    fn batched_products_match_each_product() {
        let (groups, m, k, n) = (5, 7, 3, 9);
        let (a, b) = (values(groups * m * k, 7), values(groups * k * n, 8));
        let a_of = |g: usize| MatRef::row_major(&a[g * m * k..(g + 1) * m * k], m, k);
        // b stored as [groups, n, k] and read transposed.
        let b_of = |g: usize| MatRef::row_major(&b[g * k * n..(g + 1) * k * n], n, k).t();
        let out = batched_product(groups, a_of, b_of);
        assert_eq!(out.shape().dims::<3>(), [groups, m, n]);
        let out = out.as_slice::<f32>().unwrap_or_default();
        for g in 0..groups {
            close(&out[g * m * n..(g + 1) * m * n], &naive(a_of(g), b_of(g)));
        }
    }

    #[test]
    fn heads_side_by_side_places_each_product_in_its_columns() {
        let (sequences, heads, m, k, n) = (3, 4, 5, 6, 2);
        let a = values(sequences * heads * m * k, 10);
        let b = values(sequences * heads * k * n, 11);
        let a_of = |s: usize, h: usize| {
            let g = s * heads + h;
            MatRef::row_major(&a[g * m * k..(g + 1) * m * k], m, k)
        };
        let b_of = |s: usize, h: usize| {
            let g = s * heads + h;
            MatRef::row_major(&b[g * k * n..(g + 1) * k * n], k, n)
        };
        let out = heads_side_by_side(sequences, heads, a_of, b_of);
        assert_eq!(out.shape().dims::<2>(), [sequences * m, heads * n]);
        let out = out.as_slice::<f32>().unwrap_or_default();
        for s in 0..sequences {
            for h in 0..heads {
                let expected = naive(a_of(s, h), b_of(s, h));
                for i in 0..m {
                    let row = &out[(s * m + i) * heads * n + h * n..][..n];
                    close(row, &expected[i * n..(i + 1) * n]);
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "reads element")]
    fn a_view_past_its_slice_is_refused() {
        let data = [0.0; 10];
        let _ = MatRef::strided(&data, 3, 4, 4, 1);
    }
}
