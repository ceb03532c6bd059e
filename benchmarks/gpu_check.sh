#!/usr/bin/env bash
# The GPU checks of issue 10 in one go (about ten minutes on one GPU): the CUDA tests
# (tests/gpu), then benchmarks/gpu.py. Run from the repository root on a machine whose
# torch sees a GPU:
#     bash benchmarks/gpu_check.sh            # PYTHON=... to pick the interpreter
# Everything printed also goes to ${OUT:-.}/gpu_check.log. Exit status: the tests' (the
# benchmark's figures are for the README, not pass/fail).
set -u
PY=${PYTHON:-python}
LOG=${OUT:-.}/gpu_check.log
export QT_QPA_PLATFORM=offscreen CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
{
  date
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
  if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "torch sees no GPU: nothing to check here"; exit 3
  fi
  echo "== CUDA tests (tests/gpu), at most 5 minutes"
  timeout 300 $PY -m pytest -q -p no:cacheprovider tests/gpu tests/core/test_devices.py tests/core/test_dtypes.py -rs
  tests=$?
  echo "== benchmarks/gpu.py (3 interleaved pairs a case), at most 5 minutes"
  timeout 300 $PY benchmarks/gpu.py --pairs 3
  echo "== the same with the deterministic option, case A only (its cost)"
  timeout 60 $PY benchmarks/gpu.py --pairs 1 --only A --deterministic
  date
  exit $tests
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
