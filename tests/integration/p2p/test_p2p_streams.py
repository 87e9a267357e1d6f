"""The /capa/* stream protocols between real nodes, and peers that misbehave on them."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import pytest
import trio

from node.chain.typed_data import JobRequest
from node.p2p.config import StreamLimits
from node.p2p.errors import PeerTimeoutError, RemoteRefused, StreamClosedError
from node.p2p.evidence_protocol import fetch_evidence
from node.p2p.quote_protocol import request_quote
from node.p2p.transfer import INPUT_PROTOCOL, download_result, upload_input
from node.p2p.wire import encode_object, hex_of

KIB = 1024
CLIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def job_request() -> JobRequest:
    return JobRequest(
        b"\x01" * 32, b"\x02" * 32, 1 << 5, bytes(32), 0, 10**18, int(time.time()) + 600, 1
    )


def test_evidence_quote_input_and_result_round_trip(kit: Any) -> None:
    async def scenario() -> None:
        provider = kit.FakeProvider()
        seller, client = kit.node(provider), kit.node()
        async with kit.running(seller, client):
            await client.host.connect(kit.address_of(seller))
            bundle = await fetch_evidence(client.host, seller.peer_id)
            assert bundle.tee_kind == 5 and bundle.collateral_location == "sim://none"

            request = job_request()
            signed = await request_quote(
                client.host,
                seller.peer_id,
                request,
                client=CLIENT,
                provider=provider.address,
                chain_id=kit.CHAIN_ID,
                market=kit.MARKET,
                now=int(time.time()),
            )
            job_id = request.job_id(CLIENT)
            assert signed.offer.request_hash == request.request_hash(CLIENT)

            sealed = os.urandom(3 * 1024 * KIB + 123)
            receipt = await upload_input(
                client.host, seller.peer_id, job_id, sealed, chunk_size=256 * KIB
            )
            assert receipt.sha256 == hashlib.sha256(sealed).digest() and receipt.resumed_from == 0
            assert provider.inputs.stored(job_id) == sealed

            expected = provider.put_result(job_id, os.urandom(2 * 1024 * KIB + 7))
            got = await download_result(client.host, seller.peer_id, job_id)
            assert got == expected

            provider.refuse_quotes = True
            with pytest.raises(RemoteRefused, match="busy"):
                await request_quote(
                    client.host,
                    seller.peer_id,
                    request,
                    client=CLIENT,
                    provider=provider.address,
                    chain_id=kit.CHAIN_ID,
                    market=kit.MARKET,
                    now=int(time.time()),
                )
            with pytest.raises(RemoteRefused, match="no_result"):
                await download_result(client.host, seller.peer_id, b"\x09" * 32)

    trio.run(scenario)


def test_an_interrupted_upload_resumes_and_a_wrong_hash_is_discarded(kit: Any) -> None:
    async def scenario() -> None:
        provider = kit.FakeProvider()
        seller, client = kit.node(provider), kit.node()
        job_id = b"\x05" * 32
        sealed = os.urandom(4 * 1024 * KIB)
        async with kit.running(seller, client):
            await client.host.connect(kit.address_of(seller))
            # Send the header and two chunks by hand, then drop the stream.
            async with client.host.exchange(seller.peer_id, INPUT_PROTOCOL, 5.0) as stream:
                header = {
                    "job": hex_of(job_id),
                    "size": len(sealed),
                    "chunk": 1024 * KIB,
                    "sha256": hex_of(hashlib.sha256(sealed).digest()),
                }
                await stream.write_frame(encode_object(header))
                await stream.read_frame(4096)
                for i in range(2):
                    await stream.write_frame(sealed[i * 1024 * KIB : (i + 1) * 1024 * KIB])
                    await stream.read_frame(4096)
                await stream.reset()
            receipt = await upload_input(client.host, seller.peer_id, job_id, sealed)
            assert receipt.resumed_from == 2 * 1024 * KIB
            assert provider.inputs.stored(job_id) == sealed

            # A client announcing one hash and sending other bytes gets refused.
            other = b"\x06" * 32
            async with client.host.exchange(seller.peer_id, INPUT_PROTOCOL, 5.0) as stream:
                header = {
                    "job": hex_of(other),
                    "size": 256 * KIB,
                    "chunk": 256 * KIB,
                    "sha256": hex_of(b"\x00" * 32),
                }
                await stream.write_frame(encode_object(header))
                await stream.read_frame(4096)
                await stream.write_frame(os.urandom(256 * KIB))
                await stream.read_frame(4096)  # the ack
                assert b"hash_mismatch" in await stream.read_frame(4096)

    trio.run(scenario)


def test_malformed_and_oversized_frames_reset_the_stream_and_penalise(kit: Any) -> None:
    async def scenario() -> None:
        provider = kit.FakeProvider()
        seller, rogue, client = kit.node(provider), kit.node(), kit.node()
        async with kit.running(seller, rogue, client):
            await rogue.host.connect(kit.address_of(seller))
            await client.host.connect(kit.address_of(seller))
            async with client.host.exchange(seller.peer_id, INPUT_PROTOCOL, 5.0) as stream:
                await stream.write_frame(b"{this is not json")
                with pytest.raises(StreamClosedError):
                    await stream.read_frame(4096)
            async with rogue.host.exchange(seller.peer_id, INPUT_PROTOCOL, 5.0) as stream:
                await stream._stream.write((50 * 1024 * 1024).to_bytes(4, "big"))
                with pytest.raises(StreamClosedError):
                    await stream.read_frame(4096)
            assert seller.penalties.points(rogue.peer_id) > 40
            assert seller.penalties.points(client.peer_id) > 40
            assert (await fetch_evidence(rogue.host, seller.peer_id)).tee_kind == 5

    trio.run(scenario)


def test_a_slowloris_peer_is_cut_off_while_others_are_served(kit: Any) -> None:
    async def scenario() -> None:
        provider = kit.FakeProvider()
        limits = StreamLimits(read_timeout_s=1.0)
        seller = kit.node(provider, streams=limits)
        staller, client = kit.node(), kit.node()
        async with kit.running(seller, staller, client):
            await staller.host.connect(kit.address_of(seller))
            await client.host.connect(kit.address_of(seller))
            async with staller.host.exchange(seller.peer_id, INPUT_PROTOCOL, 5.0) as stream:
                header = {
                    "job": hex_of(b"\x07" * 32),
                    "size": 512 * KIB,
                    "chunk": 256 * KIB,
                    "sha256": hex_of(b"\x00" * 32),
                }
                await stream.write_frame(encode_object(header))
                await stream.read_frame(4096)
                # Announce a chunk, send a little of it, then stall.
                await stream._stream.write((256 * KIB).to_bytes(4, "big") + b"x" * 100)
                # Meanwhile an honest client is served at full speed.
                sealed = os.urandom(1024 * KIB)
                receipt = await upload_input(client.host, seller.peer_id, b"\x08" * 32, sealed)
                assert receipt.size == len(sealed)
                with pytest.raises(StreamClosedError):
                    await stream.read_frame(4096, timeout_s=5.0)
            assert seller.penalties.points(staller.peer_id) > 0

    trio.run(scenario)


def test_a_silent_provider_times_out_the_client(kit: Any) -> None:
    async def scenario() -> None:
        silent, client = kit.node(), kit.node()

        async def never_answer(peer: Any, stream: Any) -> None:
            await trio.sleep_forever()

        silent.host.set_stream_handler("/capa/evidence/1", never_answer, deadline_s=30.0)
        async with kit.running(silent, client):
            await client.host.connect(kit.address_of(silent))
            with pytest.raises(PeerTimeoutError):
                await fetch_evidence(client.host, silent.peer_id, timeout_s=0.5)

    trio.run(scenario)
