"""A local server speaking Bluesky's XRPC as the atproto client uses it: createSession, refreshSession and
app.bsky.feed.searchPosts (newest first, cursor pagination), with JWTs that expire."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone

from fakes.http import FakeHTTPServer, Reply


def _jwt(subject: str, scope: str, lifetime: float) -> str:
    def b64(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = time.time()
    payload = {"scope": scope, "sub": subject, "iat": int(now), "exp": int(now + lifetime), "jti": f"{now:.6f}"}
    return f"{b64({'typ': 'at+jwt', 'alg': 'ES256K'})}.{b64(payload)}.c2lnbmF0dXJl"


class FakeBluesky(FakeHTTPServer):
    did = "did:plc:marketstreamtest00000000"

    def __init__(self, identifier: str = "tester.bsky.social", password: str = "app-pass-1234", access_lifetime=3600.0):
        super().__init__()
        self.identifier, self.password = identifier, password
        self.access_lifetime = access_lifetime
        self.posts: list[dict] = []
        self.sessions_created = 0
        self.sessions_refreshed = 0
        self._valid_access: set[str] = set()
        self._valid_refresh: set[str] = set()

    def post(self, n: int, text: str, at: datetime | None = None, lang: str | None = "en", **overrides) -> dict:
        at = at or datetime(2026, 11, 25, 10, 0, n % 60, tzinfo=timezone.utc)
        stamp = at.isoformat().replace("+00:00", "Z")
        view = {
            "uri": f"at://did:plc:author{n:06d}/app.bsky.feed.post/3lpost{n:08d}",
            "cid": f"bafyreihpost{n:020d}",
            "author": {"did": f"did:plc:author{n:06d}", "handle": f"author{n}.bsky.social"},
            "record": {"$type": "app.bsky.feed.post", "text": text, "createdAt": stamp,
                       **({"langs": [lang]} if lang else {})},
            "indexedAt": stamp, "likeCount": n % 7, "repostCount": n % 3, "replyCount": n % 2,
            **overrides,
        }
        self.posts.append(view)
        return view

    def _session_reply(self) -> Reply:
        access = _jwt(self.did, "com.atproto.access", self.access_lifetime)
        refresh = _jwt(self.did, "com.atproto.refresh", 90 * 86400)
        self._valid_access.add(access)
        self._valid_refresh.add(refresh)
        return Reply(200, {"accessJwt": access, "refreshJwt": refresh, "handle": self.identifier, "did": self.did,
                           "active": True})

    def route(self, method, path, query, headers, body) -> Reply:
        token = (headers.get("Authorization") or "").removeprefix("Bearer ")
        if path == "/xrpc/com.atproto.server.createSession":
            request = json.loads(body or b"{}")
            if (request.get("identifier"), request.get("password")) != (self.identifier, self.password):
                return Reply(401, {"error": "AuthenticationRequired", "message": "Invalid identifier or password"})
            self.sessions_created += 1
            return self._session_reply()
        if path == "/xrpc/com.atproto.server.refreshSession":
            if token not in self._valid_refresh:
                return Reply(400, {"error": "ExpiredToken", "message": "Token has expired"})
            self._valid_refresh.discard(token)
            self.sessions_refreshed += 1
            return self._session_reply()
        if path == "/xrpc/app.bsky.feed.searchPosts":
            if token not in self._valid_access:
                return Reply(401, {"error": "ExpiredToken", "message": "Token has expired"})
            words = query.get("q", "").lower()
            hits = [p for p in reversed(self.posts) if words in p["record"]["text"].lower()]  # newest first
            start = int(query.get("cursor") or 0)
            limit = int(query.get("limit") or 25)
            page = hits[start : start + limit]
            reply = {"posts": page, "hitsTotal": len(hits)}
            if start + limit < len(hits):
                reply["cursor"] = str(start + limit)
            return Reply(200, reply)
        return Reply(404, {"error": "MethodNotImplemented", "message": path})
