#!/usr/bin/env bash
# The GPU checks of issue 10 in one go, at most about 7.8 minutes on one GPU: the CUDA
# tests (tests/gpu and the device/dtype tests), then benchmarks/gpu.py, then its case A
# with the deterministic option. Run from the repository root on a machine whose torch
# sees a GPU:
#     bash benchmarks/gpu_check.sh        # PYTHON=... to pick the interpreter (default python3)
#
# Dependencies: torch, numpy, pytest (+ pytest-timeout, hypothesis, as pyproject's test extra)
# and msgspec. The project's device machines have all but msgspec: before the call, run
# `bash benchmarks/gpu_wheels.sh` on a machine with pip (it puts msgspec's wheel for their
# Python 3.12 in .whl/, which git ignores) and carry .whl with the tree; this script
# installs what it finds there into /tmp/site when an import fails.
#
# With the project's device tool: the tool sends the checkout the session started in, so run
# it where this branch is checked out (or copy this tree into an ignored folder that is
# carried, and cd there first). One call, e.g.
#     run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
# Everything printed also goes to ${OUT:-.}/gpu_check.log (and pytest's report to
# ${OUT:-.}/gpu_tests.xml). Exit status: the tests' (the benchmark's figures are for the
# README, not pass/fail); 3 where torch sees no GPU, 4 where a dependency is missing.
set -u
PY=${PYTHON:-python3}
DIR=${OUT:-.}
LOG=$DIR/gpu_check.log
export QT_QPA_PLATFORM=offscreen PYTHONUNBUFFERED=1 CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
{
  date -u
  if ! $PY -c "import msgspec" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  for m in torch numpy msgspec pytest pytest_timeout hypothesis; do
    if ! $PY -c "import $m" 2>/dev/null; then
      echo "$m is missing for $PY: run benchmarks/gpu_wheels.sh where pip works and carry .whl"; exit 4
    fi
  done
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, os; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cores', os.cpu_count())"
  if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "torch sees no GPU: nothing to check here"; exit 3
  fi
  echo "== CUDA tests (tests/gpu, tests/core/test_devices.py, test_dtypes.py), at most 230 s"
  timeout -k 10 230 $PY -m pytest -q -p no:cacheprovider -rs --junitxml="$DIR/gpu_tests.xml" \
    tests/gpu tests/core/test_devices.py tests/core/test_dtypes.py
  tests=$?
  [ $tests -eq 124 ] && echo "the tests ran out of their 230 s: the report above is partial"
  if $PY -c "import zmq" 2>/dev/null; then
    echo "== watch()'s hook on CUDA makes no host sync, at most 40 s"
    timeout -k 10 40 $PY -m pytest -q -p no:cacheprovider -rs tests/realruns/test_watch.py -k cuda || tests=1
  else
    echo "pyzmq is missing: watch()'s CUDA test skipped (benchmarks/gpu_wheels.sh fetches its wheel)"
  fi
  echo "== benchmarks/gpu.py (up to 3 interleaved pairs a case within 150 s), at most 190 s"
  timeout -k 10 190 $PY benchmarks/gpu.py --pairs 3 --budget 150
  echo "== case A with the deterministic option (its cost), at most 40 s"
  timeout -k 10 40 $PY benchmarks/gpu.py --pairs 1 --only A --deterministic
  date -u
  exit $tests
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
