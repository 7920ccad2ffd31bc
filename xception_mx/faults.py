"""Named fault-injection points, for tests; inert unless asked for.

With ``XCEPTION_MX_KILL_POINT=NAME`` in the environment, the process that
reaches ``fault_point(NAME)`` writes ``PID NAME`` to the file named by
``XCEPTION_MX_KILL_MARK`` and waits there (up to a minute) to be killed.  A
kill test thus knows that the process was alive, and exactly where, when the
signal landed.  The points:

- any checkpoint writer (``checkpoint.write_checkpoint``):
  ``checkpoint:before-temp-files``, ``checkpoint:params-written`` (a
  temporary params file exists, not the others), ``checkpoint:journal-written``
  (the commit point passed, nothing renamed yet),
  ``checkpoint:first-rename-done``, ``checkpoint:committed``;
- a fine-tuning run: ``epoch-N:checkpoint-written`` (epoch N complete on
  disk, epoch N+1 not started).
"""
import os
import time

KILL_POINT = "XCEPTION_MX_KILL_POINT"
KILL_MARK = "XCEPTION_MX_KILL_MARK"
WAIT_SECONDS = 60


def fault_point(name):
    """Stop here to be killed when the environment names this point."""
    if os.environ.get(KILL_POINT) != name:
        return
    mark = os.environ[KILL_MARK]
    with open(mark + ".tmp", "w") as f:
        f.write("%d %s\n" % (os.getpid(), name))
    os.replace(mark + ".tmp", mark)
    time.sleep(WAIT_SECONDS)
