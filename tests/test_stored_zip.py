"""surgeon.io.stored_zip: archives zipfile reads, the last member written in place by a seeking writer."""

import io
import zipfile

import pytest

from surgeon.io import stored_zip
from surgeon.io.stored_zip import FileWindow, stored_archive


def test_members_and_a_seeking_last_member_read_back(tmp_path):
    path = str(tmp_path / "a.zip")
    with stored_archive(path, [("first.json", b'{"a": 1}'), ("empty", b"")], "last.bin") as last:
        last.write(b"x" * 100)
        last.seek(10)
        last.write(b"HELLO")  # a writer that seeks back, as h5py does
        last.seek(0, 2)
        last.write(b"tail")
        last.seek(0)
        assert last.read(12) == b"xxxxxxxxxxHE"
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["first.json", "empty", "last.bin"]
        assert archive.read("first.json") == b'{"a": 1}'
        assert archive.read("empty") == b""
        assert archive.read("last.bin") == b"x" * 10 + b"HELLO" + b"x" * 85 + b"tail"


def test_a_shrunk_last_member_and_a_rewritten_archive(tmp_path):
    path = tmp_path / "a.zip"
    path.write_bytes(b"an older, longer file " * 1000)
    with stored_archive(str(path), [], "only") as last:
        last.write(b"0123456789")
        last.truncate(4)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.read("only") == b"0123"


def test_offsets_and_sizes_past_32_bits_use_zip64(tmp_path, monkeypatch):
    """Past 4 GB (here a 100-byte limit, to keep the test small) the sizes, the offset and the
    directory move to the zip64 records, which zipfile reads."""
    monkeypatch.setattr(stored_zip, "ZIP64_FROM", 100)
    path = str(tmp_path / "a.zip")
    with stored_archive(path, [("a", b"a" * 150)], "b") as last:
        last.write(b"b" * 300)
    with open(path, "rb") as handle:
        data = handle.read()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("b").header_offset > 100  # read from the zip64 extra field
        assert archive.read("b") == b"b" * 300


def test_a_read_only_window_reads_its_part_of_the_file_and_refuses_writes(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    window = FileWindow(open(path, "rb"), 3, 4, owns=True)
    assert window.read() == b"3456"
    window.seek(-2, io.SEEK_END)
    assert window.read(10) == b"56"
    with pytest.raises(io.UnsupportedOperation):
        window.write(b"x")
    window.close()
    assert path.read_bytes() == b"0123456789"
