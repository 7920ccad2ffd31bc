"""Progress of long work on stderr: a tqdm bar with its rate on a terminal, whole lines in
logs.

Where stderr is a terminal, ``progress`` is a plain tqdm bar (redrawn in place).  Where it is
not (CI, ``2>log``, a job scheduler's capture), redraws would pile up as one endless line, so
``LineProgress`` writes a whole line each time the work crosses another ``LINE_EVERY``
percent (and one at the end), with the same text tqdm would draw: count, elapsed, ETA, rate
and the postfix (loss, images/s).  ``XCEPTION_MX_PROGRESS=lines|bar|off`` overrides the
choice.
"""
import os
import re
import sys
import time

from tqdm import tqdm

from xception_mx.errors import make_sure

PROGRESS_ENV = "XCEPTION_MX_PROGRESS"
MODES = ("bar", "lines", "off")
LINE_EVERY = 5            # percent between two lines in a log
LINE_SECONDS = 30         # without a total: a line this often
LINE_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, " \
              "{rate_fmt}{postfix}]"
LINE_FORMAT_NO_TOTAL = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"
# what those lines look like, for readers of a log that also holds messages
LINE_PATTERN = re.compile(r"^[^:\n]+: +(\d+% )?\d+(/\d+)? \[\d[^\]]*\]$")


class LineProgress(tqdm):
    """tqdm writing a whole line every ``LINE_EVERY`` percent instead of redrawing."""

    def __init__(self, *args, **kwargs):
        self._next_percent, self._last_line, self._written = 0.0, 0.0, None
        kwargs.update(mininterval=0, miniters=1, leave=False)
        total = kwargs.get("total")
        if total is None and args and hasattr(args[0], "__len__"):
            total = len(args[0])
        kwargs.setdefault("bar_format", LINE_FORMAT if total else LINE_FORMAT_NO_TOTAL)
        super().__init__(*args, **kwargs)

    def _due(self):
        if self.total:
            return 100.0 * self.n / self.total >= self._next_percent or self.n >= self.total
        return time.monotonic() - self._last_line >= LINE_SECONDS

    def _write_line(self):
        self.fp.write(self.format_meter(**self.format_dict) + "\n")
        self.fp.flush()
        self._written, self._last_line = self.n, time.monotonic()
        if self.total:
            while self._next_percent <= 100.0 * self.n / self.total:
                self._next_percent += LINE_EVERY

    def display(self, msg=None, pos=None):
        if msg == "" or self._written == self.n or not self._due():
            return None              # tqdm clearing its bar, or nothing new to say
        self._write_line()
        return True

    def close(self):
        if not self.disable and self._written != self.n:
            self._write_line()       # the last count, whatever its percent
        super().close()


def mode():
    """``bar`` where stderr is a terminal, ``lines`` elsewhere, or what
    ``XCEPTION_MX_PROGRESS`` says."""
    chosen = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if chosen in MODES:
        return chosen
    make_sure(not chosen, "%s=%s: expected one of %s (or unset: a bar on a terminal, lines "
              "elsewhere)", PROGRESS_ENV, os.environ.get(PROGRESS_ENV), ", ".join(MODES))
    return "bar" if hasattr(sys.stderr, "isatty") and sys.stderr.isatty() else "lines"


def progress(iterable=None, total=None, desc=None, unit="image", enabled=True, step=None,
             **kwargs):
    """A progress bar (or a line every few percent, see the module doc) on stderr; none when
    the work is a single ``step`` (one batch of that many)."""
    single = step is not None and total is not None and total <= step
    chosen = mode() if enabled and not single else "off"
    kwargs.update(total=total, desc=desc, unit=unit, file=sys.stderr)
    if chosen == "bar":
        return tqdm(iterable, leave=False, **kwargs)
    return LineProgress(iterable, disable=chosen == "off", **kwargs)


def without_progress(text):
    """``text`` (a log, captured stderr) without ``LineProgress``'s lines: the messages."""
    return "\n".join(line for line in text.splitlines() if not LINE_PATTERN.match(line))
