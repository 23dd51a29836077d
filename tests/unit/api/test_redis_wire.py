"""The hot path's RESP parser: complete replies, partial ones, nested arrays and errors."""

import pytest
from redis import exceptions as rx

from api.redis_wire import _encode, _Incomplete, _parse


def test_parse_reads_every_reply_type_the_hot_path_gets():
    assert _parse(b"+OK\r\n", 0) == ("OK", 5)
    assert _parse(b":42\r\n", 0) == (42, 5)
    assert _parse(b"$-1\r\n", 0) == (None, 5)
    assert _parse(b"$5\r\nh\xc3\xa9lo\r\n", 0) == ("hélo", 11)
    nested = b"*3\r\n:1\r\n$2\r\nab\r\n*2\r\n:-1\r\n$-1\r\n"
    assert _parse(nested, 0) == ([1, "ab", [-1, None]], len(nested))
    error, _ = _parse(b"-NOSCRIPT No matching script\r\n", 0)
    assert isinstance(error, rx.NoScriptError)
    error, _ = _parse(b"-ERR wrong number of arguments\r\n", 0)
    assert isinstance(error, rx.ResponseError) and not isinstance(error, rx.NoScriptError)


@pytest.mark.parametrize("partial", [b"", b"$5\r\nhel", b"*2\r\n:1\r\n", b":4"])
def test_parse_waits_for_the_rest_of_a_partial_reply(partial):
    with pytest.raises(_Incomplete):
        _parse(partial, 0)


def test_encode_sends_each_argument_as_a_bulk_string():
    assert _encode(("MGET", "a", 1)) == b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\n1\r\n"
