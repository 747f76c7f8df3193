"""A real S3-compatible server for the tests: moto's, started on 127.0.0.1 on a free port.

Not a mock object: DVC talks to it over HTTP through dvc-s3/s3fs/aiobotocore like to AWS.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "tether-test",
    "AWS_SECRET_ACCESS_KEY": "tether-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_server():
    port = free_port()
    with running_s3([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port,
                    "moto's S3 server") as url:
        yield url


@contextmanager
def running_s3(argv: list[str], port: int, what: str):
    """(its URL) of an S3 server process started from argv on 127.0.0.1:port, once it answers;
    terminated (killed if it will not stop) on leaving."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **CREDENTIALS})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def make_bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, **_client_kwargs()).create_bucket(Bucket=name)


def _client_kwargs() -> dict:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def delete_objects(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    """Remove objects (fault injection: 'an object missing on the remote')."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, **_client_kwargs())
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    for k in keys:
        s3.delete_object(Bucket=bucket, Key=k)
    return keys
