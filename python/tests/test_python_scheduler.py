#!/usr/bin/python3
"""The Python scheduler (examples/python/scheduler.py) against the real Swift cluster.

    /usr/bin/python3 python/tests/test_python_scheduler.py      # exit 0/1, last line "N passed, M failed"
    /usr/bin/python3 -m pytest python/tests/test_python_scheduler.py   # also works, if pytest is there

Starts a throw-away ZooKeeper (scripts/zk-standalone.sh), 2 mesos-master and 1 mesos-agent from
the built binaries ($MESOS_BIN_DIR, default <repo>/.build/debug), session timeout 2 s, then:

  framing / epoch guard   the scheduler's frame decoder and message acceptance, without a cluster:
                          every message that breaks the epoch rules is dropped (counted by reason)
                          and not acted on, also after a leader change
  failover rules          without a cluster: failover=true on a resuming instance's first
                          re-registration, false afterwards; framework_disconnected and a broken link
                          re-register at once; message_refused is reported, not fatal; "Framework
                          failed over" is fatal (exit 1), or the goal of --until failedover (exit 0)
  return route offer      without a cluster: an offer (--return_routes) is declined on the offering
                          connection with its nonce, and is not taken for a master message
  task finishes           register, take an offer, launch `echo ...; sleep 1`, see RUNNING then
                          FINISHED (each acknowledged), the output in the task's sandbox
  leader killed           a long task RUNNING; SIGKILL the leading master: the scheduler detects the
                          standby, re-registers (REREGISTERED naming it), reconciles, and the new
                          leader reports the task TASK_RUNNING (its reconciliation answer, or the
                          agent's update sent again if its acknowledgement died with the old
                          leader); nothing is reported LOST; the task process never stopped
  scheduler failover      instance A runs a long task (--failover_timeout 30); instance B resumes
                          its framework (--framework_id): A is told "Framework failed over" and
                          exits 1; B is REGISTERED with the same id and sees the task TASK_RUNNING
                          by reconciliation, the same process (started once), still running
  task over TLS           a second master and agent under /mesos-tls with scripts/gen-certs'
                          certificates (LIBPROCESS_SSL_*, client certificates required): the
                          scheduler (Python's ssl) runs a task to FINISHED over TLS; the master's
                          HTTP endpoint answers HTTPS on its bus port; a plaintext connection is refused

Every process is stopped by pid in a finally block (task process groups included). Logs stay in
the printed work directory when something fails (or with KEEP_LOGS=1). Env: MESOS_BIN_DIR,
KEEP_LOGS, TMPDIR.
"""
import contextlib
import http.client
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.dont_write_bytecode = True
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("MESOS_BIN_DIR") or os.path.join(REPO, ".build", "debug")
SCHEDULER = os.path.join(REPO, "examples", "python", "scheduler.py")
ZK_SCRIPT = os.path.join(REPO, "scripts", "zk-standalone.sh")
PYTHON = "/usr/bin/python3"
SESSION_TIMEOUT = "2secs"

sys.path.insert(0, os.path.dirname(SCHEDULER))
import scheduler as sched  # noqa: E402  (the module under test)


def log(text):
    print(f"[python-scheduler] {text}", flush=True)


def alive(pid):
    """Not gone and not a zombie (kill -0 succeeds on zombies)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


def kill_session(leader):
    """SIGKILL every process of the session `leader` leads (an executor and its task)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
            if int(fields[3]) == leader:
                os.kill(int(name), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            pass


class Process:
    """A child process whose stdout+stderr go to a log file (or, for the scheduler, a pipe read
    line by line into `lines`)."""

    def __init__(self, name, argv, directory, capture=False, env=None):
        self.name = name
        self.log_path = os.path.join(directory, f"{name}.log")
        self.lines = []
        self._cond = threading.Condition()
        with open(self.log_path, "ab") as logfile:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if capture else logfile,
                stderr=logfile, cwd=REPO, close_fds=True, env=dict(os.environ, **(env or {})))
        self.pid = self.popen.pid
        if capture:
            self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
            self._reader.start()

    def _read(self):
        for raw in io.TextIOWrapper(self.popen.stdout, encoding="utf-8", errors="replace"):
            with self._cond:
                self.lines.append(raw.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pattern, timeout, after=-1):
        """The first stdout line matching the regex `pattern` (past line number `after`); raises on
        timeout or exit."""
        return self.wait_line_at(pattern, timeout, after)[1]

    def wait_line_at(self, pattern, timeout, after=-1):
        """(index, line) of the first stdout line past `after` matching the regex `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index in range(after + 1, len(self.lines)):
                    if regex.search(self.lines[index]):
                        return index, self.lines[index]
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self._reader.is_alive()):
                    state = "timed out" if left <= 0 else f"exited {self.popen.returncode}"
                    raise AssertionError(f"{self.name}: no line matching {pattern!r} ({state}); output:\n  "
                                         + "\n  ".join(self.lines) + "\n" + self.tail())
                self._cond.wait(min(left, 0.5))

    def wait_log(self, pattern, timeout):
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = regex.search(self.log())
            if match:
                return match
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no {pattern!r} in its log (exit={self.popen.poll()})\n{self.tail()}")

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def tail(self, count=20):
        return f"  ---- last lines of {self.log_path}\n" + "".join(f"  {line}\n" for line in self.log().splitlines()[-count:])

    def wait(self, timeout):
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, grace=8.0):
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            if self.wait(grace) is None:
                self.popen.kill()
                self.popen.wait()
        if self.popen.stdout is not None:
            self._reader.join(2)
            self.popen.stdout.close()


class Cluster:
    """ZooKeeper + masters + agents on loopback; `close()` stops everything it started."""

    def __init__(self, directory, path="/mesos", env=None):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.zk_dir = os.path.join(directory, "zk")
        self.zk = None
        self.path = path
        self.env = env or (lambda _role: {})   # role -> extra environment (LIBPROCESS_SSL_*)
        self.owns_zk = True
        self.masters = []
        self.agents = []
        self.schedulers = []

    @property
    def url(self):
        return f"zk://{self.zk}{self.path}"

    def start_zookeeper(self):
        env = dict(os.environ, ZK_STOP_SIGNAL="KILL")
        done = subprocess.run(["bash", ZK_SCRIPT, "start", self.zk_dir], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"zk-standalone.sh start failed ({done.returncode}): {done.stderr}")
        self.zk = done.stdout.strip().splitlines()[-1]

    def binary(self, name):
        path = os.path.join(BIN_DIR, name)
        if not os.access(path, os.X_OK):
            raise AssertionError(f"{path} is missing: build with `swift build` first (or set MESOS_BIN_DIR)")
        return path

    def start_master(self):
        n = len(self.masters) + 1
        master = Process(f"master{n}", [
            self.binary("mesos-master"), "--zk", self.url, "--port", "0", "--work_dir", os.path.join(self.dir, f"master{n}"),
            "--zk_session_timeout", SESSION_TIMEOUT, "--allocation_interval", "200ms"], self.dir, env=self.env("master"))
        self.masters.append(master)
        master.bus_pid = master.wait_log(r"event=listening .*\bpid=(master@\S+)", 20).group(1)
        return master

    def start_agent(self):
        n = len(self.agents) + 1
        agent = Process(f"agent{n}", [
            self.binary("mesos-agent"), "--master", self.url, "--port", "0", "--work_dir", os.path.join(self.dir, f"agent{n}"),
            "--zk_session_timeout", SESSION_TIMEOUT, "--registration_backoff_factor", "200ms",
            "--status_update_retry_interval", "1secs", "--resources", "cpus:2;mem:1024"], self.dir, env=self.env("agent"))
        agent.work_dir = os.path.join(self.dir, f"agent{n}")
        self.agents.append(agent)
        return agent

    def scheduler(self, name, *args):
        process = Process(name, [PYTHON, SCHEDULER, "--master", self.url, "-v", *args], self.dir, capture=True,
                          env=self.env("scheduler"))
        self.schedulers.append(process)
        return process

    def master_with_pid(self, pid):
        return next(m for m in self.masters if m.bus_pid == pid)

    def executors(self):
        """[(task id, executor process, sandbox)] of every executor any agent launched
        (`event=executor_launched`); the executor leads its own session, its task runs in it."""
        found = []
        for agent in self.agents:
            for line in agent.log().splitlines():
                if " event=executor_launched " not in line:
                    continue
                fields = dict(re.findall(r"(\w+)=(\S+)", line.split(" | ")[0]))
                found.append((fields["task_id"], int(fields["executor_process"]), fields["directory"]))
        return found

    def task_pids(self):
        """{task id: pid} of every task started, from its executor's `event=task_started` (the
        executor's log is its sandbox's stderr)."""
        found = {}
        for task, _, directory in self.executors():
            try:
                with open(os.path.join(directory, "stderr"), errors="replace") as f:
                    for match in re.finditer(r"event=task_started\b[^|]*?\btask_pid=(?P<pid>\d+)", f.read()):
                        found[task] = int(match.group("pid"))
            except OSError:
                pass
        return found

    def close(self):
        for process in self.schedulers:
            process.stop(signal.SIGTERM, grace=5)
        for process in self.agents:      # SIGUSR1: an agent shuts its executors down for good
            process.stop(signal.SIGUSR1, grace=8)
        for process in self.masters:
            process.stop(signal.SIGTERM, grace=5)
        for _, executor, _ in self.executors():  # an executor's session holds its task
            kill_session(executor)
        if self.owns_zk and (self.zk is not None or os.path.exists(os.path.join(self.zk_dir, "zk.pid"))):
            subprocess.run(["bash", ZK_SCRIPT, "stop", self.zk_dir], env=dict(os.environ, ZK_STOP_SIGNAL="KILL"),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


CLUSTER = None
WORK_DIR = None
FAILED = []


def setup_module(_module=None):
    global CLUSTER, WORK_DIR
    WORK_DIR = tempfile.mkdtemp(prefix="python-scheduler-test-")
    started = time.monotonic()
    CLUSTER = Cluster(WORK_DIR)
    try:
        CLUSTER.start_zookeeper()
        first = CLUSTER.start_master()
        first.wait_log(r"event=leading ", 20)
        second = CLUSTER.start_master()
        second.wait_log(r"event=detector_leader ", 20)
        agent = CLUSTER.start_agent()
        agent.wait_log(r"event=registered ", 20)
    except BaseException:
        teardown_module(failed=True)
        raise
    log(f"cluster up in {time.monotonic() - started:.2f} s: zk {CLUSTER.zk}, masters "
        f"{[m.bus_pid for m in CLUSTER.masters]}, work dir {WORK_DIR}")


def teardown_module(_module=None, failed=False):
    global CLUSTER
    if CLUSTER is not None:
        CLUSTER.close()
        CLUSTER = None
    if WORK_DIR is None:
        return
    if failed or FAILED or os.environ.get("KEEP_LOGS"):
        log(f"logs kept in {WORK_DIR}")
    else:
        shutil.rmtree(WORK_DIR, ignore_errors=True)


# ---- tests without a cluster ---------------------------------------------------------------------

def envelope(epoch, sender, **payload):
    env = sched.envelope_pb2.Envelope(epoch=epoch, **payload)
    setattr(env, "from", sender)
    return env


def test_framing():
    frames = b"".join(sched.encode_frame(envelope(7, f"master@127.0.0.1:{5050 + i}", ping={"connected": True}))
                      for i in range(3))
    decoder = sched.FrameDecoder()
    got = []
    for i in range(len(frames)):                      # one byte at a time: partial frames wait
        got += decoder.feed(frames[i:i + 1])
    assert [getattr(e, "from") for e in got] == [f"master@127.0.0.1:{5050 + i}" for i in range(3)], got
    assert len(sched.FrameDecoder().feed(frames)) == 3  # several frames in one read
    for bad in (b"\x00\x00\x00\x00", (sched.MAX_FRAME + 1).to_bytes(4, "big"), b"\x00\x00\x00\x02\xff\xff"):
        try:
            sched.FrameDecoder().feed(bad)
        except sched.FrameError:
            continue
        raise AssertionError(f"{bad!r} was not refused")
    exact = sched.FrameDecoder()
    assert exact.feed(sched.MAX_FRAME.to_bytes(4, "big")) == []  # exactly 16 MiB is allowed (waits for the rest)
    assert sched.group_sequence("json.info_0000000012") == 12
    assert [sched.group_sequence(n) for n in ("registry", "json.info_", "json.info_12a", "log_replicas")] == [None] * 4
    assert sched.parse_zk_url("zk://u:p@h1:1,h2:2/mesos/") == ("h1:1,h2:2", "/mesos", "u:p")


class NoDetector:
    def __init__(self, *_args):
        pass

    def stop(self):
        pass


LEADER = sched.Leader(epoch=3, pid="master@127.0.0.1:5050", host="127.0.0.1", port=5050)
MASTER_INFO = {"id": "m", "ip": 1, "port": 5050, "pid": "master@127.0.0.1:5050"}


def offline_scheduler(**options):
    """A Scheduler with no detector and no sockets of its own; `sent` records what it would send."""
    out = io.StringIO()
    s = sched.Scheduler(sched.Options(master="zk://127.0.0.1:1/mesos", command="true", **options), out=out,
                        detector_factory=NoDetector)
    s.pid = "scheduler-py@127.0.0.1:1"
    s.sent = []
    s._send = lambda field, message: s.sent.append((field, message)) or True
    s.text = out.getvalue
    return s


def close_offline(s):
    s.wake_r.close(), s.wake_w.close(), s.selector.close()


def sent_kinds(s):
    kinds = [field for field, _message in s.sent]
    s.sent.clear()
    return kinds


def test_epoch_guard():
    s = offline_scheduler()
    registered = {"framework_registered": {"framework_id": {"value": "F1"}, "master_info": MASTER_INFO}}
    s._receive(envelope(3, "master@127.0.0.1:5050", **registered))        # no leader detected
    s.leader = LEADER
    s._receive(envelope(2, "master@127.0.0.1:5050", **registered))        # stale epoch
    s._receive(envelope(4, "master@127.0.0.1:5050", **registered))        # ahead of our detector
    s._receive(envelope(3, "master@127.0.0.1:6060", **registered))        # not the leader
    assert not s.registered and s.dropped == {"no leader detected": 1, "stale epoch": 1,
                                              "epoch ahead of our detector": 1, "not from the leader": 1}, s.dropped
    assert "REGISTERED" not in s.text(), s.text()
    s._receive(envelope(3, "master@127.0.0.1:5050", **registered))
    assert s.registered and s.framework.id.value == "F1" and "REGISTERED F1" in s.text(), s.text()
    assert sum(s.dropped.values()) == 4, s.dropped                       # the accepted one is not counted

    # Registered: fatal or disruptive messages that break the rules are dropped, not obeyed.
    error = {"framework_error": {"message": sched.FAILED_OVER}}
    s._receive(envelope(2, "master@127.0.0.1:5050", **error))             # a deposed leader's epoch
    s._receive(envelope(3, "master@127.0.0.1:6060", **error))             # right epoch, another master
    s._receive(envelope(4, "master@127.0.0.1:5050", framework_disconnected={"reason": "x"}))
    assert s.result is None and s.registered, (s.result, s.registered)
    assert s.dropped == {"no leader detected": 1, "stale epoch": 2, "epoch ahead of our detector": 2,
                         "not from the leader": 2}, s.dropped
    assert s.sent == [] and "DISCONNECTED" not in s.text(), (s.sent, s.text())

    # A leader change: the old leader's epoch is stale from then on, from the same pid too.
    s._leader_changed(sched.Leader(epoch=5, pid="master@127.0.0.1:6060", host="127.0.0.1", port=6060))
    assert not s.registered and s.text().splitlines()[-2:] == [
        "DISCONNECTED leader changed", "LEADER master@127.0.0.1:6060 epoch=5"], s.text()
    s._receive(envelope(3, "master@127.0.0.1:5050", framework_reregistered=registered["framework_registered"]))
    s._receive(envelope(3, "master@127.0.0.1:5050", **error))
    assert s.result is None and not s.registered and s.dropped["stale epoch"] == 4, (s.result, s.dropped)

    # A hint is advisory: it never changes the detected leader (and one that breaks the epoch
    # rules is counted like any other message).
    s._receive(envelope(0, "master@127.0.0.1:7070", leader_hint={"leader": MASTER_INFO, "leader_epoch": 9, "reason": "x"}))
    assert (s.leader.epoch, s.leader.pid) == (5, "master@127.0.0.1:6060") and s.dropped["stale epoch"] == 5, s.dropped
    s._receive(envelope(5, "master@127.0.0.1:6060", framework_reregistered={
        "framework_id": {"value": "F1"}, "master_info": dict(MASTER_INFO, pid="master@127.0.0.1:6060")}))
    assert s.registered and s.text().splitlines()[-1] == "REREGISTERED F1 master=master@127.0.0.1:6060", s.text()
    assert sum(s.dropped.values()) == 10, s.dropped
    close_offline(s)


def test_failover_rules():
    with contextlib.redirect_stderr(io.StringIO()):  # the scheduler's warnings ("disconnected: ...")
        failover_rules()


def failover_rules():
    options, _verbose = sched.parse_args(["--master", "zk://127.0.0.1:1/mesos", "--framework_id", "F7",
                                          "--failover_timeout", "30", "--task-id", "t1"])
    assert (options.framework_id, options.failover_timeout, options.task_id) == ("F7", 30.0, "t1"), options
    for bad in (["--failover_timeout", "-1"], ["--failover_timeout", "nan"], ["--framework_id", "a/b"]):
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                sched.parse_args(["--master", "zk://127.0.0.1:1/mesos", *bad])
        except SystemExit as exit:
            assert exit.code == 64, (bad, exit.code)
        else:
            raise AssertionError(f"{bad} was accepted")

    s = offline_scheduler(framework_id="F7", failover_timeout=30.0, task_id="t1")
    assert s.framework.id.value == "F7" and s.framework.failover_timeout == 30.0, s.framework
    s._leader_changed(LEADER)

    def registrations():
        sent = [(field, m.failover if field == "reregister_framework" else None, m.framework.id.value,
                 m.framework.failover_timeout) for field, m in s.sent if field.endswith("register_framework")]
        s.sent.clear()
        return sent

    s._timers(time.monotonic())
    s.next_register = 0.0
    s._timers(time.monotonic())                                           # a retry: still a failover
    assert registrations() == [("reregister_framework", True, "F7", 30.0)] * 2
    reregistered = {"framework_reregistered": {"framework_id": {"value": "F7"}, "master_info": MASTER_INFO}}
    s._receive(envelope(3, LEADER.pid, **reregistered))
    # The answer to a failover is REGISTERED (the Swift driver's `.registered`); the task is reconciled.
    assert s.text().splitlines()[-2:] == ["REGISTERED F7 master=master@127.0.0.1:5050", "RECONCILE F7"], s.text()
    assert sent_kinds(s) == ["reconcile_tasks"]
    s._receive(envelope(3, LEADER.pid, **reregistered))                   # a duplicate answer: nothing
    assert s.text().count("REGISTERED F7") == 1 and s.sent == [], s.text()

    # Resuming, it launches nothing (the task is the earlier instance's): offers are declined.
    offer = {"id": {"value": "O1"}, "framework_id": {"value": "F7"}, "agent_id": {"value": "A1"}, "hostname": "h",
             "resources": [{"name": "cpus", "scalar": 2}, {"name": "mem", "scalar": 1024}]}
    s._receive(envelope(3, LEADER.pid, resource_offers={"offers": [offer]}))
    assert sent_kinds(s) == ["decline_offers"] and "LAUNCHED" not in s.text(), s.text()

    # framework_disconnected from the leader: re-register at once as the same instance (failover=false).
    s._receive(envelope(3, LEADER.pid, framework_disconnected={"reason": "the link broke"}))
    assert not s.registered and s.next_register <= time.monotonic(), s.next_register
    assert s.text().splitlines()[-1] == "DISCONNECTED the master says: the link broke", s.text()
    s._timers(time.monotonic())
    assert registrations() == [("reregister_framework", False, "F7", 30.0)]
    s._receive(envelope(3, LEADER.pid, **reregistered))
    assert s.registered and "REREGISTERED F7 master=master@127.0.0.1:5050" in s.text().splitlines(), s.text()
    assert sent_kinds(s) == ["reconcile_tasks"]
    s._receive(envelope(3, LEADER.pid, framework_disconnected={"reason": "again"}))
    s._receive(envelope(3, LEADER.pid, framework_disconnected={"reason": "again"}))   # not registered: no second one
    assert s.text().count("DISCONNECTED the master says: again") == 1, s.text()
    s._timers(time.monotonic())
    assert registrations() == [("reregister_framework", False, "F7", 30.0)]
    s._receive(envelope(3, LEADER.pid, **reregistered))
    s.sent.clear()

    # Our own link to the leader breaks: re-register at once (what we sent on it may be lost).
    a, b = sched.socket.socketpair()
    s.link = (a, sched.FrameDecoder())
    s._close(a)
    b.close()
    assert s.link is None and not s.registered, s.link
    assert s.text().splitlines()[-1] == "DISCONNECTED link to master@127.0.0.1:5050 broke: connection closed", s.text()
    s._timers(time.monotonic())
    assert registrations() == [("reregister_framework", False, "F7", 30.0)]
    s._receive(envelope(3, LEADER.pid, **reregistered))
    assert s.registered and s.text().count("REREGISTERED F7") == 3, s.text()
    s.sent.clear()

    # message_refused: reported (stdout and stderr), not fatal.
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        s._receive(envelope(3, LEADER.pid, message_refused={"kind": "decline_offers", "reason": "bad filters"}))
    assert s.result is None and s.registered and s.text().splitlines()[-1] == "REFUSED decline_offers bad filters"
    assert "the master refused our decline_offers: bad filters" in stderr.getvalue(), stderr.getvalue()

    # "Framework failed over": fatal (exit 1), and nothing more is sent (no unregister: not ours now).
    s._receive(envelope(3, LEADER.pid, framework_error={"message": sched.FAILED_OVER}))
    assert s.result == (1, f"framework error from the master: {sched.FAILED_OVER}"), s.result
    s._shutdown()
    assert s.sent == [], s.sent

    # --until failedover: being fenced is the goal; any other framework error is still fatal.
    goal = offline_scheduler(until="failedover")
    goal.leader, goal.registered = LEADER, True
    goal.framework.id.value = "F8"
    goal._receive(envelope(3, LEADER.pid, framework_error={"message": sched.REMOVED}))
    assert goal.result == (1, f"framework error from the master: {sched.REMOVED}"), goal.result
    goal.result = None
    goal._receive(envelope(3, LEADER.pid, framework_error={"message": sched.FAILED_OVER}))
    assert goal.result[0] == 0 and sched.FAILED_OVER in goal.result[1], goal.result
    close_offline(goal)

    # Resuming without --task-id: the first live task reconciliation reports becomes ours.
    adopt = offline_scheduler(framework_id="F9", until="running")
    adopt._leader_changed(LEADER)
    adopt._receive(envelope(3, LEADER.pid, framework_reregistered={"framework_id": {"value": "F9"}, "master_info": MASTER_INFO}))
    assert sent_kinds(adopt) == ["reconcile_tasks"]
    adopt._receive(envelope(3, LEADER.pid, status_update={"update": {
        "framework_id": {"value": "F9"}, "timestamp": 1.0, "uuid": b"",
        "status": {"task_id": {"value": "old-task"}, "state": sched.mesos_pb2.TASK_RUNNING, "agent_id": {"value": "A1"},
                   "source": sched.mesos_pb2.TaskStatus.SOURCE_MASTER, "reason": sched.mesos_pb2.TaskStatus.REASON_RECONCILIATION}}}))
    assert (adopt.task_id, adopt.result) == ("old-task", (0, "task old-task running")), (adopt.task_id, adopt.result)
    assert adopt.sent == [], adopt.sent                                   # no uuid (the master's answer): no acknowledgement
    close_offline(adopt)
    close_offline(s)


# ---- tests against the cluster ----------------------------------------------------------------

def test_task_finishes():
    started = time.monotonic()
    task = "py-finish-1"
    s = CLUSTER.scheduler("scheduler-finish", "--command", "echo hello-from-python; sleep 1", "--task-id", task,
                          "--until", "finished", "--timeout", "30")
    code = s.wait(40)
    s.stop()
    out = "\n".join(s.lines)
    assert code == 0, f"exit {code}:\n{out}\n{s.tail()}"
    for pattern in (r"^LEADER master@\S+ epoch=\d+$", r"^REGISTERED \S+ master=master@", r"^OFFER ",
                    rf"^LAUNCHED {task} ", rf"^STATUS {task} TASK_RUNNING source=SOURCE_EXECUTOR",
                    rf"^STATUS {task} TASK_FINISHED source=SOURCE_EXECUTOR", rf"^DONE task {task} finished"):
        assert any(re.search(pattern, line) for line in s.lines), f"no line matching {pattern!r}:\n{out}"
    assert s.lines[-1].startswith("DONE"), out
    # Sandboxes are Mesos's <work_dir>/slaves/<agent>/frameworks/<framework>/executors/<task>/runs/<run>.
    registered = next(re.match(r"^REGISTERED (\S+) ", line) for line in s.lines if line.startswith("REGISTERED "))
    sandbox = next(d for t, _, d in CLUSTER.executors() if t == task)
    assert f"/frameworks/{registered.group(1)}/executors/{task}/runs/" in sandbox, sandbox
    with open(os.path.join(sandbox, "stdout")) as f:
        assert "hello-from-python" in f.read()
    # The agent sends a task's next update only once the previous one is acknowledged: seeing
    # TASK_FINISHED proves the acknowledgement of TASK_RUNNING went through the master.
    log(f"task finishes: DONE after {time.monotonic() - started:.2f} s")


def test_leader_killed():
    task = "py-failover-1"
    s = CLUSTER.scheduler("scheduler-failover", "--command", "sleep 60", "--task-id", task,
                          "--until", "failover", "--timeout", "40")
    t0 = time.monotonic()
    s.wait_line(rf"^STATUS {task} TASK_RUNNING", 20)
    t_running = time.monotonic()
    leaders = [re.match(r"^LEADER (\S+) epoch=(\d+)$", line) for line in s.lines if line.startswith("LEADER ")]
    assert len(leaders) == 1, s.lines
    old_pid, old_epoch = leaders[0].group(1), int(leaders[0].group(2))
    task_pid = CLUSTER.task_pids()[task]
    old = CLUSTER.master_with_pid(old_pid)
    standby = next(m for m in CLUSTER.masters if m is not old and m.popen.poll() is None)

    killed = time.monotonic()
    old.popen.send_signal(signal.SIGKILL)
    assert old.wait(10) == -signal.SIGKILL

    new_leader = s.wait_line(rf"^LEADER {re.escape(standby.bus_pid)} epoch=\d+$", 20)
    t_detected = time.monotonic()
    new_epoch = int(new_leader.rsplit("=", 1)[1])
    assert new_epoch > old_epoch, f"epoch {old_epoch} -> {new_epoch}"
    rereg, _ = s.wait_line_at(rf"^REREGISTERED \S+ master={re.escape(standby.bus_pid)}$", 20)
    t_rereg = time.monotonic()
    s.wait_line(rf"^RECONCILE ", 5, after=rereg)
    # Through the new leader: its answer to the reconciliation, or the agent's TASK_RUNNING sent
    # again because the acknowledgement died with the old leader (whichever comes first).
    _, confirmed = s.wait_line_at(rf"^STATUS {task} TASK_RUNNING ", 20, after=rereg)
    t_reconciled = time.monotonic()
    how = "reconciliation" if "REASON_RECONCILIATION" in confirmed else "the agent's resent update"
    # The task is not checked for being alive here: the scheduler unregisters as soon as it saw the
    # confirmation, and the agent may have killed the task before this line ran. Its agent's log
    # says instead (below) that it ran until that kill.
    code = s.wait(20)
    s.stop()
    out = "\n".join(s.lines)
    assert code == 0, f"exit {code}:\n{out}\n{s.tail()}"
    assert s.lines[-1].startswith(f"DONE task {task} still running under the new leader {standby.bus_pid}"), out
    assert not [line for line in s.lines if "TASK_LOST" in line or "FAILED" in line], out
    # The same process: the task was not started again.
    assert CLUSTER.task_pids()[task] == task_pid, "the task was started again"
    # The scheduler unregistered on exit: the new leader had the agent kill the task, and that was
    # the task's only end (it survived the failover).
    CLUSTER.agents[0].wait_log(rf"event=status_update .*\bstate=TASK_KILLED .*\btask_id={re.escape(task)}( |$)", 10)
    agent_log = CLUSTER.agents[0].log().splitlines()
    ends = [i for i, line in enumerate(agent_log) if re.search(
        rf"event=status_update .*\bstate=TASK_(KILLED|LOST|FAILED|FINISHED|ERROR|GONE|DROPPED|UNREACHABLE)\b.*\btask_id={re.escape(task)}( |$)", line)]
    assert len(ends) == 1 and "state=TASK_KILLED" in agent_log[ends[0]], [agent_log[i] for i in ends]
    shutdown = [i for i, line in enumerate(agent_log)
                if f"event=shutting_down_executor executor_id={task} " in line and "framework shut down" in line]
    assert shutdown and shutdown[0] < ends[0], "the task ended before its framework was removed"
    log(f"leader killed: RUNNING after {t_running - t0:.2f} s; after SIGKILL of {old_pid} (epoch {old_epoch}): "
        f"new leader {standby.bus_pid} (epoch {new_epoch}) detected {t_detected - killed:.2f} s, "
        f"REREGISTERED {t_rereg - killed:.2f} s, task confirmed RUNNING by {how} {t_reconciled - killed:.2f} s "
        f"(session timeout {SESSION_TIMEOUT})")


def test_scheduler_failover():
    """Two instances of one framework: B resumes A's framework (a scheduler failover)."""
    task = "py-takeover-1"
    a = CLUSTER.scheduler("scheduler-a", "--command", "sleep 60", "--task-id", task, "--until", "finished",
                          "--failover_timeout", "30", "--timeout", "60")
    t0 = time.monotonic()
    a.wait_line(rf"^STATUS {task} TASK_RUNNING source=SOURCE_EXECUTOR", 20)
    t_running = time.monotonic()
    framework = re.match(r"^REGISTERED (\S+) master=(\S+)$", a.wait_line(r"^REGISTERED ", 1))
    framework_id, leader_pid = framework.group(1), framework.group(2)
    task_pid = CLUSTER.task_pids()[task]
    assert alive(task_pid)

    b = CLUSTER.scheduler("scheduler-b", "--framework_id", framework_id, "--task-id", task, "--until", "running",
                          "--failover_timeout", "30", "--timeout", "30", "--no-teardown")
    failed = a.wait_line(r"^FAILED ", 20)
    t_fenced = time.monotonic()
    assert "Framework failed over" in failed, failed
    assert a.wait(10) == 1, f"A exited {a.popen.returncode}:\n" + "\n".join(a.lines)
    a.stop()
    assert a.lines[-1] == failed, a.lines                                  # nothing after the error
    b.wait_line(rf"^REGISTERED {re.escape(framework_id)} master={re.escape(leader_pid)}$", 20)
    _, confirmed = b.wait_line_at(rf"^STATUS {task} TASK_RUNNING ", 20)
    t_confirmed = time.monotonic()
    assert "source=SOURCE_MASTER reason=REASON_RECONCILIATION" in confirmed, confirmed
    code = b.wait(20)
    b.stop()
    out = "\n".join(b.lines)
    assert code == 0 and b.lines[-1] == f"DONE task {task} running", f"B exited {code}:\n{out}\n{b.tail()}"
    # B took the framework over (REGISTERED, the Swift driver's `.registered`), launched nothing,
    # and was never told anything fatal.
    assert [line for line in b.lines if line.startswith(("REGISTERED", "REREGISTERED"))] == [
        f"REGISTERED {framework_id} master={leader_pid}"], out
    assert not [line for line in b.lines if line.startswith(("LAUNCHED", "FAILED", "REFUSED"))], out
    assert not [line for line in a.lines + b.lines if "TASK_LOST" in line], out
    # The same task process, started once, running on after both instances (B left without
    # unregistering: the framework waits its failover_timeout for another instance).
    agent_log = CLUSTER.agents[0].log()
    launched = [e for t, e, _ in CLUSTER.executors() if t == task]
    assert len(launched) == 1, launched
    assert CLUSTER.task_pids()[task] == task_pid
    assert alive(task_pid), "the task process died across the scheduler failover"
    assert not re.search(rf"event=status_update .*\bstate=TASK_(FINISHED|FAILED|KILLED|LOST) .*\btask_id={re.escape(task)}( |$)", agent_log), "the task ended"
    master = CLUSTER.master_with_pid(leader_pid)
    master.wait_log(rf"event=framework_failed_over .*\bframework_id={re.escape(framework_id)}( |$)", 5)
    log(f"scheduler failover: A RUNNING after {t_running - t0:.2f} s; B started: A fenced after "
        f"{t_fenced - t_running:.2f} s, B confirmed the task by reconciliation after {t_confirmed - t_running:.2f} s "
        f"(task pid {task_pid}, started once)")


def test_task_over_tls():
    certs = os.path.join(WORK_DIR, "certs")
    done = subprocess.run([os.path.join(REPO, "scripts", "gen-certs"), certs], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

    def env(role):
        return {"LIBPROCESS_SSL_ENABLED": "true", "LIBPROCESS_SSL_CERT_FILE": os.path.join(certs, f"{role}.pem"),
                "LIBPROCESS_SSL_KEY_FILE": os.path.join(certs, f"{role}.key"), "LIBPROCESS_SSL_CA_FILE": os.path.join(certs, "ca.pem"),
                "LIBPROCESS_SSL_VERIFY_SERVER_CERT": "true", "LIBPROCESS_SSL_REQUIRE_CLIENT_CERT": "true",
                "LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME": "openssl"}
    tls = Cluster(os.path.join(WORK_DIR, "tls"), path="/mesos-tls", env=env)
    tls.zk, tls.owns_zk = CLUSTER.zk, False
    try:
        master = tls.start_master()
        master.wait_log(r"event=leading ", 20)
        agent = tls.start_agent()
        agent.wait_log(r"event=registered ", 20)
        task = "py-tls-1"
        s = tls.scheduler("scheduler-tls", "--command", "echo hello-over-tls; sleep 1", "--task-id", task,
                          "--until", "finished", "--timeout", "30", "--principal", "scheduler")
        code = s.wait(40)
        s.stop()
        out = "\n".join(s.lines)
        assert code == 0, f"exit {code}:\n{out}\n{s.tail()}"
        for pattern in (r"^REGISTERED \S+ master=master@", rf"^STATUS {task} TASK_RUNNING", rf"^STATUS {task} TASK_FINISHED"):
            assert any(re.search(pattern, line) for line in s.lines), f"no line matching {pattern!r}:\n{out}"
        # The master's HTTP endpoints share its TLS port: HTTPS with a client certificate.
        host, port = master.bus_pid.split("@")[1].rsplit(":", 1)
        _server, client, _ = sched.tls_from_environment(env("scheduler"))
        https = http.client.HTTPSConnection(host, int(port), context=client, timeout=10)
        https.request("GET", "/health")
        assert https.getresponse().status == 200
        https.close()
        # Plaintext where TLS is required: closed, with the reason logged.
        with socket.create_connection((host, int(port)), timeout=10) as plain:
            plain.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert plain.recv(1024) == b"", "a plaintext request was answered"
        master.wait_log(r"event=connection_rejected .*cause=tls_required|cause=tls_required .*event=connection_rejected", 20)
        log("task over TLS: FINISHED, HTTPS answered, plaintext refused")
    finally:
        tls.close()


def test_return_route_offer_is_declined():
    """A master with --return_routes offers to write over our link (messages.proto): this scheduler
    reads only what it accepts, so it answers with a decline naming the nonce, on the offering
    connection, and does not take the offer for a master message."""
    s = offline_scheduler()
    try:
        received = []
        s._receive = lambda envelope, connection=None: received.append(envelope)
        ours, masters = sched.socket.socketpair()
        offer = envelope(0, LEADER.pid, return_route_offer={"nonce": b"0123456789abcdef"})
        ping = envelope(3, LEADER.pid, ping={"connected": True})
        masters.sendall(sched.encode_frame(offer) + sched.encode_frame(ping))
        s._readable(ours, sched.FrameDecoder(), "master")
        masters.settimeout(10)
        answers = []
        decoder = sched.FrameDecoder()
        while not answers:
            answers += decoder.feed(masters.recv(65536))
        assert answers[0].WhichOneof("payload") == "return_route_decline", answers
        assert answers[0].return_route_decline.nonce == b"0123456789abcdef", answers[0]
        assert getattr(answers[0], "from") == s.pid, answers[0]
        assert [e.WhichOneof("payload") for e in received] == ["ping"], received
        ours.close(), masters.close()
    finally:
        close_offline(s)


TESTS = [test_framing, test_epoch_guard, test_failover_rules, test_return_route_offer_is_declined, test_task_finishes,
         test_leader_killed, test_scheduler_failover, test_task_over_tls]


def main():
    # SIGTERM (e.g. a test runner's timeout) unwinds through the finally blocks: nothing is left running.
    signal.signal(signal.SIGTERM, lambda _signo, _frame: sys.exit(143))
    started = time.monotonic()
    passed = 0
    try:
        setup_module()
    except BaseException:
        traceback.print_exc()
        log("the cluster did not start")
        print(f"0 passed, {len(TESTS)} failed", flush=True)
        return 1
    completed = False
    try:
        for test in TESTS:
            t0 = time.monotonic()
            try:
                test()
            except Exception:
                FAILED.append(test.__name__)
                log(f"FAIL {test.__name__} ({time.monotonic() - t0:.2f} s)")
                traceback.print_exc()
                sys.stdout.flush()
            else:
                passed += 1
                log(f"ok   {test.__name__} ({time.monotonic() - t0:.2f} s)")
        completed = True
    finally:
        teardown_module(failed=not completed)  # interrupted: keep the logs
    log(f"total {time.monotonic() - started:.2f} s")
    print(f"{passed} passed, {len(FAILED)} failed", flush=True)
    return 0 if not FAILED else 1


if __name__ == "__main__":
    sys.exit(main())
