#!/usr/bin/env bash
# The GPU path, checked on a machine with GPUs (mxnet-cu117 or -cu112 1.9.1 installed).
#
# usage: scripts/gpu_check.sh [--dry-run] [--gpus 0,1,2,3] [--workdir DIR]
#
# Short fine-tunings of a seeded Xception at 71x71 on a synthetic 3-class set, one epoch each,
# all from the same start and seed, BatchNorm frozen (--freeze-bn: per-device batch statistics
# would make device counts differ by more than rounding):
#   device-1      1 GPU, --kvstore device        (the reference)
#   device-N      N GPUs, --kvstore device       (gradients summed over the devices)
#   amp-1, amp-N  the same with --amp            (float16, loss scaling)
#   dist-N        2 workers of xception-launch, N/2 GPUs each, --kvstore dist_device_sync
#   horovod-N     horovodrun -np N, one GPU per process, --kvstore horovod
# and prints one verdict line per case, against device-1's parameters after the epoch:
#   device-N, amp-1, amp-N: the same training, so the largest deviation over how far training
#     moved the parameters must be rounding (PASS under 1e-3 in fp32, 5e-2 with --amp);
#   dist-N, horovod-N: each worker trains its own shard (another batch composition), so the
#     verdict is that the job finished, its parameters are finite and moved between half and
#     twice as far as device-1's.
# --dry-run prints the commands and exits 0 on any machine.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
GPUS=0,1,2,3
WORKDIR=gpu-check
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --gpus) GPUS="$2"; shift ;;
        --workdir) WORKDIR="$2"; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
IFS=, read -r -a LIST <<< "$GPUS"
N=${#LIST[@]}
if [ "$N" -lt 2 ] || [ $((N % 2)) -ne 0 ]; then
    echo "gpu_check.sh: error: --gpus $GPUS: give an even number of GPUs, at least 2" >&2
    exit 2
fi
FIRST=${LIST[0]}
HALF=$(IFS=,; echo "${LIST[*]:0:$((N / 2))}")
W=$WORKDIR
COMMON="$W/data --out RUN --pretrained $W/base71 --input-shape 71 71 --epochs 1 \
--batch-size $((4 * N)) --freeze-bn --seed 0 --workers 0"

run() {       # print the command; run it unless --dry-run
    echo "+ $*"
    [ "$DRY_RUN" = 1 ] || "$@"
}

finetune() {  # case name, then the launcher and xception-finetune's own options
    local name=$1; shift
    echo "# case $name"
    run "$@"
}

if [ "$DRY_RUN" = 0 ]; then
    # the installed MXNet's GPU code against each GPU's compute capability, before MXNet runs
    python - "$GPUS" <<'EOF' || exit 2
import sys
from xception_mx.errors import InputError
from xception_mx.training.distributed.devices import parse_gpu_ids
from xception_mx.training.distributed.gpu_code import check_gpu_code
try:
    check_gpu_code(sys.argv[1], parse_gpu_ids(sys.argv[1]))
except InputError as exc:
    sys.exit("gpu_check.sh: error: %s" % exc)
EOF
    python -c "import mxnet as mx, sys; sys.exit(0 if mx.context.num_gpus() >= $N else 1)" \
        || { echo "gpu_check.sh: error: MXNet sees fewer than $N GPUs (install mxnet-cu117" \
                  "1.9.1 on a GPU machine; --gpus to list others)" >&2; exit 2; }
    rm -rf "$W"
fi
run python scripts/make_keras_reference.py --seed 0 -o "$W/xception_seed0.h5"
run keras2mxnet "$W/xception_seed0.h5" -o "$W/base71" --input-shape 71 71
run python scripts/make_shapes_dataset.py "$W/data" --per-class 16
# shellcheck disable=SC2086
{
finetune device-1 xception-finetune ${COMMON/RUN/$W/device-1} --gpus "$FIRST" --kvstore device
finetune device-$N xception-finetune ${COMMON/RUN/$W/device-$N} --gpus "$GPUS" --kvstore device
finetune amp-1 xception-finetune ${COMMON/RUN/$W/amp-1} --gpus "$FIRST" --kvstore device --amp
finetune amp-$N xception-finetune ${COMMON/RUN/$W/amp-$N} --gpus "$GPUS" --kvstore device --amp
finetune dist-$N xception-launch -n 2 -s 1 --timeout 1800 -- \
    xception-finetune ${COMMON/RUN/$W/dist-$N} --gpus "$HALF" --kvstore dist_device_sync
finetune horovod-$N horovodrun -np "$N" --gloo -H "localhost:$N" \
    xception-finetune ${COMMON/RUN/$W/horovod-$N} --gpus "$GPUS" --kvstore horovod
}
run python - "$W" "$N" <<'EOF'
import sys
import numpy as np
import xception_mx  # noqa: F401
import mxnet as mx
work, n = sys.argv[1], sys.argv[2]
start = {k.split(":")[-1]: v.asnumpy() for k, v in mx.nd.load(work + "/base71-0000.params").items()}
def params(case):
    return {k: v.asnumpy() for k, v in mx.nd.load(work + "/%s/epoch-0001.params" % case).items()}
reference = params("device-1")
movement = lambda got: max(np.abs(v - start[k]).max() for k, v in got.items() if k in start)
moved, failed = movement(reference), 0
for case, bound in (("device-" + n, 1e-3), ("amp-1", 5e-2), ("amp-" + n, 5e-2),
                    ("dist-" + n, None), ("horovod-" + n, None)):
    try:
        got = params(case)
    except Exception as exc:
        print("FAIL %-12s no checkpoint (%s)" % (case, str(exc).strip().splitlines()[-1]))
        failed += 1
        continue
    if bound is None:
        finite = all(np.isfinite(v).all() for v in got.values())
        ratio = movement(got) / moved
        ok = finite and 0.5 <= ratio <= 2
        print("%s %-12s finished, parameters %s, moved %.2fx as far as device-1's (0.5-2)"
              % ("PASS" if ok else "FAIL", case, "finite" if finite else "NOT FINITE", ratio))
        failed += not ok
        continue
    worst = max(np.abs(got[k] - v).max() for k, v in reference.items()) / moved
    print("%s %-12s max |param - device-1| / max movement = %.2e (bound %.0e)"
          % ("PASS" if worst <= bound else "FAIL", case, worst, bound))
    failed += not worst <= bound
sys.exit(1 if failed else 0)
EOF
