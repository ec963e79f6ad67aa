#!/usr/bin/env bash
# benchmarks/speed.py on a GPU machine, all of it in under 8 minutes including jax's import.
#
#   bash benchmarks/gpu.sh            # from the repository root or anywhere; needs no network
#
# Writes speed.json and speed.md into $OUT when that is set (the device tool copies $OUT back), else into
# benchmarks/results/gpu. Uses the first of .venv/bin/python, python3, python that imports jax and optax; the
# checkout's gradflow is put on PYTHONPATH, so it need not be installed. Prints the backend jax got: on a GPU it runs
# the gpu profile (budget 330 s, hard stop at 420 s; rows past the budget are skipped and listed, and the files are
# rewritten after every row, so a stopped run keeps what it measured); without one it says so and runs the quick
# profile on the CPU instead.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # leave GPU memory to torch too

python=""
for candidate in .venv/bin/python python3 python; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import jax, optax" >/dev/null 2>&1; then
    python="$candidate"
    break
  fi
done
if [ -z "$python" ]; then
  echo "gpu.sh: no python here imports jax and optax; nothing measured" | tee "$out/speed-unavailable.txt"
  exit 1
fi

command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
backend="$(timeout 120 "$python" -c 'import jax; print(jax.default_backend())' 2>/dev/null | tail -n 1)"
echo "gpu.sh: $python, jax backend: ${backend:-unknown}"
if [ "$backend" = "gpu" ] || [ "$backend" = "cuda" ] || [ "$backend" = "rocm" ]; then
  profile=(--profile gpu)
else
  echo "gpu.sh: jax has no GPU backend here (jax with CUDA is not installed?): running the quick profile on the CPU"
  export JAX_PLATFORMS=cpu
  profile=(--quick)
fi
started=$(date +%s)
timeout --signal=TERM --kill-after=10 420 "$python" benchmarks/speed.py "${profile[@]}" --out "$out" "$@"
status=$?
echo "gpu.sh: exit $status after $(( $(date +%s) - started )) s; results in $out"
exit $status
