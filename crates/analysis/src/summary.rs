//! Summaries of repeated measurements: means over seeds.

/// Running means `(x, mean y, count)` of one key.
type Running = Vec<(f64, f64, usize)>;

/// `(key, x, y)` rows grouped by key, the ys of equal x averaged (over seeds), each group
/// sorted by x; keys in order of first appearance.
pub fn mean_by<K: PartialEq + Clone>(rows: &[(K, f64, f64)]) -> Vec<(K, Vec<(f64, f64)>)> {
    let mut groups: Vec<(K, Running)> = Vec::new();
    for (key, x, y) in rows {
        let pos = match groups.iter().position(|(k, _)| k == key) {
            Some(p) => p,
            None => {
                groups.push((key.clone(), Vec::new()));
                groups.len() - 1
            }
        };
        let points = &mut groups[pos].1;
        match points.iter_mut().find(|p| p.0 == *x) {
            Some(p) => {
                p.2 += 1;
                p.1 += (y - p.1) / p.2 as f64;
            }
            None => points.push((*x, *y, 1)),
        }
    }
    groups
        .into_iter()
        .map(|(k, mut pts)| {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (k, pts.into_iter().map(|(x, y, _)| (x, y)).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_averaged_per_key_and_x_and_sorted() {
        let rows = [
            ("a", 2.0, 1.0),
            ("b", 1.0, 5.0),
            ("a", 1.0, 3.0),
            ("a", 2.0, 2.0),
            ("a", 2.0, 6.0),
        ];
        let groups = mean_by(&rows);
        assert_eq!(
            groups,
            vec![("a", vec![(1.0, 3.0), (2.0, 3.0)]), ("b", vec![(1.0, 5.0)])]
        );
    }
}
