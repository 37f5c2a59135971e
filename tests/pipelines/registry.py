"""A minimal Docker Registry HTTP API v2 server (stdlib only), enough for ``docker push``.

Just what an engine 20.10 uses to push an image: the version check, blob existence checks,
chunked blob uploads (a cross-repository ``?mount=`` is treated as a plain upload start),
digest-verified commits and manifest storage, plus manifest reads for checking. No auth, no
TLS: the engine treats 127.0.0.0/8 registries as insecure (plain HTTP) by default.

    with Registry() as registry:        # serves on 127.0.0.1:<registry.port> in a thread
        ...  # push to f"{registry.host}/ml/churn:1.0"
        registry.manifests["ml/churn"]["1.0"]   # the stored manifest body (bytes)

``registry.requests`` lists every request answered as (method, path with query, status).
``Registry(fail_status=500)`` answers every request but ``GET /v2/`` with that status.
"""

import hashlib
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NAME = r"(?P<name>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
BLOB = re.compile(rf"^/v2/{NAME}/blobs/(?P<digest>sha256:[a-f0-9]{{64}})$")
UPLOADS = re.compile(rf"^/v2/{NAME}/blobs/uploads/$")
UPLOAD = re.compile(rf"^/v2/{NAME}/blobs/uploads/(?P<upload>[a-f0-9-]+)$")
MANIFEST = re.compile(rf"^/v2/{NAME}/manifests/(?P<reference>[A-Za-z0-9_.:-]+)$")
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class Registry:
    def __init__(self, *, fail_status: int | None = None) -> None:
        self.fail_status = fail_status
        self.blobs: dict[str, bytes] = {}  # digest -> bytes (one store for every repository)
        self.repo_blobs: dict[str, set[str]] = {}  # repository -> digests stored through it
        self.uploads: dict[str, bytearray] = {}  # upload uuid -> bytes received so far
        self.manifests: dict[str, dict[str, bytes]] = {}  # repository -> reference -> body
        self.manifest_types: dict[str, str] = {}  # manifest digest -> its Content-Type
        self.requests: list[tuple[str, str, int]] = []  # (method, path?query, status) answered
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the registry is not started"
        return self._server.server_address[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Registry":
        registry = self

        class Handler(_Handler):
            store = registry

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="test-registry", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> "Registry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries a Content-Length
    server_version = "test-registry/0.1"
    store: Registry

    def log_message(self, format, *args) -> None:  # quiet; the requests are in store.requests
        pass

    # --- plumbing -------------------------------------------------------------------------

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()  # the CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, headers: dict | None = None, body: bytes = b"") -> None:
        with self.store.lock:
            self.store.requests.append((self.command, self.path, status))
        self.send_response(status)
        headers = {"Docker-Distribution-API-Version": "registry/2.0", **(headers or {})}
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._send(status, {"Content-Type": "application/json"}, body)

    def _route(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        path = url.path
        # Drain any request body first so a keep-alive connection stays in step.
        body = self._body() if self.command in ("POST", "PUT", "PATCH") else b""
        if self.command == "GET" and path == "/v2/":
            self._send(200, {"Content-Type": "application/json"}, b"{}")
            return
        if self.store.fail_status:
            self._error(self.store.fail_status, "UNKNOWN", "the test registry is failing")
            return
        for method, pattern, handler in (
            ("HEAD", BLOB, self._blob),
            ("GET", BLOB, self._blob),
            ("POST", UPLOADS, self._upload_start),
            ("PATCH", UPLOAD, self._upload_patch),
            ("PUT", UPLOAD, self._upload_commit),
            ("DELETE", UPLOAD, self._upload_cancel),
            ("PUT", MANIFEST, self._manifest_put),
            ("HEAD", MANIFEST, self._manifest_get),
            ("GET", MANIFEST, self._manifest_get),
        ):
            match = pattern.match(path) if self.command == method else None
            if match:
                handler(body=body, query=query, **match.groupdict())
                return
        self._error(404, "UNSUPPORTED", f"{self.command} {path} is not implemented")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _route

    # --- blobs ----------------------------------------------------------------------------

    def _blob(self, *, name: str, digest: str, **_) -> None:
        # Blobs are linked to the repositories they were pushed to, as in a real registry.
        linked = digest in self.store.repo_blobs.get(name, ())
        data = self.store.blobs.get(digest) if linked else None
        if data is None:
            self._error(404, "BLOB_UNKNOWN", f"blob unknown: {digest}")
            return
        headers = {
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": digest,
            "Content-Length": str(len(data)),
        }
        self._send(200, headers, data)

    def _upload_headers(self, name: str, upload: str) -> dict:
        size = len(self.store.uploads[upload])
        return {
            "Location": f"/v2/{name}/blobs/uploads/{upload}",
            "Docker-Upload-UUID": upload,
            "Range": f"0-{max(size - 1, 0)}",
        }

    def _upload_start(self, *, name: str, body: bytes, **_) -> None:
        # A ``?mount=<digest>&from=<repo>`` request may be answered as a fresh upload (202).
        upload = str(uuid.uuid4())
        with self.store.lock:
            self.store.uploads[upload] = bytearray(body)
        self._send(202, self._upload_headers(name, upload))

    def _upload_patch(self, *, name: str, upload: str, body: bytes, **_) -> None:
        with self.store.lock:
            data = self.store.uploads.get(upload)
            if data is not None:
                data += body
        if data is None:
            self._error(404, "BLOB_UPLOAD_UNKNOWN", f"upload unknown: {upload}")
            return
        self._send(202, self._upload_headers(name, upload))

    def _upload_cancel(self, *, upload: str, **_) -> None:
        with self.store.lock:
            found = self.store.uploads.pop(upload, None) is not None
        if not found:
            self._error(404, "BLOB_UPLOAD_UNKNOWN", f"upload unknown: {upload}")
            return
        self._send(204)

    def _upload_commit(self, *, name: str, upload: str, body: bytes, query: dict, **_) -> None:
        expected = (query.get("digest") or [""])[0]
        with self.store.lock:
            data = self.store.uploads.pop(upload, None)
        if data is None:
            self._error(404, "BLOB_UPLOAD_UNKNOWN", f"upload unknown: {upload}")
            return
        data = bytes(data + body)
        actual = sha256(data)
        if not expected or expected != actual:
            self._error(400, "DIGEST_INVALID", f"got {actual}, expected {expected!r}")
            return
        with self.store.lock:
            self.store.blobs[actual] = data
            self.store.repo_blobs.setdefault(name, set()).add(actual)
        headers = {"Location": f"/v2/{name}/blobs/{actual}", "Docker-Content-Digest": actual}
        self._send(201, headers)

    # --- manifests ------------------------------------------------------------------------

    def _manifest_put(self, *, name: str, reference: str, body: bytes, **_) -> None:
        digest = sha256(body)
        if reference.startswith("sha256:") and reference != digest:
            self._error(400, "DIGEST_INVALID", f"got {digest}, expected {reference}")
            return
        content_type = self.headers.get("Content-Type", MANIFEST_V2)
        with self.store.lock:
            stored = self.store.manifests.setdefault(name, {})
            stored[reference] = body
            stored[digest] = body
            self.store.manifest_types[digest] = content_type
        headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
        self._send(201, headers)

    def _manifest_get(self, *, name: str, reference: str, **_) -> None:
        body = self.store.manifests.get(name, {}).get(reference)
        if body is None:
            self._error(404, "MANIFEST_UNKNOWN", f"manifest unknown: {name}:{reference}")
            return
        digest = sha256(body)
        headers = {
            "Content-Type": self.store.manifest_types.get(digest, MANIFEST_V2),
            "Docker-Content-Digest": digest,
        }
        self._send(200, headers, body)
