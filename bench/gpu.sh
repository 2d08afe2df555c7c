#!/usr/bin/env bash
# The one prepared GPU script (docs/BENCHMARKS.md, "On a GPU"): everything that has never run
# on a GPU, in under 8 minutes on one CUDA device, ending with one table.
#
#   bash bench/gpu.sh                 # PY=.venv/bin/python; MNIST=DIR for the Figure 2 row
#
# Rows: the suite's CUDA paths (tests that train, run with train.device: auto, i.e. on CUDA),
# bench/gpu_checks.py (every preset in fp32 and bf16, resume, CUDA against CPU, bf16 against
# fp32), bench/population.py --k 64 at 2x1024, bench/population_memory.py (members per GPU),
# and a few hundred steps of the paper-scale Figure 2 file (configs/paper-4.2-mnist-infovae.yaml,
# 2x1024, z 50, the authors' kernel and schedule). On a machine without CUDA it runs the
# parts that run on a CPU, at CPU sizes, marks the CUDA-only rows "skipped: no CUDA", and
# exits 0; with CUDA it exits 1 if a row failed. Each row has its own time limit (480 s in all).
# A GPU machine needs a CUDA build of torch in .venv (README, "On a GPU").
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MNIST=${MNIST:-../shared/data/mnist-subset-10k}
OUT=${OUT:-$(mktemp -d)}
CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
ROWS=()
FAILED=0

row() {  # row NAME LIMIT_S KIND -- COMMAND...: run it, keep its log, one figure from it
    local name=$1 limit=$2 kind=$3 log start end status figure
    shift 4
    log="$OUT/$kind.log"
    start=$(date +%s)
    timeout "$limit" "$@" >"$log" 2>&1
    status=$?
    end=$(date +%s)
    figure=$("$PY" bench/gpu_table.py "$kind" "$log" 2>/dev/null | tail -1)
    if [ "$status" -eq 0 ]; then status=ok; elif [ "$status" -eq 124 ]; then status="timeout"; FAILED=1; else status="fail ($status)"; FAILED=1; fi
    ROWS+=("| $name | $status | $((end - start)) | ${figure:-see $log} |")
}
skip() { ROWS+=("| $1 | skipped: no CUDA | 0 | $2 |"); }

TESTS=(tests/test_population.py tests/test_population_checkpoint.py tests/test_schedule.py
       tests/test_kernels.py tests/test_mi_cap.py tests/test_term_contract.py tests/test_floors.py)
if [ "$CUDA" = 1 ]; then
    row "suite CUDA paths" 180 pytest -- "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
    row "gpu_checks (fp32, bf16, resume, CUDA vs CPU)" 90 checks -- "$PY" bench/gpu_checks.py
    row "population --k 64, 2x1024" 90 population -- "$PY" bench/population.py --k 64 --widths 1024 --steps 640 --rounds 2 --objectives infovae
    row "population_memory (members per GPU)" 60 memory -- "$PY" bench/population_memory.py --widths 64 1024 --ks 1 16 64 --device cuda
else
    skip "suite CUDA paths" "the same tests run on CPU in the suite (make test)"
    row "gpu_checks (CPU parts)" 300 checks -- "$PY" bench/gpu_checks.py
    skip "population --k 64, 2x1024" "CPU figures: docs/BENCHMARKS.md (bench/population.py)"
    row "population_memory (CPU, 2x64)" 120 memory -- "$PY" bench/population_memory.py --widths 64 --ks 1 4 --device cpu
fi
if [ -d "$MNIST" ]; then
    STEPS=$([ "$CUDA" = 1 ] && echo 500 || echo 20)
    row "paper-scale Figure 2 file, $STEPS steps" 60 train -- "$PY" run_search.py train configs/paper-4.2-mnist-infovae.yaml \
        --set "dataset.data_dir=$MNIST" --set train.steps=$STEPS --set train.eval_every=$STEPS \
        --set train.iw_samples=100 --set train.eval_size=500 --set train.nll_train_size=200 \
        --set objective.lambda=1000 --out "$OUT/figure2"
else
    ROWS+=("| paper-scale Figure 2 file | skipped: no data at $MNIST (set MNIST=DIR) | 0 | |")
fi

[ "$CUDA" = 1 ] || echo "note: no CUDA device here: the CUDA-only rows are skipped; CPU rows run at CPU sizes"
echo "device: $("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "torch", torch.__version__)')"
echo "| check | status | seconds | figure |"
echo "| --- | --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"
echo "logs: $OUT"
if [ "$CUDA" = 1 ]; then exit "$FAILED"; fi
exit 0
