"""The manual's blocks run verbatim, in order, in a fresh copy of the repository.

Every ```sh block of README.md and then of the ``docs/`` pages (in ``PAGES`` order) is run
with bash (``set -eo pipefail``), and every ```python block with the copy's Python, in a copy
of the tracked files, one block after the other, as a reader following the manual would: the
quick start's ``make demo`` sets the copy up (``make setup`` for real, into the copy's own
``.venv``), the walk-throughs use what the earlier blocks wrote.  What stands in for a fresh
machine:

- the copy's ``.venv`` is created empty, with a ``.pth`` line pointing at this venv's
  site-packages, so that ``make setup`` and the manual's ``pip install`` lines find the pinned
  packages installed (instead of fetching 1.8 GB again) and install the toolkit from the copy;
  ``horovodrun``, a script of the Horovod build, comes from this venv's ``bin``;
- ``HOME`` is an empty folder (no ``~/.keras`` downloads), and so are ``TMPDIR`` and ``TEMP``
  (where Multi Model Server keeps its pid file and sockets);
- ``XCEPTION_MX_AUTO=rules``: ``auto`` picks by the vendor rules, not by measuring each
  checkpoint shape (seconds to a minute each; ``tests/serving/test_auto_tuning.py`` tests the
  measurement).

Not run, and why: ``make test`` (it runs this very suite; ``.ci/run`` runs it), and blocks marked
``<!-- readme-test: other-machines -->`` (ssh hosts, GPUs).  Their commands' flags are still
checked by ``test_every_readme_command_has_flags_its_tool_accepts``, with every other block's.
"""
import configparser
import importlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
# the manual, in the order a reader follows it (later pages use what earlier ones wrote)
PAGES = ["README.md"] + ["docs/%s.md" % name for name in (
    "install", "conversion", "own-model", "parity", "predict", "evaluate", "finetune",
    "distributed", "deploy", "api", "robustness", "design", "testing")]
README_LINES = 150
TAG = re.compile(r"<!--\s*readme-test:\s*(\S+)\s*-->")
SUITE_COMMAND = "make test"
BLOCK_TIMEOUT = 900
SHELL_LANGS = ("sh", "bash", "shell", "console")


def readme_blocks(text):
    """Every fenced block: dicts with ``lang``, ``tag`` (of a readme-test comment on the line
    before), ``code`` and ``line`` (1-based line of the opening fence)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^```\s*(\S*)", lines[i])
        if not fence:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        previous = next((line for line in reversed(lines[:i]) if line.strip()), "")
        tag = TAG.search(previous)
        blocks.append({"lang": fence.group(1), "tag": tag.group(1) if tag else None,
                       "code": "\n".join(lines[i + 1:j]) + "\n", "line": i + 1})
        i = j + 1
    return blocks


def commands(code):
    """The block's simple commands as token lists: backslash-continued lines joined, comments
    dropped, lines cut at ``|``, ``&&``, ``||`` and ``;``, redirections left out."""
    found = []
    for line in code.replace("\\\n", " ").splitlines():
        line = re.sub(r"(?<=\s)\d+(?=>)", "", line)     # 2> file: the descriptor goes too
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        command, tokens = [], list(lexer)
        while tokens:
            token = tokens.pop(0)
            if token in ("|", "||", "&&", ";", "&"):
                found.append(command)
                command = []
            elif token in (">", ">>", "<", "2>"):
                tokens.pop(0)
            else:
                command.append(token)
        found.append(command)
    return [command for command in found if command]


def console_scripts():
    """``{command name: module}`` from setup.cfg's entry points."""
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    entries = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict((name.strip(), target.split(":")[0].strip())
                for name, target in (entry.split("=") for entry in entries))


def toolkit_invocations(tokens, tools):
    """``(tool, args)`` for every toolkit command in one command line: the line's own, the
    command after ``xception-launch ... --``, the program ``horovodrun`` runs."""
    found = []
    for k, token in enumerate(tokens):
        if token in tools:
            rest = tokens[k + 1:]
            if token == "xception-launch" and "--" in rest:
                found.append((token, rest))
                found.extend(toolkit_invocations(rest[rest.index("--") + 1:], tools))
            else:
                found.append((token, rest))
            break
    return found


def page_blocks(page):
    """``readme_blocks`` of one page, each with its ``page``."""
    with open(os.path.join(ROOT, page)) as f:
        return [dict(block, page=page) for block in readme_blocks(f.read())]


@pytest.fixture(scope="module")
def blocks():
    return [block for page in PAGES for block in page_blocks(page)]


def test_the_manual_is_every_page_of_docs_and_the_readme_is_a_front_page():
    pages = sorted("docs/" + n for n in os.listdir(os.path.join(ROOT, "docs"))
                   if n.endswith(".md"))
    assert sorted(PAGES[1:]) == pages
    with open(README) as f:
        front = f.read()
    assert len(front.splitlines()) <= README_LINES
    for page in pages:
        assert "](%s)" % page in front, "README.md does not link %s" % page


def test_every_relative_link_of_the_manual_leads_to_a_file():
    for page in PAGES:
        with open(os.path.join(ROOT, page)) as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            path = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), target))
            assert os.path.exists(path), "%s links %s, which does not exist" % (page, target)


def test_every_readme_command_has_flags_its_tool_accepts(blocks):
    tools = console_scripts()
    checked = 0
    for block in blocks:
        if block["lang"] not in SHELL_LANGS:
            continue
        for tokens in commands(block["code"]):
            for tool, args in toolkit_invocations(tokens, tools):
                parser = importlib.import_module(tools[tool]).build_parser()
                try:
                    parser.parse_args(args)
                except SystemExit as stop:
                    pytest.fail("%s line %d: %s %s: its parser refuses these arguments "
                                "(exit %s)" % (block["page"], block["line"], tool,
                                               " ".join(args), stop.code))
                checked += 1
    assert checked >= 15, "only %d toolkit commands found in the manual's shell blocks" % checked


def test_commands_outside_shell_blocks_are_usage_lines(blocks):
    """A command line in a plain block would escape the run below: plain blocks hold usage
    lines and output only."""
    tools = set(console_scripts()) | {"make", "pip", "python", "horovodrun"}
    for block in blocks:
        if block["lang"] in SHELL_LANGS or block["lang"] == "python":
            continue
        for line in block["code"].splitlines():
            words = line.split()
            assert not (words and words[0] in tools), (
                "%s line %d: a command in a ```%s block; make it ```sh (it is then "
                "run by test_manual_blocks_run_verbatim_in_a_fresh_copy) or a "
                "'usage:' line" % (block["page"], block["line"], block["lang"]))


def test_the_suite_command_is_what_ci_runs(blocks):
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert ci[-1] == SUITE_COMMAND
    first = [b for b in blocks if b["lang"] in SHELL_LANGS][0]
    assert first["page"] == "README.md"
    assert SUITE_COMMAND in [" ".join(t) for t in commands(first["code"])]


def tracked_files():
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [p for p in listed.splitlines() if os.path.isfile(os.path.join(ROOT, p))]


def fresh_copy(dest):
    """The repository's files (as a clone has them) in DEST, as a git repository of one
    commit, with an empty venv that sees this venv's packages."""
    for path in tracked_files():
        os.makedirs(os.path.join(dest, os.path.dirname(path)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, path), os.path.join(dest, path))
    git = ["git", "-c", "user.name=readme", "-c", "user.email=readme@test"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run(git + args, cwd=dest, check=True, capture_output=True)
    venv = os.path.join(dest, ".venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    site = subprocess.run([os.path.join(venv, "bin", "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    with open(os.path.join(site, "zz_pinned_packages.pth"), "w") as f:
        f.write("\n".join(sorted(ours)) + "\n")
    return venv


def run_block(command, cwd, env, stdin=None):
    """COMMAND (bash -eo pipefail -c CODE, or python - with the code on stdin) in its own
    process group (killed whole on timeout)."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(stdin, timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return None, output
    finally:                        # what the block left running (a server it failed to stop)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return process.returncode, output


@pytest.mark.slow
def test_manual_blocks_run_verbatim_in_a_fresh_copy(blocks, tmp_path, request):
    copy, home = str(tmp_path / "xception-mx"), str(tmp_path / "home")
    os.makedirs(home)
    venv = fresh_copy(copy)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV",
                                                                   "XCEPTION_MX_"))}
    # Multi Model Server's pid file and sockets; short: under a test's long tmp_path, a
    # socket path there (multiprocessing's, for the DataLoader) passes AF_UNIX's 108 bytes
    tmp = tempfile.mkdtemp(prefix="readme-")
    request.addfinalizer(lambda: shutil.rmtree(tmp, ignore_errors=True))
    env.update(HOME=home, TMPDIR=tmp, TEMP=tmp, XCEPTION_MX_AUTO="rules", VIRTUAL_ENV=venv,
               PATH=os.pathsep.join([os.path.join(venv, "bin"), os.path.dirname(sys.executable),
                                     env["PATH"]]))
    ran = 0
    for block in blocks:
        if block["tag"] == "other-machines":
            continue
        started = time.time()
        if block["lang"] in SHELL_LANGS:
            code = "\n".join(line for line in block["code"].splitlines()
                             if line.split("#")[0].strip() != SUITE_COMMAND) + "\n"
            status, output = run_block(["bash", "-eo", "pipefail", "-c", code], copy, env)
        elif block["lang"] == "python":
            status, output = run_block([os.path.join(venv, "bin", "python"), "-"], copy, env,
                                       block["code"])
        else:
            continue
        assert status == 0, "%s line %d: the block %s:\n%s\n--- output (end) ---\n%s" % (
            block["page"], block["line"], "timed out after %d s" % BLOCK_TIMEOUT
            if status is None else "exited %d" % status, block["code"], output[-4000:])
        ran += 1
        print("%6.1f s  %s line %d" % (time.time() - started, block["page"], block["line"]))
    assert ran >= 20
    # the toolkit the blocks ran is the copy's, installed by its own make setup
    where = subprocess.run([os.path.join(venv, "bin", "python"), "-c",
                            "import xception_mx; print(xception_mx.__file__)"],
                           capture_output=True, text=True, env=env, cwd=home,
                           check=True).stdout
    assert where.startswith(copy), where
    # everything the walk-throughs wrote is ignored by git: nothing to commit by mistake
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=copy,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", "files the manual's commands write that .gitignore does not " \
                         "cover:\n" + status
