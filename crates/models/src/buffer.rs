//! New f32 tensors for the fused kernels, without a separate pass that zero-fills them first.
//!
//! Burn's `FlexTensor::empty` zero-fills a byte buffer and copies it to align it; the kernels
//! here used to zero-fill their outputs up front, one core writing megabytes that are about to
//! be overwritten and evicting them from the cache on the way (about 2.4% of a d256 step,
//! BENCHMARKS.md). [`par_new_tensor`] instead cuts a new buffer into chunks and lets the task
//! that computes a chunk zero it just before, while it is in that core's cache;
//! [`new_tensor`] hands uninitialised memory to a writer that fills all of it (a GEMM).
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Shape};
use rayon::prelude::*;

/// A new f32 tensor of `shape` whose elements `write` computes into uninitialised memory.
///
/// # Safety
/// `write` initialises every element of the slice it is given.
pub(crate) unsafe fn new_tensor(
    shape: Shape,
    write: impl FnOnce(&mut [MaybeUninit<f32>]),
) -> FlexTensor {
    let n = shape.num_elements();
    let mut buffer = Vec::<f32>::with_capacity(n);
    write(&mut buffer.spare_capacity_mut()[..n]);
    // SAFETY: the capacity is at least `n` and `write` initialised the first `n` elements.
    unsafe { buffer.set_len(n) };
    tensor(buffer, shape)
}

/// A new f32 tensor of `shape`, computed in parallel: its buffer is cut into chunks of
/// `chunk_len` elements (the last may be shorter), one per item of `inputs`, and each task
/// zeroes its chunk and calls `fill(chunk, item)`. Returns the tensor and what each call
/// returned, in order.
///
/// # Panics
/// If `inputs` does not have one item per chunk.
pub(crate) fn par_new_tensor<I, R>(
    shape: Shape,
    chunk_len: usize,
    inputs: I,
    fill: impl Fn(&mut [f32], I::Item) -> R + Sync,
) -> (FlexTensor, Vec<R>)
where
    I: IndexedParallelIterator,
    R: Send,
{
    let n = shape.num_elements();
    let chunk_len = chunk_len.max(1);
    assert_eq!(
        inputs.len(),
        n.div_ceil(chunk_len),
        "one input per chunk of {chunk_len} of {n} elements"
    );
    let mut buffer = Vec::<f32>::with_capacity(n);
    let results = buffer.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk_len)
        .zip(inputs)
        .map(|(chunk, item)| fill(zeroed(chunk), item))
        .collect();
    // SAFETY: the capacity is at least `n`; the chunks cover the first `n` elements (one input
    // per chunk, checked above, so the zip visits every chunk) and `zeroed` initialised each.
    unsafe { buffer.set_len(n) };
    (tensor(buffer, shape), results)
}

/// `chunk` set to zeros, as initialised memory.
fn zeroed(chunk: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for x in chunk.iter_mut() {
        x.write(0.0);
    }
    let len = chunk.len();
    // SAFETY: every element was just written; `MaybeUninit<f32>` has the layout of `f32`, and
    // the result borrows `chunk` for its whole life.
    unsafe { std::slice::from_raw_parts_mut(chunk.as_mut_ptr().cast::<f32>(), len) }
}

/// A contiguous f32 tensor of `shape` over `buffer` (no copy).
fn tensor(buffer: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(buffer),
        Layout::contiguous(shape),
        DType::F32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_is_filled_in_order_and_results_come_back_in_order() {
        // 10 elements in chunks of 4: 4 + 4 + 2.
        let (t, firsts) = par_new_tensor(
            Shape::new([2, 5]),
            4,
            (0..3usize).into_par_iter(),
            |chunk, i| {
                assert!(chunk.iter().all(|&x| x == 0.0), "chunks start zeroed");
                for (j, x) in chunk.iter_mut().enumerate() {
                    *x = (i * 4 + j) as f32;
                }
                chunk.len()
            },
        );
        assert_eq!(firsts, vec![4, 4, 2]);
        let expected: Vec<f32> = (0..10).map(|x| x as f32).collect();
        assert_eq!(t.as_slice::<f32>(), Some(&expected[..]));
    }

    #[test]
    #[should_panic(expected = "one input per chunk")]
    fn too_few_inputs_are_refused() {
        let _ = par_new_tensor(Shape::new([10]), 4, (0..2usize).into_par_iter(), |_, _| ());
    }
}
