#!/usr/bin/env bash
# The benchmarks on a machine with a GPU or TPU, in under 10 minutes, writing their JSON.
#
#   bash experiments/bench/accelerator.sh [OUT_DIR]
#
# Runs from the repository root with the project's environment (.venv, or the python on PATH
# with jax for the accelerator installed, e.g. `pip install -U "jax[cuda13]"`). Each
# benchmark runs in its own process under a time limit so one failure does not cost the
# rest; the PyTorch reference is used when REFERENCE names its python (optional). Writes
# OUT_DIR/{device,voting,generation,stm}.json (default OUT_DIR: $OUT, else
# experiments/results/accelerator). Exit status: non-zero if any benchmark failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR="${1:-${OUT:-experiments/results/accelerator}}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
REF=()
[ -n "${REFERENCE:-}" ] && REF=(--reference "$REFERENCE")
status=0

run() {  # run NAME SECONDS ARGS...
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s)" >&2
  if timeout "$limit" "$PY" -m "$@" > "$OUT_DIR/$name.json" 2> "$OUT_DIR/$name.log"; then
    echo "   ok -> $OUT_DIR/$name.json" >&2
  else
    echo "   FAILED (status $?); see $OUT_DIR/$name.log" >&2
    status=1
  fi
}

"$PY" - > "$OUT_DIR/device.json" <<'EOF'
import json, os, jax
print(json.dumps({"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
                  "jax": jax.__version__, "cpus": os.cpu_count(), "loadavg": os.getloadavg()}))
EOF
cat "$OUT_DIR/device.json" >&2

# Voting at paper scale and at 2,000 x 1M (the sharded, blocked path).
run voting 150 experiments.bench.voting --sizes 100x5400x384 2000x1000000x384 --allow-contended
# Generation: both PLMs in float32 and bfloat16, and the embedder.
run generation 300 experiments.bench.generation --rounds 2 --embed-n 1000 --embed-rounds 2 \
  --allow-contended "${REF[@]}"
# The STM's training and evaluation steps.
run stm 120 experiments.bench.stm --rounds 3 --allow-contended "${REF[@]}"
exit $status
