"""Helpers for tests that drive the /easyphoto/v1 routes: the studio's app and the WebUI's."""

from __future__ import annotations

import time


def wait_for(client, job_id: str, timeout: float = 600) -> dict:
    """Poll a job until it ends; its last record (done, failed or cancelled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(f"/easyphoto/v1/jobs/{job_id}").json()
        if record["state"] in ("done", "failed", "cancelled"):
            return record
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {record['state']}")


def files_of(faces_dir, names):
    """Photos from the test faces folder, as the multipart 'photos' field of /train."""
    return [("photos", (n, (faces_dir / n).read_bytes(), "image/jpeg")) for n in names]
