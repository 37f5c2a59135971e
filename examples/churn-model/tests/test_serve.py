import http.client
import json
import threading

import pytest

from model import features as F
from model import serve, training


@pytest.fixture(scope="module")
def server(trained):
    srv = serve.make_server(trained[1], "127.0.0.1", 0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join(timeout=5)


def request(srv, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=5)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_healthz(server, trained):
    status, body = request(server, "GET", "/healthz")
    assert status == 200
    assert body == {"status": "ok", "model_version": trained[1]["model_version"]}


def test_predict_matches_batch_predictions(server, trained, root):
    _, rows = F.read_csv(root / "tests/ref/input.csv")
    instances = [{k: (float(v) if v else None) for k, v in r.items() if k != "id"} for r in rows[:10]]
    status, body = request(server, "POST", "/predict", {"instances": instances})
    assert status == 200
    assert body["model_version"] == trained[1]["model_version"]
    expected = training.predict_proba(trained[1], F.rows_to_base_matrix(rows[:10]))
    assert [p["probability"] for p in body["predictions"]] == [float(p) for p in expected]
    assert [p["prediction"] for p in body["predictions"]] == [int(p > 0.5) for p in expected]


def test_predict_empty_list(server):
    assert request(server, "POST", "/predict", {"instances": []})[1]["predictions"] == []


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "invalid JSON"),
    ({"rows": []}, "instances"),
    ({"instances": [1]}, "not an object"),
    ({"instances": [{"f0": 1}]}, "missing feature"),
    ({"instances": [{f: "x" for f in F.BASE_FEATURES}]}, "not numeric"),
])
def test_predict_bad_request(server, body, fragment):
    status, resp = request(server, "POST", "/predict", body)
    assert status == 400
    assert fragment in resp["error"]


def test_unknown_paths(server):
    assert request(server, "GET", "/nope")[0] == 404
    assert request(server, "POST", "/healthz", {})[0] == 404
