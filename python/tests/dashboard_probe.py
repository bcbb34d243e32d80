#!/usr/bin/env python3
"""Loads the master's dashboard in headless Chromium (Debian's `chromium`) and watches it live
through the DevTools protocol over a pipe (--remote-debugging-pipe: no extra Python package).

Prints one line per change of what the page shows:
  PAGE leader=<pid> epoch=<n> agents=<rows> frameworks=<rows> tasks=<states,...> history=<pids,...>
and, once the page shows --until-leader with --agents agent rows and --tasks running tasks,
saves a screenshot (--screenshot) and the DOM (--dom), prints DONE and exits 0. Exits 1 after
--timeout seconds without that.

Usage: dashboard_probe.py URL --until-leader PID --agents N --tasks N --screenshot PNG --dom HTML [--timeout S]
"""
import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

STATE_JS = """JSON.stringify({
  leader: document.body.dataset.leader || "",
  epoch: document.body.dataset.epoch || "",
  agents: document.querySelectorAll('#agents tbody tr').length,
  frameworks: document.querySelectorAll('#frameworks tbody tr').length,
  tasks: Array.from(document.querySelectorAll('#tasks tbody tr')).map(r => r.cells[4].textContent),
  history: Array.from(document.querySelectorAll('#history tbody tr')).map(r => r.cells[1].textContent),
  status: (document.getElementById('status') || {}).textContent || ""
})"""


# The browser itself: Debian's /usr/bin/chromium is a shell launcher.
CHROMIUM = "/usr/lib/chromium/chromium" if os.path.exists("/usr/lib/chromium/chromium") else "chromium"


class DevTools:
    def __init__(self, profile, log):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def wire():  # in the child: fd 3 is what Chromium reads, fd 4 what it writes
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-pipe", "--user-data-dir=" + profile, "--window-size=1280,900", "about:blank"],
            preexec_fn=wire, close_fds=False, stdout=subprocess.DEVNULL, stderr=log)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buffer = b""
        self.next_id = 0

    def call(self, method, params=None, session=None, timeout=20):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while time.time() < deadline:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError("%s: %s" % (method, reply["error"]))
                    return reply.get("result", {})
            chunk = os.read(self.from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buffer += chunk
        raise RuntimeError("no answer to " + method)

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main():
    # Stopped by the test's teardown: close the browser on the way out (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--until-leader", required=True)
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("--dom", required=True)
    parser.add_argument("--timeout", type=float, default=90)
    args = parser.parse_args()

    profile = tempfile.mkdtemp(prefix="dashboard-probe-")
    last = None
    log = open(os.path.join(profile, "chromium.log"), "w")
    tools = DevTools(profile, log)
    try:
        target = tools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        tools.call("Emulation.setDeviceMetricsOverride",
                   {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
        tools.call("Page.navigate", {"url": args.url}, session)
        deadline = time.time() + args.timeout
        while time.time() < deadline:
            result = tools.call("Runtime.evaluate", {"expression": STATE_JS, "returnByValue": True}, session)
            value = result.get("result", {}).get("value")
            shown = json.loads(value) if isinstance(value, str) else None
            if shown and shown != last:
                last = shown
                print("PAGE leader=%s epoch=%s agents=%d frameworks=%d tasks=%s history=%s" % (
                    shown["leader"] or "none", shown["epoch"] or "?", shown["agents"], shown["frameworks"],
                    ",".join(shown["tasks"]) or "none", ",".join(shown["history"]) or "none"), flush=True)
            if shown and shown["leader"] == args.until_leader and shown["agents"] == args.agents \
                    and shown["tasks"].count("TASK_RUNNING") == args.tasks:
                shot = tools.call("Page.captureScreenshot", {"format": "png"}, session)
                with open(args.screenshot, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
                dom = tools.call("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                                      "returnByValue": True}, session)
                with open(args.dom, "w") as f:
                    f.write(dom["result"]["value"])
                print("DONE", flush=True)
                return 0
            time.sleep(0.2)
        print("TIMEOUT last=%s" % json.dumps(last), flush=True)
        return 1
    finally:
        tools.close()
        log.close()
        if last is None:  # the page never showed anything: say why
            with open(os.path.join(profile, "chromium.log")) as f:
                sys.stderr.write(f.read()[-3000:])
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
