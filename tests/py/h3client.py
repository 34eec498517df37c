"""The aioquic client the repository's Python tools share (tests/py/h3_get.py,
tests/py/h3_live_probe.py, interop/aioquic_client.py, scripts/flood.py).

One QUIC connection ([`Client`], the protocol given to aioquic's connect())
speaking HTTP/3 or HTTP/0.9 (ALPN hq-interop); each GET is a [`Stream`]
whose events (headers, data, end, reset) are queued in order for the caller
to read as they arrive.

    cfg = config(ca="cert.pem")
    async with connect(host, port, configuration=cfg, create_protocol=Client) as c:
        status = await c.get("localhost:4433", "/live/test/manifest.mpd", on_data=print)
"""
import asyncio
import ssl

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h0.connection import H0_ALPN, H0Connection
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted, StreamReset


def config(ca=None, server_name="localhost", alpn="h3", **kwargs):
    """A client configuration: ALPN h3 or hq (hq-interop), the certificate in
    PEM file `ca` trusted (no verification without one); more
    QuicConfiguration fields in kwargs (idle_timeout, max_data, ...)."""
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H0_ALPN if alpn == "hq" else H3_ALPN,
                            server_name=server_name, **kwargs)
    if ca:
        cfg.load_verify_locations(ca)
        cfg.verify_mode = ssl.CERT_REQUIRED
    else:
        cfg.verify_mode = ssl.CERT_NONE
    return cfg


class Stream:
    """One request's response, as queued events: ("headers", status, headers
    dict), ("data", bytes), ("end",) or ("reset", error code)."""

    def __init__(self, stream_id):
        self.stream_id = stream_id
        self.queue = asyncio.Queue()

    async def events(self):
        """Yield the events until the response ends or is reset."""
        while True:
            ev = await self.queue.get()
            yield ev
            if ev[0] in ("end", "reset"):
                return


class Client(QuicConnectionProtocol):
    """A QUIC connection that sends GETs over HTTP/3 (or HTTP/0.9 after
    use("hq")) and routes each response's events to its Stream."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = H0Connection(self._quic) if self._quic.configuration.alpn_protocols == H0_ALPN \
            else H3Connection(self._quic)
        self.streams = {}  # stream id -> Stream
        # aioquic's wait_connected() hangs when the handshake completed before
        # it is called (it only records completion for a waiting caller).
        self.handshake_done = asyncio.Event()

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            self.handshake_done.set()
        if isinstance(event, StreamReset):
            s = self.streams.get(event.stream_id)
            if s:
                s.queue.put_nowait(("reset", event.error_code))
            return
        for ev in self.http.handle_event(event):
            s = self.streams.get(getattr(ev, "stream_id", None))
            if s is None:
                continue
            if isinstance(ev, HeadersReceived):
                h = {k.decode(): v.decode() for k, v in ev.headers}
                # HTTP/0.9 has no status: a response is a 200.
                s.queue.put_nowait(("headers", int(h.get(":status", "200")), h))
            elif isinstance(ev, DataReceived) and ev.data:
                s.queue.put_nowait(("data", ev.data))
            if isinstance(ev, (HeadersReceived, DataReceived)) and ev.stream_ended:
                s.queue.put_nowait(("end",))

    def request(self, authority, path, user_agent="aioquic-h3live"):
        """Send GET `path` on a new stream; its events come on the returned Stream."""
        sid = self._quic.get_next_available_stream_id()
        s = self.streams[sid] = Stream(sid)
        self.http.send_headers(
            stream_id=sid,
            headers=[(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority.encode()),
                     (b":path", path.encode()), (b"user-agent", user_agent.encode())],
            end_stream=True,
        )
        self.transmit()
        return s

    async def get(self, authority, path, on_data=None, user_agent="aioquic-h3live"):
        """GET `path`, calling on_data(bytes) per piece; returns the status,
        or "reset" if the stream was reset."""
        s = self.request(authority, path, user_agent)
        status = None
        try:
            async for ev in s.events():
                if ev[0] == "headers":
                    status = ev[1]
                elif ev[0] == "data" and on_data:
                    on_data(ev[1])
                elif ev[0] == "reset":
                    return "reset"
            return status
        finally:
            del self.streams[s.stream_id]
