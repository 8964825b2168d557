"""A small authoritative DNS server on loopback (UDP and TCP on one port): the tests' DNS, and
the sandbox that `make run` points the platform at, so that nothing queries DNS off the machine.

Zones are a plain dict, changeable while the server runs:

    server.zone["example.com"] = {"TXT": ["v=spf1 -all"], "MX": ["10 mx.example.net."]}
    server.zone["broken.example"] = SERVFAIL     # answers SERVFAIL
    server.zone["slow.example"] = TIMEOUT        # never answers
    server.fail_first["flaky.example"] = 1       # SERVFAIL for the first query, then answers

A name that is absent is NXDOMAIN; a name present without the asked type answers NODATA.
TXT values are strings (split into 255-byte chunks) or tuples of bytes/str chunks. CNAMEs
are followed inside the zone, loops stopped, as an authoritative server does. Every query
is logged in `queries` as (name, type).
"""

from __future__ import annotations

import socketserver
import struct
import threading
from collections import defaultdict

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.TXT import TXT

SERVFAIL = "SERVFAIL"
TIMEOUT = "TIMEOUT"


def _key(name) -> str:
    text = name.to_text() if isinstance(name, dns.name.Name) else str(name)
    return text.rstrip(".").lower()


def _txt_rdata(value) -> TXT:
    if isinstance(value, str | bytes):
        raw = value.encode() if isinstance(value, str) else value
        chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    else:
        chunks = [c.encode() if isinstance(c, str) else c for c in value]
    return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)


def _rdata(rdtype: str, value):
    if rdtype == "TXT":
        return _txt_rdata(value)
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), value)


class DnsServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.zone: dict[str, object] = {}
        self.fail_first: dict[str, int] = {}
        self.queries: list[tuple[str, str]] = []
        self._seen: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        server = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self):
                data, sock = self.request
                reply = server.answer(data, max_size=512)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    header = self.request.recv(2)
                    if len(header) < 2:
                        return
                    (length,) = struct.unpack("!H", header)
                    data = b""
                    while len(data) < length:
                        chunk = self.request.recv(length - len(data))
                        if not chunk:
                            return
                        data += chunk
                    reply = server.answer(data, max_size=65535)
                    if reply is not None:
                        self.request.sendall(struct.pack("!H", len(reply)) + reply)
                except OSError:
                    return

        udp_class = type("U", (socketserver.ThreadingMixIn, socketserver.UDPServer), {})
        tcp_class = type("T", (socketserver.ThreadingMixIn, socketserver.TCPServer), {})
        udp_class.daemon_threads = tcp_class.daemon_threads = True
        tcp_class.allow_reuse_address = True
        # Bind UDP first (port 0 picks a free one), then TCP on the same number.
        for _ in range(20):
            self.udp = udp_class((host, port), Udp)
            self.port = self.udp.server_address[1]
            try:
                self.tcp = tcp_class((host, self.port), Tcp)
                break
            except OSError:
                self.udp.server_close()
                if port:
                    raise
        else:
            raise RuntimeError("no free port for UDP and TCP together")
        self.host = host
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for s in (self.udp, self.tcp)
        ]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> DnsServer:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        for s in (self.udp, self.tcp):
            s.shutdown()
            s.server_close()

    def queries_for(self, name: str, rdtype: str | None = None) -> int:
        return sum(
            1 for n, t in self.queries if n == _key(name) and (rdtype is None or t == rdtype)
        )

    def answer(self, wire: bytes, *, max_size: int) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        name, rdtype = _key(question.name), dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self.queries.append((name, rdtype))
            self._seen[name] += 1
            failing = self._seen[name] <= self.fail_first.get(name, 0)
        entry = self.zone.get(name)
        if entry == TIMEOUT:
            return None
        if entry == SERVFAIL or failing:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        self._fill(response, question.name, rdtype)
        return response.to_wire(max_size=max_size, prefer_truncation=True)

    def _fill(self, response, qname: dns.name.Name, rdtype: str) -> None:
        seen = set()
        current = qname
        while True:
            key = _key(current)
            entry = self.zone.get(key)
            if entry is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                return
            if not isinstance(entry, dict):  # SERVFAIL/TIMEOUT inside a chain
                response.set_rcode(dns.rcode.SERVFAIL)
                return
            if rdtype in entry or rdtype == "ANY":
                self._add(response, current, rdtype, entry[rdtype])
                return
            if "CNAME" in entry:
                target = entry["CNAME"]
                target = target[0] if isinstance(target, list) else target
                self._add(response, current, "CNAME", [target])
                if key in seen:
                    return
                seen.add(key)
                current = dns.name.from_text(target)
                continue
            return  # NODATA

    @staticmethod
    def _add(response, owner: dns.name.Name, rdtype: str, values) -> None:
        values = values if isinstance(values, list) else [values]
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, dns.rdatatype.from_text(rdtype))
        for value in values:
            rrset.add(_rdata(rdtype, value), ttl=60)
        if rrset not in response.answer:
            response.answer.append(rrset)


def free_udp_tcp_server() -> DnsServer:
    return DnsServer().start()
