"""mlops.capped: the cap every tar.gz from the cluster is read through (state streams and results)."""

from __future__ import annotations

import gzip
import io

import pytest

from mlops.capped import CappedReader, StreamTooLarge


def test_exactly_the_cap_is_read_whole_in_any_read_size():
    for size in (-1, 1, 7, 100):
        reader = CappedReader(io.BytesIO(b"x" * 100), 100, "the state stream")
        chunks = [reader.read(size)]
        while chunks[-1]:
            chunks.append(reader.read(size))
        got = b"".join(chunks)
        assert got == b"x" * 100


def test_one_byte_past_the_cap_stops_with_an_oserror_naming_the_stream():
    bomb = gzip.compress(b"\0" * (1 << 20))  # 1 MiB of zeros in about 1 KiB
    reader = CappedReader(gzip.GzipFile(fileobj=io.BytesIO(bomb)), 4096, "the state stream")
    with pytest.raises(StreamTooLarge, match="the state stream passed 4,096 bytes") as caught:
        while reader.read(1000):
            pass
    assert isinstance(caught.value, OSError)  # a cut stream: readers keep what came before
    assert reader.count == 4097  # one byte past the cap was read, not the whole megabyte
