"""The listening socket `tether serve` hands to uvicorn: every connection accepted on it has
Nagle's algorithm off. uvicorn writes a response's head and body separately; with Nagle on, the
body waited for the client's delayed ACK, about 40 ms per answer (GET /version took 44 ms
instead of 0.4 ms). asyncio, which uvicorn serves through, sets TCP_NODELAY only on sockets
whose protocol says TCP, so this is checked through asyncio's own transport, as uvicorn runs it."""

from __future__ import annotations

import asyncio
import socket

from tether.serve.app import listen


def nodelay_of_accepted(sock: socket.socket) -> int:
    port = sock.getsockname()[1]

    async def main() -> int:
        loop = asyncio.get_running_loop()
        got: asyncio.Future = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                accepted = transport.get_extra_info("socket")
                got.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await loop.create_server(Probe, sock=sock)
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(got, 10)
        finally:
            writer.close()
            server.close()

    return asyncio.run(main())


def test_every_connection_the_server_accepts_has_nagle_off():
    assert nodelay_of_accepted(listen("127.0.0.1", 0)) != 0


def test_the_probe_sees_nagle_on_a_socket_that_does_not_say_tcp():
    """The check above can fail: a listening socket made with protocol 0, as serve's was."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    assert nodelay_of_accepted(sock) == 0
