#!/usr/bin/env bash
# Fetch the wheels benchmarks/gpu_check.sh needs on the project's GPU machines, which have
# torch, numpy, pytest, pytest-timeout and hypothesis but not msgspec and cannot reach a
# package index. Run from the repository root where pip works; the wheels land in .whl/
# (ignored by git), to be carried with the tree. Their Python is 3.12 on x86-64 Linux.
set -eu
PY=${PYTHON:-python3}
EXCLUDE=$(git rev-parse --git-path info/exclude)
grep -qx '/.whl/' "$EXCLUDE" 2>/dev/null || echo '/.whl/' >> "$EXCLUDE"
VERSION=$($PY -c "import msgspec; print(msgspec.__version__)" 2>/dev/null || echo 0.19.0)
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "msgspec==$VERSION"
ZMQ=$($PY -c "import zmq; print(zmq.__version__)" 2>/dev/null || echo 27.1.0)
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "pyzmq==$ZMQ"  # for watch()'s CUDA test
ls .whl
