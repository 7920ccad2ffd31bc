"""Bad bodies and killed workers against a real Multi Model Server serving the demo's checkpoint
(``make robustness-serving``): rewrites the "Serving" section of ROBUSTNESS.md.

Each bad body is sent once, then a good request; each kill SIGKILLs the model's worker while
4 clients send requests without pause, and counts the requests that failed and the seconds
until the next one succeeded."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "deploy"))
from mms_server import BIN, MmsServer, bad_bodies  # noqa: E402

sys.path.insert(0, ROOT)
from xception_mx.atomic import write_text  # noqa: E402

HEADER = "## Serving (Multi Model Server)"
PREFIX = os.path.join(ROOT, "demo", "xception")
PHOTO = os.path.join(ROOT, "tests", "data", "coffee.jpg")


def send_bad_bodies(server, photo):
    rows = []
    for case, (body, content_type, status, says) in bad_bodies(photo).items():
        got, text, _ = server.predict("xception", body, content_type)
        after, _, _ = server.predict("xception", photo)
        rows.append((case, status, got, text.strip()[:120] or "(no body)", after))
    return rows


def kill_under_load(server, photo, clients=4):
    """SIGKILL the worker while ``clients`` send requests: ``(failed requests, seconds from
    the kill to the next answered request)``."""
    log, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                status, _, _ = server.predict("xception", photo)
            except OSError:                   # a connection the server dropped: failed
                status = 0
            log.append((time.time(), status))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(3)
    victim = server.workers()[0]
    killed = time.time()
    victim.kill()
    while not any(t > killed + 0.05 and s == 200 for t, s in list(log)):
        time.sleep(0.2)
        if time.time() - killed > 300:
            break
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join()
    back = min((t for t, s in log if t > killed + 0.05 and s == 200), default=float("nan"))
    return [s for _, s in log if s != 200], back - killed, len(log)


def section(bad, kills):
    lines = [HEADER, "",
             "Written by `make robustness-serving` (`scripts/serving_faults.py`) on %s: the "
             "demo's checkpoint exported with `xception-export --format mms`, one worker, on "
             "127.0.0.1.  The test suite runs the same cases "
             "(`tests/deploy/test_mms_server.py`)." % time.strftime("%Y-%m-%d"), "",
             "| bad body | expected | answered | message | next good request |",
             "|---|---|---|---|---|"]
    for case, status, got, text, after in bad:
        lines.append("| %s | %d | %d | `%s` | %d |" % (case, status, got,
                                                      text.replace("|", "/"), after))
    failed = [len(k[0]) for k in kills]
    statuses = sorted({s for k in kills for s in k[0]})
    back = [k[1] for k in kills]
    lines += ["", "| worker killed (SIGKILL) under 4 clients sending without pause | kills | "
              "requests sent | requests failed | seconds from the kill to the next answer, "
              "min / median / max |", "|---|---|---|---|---|",
              "| | %d | %d | %d (%s per kill) | %.1f / %.1f / %.1f |" % (
                  len(kills), sum(k[2] for k in kills), sum(failed),
                  ", ".join(map(str, failed)), min(back), statistics.median(back), max(back)),
              "", "The requests that failed were the ones the killed worker held; they got "
              "status %s from MMS (\"Worker died.\").  The others waited for the new worker, "
              "which loads the model again." % ", ".join(map(str, statuses)), ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args(argv)
    if not os.path.exists(PREFIX + "-symbol.json"):
        subprocess.run(["make", "demo"], cwd=ROOT, check=True)
    photo = open(PHOTO, "rb").read()
    with tempfile.TemporaryDirectory() as folder:
        mar = os.path.join(folder, "xception.mar")
        subprocess.run([os.path.join(BIN, "xception-export"), PREFIX, "--format", "mms", "-o",
                        mar], check=True)
        server = MmsServer(os.path.join(folder, "server"), {"xception": mar}).start()
        try:
            bad = send_bad_bodies(server, photo)
            kills = [kill_under_load(server, photo) for _ in range(args.kills)]
        finally:
            server.stop()
    path = os.path.join(ROOT, "ROBUSTNESS.md")
    with open(path) as f:
        kept = f.read().split(HEADER)[0].rstrip() + "\n\n"
    write_text(path, kept + section(bad, kills))
    print(section(bad, kills))
    answered_as_expected = all(got == status and after == 200
                               for _, status, got, _, after in bad)
    came_back = all(back == back and back < 120 for _, back, _ in kills)     # not NaN
    return 0 if answered_as_expected and came_back else 1


if __name__ == "__main__":
    sys.exit(main())
