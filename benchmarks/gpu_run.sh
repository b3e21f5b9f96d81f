#!/usr/bin/env bash
# The one GPU session: af1-preset training throughput (eager), an FSDP try of `afl train`, then the compiled cases.
# Run from the repo root on the device machine with the wheels of .whl/ (see benchmarks/README.md).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false AFL_CACHE=/tmp/aflcache
OUT=${OUT:-benchmarks/results}
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv | tee $OUT/gpu.txt
python3 -c "import torch, transformers, lightning; print('torch', torch.__version__, 'transformers', transformers.__version__, 'lightning', lightning.__version__)" | tee -a $OUT/gpu.txt
timeout 200 python3 benchmarks/bench_af1_train.py --device cuda --out $OUT/af1_train_eager.json \
  --cases eager:pretrain:16,eager:pretrain:64,eager:sft:16,eager:sft:64,prefix:pretrain:16,prefix:pretrain:64 2>&1 | grep -v -i warn | tee $OUT/af1_eager.log
python3 -m data_recipes.synthetic --out /tmp/d --quick > /dev/null 2>&1
timeout 80 python3 -c "from audioflamingo_lab.cli import main; main()" train --config configs/tiny-pretrain.yaml --out /tmp/fsdp \
  --data.train "{/tmp/d/manifest.jsonl: 1.0}" --data.cache /tmp/c --devices 1 --strategy fsdp --precision bf16-mixed \
  --trainer.accelerator gpu --trainer.max_steps 10 --trainer.enable_progress_bar false > $OUT/fsdp.log 2>&1
echo "fsdp exit $?; $(ls /tmp/fsdp 2>/dev/null | tr '\n' ' ')" | tee -a $OUT/fsdp.log; tail -3 $OUT/fsdp.log
timeout 230 python3 benchmarks/bench_af1_train.py --device cuda --out $OUT/af1_train_compiled.json \
  --cases compiled:pretrain:16,compiled:pretrain:64,compiled:sft:16 2>&1 | grep -v -i warn | tee $OUT/af1_compiled.log
