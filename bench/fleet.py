"""A fleet converging (issue 13, target 6): N serving hosts (TETHER_BENCH_HOSTS, default 10) run
`tether deploy --repo ORIGIN` at once, each into its own target, against one bare git origin
and moto's S3 server on 127.0.0.1, for a TETHER_BENCH_FLEET_MB model (default 200 MiB). Bytes
fetched from S3 are counted by a small TCP relay between the hosts and the server (S3 traffic
only; git goes over the file system). Baseline: one host deploying alone, in the same run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bigmodel import BIN, build, promote, sh  # noqa: E402
from common import ENV, Table  # noqa: E402

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "tether-bench", "AWS_SECRET_ACCESS_KEY": "tether-bench-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto(env: dict):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("bench: moto's S3 server did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Relay:
    """127.0.0.1:port -> 127.0.0.1:upstream, counting the bytes the server sends back."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.down = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                if count:
                    with self.lock:
                        self.down += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def take(self) -> int:
        with self.lock:
            n, self.down = self.down, 0
        return n


def deploy_cmd(origin: Path, target: Path) -> list[str]:
    return [str(BIN / "tether"), "deploy", "--env", "production", "--target", str(target), "--repo", str(origin)]


def main() -> None:
    size = int(os.environ.get("TETHER_BENCH_FLEET_MB", "200"))
    hosts = int(os.environ.get("TETHER_BENCH_HOSTS", "10"))
    env = {**ENV, **CREDENTIALS}
    table = Table(f"Fleet: {hosts} hosts deploying a {size} MiB model at once (ratio = fleet / alone)")
    with tempfile.TemporaryDirectory(prefix="tether-bench-fleet-") as tmp, moto(env) as s3_port:
        root = Path(tmp)
        import boto3

        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}", region_name="us-east-1",
                     aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket="fleet")
        relay = Relay(s3_port)
        s3 = {"url": "s3://fleet/store", "endpoint": f"http://127.0.0.1:{relay.port}"}
        repo = build(root, size, s3=s3, env=env)
        promote(repo, "big@v1.0.0", push=True, env=env)
        origin = root / "origin.git"
        relay.take()

        t = time.perf_counter()
        sh(*deploy_cmd(origin, root / "alone"), cwd=root, env=env)
        t_alone = time.perf_counter() - t
        bytes_alone = relay.take()

        t = time.perf_counter()
        procs = [subprocess.Popen(deploy_cmd(origin, root / f"host{i}"), cwd=root, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(hosts)]
        done = [(p.wait(), p.stderr.read() if p.stderr else "") for p in procs]
        t_fleet = time.perf_counter() - t
        bytes_fleet = relay.take()
        failed = [err[-300:] for code, err in done if code != 0]
        if failed:
            raise SystemExit(f"bench: {len(failed)} host(s) failed to deploy: {failed[0]}")
        verified = sum(subprocess.run([str(BIN / "tether"), "verify", "--target", str(root / f"host{i}")], env=env,
                                      cwd=root, capture_output=True).returncode == 0 for i in range(hosts))
        table.add(f"all {hosts} serving the release", t_fleet, "s", "one host alone", t_alone,
                  f"(linear would be {hosts}x)")
        table.rows[-1]["ratio"] = t_fleet / t_alone
        table.add("MB fetched from S3, whole fleet", bytes_fleet / 1e6, "MB", "one host", bytes_alone / 1e6,
                  f"= {hosts} x one host, no more", bytes_fleet <= hosts * bytes_alone * 1.01)
        table.rows[-1]["ratio"] = bytes_fleet / bytes_alone if bytes_alone else None
        table.add("hosts whose `verify --target` passed", verified, "", target=f"{hosts} of {hosts}",
                  ok=verified == hosts)
    table.print()


if __name__ == "__main__":
    main()
