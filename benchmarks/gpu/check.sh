#!/usr/bin/env bash
# Issue 7 (speed goals) and issue 2 (CUDA end-to-end) checks in ONE device run.
# Prepare here with `bash benchmarks/gpu/kit.sh`, then call the device tool with
#   command="bash benchmarks/gpu/check.sh", carry=[".whl"], timeout_s=560
# Installs .whl into the image's Python (the machine is fresh and given back after), then
# each step under its own time limit so that one hang cannot eat the rest; logs and JSON
# land in $OUT (device tool) or save/gpu.
# PY (default python3) and INSTALL=0 (skip the install) are for trying the script elsewhere.
# Arguments name the steps to run (default: train_step overhead ms_loss e2e, about 510 s of limits);
# `bash benchmarks/gpu/check.sh padding` (issue 17: dynamic text padding at ViLBERT-base, batch 32
# HM-like and 480 SNLI-VE-like lengths, limit 200 s) fits a second call; `all` runs every step.
set -uo pipefail
shopt -s nullglob
OUT=${OUT:-save/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 REFNET_MINILM_DIR=$PWD/.whl/minilm-tokenizer
py=${PY:-python3}
{
  nvidia-smi -L
  if [ "${INSTALL:-1}" = 1 ]; then
    $py -m pip install -q --no-index --no-deps --no-cache-dir --no-build-isolation .whl/*.whl .whl/*.tar.gz 2>&1 | tail -3
    # the plugin as this working tree has it, even if .whl's wheel is older (mmf_run imports the installed one)
    site=$($py -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    for name in mmf_refnet _mmf_refnet_autoload.py; do rm -rf "$site/$name" && ln -s "$PWD/$name" "$site/$name"; done
  fi
  $py -c "import torch, transformers, mmf, mmf_refnet; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
} 2>&1 | tee "$OUT/setup.log"
wanted=${*:-train_step overhead ms_loss e2e}
step() {  # name, seconds, command...
  local name=$1 limit=$2; shift 2
  [[ " $wanted " == *" $name "* || " $wanted " == *" all "* ]] || return 0
  echo "== $name (limit ${limit}s)"
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "rc=$? after $((SECONDS - start)) s"
  grep -v '^\.\.\.' "$OUT/$name.log" | tail -n 14
}
step train_step 270 $py benchmarks/train_step.py --device cuda --size base --steps 20 --compile reduce-overhead --json "$OUT/step.json"
step overhead 90 $py benchmarks/overhead.py --device cuda --size base --steps 60 --json "$OUT/overhead.json"
step ms_loss 30 $py benchmarks/ms_loss.py --device cuda --step-json "$OUT/overhead.json" --json "$OUT/ms_loss.json"
step e2e 120 env REFNET_TEST_DEVICE=cuda $py -m pytest -q -x -p no:cacheprovider tests/test_mmf_end_to_end.py -k "not two_process" \
  tests/test_compat.py::test_fused_attention_equals_rc10_attention_in_values_and_gradients
step padding 200 $py benchmarks/padding.py --device cuda --size base --model refnet_ms --profiles hm:32 snli_ve:480 \
  --steps 10 --warmup 3 --json "$OUT/padding.json"
