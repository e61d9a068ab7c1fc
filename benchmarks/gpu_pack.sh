#!/usr/bin/env bash
# Build the two untracked folders that benchmarks/gpu.sh needs on a GPU machine without network access:
#
#   .whl/      wheels (Python 3.12, x86_64 Linux, no dependencies resolved) of every package the benchmarks import
#              that such a machine lacks; torch, lightning, numpy, pandas, scipy, h5py and scikit-learn are expected
#              there; .whl/fallback/ holds typing_extensions for machines whose copy is older than 4.16
#   .devdata/  the tutorial files (xz-compressed, SHA256SUMS of the originals), the full human GO + GAF where
#              get_human_go.sh has made them (the GO axis of scaling.py), and the resource-cache entry of the tutorial
#              multiome and CITE-seq data (registry-{multiome,cite}.tar.xz, for integration.py, query_mapping.py and
#              mosaic.py)
#
# Run from the repository root on a machine that reaches the package index and has run get_tutorial_data.sh:
#
#   bash benchmarks/gpu_pack.sh
#
# Environment: NVI_TUTORIAL_DATA (~/.cache/nvi-tutorial-data), NVI_HUMAN_GO (~/.cache/nvi-human-go),
# SCVI_NETWORKVI_DATA_DIR (~/.cache/scvi_networkvi: the package's resource cache, for the multiome entry),
# PYTHON (python3.12). Both folders are listed in .git/info/exclude; name them in the device tool's carry (64 MiB).
set -euo pipefail

TUTORIAL="${NVI_TUTORIAL_DATA:-$HOME/.cache/nvi-tutorial-data}"
HUMAN_GO="${NVI_HUMAN_GO:-$HOME/.cache/nvi-human-go}"
CACHE="${SCVI_NETWORKVI_DATA_DIR:-$HOME/.cache/scvi_networkvi}"
PYTHON="${PYTHON:-python3.12}"

# Pinned to what the GPU runs of benchmarks/README.md used; the packages' own requirements that the machine has
# (torch, numpy, ...) are deliberately not downloaded.
WHEELS=(
    anndata==0.13.4 annotated-types==0.8.0 array-api-compat==1.16.0 docrep==0.3.2 donfig==0.8.1.post1
    et-xmlfile==2.0.0 fast-array-utils==1.5.1 ftpretty==0.4.0 goatools==1.6.7 google-crc32c==1.9.0
    legacy-api-wrap==1.5 ml-collections==1.1.0 msgspec==0.22.0 mudata==0.4.1 natsort==8.4.0 numcodecs==0.17.1
    openpyxl==3.1.5 platformdirs==4.14.8 pooch==1.9.0 pydantic==2.14.4 pydantic-core==2.50.5
    pydantic-settings==2.16.3 pydot==4.0.1 pynndescent==0.7.0 pyro-api==0.1.2 pyro-ppl==1.9.2
    python-dotenv==1.2.4 scanpy==1.12.4 scikit-misc==0.5.3 scverse-misc==0.1.7 scvi-tools==1.5.1
    session-info2==0.4.2 sparse==0.19.3 typing-inspection==0.4.5 umap-learn==0.5.12 xlsxwriter==3.3.1
    zarr==3.4.2
)

# pip wheel, not pip download: some of these (docrep) are published as source only. PYTHON must be the GPU machine's
# minor version (3.12) on x86_64 Linux, so that the compiled wheels (msgspec, numcodecs, ...) fit it.
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 12), sys.version' ||
    { echo "PYTHON=$PYTHON is not Python 3.12 (set PYTHON to a Python 3.12 with pip)" >&2; exit 1; }
download=("$PYTHON" -m pip wheel -q --no-deps)
mkdir -p .whl/fallback
"${download[@]}" -w .whl "${WHEELS[@]}"
"${download[@]}" -w .whl/fallback typing-extensions==4.16.0
echo ".whl: $(find .whl -name '*.whl' | wc -l) wheels, $(du -sh .whl | cut -f1)"

mkdir -p .devdata
files=("$TUTORIAL"/{cite_bmmc_5k.h5ad,ensembl2go.gaf,gene_interactions.csv,go-basic.obo})
if [[ -f $HUMAN_GO/go-2022-07-01.obo && -f $HUMAN_GO/ensembl2go-human-2022.gaf ]]; then
    files+=("$HUMAN_GO"/{go-2022-07-01.obo,ensembl2go-human-2022.gaf})
else
    echo "no full human GO in $HUMAN_GO (run get_human_go.sh): the GO axis of scaling.py will not run on the GPU"
fi
: >.devdata/SHA256SUMS
for file in "${files[@]}"; do
    [[ -f $file ]] || { echo "$file is missing: run get_tutorial_data.sh first" >&2; exit 1; }
    xz -T0 -6 -c "$file" >".devdata/$(basename "$file").xz"
    (cd "$(dirname "$file")" && sha256sum "$(basename "$file")") >>.devdata/SHA256SUMS
done
for entry in multiome cite; do
    if [[ -d $CACHE/tutorial-$entry ]]; then
        tar -cJf ".devdata/registry-$entry.tar.xz" -C "$CACHE" "tutorial-$entry"
    else
        echo "no tutorial-$entry entry in $CACHE (load nvi.datasets' $entry data once): steps that read it will fail"
    fi
done
echo ".devdata: $(du -sh .devdata | cut -f1); carry both: $(du -shc .whl .devdata | tail -1 | cut -f1) of 64 MiB"
