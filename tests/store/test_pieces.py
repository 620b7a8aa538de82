"""Cutting marimo's blobs into pieces: never changes the bytes, and finds
the raw data of arrays in pickles and .npy files so it can be shared."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marimo_store._pieces import MIN_PIECE_BYTES, split_blob

ARRAY = np.arange(30_000, dtype=np.float64)  # 240 kB


def joined(pieces: tuple[bytes | memoryview, ...]) -> bytes:
    return b"".join(pieces)


def large_pieces(data: bytes) -> list[bytes]:
    return [bytes(p) for p in split_blob(data) if len(p) >= MIN_PIECE_BYTES]


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=300),
    st.integers(min_value=0, max_value=3 * MIN_PIECE_BYTES),
    st.sampled_from([b"\x96", b"\x8e", b"B", b"\x93NUMPY\x01\x00"]),
)
def test_pieces_always_join_to_the_original(head: bytes, length: int, opcode: bytes) -> None:
    # Opcode-like bytes with lengths that fit, overrun or undershoot.
    width = 4 if opcode == b"B" else 8
    body = opcode + length.to_bytes(width, "little")[:width] + head * 50 + bytes(length // 2)
    for data in (body, head + body, body + head, b"B" * MIN_PIECE_BYTES + body):
        assert joined(split_blob(data)) == data


def test_small_blobs_are_one_piece() -> None:
    data = pickle.dumps(np.arange(100))
    assert split_blob(data) == (data,)


@pytest.mark.parametrize("readonly", [False, True], ids=["bytearray8", "binbytes"])
def test_array_data_in_a_pickle_is_a_piece(readonly: bool) -> None:
    array = ARRAY.copy()
    array.flags.writeable = not readonly
    first = pickle.dumps({"hash": "one", "x": array}, protocol=5)
    second = pickle.dumps(["other", 1, {"y": array}], protocol=5)
    assert large_pieces(first) == large_pieces(second) == [array.tobytes()]
    assert joined(split_blob(first)) == first


def test_several_arrays_and_a_dataframe_in_one_pickle() -> None:
    frame = pd.DataFrame({"a": ARRAY, "b": ARRAY * 2})
    data = pickle.dumps({"a": ARRAY, "f": frame, "b": ARRAY + 1}, protocol=5)
    pieces = large_pieces(data)
    assert ARRAY.tobytes() in pieces
    assert (ARRAY + 1).tobytes() in pieces
    assert len(pieces) == 3  # the frame's two float columns are one block
    assert joined(split_blob(data)) == data


def test_npy_data_is_the_same_piece_as_in_a_pickle() -> None:
    buffer = io.BytesIO()
    np.save(buffer, ARRAY)
    npy = buffer.getvalue()
    header, data = split_blob(npy)
    assert bytes(data) == ARRAY.tobytes()
    assert bytes(header) + bytes(data) == npy
    assert large_pieces(pickle.dumps(ARRAY, protocol=5)) == [bytes(data)]


def test_search_gives_up_after_many_false_candidates() -> None:
    # Every 'B' of the text looks like a BINBYTES opcode: the search stops
    # (the blob stays correct, only the array behind the text is not shared)
    # rather than checking 200 000 candidates one by one.
    data = pickle.dumps({"t": "B" * 200_000, "x": ARRAY}, protocol=5)
    assert ARRAY.tobytes() not in large_pieces(data)
    assert joined(split_blob(data)) == data
    # Behind a text with few of them, the array is found.
    found = pickle.dumps({"t": "AB" * 1_000, "x": ARRAY}, protocol=5)
    assert large_pieces(found) == [ARRAY.tobytes()]
