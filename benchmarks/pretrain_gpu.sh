#!/usr/bin/env bash
# Pretraining of the shipped generalists on one GPU, in a single call of the device tool (about 8 minutes):
#   phase 1 (in parallel): Restormer teachers teacher-tiny and student-s (the architecture), a CNN teacher unet-m,
#           and unet-s trained alone on the stream; each then stored in float16 (checked against float32);
#   phase 2 (in parallel): unet-s distilled (skd) from each teacher on the same stream.
# Outputs go to $OUT (checkpoints, logs.tar.gz). Needs the wheels in .whl (pydantic, dask; see docs/pretrained.md).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/pretrain-gpu}
mkdir -p "$OUT" /tmp/pre
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:src
else
  export PYTHONPATH=src
fi
T1=${T1:-250}   # seconds of each phase-1 run
T2=${T2:-130}   # seconds of each phase-2 run
COMMON="--device ${DEVICE:-cuda} --batch ${BATCH:-32} --patch ${PATCH:-128} --val-every 500 --warmup 300 --lr 5e-4 --cache /tmp/pre/corpus.npz"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
start=$(date +%s)
python3 - <<'PY' || exit 1
import argparse, os
from napari_skd.pretrained.pretrain import _corpus
a = argparse.Namespace(cache="/tmp/pre/corpus.npz", synthetic=int(os.environ.get("SYN", 6000)), size=256, seed=0, natural_crops=int(os.environ.get("NAT", 1400)),
                       workers=os.cpu_count())
c = _corpus(a)
print("corpus", c.images.shape, c.val_synthetic.shape, c.val_natural.shape, c.manifest_hash)
PY
echo "corpus built at +$(( $(date +%s) - start )) s"
for spec in "tiny:teacher-tiny" "s:student-s" "cnn:unet-m" "alone:unet-s"; do
  name=${spec%%:*}; model=${spec#*:}
  OMP_NUM_THREADS=4 python3 -m napari_skd.pretrained.pretrain teacher --model "$model" --out /tmp/pre/$name.pt \
    --max-time $T1 $COMMON --threads 4 > /tmp/pre/$name.log 2>&1 &
done
wait
echo "phase 1 done at +$(( $(date +%s) - start )) s"
for name in tiny s cnn alone; do
  tail -2 /tmp/pre/$name.log
  python3 -m napari_skd.pretrained.ship /tmp/pre/$name.pt /tmp/pre/$name.f16.pt --check /tmp/pre/corpus.npz \
    || cp /tmp/pre/$name.pt /tmp/pre/$name.f16.pt
  cp /tmp/pre/$name.f16.pt "$OUT/$name.pt"
done
tar czf "$OUT/logs.tar.gz" -C /tmp/pre $(cd /tmp/pre && ls *.log)
for name in tiny s cnn; do
  OMP_NUM_THREADS=4 python3 -m napari_skd.pretrained.pretrain student --model unet-s --teacher /tmp/pre/$name.f16.pt \
    --out /tmp/pre/student-$name.pt --max-time $T2 $COMMON --threads 4 > /tmp/pre/student-$name.log 2>&1 &
done
wait
echo "phase 2 done at +$(( $(date +%s) - start )) s"
for name in tiny s cnn; do
  tail -1 /tmp/pre/student-$name.log
  python3 -m napari_skd.pretrained.ship /tmp/pre/student-$name.pt /tmp/pre/student-$name.f16.pt \
    --check /tmp/pre/corpus.npz || cp /tmp/pre/student-$name.pt /tmp/pre/student-$name.f16.pt
  cp /tmp/pre/student-$name.f16.pt "$OUT/student-$name.pt"
done
tar czf "$OUT/logs.tar.gz" -C /tmp/pre $(cd /tmp/pre && ls *.log)
echo "all done at +$(( $(date +%s) - start )) s"
