#!/usr/bin/env bash
# Put the full human GO annotations (org.Hs.eg.db) and GO DAG (GO.db) of Bioconductor 3.16 into the resource cache
# from Debian's packaging of the same releases, for machines that reach the Debian archive but not Bioconductor's
# (the slow real-data tests, benchmarks). The package verifies each file against the registry's pinned sha256 on
# first use, so a copy that differs from the registered release is refused, not used.
#   scripts/seed_annotations_from_debian.sh [CACHE]   CACHE: $SCVI_NETWORKVI_DATA_DIR, else ~/.cache/scvi_networkvi
# Debian has no org.Mm.eg.db package; the mouse annotations come from Bioconductor on first use.
set -euo pipefail
cache="${1:-${SCVI_NETWORKVI_DATA_DIR:-$HOME/.cache/scvi_networkvi}}"
if [ -s "$cache/org.Hs.eg.db/org.Hs.eg.sqlite" ] && [ -s "$cache/GO.db/GO.sqlite" ]; then
  echo "$cache: org.Hs.eg.db and GO.db present"; exit 0
fi
command -v apt-get >/dev/null || { echo "apt-get not found: this script needs a Debian-based machine" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq r-bioc-org.hs.eg.db=3.16.0-1 r-bioc-go.db=3.16.0-1 2>/dev/null)
for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$tmp/x"; done
lib="$tmp/x/usr/lib/R/site-library"
mkdir -p "$cache/org.Hs.eg.db" "$cache/GO.db"
cp "$lib/org.Hs.eg.db/extdata/org.Hs.eg.sqlite" "$cache/org.Hs.eg.db/org.Hs.eg.sqlite"
cp "$lib/GO.db/extdata/GO.sqlite" "$cache/GO.db/GO.sqlite"
echo "$cache: org.Hs.eg.db and GO.db written"
