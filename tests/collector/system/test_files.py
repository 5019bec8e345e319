"""Files replaced whole or not at all."""

from __future__ import annotations

import pytest

from collector.system.files import write_atomically


def test_the_file_and_its_missing_directories_are_made_with_the_text(tmp_path):
    path = tmp_path / "state" / "deep" / "spool.json"
    write_atomically(path, '{"windows": 1}')
    assert path.read_text() == '{"windows": 1}'
    write_atomically(str(path), "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["spool.json"]  # no temporary file left


def test_a_write_that_fails_leaves_the_old_file_whole_and_no_temporary(tmp_path):
    path = tmp_path / "templates.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        write_atomically(path, b"not text")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["templates.json"]
