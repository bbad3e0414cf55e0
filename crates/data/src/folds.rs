//! Stratified, deterministic splits of a labelled set: held-out parts, nested training
//! fractions and k folds. Each class's examples are shuffled by a seeded ChaCha8 generator and
//! dealt out in that order, so every part keeps the class proportions of the whole (within one
//! example per class) and the same seed always gives the same parts.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Indices of each class, each list shuffled by `seed` (stream = class).
fn shuffled_classes(labels: &[u32], seed: u64) -> Vec<Vec<usize>> {
    let n_classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut classes = vec![Vec::new(); n_classes];
    for (i, &label) in labels.iter().enumerate() {
        classes[label as usize].push(i);
    }
    for (class, members) in classes.iter_mut().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(class as u64);
        members.shuffle(&mut rng);
    }
    classes
}

/// The first `fraction` of each class (rounded, at least one of a non-empty class), sorted.
/// Nested: for one seed, a smaller fraction's subset lies inside a larger one's, so a study of
/// training-set size adds data rather than drawing a new sample at each size.
pub fn stratified_subset(labels: &[u32], fraction: f64, seed: u64) -> Vec<usize> {
    let mut chosen: Vec<usize> = shuffled_classes(labels, seed)
        .into_iter()
        .flat_map(|members| {
            let take = ((fraction * members.len() as f64).round() as usize)
                .clamp(usize::from(!members.is_empty()), members.len());
            members.into_iter().take(take)
        })
        .collect();
    chosen.sort_unstable();
    chosen
}

/// `(kept, held_out)`: `held_out_fraction` of each class held out, the rest kept; both sorted.
pub fn stratified_split(
    labels: &[u32],
    held_out_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let held_out = stratified_subset(labels, held_out_fraction, seed);
    let mut is_held = vec![false; labels.len()];
    for &i in &held_out {
        is_held[i] = true;
    }
    let kept = (0..labels.len()).filter(|&i| !is_held[i]).collect();
    (kept, held_out)
}

/// The fold, `0..k`, of every example. Classes are dealt round-robin in one running sequence,
/// so each class's count differs by at most one between folds, and so do the folds' sizes.
pub fn stratified_folds(labels: &[u32], k: usize, seed: u64) -> Vec<usize> {
    let k = k.max(1);
    let mut fold = vec![0; labels.len()];
    let mut next = 0usize;
    for members in shuffled_classes(labels, seed) {
        for i in members {
            fold[i] = next % k;
            next += 1;
        }
    }
    fold
}

/// `(train, held_out)` index lists of fold `f` of `folds`.
pub fn fold_indices(folds: &[usize], f: usize) -> (Vec<usize>, Vec<usize>) {
    (0..folds.len()).partition(|&i| folds[i] != f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<u32> {
        // Unbalanced: 50 of class 0, 30 of class 1, 7 of class 2, interleaved.
        let mut labels = Vec::new();
        labels.extend(std::iter::repeat_n(0, 50));
        labels.extend(std::iter::repeat_n(1, 30));
        labels.extend(std::iter::repeat_n(2, 7));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        labels.shuffle(&mut rng);
        labels
    }

    fn counts(labels: &[u32], indices: &[usize]) -> [usize; 3] {
        let mut c = [0; 3];
        for &i in indices {
            c[labels[i] as usize] += 1;
        }
        c
    }

    #[test]
    fn folds_are_stratified_disjoint_and_deterministic() {
        let labels = labels();
        let folds = stratified_folds(&labels, 5, 3);
        assert_eq!(folds, stratified_folds(&labels, 5, 3));
        assert_ne!(folds, stratified_folds(&labels, 5, 4));
        let mut seen = vec![0; labels.len()];
        let mut sizes = Vec::new();
        for f in 0..5 {
            let (train, held) = fold_indices(&folds, f);
            assert_eq!(train.len() + held.len(), labels.len());
            assert!(held.iter().all(|i| !train.contains(i)));
            for &i in &held {
                seen[i] += 1;
            }
            sizes.push(held.len());
            // 50/5 = 10 zeros, 30/5 = 6 ones, 7/5 → 1 or 2 twos in every fold.
            let c = counts(&labels, &held);
            assert_eq!(&c[..2], &[10, 6]);
            assert!((1..=2).contains(&c[2]), "{c:?}");
        }
        assert!(
            seen.iter().all(|&s| s == 1),
            "every example held out exactly once"
        );
        let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(hi - lo <= 1, "{sizes:?}");
    }

    #[test]
    fn subsets_are_stratified_and_nested() {
        let labels = labels();
        let small = stratified_subset(&labels, 0.2, 9);
        let large = stratified_subset(&labels, 0.6, 9);
        assert_eq!(counts(&labels, &small), [10, 6, 1]);
        assert_eq!(counts(&labels, &large), [30, 18, 4]);
        assert!(small.iter().all(|i| large.contains(i)));
        let (kept, held) = stratified_split(&labels, 0.2, 9);
        assert_eq!(held, small);
        assert_eq!(kept.len() + held.len(), labels.len());
        assert!(kept.iter().all(|i| !held.contains(i)));
    }
}
