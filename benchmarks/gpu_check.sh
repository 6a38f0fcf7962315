#!/usr/bin/env bash
# GPU checks, run on a machine with a CUDA device (CI has none): the default test suite, in which the registry
# contract (tests/test_registry_contract.py) runs every model x inference and every model's CLI on CUDA as well,
# plus the CUDA-only tests that skip elsewhere; then the sparse-GP speed section on the GPU against
# pyro.contrib.gp and GPyTorch. Logs go to $1 (default ./gpu_check_out).
#
#     bash benchmarks/gpu_check.sh /tmp/gpu_out
#
# Needs pytest-xdist for the parallel test run (falls back to one process without it) and gpytorch for the
# benchmark's third column (left out without it).
set -u
out=${1:-gpu_check_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 - <<'PY' 2>&1 | tee "$out/env.txt"
import torch, pyro, arviz
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
print("pyro", pyro.__version__, "arviz", arviz.__version__)
PY
xdist=$(python3 -c "import xdist" 2>/dev/null && echo "-n 8" || echo "")
# a few intra-op threads per xdist worker: torch's default (one per core) in every worker oversubscribes the CPU,
# which made the slow suite look hung on a 16-core machine (RESULTS.md, session 13)
[ -n "$xdist" ] && export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# the Ray tests need a Ray install; they are CPU-only and run in CI
timeout 330 python3 -m pytest -q $xdist --ignore=tests/sweep/test_ray.py -rs 2>&1 | tee "$out/pytest.txt" | tail -40
gpyt=$(python3 -c "import gpytorch" 2>/dev/null && echo "" || echo "--no-gpytorch")
timeout 200 python3 benchmarks/sparse_gp.py --sections speed --device cuda --n 20000 --m 256 --steps 20 $gpyt \
    2>&1 | tee "$out/sparse_gp_cuda_n20000.txt"
timeout 120 python3 benchmarks/sparse_gp.py --sections speed --device cuda --n 200000 --m 512 --dims 8 --steps 10 \
    $gpyt 2>&1 | tee "$out/sparse_gp_cuda_n200000.txt"
