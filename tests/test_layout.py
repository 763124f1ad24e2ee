"""Multi-stream objects with plain bytes: discovery of streams, read plans and decryption
for random sizes, part splits and ranges."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3proxy.core.errors import IntegrityError
from s3proxy.core.format import Header, StreamEncryptor, name_binding, parse_header, seal
from s3proxy.core.layout import (
    Discovery,
    Layout,
    PlanDecryptor,
    ReadPlan,
    SequentialDecryptor,
    check_name_binding,
    check_object_shape,
    discover,
)
from s3proxy.core.sizes import HEADER_SIZE, TRAILER_SIZE

KEYS = {f"vault:v1:key{i}": os.urandom(32) for i in range(4)}


def _object(parts: list[bytes], seg: int, version: int = 2) -> bytes:
    """A multipart object as stored: each part sealed as its own stream, with its own key."""
    wrapped = list(KEYS)
    return b"".join(
        seal(KEYS[wrapped[i % len(wrapped)]], wrapped[i % len(wrapped)], p, seg, version=version)
        for i, p in enumerate(parts)
    )


def _run_discovery(stored: bytes) -> tuple[Layout, list[list[int]]]:
    rounds: list[list[int]] = []
    gen: Discovery = discover(len(stored), parse_header(stored))
    try:
        wanted = next(gen)
        while True:
            rounds.append(wanted)
            found: dict[int, Header | None] = {}
            for o in wanted:
                try:
                    found[o] = parse_header(stored[o : o + HEADER_SIZE])
                except IntegrityError:
                    found[o] = None
            wanted = gen.send(found)
    except StopIteration as stop:
        return stop.value, rounds


def _read(stored: bytes, plan: ReadPlan, chunk: int) -> bytes:
    fetched = stored[plan.stored_first : plan.stored_last + 1]
    dec = PlanDecryptor(plan)
    out = [dec.feed(b"")]
    for i in range(0, len(fetched), chunk):
        out.append(dec.feed(fetched[i : i + chunk]))
        while dec.needs_key is not None:
            dec.provide_key(KEYS[dec.needs_key.wrapped_key])
            out.append(dec.feed(b""))
    while dec.needs_key is not None:
        dec.provide_key(KEYS[dec.needs_key.wrapped_key])
        out.append(dec.feed(b""))
    dec.finish()
    return b"".join(out)


parts_strategy = st.lists(st.integers(0, 300), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    sizes=parts_strategy,
    seg=st.integers(1, 64),
    chunk=st.integers(1, 500),
    version=st.sampled_from([1, 2]),
    data=st.data(),
)
def test_random_splits_and_ranges_round_trip(
    sizes: list[int], seg: int, chunk: int, version: int, data: st.DataObject
) -> None:
    parts = [os.urandom(n) for n in sizes]
    plaintext = b"".join(parts)
    stored = _object(parts, seg, version)
    layout, _ = _run_discovery(stored)
    assert layout.stored_length == len(stored)
    assert layout.plaintext_length == len(plaintext)
    assert [s.plaintext_length for s in layout.streams] == sizes
    assert _read(stored, layout.plan_all(), chunk) == plaintext
    if plaintext:
        first = data.draw(st.integers(0, len(plaintext) - 1))
        last = data.draw(st.integers(first, len(plaintext) - 1))
        plan = layout.plan_range(first, last)
        assert _read(stored, plan, chunk) == plaintext[first : last + 1]

        # Only the segments holding the range are fetched: the fetch starts at the segment
        # holding `first` and ends with the segment holding `last`.
        def where(pos: int) -> tuple[int, int]:
            s = next(
                s
                for s in layout.streams
                if s.plaintext_offset <= pos < s.plaintext_offset + s.plaintext_length
            )
            index = (pos - s.plaintext_offset) // seg
            start = s.stored_offset + HEADER_SIZE + index * (seg + 16)
            end = start + min(seg, s.plaintext_length - index * seg) + 16 - 1
            if version == 2 and index == (s.plaintext_length - 1) // seg:
                end += TRAILER_SIZE  # a read to a stream's end authenticates its trailer
            return start, end

        assert plan.stored_first == where(first)[0]
        assert plan.stored_last == where(last)[1]


def test_equal_parts_are_found_in_one_parallel_round() -> None:
    parts = [os.urandom(100) for _ in range(20)] + [os.urandom(7)]
    layout, rounds = _run_discovery(_object(parts, 16))
    assert len(layout.streams) == 21
    assert len(rounds) == 1 and len(rounds[0]) == 20


def test_uneven_parts_need_more_rounds_but_are_exact() -> None:
    sizes = [100, 100, 50, 50, 50, 3, 200]
    layout, rounds = _run_discovery(_object([os.urandom(n) for n in sizes], 16))
    assert [s.plaintext_length for s in layout.streams] == sizes
    assert len(rounds) > 1


def test_a_stored_object_that_does_not_tile_is_rejected() -> None:
    stored = _object([b"a" * 50, b"b" * 50], 16)
    with pytest.raises(IntegrityError):
        _run_discovery(stored + b"\0" * 40)
    with pytest.raises(IntegrityError):
        _run_discovery(stored[:-5])


def test_a_swapped_stream_header_is_detected_while_reading() -> None:
    parts = [b"x" * 40, b"y" * 40]
    stored = _object(parts, 16)
    layout, _ = _run_discovery(stored)
    second = layout.streams[1].stored_offset
    other = seal(KEYS["vault:v1:key1"], "vault:v1:key1", b"z" * 40, 16)
    tampered = stored[:second] + other[:HEADER_SIZE] + stored[second + HEADER_SIZE :]
    with pytest.raises(IntegrityError):
        _read(tampered, layout.plan_all(), 1000)


def test_truncated_fetch_is_detected() -> None:
    stored = _object([b"x" * 40, b"y" * 40], 16)
    layout, _ = _run_discovery(stored)
    plan = layout.plan_all()
    dec = PlanDecryptor(plan)
    dec.feed(stored[:HEADER_SIZE])
    dec.provide_key(KEYS[dec.needs_key.wrapped_key] if dec.needs_key else b"")
    dec.feed(stored[HEADER_SIZE:-1])
    with pytest.raises(IntegrityError):
        dec.finish()


@settings(max_examples=100, deadline=None)
@given(sizes=parts_strategy, seg=st.integers(1, 64), chunk=st.integers(1, 500))
def test_sequential_decryption_of_a_whole_stored_object(
    sizes: list[int], seg: int, chunk: int
) -> None:
    parts = [os.urandom(n) for n in sizes]
    stored = _object(parts, seg)
    dec = SequentialDecryptor()
    out = []
    for i in range(0, len(stored), chunk):
        out.append(dec.feed(stored[i : i + chunk]))
        while dec.needs_key is not None:
            dec.provide_key(KEYS[dec.needs_key.wrapped_key])
            out.append(dec.feed(b""))
    dec.finish()
    assert b"".join(out) == b"".join(parts) and dec.streams == len(parts)
    truncated = SequentialDecryptor()
    truncated.feed(stored[:-1])
    while truncated.needs_key is not None:
        truncated.provide_key(KEYS[truncated.needs_key.wrapped_key])
        truncated.feed(b"")
    with pytest.raises(IntegrityError):
        truncated.finish()


def test_a_whole_objects_stream_is_never_one_of_several_nor_a_part_alone() -> None:
    key, wrapped = KEYS["vault:v1:key0"], "vault:v1:key0"
    whole = seal(key, wrapped, b"a whole object", 16, whole_object=True)
    part = seal(key, wrapped, b"one part", 16)
    single, _ = _run_discovery(whole)
    check_object_shape(single, multipart=False)
    joined, _ = _run_discovery(whole + part)
    with pytest.raises(IntegrityError):
        check_object_shape(joined, multipart=True)
    alone, _ = _run_discovery(part)
    with pytest.raises(IntegrityError):
        check_object_shape(alone, multipart=False)
    check_object_shape(alone, multipart=True)
    old = seal(key, wrapped, b"v1 objects carry no flags", 16, version=1)
    check_object_shape(_run_discovery(old)[0], multipart=False)


def test_a_name_bound_stream_reads_only_under_its_name() -> None:
    key, wrapped = KEYS["vault:v1:key0"], "vault:v1:key0"
    enc = StreamEncryptor(key, wrapped, 5, 16, binding=name_binding("b", "k"), whole_object=True)
    bound = enc.header + enc.feed(b"bound") + enc.finish()
    layout, _ = _run_discovery(bound)
    check_name_binding(layout, "b", "k")
    for bucket, other in (("b", "k2"), ("b2", "k"), ("bk", "")):
        with pytest.raises(IntegrityError):
            check_name_binding(layout, bucket, other)
    unbound, _ = _run_discovery(seal(key, wrapped, b"free", 16, whole_object=True))
    check_name_binding(unbound, "any", "name")
