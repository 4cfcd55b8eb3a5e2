"""The trainer's cancel token: a cancel file left from before a resumed run does not count."""

from __future__ import annotations

import os
import time

from easyphoto_train.cancel import CancelToken


def test_a_cancel_file_older_than_the_run_is_ignored_a_new_one_counts(tmp_path):
    cancel_file = tmp_path / "train.cancel"
    cancel_file.write_text("cancel")
    old = time.time() - 60
    os.utime(cancel_file, (old, old))
    token = CancelToken(cancel_file, not_before=time.time())
    assert not token.requested
    cancel_file.write_text("cancel")  # written during this run
    assert token.requested and token.reason == "a cancel request"


def test_without_a_start_time_any_cancel_file_counts(tmp_path):
    cancel_file = tmp_path / "train.cancel"
    token = CancelToken(cancel_file)
    assert not token.requested
    cancel_file.write_text("cancel")
    assert token.requested
