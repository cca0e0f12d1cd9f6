#!/usr/bin/env python3
"""Drive the GCP fake's Cloud Storage JSON API (crates/gitpod-refarch-fake-gcp,
src/storage.rs) with Google's official Python client, google-cloud-storage
(installed, pinned, by scripts/install-google-clients.sh): an independent client
with its own URL building, multipart uploads and checksum checks.

Generation preconditions are what the state store relies on, so most steps check
that the fake refuses what GCS refuses (PreconditionFailed, NotFound).

Environment:
  GCP_FAKE_URL       base URL of the fake (required)
  GCP_FAKE_PROJECT   an existing project of the fake (default p)

Prints one line per step and "storage sequence passed" at the end; exits non-zero on
the first failure.
"""

import base64
import hashlib
import os
import sys

from google.api_core.exceptions import NotFound, PreconditionFailed
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

URL = os.environ["GCP_FAKE_URL"].rstrip("/")
PROJECT = os.environ.get("GCP_FAKE_PROJECT", "p")
BUCKET = "refarch-state-py"
NAME = "installations/gp/state.json"


def step(msg):
    print(f"- {msg}", flush=True)


def refused(what, exc_type, fn):
    try:
        fn()
    except exc_type as e:
        step(f"refused as GCS does: {what} ({e.code})")
        return
    sys.exit(f"FAILED: {what} was accepted; GCS refuses it with {exc_type.__name__}")


def main():
    client = storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": URL},
    )
    refused(
        "an upload to a bucket that does not exist",
        NotFound,
        lambda: client.bucket("no-such-bucket-here").blob("x").upload_from_string(b"x"),
    )
    bucket = client.create_bucket(BUCKET)
    step(f"created bucket {bucket.name} (project number {bucket.project_number})")

    first = b'{"version": 1, "secret": "s3cr3t"}'
    blob = bucket.blob(NAME)
    blob.upload_from_string(first, content_type="application/json", if_generation_match=0)
    gen1 = blob.generation
    assert gen1 and gen1 > 0, gen1
    assert blob.metageneration == 1, blob.metageneration
    assert blob.size == len(first), blob.size
    assert blob.md5_hash == base64.b64encode(hashlib.md5(first).digest()).decode(), blob.md5_hash
    step(f"uploaded {NAME} only if absent: generation {gen1}")

    refused(
        "a second upload with if_generation_match=0",
        PreconditionFailed,
        lambda: bucket.blob(NAME).upload_from_string(b"other", if_generation_match=0),
    )

    got = bucket.blob(NAME).download_as_bytes()
    assert got == first, got
    step("downloaded the first content (crc32c checked by the client)")

    second = b'{"version": 2}'
    blob2 = bucket.blob(NAME)
    blob2.upload_from_string(second, if_generation_match=gen1)
    gen2 = blob2.generation
    assert gen2 > gen1, (gen1, gen2)
    step(f"replaced it at generation {gen1}: generation {gen2}")

    refused(
        "an upload naming the old generation",
        PreconditionFailed,
        lambda: bucket.blob(NAME).upload_from_string(b"late", if_generation_match=gen1),
    )
    refused(
        "a download naming the old generation",
        PreconditionFailed,
        lambda: bucket.blob(NAME).download_as_bytes(if_generation_match=gen1),
    )
    meta = bucket.get_blob(NAME)
    assert meta.generation == gen2 and meta.size == len(second), (meta.generation, meta.size)
    assert bucket.blob(NAME).download_as_bytes(if_generation_match=gen2) == second
    step("metadata and content are the second upload's")

    refused(
        "a delete naming the wrong generation",
        PreconditionFailed,
        lambda: bucket.blob(NAME).delete(if_generation_match=gen1),
    )
    bucket.blob(NAME).delete(if_generation_match=gen2)
    step("deleted it at its generation")
    assert bucket.get_blob(NAME) is None
    refused(
        "a download of the deleted object",
        NotFound,
        lambda: bucket.blob(NAME).download_as_bytes(),
    )
    refused(
        "a delete of the deleted object",
        NotFound,
        lambda: bucket.blob(NAME).delete(),
    )
    print("storage sequence passed", flush=True)


if __name__ == "__main__":
    main()
