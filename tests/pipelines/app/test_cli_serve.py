"""`alphaops serve` as a real process on a real registry: keys, limits, the alias watcher (a rollback
and a promote reach the running server), and the prediction log that the canary decision reads.

One server runs for the module (its own ALPHAOPS_HOME); the tests run in file order.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from registry import CHALLENGER, CHAMPION, Registry
from serving.router import bucket

ROOT = Path(__file__).resolve().parents[3]
CLI = Path(sys.executable).with_name("alphaops")
NAME = "default.direction_h1.SERVE"
SHARE = 0.5
FEATURES = ["a", "b", "c", "d"]


def _identity_arm(who: str) -> str:
    return "challenger" if bucket(hashlib.sha256(f"{who}\0".encode()).hexdigest()) < SHARE else "champion"


# Callers chosen so that one lands on each arm (the server's rule, computed here the same way).
_CANDIDATES = [f"desk-{i}" for i in range(20)]
CHAMPION_CALLER = next(c for c in _CANDIDATES if _identity_arm(c) == "champion")
CHALLENGER_CALLER = next(c for c in _CANDIDATES if _identity_arm(c) == "challenger")
KEYS = {CHAMPION_CALLER: "champion-side-key-0001", CHALLENGER_CALLER: "challenger-side-key-01"}


def _bundle(directory: Path, seed: int, n_estimators: int) -> Path:
    from models.bundle import classifier_schema, write_bundle
    from models.families.direction import DirectionClassifier

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(4000, 4))
    y = (X[:, 0] + rng.normal(size=4000) > 0).astype(int)
    model = DirectionClassifier(n_estimators=n_estimators, num_leaves=31, min_child_samples=5,
                                random_state=seed).fit(X, y)
    schema = classifier_schema(model={"name": "", "version": ""}, feature_set_version="t", features=FEATURES,
                               class_names=["down", "up"])
    return write_bundle(directory, model.to_onnx(), schema)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAOPS_")}
    env.update(ALPHAOPS_HOME=str(home), ALPHAOPS_TENANT="default", PYTHONUNBUFFERED="1", **extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout: float, step: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = cond()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(step)
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    import mlflow

    from pipelines.config import get_settings

    home = tmp_path_factory.mktemp("serve-home")
    settings = get_settings(home=home)
    mlflow.set_tracking_uri(settings.tracking_uri)
    exp = mlflow.create_experiment("serve-test", artifact_location=(home / "art").as_uri())
    registry = Registry(settings.tracking_uri, tenant="default")
    versions = []
    # v1: small champion; v2: a far slower challenger (the canary must roll it back); v3: small again
    for seed, trees in ((1, 5), (2, 1500), (3, 7)):
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_artifacts(str(_bundle(home / f"b{seed}", seed, trees)), "bundle")
        v = registry.register(NAME, run.info.run_id, tags={"family": "direction", "spec": "direction_h1",
                                                           "symbol": "SERVE", "timeframe": "1m"})
        registry.tag(NAME, v, validation_status="validated")
        versions.append(v)
    registry.set_challenger(NAME, versions[0], reason="first")
    registry.promote(NAME, reason="first")
    registry.set_challenger(NAME, versions[1], reason="canary")

    port = _free_port()
    env = _env(home, ALPHAOPS_SERVE_API_KEYS=",".join(f"{k}:{v}" for k, v in KEYS.items()),
               ALPHAOPS_CANARY_SHARE=str(SHARE), ALPHAOPS_SERVE_WATCH_INTERVAL_SECONDS="0.5",
               ALPHAOPS_SERVE_MAX_BODY_BYTES="1000000")
    log_path = home / "serve.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([str(CLI), "serve", "direction_h1.SERVE", "--port", str(port)], cwd=ROOT,
                                env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        up = _wait(lambda: httpx.get(f"{base}/health", timeout=2).status_code == 200, timeout=180)
        assert up, f"serve did not come up:\n{log_path.read_text()}"
        yield {"base": base, "home": home, "env": env, "registry": registry, "versions": versions, "proc": proc,
               "log": log_path}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def _predict(base: str, who: str, row: list[float], **kw) -> httpx.Response:
    return httpx.post(f"{base}/predict", json={"features": dict(zip(FEATURES, row))},
                      headers={"X-API-Key": KEYS[who]}, timeout=10, **kw)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_keys_and_a_40_mb_body(server) -> None:
    base = server["base"]
    health = httpx.get(f"{base}/health", timeout=5).json()  # open without a key
    assert health["auth"] == "api-keys" and health["champion"]["version"] == server["versions"][0]
    assert health["champion"]["sealed_by"] == "train"
    assert httpx.post(f"{base}/predict", json={"features": [0.1] * 4}, timeout=5).status_code == 401
    before = _rss_kb(server["proc"].pid)
    body = b'{"rows": [' + b",".join([b"[0.1, 0.2, 0.3, 0.4]"] * 2_100_000) + b"]}"
    assert len(body) > 40_000_000
    r = httpx.post(f"{base}/predict", content=body, timeout=30,
                   headers={"X-API-Key": KEYS[CHAMPION_CALLER], "content-type": "application/json"})
    assert r.status_code == 413 and "over the limit of 1,000,000 bytes" in r.json()["detail"]
    assert _rss_kb(server["proc"].pid) - before < 50_000  # the body was never read into memory


def test_rest_traffic_feeds_the_canary_decision_and_the_rollback_reaches_the_server(server) -> None:
    base, (v1, v2, _) = server["base"], server["versions"]
    rng = np.random.default_rng(0)
    arms = {CHAMPION_CALLER: set(), CHALLENGER_CALLER: set()}
    for i in range(150):
        for who in arms:
            r = _predict(base, who, rng.normal(size=4).tolist())
            assert r.status_code == 200, r.text
            arms[who].add((r.json()["routed_to"], r.json()["model_version"]))
    assert arms == {CHAMPION_CALLER: {("champion", v1)}, CHALLENGER_CALLER: {("challenger", v2)}}
    # a caller cannot pick its arm: the old `key` field is refused
    r = httpx.post(f"{base}/predict", json={"features": [0.1] * 4, "key": "x"},
                   headers={"X-API-Key": KEYS[CHAMPION_CALLER]}, timeout=5)
    assert r.status_code == 422 and "key: Extra inputs are not permitted" in r.json()["detail"]

    flushed = _wait(lambda: (s := httpx.get(f"{base}/health", timeout=5).json()["prediction_log"])["accepted"]
                    >= 300 and s["pending"] == 0, timeout=30)
    assert flushed
    time.sleep(1.0)  # the last chunk drained is being written
    script = (
        "import json, pandas as pd\n"
        "from warehouse import DATABASE, open_warehouse\n"
        "from pipelines.steps.canary import evaluate_canaries\n"
        "from pipelines.config import get_settings\n"
        "s = get_settings()\n"
        "with open_warehouse(s) as w:\n"
        f"    f = w.query(f'SELECT model_version, routed_to, count() AS n FROM {{DATABASE}}.ml_predictions FINAL "
        f"WHERE model = {{{{m:String}}}} GROUP BY model_version, routed_to', {{'m': '{NAME}'}})\n"
        "rows = {f'{r.model_version}/{r.routed_to}': int(r.n) for r in f.itertuples()}\n"
        "d = evaluate_canaries(s, as_of=pd.Timestamp.now(tz='UTC'), window_hours=0)\n"
        "print(json.dumps({'rows': rows, 'decisions': d}, default=str))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=server["env"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == {f"{v1}/champion": 150, f"{v2}/challenger": 150}
    (decision,) = result["decisions"]
    assert decision["decision"] == "rollback" and "latency" in decision["reason"], decision
    assert decision["live"][v2]["n_predictions"] == 150
    # the running server drops the challenger within seconds
    gone = _wait(lambda: httpx.get(f"{base}/health", timeout=5).json()["challenger"] is None, timeout=15)
    assert gone, server["log"].read_text()


def test_promote_while_serving_reaches_health_with_no_failed_request(server) -> None:
    base, registry, (v1, _, v3) = server["base"], server["registry"], server["versions"]
    registry.set_challenger(NAME, v3, reason="beats champion")
    assert _wait(lambda: (httpx.get(f"{base}/health", timeout=5).json()["challenger"] or {}).get("version") == v3,
                 timeout=15)
    failures: list[str] = []
    answered: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        rng = np.random.default_rng(1)
        while not stop.is_set():
            try:
                r = _predict(base, CHAMPION_CALLER, rng.normal(size=4).tolist())
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    answered.append(r.json()["model_version"])
            except httpx.HTTPError as e:
                failures.append(repr(e))

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        started = time.monotonic()
        promoted = subprocess.run([str(CLI), "promote", "direction_h1.SERVE"], cwd=ROOT, env=server["env"],
                                  capture_output=True, text=True, timeout=300)
        assert promoted.returncode == 0, promoted.stderr
        assert f"champion is now v{v3}" in promoted.stdout
        seen = _wait(lambda: httpx.get(f"{base}/health", timeout=5).json()["champion"]["version"] == v3, timeout=30)
        elapsed = time.monotonic() - started
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert seen, server["log"].read_text()
    assert elapsed < 30
    assert failures == []
    assert answered[0] == v1 and answered[-1] == v3 and len(answered) > 20
    health = httpx.get(f"{base}/health", timeout=5).json()
    assert health["challenger"] is None and health["watcher"]["errors"] == 0
    assert registry.alias_version(NAME, CHAMPION) == v3 and registry.alias_version(NAME, CHALLENGER) is None


def _cli(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], cwd=ROOT, env=server["env"], capture_output=True, text=True,
                          timeout=300)


def test_cli_errors_are_one_line(server, tmp_path: Path) -> None:
    for args, message in [
        (("export", "direction_h1.SERVE@99", str(tmp_path / "x")), f"error: {NAME} has no version 99 (versions: 1, 2, 3)"),
        (("rollback", "nosuch.SYN1"), "error: no registered model 'default.nosuch.SYN1' (`alphaops models` lists them)"),
        (("promote", "nosuch.SYN1"), "error: no registered model 'default.nosuch.SYN1'"),
        (("serve", "direction_h1.SERVE", "--host", "0.0.0.0"), "error: refusing to serve on 0.0.0.0 without API keys"),
    ]:
        env_args = args
        result = subprocess.run([str(CLI), *env_args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                                env={k: v for k, v in server["env"].items() if k != "ALPHAOPS_SERVE_API_KEYS"})
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), (args, result.stderr)
    assert not (tmp_path / "x").exists()
    port = _cli(server, "serve", "direction_h1.SERVE", "--port", "70000")
    assert port.returncode == 2 and "--port" in port.stderr and "65535" in port.stderr


def test_cli_export_never_destroys_user_files(server, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.md").write_text("keep me")
    refused = _cli(server, "export", "direction_h1.SERVE@champion", str(notes))
    assert refused.returncode == 2 and "is not empty and is not a bundle" in refused.stderr
    assert (notes / "todo.md").read_text() == "keep me" and len(list(notes.iterdir())) == 1
    afile = tmp_path / "a.csv"
    afile.write_text("x")
    refused = _cli(server, "export", "direction_h1.SERVE@champion", str(afile))
    assert refused.returncode == 2 and "a.csv is a file" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "notes"]
    ok = _cli(server, "export", "direction_h1.SERVE@champion", str(notes), "--force")
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in notes.iterdir()) == ["model.onnx", "schema.json"]


def test_bounded_load_20_clients(server) -> None:
    """20 concurrent clients on 127.0.0.1 for a few seconds: no error; requests/s and latency
    percentiles are printed (the README quotes a run of this test)."""
    base, clients, seconds = server["base"], 20, 8.0
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    end = time.monotonic() + seconds

    def client(i: int) -> None:
        rng = np.random.default_rng(100 + i)
        who = CHAMPION_CALLER if i % 2 else CHALLENGER_CALLER
        with httpx.Client(base_url=base, headers={"X-API-Key": KEYS[who]}, timeout=10) as c:
            while time.monotonic() < end:
                started = time.perf_counter()
                try:
                    r = c.post("/predict", json={"features": dict(zip(FEATURES, rng.normal(size=4).tolist()))})
                except httpx.HTTPError as e:
                    errors.append(repr(e))
                    continue
                latencies[i].append(time.perf_counter() - started)
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = np.array([x for per in latencies for x in per]) * 1e3
    assert errors == [] and len(every) > 100
    p50, p99 = np.percentile(every, [50, 99])
    print(f"\nREST load: {clients} clients, {seconds:g} s: {len(every) / seconds:.0f} requests/s, "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, {len(every)} requests, 0 errors")


def test_serve_stops_cleanly_and_flushes_the_log(server) -> None:
    proc = server["proc"]
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(60) == 0, server["log"].read_text()
    text = server["log"].read_text()
    assert "prediction rows written to ml_predictions" in text
    assert "Traceback" not in text
