"""Throughput of the wire codecs against a bare ``struct`` baseline, in the same run.

Run: ``python benchmarks/bench_wire.py`` (``--quick`` for a short smoke run).

For each payload size (100 B, 1 KB) and destination count (1, 10 groups) it measures
messages per second for:

* client encode: ``ClientSession.send(multicast)`` (the Multicast is built beforehand);
* client decode: ``receive_data`` of a batch, then ``next_event()`` per message, yielding
  a validated ``DataMessage``;
* daemon decode: ``ServerSession`` on the client's bytes, all §5.1 checks, yielding an
  ``IncomingMulticast``;
* daemon forward encode: ``encode_forward(incoming)``, the bytes sent to every receiver;

and the baseline does the least work that produces the same bytes or fields with
``struct.pack`` / ``unpack_from`` and slicing, with no validation and no event objects.
The ratio is wire / baseline (1.0 would be free abstraction).
"""

from __future__ import annotations

import argparse
import struct
import time
from collections.abc import Callable

from spreadq.wire import (
    NEED_DATA,
    ClientSession,
    DataMessage,
    IncomingMulticast,
    Multicast,
    ServerSession,
    ServiceType,
    encode_daemon_message,
    encode_forward,
)

ME = "#bench#localhost"
BATCH = 1000
HEADER = struct.Struct("<I32siIi")


def open_client() -> ClientSession:
    client = ClientSession("bench")
    client.start()
    client.receive_data(b"\x05NULL ")
    client.next_event()
    client.data_to_send()
    client.receive_data(bytes([1, 5, 0, 1, len(ME)]) + ME.encode())
    client.next_event()
    return client


def open_server() -> ServerSession:
    server = ServerSession()
    server.receive_data(bytes([5, 0, 1, 1, 5]) + b"bench")
    server.next_event()
    server.auth_list()
    server.receive_data(b"NULL".ljust(90, b"\0"))
    server.next_event()
    server.accept(ME)
    return server


def rate(run_batch: Callable[[], int], seconds: float) -> float:
    """Messages per second: repeat ``run_batch`` (which returns its count) for ``seconds``."""
    run_batch()  # warm caches
    done = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        done += run_batch()
        elapsed = time.perf_counter() - start
    return done / elapsed


def cases(size: int, groups: int, seconds: float) -> list[tuple[str, float, float]]:
    names = tuple(f"group-{index}" for index in range(groups))
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    multicast = Multicast(names, payload, ServiceType.AGREED, 7)
    client = open_client()
    one = client.send(multicast)
    incoming_stream = one * BATCH
    message = DataMessage(ME, names, ServiceType.AGREED, 7, payload)
    outgoing_stream = encode_daemon_message(message) * BATCH

    # --- wire ---
    def client_encode() -> int:
        send = client.send
        for _ in range(BATCH):
            send(multicast)
        return BATCH

    def client_decode() -> int:
        session = open_client()
        session.receive_data(outgoing_stream)
        next_event = session.next_event
        count = 0
        while next_event() is not NEED_DATA:
            count += 1
        return count

    def server_decode() -> int:
        session = open_server()
        session.receive_data(incoming_stream)
        next_event = session.next_event
        count = 0
        while next_event() is not NEED_DATA:
            count += 1
        return count

    server = open_server()
    server.receive_data(one)
    incoming = server.next_event()
    assert isinstance(incoming, IncomingMulticast)

    def forward_encode() -> int:
        for _ in range(BATCH):
            encode_forward(incoming)
        return BATCH

    # --- baseline: struct only ---
    sender = ME.encode()
    raw_names = [name.encode() for name in names]
    group_fields = struct.Struct("32s" * groups)

    def base_encode() -> int:
        pack = HEADER.pack
        for _ in range(BATCH):
            b"".join(
                (
                    pack(0x80000090, sender, groups, 0x80000780, len(payload)),
                    group_fields.pack(*raw_names),
                    payload,
                )
            )
        return BATCH

    def base_decode_from(stream: bytes) -> Callable[[], int]:
        def run() -> int:
            unpack = HEADER.unpack_from
            unpack_groups = group_fields.unpack_from
            position, count, end = 0, 0, len(stream)
            while position < end:
                _, _, n, _, data_len = unpack(stream, position)
                fields = unpack_groups(stream, position + 48)
                tuple(field.rstrip(b"\0").decode("latin-1") for field in fields)
                start = position + 48 + 32 * n
                stream[start : start + data_len]
                position = start + data_len
                count += 1
            return count

        return run

    return [
        ("client encode", rate(client_encode, seconds), rate(base_encode, seconds)),
        (
            "client decode",
            rate(client_decode, seconds),
            rate(base_decode_from(outgoing_stream), seconds),
        ),
        (
            "daemon decode",
            rate(server_decode, seconds),
            rate(base_decode_from(incoming_stream), seconds),
        ),
        ("daemon forward", rate(forward_encode, seconds), rate(base_encode, seconds)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 ms per case instead of 300")
    seconds = 0.05 if parser.parse_args().quick else 0.3
    print(
        f"{'case':<16}{'payload':>9}{'groups':>8}{'wire msg/s':>14}{'struct msg/s':>15}{'ratio':>8}"
    )
    for size in (100, 1024):
        for groups in (1, 10):
            for name, wire, base in cases(size, groups, seconds):
                ratio = wire / base
                print(f"{name:<16}{size:>8}B{groups:>8}{wire:>14,.0f}{base:>15,.0f}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
