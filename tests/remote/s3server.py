#!/usr/bin/python3
"""A small S3 endpoint that really checks SigV4 signatures, for the tests.

    s3server.py --root DIR --port-file FILE --region REGION [--domain NAME]
                --key AKID:SECRET ... [--token AKID:SECRET:TOKEN ...]
                [--expired-token TOKEN ...]

Serves DIR/BUCKET/KEY for GET and HEAD, path-style (/BUCKET/KEY) or
virtual-hosted (Host: BUCKET.NAME:PORT).  Every request must be signed
(AWS4-HMAC-SHA256 in the Authorization header): the signature is computed
again with botocore's own signer (Debian's python3-botocore, which the
AWS SDKs sign with) over the headers the request says it signed, and
compared.  Answers as S3 does, with XML errors carrying a Code:

  no Authorization                  403 AccessDenied
  unknown access key                403 InvalidAccessKeyId
  a region other than REGION        400 AuthorizationHeaderMalformed
  no x-amz-content-sha256           400 InvalidRequest
  x-amz-date more than 15 min off   403 RequestTimeTooSkewed
  a temporary key without its token 403 InvalidToken
  an expired session token          400 ExpiredToken
  a wrong signature                 403 SignatureDoesNotMatch
  no bucket / no key                404 NoSuchBucket / NoSuchKey
  If-Match not the ETag             412 PreconditionFailed
  If-None-Match holding the ETag    304 Not Modified
  a range past the end              416 InvalidRange

ETags are the MD5 of the content, quoted, as S3 gives them for simple
uploads; ranged GETs answer 206 with Content-Range.  Tokens named by
--expired-token are the expired ones: the server decides.
"""
import argparse
import calendar
import datetime
import email.utils
import hashlib
import hmac
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ARGS = None
KEYS = {}       # access key -> (secret, token or None)
EXPIRED = set()
ETAGS = {}      # (path, mtime_ns, size) -> etag
ETAG_LOCK = threading.Lock()
AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$")


def etag_of(path, st):
    key = (path, st.st_mtime_ns, st.st_size)
    with ETAG_LOCK:
        if key in ETAGS:
            return ETAGS[key]
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    tag = '"' + h.hexdigest() + '"'
    with ETAG_LOCK:
        ETAGS[key] = tag
    return tag


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if ARGS.log:
            sys.stderr.write("s3server: " + fmt % args + "\n")

    def error(self, status, code, message, extra=()):
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
                f"<RequestId>test</RequestId></Error>").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def check_auth(self):
        """None when the request is properly signed, else the error sent."""
        auth = self.headers.get("Authorization")
        if not auth:
            return self.error(403, "AccessDenied", "Access Denied")
        m = AUTH_RE.match(auth.strip())
        if not m:
            return self.error(400, "AuthorizationHeaderMalformed",
                              "The authorization header is malformed.")
        akid, day, region, service, signed, signature = m.groups()
        if akid not in KEYS:
            return self.error(403, "InvalidAccessKeyId",
                              "The AWS Access Key Id you provided does not exist in our records.")
        if region != ARGS.region or service != "s3":
            return self.error(400, "AuthorizationHeaderMalformed",
                              f"The authorization header is malformed; the region '{region}' "
                              f"is wrong; expecting '{ARGS.region}'")
        if "x-amz-content-sha256" not in self.headers:
            return self.error(400, "InvalidRequest",
                              "Missing required header for this request: x-amz-content-sha256")
        amz_date = self.headers.get("x-amz-date", "")
        try:
            t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
        except ValueError:
            return self.error(403, "AccessDenied", "AWS authentication requires a valid Date "
                              "or x-amz-date header")
        skew = abs(calendar.timegm(t.timetuple()) - datetime.datetime.utcnow().timestamp())
        if skew > 900 or amz_date[:8] != day:
            return self.error(403, "RequestTimeTooSkewed", "The difference between the request "
                              "time and the current time is too large.")
        secret, token = KEYS[akid]
        names = signed.split(";")
        if "host" not in names:
            return self.error(400, "AuthorizationHeaderMalformed",
                              "The authorization header is malformed; host must be signed.")
        sent_token = self.headers.get("x-amz-security-token")
        if sent_token is not None and sent_token in EXPIRED:
            return self.error(400, "ExpiredToken", "The provided token has expired.")
        if token is not None and (sent_token != token or "x-amz-security-token" not in names):
            return self.error(403, "InvalidToken",
                              "The provided token is malformed or otherwise invalid.")
        headers = {}
        for name in names:
            value = self.headers.get(name)
            if value is None:
                return self.error(403, "SignatureDoesNotMatch",
                                  f"Signed header {name} is missing.")
            headers[name] = value
        # botocore builds the canonical request from the URL as sent (S3
        # paths are not normalized) and the headers named as signed.
        req = AWSRequest(method=self.command, url=f"http://{self.headers['Host']}{self.path}",
                         headers=headers)
        req.context["timestamp"] = amz_date
        signer = S3SigV4Auth(Credentials(akid, secret, token), "s3", region)
        canonical = signer.canonical_request(req)
        expected = signer.signature(signer.string_to_sign(req, canonical), req)
        if not hmac.compare_digest(expected, signature):
            return self.error(403, "SignatureDoesNotMatch",
                              "The request signature we calculated does not match the signature "
                              "you provided. Check your key and signing method.")
        return None

    def locate(self):
        """(bucket, key) from the virtual host or the path."""
        host = self.headers.get("Host", "").rsplit(":", 1)[0]
        path = self.path.split("?", 1)[0]
        if ARGS.domain and host.endswith("." + ARGS.domain):
            return host[: -len(ARGS.domain) - 1], path[1:]
        parts = path[1:].split("/", 1)
        return parts[0], parts[1] if len(parts) > 1 else ""

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        if self.check_auth() is not None:
            return
        from urllib.parse import unquote
        bucket, key = self.locate()
        bucket, key = unquote(bucket), unquote(key)
        bdir = os.path.join(ARGS.root, bucket)
        if "/" in bucket or bucket in ("", ".", "..") or not os.path.isdir(bdir):
            return self.error(404, "NoSuchBucket", "The specified bucket does not exist")
        path = os.path.normpath(os.path.join(bdir, key))
        if not path.startswith(bdir + "/") or not os.path.isfile(path):
            return self.error(404, "NoSuchKey", "The specified key does not exist.")
        st = os.stat(path)
        size = st.st_size
        etag = etag_of(path, st)
        im = self.headers.get("If-Match")
        if im is not None and im.strip() != etag and im.strip() != "*":
            return self.error(412, "PreconditionFailed",
                              "At least one of the pre-conditions you specified did not hold")
        inm = self.headers.get("If-None-Match")
        if inm is not None and etag in [t.strip() for t in inm.split(",")]:
            # S3 answers a GET whose If-None-Match holds the ETag with 304,
            # before looking at the range.
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
            self.end_headers()
            return
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng:
            m = re.match(r"^bytes=(\d*)-(\d*)$", rng.strip())
            if not m or (m.group(1) == "" and m.group(2) == ""):
                m = None
            elif m.group(1) == "":
                n = int(m.group(2))
                start, end = max(0, size - n), size - 1
                status = 206 if n > 0 and size > 0 else 416
            else:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                status = 206 if start < size and start <= end else 416
            if status == 416:
                return self.error(416, "InvalidRange", "The requested range is not satisfiable",
                                  [("Content-Range", f"bytes */{size}")])
        self.send_response(status)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(path, "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left:
                block = f.read(min(left, 1 << 20))
                if not block:
                    break
                self.wfile.write(block)
                left -= len(block)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--region", required=True)
    ap.add_argument("--domain", default="")
    ap.add_argument("--key", action="append", default=[])
    ap.add_argument("--token", action="append", default=[])
    ap.add_argument("--expired-token", action="append", default=[])
    ap.add_argument("--log", action="store_true")
    ARGS = ap.parse_args()
    for k in ARGS.key:
        akid, secret = k.split(":", 1)
        KEYS[akid] = (secret, None)
    for k in ARGS.token:
        akid, secret, token = k.split(":", 2)
        KEYS[akid] = (secret, token)
    EXPIRED.update(ARGS.expired_token)
    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            # A client that stops reading (it had what it wanted, or
            # gave up) is no error of the server's.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    httpd = Server(("127.0.0.1", 0), Handler)
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{httpd.server_address[1]}\n")
    os.rename(tmp, ARGS.port_file)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
