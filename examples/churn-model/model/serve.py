"""Minimal HTTP serving API (standard library only).

    python -m model.serve [--port 8080] [--host 127.0.0.1] [--model PATH]

Host defaults to $HOST, then 127.0.0.1 (only this machine can reach it; the
control plane's deployers set HOST, and 0.0.0.0 listens on every address).
Port defaults to $PORT (then 8080); model path to $MODEL_PATH (then
artifacts/model.joblib, trained on the fly from data/raw.csv if absent).

Endpoints:
  GET  /healthz  -> 200 {"status": "ok", "model_version": "..."}
  POST /predict  {"instances": [{"f0": 0.1, ..., "f5": -1.2}, ...]}
                 -> 200 {"model_version": "...", "predictions":
                         [{"prediction": 0|1, "probability": P(class 1)}, ...]}
                 400 on malformed input ({"error": "..."}).
A feature value may be null (treated as missing and imputed); a missing key
is an error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import features as F
from . import training

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


def make_handler(bundle: dict):
    version = bundle["model_version"]

    class Handler(BaseHTTPRequestHandler):
        server_version = "churn-model/1"
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, obj: dict) -> None:
            data = json.dumps(obj).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):  # route access log through logging
            log.info("%s %s", self.address_string(), fmt % args)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path in ("/healthz", "/health"):
                self._send(200, {"status": "ok", "model_version": version})
            elif path == "/":
                self._send(200, {"model_version": version, "features": F.BASE_FEATURES,
                                 "endpoints": ["GET /healthz", "POST /predict"]})
            else:
                self._send(404, {"error": f"not found: {path}"})

        def do_POST(self):
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
                proba = training.predict_proba(bundle, F.rows_to_base_matrix(instances))
            except ValueError as exc:  # includes BadRequest
                self._send(400, {"error": str(exc)})
                return
            except Exception:  # pragma: no cover - defensive
                log.exception("prediction failed")
                self._send(500, {"error": "internal error"})
                return
            preds = [{"prediction": int(p > 0.5), "probability": float(p)} for p in proba]
            self._send(200, {"model_version": version, "predictions": preds})

    return Handler


def make_server(bundle: dict, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """Create (but do not start) the server; port 0 picks a free port."""
    server = ThreadingHTTPServer((host, port), make_handler(bundle))
    server.daemon_threads = True
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
    server = make_server(bundle, args.host, args.port)

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
