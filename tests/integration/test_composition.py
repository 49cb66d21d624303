"""DeploymentHandle composition, chaining, remote errors and back-pressure."""
import os
import threading

import requests

from conftest import EXAMPLES_DIR, TEST_APP_DIR, get, wait_for

COMPOSITION = os.path.join(EXAMPLES_DIR, "composition")


def test_language_routing_with_coroutine_handler(serve_run):
    run = serve_run("composition:translate", app_dir=COMPOSITION)
    url = run.wait_ready()
    assert get(url + "/?lang=es&name=Ann").text == "Hola Ann!"
    assert get(url + "/?lang=fr&name=Bo").text == "Bonjour Bo!"
    r = get(url + "/?lang=de")
    assert r.status_code == 400
    deps = run.status()["applications"]["default"]["deployments"]
    assert set(deps) == {"LanguageClassifier", "SpanishResponder", "FrenchResponder"}
    assert all(d["status"] == "HEALTHY" for d in deps.values())
    # Only the ingress is routed over HTTP.
    assert get(url + "/-/routes").json() == {"/": "default"}


def test_chaining_named_methods_and_remote_errors(serve_run):
    run = serve_run("composition:arithmetic_builder", "increment=1", "factor=2",
                    app_dir=COMPOSITION)
    url = run.wait_ready()
    assert get(url + "/?x=3").json() == {"result": 8, "factor": 2}
    # Concurrent calls all resolve (two Multiplier replicas share the load).
    results = [None] * 20

    def call(i):
        results[i] = get(url + f"/?x={i}").json()["result"]
    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [(i + 1) * 2 for i in range(20)]
    # A downstream exception arrives with its type and message.
    assert get(url + "/?x=-5").json() == {"error": "domain_error", "message": "negative input -4"}
    # The request id of the HTTP request is propagated to the downstream calls' logs.
    get(url + "/?x=1", headers={"X-Request-ID": "chain-req-7"})
    logs = os.path.join(run.session_dir(), "logs", "serve")

    def logged():
        return "chain-req-7" in "".join(open(os.path.join(logs, f)).read() for f in os.listdir(logs)
                                        if f.startswith("replica_default_Multiplier"))
    wait_for(logged, 10, what="the request id in the downstream replica's log")


def test_load_shedding_example_rejects_with_503(serve_run):
    """examples/load_shedding: 2 running + 2 queued; the rest of a burst of 8 gets 503."""
    run = serve_run("load_shedding:app", app_dir=os.path.join(EXAMPLES_DIR, "load_shedding"))
    url = run.wait_ready()
    codes = []
    lock = threading.Lock()

    def call():
        r = requests.get(url + "/?ms=1500", timeout=30)
        with lock:
            codes.append(r.status_code)
    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] * 4 + [503] * 4, codes


def test_max_queued_requests_sheds_load_with_503(serve_run):
    run = serve_run("testapps:echo_builder", "max_ongoing=1", "max_queued=1",
                    app_dir=TEST_APP_DIR)
    url = run.wait_ready()
    codes = []
    lock = threading.Lock()

    def call():
        r = requests.get(url + "/?sleep_ms=1500", timeout=30)
        with lock:
            codes.append((r.status_code, r.text))
    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [c for c, _ in codes if c == 200]
    shed = [t for c, t in codes if c == 503]
    assert len(ok) >= 1 and len(shed) >= 1, codes
    assert all("Request dropped due to backpressure" in t for t in shed)
    assert len(ok) + len(shed) == 6
    logs = os.path.join(run.session_dir(), "logs", "serve")
    proxy_log = [os.path.join(logs, f) for f in os.listdir(logs) if f.startswith("proxy_")][0]
    wait_for(lambda: "max_queued_requests=1" in open(proxy_log).read(), 10,
             what="the back-pressure warning in the proxy log")
