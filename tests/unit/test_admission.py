"""Admission limits with a fake clock: a key's request rate and its open connections."""

from __future__ import annotations

import pytest

from tether.config import AdmissionLimits
from tether.protocol.errors import ApiError
from tether.server.admission import Admission, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0, tokens=2.0, updated=0.0)
    assert bucket.take(0.0) == 0 and bucket.take(0.0) == 0
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token comes every half second
    assert bucket.take(0.5) == 0
    assert bucket.take(10.0) == 0 and bucket.take(10.0) == 0 and bucket.take(10.0) > 0  # burst caps it


def test_each_key_has_its_own_rate() -> None:
    clock = Clock()
    admission = Admission(AdmissionLimits(rate_limit_rps=1.0), clock=clock)
    admission.request("alice")
    with pytest.raises(ApiError) as refused:
        admission.request("alice")
    assert refused.value.status == 429 and refused.value.code == "rate_limit_exceeded"
    assert refused.value.http_headers() == {"retry-after": "1"}
    admission.request("bob")
    clock.now += 1.0
    admission.request("alice")


def test_no_rate_means_no_limit() -> None:
    admission = Admission(AdmissionLimits())
    for _ in range(1000):
        admission.request("k")


def test_connections_per_key_and_in_total() -> None:
    admission = Admission(AdmissionLimits(ws_max_connections=3, ws_max_connections_per_key=2))
    admission.open_connection("alice")
    admission.open_connection("alice")
    with pytest.raises(ApiError) as per_key:
        admission.open_connection("alice")
    assert per_key.value.status == 429
    admission.open_connection("bob")
    with pytest.raises(ApiError) as total:
        admission.open_connection("carol")
    assert total.value.status == 503 and total.value.http_headers() == {"retry-after": "1"}
    admission.close_connection("alice")
    admission.open_connection("carol")
