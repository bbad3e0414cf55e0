//! New f32 tensors for the fused kernels, written once, with no pass that zero-fills them
//! first.
//!
//! Burn's `FlexTensor::empty` zero-fills a byte buffer and copies it to align it; the kernels
//! here used to zero-fill their outputs too (one core writing megabytes that are overwritten
//! at once: about 2.4% of a d256 step up front, still 4% when each task zeroed its own chunk,
//! BENCHMARKS.md). [`par_new_tensor`] hands each task its chunk of uninitialised memory as a
//! [`Chunk`], which can only be written front to back from values ([`Chunk::write`]) and
//! proves at the end that all of it was ([`Chunk::finish`]); [`new_tensor`] hands
//! uninitialised memory to a writer that fills all of it (a GEMM).
#![allow(unsafe_code)]

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// A task's part of a new buffer, not yet written: [`Chunk::write`] fills it front to back,
/// [`Chunk::finish`] checks that nothing is left.
pub(crate) struct Chunk<'a> {
    rest: &'a mut [MaybeUninit<f32>],
    /// Which chunk of which call this is, for [`Filled`].
    id: ChunkId,
}

/// A chunk's identity: the [`par_new_tensor`] call it belongs to (numbered, so a proof kept
/// from an earlier call at the same address cannot pass), where it starts, how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChunkId {
    call: u64,
    start: usize,
    len: usize,
}

/// Proof that a [`Chunk`] was written whole: only [`Chunk::finish`] makes one.
#[must_use]
pub(crate) struct Filled(ChunkId);

/// Numbers the calls of [`par_new_tensor`].
static CALLS: AtomicU64 = AtomicU64::new(0);

impl<'a> Chunk<'a> {
    fn new(call: u64, chunk: &'a mut [MaybeUninit<f32>]) -> Self {
        let id = ChunkId {
            call,
            start: chunk.as_ptr().addr(),
            len: chunk.len(),
        };
        Self { rest: chunk, id }
    }

    /// Writes the next `len` elements from `values` and returns them, initialised, to be read
    /// or changed further.
    ///
    /// # Panics
    /// If fewer than `len` elements are left, or `values` yields fewer than `len`.
    #[inline(always)]
    pub(crate) fn write(
        &mut self,
        len: usize,
        values: impl IntoIterator<Item = f32>,
    ) -> &'a mut [f32] {
        let head = self.take(len);
        let mut written = 0;
        for (slot, value) in head.iter_mut().zip(values) {
            slot.write(value);
            written += 1;
        }
        assert_eq!(written, len, "fewer values than elements to write");
        // SAFETY: all `len` elements of `head` were just written; `MaybeUninit<f32>` has the
        // layout of `f32`; `head` is borrowed for `'a` and no longer reachable through `self`.
        unsafe { &mut *(std::ptr::from_mut(head) as *mut [f32]) }
    }

    /// The next `len` elements, unwritten, no longer part of the rest.
    ///
    /// # Panics
    /// If fewer elements are left.
    #[inline(always)]
    fn take(&mut self, len: usize) -> &'a mut [MaybeUninit<f32>] {
        let rest = std::mem::take(&mut self.rest);
        let left = rest.len();
        assert!(len <= left, "{len} elements written, {left} left");
        let (head, tail) = rest.split_at_mut(len);
        self.rest = tail;
        head
    }

    /// Copies `values` into the next `values.len()` elements (a `memcpy`).
    ///
    /// # Panics
    /// If fewer elements are left.
    #[inline(always)]
    pub(crate) fn copy(&mut self, values: &[f32]) -> &'a mut [f32] {
        let head = self.take(values.len());
        head.write_copy_of_slice(values)
    }

    /// The proof that the whole chunk was written.
    ///
    /// # Panics
    /// If some of it was not.
    pub(crate) fn finish(self) -> Filled {
        assert!(
            self.rest.is_empty(),
            "{} elements of a chunk left unwritten",
            self.rest.len()
        );
        Filled(self.id)
    }
}

/// A new f32 tensor of `shape`, computed in parallel: its buffer is cut into chunks of
/// `chunk_len` elements (the last may be shorter), one per item of `inputs`, and each task
/// writes its chunk through `fill(chunk, item)`, which returns the chunk's [`Filled`] proof and
/// a value. Returns the tensor and the values, in order.
///
/// # Panics
/// If `inputs` does not have one item per chunk, or a task does not prove its own chunk
/// written.
pub(crate) fn par_new_tensor<I, R>(
    shape: Shape,
    chunk_len: usize,
    inputs: I,
    fill: impl Fn(Chunk<'_>, I::Item) -> (Filled, R) + Sync,
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
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let mut buffer = Vec::<f32>::with_capacity(n);
    let results = buffer.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk_len)
        .zip(inputs)
        .map(|(chunk, item)| {
            let chunk = Chunk::new(call, chunk);
            let id = chunk.id;
            let (Filled(proved), result) = fill(chunk, item);
            assert_eq!(
                proved, id,
                "a task proved another chunk written than its own"
            );
            result
        })
        .collect();
    // SAFETY: the capacity is at least `n`; the chunks cover the first `n` elements (one input
    // per chunk, checked above, so the zip visits every chunk), and each task proved its chunk
    // written whole (a `Filled` is made only by `Chunk::finish`, after the last write).
    unsafe { buffer.set_len(n) };
    (tensor(buffer, shape), results)
}

/// A contiguous f32 tensor of `shape` over `buffer` (no copy).
pub(crate) fn tensor(buffer: Vec<f32>, shape: Shape) -> FlexTensor {
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
    fn every_chunk_is_written_in_order_and_results_come_back_in_order() {
        // 10 elements in chunks of 4: 4 + 4 + 2.
        let (t, lens) = par_new_tensor(
            Shape::new([2, 5]),
            4,
            (0..3usize).into_par_iter(),
            |mut chunk, i| {
                let len = chunk.id.len;
                let first = chunk.write(1, [(i * 4) as f32]);
                first[0] += 0.0; // written values can be read and changed
                chunk.write(len - 1, (1..len).map(|j| (i * 4 + j) as f32));
                (chunk.finish(), len)
            },
        );
        assert_eq!(lens, vec![4, 4, 2]);
        let expected: Vec<f32> = (0..10).map(|x| x as f32).collect();
        assert_eq!(t.as_slice::<f32>(), Some(&expected[..]));
    }

    /// A tensor of `len` values in chunks of 4, each chunk written by `write`.
    fn fill_chunks(len: usize, write: impl Fn(&mut Chunk<'_>) + Sync) {
        let tasks = len.div_ceil(4);
        let _ = par_new_tensor(
            Shape::new([len]),
            4,
            (0..tasks).into_par_iter(),
            |mut c, _| {
                write(&mut c);
                (c.finish(), ())
            },
        );
    }

    #[test]
    #[should_panic(expected = "one input per chunk")]
    fn too_few_inputs_are_refused() {
        let _ = par_new_tensor(Shape::new([10]), 4, (0..2usize).into_par_iter(), |c, _| {
            (c.finish(), ())
        });
    }

    #[test]
    #[should_panic(expected = "left unwritten")]
    fn a_chunk_left_partly_unwritten_is_refused() {
        fill_chunks(8, |c| {
            c.copy(&[1.0, 2.0]);
        });
    }

    #[test]
    fn a_proof_kept_from_another_call_is_refused() {
        // A proof smuggled out of one call (that then fails) and handed in by the next, whose
        // chunk may sit at the same address, must not pass for the new chunk.
        let kept = std::sync::Mutex::new(None);
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            par_new_tensor(
                Shape::new([4]),
                4,
                (0..1usize).into_par_iter(),
                |mut c, _| -> (Filled, ()) {
                    c.copy(&[1.0; 4]);
                    *kept.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.finish());
                    panic!("leave without returning the proof")
                },
            )
        }));
        assert!(first.is_err());
        let second = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            par_new_tensor(
                Shape::new([4]),
                4,
                (0..1usize).into_par_iter(),
                |_unwritten, _| {
                    let proof = kept.lock().unwrap_or_else(|e| e.into_inner()).take();
                    (proof.unwrap_or_else(|| unreachable!("kept above")), ())
                },
            )
        }));
        let message = second.err().and_then(|e| e.downcast::<String>().ok());
        assert!(
            message.is_some_and(|m| m.contains("another chunk")),
            "the second call must refuse the kept proof"
        );
    }

    #[test]
    #[should_panic(expected = "fewer values")]
    fn too_few_values_are_refused() {
        fill_chunks(4, |c| {
            c.write(4, [1.0, 2.0]);
        });
    }
}
