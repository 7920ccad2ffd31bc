"""A real Multi Model Server on 127.0.0.1, started by its own command line with a folder of its
own (config, model store, logs, and the TMPDIR where MMS keeps its pid file and sockets, so
that servers never meet), for the serving tests and ``bench/serving.py``."""
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
from PIL import Image

BIN = os.path.dirname(sys.executable)
START_TIMEOUT = 240
EXPECT_CONTINUE_ABOVE = 1 << 20     # bodies above 1 MB are sent as curl sends them
WORKER = "model_service_worker.py"


def free_port():
    """A port nothing listens on, below 32767: MMS refuses higher ones ('Invalid port
    number'), and the kernel's own picks are above it."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 32767)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def java_missing():
    """Why Multi Model Server cannot run here, or None."""
    if shutil.which("java") is None:
        return "no java: Multi Model Server needs Java 17 (make setup-serving installs " \
               "Debian's openjdk-17-jre-headless)"
    if not os.path.exists(os.path.join(BIN, "multi-model-server")):
        return "no multi-model-server in %s: make setup-serving" % BIN
    return None


class MmsServer:
    """``multi-model-server --start --foreground`` serving ``models`` (``{name: .mar path}``),
    one worker each."""

    def __init__(self, folder, models, env=None):
        self.folder, self.models = str(folder), dict(models)
        self.tmp, self.store = os.path.join(self.folder, "tmp"), os.path.join(self.folder, "store")
        for path in (self.tmp, self.store):
            os.makedirs(path, exist_ok=True)
        self.port = self.management = free_port()
        while self.management == self.port:
            self.management = free_port()
        self.env = dict(os.environ, TMPDIR=self.tmp, TEMP=self.tmp, **(env or {}))
        self.env["PATH"] = BIN + os.pathsep + self.env["PATH"]   # the workers' python3
        # MMS starts its workers with one OpenMP thread unless told: one worker, every core
        self.env.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
        self.process = None

    def command(self, *args):
        return [os.path.join(BIN, "multi-model-server")] + list(args)

    def start(self):
        config = os.path.join(self.folder, "config.properties")
        with open(config, "w") as f:
            f.write("inference_address=http://127.0.0.1:%d\nmanagement_address=http://127.0.0.1:"
                    "%d\ndefault_workers_per_model=1\n" % (self.port, self.management))
        for name, mar in self.models.items():
            shutil.copyfile(mar, os.path.join(self.store, name + ".mar"))
        models = ["%s=%s.mar" % (name, name) for name in self.models]
        self.log = open(os.path.join(self.folder, "server.log"), "w")
        self.process = subprocess.Popen(
            self.command("--start", "--foreground", "--mms-config", config, "--model-store",
                         self.store, "--models", *models),
            cwd=self.folder, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + START_TIMEOUT
        try:
            while not all(self.ready(name) for name in self.models):
                if self.process.poll() is not None or time.time() > deadline:
                    raise RuntimeError("MMS did not start: see %s" % self.log.name)
                time.sleep(1)
        except BaseException:
            self.stop()
            raise
        return self

    def register(self, name, archive, batch_size, max_batch_delay):
        """Serve the .mar ``archive`` (a path) as ``name`` too, with MMS's batching: up to
        ``batch_size`` requests waiting up to ``max_batch_delay`` ms go to the worker as one
        batch.  Waits until its worker is up."""
        shutil.copyfile(archive, os.path.join(self.store, name + ".mar"))
        status, body, _ = self.request(
            "POST", "/models?url=%s.mar&model_name=%s&batch_size=%d&max_batch_delay=%d"
            "&initial_workers=1&synchronous=true" % (name, name, batch_size, max_batch_delay),
            port=self.management)
        if status != 200:
            raise RuntimeError("MMS did not register %s: %s" % (name, body))
        self.models[name] = archive
        deadline = time.time() + START_TIMEOUT
        while not self.ready(name) and time.time() < deadline:
            time.sleep(1)

    def ready(self, name):
        """Whether the model's worker is up (MMS's management API)."""
        try:
            status, body, _ = self.request("GET", "/models/%s" % name, port=self.management)
        except OSError:
            return False
        if status != 200:
            return False
        described = json.loads(body)
        workers = (described[0] if isinstance(described, list) else described)["workers"]
        return bool(workers) and all(w["status"] == "READY" for w in workers)

    def request(self, method, path, body=None, content_type=None, port=None, timeout=120):
        """``(status, body text, headers)`` of one HTTP request."""
        url = "http://127.0.0.1:%d%s" % (port or self.port, path)
        request = urllib.request.Request(url, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, answer.read().decode(), dict(answer.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(), dict(error.headers)

    def predict(self, name, body, content_type="image/jpeg"):
        if len(body) > EXPECT_CONTINUE_ABOVE:
            return self.post_expecting_continue("/predictions/%s" % name, body, content_type)
        return self.request("POST", "/predictions/%s" % name, body, content_type)

    def post_expecting_continue(self, path, body, content_type):
        """A large body as curl sends one: headers with ``Expect: 100-continue`` first, the
        body only after the server's ``100 Continue`` (MMS answers a body past its
        ``max_request_size`` with 413 at once).  ``(status, body text, headers)``."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=120) as conn:
            conn.sendall(("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\n"
                          "Content-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                          % (path, content_type, len(body))).encode())
            answer = conn.makefile("rb")
            status_line = answer.readline()
            if b" 100 " in status_line:
                answer.readline()                          # the interim answer's blank line
                conn.sendall(body)
                status_line = answer.readline()
            headers = {}
            for line in iter(answer.readline, b"\r\n"):
                key, _, value = line.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            text = answer.read(int(headers.get("content-length", 0))).decode()
            return int(status_line.split()[1]), text, headers

    def workers(self):
        """The Python processes that run the models (MMS forks one per worker from a
        launcher of the same command line)."""
        found = []
        for process in psutil.Process(self.process.pid).children(recursive=True):
            try:
                cmdline = " ".join(process.cmdline())
                parent = " ".join(process.parent().cmdline())
            except psutil.Error:
                continue
            if WORKER in cmdline and WORKER in parent:
                found.append(process)
        return found

    def stop(self):
        """``multi-model-server --stop``, as a user stops it; the processes it started gone.
        Returns the command's result."""
        if self.process is None:
            return None
        tree = []
        if self.process.poll() is None:
            launcher = psutil.Process(self.process.pid)
            tree = [launcher] + launcher.children(recursive=True)
        result = subprocess.run(self.command("--stop"), cwd=self.folder, env=self.env,
                                capture_output=True, text=True, timeout=60)
        _, alive = psutil.wait_procs(tree, timeout=30)
        for process in alive:
            process.kill()
        self.process.wait(timeout=30)
        self.log.close()
        self.process = None
        return result, alive

    def log_text(self):
        """MMS's log, where its workers' output goes too."""
        with open(os.path.join(self.folder, "logs", "mms_log.log"), errors="replace") as f:
            return f.read()

    def listening(self):
        """The server's ports something still listens on."""
        busy = []
        for port in (self.port, self.management):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    busy.append(port)
        return busy


def png_bomb():
    """A 20000x20000 gray PNG of 390 KB: 400 million pixels, past Pillow's limit."""
    out = io.BytesIO()
    Image.new("L", (20000, 20000)).save(out, "PNG", optimize=True)
    return out.getvalue()


def bad_bodies(photo):
    """``{case: (body, content type, status, what the error message says)}`` for a JPEG
    ``photo``'s bytes; the 50 MB body gets MMS's own 413, which has no JSON (``None``)."""
    return {"not an image": (b"hello, server", "image/jpeg", 400, "not an image format"),
            "truncated JPEG": (photo[:len(photo) // 2], "image/jpeg", 400, "truncated JPEG"),
            "empty": (b"", "image/jpeg", 400, "empty"),
            "wrong content type": (photo, "text/plain", 415, "content type text/plain"),
            "JSON that is not": (b"{not json", "application/json", 415,
                                 "content type application/json"),
            "decompression bomb": (png_bomb(), "image/png", 413, "exceeds limit"),
            "50 MB": (os.urandom(50 << 20), "image/jpeg", 413, None)}


BAD_BODY_CASES = ("not an image", "truncated JPEG", "empty", "wrong content type",
                  "JSON that is not", "decompression bomb", "50 MB")
