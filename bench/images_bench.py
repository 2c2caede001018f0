"""Image benchmarks (docs/benchmarks.md, "Images"), in one run:

1. first pull + unpack of a ~100 MB image by `sandpit serve` (snapshot
   build: manifest, blobs, digest checks, unpack into the layer store) vs
   `skopeo copy` of the same image to a local directory;
2. create → first `run("true")` from a cached image vs the built-in `host`
   image (p50/p90 over --runs);
3. disk used by 100 sandboxes of one image: the layer store plus every
   sandbox's upper dir, vs one copy of the image.

Needs root, docker-registry, umoci, skopeo and busybox-static (see
scripts/install-deps). Usage:

    SANDPIT_BIN=target/release/sandpit python bench/images_bench.py [--runs 30] [--sandboxes 100]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))
from conftest import start_server, stop_server  # noqa: E402
from registry import start_registry  # noqa: E402

from langsmith.sandbox import SandboxClient  # noqa: E402


def payload(target_mb: int) -> dict[str, bytes]:
    """~target_mb of real binaries and libraries (compressible like an image's)."""
    files, total = {}, 0
    for root in ("/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/lib"):
        for dirpath, _, names in os.walk(root):
            for name in sorted(names):
                p = Path(dirpath) / name
                if p.is_symlink() or not p.is_file():
                    continue
                size = p.stat().st_size
                if size > 20 << 20:
                    continue
                files[f"/payload{p}"] = p.read_bytes()
                total += size
                if total >= target_mb << 20:
                    return files
    return files


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sx", "-B1", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def wait_snapshot(http: httpx.Client, snap_id: str) -> dict:
    while True:
        body = http.get(f"/snapshots/{snap_id}").json()
        if body["status"] != "building":
            return body
        time.sleep(0.01)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--sandboxes", type=int, default=100)
    ap.add_argument("--image-mb", type=int, default=100)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sp-imgbench-", dir="/tmp"))
    registry = start_registry(work)
    server = None
    try:
        files = payload(args.image_mb)
        raw = sum(len(v) for v in files.values())
        build = work / "build"
        build.mkdir()
        image = build_big(registry, build, files)
        manifest = registry.manifest("big", "1")
        compressed = sum(layer["size"] for layer in manifest["layers"])
        print(f"image: {len(files)} files, {raw / 1e6:.1f} MB unpacked, {compressed / 1e6:.1f} MB compressed")

        t0 = time.perf_counter()
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{image}", f"dir:{work / 'skopeo'}"],
            check=True,
        )
        skopeo_s = time.perf_counter() - t0

        server = start_server(
            work / "data",
            api_key="bench-" + secrets.token_urlsafe(8),
            extra_args=["--insecure-registry", registry.host, "--default-idle-ttl-seconds", "0"],
        )
        api = f"{server.endpoint}/api/v2/sandboxes"
        http = httpx.Client(base_url=api, headers=server.headers(), timeout=300)
        t0 = time.perf_counter()
        snap = http.post("/snapshots", json={"name": "big", "docker_image": image, "fs_capacity_bytes": 1 << 30}).json()
        snap = wait_snapshot(http, snap["id"])
        pull_s = time.perf_counter() - t0
        assert snap["status"] == "ready", snap
        print(f"first pull + unpack: sandpit {pull_s:.2f} s, skopeo copy to dir {skopeo_s:.2f} s")

        client = SandboxClient(api_endpoint=api, api_key=server.api_key)
        for label, kwargs in (("host image", {}), ("cached OCI image", {"snapshot_id": snap["id"]})):
            times = []
            for i in range(args.runs):
                t0 = time.perf_counter()
                sb = client.create_sandbox(**kwargs)
                sb.run("true")
                times.append((time.perf_counter() - t0) * 1000)
                client.delete_sandbox(sb.name)
            print(f"create -> first run('true'), {label}: p50 {pct(times, 0.5):.0f} ms, p90 {pct(times, 0.9):.0f} ms")

        data = work / "data"
        names = []
        for i in range(args.sandboxes):
            sb = client.create_sandbox(snapshot_id=snap["id"], name=f"many-{i}")
            sb.run("echo $RANDOM > /home-note")
            names.append(sb.name)
        layers = du(data / "oci" / "layers")
        sandboxes = du(data / "sandboxes")
        print(
            f"{args.sandboxes} sandboxes: layer store {layers / 1e6:.1f} MB (one image unpacked: "
            f"{raw / 1e6:.1f} MB of payload), all sandbox dirs {sandboxes / 1e6:.2f} MB, "
            f"total {(layers + sandboxes) / 1e6:.1f} MB vs {args.sandboxes} full copies "
            f"{args.sandboxes * layers / 1e9:.1f} GB"
        )
        for name in names:
            client.delete_sandbox(name)
    finally:
        if server is not None:
            stop_server(server)
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


def build_big(registry, workdir: Path, files: dict[str, bytes]) -> str:
    """A busybox image plus the binary payload, pushed as big:1."""
    bundle_files = workdir / "payload"
    for path, data in files.items():
        target = bundle_files / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    layout = workdir / "oci-big"
    bundle = workdir / "bundle-big"
    run = lambda *c: subprocess.run(c, check=True, capture_output=True)  # noqa: E731
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:t")
    run("umoci", "unpack", "--image", f"{layout}:t", str(bundle))
    (bundle / "rootfs" / "bin").mkdir(exist_ok=True)
    shutil.copy2("/bin/busybox", bundle / "rootfs" / "bin" / "busybox")
    for applet in ("sh", "true", "echo", "cat"):
        os.symlink("busybox", bundle / "rootfs" / "bin" / applet)
    shutil.copytree(bundle_files, bundle / "rootfs", dirs_exist_ok=True, symlinks=True)
    run("umoci", "repack", "--image", f"{layout}:t", str(bundle))
    full = f"{registry.host}/big:1"
    run("skopeo", "copy", "--quiet", "--format=oci", "--dest-tls-verify=false", f"oci:{layout}:t", f"docker://{full}")
    return full


if __name__ == "__main__":
    main()
