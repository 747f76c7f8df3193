"""Real faults for deploy's storage tests: an HTTP proxy in front of moto's S3 server that,
when told, answers a GET of a DVC object with 403 or 500, deletes the object just before
forwarding the GET (an object deleted mid-deploy), or dies (the endpoint goes away); and a
small tmpfs to deploy into until the disk is full."""

from __future__ import annotations

import contextlib
import http.client
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from s3server import _client_kwargs, free_port

OBJECT_PATH = "/files/md5/"
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class FaultProxy:
    """Forwards everything to `upstream`; `mode` ("403", "500", "delete", "die" or None) is the
    fault a GET of an object under files/md5/ (whose key contains `only`) meets. `hits` counts
    the faulted requests."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.mode: str | None = None
        self.only = ""  # a substring of the faulted objects' keys (an md5), "" for every object
        self.hits = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "GET" and OBJECT_PATH in self.path and proxy.only in self.path and proxy.mode:
                    proxy.hits += 1
                    if proxy.mode in ("403", "500"):
                        code = int(proxy.mode)
                        name = "AccessDenied" if code == 403 else "InternalError"
                        xml = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{name}</Code>"
                               f"<Message>{name}</Message></Error>").encode()
                        self.send_response(code)
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("Content-Length", str(len(xml)))
                        self.end_headers()
                        self.wfile.write(xml)
                        return
                    if proxy.mode == "delete":
                        proxy.delete(self.path)
                    if proxy.mode == "die":
                        self.close_connection = True
                        threading.Thread(target=proxy.server.shutdown, daemon=True).start()
                        proxy.server.socket.close()
                        return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                head = self.command == "HEAD"  # its Content-Length is the object's, not this body's
                for k, v in resp.getheaders():
                    if k.lower() not in HOP and (head or k.lower() != "content-length"):
                        self.send_header(k, v)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def delete(self, path: str) -> None:
        import boto3

        bucket, _, key = path.lstrip("/").split("?")[0].partition("/")
        boto3.client("s3", endpoint_url=self.upstream.geturl(), **_client_kwargs()).delete_object(Bucket=bucket, Key=key)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self.server.shutdown()
        with contextlib.suppress(Exception):
            self.server.server_close()


@contextlib.contextmanager
def small_tmpfs(path: Path, size: int):
    """A tmpfs of `size` bytes mounted at `path` (tests run as root), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
