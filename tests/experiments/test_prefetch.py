"""The harness's background batch drawing (`harness.prefetch`): batches come in the stream's
order, exactly `count` of them, a generator's error reaches the consumer, and a consumer that
stops early does not leave the producer blocked."""

import itertools
import threading

import pytest

from sparkc.experiments.harness import prefetch


def test_order_and_count():
    assert list(prefetch(iter(range(100)), 37, depth=3)) == list(range(37))


def test_error_reaches_the_consumer():
    def broken():
        yield 1
        yield 2
        raise ValueError("bad batch")

    it = prefetch(broken(), 10, depth=1)
    assert [next(it), next(it)] == [1, 2]
    with pytest.raises(ValueError, match="bad batch"):
        next(it)


def test_early_stop_ends_the_producer():
    before = threading.active_count()
    it = prefetch(itertools.count(), 1000, depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # the consumer's `finally`: stop and join
    assert threading.active_count() == before
