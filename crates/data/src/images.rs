//! Labelled image sets for the supervised families: MNIST and Fashion-MNIST read from their
//! IDX files (LeCun et al. 1998; Xiao et al. 2017), and the 8×8 UCI digits embedded in the
//! binary. Pixels are scaled to `[0, 1]` and stored `[n, channels, height, width]`.
//!
//! Seeded batches walk epoch permutations: batch `k` of a run covers positions
//! `k·B .. (k+1)·B` of the endless sequence of permutations of the training set, epoch `e`'s
//! permutation drawn from `(seed, e)`. So a batch depends on nothing but the seed and its index,
//! and every example is seen once an epoch. Augmentation (shifts, rotations, scaling) is drawn
//! from the same key.

use std::io::Read;
use std::path::{Path, PathBuf};

use rand::Rng;
use scalelab_spec::{Augmentation, Dataset};

use crate::DataError;
use crate::folds::{fold_indices, stratified_folds, stratified_split, stratified_subset};
use crate::labelled::{Draw, LabelledBatch, LabelledSet, batch_indices};

const DIGITS_GZ: &[u8] = include_bytes!("../datasets/digits.csv.gz");
/// Share of the 1,797 digits held out as their test set (they ship without one).
pub const DIGITS_TEST_FRACTION: f64 = 0.25;
/// Seed of the digits' fixed train/test split; a constant so the split never moves.
const DIGITS_SPLIT_SEED: u64 = 0xd161_7500;

/// Images and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    /// Channels per image.
    pub channels: usize,
    /// Rows per image.
    pub height: usize,
    /// Columns per image.
    pub width: usize,
    /// `[n, channels, height, width]` intensities in `[0, 1]`.
    pub pixels: Vec<f32>,
    /// Class of each image, `0..n_classes`.
    pub labels: Vec<u32>,
    /// Number of classes.
    pub n_classes: usize,
}

/// A data set's training and test images.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSplits {
    /// Name of the data set.
    pub name: String,
    /// Names of the classes, in label order.
    pub class_names: Vec<String>,
    /// The training images (validation and folds are cut from these).
    pub train: ImageSet,
    /// The held-out test images.
    pub test: ImageSet,
}

/// A batch of images as the training crate turns it into tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBatch {
    /// `[batch, channels, height, width]`.
    pub pixels: Vec<f32>,
    /// `[channels, height, width]` of one image.
    pub shape: [usize; 3],
    /// `[batch]` classes.
    pub labels: Vec<i64>,
    /// Images in the batch.
    pub batch: usize,
}

impl ImageSet {
    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        ImageSet {
            pixels: indices
                .iter()
                .flat_map(|&i| self.image(i).iter().copied())
                .collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ..*self
        }
    }

    /// Images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.n_classes];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        counts
    }
}

impl LabelledSet for ImageSet {
    type Batch = ImageBatch;

    fn labels(&self) -> &[u32] {
        &self.labels
    }

    fn n_classes(&self) -> usize {
        self.n_classes
    }

    fn subset(&self, indices: &[usize]) -> Self {
        ImageSet::subset(self, indices)
    }

    /// Training batch `index` of a run seeded `seed` (see the module docs), augmented.
    fn train_batch(&self, draw: Draw, augmentation: &Augmentation) -> ImageBatch {
        let Draw {
            seed,
            index,
            size: batch,
        } = draw;
        let mut rng = draw.rng(0x1a6e_5eed);
        let mut pixels = Vec::with_capacity(batch * self.image_len());
        let mut labels = Vec::with_capacity(batch);
        for i in batch_indices(self.len(), seed, index, batch) {
            if augmentation.is_identity() {
                pixels.extend_from_slice(self.image(i));
            } else {
                pixels.extend(augment(self, i, augmentation, &mut rng));
            }
            labels.push(i64::from(self.labels[i]));
        }
        ImageBatch {
            pixels,
            shape: [self.channels, self.height, self.width],
            labels,
            batch,
        }
    }

    fn batch(&self, indices: &[usize]) -> ImageBatch {
        let part = self.subset(indices);
        ImageBatch {
            batch: indices.len(),
            shape: [self.channels, self.height, self.width],
            pixels: part.pixels,
            labels: part.labels.iter().map(|&l| i64::from(l)).collect(),
        }
    }
}

impl LabelledBatch for ImageBatch {
    fn labels(&self) -> &[i64] {
        &self.labels
    }
}

/// The examples a classification run trains on and validates on. `train_fraction` of each
/// class of the training examples is used (nested across fractions for one seed); of those,
/// fold `fold` of `folds` is held out when cross-validating, else `val_fraction` of each class.
pub fn classification_split<S: LabelledSet>(
    train: &S,
    train_fraction: f64,
    val_fraction: f64,
    folds: Option<(usize, usize)>,
    seed: u64,
) -> (S, S) {
    let used = train.subset(&stratified_subset(train.labels(), train_fraction, seed));
    let (kept, held) = match folds {
        Some((fold, k)) => fold_indices(&stratified_folds(used.labels(), k, seed), fold),
        None => stratified_split(used.labels(), val_fraction, seed ^ 0x7a11),
    };
    (used.subset(&kept), used.subset(&held))
}

/// Image `i` of `set` under a random affine map: rotation by up to ±`degrees`, scaling by up to
/// ±`scale`, a shift of up to ±`shift_pixels`, about the image centre, sampled bilinearly with
/// zero outside the image.
pub fn augment(set: &ImageSet, i: usize, aug: &Augmentation, rng: &mut impl Rng) -> Vec<f32> {
    let mut draw = |limit: f64| {
        if limit > 0.0 {
            rng.random_range(-limit..=limit)
        } else {
            0.0
        }
    };
    let angle = draw(aug.rotate_degrees).to_radians();
    let scale = 1.0 + draw(aug.scale);
    let (dx, dy) = (draw(aug.shift_pixels), draw(aug.shift_pixels));
    affine(set, i, angle, scale, dx, dy)
}

/// Image `i` of `set` rotated by `angle` radians and scaled by `scale` about its centre, then
/// shifted by `(dx, dy)` pixels; each output pixel samples the input bilinearly at the inverse
/// map of its position.
pub fn affine(set: &ImageSet, i: usize, angle: f64, scale: f64, dx: f64, dy: f64) -> Vec<f32> {
    let (c, h, w) = (set.channels, set.height, set.width);
    let image = set.image(i);
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    let mut out = vec![0.0f32; c * h * w];
    for y in 0..h {
        for x in 0..w {
            // Inverse map: undo the shift, then the rotation and scaling about the centre.
            let (u, v) = (x as f64 - dx - cx, y as f64 - dy - cy);
            let sx = (cos * u + sin * v) / scale + cx;
            let sy = (-sin * u + cos * v) / scale + cy;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            for ch in 0..c {
                let at = |yy: f64, xx: f64| -> f64 {
                    if yy < 0.0 || xx < 0.0 || yy >= h as f64 || xx >= w as f64 {
                        0.0
                    } else {
                        f64::from(image[ch * h * w + yy as usize * w + xx as usize])
                    }
                };
                let value = at(y0, x0) * (1.0 - fx) * (1.0 - fy)
                    + at(y0, x0 + 1.0) * fx * (1.0 - fy)
                    + at(y0 + 1.0, x0) * (1.0 - fx) * fy
                    + at(y0 + 1.0, x0 + 1.0) * fx * fy;
                out[ch * h * w + y * w + x] = value as f32;
            }
        }
    }
    out
}

/// Loads a data set: the embedded digits, or MNIST / Fashion-MNIST from `dir` (default
/// `data/mnist` and `data/fashion-mnist`, where `scripts/fetch-data.sh` puts them).
pub fn load_images(dataset: Dataset, dir: Option<&Path>) -> Result<ImageSplits, DataError> {
    match dataset {
        Dataset::Sentiment | Dataset::PangLee | Dataset::Pos => Err(DataError::Empty {
            name: format!("{dataset:?}"),
            hint: "a text data set: load it with `load_sentiment` or `load_pang_lee`".into(),
        }),
        Dataset::Digits => load_digits(),
        Dataset::Mnist | Dataset::FashionMnist => {
            let (name, default_dir, class_names): (&str, &str, &[&str]) = match dataset {
                Dataset::Mnist => (
                    "mnist",
                    "data/mnist",
                    &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
                ),
                _ => (
                    "fashion_mnist",
                    "data/fashion-mnist",
                    &[
                        "T-shirt/top",
                        "Trouser",
                        "Pullover",
                        "Dress",
                        "Coat",
                        "Sandal",
                        "Shirt",
                        "Sneaker",
                        "Bag",
                        "Ankle boot",
                    ],
                ),
            };
            let dir = dir.map_or_else(|| PathBuf::from(default_dir), Path::to_path_buf);
            let fetch = format!(
                "fetch it with `scripts/fetch-data.sh {}` or point `data.dir` at a directory of its IDX files",
                name.replace('_', "-")
            );
            let read = |stem: &str| -> Result<(PathBuf, Vec<u8>), DataError> {
                let plain = dir.join(stem);
                let gz = dir.join(format!("{stem}.gz"));
                let path = if plain.exists() { plain } else { gz };
                if !path.exists() {
                    return Err(DataError::NotFound {
                        path: dir.join(stem),
                        hint: fetch.clone(),
                    });
                }
                let bytes = read_maybe_gz(&path)?;
                Ok((path, bytes))
            };
            let set = |images: &str, labels: &str| -> Result<ImageSet, DataError> {
                let (image_path, image_bytes) = read(images)?;
                let (label_path, label_bytes) = read(labels)?;
                let (dims, pixels) = parse_idx(&image_path, &image_bytes)?;
                let [n, h, w] = dims[..] else {
                    return Err(DataError::Malformed {
                        path: image_path,
                        position: "byte 3".into(),
                        message: format!(
                            "images need 3 dimensions (count, rows, columns), found {}",
                            dims.len()
                        ),
                    });
                };
                let (label_dims, labels) = parse_idx(&label_path, &label_bytes)?;
                if label_dims != [n] {
                    return Err(DataError::Malformed {
                        path: label_path,
                        position: "byte 4".into(),
                        message: format!(
                            "labels have dimensions {label_dims:?}, but {} holds {n} images",
                            image_path.display()
                        ),
                    });
                }
                if let Some((at, &bad)) = labels.iter().enumerate().find(|(_, l)| **l >= 10) {
                    return Err(DataError::Malformed {
                        path: label_path,
                        position: format!("label {at}"),
                        message: format!("label {bad} is not a class 0-9"),
                    });
                }
                Ok(ImageSet {
                    channels: 1,
                    height: h,
                    width: w,
                    pixels: pixels.iter().map(|&p| f32::from(p) / 255.0).collect(),
                    labels: labels.iter().map(|&l| u32::from(l)).collect(),
                    n_classes: 10,
                })
            };
            Ok(ImageSplits {
                name: name.to_string(),
                class_names: class_names.iter().map(|s| s.to_string()).collect(),
                train: set("train-images-idx3-ubyte", "train-labels-idx1-ubyte")?,
                test: set("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?,
            })
        }
    }
}

/// The embedded 8×8 digits with their fixed stratified train/test split.
pub fn load_digits() -> Result<ImageSplits, DataError> {
    let path = Path::new("<embedded>/digits.csv.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_GZ)
        .read_to_string(&mut text)
        .map_err(|source| DataError::io(path, source))?;
    let all = parse_digits_csv(path, &text)?;
    let (train, test) = stratified_split(&all.labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED);
    Ok(ImageSplits {
        name: "digits".into(),
        class_names: (0..10).map(|d| d.to_string()).collect(),
        train: all.subset(&train),
        test: all.subset(&test),
    })
}

/// Parses the digits CSV: per row 64 intensities 0–16, then the label 0–9.
pub fn parse_digits_csv(path: &Path, text: &str) -> Result<ImageSet, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for (row, record) in reader.records().enumerate() {
        let line = row + 1;
        let bad = |message: String| DataError::Malformed {
            path: path.to_path_buf(),
            position: format!("line {line}"),
            message,
        };
        let record = record.map_err(|e| bad(e.to_string()))?;
        if record.len() != 65 {
            return Err(bad(format!(
                "expected 65 fields (64 pixels and a label), found {}",
                record.len()
            )));
        }
        for (column, field) in record.iter().enumerate() {
            let value: f64 = field
                .trim()
                .parse()
                .map_err(|_| bad(format!("field {} is `{field}`, not a number", column + 1)))?;
            let limit = if column == 64 { 9.0 } else { 16.0 };
            if !(0.0..=limit).contains(&value) || value.fract() != 0.0 {
                return Err(bad(format!(
                    "field {} is {value}, outside the integers 0-{limit}",
                    column + 1
                )));
            }
            if column == 64 {
                labels.push(value as u32);
            } else {
                pixels.push((value / 16.0) as f32);
            }
        }
    }
    Ok(ImageSet {
        channels: 1,
        height: 8,
        width: 8,
        pixels,
        labels,
        n_classes: 10,
    })
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::io(path, source))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|source| DataError::io(path, source))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX file of unsigned bytes: magic `0 0 0x08 ndims`, `ndims` big-endian `u32`
/// dimensions, then the values row-major. Returns the dimensions and the values.
pub fn parse_idx<'a>(path: &Path, bytes: &'a [u8]) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let bad = |offset: usize, message: String| DataError::Malformed {
        path: path.to_path_buf(),
        position: format!("byte {offset}"),
        message,
    };
    if bytes.len() < 4 {
        return Err(bad(
            0,
            format!("{} bytes is too short for an IDX header", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(
            0,
            format!(
                "magic number starts {:#04x} {:#04x}, not 0x00 0x00: not an IDX file",
                bytes[0], bytes[1]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(bad(
            2,
            format!(
                "element type {:#04x} is not 0x08 (unsigned byte), the type of MNIST files",
                bytes[2]
            ),
        ));
    }
    let ndims = usize::from(bytes[3]);
    let header = 4 + 4 * ndims;
    if ndims == 0 || bytes.len() < header {
        return Err(bad(
            3,
            format!(
                "{ndims} dimensions need a {header}-byte header, the file has {} bytes",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match expected {
        Some(n) if bytes.len() - header == n => Ok((dims, &bytes[header..])),
        _ => Err(bad(
            header,
            format!(
                "dimensions {dims:?} promise {} values, the file holds {} after its header (truncated or not IDX)",
                expected.map_or_else(|| "too many".to_string(), |n| n.to_string()),
                bytes.len() - header
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], values: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend(values);
        out
    }

    #[test]
    fn idx_round_trip_and_errors() {
        let path = Path::new("x.idx");
        let bytes = idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let (dims, values) = parse_idx(path, &bytes).unwrap();
        assert_eq!(dims, vec![2, 3]);
        assert_eq!(values, &[1, 2, 3, 4, 5, 6]);

        let truncated = &bytes[..bytes.len() - 1];
        let err = parse_idx(path, truncated).unwrap_err().to_string();
        assert!(err.contains("x.idx") && err.contains("byte 12"), "{err}");
        assert!(
            err.contains("promise 6 values") && err.contains("holds 5"),
            "{err}"
        );

        let mut wrong_type = bytes.clone();
        wrong_type[2] = 0x0d;
        let err = parse_idx(path, &wrong_type).unwrap_err().to_string();
        assert!(err.contains("byte 2") && err.contains("0x0d"), "{err}");

        let err = parse_idx(path, b"PK\x03\x04").unwrap_err().to_string();
        assert!(err.contains("not an IDX file"), "{err}");
    }

    #[test]
    fn digits_are_the_uci_set() {
        let digits = load_digits().unwrap();
        assert_eq!(digits.train.len() + digits.test.len(), 1797);
        // Class sizes of the UCI set as scikit-learn documents them (178 zeros, ..., 180 nines).
        let mut counts = digits.train.class_counts();
        for (c, n) in digits.test.class_counts().into_iter().enumerate() {
            counts[c] += n;
        }
        assert_eq!(
            counts,
            vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
        );
        // The first row of the CSV is a zero whose third pixel is 5 (of 16).
        let all = parse_digits_csv(
            Path::new("d"),
            "0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0,0\n",
        )
        .unwrap();
        assert_eq!(all.labels, vec![0]);
        assert!((all.pixels[2] - 5.0 / 16.0).abs() < 1e-7);
        // Test images are about a quarter of each class.
        for (c, n) in digits.test.class_counts().into_iter().enumerate() {
            let share = n as f64 / counts[c] as f64;
            assert!((share - 0.25).abs() < 0.01, "class {c}: {share}");
        }
    }

    #[test]
    fn digits_csv_errors_name_line_and_field() {
        let row = |label: &str| format!("{}{label}\n", "1,".repeat(64));
        let text = format!("{}{}", row("3"), row("12"));
        let err = parse_digits_csv(Path::new("d.csv"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("d.csv, line 2") && err.contains("field 65 is 12"),
            "{err}"
        );
        let err = parse_digits_csv(Path::new("d.csv"), "1,2,3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 65 fields"), "{err}");
    }

    #[test]
    fn batches_cover_each_epoch_once_and_repeat_by_seed() {
        let set = ImageSet {
            channels: 1,
            height: 1,
            width: 1,
            pixels: (0..10).map(|i| i as f32).collect(),
            labels: (0..10).map(|i| i % 3).collect(),
            n_classes: 3,
        };
        let none = Augmentation::default();
        let epoch: Vec<f32> = (0..5)
            .flat_map(|k| set.train_batch(Draw::new(7, k, 2), &none).pixels)
            .collect();
        let mut sorted = epoch.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, set.pixels);
        assert_eq!(
            set.train_batch(Draw::new(7, 3, 2), &none),
            set.train_batch(Draw::new(7, 3, 2), &none)
        );
        // The next epoch is another order of the same images.
        let next: Vec<f32> = (5..10)
            .flat_map(|k| set.train_batch(Draw::new(7, k, 2), &none).pixels)
            .collect();
        assert_ne!(next, epoch);
    }

    #[test]
    fn affine_maps_by_hand() {
        // A 3×3 image with one bright pixel at (row 0, column 1).
        let mut pixels = vec![0.0; 9];
        pixels[1] = 1.0;
        let set = ImageSet {
            channels: 1,
            height: 3,
            width: 3,
            pixels,
            labels: vec![0],
            n_classes: 1,
        };
        // Identity.
        assert_eq!(affine(&set, 0, 0.0, 1.0, 0.0, 0.0), set.pixels);
        // Shift one pixel right: the bright pixel moves to column 2.
        let shifted = affine(&set, 0, 0.0, 1.0, 1.0, 0.0);
        assert_eq!(shifted[2], 1.0);
        assert_eq!(shifted.iter().sum::<f32>(), 1.0);
        // Rotate a quarter turn (x right, y down: clockwise on screen): top centre → middle right.
        let rotated = affine(&set, 0, std::f64::consts::FRAC_PI_2, 1.0, 0.0, 0.0);
        assert!((rotated[5] - 1.0).abs() < 1e-6, "{rotated:?}");
        // Half a pixel right: the light is shared between columns 1 and 2.
        let half = affine(&set, 0, 0.0, 1.0, 0.5, 0.0);
        assert!((half[1] - 0.5).abs() < 1e-6 && (half[2] - 0.5).abs() < 1e-6);
    }
}
