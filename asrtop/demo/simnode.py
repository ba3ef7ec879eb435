"""A simulated FunASR node for the demo and the tests: real HTTP, real audio parsing, fake recognition.

    python -m asrtop.demo.simnode --port P [--ws-port P2] [--host 127.0.0.1] [--name node-1] [--rtf 0.1]
        [--slots 4] [--queue 32] [--model-dir DIR] [--model-name NAME] [--error-rate 0] [--slowdown 1.0] [--fault-state FILE]

Endpoints (shaped like FunASR's `funasr-server` and the Fun-ASR WebUI):
- POST /asr                      multipart `file` (WAV), `language`, `hotwords`
                                 -> {text, segments:[{start,end,text}], duration, processing_time, rtf}
- POST /v1/audio/transcriptions  OpenAI-style multipart `file`, `model`, `language`, `response_format`
                                 (json -> {text}; text -> plain text; verbose_json -> {task, language,
                                 duration, text, segments})
- POST /api/predict/             Gradio-style JSON {"data": [audio, hotwords, language, itn]} where
                                 audio is a path to a WAV file on this machine, a base64 WAV (optionally a
                                 `data:audio/wav;base64,` URL), or a Gradio file object {"path"|"name": ...}
                                 or {"data": <base64>}; -> {"data": [text], "is_generating": false, "duration"}
- GET  /v1/models, GET /health -> {"status":"ok","device":..,"models_loaded":[..]}
- GET  /_sim/stats               requests received/answered, by status, in flight, queued (for tests); the
                                 WebSocket streams ("streams": asrtop.demo.simws.StreamStats); the
                                 fault knobs and the simulated GPU's leaked bytes (the agent's simulated
                                 GPU collector reads them: see asrtop.demo.simfaults)
- POST /_sim/fault               DEMO ONLY, loopback clients only: {"error_rate", "slowdown", "gpu_leak_mb_s",
                                 "rss_leak_mb_s", "crash_loop", "gpu_hot", "crash", "clear"} (asrtop.demo.simfaults)
- POST /_sim/upgrade             DEMO ONLY, loopback clients only: {"model": REV} -> {"upgrading", "from", "pid"};
                                 installs REV's files in the model dir, then restarts this process ON THE SAME
                                 PID (close the listener, os.execv with --model-name REV): the port is down
                                 for the restart, like a real service restart. See asrtop.demo.revisions for
                                 the broken revisions (-badcanary, -slow).

Each request holds one of `--slots` concurrent slots (the node's "GPU") for duration x rtf x slowdown
seconds; up to `--queue` more wait for a slot; past that the node answers 503. Non-audio -> 400 JSON.

With `--ws-port P2` the node also serves FunASR's WebSocket protocol on P2 (every path; offline, online and
2pass sessions, see asrtop.demo.simws): each stream holds a slot for its whole life; none free -> 503.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from asrtop.demo.audio import Audio, AudioError, gradio_audio, read_wav, vad_segments
from asrtop.demo.revisions import check_revision, ensure_model_dir, install_revision, slow_factor
from asrtop.demo import simfaults, simws
from asrtop.demo.simfaults import CRASH_EXIT, CrashLoopFile, FaultError, NodeFaults

MAX_UPLOAD = 256 * 1024 * 1024  # a 60 min 16 kHz WAV is ~115 MB
DEFAULT_MODEL = "Fun-ASR-Nano-2512"
LOOPBACK = ("127.0.0.1", "::1")


@dataclass
class NodeSettings:
    name: str = "node-1"
    rtf: float = 0.1
    slots: int = 4
    queue: int = 32
    model_dir: Path | None = None
    model_name: str = DEFAULT_MODEL
    error_rate: float = 0.0
    slowdown: float = 1.0
    seed: int | None = None
    fault_state: Path | None = None  # where a crash loop is kept across restarts


class Stats:
    def __init__(self) -> None:
        self.received = 0
        self.answered = 0
        self.by_status: dict[str, int] = {}
        self.by_endpoint: dict[str, int] = {}
        self.in_flight = 0  # holding a slot
        self.queued = 0  # waiting for one
        self.audio_seconds = 0.0
        self.started = time.time()

    def as_dict(self, node: "SimNode") -> dict:
        return {"name": node.settings.name, "received": self.received, "answered": self.answered,
                "by_status": dict(self.by_status), "by_endpoint": dict(self.by_endpoint),
                "in_flight": self.in_flight, "queued": self.queued, "slots": node.settings.slots,
                "queue_limit": node.settings.queue, "audio_seconds": round(self.audio_seconds, 3),
                "rtf": node.settings.rtf, "error_rate": node.settings.error_rate,
                "slowdown": node.settings.slowdown, "pid": os.getpid(), "uptime_s": round(time.time() - self.started, 3),
                "streams": node.streams.as_dict(), **node.faults.now()}


class Overloaded(Exception):
    pass


class SimNode:
    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.stats = Stats()
        self._slots = asyncio.Semaphore(settings.slots)
        self._rng = random.Random(settings.seed)
        self.started_at = time.time()
        self.upgrade_to: str | None = None  # set by /_sim/upgrade: main() re-executes on this revision
        self.restart = asyncio.Event()  # set once the upgrade's answer is out: _serve closes the listener
        self.faults = NodeFaults(settings, CrashLoopFile(settings.fault_state))
        self.streams = simws.StreamStats()
        if settings.model_dir is not None:
            ensure_model_dir(settings.model_dir, settings.model_name)

    # --- the "GPU" -------------------------------------------------------------------------------
    async def take_slot_now(self) -> bool:
        """A slot for a stream, only if one is free now (nobody waits minutes for a handshake)."""
        if self._slots.locked():
            return False
        await self._slots.acquire()  # free and nobody waiting: returns at once
        self.stats.in_flight += 1
        return True

    def give_slot(self) -> None:
        self.stats.in_flight -= 1
        self._slots.release()

    async def recognise(self, audio: Audio) -> dict:
        """Hold a slot for duration x rtf x slowdown; raise Overloaded past the queue limit."""
        s = self.settings
        if self.stats.in_flight >= s.slots and self.stats.queued >= s.queue:
            raise Overloaded(f"{s.name}: all {s.slots} slots busy and {s.queue} requests queued")
        t0 = time.monotonic()
        self.stats.queued += 1
        try:
            await self._slots.acquire()
        finally:
            self.stats.queued -= 1
        self.stats.in_flight += 1
        try:
            segments = vad_segments(audio)
            await asyncio.sleep(audio.duration * s.rtf * s.slowdown * slow_factor(s.model_name))
            if s.error_rate > 0 and self._rng.random() < s.error_rate:
                raise RuntimeError(f"{s.name}: simulated inference failure")
        finally:
            self.stats.in_flight -= 1
            self._slots.release()
        self.stats.audio_seconds += audio.duration
        took = time.monotonic() - t0
        segs = [{"start": g.start, "end": g.end, "text": simws.segment_text(i, g)} for i, g in enumerate(segments)]
        text = simws.segments_text(s.model_name, segments)
        return {"text": text, "segments": segs, "duration": round(audio.duration, 3),
                "processing_time": round(took, 4), "rtf": round(took / audio.duration, 4) if audio.duration else 0.0}

    # --- HTTP ------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_UPLOAD, middlewares=[self._count])
        app.add_routes([
            web.post("/asr", self.h_asr),
            web.post("/v1/audio/transcriptions", self.h_openai),
            web.post("/api/predict/", self.h_predict),
            web.post("/api/predict", self.h_predict),
            web.get("/v1/models", self.h_models),
            web.get("/health", self.h_health),
            web.get("/_sim/stats", self.h_stats),
            web.post("/_sim/fault", self.h_fault),
            web.post("/_sim/upgrade", self.h_upgrade),
        ])
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler):
        """Every recognition request received gets exactly one answer, counted here by status."""
        counted = request.method == "POST" and not request.path.startswith("/_sim/")
        if not counted:
            return await handler(request)
        self.stats.received += 1
        self.stats.by_endpoint[request.path] = self.stats.by_endpoint.get(request.path, 0) + 1
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as e:
            status = e.status
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away before the answer (nginx's code for it)
            raise
        finally:
            self.stats.answered += 1
            self.stats.by_status[str(status)] = self.stats.by_status.get(str(status), 0) + 1

    async def _run(self, audio_bytes: bytes) -> dict | web.Response:
        try:
            audio = read_wav(audio_bytes)
        except AudioError as e:
            return _error(400, str(e))
        try:
            return await self.recognise(audio)
        except Overloaded as e:
            return _error(503, str(e), headers={"Retry-After": "1"})
        except RuntimeError as e:
            return _error(500, str(e))

    async def _form(self, request: web.Request) -> tuple[bytes | None, dict]:
        """Read a multipart form in memory (aiohttp's request.post() spools files to disk)."""
        if not request.content_type.startswith("multipart/"):
            return None, {}
        data, fields = None, {}
        reader = await request.multipart()
        async for part in reader:
            if part.name == "file":
                data = bytes(await part.read())
            elif part.name:
                fields[part.name] = (await part.read()).decode("utf-8", "replace")
        return data, fields

    async def h_asr(self, request: web.Request) -> web.Response:
        data, fields = await self._form(request)
        if data is None:
            return _error(400, "expected multipart/form-data with a `file` field holding WAV audio")
        out = await self._run(data)
        if isinstance(out, web.Response):
            return out
        out["language"] = fields.get("language", "auto")
        out["hotwords"] = [w for w in fields.get("hotwords", "").replace(",", " ").split() if w]
        out["node"] = self.settings.name
        return web.json_response(out)

    async def h_openai(self, request: web.Request) -> web.Response:
        data, fields = await self._form(request)
        if data is None:
            return _error(400, "expected multipart/form-data with a `file` field holding WAV audio")
        fmt = fields.get("response_format", "json")
        if fmt not in ("json", "text", "verbose_json"):
            return _error(400, f"response_format must be json, text or verbose_json, got {fmt!r}")
        out = await self._run(data)
        if isinstance(out, web.Response):
            return out
        if fmt == "text":
            return web.Response(text=out["text"] + "\n")
        if fmt == "json":
            return web.json_response({"text": out["text"]})
        return web.json_response({
            "task": "transcribe", "language": fields.get("language", "auto"), "duration": out["duration"],
            "text": out["text"],
            "segments": [dict(id=i, **s) for i, s in enumerate(out["segments"])],
        })

    async def h_predict(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, 'expected JSON {"data": [audio, hotwords, language, itn]}')
        items = body.get("data") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return _error(400, 'expected JSON {"data": [audio, hotwords, language, itn]}')
        try:
            data = gradio_audio(items[0])
        except AudioError as e:
            return _error(400, str(e))
        out = await self._run(data)
        if isinstance(out, web.Response):
            return out
        return web.json_response({"data": [out["text"]], "is_generating": False,
                                  "duration": out["processing_time"], "average_duration": out["processing_time"]})

    async def h_models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.settings.model_name, "object": "model", "owned_by": "asrtop-demo"}]})

    async def h_health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "device": "simulated", "models_loaded": [self.settings.model_name],
                                  "node": self.settings.name, "pid": os.getpid(), "started_at": self.started_at})

    async def h_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_dict(self))

    async def h_fault(self, request: web.Request) -> web.Response:
        # Demo-only fault injection; refuse anything not from this machine.
        if request.remote not in LOOPBACK:
            return _error(403, "/_sim/fault is demo-only and answers loopback clients only")
        try:
            knobs = simfaults.parse(await request.json())
            self.faults.keep(knobs)
        except (ValueError, UnicodeDecodeError) as e:  # FaultError is a ValueError
            return _error(400, str(e) if isinstance(e, FaultError) else "expected a JSON object of fault knobs")
        except OSError as e:
            return _error(500, f"cannot keep the crash loop in {self.settings.fault_state}: {e.strerror or e}")
        self.faults.apply(knobs)
        if knobs.get("crash"):
            # Die like a crashed inference server: no cleanup, in-flight connections reset.
            asyncio.get_running_loop().call_later(0.05, os._exit, CRASH_EXIT)
            return web.json_response({"crashing": True, "pid": os.getpid()})
        return web.json_response(self.faults.now())

    async def h_upgrade(self, request: web.Request) -> web.Response:
        # Demo-only upgrade (the demo's rollout hook, asrtop.demo.upgrade); refuse anything not from here.
        if request.remote not in LOOPBACK:
            return _error(403, "/_sim/upgrade is demo-only and answers loopback clients only")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, 'expected JSON {"model": REVISION}')
        try:
            model = check_revision(body.get("model") if isinstance(body, dict) else None)
        except ValueError as e:
            return _error(400, str(e))
        if self.upgrade_to is not None:
            return _error(409, f"already restarting on {self.upgrade_to}")
        if self.settings.model_dir is not None:
            try:
                await asyncio.to_thread(install_revision, self.settings.model_dir, model)
            except OSError as e:
                return _error(500, f"cannot install {model} into {self.settings.model_dir}: {e.strerror or e}")
        self.upgrade_to = model
        # Restart once this answer is on the wire (the handler must return first).
        asyncio.get_running_loop().call_later(0.05, self.restart.set)
        return web.json_response({"upgrading": model, "from": self.settings.model_name, "pid": os.getpid()})


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m asrtop.demo.simnode", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ws-port", type=int, help="also serve FunASR's WebSocket protocol on this port (any path)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--name", default="node-1")
    p.add_argument("--rtf", type=float, default=0.1, help="seconds of work per second of audio (default 0.1)")
    p.add_argument("--slots", type=int, default=4, help="concurrent recognitions (default 4)")
    p.add_argument("--queue", type=int, default=32, help="requests waiting for a slot before 503 (default 32)")
    p.add_argument("--model-dir", type=Path, help="model directory (small files created if empty)")
    p.add_argument("--model-name", default=DEFAULT_MODEL, help=f"model served (default {DEFAULT_MODEL})")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 500 (0..1)")
    p.add_argument("--slowdown", type=float, default=1.0, help="multiplier on processing time")
    p.add_argument("--seed", type=int, help="seed for the error draw (reproducible tests)")
    p.add_argument("--fault-state", type=Path, metavar="FILE",
                   help="file that keeps a crash loop across restarts (POST /_sim/fault crash_loop needs it)")
    a = p.parse_args(argv)
    for what, ok in (("--rtf", 0 <= a.rtf <= 100), ("--slots", a.slots >= 1), ("--queue", a.queue >= 0),
                     ("--error-rate", 0 <= a.error_rate <= 1), ("--slowdown", a.slowdown > 0),
                     ("--port", 0 < a.port < 65536), ("--ws-port", a.ws_port is None or 0 < a.ws_port < 65536)):
        if not ok:
            p.error(f"{what} out of range")
    return a


async def _serve(node: SimNode, host: str, port: int, ws_port: int | None = None) -> None:
    runners = [web.AppRunner(node.app(), access_log=None, handle_signals=True)]
    if ws_port is not None:
        runners.append(web.AppRunner(simws.stream_app(node), access_log=None))
    try:
        for runner, p in zip(runners, (port, ws_port)):
            await runner.setup()
            # Short shutdown: a stopped node is a crashed or drained node; nobody waits a minute for it.
            try:
                await web.TCPSite(runner, host, p, backlog=1024, shutdown_timeout=0.5).start()
            except OSError as e:
                e.port = p  # which of the two ports: main() says it
                raise
        ws = f" and ws://{host}:{ws_port}" if ws_port is not None else ""
        print(f"simnode {node.settings.name} listening on http://{host}:{port}{ws} (pid {os.getpid()})", flush=True)
        faults = asyncio.create_task(node.faults.run(node.settings.name))
        try:
            await node.restart.wait()
        finally:
            faults.cancel()
    finally:
        for runner in runners:
            await runner.cleanup()  # closes the listeners: the ports are down until the new process listens


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    settings = NodeSettings(a.name, a.rtf, a.slots, a.queue, a.model_dir, a.model_name, a.error_rate, a.slowdown, a.seed,
                            a.fault_state)
    try:
        node = SimNode(settings)
    except OSError as e:
        print(f"simnode: cannot prepare model dir {a.model_dir}: {e.strerror or e}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(node, a.host, a.port, a.ws_port))
    except OSError as e:
        why = "port in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        print(f"simnode: cannot listen on {a.host}:{getattr(e, 'port', a.port)}: {why}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, web.GracefulExit):
        return 0
    if node.upgrade_to is not None:
        return _reexec(a, node.upgrade_to)
    return 0


def _reexec(a: argparse.Namespace, model: str) -> int:
    """Become the same node on another revision, on the same PID: the demo's watchdog, PDEATHSIG and the
    cluster's Popen stay valid. The start-up flags are rebuilt from the parsed ones (runtime fault knobs
    reset, as after any restart)."""
    argv = [sys.executable, "-m", "asrtop.demo.simnode", "--port", str(a.port), "--host", a.host, "--name", a.name,
            "--rtf", repr(a.rtf), "--slots", str(a.slots), "--queue", str(a.queue), "--model-name", model,
            "--error-rate", repr(a.error_rate), "--slowdown", repr(a.slowdown)]
    if a.ws_port is not None:
        argv += ["--ws-port", str(a.ws_port)]
    if a.model_dir is not None:
        argv += ["--model-dir", str(a.model_dir)]
    if a.seed is not None:
        argv += ["--seed", str(a.seed)]
    if a.fault_state is not None:
        argv += ["--fault-state", str(a.fault_state)]
    print(f"simnode {a.name} restarting on {model} (pid {os.getpid()})", flush=True)
    sys.stderr.flush()
    try:
        os.execv(sys.executable, argv)
    except OSError as e:
        print(f"simnode: cannot restart on {model}: {e.strerror or e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
