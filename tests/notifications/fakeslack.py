"""A fake Slack on 127.0.0.1: a real HTTP server answering like Slack's Web API (and its response
URLs) that records every request, for the real slack-sdk client pointed at it (its
``base_url``, ``SLACK_API_URL``). Used by the notifications tests (``slack_server``) and by the
monitoring tests that run a real worker (the worker gets the URL in its environment)."""

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.received: list[dict] = []
        self.codes: list = []  # forced answers, one per request: an int (HTTP) or a dict (JSON)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.lock = threading.Lock()


class SlackHandler(BaseHTTPRequestHandler):
    """``/api/<method>`` answers like Slack's Web API; ``/response/…`` like a response URL."""

    def _record(self, body: bytes) -> dict:
        content_type = self.headers.get("Content-Type", "")
        parsed = urlsplit(self.path)
        if "json" in content_type:
            data = json.loads(body or b"{}")
        else:
            data = {k: v[0] for k, v in parse_qs(body.decode() or parsed.query).items()}
        request = {
            "at": time.time(),  # when it arrived (bench/drift_alert.py times alerts by it)
            "method": self.command,
            "path": parsed.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "json": data,
        }
        with self.server.lock:
            self.server.received.append(request)
        return request

    def _answer(self, code: int, payload) -> None:
        raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header(
            "Content-Type", "application/json" if not isinstance(payload, str) else "text/plain"
        )
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = self._record(body)
        forced = self.server.codes.pop(0) if self.server.codes else None
        if isinstance(forced, int):
            self._answer(forced, {"ok": False, "error": "internal_error"})
            return
        if isinstance(forced, dict):
            self._answer(200, forced)
            return
        path, data = request["path"], request["json"]
        if path.startswith("/response/"):
            self._answer(200, "ok")
        elif path == "/api/chat.postMessage":
            ts = f"1700000000.{next(self.server.ts):06d}"
            channel = data.get("channel", "")
            self._answer(200, {"ok": True, "channel": channel, "ts": ts, "message": {"ts": ts}})
        elif path == "/api/chat.update":
            self._answer(200, {"ok": True, "channel": data.get("channel"), "ts": data.get("ts")})
        elif path == "/api/views.open":
            view = data.get("view")
            view = json.loads(view) if isinstance(view, str) else view
            self._answer(200, {"ok": True, "view": {"id": "V0MODAL", **(view or {})}})
        elif path == "/api/chat.postEphemeral":
            self._answer(200, {"ok": True, "message_ts": "1700000000.999999"})
        elif path == "/api/users.info":
            user = self.server.users.get(data.get("user"))
            if user is None:
                self._answer(200, {"ok": False, "error": "user_not_found"})
            else:
                self._answer(200, {"ok": True, "user": user})
        else:
            self._answer(404, {"ok": False, "error": "unknown_method"})

    do_POST = _handle  # noqa: N815 - the http.server API
    do_GET = _handle  # noqa: N815

    def log_message(self, *args):
        pass


def serve(server: Server):
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return thread


def start_slack() -> Server:
    """A fake Slack serving in a thread; ``server.url + "/api/"`` is the Web API's base URL."""
    server = Server(SlackHandler)
    server.ts = itertools.count(100)
    server.users = {}
    serve(server)
    return server


def stop(server: Server) -> None:
    server.shutdown()
    server.server_close()


def api_calls(server, method: str) -> list[dict]:
    return [r for r in server.received if r["path"] == f"/api/{method}"]
