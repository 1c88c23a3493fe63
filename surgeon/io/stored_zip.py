"""A stored (uncompressed) zip archive whose last member is written in place, by a writer that seeks.

h5py must seek while it writes, which a member of ``zipfile.ZipFile`` does not allow, so the
weights of a ``.keras`` file used to be made apart (in memory or in a temporary file) and copied
into the archive: a second copy of the model's weights, in memory or on disk. Here the last member
is a seekable window onto the archive itself, and h5py writes the weights once, where they stay;
the member's CRC is then read back from the page cache and patched into its header.

Only what ``.keras`` needs: stored members, the last one of any size (zip64 where a size or an
offset passes 32 bits, as ``zipfile`` writes it with ``force_zip64``), read by ``zipfile`` as any
other archive (APPNOTE.TXT sections 4.3 and 4.5). The reader opens a stored member in place through
the same ``FileWindow``.
"""

from __future__ import annotations

import contextlib
import io
import struct
import time
import zlib

BLOCK = 16 * 2**20
MAX_32 = 0xFFFFFFFF  # in a 32-bit field: "see the zip64 record"
ZIP64_FROM = MAX_32  # sizes and offsets from here on go to the zip64 records
LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile.structFileHeader
CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")  # zipfile.structCentralDir
END = struct.Struct("<4s4H2LH")  # zipfile.structEndArchive
END_64 = struct.Struct("<4sQ2H2L4Q")  # zipfile.structEndArchive64
END_64_LOCATOR = struct.Struct("<4sLQL")  # zipfile.structEndArchive64Locator
ZIP64_EXTRA_ID = 0x0001
VERSION, VERSION_64, UNIX = 20, 45, 3
FILE_MODE = 0o600 << 16  # what zipfile gives a writestr member


class _Member:
    def __init__(self, name: str, offset: int, stamp: tuple[int, int]):
        self.name, self.offset, self.stamp = name.encode("utf-8"), offset, stamp
        self.crc = self.size = 0


@contextlib.contextmanager
def stored_archive(path: str, members: list[tuple[str, bytes]], last: str):
    """Write ``members`` (name, bytes), then yield a seekable, writable file for the member ``last``.

    The archive is complete when the block ends; ``path`` is created or truncated.
    """
    stamp = _dos_time(time.localtime())
    written: list[_Member] = []
    with open(path, "w+b") as raw:
        for name, data in members:
            member = _Member(name, raw.tell(), stamp)
            member.crc, member.size = zlib.crc32(data), len(data)
            raw.write(_local_header(member, zip64=False))
            raw.write(data)
            written.append(member)
        member = _Member(last, raw.tell(), stamp)
        # The size is not known yet: reserve the zip64 sizes, as zipfile's force_zip64 does.
        raw.write(_local_header(member, zip64=True))
        window = FileWindow(raw, raw.tell(), writable=True)
        yield window
        member.size = window.size
        member.crc = _crc_of(raw, window.start, window.size)
        raw.seek(member.offset)
        raw.write(_local_header(member, zip64=True))
        raw.seek(window.start + window.size)
        raw.truncate()
        written.append(member)
        _write_directory(raw, written)


def _dos_time(moment: time.struct_time) -> tuple[int, int]:
    """(time, date) as a zip header holds them; zip cannot say a year before 1980."""
    year = max(moment.tm_year, 1980)
    return ((moment.tm_hour << 11) | (moment.tm_min << 5) | (moment.tm_sec // 2),
            ((year - 1980) << 9) | (moment.tm_mon << 5) | moment.tm_mday)


def _local_header(member: _Member, *, zip64: bool) -> bytes:
    clock, date = member.stamp
    if zip64:
        extra = struct.pack("<HHQQ", ZIP64_EXTRA_ID, 16, member.size, member.size)
        sizes = (MAX_32, MAX_32)
    else:
        extra, sizes = b"", (member.size, member.size)
    header = LOCAL_HEADER.pack(b"PK\x03\x04", VERSION_64 if zip64 else VERSION, 0, 0, 0, clock, date,
                               member.crc, *sizes, len(member.name), len(extra))
    return header + member.name + extra


def _central_header(member: _Member) -> bytes:
    clock, date = member.stamp
    # In the central directory a field goes to the zip64 extra only when it does not fit 32 bits.
    large_size = member.size >= ZIP64_FROM
    large_offset = member.offset >= ZIP64_FROM
    values = ([member.size, member.size] if large_size else []) + ([member.offset] if large_offset else [])
    extra = struct.pack(f"<HH{len(values)}Q", ZIP64_EXTRA_ID, 8 * len(values), *values) if values else b""
    version = VERSION_64 if values else VERSION
    size = MAX_32 if large_size else member.size
    header = CENTRAL_HEADER.pack(b"PK\x01\x02", version, UNIX, version, 0, 0, 0, clock, date, member.crc, size, size,
                                 len(member.name), len(extra), 0, 0, 0, FILE_MODE,
                                 MAX_32 if large_offset else member.offset)
    return header + member.name + extra


def _write_directory(raw, members: list[_Member]) -> None:
    start = raw.tell()
    for member in members:
        raw.write(_central_header(member))
    size = raw.tell() - start
    count = len(members)
    if start >= ZIP64_FROM or size >= ZIP64_FROM:
        end_64 = raw.tell()
        raw.write(END_64.pack(b"PK\x06\x06", END_64.size - 12, VERSION_64, VERSION_64, 0, 0, count, count, size, start))
        raw.write(END_64_LOCATOR.pack(b"PK\x06\x07", 0, end_64, 1))
    raw.write(END.pack(b"PK\x05\x06", 0, 0, count, count, MAX_32 if size >= ZIP64_FROM else size, MAX_32 if start >= ZIP64_FROM else start, 0))


def _crc_of(raw, start: int, size: int) -> int:
    raw.flush()
    raw.seek(start)
    crc, left = 0, size
    while left:
        block = raw.read(min(BLOCK, left))
        if not block:
            raise OSError("the archive is shorter than what was written to it")
        crc = zlib.crc32(block, crc)
        left -= len(block)
    return crc


class FileWindow(io.RawIOBase):
    """Bytes ``start`` to ``start + size`` of an open binary file, as a seekable file of its own.

    For h5py, which reads and writes through any such object: a stored member read in place (the
    reader's ``model.weights.h5``: only the metadata and the datasets asked for are read) or, when
    ``writable``, the last member of an archive being written, which grows as h5py writes.
    ``owns``: closing the window closes the file.
    """

    def __init__(self, raw, start: int, size: int = 0, *, writable: bool = False, owns: bool = False):
        self._raw, self.start, self.size, self._position = raw, start, size, 0
        self._writable, self._owns = writable, owns

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return self._writable

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        count = max(0, min(len(buffer), self.size - self._position))
        self._raw.seek(self.start + self._position)
        done = self._raw.readinto(memoryview(buffer)[:count])  # straight into the caller's buffer
        self._position += done
        return done

    def write(self, data) -> int:
        if not self._writable:
            raise io.UnsupportedOperation("this window is read-only")
        self._raw.seek(self.start + self._position)
        count = self._raw.write(data)
        self._position += count
        self.size = max(self.size, self._position)
        return count

    def truncate(self, size: int | None = None) -> int:
        if not self._writable:
            raise io.UnsupportedOperation("this window is read-only")
        self.size = self._position if size is None else size
        self._raw.truncate(self.start + self.size)
        return self.size

    def flush(self) -> None:
        if self._writable:
            self._raw.flush()

    def close(self) -> None:
        if self._owns and not self.closed:
            self._raw.close()
        super().close()


__all__ = ["FileWindow", "stored_archive"]
