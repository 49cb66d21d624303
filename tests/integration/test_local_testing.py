"""The unit-test example of docs/testing.md, built out of tree as written (its C++ and CMake
blocks) against the installed SDK (find_package(serve) -> serve::testing), and run with ctest:
local testing mode needs no serve process."""
import os
import subprocess

from conftest import cmake_build
from test_docs import read_blocks

BUILD_DIR = os.environ.get("SERVE_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))


def test_docs_testing_example_builds_out_of_tree_and_passes(tmp_path):
    blocks = read_blocks("docs/testing.md")
    cpp = [text for lang, text, _ in blocks if lang == "cpp"]
    cmake = [text for lang, text, _ in blocks if lang == "cmake"]
    assert len(cpp) == 1 and len(cmake) == 1, "docs/testing.md: one cpp and one cmake block"

    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", str(prefix)], check=True,
                   capture_output=True, timeout=120)
    assert (prefix / "lib" / "libserve_testing.so").exists()
    assert (prefix / "include" / "serve" / "testing.h").exists()

    src = tmp_path / "classifier"
    src.mkdir()
    (src / "classifier_test.cc").write_text(cpp[0])
    (src / "CMakeLists.txt").write_text(cmake[0])
    build = tmp_path / "build"
    cmake_build(src, build, prefix)
    # No serve process may be involved: the test runs with no serve binary on PATH.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")}
    env["PATH"] = "/usr/bin:/bin"
    run = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 tests failed out of 3" in run.stdout, run.stdout
