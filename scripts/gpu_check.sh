#!/usr/bin/env bash
# The checks that need a CUDA GPU (CI has none), on the environment `make test` installs:
#   bash scripts/gpu_check.sh            # GPU tests, the GPU sampling benchmarks, the demo on the GPU, the TRL path (bf16)
# Results land in runs/demo-gpu and runs/demo-gpu-trl: the commands behind the README's GPU paragraphs.
set -euo pipefail
BIN=${BIN:-.venv/bin}
"$BIN/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check here')"
"$BIN/pytest" -m gpu -rs tests/test_gpu.py tests/test_vllm_backend.py
"$BIN/python" benchmarks/cudnn_attention.py
"$BIN/python" benchmarks/generation_throughput.py
time "$BIN/codeloop" loop plum configs/demo.yaml --set out_dir=runs/demo-gpu
time "$BIN/codeloop" loop plum configs/demo.yaml --set trainer=trl iterations=4 out_dir=runs/demo-gpu-trl
# the same, each update launched through torchrun on every GPU here (one GPU: one process)
time "$BIN/codeloop" loop plum configs/demo.yaml --set trainer=trl iterations=4 out_dir=runs/demo-gpu-launch \
  "launch=torchrun --standalone --nproc_per_node $("$BIN/python" -c 'import torch; print(torch.cuda.device_count())')"
