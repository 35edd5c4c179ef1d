"""A real S3 protocol server on 127.0.0.1: moto in server mode, a separate process, driven by boto3."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from typing import Dict, Iterator

import pytest

#: Dummy credentials: boto3 signs every request as against AWS; moto accepts any.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


class MotoS3:
    def __init__(self, port: int) -> None:
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"

    def client(self):
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.endpoint)

    def new_bucket(self) -> str:
        """A new bucket whose objects anyone may GET (as a bucket served to apps is)."""
        name = f"rel-{uuid.uuid4().hex[:12]}"
        c = self.client()
        c.create_bucket(Bucket=name)
        c.put_bucket_policy(Bucket=name, Policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                           "Resource": f"arn:aws:s3:::{name}/*"}]}))
        return name

    def keys(self, bucket: str) -> Dict[str, bytes]:
        c = self.client()
        out = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", ()):
                out[obj["Key"]] = c.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        return out


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory) -> Iterator[MotoS3]:
    """moto's S3 server in a child process on a free port of 127.0.0.1; dummy credentials in the env."""
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # its request log goes to a file: a pipe nobody reads would fill and stall the server
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto server did not start: {log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
    try:
        yield MotoS3(port)
    finally:
        proc.kill()
        proc.wait()
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
