"""An application built outside the tree against the installed SDK (find_package(serve))."""
import os
import subprocess

from conftest import get

BUILD_DIR = os.environ.get("SERVE_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))

APP_SOURCE = r'''
#include <serve/serve.h>

class Shouter {
 public:
  explicit Shouter(std::string suffix) : suffix_(std::move(suffix)) {}
  std::string operator()(const serve::HttpRequest& request) {
    std::string word = request.query("word", "hey");
    for (char& c : word) c = static_cast<char>(toupper(c));
    return word + suffix_;
  }
 private:
  std::string suffix_;
};
SERVE_DEPLOYMENT(Shouter);

serve::Application build(const serve::Args& args) {
  return serve::deployment<Shouter>().bind(args.get("suffix", "!"));
}
SERVE_APP_BUILDER(build);
'''

APP_CMAKE = '''
cmake_minimum_required(VERSION 3.25)
project(shouter LANGUAGES CXX)
find_package(serve 0.1 REQUIRED)
serve_add_app(shouter shouter.cc)
add_executable(caller caller.cc)
target_link_libraries(caller PRIVATE serve::client)
'''

# A program outside the cluster, built against the installed client library.
CALLER_SOURCE = r'''
#include <serve/client.h>
#include <serve/http.h>

#include <iostream>

int main(int argc, char** argv) {
  serve::ClientOptions options;
  options.temp_dir = argv[1];
  serve::connect(options);
  serve::HttpRequest req;
  req.query_string = "word=client";
  std::cout << serve::get_app_handle("default").remote<std::string>(req).result(10.0) << std::endl;
  return 0;
}
'''


def test_out_of_tree_app_builds_and_runs_with_installed_serve(tmp_path, serve_run):
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", str(prefix)], check=True,
                   capture_output=True, timeout=120)
    for rel in ["bin/serve", "bin/serve-agent", "bin/serve-controller", "bin/serve-proxy",
                "bin/serve-replica", "include/serve/serve.h", "include/serve/client.h",
                "lib/libserve_client.so", "lib/cmake/serve/serveConfig.cmake"]:
        assert (prefix / rel).exists(), rel

    src = tmp_path / "shouter"
    src.mkdir()
    (src / "shouter.cc").write_text(APP_SOURCE)
    (src / "CMakeLists.txt").write_text(APP_CMAKE)
    (src / "caller.cc").write_text(CALLER_SOURCE)
    build = tmp_path / "shouter-build"
    cfg = subprocess.run(["cmake", "-S", str(src), "-B", str(build), "-G", "Ninja",
                          f"-DCMAKE_PREFIX_PATH={prefix}"], capture_output=True, text=True, timeout=120)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    out = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (build / "libshouter.so").exists()

    # Run with the installed binaries (not the build tree's).
    env = {"SERVE_BIN_DIR": str(prefix / "bin")}
    import conftest
    old = conftest.SERVE
    conftest.SERVE = str(prefix / "bin" / "serve")
    try:
        run = serve_run("shouter:build", "suffix=?!", app_dir=str(build), env=env)
        url = run.wait_ready()
        r = get(url + "/?word=hello")
        assert r.status_code == 200
        assert r.text == "HELLO?!"
        # The installed client library calls the same application from outside the cluster.
        out = subprocess.run([str(build / "caller"), run.temp_dir], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.strip() == "CLIENT?!"
        assert run.stop() == 0
    finally:
        conftest.SERVE = old
