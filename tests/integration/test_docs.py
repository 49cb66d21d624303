"""Every sample of README.md and docs/getting-started.md, run as written: shell blocks are run
command by command, C++ and CMake blocks are built (complete programs and libraries) or
compiled (fragments), YAML blocks are deployed with --strict, and the command synopsis is
checked against `serve <command> --help`.

Only what keeps the run hermetic is rewritten: the ports 8000 and 8265 become free ports
(through $SERVE_HTTP_PORT / $SERVE_DASHBOARD_PORT and in URLs), instances live in a private
$SERVE_TEMP_DIR, `cmake --install --prefix /usr/local` installs into a temp prefix (put on PATH
and CMAKE_PREFIX_PATH), and commands meant for "the serve checkout" run in a view of it whose
`build` is the build directory under test. A `serve run` (or the quickstart script) runs in
the background until it is ready, as in its own terminal, and is stopped with Ctrl-C. A
`curl` is retried until it prints the output its comment shows (a human types slower than an
asynchronous deploy). Each block must be claimed by a step below: a new sample fails the test
until it is run here. One command is not run: `bash scripts/test.sh`, the whole suite (this
test included), which is what CI runs (.ci/run)."""
import os
import re
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml

from conftest import free_port, session_pids, wait_for

SOURCE_DIR = os.environ.get("SERVE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
BUILD_DIR = os.environ.get("SERVE_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))


def read_blocks(name):
    """(language, text, line) of each fenced block of the document `name`."""
    blocks, lang, start, lines = [], None, 0, []
    with open(os.path.join(SOURCE_DIR, name)) as f:
        for number, line in enumerate(f, 1):
            if lang is None:
                m = re.match(r"^```(\w*)\s*$", line)
                if m:
                    lang, start, lines = m.group(1), number, []
            elif line.startswith("```"):
                blocks.append((lang, "".join(lines), start))
                lang = None
            else:
                lines.append(line)
    return blocks


class Docs:
    """The blocks of one document; each step claims the ones it runs."""

    def __init__(self, name):
        self.name = name
        self.blocks = read_blocks(name)
        self.claimed = set()

    def take(self, index, lang, first_line):
        assert index < len(self.blocks), f"{self.name}: expected a block #{index}"
        got_lang, text, line = self.blocks[index]
        where = f"{self.name}:{line}"
        assert got_lang == lang, f"{where}: expected a {lang} block, found {got_lang}"
        assert text.splitlines()[0].startswith(first_line), (
            f"{where}: expected a block starting with {first_line!r}:\n{text}")
        self.claimed.add(index)
        return text

    def unclaimed(self):
        return [f"{self.name}:{line} ({lang})" for i, (lang, _, line) in enumerate(self.blocks)
                if i not in self.claimed]


def commands(text):
    """The commands of a shell block: one per line, a here-document with its body."""
    out, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.search(r"<<'?(\w+)'?", line)
        if m:
            body = [line]
            while i < len(lines):
                body.append(lines[i])
                i += 1
                if body[-1].strip() == m.group(1):
                    break
            out.append("\n".join(body))
        else:
            out.append(line)
    return out


def expected_output(command):
    """The output the trailing comment of a `curl` or of a program the sample built
    (`build/caller`) shows (`curl ... # Hello world!`), or None."""
    first = command.splitlines()[0]
    if not re.match(r"curl |build/(?!bin/)\S+\s", first):
        return None
    m = re.search(r"\s#\s+(.*)$", first)
    return m.group(1).strip() if m else None


def matches(expected, out):
    """The first line of `out` is `expected`, where "..." stands for anything."""
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    lines = out.strip().splitlines()
    return bool(lines) and re.fullmatch(pattern, lines[0].strip()) is not None


class Shell:
    """Runs documented commands the way a user in a terminal would, hermetically."""

    def __init__(self, tmp, name):
        self.tmp = tmp
        self.temp_dir = str(tmp / f"{name}-serve")
        self.http_port = free_port()
        self.dashboard_port = free_port()
        self.background = []
        self.env = {k: v for k, v in os.environ.items() if k != "SERVE_BIN_DIR"}
        prefix = str(tmp.parent / "prefix")
        self.env.update({
            "SERVE_TEMP_DIR": self.temp_dir,
            "SERVE_HTTP_PORT": str(self.http_port),
            "SERVE_DASHBOARD_PORT": str(self.dashboard_port),
            "SERVE_BUILD_DIR": BUILD_DIR,
            "PATH": os.path.join(prefix, "bin") + os.pathsep + os.environ["PATH"],
            "CMAKE_PREFIX_PATH": prefix,
        })
        self.prefix = prefix

    def rewrite(self, command):
        command = command.replace("127.0.0.1:8000", f"127.0.0.1:{self.http_port}")
        command = command.replace("localhost:8000", f"localhost:{self.http_port}")
        command = command.replace("127.0.0.1:8265", f"127.0.0.1:{self.dashboard_port}")
        return command.replace("--prefix /usr/local", f"--prefix {self.prefix}")

    def run(self, command, cwd, timeout=300):
        """Runs one command; a `serve run` or the quickstart script goes to the background
        until its application is ready. Returns the output (or the ready URL)."""
        command = self.rewrite(command)
        if re.search(r"(^|/)serve run |scripts/quickstart\.sh", command):
            return self.start_background(command, cwd)
        expected = expected_output(command)
        deadline = time.monotonic() + (30 if expected else 0)
        while True:
            out = subprocess.run(["bash", "-c", command], cwd=cwd, env=self.env,
                                 capture_output=True, text=True, timeout=timeout)
            ok = out.returncode == 0 and (expected is None or matches(expected, out.stdout))
            if ok or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        assert out.returncode == 0, f"`{command}` (in {cwd}) failed:\n{out.stdout}{out.stderr}"
        if expected is not None:
            assert matches(expected, out.stdout), f"`{command}` printed {out.stdout!r}"
        return out.stdout

    def start_background(self, command, cwd):
        log_path = self.tmp / f"background{len(self.background)}.out"
        log = open(log_path, "w")
        proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=cwd, env=self.env,
                                stdout=log, stderr=subprocess.STDOUT)
        self.background.append((proc, log, log_path))

        def ready():
            text = log_path.read_text()
            m = re.search(r"is ready at (http://\S+?)/?\.\n", text)
            if m:
                return m.group(1)
            if proc.poll() is not None:
                raise AssertionError(f"`{command}` exited:\n{text}")
            return None
        return wait_for(ready, 240, interval=0.1, what=f"`{command}` to be ready")

    def stop(self):
        """Ctrl-C to every background command; nothing of its instances may be left."""
        for proc, log, log_path in self.background:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    assert proc.wait(timeout=30) == 0, log_path.read_text()
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise AssertionError("did not stop on Ctrl-C:\n" + log_path.read_text())
            log.close()
        self.background = []
        leftovers = session_pids(self.temp_dir)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert not leftovers, f"processes left behind: {leftovers}"


def checkout_view(tmp):
    """A directory that looks like the serve checkout (scripts/, build/) without writing into
    it; `build` is the build directory under test."""
    view = tmp / "checkout"
    view.mkdir()
    os.symlink(os.path.join(SOURCE_DIR, "scripts"), view / "scripts")
    os.symlink(BUILD_DIR, view / "build")
    return view


def compile_fragment(tmp, name, text, prelude=""):
    """Compiles a C++ sample that is not a whole program (syntax and templates)."""
    path = tmp / f"{name}.cc"
    path.write_text("#include <serve/serve.h>\n" + prelude + text)
    cxx = os.environ.get("CXX", "c++")
    out = subprocess.run([cxx, "-std=c++20", "-fsyntax-only",
                          "-I", os.path.join(SOURCE_DIR, "include"), str(path)],
                         capture_output=True, text=True, timeout=300)
    return name, out.returncode, out.stderr


def stub_deployment(name):
    return (f"class {name} {{\n public:\n  std::string operator()(const std::string& s) "
            f"{{ return s; }}\n}};\nSERVE_DEPLOYMENT({name});\n")


@pytest.fixture(scope="module")
def docs_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("docs")


def test_readme_samples_run_as_written(docs_tmp):
    docs = Docs("README.md")
    tmp = docs_tmp / "readme"
    tmp.mkdir()
    view = checkout_view(tmp)

    # Quick start: the script (installs, builds, serves), then curl and serve status.
    sh = Shell(tmp, "quickstart")
    try:
        for command in commands(docs.take(0, "sh", "bash scripts/quickstart.sh")):
            if command.startswith("bash scripts/test.sh"):
                # The whole suite, this test included: what CI runs (.ci/run), not again here.
                ci = open(os.path.join(SOURCE_DIR, ".ci", "run")).read()
                assert "\nbash scripts/test.sh" in ci, ci
                continue
            sh.run(command, view)
        for command in commands(docs.take(1, "sh", "curl http://127.0.0.1:8000/")):
            sh.run(command, view)
    finally:
        sh.stop()

    # A deployment: quickstart.cc and CMakeLists.txt in a project of their own, serve
    # installed from the checkout, the project built and run with the installed serve.
    app = tmp / "hello"
    app.mkdir()
    (app / "quickstart.cc").write_text(docs.take(2, "cpp", "#include <serve/serve.h>"))
    (app / "CMakeLists.txt").write_text(docs.take(3, "cmake", "cmake_minimum_required"))
    sh = Shell(tmp, "deployment")
    try:
        for command in commands(docs.take(4, "sh", "cmake --install build --prefix /usr/local")):
            sh.run(command, view)
        url = None
        for command in commands(docs.take(5, "sh", "cmake -S . -B build")):
            url = sh.run(command, app) or url
        assert requests.get(url + "/?name=Ann", timeout=10).text == "Hello Ann!"
    finally:
        sh.stop()

    # Deploy with a config file: serve start, the config, deploy, status, curl, config, stop.
    sh = Shell(tmp, "config")
    try:
        outputs = [sh.run(c, view) for c in commands(docs.take(6, "sh", "build/bin/serve start"))]
        assert "greeter:build" in outputs[-2]  # serve config
        assert "Stopped serve." in outputs[-1]
    finally:
        sh.stop()

    assert not docs.unclaimed(), f"samples not run by {__file__}: {docs.unclaimed()}"


def test_getting_started_samples_run_as_written(docs_tmp):
    docs = Docs("docs/getting-started.md")
    readme = Docs("README.md")
    tmp = docs_tmp / "getting-started"
    tmp.mkdir()
    view = checkout_view(tmp)

    # C++ fragments compile (in parallel, while the rest runs).
    fragments = [
        ("greeter", docs.take(3, "cpp", "#include <serve/serve.h>"), ""),
        ("autoscaling", docs.take(4, "cpp", "serve::AutoscalingConfig Autoscaling()"),
         stub_deployment("Model")),
        ("composition", docs.take(6, "cpp", "class LanguageClassifier"),
         stub_deployment("SpanishResponder") + stub_deployment("FrenchResponder")),
        ("streaming", docs.take(8, "cpp", "class Counter"), ""),
        ("batching", docs.take(9, "cpp", "#include <serve/batching.h>"), ""),
    ]
    pool = ThreadPoolExecutor(max_workers=2)
    compiled = [pool.submit(compile_fragment, tmp, *f) for f in fragments]

    # Build and run.
    sh = Shell(tmp, "build-and-run")
    try:
        for command in commands(docs.take(0, "sh", "bash scripts/install-deps.sh")):
            sh.run(command, view)
    finally:
        sh.stop()

    # The command synopsis: every option it shows exists.
    synopsis = docs.take(1, "text", "serve start")
    for entry in re.split(r"\n(?=serve )", synopsis.strip()):
        command = entry.split()[1]
        help_text = subprocess.run([os.path.join(BUILD_DIR, "bin", "serve"), command, "--help"],
                                   capture_output=True, text=True, timeout=30).stdout
        for flag in set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", entry)):
            assert re.search(rf"(^|[ ,]){re.escape(flag)}([ ,=]|$)", help_text, re.M), (
                f"`serve {command}` has no {flag}:\n{help_text}")

    # Config files: deployed with --strict to an instance (the greeter library placed in the
    # working_dir the config names), then the autoscaling example (validated; its library is
    # not built, so it ends DEPLOY_FAILED).
    sh = Shell(tmp, "configs")
    try:
        out = sh.run("build/bin/serve start", view)  # no --app-dir: the working_dir has it
        rest = re.search(r"REST API:\s+(http://\S+)", out).group(1)
        http = re.search(r"HTTP proxy:\s+(http://\S+)", out).group(1)
        project = tmp / "configs"
        (project / "app").mkdir(parents=True)
        shutil.copy(os.path.join(BUILD_DIR, "examples", "greeter", "libgreeter.so"), project / "app")
        (project / "config.yaml").write_text(docs.take(2, "yaml", "http_options:"))
        out = subprocess.run([os.path.join(BUILD_DIR, "bin", "serve"), "deploy", "config.yaml",
                              "--strict", "-a", rest], cwd=project, env=sh.env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "Warning" not in out.stderr, out.stdout + out.stderr
        wait_for(lambda: requests.get(http + "/greet/?name=Ann", timeout=5).json()["message"]
                 == "Hola, Ann?", 60, what="the config's greeter to answer")
        (project / "autoscaling.yaml").write_text(docs.take(5, "yaml", "applications:"))
        out = subprocess.run([os.path.join(BUILD_DIR, "bin", "serve"), "deploy",
                              "autoscaling.yaml", "--strict", "-a", rest], cwd=project,
                             env=sh.env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "Warning" not in out.stderr, out.stdout + out.stderr
        sh.run("build/bin/serve stop", view)
    finally:
        sh.stop()

    # Outside this tree: install, a project with the README's quickstart.cc and caller.cc,
    # build it, serve run, and the caller program.
    project = tmp / "myapp"
    project.mkdir()
    (project / "quickstart.cc").write_text(readme.take(2, "cpp", "#include <serve/serve.h>"))
    (project / "caller.cc").write_text(docs.take(7, "cpp", "#include <serve/client.h>"))
    (project / "CMakeLists.txt").write_text(docs.take(12, "cmake", "cmake_minimum_required"))
    sh = Shell(tmp, "myapp")
    try:
        for command in commands(docs.take(11, "sh", "cmake --install build --prefix /usr/local")):
            sh.run(command, view)
        for command in commands(docs.take(13, "sh", "cmake -S . -B build")):
            sh.run(command, project)
    finally:
        sh.stop()

    # The HTTPS sample needs certificate files: test_tls.py runs these options for real; here
    # the sample names exactly those fields.
    https = yaml.safe_load(docs.take(10, "yaml", "http_options:"))["http_options"]
    assert sorted(k for k in https if k.startswith("ssl_")) == [
        "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_keyfile_password"]

    for future in compiled:
        name, rc, errors = future.result()
        assert rc == 0, f"the {name} sample does not compile:\n{errors}"
    pool.shutdown()
    assert not docs.unclaimed(), f"samples not run by {__file__}: {docs.unclaimed()}"
