# Sandpit's Python code-context driver (OpenSandbox code interpreter).
#
# Started by the server through the agent (`python3 -u -c <this file>`),
# one process per context. It speaks line-delimited JSON:
#   stdin  <- {"op": "run", "code": "..."} | {"op": "interrupt"}
#   stdout -> {"ev": "ready"|"stdout"|"stderr"|"count"|"result"|"error"|"done", ...}
# User code gets fresh pipes as fd 1 and 2 (so the output of child
# processes is captured too) and /dev/null as fd 0; the protocol uses
# private duplicates of the original descriptors.
import ast
import builtins
import codecs
import json
import linecache
import os
import queue
import select
import signal
import sys
import threading
import traceback
import types

SYNC = "\x1e\x1fsandpit-sync\x1f\x1e"
CHUNK = 64 * 1024
MAX_RESULT = 1024 * 1024

proto_out = os.dup(1)
proto_in = os.dup(0)
write_lock = threading.Lock()


def emit(event):
    data = (json.dumps(event) + "\n").encode()
    with write_lock:
        while data:
            data = data[os.write(proto_out, data):]


class Capture:
    """Reads one redirected descriptor and emits its text as events."""

    def __init__(self, fd, name):
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        self.read_end = read_end
        self.name = name
        self.synced = threading.Event()
        threading.Thread(target=self.pump, daemon=True).start()

    def pump(self):
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        while True:
            data = os.read(self.read_end, CHUNK)
            if not data:
                return
            pending += decoder.decode(data)
            while True:
                at = pending.find(SYNC)
                if at < 0:
                    break
                self.send(pending[:at])
                pending = pending[at + len(SYNC):]
                self.synced.set()
            keep = 0
            for size in range(min(len(SYNC) - 1, len(pending)), 0, -1):
                if SYNC.startswith(pending[-size:]):
                    keep = size
                    break
            ready = pending[: len(pending) - keep]
            # An unbuffered print() writes its text and its newline apart:
            # a partial line waits briefly for the rest, so one line is one
            # event (a prompt with no newline still goes out after 50 ms).
            if (
                not ready.endswith("\n")
                and len(pending) < CHUNK
                and select.select([self.read_end], [], [], 0.05)[0]
            ):
                continue
            self.send(ready)
            pending = pending[len(ready):]

    def send(self, text):
        for start in range(0, len(text), CHUNK):
            emit({"ev": self.name, "text": text[start:start + CHUNK]})

    def sync(self, fd):
        self.synced.clear()
        os.write(fd, SYNC.encode())
        self.synced.wait(5)


state = {"running": False, "count": 0}
state_lock = threading.Lock()
requests = queue.Queue()
main_thread = threading.main_thread().ident


def on_sigint(signum, frame):
    if state["running"]:
        raise KeyboardInterrupt


def read_requests():
    stream = os.fdopen(proto_in, "r", encoding="utf-8", errors="replace")
    for line in stream:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        if request.get("op") == "interrupt":
            with state_lock:
                if state["running"]:
                    signal.pthread_kill(main_thread, signal.SIGINT)
        elif request.get("op") == "run":
            requests.put(request)
    os._exit(0)


def display_data(value):
    data = {"text/plain": repr(value)}
    for method, mime in (
        ("_repr_html_", "text/html"),
        ("_repr_markdown_", "text/markdown"),
        ("_repr_latex_", "text/latex"),
        ("_repr_svg_", "image/svg+xml"),
        ("_repr_json_", "application/json"),
    ):
        render = getattr(value, method, None)
        if callable(render) and not isinstance(value, type):
            try:
                shown = render()
            except Exception:
                continue
            if shown is not None:
                data[mime] = shown if isinstance(shown, str) else json.dumps(shown)
    for mime, text in data.items():
        if len(text) > MAX_RESULT:
            data[mime] = text[:MAX_RESULT] + "\n... [truncated by Sandpit]"
    return data


def report(error):
    # From the cell's first frame on, without the driver's (`<string>`,
    # from `-c`): a syntax error has none.
    frames = list(traceback.extract_tb(error.__traceback__))
    cells = [i for i, f in enumerate(frames) if f.filename.startswith("<cell-")]
    frames = [f for f in frames[cells[0]:] if f.filename != "<string>"] if cells else []
    lines = []
    if frames:
        lines.append("Traceback (most recent call last):")
        lines.extend(traceback.StackSummary.from_list(frames).format())
    lines.extend(traceback.format_exception_only(type(error), error))
    emit({
        "ev": "error",
        "ename": type(error).__name__,
        "evalue": str(error),
        "traceback": [line.rstrip("\n") for line in lines],
    })


def execute(namespace, code, name):
    """Runs a cell; returns its last expression's value (or None)."""
    tree = ast.parse(code, name, "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    body = compile(tree, name, "exec")
    tail = compile(last, name, "eval") if last is not None else None
    with state_lock:
        state["running"] = True
    try:
        exec(body, namespace)
        return eval(tail, namespace) if tail is not None else None
    finally:
        with state_lock:
            state["running"] = False


def run(namespace, code, captures):
    state["count"] += 1
    count = state["count"]
    emit({"ev": "count", "n": count})
    name = "<cell-%d>" % count
    linecache.cache[name] = (len(code), None, code.splitlines(True), name)
    value, failure = None, None
    try:
        value = execute(namespace, code, name)
    except BaseException as error:  # the cell's error, KeyboardInterrupt too
        failure = error
    # Everything the cell printed comes before its result.
    for stream, capture, fd in zip((sys.stdout, sys.stderr), captures, (1, 2)):
        try:
            stream.flush()
        except Exception:
            pass
        capture.sync(fd)
    if failure is not None:
        report(failure)
    elif value is not None:
        namespace["_"] = value
        try:
            emit({"ev": "result", "data": display_data(value)})
        except Exception as error:  # a failing __repr__
            report(error)


def main():
    signal.signal(signal.SIGINT, on_sigint)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    out = Capture(1, "stdout")
    err = Capture(2, "stderr")
    sys.stdin = open(os.devnull, "r")
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    namespace = module.__dict__
    threading.Thread(target=read_requests, daemon=True).start()
    emit({"ev": "ready", "version": sys.version.split()[0]})
    while True:
        try:
            request = requests.get()
        except KeyboardInterrupt:
            continue
        try:
            run(namespace, request.get("code", ""), (out, err))
        except KeyboardInterrupt:
            pass
        emit({"ev": "done"})


main()
