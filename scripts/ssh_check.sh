#!/bin/sh
# Check `xception-launch --launcher ssh` against real ssh servers (CI has none; its
# tests use tests/training/fake_ssh.py): a 2-worker fine-tuning over ssh, one worker killed
# after the first checkpoint, the job must fail, no worker may be left running,
# and the same command with --resume must complete the run.
#
#   scripts/ssh_check.sh HOSTS_FILE [WORK_DIR]
#
# Needs key-based ssh to every host of HOSTS_FILE (HOST or HOST:SSH_PORT per line),
# this checkout with its .venv (`make setup`) and WORK_DIR at the same paths there;
# the count of left-over workers is taken on this machine (use loopback hosts, e.g.
# an sshd on 127.0.0.1:2222, or run the check on each host).
set -eu
HOSTS=$(realpath "$1")
WORK=$(realpath "${2:-$(mktemp -d)}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/.venv/bin"
WORKER="^$BIN/python $BIN/xception-finetune"
cd "$ROOT"
"$BIN/python" scripts/make_keras_reference.py --seed 0 --notop -o "$WORK/base.h5"
"$BIN/keras2mxnet" "$WORK/base.h5" -o "$WORK/base71" --input-shape 71 71 --force
PYTHONPATH=scripts "$BIN/python" -c "from shapes_dataset import write_shapes_dataset; \
write_shapes_dataset('$WORK/data', per_class=8, seed=2, size=(80, 80))"
rm -rf "$WORK/run"
set -- "$BIN/xception-launch" -n 2 -s 1 --launcher ssh --hosts "$HOSTS" --timeout 900 -- \
    "$BIN/xception-finetune" "$WORK/data" --out "$WORK/run" --pretrained "$WORK/base71" \
    --input-shape 71 71 --batch-size 4 --val-split 0.25 --kvstore dist_sync --workers 0 \
    --epochs 3 --freeze-base-epochs 1
"$@" >"$WORK/first.log" 2>&1 &
JOB=$!
i=0
until [ -f "$WORK/run/epoch-0001.json" ]; do
    i=$((i + 1)); [ $i -lt 3000 ] || { echo "FAIL: no first checkpoint"; exit 1; }
    sleep 0.1
done
kill -KILL "$(pgrep -f "$WORKER" | tail -n 1)"
if wait $JOB; then echo "FAIL: the job did not fail"; exit 1; fi
grep "exited with status" "$WORK/first.log"
sleep 2
LEFT=$(pgrep -fc "$WORKER" || true)
[ "$LEFT" = 0 ] || { echo "FAIL: $LEFT workers left running"; exit 1; }
"$@" --resume >"$WORK/resumed.log" 2>&1 || { tail "$WORK/resumed.log"; echo "FAIL: resume"; exit 1; }
grep "resuming after epoch" "$WORK/resumed.log"
[ "$(wc -l <"$WORK/run/metrics.csv")" = 4 ] && [ -f "$WORK/run/model-0000.params" ] || {
    echo "FAIL: the resumed run did not complete"; exit 1; }
echo "OK: killed worker stopped the job, nothing left running, --resume completed ($WORK)"
