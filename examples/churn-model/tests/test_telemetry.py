"""The telemetry client and /metrics: observations reach a control plane (a local HTTP server
standing in for it) as gzipped NDJSON; with the control plane down or hanging, predictions
answer as fast as ever and the rows that could not go are counted."""

import gzip
import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from model import features as F
from model import serve
from model.telemetry import Telemetry

INSTANCE = {"f0": 1.3, "f1": -0.5, "f2": None, "f3": -0.9, "f4": 1.4, "f5": -0.9}


class FakeControlPlane:
    """Records what it is sent and answers 201."""

    def __init__(self):
        self.posts = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append((self.path, dict(self.headers), body))
                self.send_response(201)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/environments/7/observations/"

    def rows(self):
        out = []
        for _path, _headers, body in self.posts:
            columns = json.loads(gzip.decompress(body))["columns"]
            names = list(columns)
            out += [dict(zip(names, values)) for values in zip(*columns.values())]
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def control_plane():
    cp = FakeControlPlane()
    yield cp
    cp.close()


def start_service(bundle, telemetry):
    srv = serve.make_server(bundle, "127.0.0.1", 0, telemetry)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def call(srv, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_predictions_reach_the_control_plane(trained, control_plane):
    telemetry = Telemetry(control_plane.url, "cpi_secret", 42, flush_seconds=0.1).start()
    srv = start_service(trained[1], telemetry)
    try:
        status, body = call(srv, "POST", "/predict",
                            {"instances": [INSTANCE, {**INSTANCE, "request_id": "mine-1"}]})
        assert status == 200
        predictions = json.loads(body)["predictions"]
        assert predictions[1]["request_id"] == "mine-1"
        assert wait_for(lambda: len(control_plane.rows()) == 2)
    finally:
        srv.shutdown()
        telemetry.close()
    path, headers, _ = control_plane.posts[0]
    assert path.endswith("/observations/?model_version=42")
    assert headers["Authorization"] == "Bearer cpi_secret"
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"] == "application/json"
    rows = control_plane.rows()
    assert [r["request_id"] for r in rows] == [predictions[0]["request_id"], "mine-1"]
    assert rows[0]["f2"] is None and rows[0]["f0"] == 1.3  # NaN (missing) is sent as null
    assert set(rows[0]) == {*F.BASE_FEATURES, "request_id", "timestamp", "prediction",
                            "latency_ms"}
    assert rows[0]["prediction"] == predictions[0]["prediction"]
    assert rows[0]["timestamp"].endswith("Z")
    assert telemetry.sent == 2 and telemetry.dropped == 0


def test_batches_by_rows(control_plane):
    telemetry = Telemetry(control_plane.url, "t", None, batch_rows=10, flush_seconds=30).start()
    for i in range(25):
        telemetry.record(request_id=str(i), features={"f0": i}, prediction=0)
    assert wait_for(lambda: len(control_plane.rows()) >= 20)
    sizes = [len(json.loads(gzip.decompress(b))["columns"]["request_id"])
             for _, _, b in control_plane.posts[:2]]
    assert sizes == [10, 10]
    telemetry.close()  # sends the rest
    assert len(control_plane.rows()) == 25
    assert "model_version" not in control_plane.posts[0][0]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("down", ["refused", "hanging"])
def test_a_control_plane_down_never_slows_or_breaks_predictions(trained, down):
    hang = None
    if down == "refused":
        url = f"http://127.0.0.1:{_free_port()}/observations/"
    else:  # accepts connections, never answers: every post waits for its timeout
        hang = socket.socket()
        hang.bind(("127.0.0.1", 0))
        hang.listen(100)
        url = f"http://127.0.0.1:{hang.getsockname()[1]}/observations/"
    telemetry = Telemetry(url, "t", 1, max_queue=20, batch_rows=5, flush_seconds=0.05,
                          timeout=2.0).start()
    srv = start_service(trained[1], telemetry)
    try:
        slowest = 0.0
        for _ in range(60):
            started = time.perf_counter()
            status, _ = call(srv, "POST", "/predict", {"instances": [INSTANCE] * 3})
            slowest = max(slowest, time.perf_counter() - started)
            assert status == 200
        # 180 observations; the queue holds 20: most are dropped, and counted.
        assert wait_for(lambda: telemetry.dropped >= 150, timeout=5)
        assert slowest < 1.0, slowest  # far below the 2 s the sender waits on each post
        status, text = call(srv, "GET", "/metrics")
        dropped = next(line for line in text.splitlines()
                       if line.startswith("model_telemetry_dropped_total "))
        assert int(dropped.split()[1]) >= 150
        assert telemetry.sent == 0
    finally:
        srv.shutdown()
        srv.server_close()
        telemetry.close(timeout=0.1)
        if hang is not None:
            hang.close()


def test_record_never_raises():
    telemetry = Telemetry("http://127.0.0.1:1/x", "t", max_queue=1)  # not started
    assert telemetry.record(request_id="a", features={"f0": object()}) is True
    assert telemetry.record(request_id="b", features={"f0": 1.0}) is False  # full
    assert telemetry.record(request_id="c", features=None) is False  # not a mapping
    assert telemetry.dropped == 2


def test_from_env():
    assert Telemetry.from_env({}) is None
    t = Telemetry.from_env({"CONTROLPLANE_INGEST_URL": "http://cp/obs/",
                            "CONTROLPLANE_INGEST_TOKEN": "cpi_x",
                            "CONTROLPLANE_MODEL_VERSION": "12"})
    assert t.url == "http://cp/obs/?model_version=12" and t.token == "cpi_x"
    assert t.flush_seconds == 5.0
    quick = Telemetry.from_env({"CONTROLPLANE_INGEST_URL": "http://cp/obs/",
                                "CONTROLPLANE_INGEST_TOKEN": "cpi_x",
                                "CONTROLPLANE_INGEST_FLUSH_SECONDS": "0.5"})
    assert quick.flush_seconds == 0.5


def test_metrics_text(trained):
    srv = start_service(trained[1], None)
    try:
        call(srv, "POST", "/predict", {"instances": [INSTANCE, INSTANCE]})
        call(srv, "POST", "/predict", {"instances": [{"f0": 1}]})
        call(srv, "GET", "/healthz")
        call(srv, "GET", "/nope/123")
        status, text = call(srv, "GET", "/metrics")
    finally:
        srv.shutdown()
        srv.server_close()
    assert status == 200
    lines = text.splitlines()
    assert 'model_requests_total{endpoint="/predict",code="200"} 1' in lines
    assert 'model_requests_total{endpoint="/predict",code="400"} 1' in lines
    assert 'model_requests_total{endpoint="/healthz",code="200"} 1' in lines
    assert 'model_requests_total{endpoint="other",code="404"} 1' in lines
    assert 'model_request_duration_seconds_count{endpoint="/predict"} 2' in lines
    assert 'model_request_duration_seconds_bucket{endpoint="/predict",le="+Inf"} 2' in lines
    assert "# TYPE model_request_duration_seconds histogram" in lines
    predicted = [line for line in lines if line.startswith("model_predictions_total{")]
    assert sum(int(line.split()[-1]) for line in predicted) == 2
    assert "model_telemetry_dropped_total 0" in lines
