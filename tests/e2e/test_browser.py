"""A real browser (Debian's headless `chromium`) opens a `browser_url` and
loads a multi-page app served from inside a sandbox: HTML, a script, an XHR,
a second page in an iframe and a WebSocket, all authenticated by the cookie
`/_svc/auth` set — no token in any URL after the first."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

import pytest

APP = r'''
import base64, hashlib, sys
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
FILES = {
    "/": ("text/html", b"""<!doctype html><html><head><title>app</title></head><body>
<div id="out">loading</div><iframe id="second" src="/page2.html"></iframe>
<script src="/app.js"></script></body></html>"""),
    "/page2.html": ("text/html", b"<!doctype html><html><body><p id='p2'>second page</p></body></html>"),
    "/app.js": ("application/javascript", b"""
const results = {};
function show() {
  if (Object.keys(results).length === 3)
    document.getElementById('out').textContent =
      'xhr=' + results.xhr + ' ws=' + results.ws + ' page2=' + results.page2;
}
fetch('/api/data').then(r => r.json()).then(d => { results.xhr = d.value; show(); });
const frame = document.getElementById('second');
function readFrame() {
  const p = frame.contentDocument && frame.contentDocument.getElementById('p2');
  if (p) { results.page2 = p.textContent.replace(' ', '-'); show(); } else setTimeout(readFrame, 50);
}
readFrame();
const ws = new WebSocket('ws://' + location.host + '/ws');
ws.onopen = () => ws.send('ping');
ws.onmessage = (e) => { results.ws = e.data; show(); };
"""),
    "/api/data": ("application/json", b'{"value": "ok"}'),
}
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/ws":
            return self.websocket()
        kind, body = FILES.get(self.path, ("text/plain", None))
        if body is None:
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers(); return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        head = self.rfile.read(2)
        length = head[1] & 0x7F
        mask = self.rfile.read(4)
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
        reply = b"pong:" + data
        self.wfile.write(bytes([0x81, len(reply)]) + reply)
        self.wfile.flush()
        self.rfile.read(2)  # wait for the close frame (or EOF)
        self.close_connection = True
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''

CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/install-deps)")
def test_chromium_loads_a_multi_page_app_through_browser_url(client):
    with client.sandbox() as sb:
        sb.write("/app/app.py", APP)
        handle = sb.run("python3 /app/app.py 8000", timeout=0, wait=False)
        probe = "python3 -c \"import socket; socket.create_connection(('127.0.0.1', 8000), 1)\""
        for _ in range(100):
            if sb.run(probe, timeout=10).exit_code == 0:
                break
            time.sleep(0.1)
        svc = sb.service(port=8000)
        profile = tempfile.mkdtemp(prefix="sp-chromium-")
        try:
            out = subprocess.run(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom",
                 svc.browser_url],
                capture_output=True, text=True, timeout=120,
            )
        finally:
            shutil.rmtree(profile, ignore_errors=True)
        assert "xhr=ok ws=pong:ping page2=second-page" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
        handle.kill()
