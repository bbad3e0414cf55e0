//! What every labelled data set offers a classifier's training loop: its labels, stratified
//! subsets, seeded training batches and ordered evaluation batches.
//!
//! Training batch `k` of a run covers positions `k·B .. (k+1)·B` of the endless sequence of
//! permutations of the set, epoch `e`'s permutation drawn from `(seed, e)`: a batch depends on
//! nothing but the seed and its index, and every example is seen once an epoch.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use scalelab_spec::Augmentation;

/// Which training batch to draw: batch `index` of `size` examples of a run seeded `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    /// The run's seed.
    pub seed: u64,
    /// The batch's index in the run (its optimiser step).
    pub index: u64,
    /// Examples in the batch.
    pub size: usize,
}

impl Draw {
    /// Batch `index` of `size` examples of a run seeded `seed`.
    pub const fn new(seed: u64, index: u64, size: usize) -> Self {
        Self { seed, index, size }
    }

    /// The generator of this draw for a data set whose draws are salted by `salt`: seeded by
    /// the run, one stream per batch, so that any batch can be drawn on its own.
    pub fn rng(self, salt: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ salt);
        rng.set_stream(self.index);
        rng
    }
}

/// A labelled data set.
pub trait LabelledSet: Sized {
    /// What one batch of it is.
    type Batch: LabelledBatch;
    /// The class of every example (one a sentence for a tagged set).
    fn labels(&self) -> &[u32];
    /// Number of examples.
    fn len(&self) -> usize {
        self.labels().len()
    }
    /// Whether there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of classes.
    fn n_classes(&self) -> usize;
    /// The examples at `indices`, in that order.
    fn subset(&self, indices: &[usize]) -> Self;
    /// Training batch `index` of a run seeded `seed`, augmented where the set knows how.
    fn train_batch(&self, draw: Draw, augmentation: &Augmentation) -> Self::Batch;
    /// The examples at `indices` as one batch, unaugmented.
    fn batch(&self, indices: &[usize]) -> Self::Batch;
    /// The whole set in order, in batches of at most `batch`, unaugmented; each batch is made
    /// when it is reached (a set is not copied whole at once).
    fn eval_batches(&self, batch: usize) -> impl Iterator<Item = Self::Batch> + '_ {
        let (n, batch) = (self.len(), batch.max(1));
        (0..n).step_by(batch).map(move |start| {
            let indices: Vec<usize> = (start..n.min(start + batch)).collect();
            self.batch(&indices)
        })
    }
}

/// A batch with its labels.
pub trait LabelledBatch {
    /// The class of every example of the batch.
    fn labels(&self) -> &[i64];
}

/// Indices of training batch `index` (see the module docs) into a set of `n` examples.
pub fn batch_indices(n: usize, seed: u64, index: u64, batch: usize) -> Vec<usize> {
    let len = n.max(1) as u64;
    let first = index * batch as u64;
    let mut epoch: Option<(u64, Vec<usize>)> = None;
    (first..first + batch as u64)
        .map(|position| {
            let e = position / len;
            let order = match &epoch {
                Some((cached, order)) if *cached == e => order,
                _ => {
                    let mut order: Vec<usize> = (0..n).collect();
                    let mut shuffle = ChaCha8Rng::seed_from_u64(seed);
                    shuffle.set_stream(e);
                    order.shuffle(&mut shuffle);
                    &epoch.insert((e, order)).1
                }
            };
            order.get((position % len) as usize).copied().unwrap_or(0)
        })
        .collect()
}
