#!/usr/bin/python3
"""A fault-injecting HTTP/1.1 proxy for the remote-source tests.

    faultproxy.py --upstream 127.0.0.1:PORT --port-file FILE [--latency-ms N]

Listens on a free loopback port (written to FILE once it listens) and forwards
GET and HEAD requests to the upstream server (nginx).  Faults are chosen by the
request path, so that each test asks for its own without any shared state:

    /_f/SPEC/PATH     forwards /PATH with the faults of SPEC applied
    /PATH             forwards /PATH unchanged (with --latency-ms only)

SPEC is a comma-separated list; N counts the requests with this same SPEC
(the first N get the fault, then they pass; N=0 means every request):

    skip=K        the first K requests pass untouched, the counting starts after

    lat=MS        wait MS milliseconds before forwarding (every request)
    503=N         answer 503 Service Unavailable
    slowdown=N    answer 503 with S3's SlowDown XML error
    429=N         answer 429 Too Many Requests
    500=N         answer 500 Internal Server Error
    reset=N       send the headers and half the body, then reset the connection
    trunc=N       send the headers and half the body, then close (short body)
    norange=N     forward without the Range header (200 with the whole body)
    shift=N       forward the Range moved 4096 bytes on (a 206 for other bytes)
    stall=N       wait 60 s before answering
    noetag=N      drop the ETag header from the response
    tag=WORD      nothing; makes a SPEC (and its counters) unique

GET /_count/SPEC answers how many requests with SPEC were seen.
"""
import argparse
import asyncio
import os
import re
import socket
import struct
import sys
from urllib.parse import unquote

counts = {}
LATENCY_MS = 0
UPSTREAM = ("127.0.0.1", 80)

REASONS = {200: "OK", 206: "Partial Content", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error", 503: "Service Unavailable"}


def parse_spec(spec):
    out = {}
    for item in spec.split(","):
        if not item:
            continue
        k, _, v = item.partition("=")
        out[k] = v
    return out


def fires(spec, key, n):
    """Whether fault `key` applies to request number n (1-based) of spec."""
    if key not in spec:
        return False
    try:
        limit = int(spec[key] or "0")
        n -= int(spec.get("skip", "0") or "0")
    except ValueError:
        return False
    return n >= 1 and (limit == 0 or n <= limit)


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return lines[0], [l for l in lines[1:] if l]


def header_map(lines):
    h = []
    for l in lines:
        k, _, v = l.partition(":")
        h.append((k.strip(), v.strip()))
    return h


def get(h, name):
    for k, v in h:
        if k.lower() == name.lower():
            return v
    return None


async def send_simple(writer, status, body=b"", extra=()):
    head = f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
    head += f"Content-Length: {len(body)}\r\nContent-Type: application/xml\r\n"
    for k, v in extra:
        head += f"{k}: {v}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()


def s3_error(code, message):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>fault</RequestId></Error>").encode()


def reset(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER 0: close sends a RST, as a dropped connection does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def forward(method, path, headers, spec):
    """One request upstream; returns (status line, headers, body)."""
    r, w = await asyncio.open_connection(*UPSTREAM)
    try:
        out = [f"{method} {path} HTTP/1.1"]
        for k, v in headers:
            if k.lower() in ("connection", "keep-alive", "proxy-connection"):
                continue
            out.append(f"{k}: {v}")
        out.append("Connection: close")
        w.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        await w.drain()
        status, lines = await read_head(r)
        h = header_map(lines)
        length = get(h, "Content-Length")
        if method == "HEAD":
            body = b""
        elif length is not None:
            body = await r.readexactly(int(length))
        else:
            body = await r.read()
        return status, h, body
    finally:
        w.close()


async def handle(reader, writer):
    try:
        while True:
            try:
                reqline, lines = await read_head(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            method, target, _ = reqline.split(" ", 2)
            headers = header_map(lines)
            spec_s, path = "", target
            m = re.match(r"^/_count/([^/]*)$", target)
            if m:
                body = str(counts.get(unquote(m.group(1)), 0)).encode()
                await send_simple(writer, 200, body)
                continue
            m = re.match(r"^/_f/([^/]*)(/.*)$", target)
            if m:
                spec_s, path = unquote(m.group(1)), m.group(2)
            spec = parse_spec(spec_s)
            n = counts[spec_s] = counts.get(spec_s, 0) + 1
            lat = int(spec.get("lat", "0") or 0) + LATENCY_MS
            if lat:
                await asyncio.sleep(lat / 1000)
            if fires(spec, "stall", n):
                await asyncio.sleep(60)
            for key, status, code in (("503", 503, None), ("slowdown", 503, "SlowDown"),
                                      ("429", 429, None), ("500", 500, None)):
                if fires(spec, key, n):
                    body = s3_error(code or "ServiceUnavailable", "injected fault")
                    await send_simple(writer, status, body, [("Retry-After", "0")])
                    break
            else:
                if fires(spec, "norange", n):
                    headers = [(k, v) for k, v in headers if k.lower() != "range"]
                if fires(spec, "shift", n):
                    rng = get(headers, "Range")
                    mm = re.match(r"bytes=(\d+)-(\d*)$", rng or "")
                    if mm:
                        a = int(mm.group(1)) + 4096
                        b = mm.group(2) and str(int(mm.group(2)) + 4096)
                        headers = [(k, v) for k, v in headers if k.lower() != "range"]
                        headers.append(("Range", f"bytes={a}-{b}"))
                status, h, body = await forward(method, path, headers, spec)
                drop = {"connection"}
                if fires(spec, "noetag", n):
                    drop.add("etag")
                head = status + "\r\n" + "".join(
                    f"{k}: {v}\r\n" for k, v in h if k.lower() not in drop)
                head += "Connection: keep-alive\r\n\r\n"
                writer.write(head.encode("latin-1"))
                if fires(spec, "reset", n) and len(body) > 1:
                    writer.write(body[: len(body) // 2])
                    await writer.drain()
                    reset(writer)
                    return
                if fires(spec, "trunc", n) and len(body) > 1:
                    writer.write(body[: len(body) // 2])
                    await writer.drain()
                    writer.close()
                    return
                writer.write(body)
                await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        if not writer.is_closing():
            writer.close()


async def main():
    global LATENCY_MS, UPSTREAM
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--latency-ms", type=int, default=0)
    a = ap.parse_args()
    host, port = a.upstream.rsplit(":", 1)
    UPSTREAM = (host, int(port))
    LATENCY_MS = a.latency_ms
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.rename(tmp, a.port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
