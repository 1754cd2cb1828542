"""A real DNS server on loopback (UDP, dnspython's wire format) answering A records the test sets."""
from __future__ import annotations

import socket
import threading

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest


class LoopbackDns:
    def __init__(self):
        self.records: dict[str, list[str]] = {}
        # True: every question is answered SERVFAIL (a resolver that cannot tell).
        self.servfail = False
        self.questions: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except OSError:
                continue
            query = dns.message.from_wire(data)
            answer = dns.message.make_response(query)
            if self.servfail:
                answer.set_rcode(dns.rcode.SERVFAIL)
                self._sock.sendto(answer.to_wire(), peer)
                continue
            for question in query.question:
                name = question.name.to_text().rstrip(".").lower()
                self.questions.append(name)
                if name not in self.records:
                    answer.set_rcode(dns.rcode.NXDOMAIN)
                elif question.rdtype == dns.rdatatype.A and self.records[name]:
                    answer.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", *self.records[name]))
            self._sock.sendto(answer.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


@pytest.fixture
def loopback_dns(app):
    """The panel's TLS pre-checks ask this server (the INTERCITY_DNS_RESOLVER setting)."""
    server = LoopbackDns()
    app.config["DNS_RESOLVER"] = server.address
    yield server
    server.close()
