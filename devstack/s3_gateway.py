"""The local stack's S3 endpoint: a verifying front in front of moto's S3.

moto stores whatever it is sent; S3 does not.  This front authenticates
every request the way S3 does before forwarding it to moto, so presigned
URLs that would fail on AWS fail here too:

* ``Authorization: AWS4-HMAC-SHA256 ...`` (the app's and tests' boto3 calls):
  the signature is recomputed with botocore's own signer over the signed
  headers; ``x-amz-content-sha256`` is checked against the body; the clock
  skew must be under 15 minutes.
* Presigned GET/PUT/... (``X-Amz-Signature`` in the query): signature
  recomputed the same way, ``X-Amz-Expires`` enforced.
* Browser-style POST (``multipart/form-data`` to the bucket): the policy's
  signature (the HMAC chain over the base64 policy), its expiration and
  every condition (``bucket``, ``key`` eq/starts-with, ``Content-Type``,
  ``x-amz-server-side-encryption``, ``content-length-range``, ...), and no
  form field the policy does not cover.
* Anything else is anonymous: ``403 AccessDenied`` (the bucket blocks
  public access, as on AWS).
* CORS, from the same rules the bucket is deployed with
  (``chalicelib.services.files.cors_rules``): an ``OPTIONS`` preflight is
  answered by the first rule matching the ``Origin``, the requested method
  and headers (else ``403 CORSResponse``); any other response to a request
  with a matching ``Origin`` carries the ``Access-Control-*`` headers, as S3
  adds them (errors included).

Errors are S3's XML bodies and codes (``AccessDenied``,
``SignatureDoesNotMatch``, ``EntityTooLarge``, ``EntityTooSmall``, ...).
After an object is created (POST, PUT, copy, completed multipart upload)
the app's notification target is invoked through the Lambda pool,
asynchronously and with retries, with the event JSON S3 sends.
Path-style addressing only (``http://127.0.0.1:<port>/<bucket>/<key>``,
what botocore uses for an IP endpoint).
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import fnmatch
import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl, quote, quote_plus, unquote
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from yarl import URL

log = logging.getLogger("devstack.s3")

SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
MAX_SKEW_SECONDS = 15 * 60
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
MAX_BODY_BYTES = 256 * 1024 * 1024  # the local stack's cap (S3's single PUT/POST: 5 GB)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "expect", "host", "content-length"}
# Form fields S3 never requires a policy condition for.
POLICY_EXEMPT = {"policy", "x-amz-signature", "file"}
# Form fields stored as object headers.
STORED_FIELDS = {"content-type", "cache-control", "content-disposition", "content-encoding", "expires",
                 "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
                 "x-amz-storage-class", "x-amz-tagging", "x-amz-website-redirect-location"}
INVOKE_RETRY_DELAYS = (1.0, 2.0)  # AWS retries a failed async invocation twice (after ~1 and ~2 minutes)


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def access_denied(message: str = "Access Denied", **extra: Any) -> S3Error:
    return S3Error(403, "AccessDenied", message, **extra)


@dataclass(frozen=True)
class Notification:
    """One bucket notification configuration: events (``s3:ObjectCreated:*``) -> a Lambda function."""

    bucket: str
    function_name: str
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""

    def matches(self, bucket: str, event_name: str, key: str) -> bool:
        return bucket == self.bucket and key.startswith(self.prefix) and key.endswith(self.suffix) \
            and any(fnmatch.fnmatchcase("s3:" + event_name, pattern) for pattern in self.events)


@dataclass
class _Auth:
    """The parsed SigV4 credential scope of a request."""

    access_key: str
    date: str
    region: str
    service: str


def _iso_now(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_amz_date(value: str) -> float:
    try:
        return dt.datetime.strptime(value, SIGV4_TIMESTAMP).replace(tzinfo=dt.timezone.utc).timestamp()
    except (TypeError, ValueError):
        raise S3Error(403, "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header") from None


class S3Front:
    def __init__(self, upstream: str, *, credentials: dict[str, str], region: str,
                 notifications: list[Notification] | tuple[Notification, ...] = (),
                 invoke: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
                 clock: Callable[[], float] = time.time,
                 cors_rules: list[dict[str, Any]] | tuple[dict[str, Any], ...] = ()) -> None:
        self.upstream = upstream.rstrip("/")
        self.cors_rules = list(cors_rules)
        self.credentials = credentials
        self.region = region
        self.notifications = list(notifications)
        self.invoke = invoke
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.events_sent = 0

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _cleanup(self, _app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False,
                                                  timeout=aiohttp.ClientTimeout(total=120))
        return self._session

    # --- dispatch ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = uuid.uuid4().hex[:16].upper()
        try:
            if request.method == "OPTIONS":
                return self._preflight(request, request_id)
            resp = await self._handle(request, request_id)
        except S3Error as err:
            resp = self._error(request, err, request_id)
        except Exception:  # noqa: BLE001 - S3 answers 500 InternalError, never a traceback
            log.exception("s3 front failed")
            resp = self._error(request, S3Error(500, "InternalError", "We encountered an internal error. "
                                                "Please try again."), request_id)
        self._cors_headers(request, resp)
        return resp

    # --- CORS (the bucket's CorsConfiguration) --------------------------------------------

    def _cors_rule(self, origin: str, method: str, headers: list[str]) -> dict[str, Any] | None:
        """The first rule allowing this origin, method and every requested header (S3's order)."""
        for rule in self.cors_rules:
            if not any(fnmatch.fnmatchcase(origin, pattern) for pattern in rule.get("AllowedOrigins", [])):
                continue
            if method not in rule.get("AllowedMethods", []):
                continue
            allowed = [h.lower() for h in rule.get("AllowedHeaders", [])]
            if all(any(fnmatch.fnmatchcase(h.lower(), a) for a in allowed) for h in headers):
                return rule
        return None

    @staticmethod
    def _allow(rule: dict[str, Any], origin: str) -> dict[str, str]:
        wildcard = "*" in rule.get("AllowedOrigins", [])
        out = {"Access-Control-Allow-Origin": "*" if wildcard else origin,
               "Access-Control-Allow-Methods": ", ".join(rule["AllowedMethods"]),
               "Vary": "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"}
        if not wildcard:
            out["Access-Control-Allow-Credentials"] = "true"
        if rule.get("ExposedHeaders"):
            out["Access-Control-Expose-Headers"] = ", ".join(rule["ExposedHeaders"])
        if rule.get("MaxAge") is not None:
            out["Access-Control-Max-Age"] = str(rule["MaxAge"])
        return out

    def _preflight(self, request: web.Request, request_id: str) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        method = request.headers.get("Access-Control-Request-Method")
        if not origin:
            raise S3Error(400, "BadRequest", "Insufficient information. Origin request header needed.")
        if not method:
            raise S3Error(400, "BadRequest", "Invalid Access-Control-Request-Method: null")
        if not self.cors_rules:
            raise S3Error(403, "CORSResponse", "CORS is not enabled for this bucket.")
        wanted = [h.strip() for h in request.headers.get("Access-Control-Request-Headers", "").split(",")
                  if h.strip()]
        rule = self._cors_rule(origin, method, wanted)
        if rule is None:
            raise S3Error(403, "CORSResponse", "This CORS request is not allowed. This is usually because the "
                                               "evalution of Origin, request method / Access-Control-Request-Method "
                                               "or Access-Control-Request-Headers are not whitelisted by the "
                                               "resource's CORS spec.")
        headers = {**self._allow(rule, origin), "x-amz-request-id": request_id, "Content-Length": "0"}
        if wanted:
            headers["Access-Control-Allow-Headers"] = ", ".join(wanted)
        return web.Response(status=200, headers=headers)

    def _cors_headers(self, request: web.Request, resp: web.StreamResponse) -> None:
        if resp.prepared:
            return
        for name in [h for h in resp.headers if h.lower().startswith("access-control-")]:
            del resp.headers[name]  # moto's server allows every origin; the bucket's rules decide here
        origin = request.headers.get("Origin")
        if not origin or not self.cors_rules:
            return
        rule = self._cors_rule(origin, request.method, [])
        if rule is not None:
            resp.headers.update(self._allow(rule, origin))

    async def _handle(self, request: web.Request, request_id: str) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        bucket, _, raw_key = raw_path.lstrip("/").partition("/")
        bucket, key = unquote(bucket), unquote(raw_key)
        query = parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True)
        names = {k.lower() for k, _ in query}
        authorization = request.headers.get("Authorization", "")
        ctype = request.headers.get("Content-Type", "")
        if authorization.startswith("AWS4-HMAC-SHA256 "):
            body = await request.read()
            self._verify_header_auth(request, authorization, body)
        elif "x-amz-signature" in names or "x-amz-algorithm" in names:
            body = await request.read()
            self._verify_query_auth(request)
        elif authorization:
            raise S3Error(400, "InvalidRequest", "The authorization mechanism you have provided is not supported. "
                                                 "Please use AWS4-HMAC-SHA256.")
        elif request.method == "POST" and bucket and not raw_key and ctype.startswith("multipart/form-data"):
            return await self._post_object(request, bucket, request_id)
        else:
            raise access_denied()
        resp = await self._forward(request.method, raw_path, request.rel_url.raw_query_string,
                                   request.headers, body)
        if 200 <= resp.status < 300 and key:
            event_name = self._created_event(request.method, names, request.headers)
            if event_name:
                self._notify(bucket, key, event_name, request)
        return resp

    @staticmethod
    def _created_event(method: str, query_names: set[str], headers: Any) -> str | None:
        if method == "PUT" and not {"uploadid", "partnumber"} & query_names and not query_names & {
                "tagging", "acl", "retention", "legal-hold"}:
            return "ObjectCreated:Copy" if "x-amz-copy-source" in headers else "ObjectCreated:Put"
        if method == "POST" and "uploadid" in query_names:
            return "ObjectCreated:CompleteMultipartUpload"
        return None

    # --- authentication -----------------------------------------------------------------

    def _scope(self, credential: str) -> tuple[_Auth, str]:
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise S3Error(400, "AuthorizationHeaderMalformed", f"The authorization header is malformed; the "
                                                               f"Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".")
        auth = _Auth(*parts[:4])
        secret = self.credentials.get(auth.access_key)
        if secret is None:
            raise S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our "
                                                     "records.", AWSAccessKeyId=auth.access_key)
        if auth.region != self.region:
            raise S3Error(400, "AuthorizationHeaderMalformed", f"The authorization header is malformed; the "
                                                               f"region '{auth.region}' is wrong; expecting "
                                                               f"'{self.region}'", Region=self.region)
        if auth.service != "s3":
            raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed; "
                                                               f"incorrect service \"{auth.service}\". This endpoint belongs to \"s3\".")
        return auth, secret

    def _aws_request(self, request: web.Request, signed_headers: list[str], query: str) -> AWSRequest:
        host = request.headers.get("Host", "")
        url = f"http://{host}{request.rel_url.raw_path}" + (f"?{query}" if query else "")
        headers: dict[str, str] = {}
        for name in signed_headers:
            if name == "host":
                headers["host"] = host
                continue
            # A signed header the request lacks signs as empty: the signature will not match.
            headers[name] = ",".join(request.headers.getall(name, [""]))
        return AWSRequest(method=request.method, url=url, headers=headers)

    def _check_signature(self, auth_cls: type, auth: _Auth, secret: str, amz_date: str, req: AWSRequest,
                         provided: str) -> None:
        signer = auth_cls(Credentials(auth.access_key, secret), "s3", auth.region)
        req.context["timestamp"] = amz_date
        canonical = signer.canonical_request(req)
        string_to_sign = signer.string_to_sign(req, canonical)
        expected = signer.signature(string_to_sign, req)
        if not hmac.compare_digest(expected, provided):
            raise S3Error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                                                        "signature you provided. Check your key and signing method.",
                          AWSAccessKeyId=auth.access_key, StringToSign=string_to_sign,
                          SignatureProvided=provided, CanonicalRequest=canonical)

    def _verify_header_auth(self, request: web.Request, authorization: str, body: bytes) -> None:
        fields = {}
        for part in authorization[len("AWS4-HMAC-SHA256 "):].split(","):
            name, _, value = part.strip().partition("=")
            fields[name] = value
        if not {"Credential", "SignedHeaders", "Signature"} <= set(fields):
            raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed; it must "
                                                               "contain Credential, SignedHeaders and Signature.")
        auth, secret = self._scope(fields["Credential"])
        amz_date = request.headers.get("x-amz-date")
        if not amz_date:
            raise access_denied("AWS authentication requires a valid Date or x-amz-date header")
        when = _parse_amz_date(amz_date)
        if amz_date[:8] != auth.date:
            raise S3Error(400, "AuthorizationHeaderMalformed", f"The authorization header is malformed; Invalid "
                                                               f"credential date. Date is not the same as X-Amz-Date.")
        now = self.clock()
        if abs(now - when) > MAX_SKEW_SECONDS:
            raise S3Error(403, "RequestTimeTooSkewed", "The difference between the request time and the current "
                                                       "time is too large.", RequestTime=amz_date,
                          ServerTime=_iso_now(now), MaxAllowedSkewMilliseconds=MAX_SKEW_SECONDS * 1000)
        content_sha = request.headers.get("x-amz-content-sha256")
        if not content_sha:
            raise S3Error(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
        if content_sha.startswith("STREAMING-"):
            raise S3Error(501, "NotImplemented", "Streaming (aws-chunked) payloads are not supported by the "
                                                 "local stack.")
        if content_sha != "UNSIGNED-PAYLOAD" and content_sha != hashlib.sha256(body).hexdigest():
            raise S3Error(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not "
                                                            "match what was computed.",
                          ClientComputedContentSHA256=content_sha,
                          S3ComputedContentSHA256=hashlib.sha256(body).hexdigest())
        signed = fields["SignedHeaders"].split(";")
        if "host" not in signed:
            raise access_denied("Signature must cover the host header.")
        req = self._aws_request(request, signed, request.rel_url.raw_query_string)
        self._check_signature(S3SigV4Auth, auth, secret, amz_date, req, fields["Signature"])

    def _verify_query_auth(self, request: web.Request) -> None:
        raw = request.rel_url.raw_query_string
        pairs = [p for p in raw.split("&") if p]
        params = {unquote(k): unquote(v) for k, v in parse_qsl(raw, keep_blank_values=True)}
        missing = [n for n in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                               "X-Amz-SignedHeaders", "X-Amz-Signature") if n not in params]
        if missing:
            raise S3Error(400, "AuthorizationQueryParametersError", "Query-string authentication version 4 "
                                                                    f"requires the {', '.join(missing)} parameters")
        if params["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
            raise S3Error(400, "AuthorizationQueryParametersError", "X-Amz-Algorithm only supports "
                                                                    "\"AWS4-HMAC-SHA256\"")
        auth, secret = self._scope(params["X-Amz-Credential"])
        amz_date = params["X-Amz-Date"]
        when = _parse_amz_date(amz_date)
        try:
            expires = int(params["X-Amz-Expires"])
        except ValueError:
            raise S3Error(400, "AuthorizationQueryParametersError", "X-Amz-Expires should be a number") from None
        if not 0 < expires <= MAX_PRESIGN_SECONDS:
            raise S3Error(400, "AuthorizationQueryParametersError", "X-Amz-Expires must be less than a week (in "
                                                                    "seconds) that is; 604800 seconds")
        now = self.clock()
        if when - now > MAX_SKEW_SECONDS:
            raise access_denied("Request is not valid yet")
        if now > when + expires:
            raise access_denied("Request has expired", **{"X-Amz-Expires": expires,
                                                          "Expires": _iso_now(when + expires),
                                                          "ServerTime": _iso_now(now)})
        signed = params["X-Amz-SignedHeaders"].split(";")
        if "host" not in signed:
            raise access_denied("Signature must cover the host header.")
        unsigned_query = "&".join(p for p in pairs if not p.startswith("X-Amz-Signature="))
        req = self._aws_request(request, signed, unsigned_query)
        self._check_signature(S3SigV4QueryAuth, auth, secret, amz_date, req, params["X-Amz-Signature"])

    # --- POST object (browser form upload) ---------------------------------------------------

    async def _post_object(self, request: web.Request, bucket: str, request_id: str) -> web.StreamResponse:
        reader = await request.multipart()
        fields: dict[str, str] = {}
        names: dict[str, str] = {}
        content: bytes | None = None
        size = 0
        filename = ""
        limits: tuple[int, int] | None = None
        while True:
            part = await reader.next()
            if part is None:
                break
            name = (part.name or "")
            lname = name.lower()
            if lname == "file":
                filename = part.filename or ""
                cap = limits[1] + 1 if limits else MAX_BODY_BYTES + 1
                data = bytearray()
                seen = 0
                while True:
                    chunk = await part.read_chunk(256 * 1024)
                    if not chunk:
                        break
                    seen += len(chunk)
                    if len(data) <= cap:  # past the policy's maximum only the count matters
                        data += chunk[:cap + 1 - len(data)]
                content = bytes(data)
                size = seen
                break  # S3 ignores everything after the file field
            value = (await part.read(decode=True)).decode("utf-8", "replace")
            if lname in fields:
                raise S3Error(400, "InvalidArgument", f"POST requires exactly one {name} field")
            fields[lname], names[lname] = value, name
            if lname == "policy":
                limits = self._length_range(value)
        if content is None:
            raise S3Error(400, "InvalidArgument", "POST requires exactly one file upload per request.",
                          ArgumentName="file", ArgumentValue="0")
        if "key" not in fields:
            raise S3Error(400, "InvalidArgument", "Bucket POST must contain a field named 'key'.  If it is "
                                                  "specified, please check the order of the fields.",
                          ArgumentName="key", ArgumentValue="")
        key = fields["key"].replace("${filename}", filename)
        if "policy" not in fields:
            raise access_denied()  # an anonymous POST: the bucket allows none
        self._verify_policy(bucket, key, fields, names, size)
        headers = {name: fields[name] for name in STORED_FIELDS if name in fields}
        headers.update({name: value for name, value in fields.items() if name.startswith("x-amz-meta-")})
        headers.setdefault("content-type", "binary/octet-stream")
        path = f"/{quote(bucket)}/{quote(key, safe='/~')}"
        upstream = await self._forward("PUT", path, "", self._sign("PUT", path, headers, content), content)
        if upstream.status != 200:
            return upstream
        self._notify(bucket, key, "ObjectCreated:Post", request)
        location = f"http://{request.headers.get('Host', '')}/{quote(bucket)}/{quote(key, safe='/~')}"
        out = {"ETag": upstream.headers.get("ETag", ""), "Location": location, "x-amz-request-id": request_id}
        for name in ("x-amz-version-id", "x-amz-server-side-encryption"):
            if name in upstream.headers:
                out[name] = upstream.headers[name]
        redirect = fields.get("success_action_redirect") or fields.get("redirect")
        if redirect:
            sep = "&" if "?" in redirect else "?"
            out["Location"] = f"{redirect}{sep}bucket={quote_plus(bucket)}&key={quote_plus(key)}&etag=" \
                              f"{quote_plus(out['ETag'])}"
            return web.Response(status=303, headers=out)
        status = fields.get("success_action_status", "204")
        if status == "201":
            xml = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse>"
                   f"<Location>{escape(location)}</Location><Bucket>{escape(bucket)}</Bucket>"
                   f"<Key>{escape(key)}</Key><ETag>{escape(out['ETag'])}</ETag></PostResponse>")
            return web.Response(status=201, body=xml.encode(), headers={**out, "Content-Type": "application/xml"})
        return web.Response(status=200 if status == "200" else 204, headers=out)

    @staticmethod
    def _decode_policy(policy_b64: str) -> dict[str, Any]:
        try:
            doc = json.loads(base64.b64decode(policy_b64, validate=True))
        except (ValueError, TypeError):
            raise S3Error(400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON.") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("conditions"), list) \
                or not isinstance(doc.get("expiration"), str):
            raise S3Error(400, "InvalidPolicyDocument", "Invalid Policy: Policy missing expiration or conditions.")
        return doc

    def _length_range(self, policy_b64: str) -> tuple[int, int] | None:
        try:
            doc = self._decode_policy(policy_b64)
        except S3Error:
            return None
        for cond in doc["conditions"]:
            if isinstance(cond, list) and len(cond) == 3 and str(cond[0]).lower() == "content-length-range":
                try:
                    return int(cond[1]), int(cond[2])
                except (TypeError, ValueError):
                    return None
        return None

    def _verify_policy(self, bucket: str, key: str, fields: dict[str, str], names: dict[str, str],
                       size: int) -> None:
        if fields.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
            raise S3Error(400, "InvalidArgument", "POST requires x-amz-algorithm AWS4-HMAC-SHA256 (signature "
                                                  "version 2 is not supported).")
        for required in ("x-amz-credential", "x-amz-date", "x-amz-signature"):
            if required not in fields:
                raise S3Error(400, "InvalidArgument", f"Bucket POST must contain a field named '{required}'.",
                              ArgumentName=required)
        auth, secret = self._scope(fields["x-amz-credential"])
        if fields["x-amz-date"][:8] != auth.date:
            raise S3Error(400, "AuthorizationQueryParametersError", "Invalid credential date. Date is not the "
                                                                    "same as X-Amz-Date.")
        # The signature: the SigV4 key derivation, then HMAC over the base64 policy itself.
        signer = S3SigV4Auth(Credentials(auth.access_key, secret), "s3", auth.region)
        req = AWSRequest(method="POST", url="http://local/")
        req.context["timestamp"] = fields["x-amz-date"]
        expected = signer.signature(fields["policy"], req)
        if not hmac.compare_digest(expected, fields["x-amz-signature"]):
            raise S3Error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                                                        "signature you provided. Check your key and signing method.",
                          AWSAccessKeyId=auth.access_key, StringToSign=fields["policy"],
                          SignatureProvided=fields["x-amz-signature"])
        doc = self._decode_policy(fields["policy"])
        try:
            expiration = dt.datetime.fromisoformat(doc["expiration"].replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise S3Error(400, "InvalidPolicyDocument", "Invalid Policy: Invalid 'expiration' value: "
                                                        f"'{doc['expiration']}'") from None
        if self.clock() > expiration:
            raise access_denied("Invalid according to Policy: Policy expired.")
        values = dict(fields, bucket=bucket, key=key)
        covered = {"bucket"}
        for cond in doc["conditions"]:
            if isinstance(cond, dict):
                if len(cond) != 1:
                    raise S3Error(400, "InvalidPolicyDocument", "Invalid Policy: Invalid Simple-Condition: "
                                                                "Simple-Conditions must have exactly one property "
                                                                "specified.")
                (name, expected_value), = cond.items()
                op, name = "eq", name.lower()
            elif isinstance(cond, list) and len(cond) == 3:
                op = str(cond[0]).lower()
                if op == "content-length-range":
                    low, high = int(cond[1]), int(cond[2])
                    if size > high:
                        raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed "
                                                             "size", ProposedSize=size, MaxSizeAllowed=high)
                    if size < low:
                        raise S3Error(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum "
                                                             "allowed size", ProposedSize=size, MinSizeAllowed=low)
                    continue
                if op not in ("eq", "starts-with") or not str(cond[1]).startswith("$"):
                    raise S3Error(400, "InvalidPolicyDocument", f"Invalid Policy: Invalid Condition: {json.dumps(cond)}")
                name, expected_value = str(cond[1])[1:].lower(), cond[2]
            else:
                raise S3Error(400, "InvalidPolicyDocument", f"Invalid Policy: Invalid Condition: {json.dumps(cond)}")
            covered.add(name)
            actual = values.get(name)
            ok = actual is not None and (actual == expected_value if op == "eq"
                                         else actual.startswith(str(expected_value)))
            if not ok:
                shown = json.dumps([op, "$" + (names.get(name) or name), expected_value])
                raise access_denied(f"Invalid according to Policy: Policy Condition failed: {shown}")
        extra = [names[n] for n in fields if n not in covered and n not in POLICY_EXEMPT
                 and not n.startswith("x-ignore-")]
        if extra:
            raise access_denied(f"Invalid according to Policy: Extra input fields: {', '.join(extra)}")

    # --- moto --------------------------------------------------------------------------------

    def _sign(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """Headers of a request the front itself makes to moto, signed (moto treats unsigned ones as anonymous)."""
        access_key, secret = next(iter(self.credentials.items()))
        req = AWSRequest(method=method, url=self.upstream + raw_path, headers=dict(headers), data=body)
        S3SigV4Auth(Credentials(access_key, secret), "s3", self.region).add_auth(req)
        return dict(req.headers.items())

    async def _forward(self, method: str, raw_path: str, raw_query: str, headers: Any,
                       body: bytes) -> web.StreamResponse:
        out = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        url = self.upstream + raw_path + (f"?{raw_query}" if raw_query else "")
        async with self._client().request(method, URL(url, encoded=True), headers=out,
                                          data=body if body or method in ("PUT", "POST") else None,
                                          skip_auto_headers=["Content-Type"], allow_redirects=False) as up:
            payload = await up.read()
            resp_headers = {k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP}
            if method == "HEAD" and "Content-Length" in up.headers:
                # The object's length, not the (empty) body's: aiohttp sends no body for HEAD.
                head = web.StreamResponse(status=up.status, headers=resp_headers)
                head.content_length = int(up.headers["Content-Length"])
                return head
            return web.Response(status=up.status, body=payload, headers=resp_headers)

    # --- notifications -------------------------------------------------------------------------

    def _notify(self, bucket: str, key: str, event_name: str, request: web.Request) -> None:
        targets = [n for n in self.notifications if n.matches(bucket, event_name, key)]
        if not targets or self.invoke is None:
            return
        source_ip = request.remote or "127.0.0.1"
        task = asyncio.create_task(self._deliver(targets, bucket, key, event_name, source_ip))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, targets: list[Notification], bucket: str, key: str, event_name: str,
                       source_ip: str) -> None:
        # What S3 reports about the object: ask moto (size, ETag, version) as S3 knows them.
        path = f"/{quote(bucket)}/{quote(key, safe='/~')}"
        async with self._client().head(URL(self.upstream + path, encoded=True),
                                       headers=self._sign("HEAD", path, {}, b"")) as head:
            if head.status != 200:
                log.warning("created object vanished before its notification: %s/%s", bucket, key)
                return
            size = int(head.headers.get("Content-Length", "0"))
            etag = head.headers.get("ETag", "").strip('"')
            version = head.headers.get("x-amz-version-id")
        for target in targets:
            event = object_created_event(bucket, key, event_name, size=size, etag=etag, version_id=version,
                                         region=self.region, source_ip=source_ip, now=self.clock(),
                                         configuration_id=f"{target.function_name}-notification")
            for attempt, delay in enumerate((0.0,) + INVOKE_RETRY_DELAYS):
                await asyncio.sleep(delay)
                result = await self.invoke(target.function_name, event)
                if result.get("statusCode") == 200:
                    self.events_sent += 1
                    break
                log.warning("s3 notification to %s failed (attempt %d)", target.function_name, attempt + 1)

    def _error(self, request: web.Request, err: S3Error, request_id: str) -> web.Response:
        headers = {"x-amz-request-id": request_id, "x-amz-id-2": base64.b64encode(request_id.encode()).decode()}
        if request.method == "HEAD":
            return web.Response(status=err.status, headers=headers)
        extra = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in err.extra.items())
        xml = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               f"<Error><Code>{err.code}</Code><Message>{escape(err.message)}</Message>{extra}"
               f"<RequestId>{request_id}</RequestId><HostId>{headers['x-amz-id-2']}</HostId></Error>")
        return web.Response(status=err.status, body=xml.encode(), headers={**headers,
                                                                           "Content-Type": "application/xml"})


def object_created_event(bucket: str, key: str, event_name: str, *, size: int, etag: str,
                         version_id: str | None, region: str, source_ip: str, now: float,
                         configuration_id: str, principal: str = "AWS:LOCALSTACKPRINCIPAL") -> dict[str, Any]:
    """The notification S3 sends for one created object (event message structure version 2.1)."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag,
                           "sequencer": f"{int(now * 1e6):016X}"}
    if version_id and version_id != "null":
        obj["versionId"] = version_id
    rid = uuid.uuid4().hex[:16].upper()
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": region, "eventTime": _iso_now(now),
        "eventName": event_name, "userIdentity": {"principalId": principal},
        "requestParameters": {"sourceIPAddress": source_ip},
        "responseElements": {"x-amz-request-id": rid, "x-amz-id-2": base64.b64encode(rid.encode()).decode()},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": configuration_id,
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "LOCALOWNER"},
                          "arn": f"arn:aws:s3:::{bucket}"},
               "object": obj},
    }]}
