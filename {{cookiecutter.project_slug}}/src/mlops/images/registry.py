"""Just enough of the registry HTTP API v2 (OCI distribution spec) for manifest copies.

A cache hit tags this commit in the registry by copying the cached image's manifest: no blob moves.
Authentication is GitLab's token flow with CI_REGISTRY_USER/CI_REGISTRY_PASSWORD.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import urllib.error
import urllib.parse
import urllib.request

from .errors import BuildError

_MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)


def split_ref(ref: str) -> tuple[str, str, str]:
    """'host[:port]/path/name:tag' -> (host, path/name, tag)."""
    host, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
    if not host or not repo:
        raise BuildError(f"{ref!r} is not a registry reference host/path/name:tag", bad_input=True)
    return host, repo, tag


def is_loopback(host: str) -> bool:
    """Plain HTTP (and no TLS verification) only for a registry on this machine's loopback."""
    name = host.rsplit(":", 1)[0].strip("[]") if not host.startswith("[") else host[1 : host.index("]")]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Registry:
    """Just enough of the registry API for manifest copies, with GitLab's token auth (CI_REGISTRY_*)."""

    def __init__(self, host: str):
        self.host = host
        self.base = f"{'http' if is_loopback(host) else 'https'}://{host}"
        self._token: str | None = None

    def _basic(self) -> str | None:
        user, password = os.environ.get("CI_REGISTRY_USER"), os.environ.get("CI_REGISTRY_PASSWORD")
        if user and password:
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return None

    def _request(
        self,
        method: str,
        repo: str,
        tag: str,
        body: bytes | None = None,
        content_type: str | None = None,
        retry: bool = True,
    ):
        req = urllib.request.Request(f"{self.base}/v2/{repo}/manifests/{tag}", data=body, method=method)
        req.add_header("Accept", _MANIFEST_TYPES)
        if content_type:
            req.add_header("Content-Type", content_type)
        if self._token:
            req.add_header("Authorization", self._token)
        try:
            return urllib.request.urlopen(req, timeout=60)
        except urllib.error.HTTPError as exc:
            challenge = exc.headers.get("WWW-Authenticate", "")
            if exc.code == 401 and retry and challenge:
                self._authenticate(challenge, repo)
                return self._request(method, repo, tag, body, content_type, retry=False)
            raise

    def _authenticate(self, challenge: str, repo: str) -> None:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            self._token = self._basic()
            return
        fields = dict(part.split("=", 1) for part in params.replace('"', "").split(",") if "=" in part)
        query = urllib.parse.urlencode({"service": fields.get("service", ""), "scope": f"repository:{repo}:pull,push"})
        req = urllib.request.Request(f"{fields['realm']}?{query}")
        basic = self._basic()
        if basic:
            req.add_header("Authorization", basic)
        with urllib.request.urlopen(req, timeout=60) as resp:
            data = json.load(resp)
        self._token = "Bearer " + (data.get("token") or data.get("access_token", ""))

    def manifest(self, repo: str, tag: str) -> tuple[bytes, str, str]:
        with self._request("GET", repo, tag) as resp:
            body = resp.read()
            return body, resp.headers.get("Content-Type", ""), resp.headers.get("Docker-Content-Digest", "")

    def digest(self, repo: str, tag: str) -> str | None:
        try:
            body, _, digest = self.manifest(repo, tag)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        return digest or "sha256:" + hashlib.sha256(body).hexdigest()

    def copy(self, source_ref: str, dest_ref: str) -> str:
        """Tag `dest_ref` with the manifest of `source_ref` (same repository host); returns its digest."""
        _, src_repo, src_tag = split_ref(source_ref)
        _, dst_repo, dst_tag = split_ref(dest_ref)
        if src_repo != dst_repo:
            raise BuildError(f"cannot copy {source_ref} to another repository ({dest_ref}) without blobs")
        body, content_type, digest = self.manifest(src_repo, src_tag)
        with self._request("PUT", dst_repo, dst_tag, body, content_type):
            pass
        return digest or "sha256:" + hashlib.sha256(body).hexdigest()
