#!/bin/sh
# The multi-host matrix on hosts in network namespaces (issue 44), as root, from a checkout
# whose venv is set up (make setup setup-horovod setup-netns): the namespace cluster itself,
# three jobs across hosts (dist_sync and dist_device_sync over ssh, Horovod over Gloo) each
# against the same job on one host, a worker's and the server's link set down mid-epoch then
# --resume, 50 ms and 1% loss on every link, a host refusing ssh and one without the venv.
# The cases are the suite's tests/multihost; this prints one summary line per case, with its
# figures, and exits non-zero if any failed.
#
#   scripts/netns_check.sh
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "netns_check.sh: needs root (network namespaces)" >&2; exit 2; }
[ -x "$ROOT/.venv/bin/python" ] || { echo "netns_check.sh: no $ROOT/.venv: make setup" \
    "setup-horovod setup-netns first" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
XCEPTION_MX_NETNS_REPORT="$WORK/figures" CI=true "$ROOT/.venv/bin/python" -m pytest \
    tests/multihost -p no:cacheprovider -q -rA -o junit_family=xunit2 \
    --junitxml="$WORK/results.xml" >"$WORK/log" 2>&1
STATUS=$?
"$ROOT/.venv/bin/python" - "$WORK/results.xml" "$WORK/figures" <<'EOF'
import json, os, sys, xml.etree.ElementTree as ET
figures = {}
if os.path.exists(sys.argv[2]):
    for line in open(sys.argv[2]):
        record = json.loads(line)
        figures.setdefault(record.pop("test"), []).append(record)
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    failed = case.find("failure") is not None or case.find("error") is not None
    skipped = case.find("skipped") is not None
    status = "FAIL" if failed else "SKIP" if skipped else "ok"
    name = case.get("name")
    said = "; ".join("%s %s" % (r.pop("case"), ", ".join("%s=%s" % kv for kv in r.items()))
                     for r in figures.get(name, []))
    if skipped:
        said = case.find("skipped").get("message", "")
    print("%-4s %s%s" % (status, name, ("  [%s]" % said) if said else ""))
EOF
[ $STATUS = 0 ] || { echo "netns_check.sh: failures: see the log below"; tail -n 80 "$WORK/log"; }
exit $STATUS
