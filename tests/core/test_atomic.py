"""Atomic writes: a temp file left by a kill -9 is cleared by the next write of the same file."""

from __future__ import annotations

import os
import time

from mothbrain.core.atomic import save_json, write_atomically


def test_a_temp_file_left_by_a_kill_is_cleared_by_the_next_write(tmp_path):
    tmp_path = tmp_path / "records"
    tmp_path.mkdir()
    target = tmp_path / "versions.json"
    save_json(target, {"versions": []})
    left = tmp_path / ".versions.json.k1ll3d.tmp"  # what a kill between mkstemp and rename leaves
    left.write_text('{"versions": [')
    hour_ago = time.time() - 3600
    os.utime(left, (hour_ago, hour_ago))
    in_flight = tmp_path / ".versions.json.wr1t1ng.tmp"  # another writer's, seconds old: not ours to touch
    in_flight.write_text("{")
    other = tmp_path / ".latest.json.abc.tmp"  # another file's temp is left to that file's next write
    other.write_text("{")
    os.utime(other, (hour_ago, hour_ago))

    write_atomically(target, '{"versions": [1]}')

    assert not left.exists()
    assert in_flight.exists() and other.exists()
    assert target.read_text() == '{"versions": [1]}'
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".latest.json.abc.tmp",
        ".versions.json.wr1t1ng.tmp",
        "versions.json",
    ]
