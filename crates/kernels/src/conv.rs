//! 2-D convolutions (stride 1, symmetric zero padding) with an optional fused ReLU, and the
//! 2×2 max-pool that keeps which element of each window won, for the image classifiers.
//!
//! A convolution runs image by image: the image is unrolled into its patch matrix (im2col,
//! `[C_in·kh·kw, H_out·W_out]`, one row per input channel and kernel tap) and the output
//! image `[C_out, H_out·W_out]` — already the NCHW layout — is the bias plus the kernel
//! matrix `[C_out, C_in·kh·kw]` times it, through the `gemm` crate, with the ReLU applied in
//! the same pass over the image while it is in cache. Backward, each image's patch matrix is
//! built again (cheaper than keeping it): `dW += dY·patchesᵀ`, `dpatches = Wᵀ·dY` folded
//! back into the input's gradient (col2im). Images go to the rayon pool's threads in fixed
//! groups whose weight-gradient partial sums are added in group order, so the result does
//! not depend on how the threads split the work.

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::tensor::Shape;
use rayon::prelude::*;

use burn::backend::ops::FloatTensorOps;

use crate::buffer::tensor;
use crate::gemm::{self, MatRef};
use crate::simd::contiguous_f32;

/// Images per parallel task of the backward pass (each task keeps its own weight gradient).
const IMAGES_PER_TASK: usize = 8;

/// The shape of one convolution: input `[batch, c_in, h, w]`, kernel `[c_out, c_in, kh, kw]`,
/// zero padding `pad` rows above and below and `pad` columns left and right.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvShape {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    pad: [usize; 2],
}

impl ConvShape {
    /// The shape of `x` `[B, C_in, H, W]` convolved with `weight` `[C_out, C_in, kh, kw]`.
    ///
    /// # Panics
    /// If the channels disagree or the padded image is smaller than the kernel (the caller,
    /// `ops::conv2d`, checks both before choosing this path).
    pub(crate) fn new(x: &FlexTensor, weight: &FlexTensor, pad: [usize; 2]) -> Self {
        let [batch, c_in, h, w] = x.shape().dims::<4>();
        let [c_out, c_in_w, kh, kw] = weight.shape().dims::<4>();
        assert_eq!(c_in, c_in_w, "input channels of the image and the kernel");
        assert!(
            h + 2 * pad[0] >= kh && w + 2 * pad[1] >= kw,
            "a kernel larger than the image"
        );
        Self {
            batch,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            pad,
        }
    }

    fn h_out(&self) -> usize {
        self.h + 2 * self.pad[0] + 1 - self.kh
    }

    fn w_out(&self) -> usize {
        self.w + 2 * self.pad[1] + 1 - self.kw
    }

    /// Output positions of one image.
    fn positions(&self) -> usize {
        self.h_out() * self.w_out()
    }

    /// Rows of the patch matrix: one per input channel and kernel tap.
    fn taps(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    fn image_len(&self) -> usize {
        self.c_in * self.h * self.w
    }

    fn out_image_len(&self) -> usize {
        self.c_out * self.positions()
    }

    /// Whether the patch matrix is the image itself (a 1×1 kernel without padding).
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.pad == [0, 0]
    }

    /// Every row of the patch matrix in order, with the input channel and kernel tap it is
    /// of: `(row, c, ky, kx)`.
    fn rows(&self) -> impl Iterator<Item = (usize, usize, usize, usize)> + use<> {
        let (kh, kw) = (self.kh, self.kw);
        (0..self.c_in)
            .flat_map(move |c| (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (c, ky, kx))))
            .enumerate()
            .map(|(r, (c, ky, kx))| (r, c, ky, kx))
    }

    /// Writes the patch matrix `[taps, positions]` of `image` `[C_in, H, W]` into `cols`:
    /// element `((c, ky, kx), (y, x))` is `image[c, y + ky − pad, x + kx − pad]`, zero outside.
    fn im2col(&self, image: &[f32], cols: &mut [f32]) {
        let (ho, wo, [ph, pw]) = (self.h_out(), self.w_out(), self.pad);
        let (n, hw) = (ho * wo, self.h * self.w);
        for (r, c, ky, kx) in self.rows() {
            let (row, plane) = (&mut cols[r * n..(r + 1) * n], &image[c * hw..(c + 1) * hw]);
            let [x_lo, x_hi] = inside(kx, pw, self.w, wo);
            if wo == self.w {
                let ys = inside(ky, ph, self.h, ho);
                same_width_row(plane, row, self.w, [ky, kx], [ph, pw], [ys, [x_lo, x_hi]]);
                continue;
            }
            for (y, out) in row.chunks_exact_mut(wo).enumerate() {
                let iy = (y + ky).wrapping_sub(ph);
                if iy >= self.h {
                    out.fill(0.0);
                    continue;
                }
                let src = &plane[iy * self.w..(iy + 1) * self.w];
                out[..x_lo].fill(0.0);
                let ix = x_lo + kx - pw;
                out[x_lo..x_hi].copy_from_slice(&src[ix..ix + (x_hi - x_lo)]);
                out[x_hi..].fill(0.0);
            }
        }
    }

    /// Adds the patch matrix's gradient `cols` `[taps, positions]` into the image's gradient
    /// `image` `[C_in, H, W]` (the transpose of [`ConvShape::im2col`]).
    /// `cols` is changed: the elements of padding taps are zeroed.
    fn col2im_add(&self, cols: &mut [f32], image: &mut [f32]) {
        let (ho, wo, [ph, pw]) = (self.h_out(), self.w_out(), self.pad);
        let (n, hw) = (ho * wo, self.h * self.w);
        let arch = pulp::Arch::new();
        for (r, c, ky, kx) in self.rows() {
            let (row, plane) = (
                &mut cols[r * n..(r + 1) * n],
                &mut image[c * hw..(c + 1) * hw],
            );
            let [x_lo, x_hi] = inside(kx, pw, self.w, wo);
            if wo == self.w {
                // The transpose of `same_width_row`: the padding taps' elements zeroed, then
                // the rows inside the image added at a constant shift.
                let [y_lo, y_hi] = inside(ky, ph, self.h, ho);
                if y_lo == y_hi {
                    continue;
                }
                let (start, end) = (y_lo * wo, y_hi * wo);
                for out in row[start..end].chunks_exact_mut(wo) {
                    out[..x_lo].fill(0.0);
                    out[x_hi..].fill(0.0);
                }
                // Element (y, x) goes to plane[(y + ky − ph)·w + x + kx − pw].
                let dst_start = (y_lo + ky - ph) * self.w;
                let (src, dst) = if kx >= pw {
                    let shift = kx - pw;
                    let len = (end - start).min(plane.len() - dst_start - shift);
                    (
                        &row[start..start + len],
                        &mut plane[dst_start + shift..dst_start + shift + len],
                    )
                } else {
                    let shift = (pw - kx).min(end - start);
                    let len = end - start - shift;
                    (
                        &row[start + shift..start + shift + len],
                        &mut plane[dst_start..dst_start + len],
                    )
                };
                arch.dispatch(AddInto { dst, src });
                continue;
            }
            for (y, g) in row.chunks_exact(wo).enumerate() {
                let iy = (y + ky).wrapping_sub(ph);
                if iy >= self.h {
                    continue;
                }
                let ix = x_lo + kx - pw;
                let dst = &mut plane[iy * self.w + ix..iy * self.w + ix + (x_hi - x_lo)];
                for (d, g) in dst.iter_mut().zip(&g[x_lo..x_hi]) {
                    *d += g;
                }
            }
        }
    }
}

/// The output positions `o` (of `out`) along one axis whose input position `o + tap − pad`
/// lies inside `0..size`, as `[lo, hi]`.
fn inside(tap: usize, pad: usize, size: usize, out: usize) -> [usize; 2] {
    let lo = pad.saturating_sub(tap).min(out);
    [lo, (size + pad).saturating_sub(tap).clamp(lo, out)]
}

kernel! {
    /// `dst = g` where `y` is positive, 0 elsewhere.
    struct ReluMask<'a> { dst: &'a mut [f32], g: &'a [f32], y: &'a [f32] } -> () {
        for ((d, &g), &y) in dst.iter_mut().zip(g).zip(y) {
            *d = if y > 0.0 { g } else { 0.0 };
        }
    }
}

kernel! {
    /// `dst += src` element by element.
    struct AddInto<'a> { dst: &'a mut [f32], src: &'a [f32] } -> () {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    }
}

/// One row of the patch matrix (tap `(ky, kx)` of one input plane `[h, w]`) when the output
/// is as wide as the input: then the row is the plane shifted by a constant offset, so the
/// rows of the image that the tap reads are one copy, after which the columns that wrapped
/// around from a neighbouring row (outside `x_lo..x_hi`) and the rows above and below the
/// image are zeroed.
fn same_width_row(
    plane: &[f32],
    row: &mut [f32],
    w: usize,
    [ky, kx]: [usize; 2],
    [ph, pw]: [usize; 2],
    [[y_lo, y_hi], [x_lo, x_hi]]: [[usize; 2]; 2],
) {
    row[..y_lo * w].fill(0.0);
    row[y_hi * w..].fill(0.0);
    if y_lo == y_hi {
        return;
    }
    // Output element (y, x) reads plane[(y + ky − ph)·w + x + kx − pw]: a constant shift.
    let (start, end) = (y_lo * w, y_hi * w);
    let src_start = (y_lo + ky - ph) * w;
    if kx >= pw {
        let shift = kx - pw;
        let n = (end - start).min(plane.len() - src_start - shift);
        row[start..start + n].copy_from_slice(&plane[src_start + shift..src_start + shift + n]);
        row[start + n..end].fill(0.0);
    } else {
        let shift = (pw - kx).min(end - start);
        let n = end - start - shift;
        row[start..start + shift].fill(0.0);
        row[start + shift..start + shift + n].copy_from_slice(&plane[src_start..src_start + n]);
    }
    // The columns whose input column lies outside the image read a neighbouring row.
    for out in row[start..end].chunks_exact_mut(w) {
        out[..x_lo].fill(0.0);
        out[x_hi..].fill(0.0);
    }
}

/// The convolution of `x` `[B, C_in, H, W]` with `weight` `[C_out, C_in, kh, kw]` plus `bias`
/// `[C_out]` (or none when `bias` is empty), through a ReLU when `relu`: `[B, C_out, H_out,
/// W_out]`.
pub(crate) fn conv2d_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    pad: [usize; 2],
    relu: bool,
) -> FlexTensor {
    let s = ConvShape::new(x, weight, pad);
    let (x, weight, bias) = (
        x.to_contiguous(),
        weight.to_contiguous(),
        bias.to_contiguous(),
    );
    let (x, weight, bias) = (
        contiguous_f32(&x),
        contiguous_f32(&weight),
        contiguous_f32(&bias),
    );
    let kernel = MatRef::row_major(weight, s.c_out, s.taps());
    let positions = s.positions();
    let image_len = s.image_len();
    let out = gemm::grouped_products(
        [s.batch, s.c_out, positions],
        // Few images: each product is split across the threads instead.
        s.batch < rayon::current_num_threads(),
        Scratch::take,
        |scratch, b, write| {
            let image = &x[b * image_len..(b + 1) * image_len];
            write(kernel, patches(&s, image, &mut scratch.0));
        },
        |_, out| {
            if bias.is_empty() && !relu {
                return;
            }
            // The bias and the ReLU in one pass over the image's output.
            for (row, &b) in out
                .chunks_exact_mut(positions)
                .zip(bias.iter().chain(std::iter::repeat(&0.0)))
            {
                match relu {
                    true => row.iter_mut().for_each(|v| *v = (*v + b).max(0.0)),
                    false => row.iter_mut().for_each(|v| *v += b),
                }
            }
        },
    );
    let [_, c_out, ho, wo] = [s.batch, s.c_out, s.h_out(), s.w_out()];
    burn::backend::Flex::float_reshape(out, Shape::new([s.batch, c_out, ho, wo]))
}

/// A patch-matrix-sized buffer from this thread's pool, given back when dropped: a training
/// step's convolutions need the same few buffers again and again, and every use overwrites
/// what it reads (an im2col writes the whole patch matrix, a product its whole output), so
/// they are neither allocated nor zero-filled again.
struct Scratch(Vec<f32>);

thread_local! {
    /// This thread's buffers not in use.
    static POOL: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Scratch {
    /// A buffer from the pool, or a new empty one.
    fn take() -> Self {
        Self(
            POOL.with(|pool| pool.borrow_mut().pop())
                .unwrap_or_default(),
        )
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.0);
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < 4 {
                pool.push(buffer);
            }
        });
    }
}

/// The patch matrix of `image` as a matrix: the image itself for a pointwise kernel, else
/// built in `scratch`.
fn patches<'a>(s: &ConvShape, image: &'a [f32], scratch: &'a mut Vec<f32>) -> MatRef<'a> {
    if s.pointwise() {
        return MatRef::row_major(image, s.taps(), s.positions());
    }
    scratch.resize(s.taps() * s.positions(), 0.0);
    s.im2col(image, scratch);
    MatRef::row_major(scratch, s.taps(), s.positions())
}

/// Gradients of a convolution's input, kernel and bias from its output's gradient `grad`:
/// `[dx, dW, db]`. With `relu`, `out` is the (rectified) output and the gradient passes only
/// where it is positive. `dx` is computed only when `need_dx` (an empty tensor otherwise) and
/// `db` only when `with_bias`.
pub(crate) fn conv2d_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    out: Option<&FlexTensor>,
    grad: &FlexTensor,
    pad: [usize; 2],
    [need_dx, with_bias]: [bool; 2],
) -> [FlexTensor; 3] {
    let s = ConvShape::new(x, weight, pad);
    let (x, weight, grad) = (
        x.to_contiguous(),
        weight.to_contiguous(),
        grad.to_contiguous(),
    );
    let (x, weight) = (contiguous_f32(&x), contiguous_f32(&weight));
    let grad = contiguous_f32(&grad);
    let out = out.map(FlexTensor::to_contiguous);
    let out = out.as_ref().map(contiguous_f32);
    let (taps, positions) = (s.taps(), s.positions());
    let kernel = MatRef::row_major(weight, s.c_out, taps);
    let mut dx = vec![0.0f32; if need_dx { s.batch * s.image_len() } else { 0 }];
    let tasks = s.batch.div_ceil(IMAGES_PER_TASK);
    let dx_chunks: Vec<Option<&mut [f32]>> = if need_dx {
        dx.chunks_mut(IMAGES_PER_TASK * s.image_len())
            .map(Some)
            .collect()
    } else {
        (0..tasks).map(|_| None).collect()
    };
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx_chunks
        .into_par_iter()
        .enumerate()
        .map(|(task, mut dx)| {
            let mut dw = vec![0.0f32; s.c_out * taps];
            let mut db = vec![0.0f32; if with_bias { s.c_out } else { 0 }];
            let (mut scratch, mut dcols) = (Scratch::take(), Scratch::take());
            dcols.0.resize(taps * positions, 0.0); // written whole by each product below
            let mut masked = vec![0.0f32; if out.is_some() { s.out_image_len() } else { 0 }];
            let arch = pulp::Arch::new();
            let images = task * IMAGES_PER_TASK..s.batch.min((task + 1) * IMAGES_PER_TASK);
            for (i, b) in images.enumerate() {
                let range = b * s.out_image_len()..(b + 1) * s.out_image_len();
                let g = match out {
                    // The gradient through the fused ReLU: where the output is positive.
                    Some(out) => {
                        let (g, y) = (&grad[range.clone()], &out[range]);
                        arch.dispatch(ReluMask {
                            dst: &mut masked,
                            g,
                            y,
                        });
                        &masked[..]
                    }
                    None => &grad[range],
                };
                let g_m = MatRef::row_major(g, s.c_out, positions);
                for (d, row) in db.iter_mut().zip(g.chunks_exact(positions)) {
                    *d += row.iter().sum::<f32>();
                }
                let image = &x[b * s.image_len()..(b + 1) * s.image_len()];
                let cols = patches(&s, image, &mut scratch.0);
                gemm::product_into(&mut dw, g_m, cols.t(), true, false);
                if let Some(dx) = dx.as_deref_mut() {
                    let dx_b = &mut dx[i * s.image_len()..(i + 1) * s.image_len()];
                    if s.pointwise() {
                        gemm::product_into(dx_b, kernel.t(), g_m, true, false);
                    } else {
                        let dcols = &mut dcols.0[..taps * positions];
                        gemm::product_into(dcols, kernel.t(), g_m, false, false);
                        s.col2im_add(dcols, dx_b);
                    }
                }
            }
            (dw, db)
        })
        .collect();
    let mut dw = vec![0.0f32; s.c_out * taps];
    let mut db = vec![0.0f32; if with_bias { s.c_out } else { 0 }];
    for (pw, pb) in &partial {
        dw.iter_mut().zip(pw).for_each(|(d, p)| *d += p);
        db.iter_mut().zip(pb).for_each(|(d, p)| *d += p);
    }
    let dx_shape = if need_dx {
        [s.batch, s.c_in, s.h, s.w]
    } else {
        [0, 0, 0, 0]
    };
    let db_len = db.len();
    [
        tensor(dx, Shape::new(dx_shape)),
        tensor(dw, Shape::new([s.c_out, s.c_in, s.kh, s.kw])),
        tensor(db, Shape::new([db_len])),
    ]
}

/// A 2×2 max-pool with stride 2 of `x` `[B, C, H, W]` → `[B, C, H/2, W/2]` (a last odd row or
/// column is dropped, as Burn's and PyTorch's pools do), and the winner of each window as
/// `2·dy + dx` (the first of equal maxima, in row-major order).
pub(crate) fn max_pool2x2_forward(x: &FlexTensor) -> (FlexTensor, Vec<u8>) {
    let [b, c, h, w] = x.shape().dims::<4>();
    let (ho, wo) = (h / 2, w / 2);
    let x = x.to_contiguous();
    let x = contiguous_f32(&x);
    let mut out = Vec::with_capacity(b * c * ho * wo);
    let mut winner = Vec::with_capacity(b * c * ho * wo);
    if ho * wo > 0 {
        let planes: Vec<(Vec<f32>, Vec<u8>)> = x
            .par_chunks_exact(h * w)
            .map(|plane| {
                let (mut out, mut winner) =
                    (Vec::with_capacity(ho * wo), Vec::with_capacity(ho * wo));
                for y in 0..ho {
                    let top = &plane[2 * y * w..2 * y * w + 2 * wo];
                    let bottom = &plane[(2 * y + 1) * w..(2 * y + 1) * w + 2 * wo];
                    for (t, d) in top.chunks_exact(2).zip(bottom.chunks_exact(2)) {
                        // The first of equal maxima in row-major order wins.
                        let (m1, i1) = if t[1] > t[0] { (t[1], 1) } else { (t[0], 0) };
                        let (m2, i2) = if d[1] > d[0] { (d[1], 3) } else { (d[0], 2) };
                        let (m, i) = if m2 > m1 { (m2, i2) } else { (m1, i1) };
                        out.push(m);
                        winner.push(i);
                    }
                }
                (out, winner)
            })
            .collect();
        for (o, wi) in planes {
            out.extend_from_slice(&o);
            winner.extend_from_slice(&wi);
        }
    }
    (tensor(out, Shape::new([b, c, ho, wo])), winner)
}

/// The gradient of a 2×2 max-pool's input `[B, C, H, W]` (`dims`) from its output's gradient:
/// each output's gradient goes to its window's winner, zero elsewhere.
pub(crate) fn max_pool2x2_backward(
    dims: [usize; 4],
    winner: &[u8],
    grad: &FlexTensor,
) -> FlexTensor {
    let [b, c, h, w] = dims;
    let (ho, wo) = (h / 2, w / 2);
    let grad = grad.to_contiguous();
    let grad = contiguous_f32(&grad);
    let mut dx = vec![0.0f32; b * c * h * w];
    if ho * wo > 0 {
        dx.par_chunks_exact_mut(h * w)
            .zip(grad.par_chunks_exact(ho * wo))
            .zip(winner.par_chunks_exact(ho * wo))
            .for_each(|((plane, g), winner)| {
                for y in 0..ho {
                    for xo in 0..wo {
                        let k = usize::from(winner[y * wo + xo]);
                        plane[(2 * y + k / 2) * w + 2 * xo + k % 2] = g[y * wo + xo];
                    }
                }
            });
    }
    tensor(dx, Shape::new(dims))
}
