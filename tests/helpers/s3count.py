"""moto's S3 server with a request log: every GET of an object key appended, one line each, to a
file (`GET /bucket/key`), so a test or a bench counts what crossed the network from the DVC
remote, and how many bytes. Run as a process (`python s3count.py PORT LOGFILE`) or through
`counting_s3()`; the server is moto's own WSGI application, unchanged, behind the log."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from s3server import free_port, running_s3


def _serve(port: int, log: str) -> None:
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def logged(environ, start_response):
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", "")
        body = app(environ, start_response)
        if method == "GET" and path.count("/") >= 2 and not path.startswith("/moto-api"):
            size = 0
            chunks = []
            for chunk in body:
                size += len(chunk)
                chunks.append(chunk)
            with lock, open(log, "a") as f:
                f.write(f"GET {path} {size}\n")
            return chunks
        return body

    make_server("127.0.0.1", port, logged, threaded=True).serve_forever()


@contextmanager
def counting_s3(log: Path):
    """(endpoint URL) of a fresh server logging object GETs to `log`."""
    port = free_port()
    with running_s3([sys.executable, __file__, str(port), str(log)], port, "the counting S3 server") as url:
        yield url


def object_gets(log: Path, under: str = "/files/md5/") -> tuple[Counter, int]:
    """(GETs per object key under `under`, bytes those GETs returned)."""
    counts: Counter = Counter()
    total = 0
    if log.exists():
        for line in log.read_text().splitlines():
            _m, path, size = line.split(" ")
            if under in path:
                counts[path] += 1
                total += int(size)
    return counts, total


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2])
