"""Minimal HTTP serving API (standard library only).

    python -m model.serve [--port 8080] [--host 127.0.0.1] [--model PATH]

Host defaults to $HOST, then 127.0.0.1 (only this machine can reach it; the
control plane's deployers set HOST, and 0.0.0.0 listens on every address).
Port defaults to $PORT (then 8080); model path to $MODEL_PATH (then
artifacts/model.joblib, trained on the fly from data/raw.csv if absent).

Endpoints:
  GET  /healthz  -> 200 {"status": "ok", "model_version": "..."}
  GET  /metrics  -> Prometheus text: model_requests_total{endpoint,code},
                    model_request_duration_seconds{endpoint}, model_predictions_total{class},
                    model_telemetry_dropped_total
  POST /predict  {"instances": [{"f0": 0.1, ..., "f5": -1.2}, ...]}
                 -> 200 {"model_version": "...", "predictions":
                         [{"prediction": 0|1, "probability": P(class 1),
                           "request_id": "..."}, ...]}
                 400 on malformed input ({"error": "..."}).
A feature value may be null (treated as missing and imputed); a missing key
is an error. An instance may carry its own "request_id" (to post its label
later); else one is made.

With CONTROLPLANE_INGEST_URL and CONTROLPLANE_INGEST_TOKEN set (the control
plane's deployers set them, with CONTROLPLANE_MODEL_VERSION), every prediction
is reported to the control plane in the background (model/telemetry.py): a
control plane that is down never slows or fails a prediction.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import features as F
from . import training
from .metrics import Metrics, endpoint_of
from .telemetry import Telemetry

log = logging.getLogger("model.serve")

MAX_BODY_BYTES = 1 << 20  # 1 MiB
MAX_INSTANCES = 10_000


class BadRequest(ValueError):
    pass


def parse_instances(body: bytes) -> list[dict]:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        raise BadRequest('body must be {"instances": [{feature: value, ...}, ...]}')
    instances = payload["instances"]
    if len(instances) > MAX_INSTANCES:
        raise BadRequest(f"too many instances ({len(instances)} > {MAX_INSTANCES})")
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise BadRequest(f"instance {i} is not an object")
    return instances


def make_handler(bundle: dict, telemetry: Telemetry | None = None, metrics: Metrics | None = None):
    version = bundle["model_version"]
    metrics = metrics or Metrics(lambda: telemetry.dropped if telemetry else 0)

    class Handler(BaseHTTPRequestHandler):
        server_version = "churn-model/1"
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, obj: dict | str) -> None:
            if isinstance(obj, str):
                data, kind = obj.encode("utf-8"), "text/plain; version=0.0.4; charset=utf-8"
            else:
                data, kind = json.dumps(obj).encode("utf-8"), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self._status = status

        def _timed(self, handler) -> None:
            started = time.perf_counter()
            self._status = 500
            try:
                handler()
            finally:
                path = self.path.split("?", 1)[0]
                metrics.observe_request(endpoint_of(path), self._status, time.perf_counter() - started)

        def do_GET(self):
            self._timed(self._get)

        def do_POST(self):
            self._timed(self._post)

        def log_message(self, fmt, *args):  # route access log through logging
            log.info("%s %s", self.address_string(), fmt % args)

        def _get(self):
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.render())
            elif path in ("/healthz", "/health"):
                self._send(200, {"status": "ok", "model_version": version})
            elif path == "/":
                self._send(200, {"model_version": version, "features": F.BASE_FEATURES,
                                 "endpoints": ["GET /healthz", "GET /metrics", "POST /predict"]})
            else:
                self._send(404, {"error": f"not found: {path}"})

        def _post(self):
            started = time.perf_counter()
            path = self.path.split("?", 1)[0]
            if path != "/predict":
                self._send(404, {"error": f"not found: {path}"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self.close_connection = True
                self._send(413 if length > 0 else 400, {"error": "missing, invalid or too large Content-Length"})
                return
            body = self.rfile.read(length)
            try:
                instances = parse_instances(body)
                base = F.rows_to_base_matrix(instances)
                proba = training.predict_proba(bundle, base)
            except ValueError as exc:  # includes BadRequest
                self._send(400, {"error": str(exc)})
                return
            except Exception:  # pragma: no cover - defensive
                log.exception("prediction failed")
                self._send(500, {"error": "internal error"})
                return
            ids = [str(inst.get("request_id") or uuid.uuid4().hex) for inst in instances]
            preds = [
                {"prediction": int(p > 0.5), "probability": float(p), "request_id": rid}
                for p, rid in zip(proba, ids)
            ]
            self._send(200, {"model_version": version, "predictions": preds})
            metrics.observe_predictions(p["prediction"] for p in preds)
            if telemetry is not None:
                latency_ms = (time.perf_counter() - started) * 1000 / max(1, len(preds))
                for values, pred in zip(base.tolist(), preds):
                    telemetry.record(
                        request_id=pred["request_id"],
                        # NaN (a missing value) is null in JSON
                        features={n: (None if v != v else v) for n, v in zip(F.BASE_FEATURES, values)},
                        prediction=pred["prediction"],
                        latency_ms=latency_ms,
                    )

    return Handler


def make_server(bundle: dict, host: str = "127.0.0.1", port: int = 8080,
                telemetry: Telemetry | None = None) -> ThreadingHTTPServer:
    """Create (but do not start) the server; port 0 picks a free port. ``telemetry``
    (started) receives each prediction."""
    server = ThreadingHTTPServer((host, port), make_handler(bundle, telemetry))
    server.daemon_threads = True
    server.telemetry = telemetry
    return server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.serve", description="Serve the model over HTTP.")
    ap.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8080))
    ap.add_argument("--model", default=os.environ.get("MODEL_PATH") or None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        bundle = training.load_or_train(args.model, allow_train=args.model is None)
    except (OSError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    telemetry = Telemetry.from_env()
    if telemetry is not None:
        telemetry.start()
        log.info("reporting observations to %s", telemetry.url)
    server = make_server(bundle, args.host, args.port, telemetry)

    def _stop(signum, _frame):
        log.info("signal %d: shutting down", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("serving %s on http://%s:%d", bundle["model_version"], args.host, server.server_address[1])
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if telemetry is not None:
            telemetry.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
