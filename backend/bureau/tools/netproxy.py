"""TCP forwarders on loopback that can be cut and healed: a network partition between real
processes without touching the machine's network. Used by the multi-process tests and the soak."""

from __future__ import annotations

import socket
import threading

from .mosquitto import free_port


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.blocked = False
        self.stalled = False  # connections stay open but nothing gets through (a half-open path)
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(32)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.blocked:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # the connect timeout must not end an idle link
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or self.blocked:
                    break
                if not self.stalled:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)

    def cut(self) -> None:
        self.blocked = True
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stall(self) -> None:
        """Stop forwarding without closing anything: both ends think the connection is up."""
        self.stalled = True

    def heal(self) -> None:
        self.blocked = False
        self.stalled = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        try:
            self._server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._server.close()


class LinkProxies:
    """One proxy per directed peer link of a network, so any bureau can be cut off from all its
    peers in both directions. Launch the nodes with `node_env` so they dial through the proxies."""

    def __init__(self, genesis: dict) -> None:
        self.ids = [v["id"] for v in genesis["validators"]]
        ports = {v["id"]: int(v["address"].rsplit(":", 1)[1]) for v in genesis["validators"]}
        self.links = {(a, b): Proxy(ports[b]) for a in self.ids for b in self.ids if a != b}

    @property
    def node_env(self) -> dict[str, dict]:
        return {a: {"BUREAU_PEER_ADDRESSES": ",".join(f"{b}=127.0.0.1:{self.links[(a, b)].port}"
                                                      for b in self.ids if b != a)} for a in self.ids}

    def isolate(self, node_id: str) -> None:
        for (a, b), proxy in self.links.items():
            if node_id in (a, b):
                proxy.cut()

    def heal(self) -> None:
        for proxy in self.links.values():
            proxy.heal()

    def close(self) -> None:
        for proxy in self.links.values():
            proxy.close()
