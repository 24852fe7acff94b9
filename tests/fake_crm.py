"""CRM answers for client tests: canned bodies through the real reading path, and raw-socket CRMs."""

import io
import socket
import threading
import time

import requests
from urllib3 import HTTPResponse


class CannedSession(requests.Session):
    """Answers every request with one canned response, read through urllib3 like a real one."""

    def __init__(self, status: int, body: bytes, headers: dict | None = None):
        super().__init__()
        self.status, self.body, self.headers_out = status, body, headers or {}
        self.sent: list[dict] = []

    def request(self, method, url, **kw):
        self.sent.append({"method": method, "url": url, **kw})
        resp = requests.Response()
        resp.status_code, resp.url = self.status, url
        resp.headers.update(self.headers_out)
        resp.raw = HTTPResponse(body=io.BytesIO(self.body), headers=self.headers_out, status=self.status,
                                preload_content=False, decode_content=False)
        return resp


class RawCrm:
    """A TCP server that reads each request, then runs ``answer(conn)``: any bytes, at any pace."""

    def __init__(self, answer):
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/smapi/rest"
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        with conn:
            conn.settimeout(5)
            try:
                self.requests.append(conn.recv(65536))
                self.answer(conn)
            except OSError:
                pass  # the client hung up: what a deadline does

    def close(self):
        self.listener.close()


def drip(data: bytes, every: float):
    """An answer that sends ``data`` one byte every ``every`` seconds (headers included)."""

    def answer(conn):
        for i in range(len(data)):
            conn.sendall(data[i:i + 1])
            time.sleep(every)

    return answer


def http_answer(status: str, body: bytes, headers: dict | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
