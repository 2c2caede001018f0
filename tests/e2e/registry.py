"""A throwaway OCI registry on loopback and the fixture images the image
tests pull from it, built here from Debian's `busybox-static` with `umoci`
and pushed with `skopeo` (no internet needed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

BUSYBOX = "/bin/busybox"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    root: Path  # storage root
    proc: subprocess.Popen

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def blob_path(self, digest: str) -> Path:
        algo, hexd = digest.split(":", 1)
        return self.root / "docker/registry/v2/blobs" / algo / hexd[:2] / hexd / "data"

    def manifest(self, repo: str, tag: str) -> dict:
        resp = httpx.get(
            f"http://{self.host}/v2/{repo}/manifests/{tag}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        resp.raise_for_status()
        return resp.json()


def start_registry(workdir: Path, *, credentials: tuple[str, str] | None = None) -> Registry:
    """A docker-registry on loopback; with `credentials` (user, password) it
    demands them (htpasswd auth, bcrypt file made by `htpasswd`)."""
    port = free_port()
    name = "registry-auth" if credentials else "registry"
    root = workdir / name
    root.mkdir(parents=True)
    config = workdir / f"{name}.yml"
    auth = ""
    if credentials:
        htpasswd = workdir / f"{name}.htpasswd"
        _run("htpasswd", "-Bbc", str(htpasswd), *credentials)
        auth = f"auth:\n  htpasswd:\n    realm: sandpit-test\n    path: {htpasswd}\n"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/").status_code in (200, 401):
                return Registry(host=f"127.0.0.1:{port}", root=root, proc=proc)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("docker-registry did not start")


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def build_image(
    registry: Registry,
    workdir: Path,
    ref: str,
    *,
    files: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    working_dir: str | None = None,
    user: str | None = None,
    entrypoint: list[str] | None = None,
    compress: str = "gzip",
    credentials: tuple[str, str] | None = None,
) -> str:
    """Build a busybox image with extra `files`, push it as `ref`
    (`repo:tag`) and return the full reference `HOST/repo:tag`."""
    name = ref.replace(":", "_").replace("/", "_")
    layout = workdir / f"oci-{name}"
    bundle = workdir / f"bundle-{name}"
    _run("umoci", "init", "--layout", str(layout))
    _run("umoci", "new", "--image", f"{layout}:t")
    _run("umoci", "unpack", "--image", f"{layout}:t", str(bundle))
    rootfs = bundle / "rootfs"
    for d in ("bin", "etc", "tmp", "root"):
        (rootfs / d).mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin/busybox")
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        link = rootfs / "bin" / applet
        if not link.exists():
            os.symlink("busybox", link)
    (rootfs / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
    )
    (rootfs / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\napp:x:1001:\nstaff:x:1002:app\n")
    for path, text in (files or {}).items():
        target = rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    _run("umoci", "repack", "--image", f"{layout}:t", str(bundle))
    config = ["umoci", "config", "--image", f"{layout}:t", "--config.cmd=/bin/sh"]
    for k, v in (env or {}).items():
        config.append(f"--config.env={k}={v}")
    if working_dir:
        config.append(f"--config.workingdir={working_dir}")
    if user:
        config.append(f"--config.user={user}")
    for arg in entrypoint or []:
        config.append(f"--config.entrypoint={arg}")
    _run(*config)
    full = f"{registry.host}/{ref}"
    recompress = ["--dest-compress-format=zstd"] if compress == "zstd" else []
    if credentials:
        recompress.append("--dest-creds=" + ":".join(credentials))
    _run(
        "skopeo", "copy", "--quiet", "--format=oci", "--dest-tls-verify=false", *recompress,
        f"oci:{layout}:t", f"docker://{full}",
    )
    shutil.rmtree(bundle, ignore_errors=True)
    return full


def corrupt_layers(registry: Registry, repo: str, tag: str) -> None:
    """Overwrite every layer blob of `repo:tag` in the registry's storage
    with same-sized garbage, so its digest no longer matches."""
    for layer in registry.manifest(repo, tag)["layers"]:
        path = registry.blob_path(layer["digest"])
        size = path.stat().st_size
        path.write_bytes(b"\0" * size)


__all__ = ["Registry", "start_registry", "build_image", "corrupt_layers"]
