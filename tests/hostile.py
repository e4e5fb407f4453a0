"""Hostile and careless cameras for the tests: real TCP servers on loopback that send chosen bytes."""

from __future__ import annotations

import socket
import struct
import threading

import cv2
import numpy as np


def bomb_jpeg(width: int, height: int) -> bytes:
    """A ~600-byte JPEG whose frame header declares ``width`` x ``height`` pixels (a decompression bomb)."""
    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes())
    index = 2
    while data[index + 1] != 0xC0:  # OpenCV writes baseline JPEGs: SOF0
        index += 2 + struct.unpack_from(">H", data, index + 2)[0]
    struct.pack_into(">HH", data, index + 5, height, width)
    return bytes(data)


class RawServer:
    """Answers each connection on 127.0.0.1 by calling ``reply(connection, request_bytes)`` on its own thread;
    counts connections and keeps every request's bytes (headers included)."""

    def __init__(self, reply):
        self.reply = reply
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def connections(self) -> int:
        return len(self.requests)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            connection.settimeout(5)
            try:
                while b"\r\n\r\n" not in request:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    request += chunk
                self.requests.append(request)
                self.reply(connection, self._stopping)
            except OSError:
                pass

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
