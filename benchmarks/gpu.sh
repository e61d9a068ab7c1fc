#!/usr/bin/env bash
# Training throughput on a GPU machine: benchmarks/train_throughput.py on CUDA (batch sizes 128 and 1024) and, for
# reference, on all of that machine's CPU cores. Meant for a bare machine with torch, lightning, numpy, pandas,
# scipy, h5py and scikit-learn but without scvi-tools and the rest, and without network access:
#
#   .whl/      wheels of every other package needed (scvi-tools, anndata, mudata, goatools, pooch, scanpy, ...),
#              installed with --no-deps into $SCRATCH/site, put first on PYTHONPATH with the repository root;
#              .whl/fallback/ holds typing_extensions, installed only where the machine's is older than 4.16
#   .devdata/  the tutorial files train_throughput.py reads, xz-compressed (*.xz) with SHA256SUMS of the originals,
#              unpacked to $SCRATCH/nvi-data
#
# Both folders are ignored by git (.git/info/exclude), are built by `bash benchmarks/gpu_pack.sh` and travel with the
# working tree when named in carry.
#   .devdata/registry-multiome.tar.xz: the resource cache entry of the tutorial Multiome data (file + verified stamp),
#              extracted into $SCVI_NETWORKVI_DATA_DIR with the GO files above for benchmarks/integration.py
#
# Run from the repository root:
#
#   bash benchmarks/gpu.sh          (device tool: carry [".whl", ".devdata"], timeout_s 600)
#
# Writes to $OUT (default benchmarks/_out/gpu): gpu_log.txt (everything printed), gpu_bs128.json, gpu_bs1024.json,
# cpu_<N>threads.json (train_throughput.py --json), multiome_latents.tar (benchmarks/integration.py --train-only on
# CUDA: the Multiome runs' latents, scored afterwards where scib-metrics is installed with
# `python benchmarks/integration.py --datasets multiome --latents-dir DIR`). Each step runs under `timeout`, cut to
# what is left of an overall deadline (NVI_DEADLINE_S, default 470 s) so that the script ends within about 8 minutes; a failed step
# does not stop the later ones (the benchmark steps are skipped only when the packages cannot be imported).
# Exit status 0 when every step passed, else 1; the last lines of the log list each step's status.
#
# NVI_PLAN (default "bs128 multiome bs1024 cpu") picks the benchmark steps and their order: bsN = train_throughput.py
# on CUDA at batch size N, multiome = the integration runs above, scaling = benchmarks/scaling.py --axes cells
# --accelerator cuda (1k-100k cells, NETWORKVI / TOTALVI / dense, tables in $OUT/scaling), quality = integration-quality
# runs in parallel on the GPU (query mapping, CITE-seq + multiome mosaic, CITE-seq at converged budgets; see quality()
# below; $OUT/quality_*), scaling-go = its GO axis
# (tutorial and, where .devdata has it, the full human GAF; depths 2-4), importances = benchmarks/importances.py
# --device cuda (tutorial GAF: probes on the GPU against the CPU in the same run), importances-full = the same with
# the full human GO + GAF (where .devdata has them), cpu = all CPU cores.
# A step that would start with under 15 s left before the deadline is skipped, so put the important ones first.
#
# Overrides (environment): NVI_MULTIOME_SEEDS ("0 1 2"), NVI_MULTIOME_EPOCHS (50), NVI_MULTIOME_STEP_S (150),
# NVI_GPU_EPOCHS (5), NVI_CPU_EPOCHS (2), NVI_CPU_THREADS
# (all cores), NVI_GPU_STEP_S (170), NVI_CPU_STEP_S (150), NVI_SCALING_STEP_S (330), NVI_SCALING_SIZES
# ("1000 5000 20000 100000"), NVI_SCALING_MODELS ("networkvi totalvi networkvi-dense": the cells axis' models),
# NVI_DEADLINE_S (470).
set -u -o pipefail

OUT="${OUT:-benchmarks/_out/gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# The machine's scratch space: installed wheels, data, caches and the runs' work files (NVI_SCRATCH, default $TMPDIR
# or the system's temporary folder). The log names it <tmp> (see portable below).
SCRATCH="${NVI_SCRATCH:-${TMPDIR:-/tmp}}"
SCRATCH="${SCRATCH%/}"
export SCVI_NETWORKVI_OFFLINE=1 SCVI_NETWORKVI_DATA_DIR="$SCRATCH/nvi-cache"
export XDG_CACHE_HOME="$SCRATCH/xdg-cache" MPLCONFIGDIR="$SCRATCH/mplconfig" NUMBA_CACHE_DIR="$SCRATCH/numba-cache"
export MPLBACKEND=Agg
DATA="$SCRATCH/nvi-data"
SITE="$SCRATCH/site"
PLAN="${NVI_PLAN:-bs128 multiome bs1024 cpu}"
GPU_EPOCHS="${NVI_GPU_EPOCHS:-5}"
CPU_EPOCHS="${NVI_CPU_EPOCHS:-2}"
CPU_THREADS="${NVI_CPU_THREADS:-$(nproc --all)}"  # nproc alone follows OMP_NUM_THREADS
GPU_STEP_S="${NVI_GPU_STEP_S:-170}"
CPU_STEP_S="${NVI_CPU_STEP_S:-150}"
DEADLINE_S="${NVI_DEADLINE_S:-470}"
SCALING_STEP_S="${NVI_SCALING_STEP_S:-330}"
SCALING_SIZES="${NVI_SCALING_SIZES:-1000 5000 20000 100000}"
SCALING_MODELS="${NVI_SCALING_MODELS:-networkvi totalvi networkvi-dense}"
MULTIOME_SEEDS="${NVI_MULTIOME_SEEDS:-0 1 2}"
MULTIOME_EPOCHS="${NVI_MULTIOME_EPOCHS:-50}"
MULTIOME_STEP_S="${NVI_MULTIOME_STEP_S:-150}"
QUALITY_SEEDS="${NVI_QUALITY_SEEDS:-0 1 2}"
QUALITY_STEP_S="${NVI_QUALITY_STEP_S:-400}"
STATUS=()
FAILED=0

# step NAME BUDGET_S COMMAND...: run COMMAND under timeout (BUDGET_S or what is left before the deadline).
step() {
    local name=$1 budget=$2
    shift 2
    local left=$((DEADLINE_S - SECONDS))
    local limit=$((budget < left ? budget : left))
    if ((limit < 15)); then
        echo "=== $name: skipped, budget ${budget}s, ${left}s left before the ${DEADLINE_S}s deadline"
        STATUS+=("$name: skipped (under 15s to run)")
        FAILED=1
        return 1
    fi
    echo "=== $name (limit ${limit}s, at ${SECONDS}s) $(date -u +%H:%M:%S)"
    local start=$SECONDS rc=0
    timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@" || rc=$?
    local took=$((SECONDS - start))
    if ((rc == 0)); then
        STATUS+=("$name: ok (${took}s)")
    else
        [[ $rc == 124 || $rc == 137 ]] && echo "=== $name: timed out after ${limit}s"
        STATUS+=("$name: FAILED rc=$rc (${took}s)")
        FAILED=1
    fi
    echo "=== $name: rc=$rc, ${took}s"
    return "$rc"
}

install_wheels() {
    shopt -s nullglob
    local wheels=(.whl/*.whl) fallback=(.whl/fallback/typing_extensions-*.whl)
    local install=(python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade)
    install+=(--target "$SITE")
    if ((${#wheels[@]} == 0)); then
        echo "no wheels in .whl/ (was .whl named in carry?)"
        return 1
    fi
    echo "${#wheels[@]} wheels"
    "${install[@]}" "${wheels[@]}" || return 1
    # pydantic and zarr use typing_extensions >= 4.16: the copy in .whl/fallback only if the machine's is older
    local check='import importlib.metadata as m, sys; from packaging.version import Version as V
sys.exit(V(m.version("typing_extensions")) < V("4.16"))'
    if ((${#fallback[@]})) && ! python3 -c "$check"; then
        echo "typing_extensions older than 4.16 here: installing ${fallback[0]}"
        "${install[@]}" "${fallback[@]}"
    fi
}

unpack_data() {
    python3 - "$DATA" <<'EOF'
import hashlib
import lzma
import shutil
import sys
from pathlib import Path

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
sums = dict(line.split()[::-1] for line in Path(".devdata/SHA256SUMS").read_text().splitlines() if line.strip())
for name, expected in sums.items():
    target = out / name
    with lzma.open(Path(".devdata") / f"{name}.xz") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != expected:
        raise SystemExit(f"{name}: sha256 {digest} != {expected}")
    print(f"{name}: {target.stat().st_size / 2**20:.1f} MiB, sha256 ok")
EOF
}

seed_registry() {
    # the resource cache benchmarks/integration.py reads (offline): GO files from $DATA, the Multiome entry from
    # .devdata
    local cache=$SCVI_NETWORKVI_DATA_DIR
    mkdir -p "$cache/go-basic" "$cache/ensembl2go-tutorial" "$cache/k562-contact-domains" || return 1
    cp "$DATA/go-basic.obo" "$cache/go-basic/go-basic.obo" &&
        cp "$DATA/ensembl2go.gaf" "$cache/ensembl2go-tutorial/ensembl2go.gaf" &&
        cp "$DATA/gene_interactions.csv" "$cache/k562-contact-domains/k562_contact_domains.csv" || return 1
    local entry
    for entry in .devdata/registry-*.tar.xz; do
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2], filter="tar")' \
            "$entry" "$cache" || return 1
    done
    ls -la "$cache"/*
}

multiome() {
    python3 benchmarks/integration.py --datasets multiome --models networkvi peer networkvi-dense \
        --seeds $MULTIOME_SEEDS --epochs "$MULTIOME_EPOCHS" --accelerator cuda --threads 4 --train-only \
        --latents-dir "$SCRATCH/multiome-latents"
}

environment() {
    nvidia-smi || echo "nvidia-smi failed"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || true
    echo "CPU:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc --all) cores," \
        "$(free -g | awk '/Mem/{print $2}') GiB; OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
    python3 - <<'EOF'
import importlib.metadata as md
import sys

import torch

in_venv = sys.prefix != sys.base_prefix  # the log names the environment, not where this machine keeps it
print("python", sys.version.split()[0], sys.executable.replace(sys.prefix, "<venv>") if in_venv else sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0))
names = (
    "numpy pandas scipy h5py scikit-learn lightning torchmetrics numba llvmlite matplotlib seaborn statsmodels "
    "xarray typing-extensions packaging rich tqdm requests filelock networkx"
)


def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "MISSING"


print("device packages:", ", ".join(f"{n} {version(n)}" for n in names.split()))
EOF
}

smoke_import() {
    python3 - <<'EOF' || return 1
import time
import warnings

warnings.filterwarnings("ignore")
start = time.perf_counter()
import anndata
import goatools
import mudata
import pooch
import scvi
from scvi.model import MULTIVI, TOTALVI  # noqa: F401

import scvi_networkvi

for module in (scvi_networkvi, scvi, anndata, mudata, goatools, pooch):
    print(f"{module.__name__} {getattr(module, '__version__', '?')}: {module.__file__}")
print(f"imports took {time.perf_counter() - start:.1f} s")
EOF
    python3 -m pip check 2>&1 | head -20 || true # informative only: unmet requirements as pip sees them
}

scaling() {
    python3 benchmarks/scaling.py --axes cells --accelerator cuda --sizes $SCALING_SIZES --models $SCALING_MODELS \
        --threads 4 --data-dir "$DATA" --out-dir "$OUT/scaling" --work-dir "$SCRATCH/nvi-scaling"
}

scaling_go() {
    # the full human GO + GAF come with .devdata where gpu_pack.sh found them (else only the tutorial GAF runs)
    local gafs=tutorial
    [[ -f $DATA/go-2022-07-01.obo && -f $DATA/ensembl2go-human-2022.gaf ]] && gafs="tutorial full"
    python3 benchmarks/scaling.py --axes go --accelerator cuda --gafs $gafs --threads 4 --data-dir "$DATA" \
        --human-go "$DATA" --out-dir "$OUT/scaling" --work-dir "$SCRATCH/nvi-scaling"
}

importances() {
    # $1 = tutorial | full; logs the probe times on CUDA and on 4 CPU threads, their ratio and the AUROC agreement
    local go=()
    [[ $1 == full ]] && go=(--go "$DATA/go-2022-07-01.obo" --annotations "$DATA/ensembl2go-human-2022.gaf")
    python3 benchmarks/importances.py --device cuda --threads 4 --epochs 3 --sample 100 --data-dir "$DATA" "${go[@]}"
}

quality() {
    # Integration-quality re-measurements, one process per run, all at once on the GPU (each drives it from one CPU
    # thread): query mapping (query_mapping.py: NETWORKVI, NETWORKVI-dense, TOTALVI), the CITE-seq + multiome mosaic
    # (mosaic.py --cross: NETWORKVI, NETWORKVI-dense, MULTIVI), each for every seed in QUALITY_SEEDS, and the CITE-seq
    # models at their converged budgets (integration.py --early-stopping, up to 400 epochs, seed 0; latents only,
    # scored where scib-metrics is). Rows land in per-run CSVs as runs finish; collect_quality gathers them.
    local work="$SCRATCH/nvi-quality" pids=() seed model rc=0
    mkdir -p "$work/logs"
    for seed in $QUALITY_SEEDS; do
        for model in networkvi networkvi-dense totalvi; do
            python3 benchmarks/query_mapping.py --ref-epochs 50 --seeds "$seed" --models "$model" --threads 1 \
                --accelerator gpu --out "$work/qm_${model}_$seed.csv" >"$work/logs/qm_${model}_$seed.log" 2>&1 &
            pids+=($!)
        done
        for model in networkvi networkvi-dense multivi; do
            python3 benchmarks/mosaic.py --cross --models "$model" --seeds "$seed" --epochs 50 --threads 1 \
                --accelerator gpu --out "$work/cross_${model}_$seed.csv" >"$work/logs/cross_${model}_$seed.log" 2>&1 &
            pids+=($!)
        done
    done
    for model in networkvi networkvi-dense peer; do
        python3 benchmarks/integration.py --datasets cite --models "$model" --seeds 0 --epochs 400 --early-stopping \
            --accelerator cuda --threads 1 --train-only --latents-dir "$work/latents" \
            >"$work/logs/converged_$model.log" 2>&1 &
        pids+=($!)
    done
    for model in "${pids[@]}"; do wait "$model" || rc=1; done
    return "$rc"
}

collect_quality() {
    local work="$SCRATCH/nvi-quality"
    python3 - "$work" "$OUT" <<'EOF'
import sys
from pathlib import Path

import pandas as pd

work, out = Path(sys.argv[1]), Path(sys.argv[2])
for prefix, name in (("qm_", "quality_query_mapping.csv"), ("cross_", "quality_mosaic_cross.csv")):
    parts = [pd.read_csv(f) for f in sorted(work.glob(f"{prefix}*.csv"))]
    if parts:
        pd.concat(parts).to_csv(out / name, index=False)
    print(f"{name}: {sum(len(p) for p in parts)} runs")
EOF
    tar -cf "$OUT/quality_latents.tar" -C "$work" latents 2>/dev/null && tar -tvf "$OUT/quality_latents.tar"
    tar -cf "$OUT/quality_logs.tar" -C "$work" logs 2>/dev/null
    tail -n 3 "$work"/logs/*.log
}

benchmark() {
    local json=$1
    shift
    python3 benchmarks/train_throughput.py --data-dir "$DATA" --json "$OUT/$json" "$@"
}

export OUT SCRATCH DATA SITE PYTHONUNBUFFERED
export MULTIOME_SEEDS MULTIOME_EPOCHS SCALING_SIZES SCALING_MODELS
export QUALITY_SEEDS
export -f install_wheels unpack_data seed_registry multiome environment smoke_import benchmark scaling scaling_go \
    importances quality collect_quality

main() {
    echo "benchmarks/gpu.sh: $(date -u +%FT%TZ) on $(hostname)," \
        "repo $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
    echo "git status: $(git status --short 2>/dev/null | tr '\n' ' ')"
    step install 90 install_wheels
    local installed=$?
    export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    step unpack 90 unpack_data
    local unpacked=$?
    step environment 60 environment
    local imported=1
    if ((installed == 0)); then
        step imports 120 smoke_import
        imported=$?
    fi
    if ((imported != 0 || unpacked != 0)); then
        echo "=== benchmarks skipped: imports rc=$imported, unpack rc=$unpacked"
        STATUS+=("benchmarks: skipped (imports or data missing)")
        FAILED=1
    else
        local item
        for item in $PLAN; do
            case $item in
            bs[0-9]*)
                step "gpu batch ${item#bs}" "$GPU_STEP_S" benchmark "gpu_${item}.json" --accelerator cuda \
                    --epochs "$GPU_EPOCHS" --batch-size "${item#bs}"
                ;;
            multiome)
                if step "seed registry" 60 seed_registry; then
                    step "multiome cuda" "$MULTIOME_STEP_S" multiome
                    # whatever runs finished, even when the step was cut off
                    tar -cf "$OUT/multiome_latents.tar" -C "$SCRATCH" multiome-latents 2>/dev/null &&
                        tar -tvf "$OUT/multiome_latents.tar"
                fi
                ;;
            quality)
                if step "seed registry" 60 seed_registry; then
                    step "quality cuda" "$QUALITY_STEP_S" quality
                    step "collect quality" 30 collect_quality  # whatever runs finished, even when cut off
                fi
                ;;
            scaling) step "scaling cuda" "$SCALING_STEP_S" scaling ;;
            scaling-go) step "scaling go cuda" "$SCALING_STEP_S" scaling_go ;;
            importances) step "importances cuda" "$CPU_STEP_S" importances tutorial ;;
            importances-full) step "importances full GO cuda" "$SCALING_STEP_S" importances full ;;
            cpu)
                step "cpu $CPU_THREADS threads" "$CPU_STEP_S" benchmark "cpu_${CPU_THREADS}threads.json" \
                    --accelerator cpu --epochs "$CPU_EPOCHS" --threads "$CPU_THREADS"
                ;;
            *)
                echo "=== unknown NVI_PLAN item $item"
                STATUS+=("$item: unknown plan item")
                FAILED=1
                ;;
            esac
        done
    fi
    echo "=== summary (${SECONDS}s)"
    printf '%s\n' "${STATUS[@]}"
    return "$FAILED"
}

# The log names no machine's folders, as benchmarks/_portable.py writes them: the checkout as <repository>, the
# scratch folder as <tmp>, the home folder as ~, a site-packages folder as .../site-packages.
portable() {
    local rules=(-e "s#$PWD/#<repository>/#g" -e "s#$SCRATCH/#<tmp>/#g")
    [[ -n ${HOME:-} && $HOME != / ]] && rules+=(-e "s#$HOME/#~/#g")
    sed -u "${rules[@]}" -e 's#[^ "'\''(]*/site-packages/#.../site-packages/#g'
}

main 2>&1 | portable | tee "$OUT/gpu_log.txt"
exit "${PIPESTATUS[0]}"
