#!/usr/bin/python3
"""A Mesos-style framework scheduler in plain Python, speaking the cluster's .proto contract.

    /usr/bin/python3 examples/python/scheduler.py --master zk://127.0.0.1:2181/mesos \\
        --command "echo hi; sleep 2" --timeout 60 [--until finished|running|failover|failedover]
        [--framework_id ID] [--failover_timeout SECONDS]

It finds the leading master in ZooKeeper (kazoo), registers a framework, takes one offer,
launches one shell task, acknowledges its status updates and re-registers (then reconciles)
whenever another master takes over, the master says it lost its link to us, or our own link to
the leader breaks. With --framework_id it resumes an existing framework instead (a scheduler
failover: the previous instance is fenced with "Framework failed over"); it then launches
nothing and follows, through reconciliation, the task named by --task-id (or, without one, the
first live task of the framework the master reports). One line per event goes to stdout:

    LEADER <pid> epoch=<n> | NO_LEADER
    REGISTERED <framework id> master=<pid>      REREGISTERED <framework id> master=<pid>
    DISCONNECTED <why>                           REFUSED <kind> <reason>
    OFFER <offer id> agent=<id> cpus=<c> mem=<m> LAUNCHED <task id> offer=<id> agent=<id>
    DECLINED <offer id>                          RECONCILE <framework id>
    STATUS <task id> <TASK_STATE> source=... reason=... message=...
    DONE <why>                                   FAILED <why>

REGISTERED is a new framework or a failover onto an existing one (the Swift driver's
`.registered`); REREGISTERED is the same instance again after a master change or a disconnect
(`.reregistered`), so its tasks are still its own and only need reconciling.

Exit status: 0 when the goal of --until is reached; 1 when the task ends in another terminal
state or the master reports a framework error ("Framework failed over", "Framework has been
removed", ...); 2 on timeout; 64 for bad arguments. Diagnostics (hints, dropped messages, links)
go to stderr; refused messages always do.

Wire: plain TCP, each frame = 4-byte big-endian length N (1..16 MiB) + a serialized
mesos.Envelope {epoch, from, payload}. We listen on our own port (our PID
"scheduler-py@host:port"); the master answers on connections it opens to that address, and we
send on one outbound connection to the leader, made lazily and remade when it breaks.
docs/PROTOCOL.md describes the whole contract, with this file as its worked example.

TLS: with LIBPROCESS_SSL_ENABLED=true in the environment (and LIBPROCESS_SSL_CERT_FILE, _KEY_FILE,
_CA_FILE, _VERIFY_SERVER_CERT, _REQUIRE_CLIENT_CERT, _HOSTNAME_VALIDATION_SCHEME, read as the Swift
daemons read them) every connection, ours to the leader and the masters' to us, speaks TLS (Python's
ssl), and a master message counts only from a connection whose verified certificate carries the
role URI:urn:mesos:role:master (without LIBPROCESS_SSL_SUPPORT_DOWNGRADE). The master binds the
framework to the certificate's principal: pass it as --principal.
"""
import argparse
import dataclasses
import getpass
import json
import logging
import os
import queue
import selectors
import signal
import socket
import ssl
import sys
import threading
import time
import uuid

sys.dont_write_bytecode = True  # keep the shared python/mesos_pb directory free of caches
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python", "mesos_pb"))
import envelope_pb2  # noqa: E402
import mesos_pb2  # noqa: E402
import messages_pb2  # noqa: E402

log = logging.getLogger("scheduler-py")

MAX_FRAME = 16 * 1024 * 1024
GROUP_LABEL = "json.info_"
# FrameworkErrorMessage texts of the failover contract (Mesos's own words).
FAILED_OVER = "Framework failed over"
REMOVED = "Framework has been removed"
MAX_WIRE_SECONDS = 100 * 365 * 86400   # durations on the wire: finite, in [0, 100 years]
TERMINAL = {mesos_pb2.TASK_FINISHED, mesos_pb2.TASK_FAILED, mesos_pb2.TASK_KILLED, mesos_pb2.TASK_ERROR,
            mesos_pb2.TASK_LOST, mesos_pb2.TASK_DROPPED, mesos_pb2.TASK_GONE, mesos_pb2.TASK_GONE_BY_OPERATOR}


def state_name(state):
    return mesos_pb2.TaskState.Name(state) if state in mesos_pb2.TaskState.values() else f"TASK_STATE_{state}"


# ---- framing -----------------------------------------------------------------------------------

class FrameError(Exception):
    """The peer sent something that is not a valid frame: the connection must be closed."""


def encode_frame(envelope):
    payload = envelope.SerializeToString()  # raises if a required field is missing
    if not 0 < len(payload) <= MAX_FRAME:
        raise FrameError(f"refusing to send a frame of {len(payload)} bytes")
    return len(payload).to_bytes(4, "big") + payload


class FrameDecoder:
    """Bytes in (any chunking), complete Envelopes out. The length is checked before the payload
    is buffered, so an oversized announcement is refused at once."""

    def __init__(self, max_frame=MAX_FRAME):
        self.max_frame = max_frame
        self.buffer = bytearray()

    def feed(self, data):
        self.buffer += data
        envelopes = []
        while len(self.buffer) >= 4:
            length = int.from_bytes(self.buffer[:4], "big")
            if length == 0 or length > self.max_frame:
                raise FrameError(f"frame length {length} outside 1..{self.max_frame}")
            if len(self.buffer) < 4 + length:
                break
            payload = bytes(self.buffer[4:4 + length])
            del self.buffer[:4 + length]
            envelope = envelope_pb2.Envelope()
            try:
                envelope.ParseFromString(payload)
            except Exception as error:  # google.protobuf.message.DecodeError
                raise FrameError(f"malformed envelope: {error}") from None
            if not envelope.IsInitialized():
                raise FrameError(f"envelope lacks {envelope.FindInitializationErrors()}")
            envelopes.append(envelope)
        return envelopes


# ---- leader detection --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Leader:
    epoch: int
    pid: str          # "master@host:port"
    host: str
    port: int


def parse_pid(pid):
    """'name@host:port' (host may be [IPv6]) -> (host, port)."""
    _name, _, address = pid.rpartition("@")
    host, _, port = address.rpartition(":")
    if not _name or not host or not port.isdigit():
        raise ValueError(f"malformed pid {pid!r}")
    return host.strip("[]"), int(port)


def parse_zk_url(url):
    """zk://[user:pass@]host:port[,host:port...]/path -> (hosts, path, credentials or None)."""
    if not url.startswith("zk://"):
        raise ValueError(f"not a zk:// URL: {url}")
    rest = url[len("zk://"):]
    slash = rest.find("/")
    if slash < 0:
        raise ValueError(f"zk:// URL without a path: {url}")
    authority, path = rest[:slash], rest[slash:].rstrip("/") or "/"
    credentials = None
    if "@" in authority:
        credentials, authority = authority.rsplit("@", 1)
    if not authority:
        raise ValueError(f"zk:// URL without hosts: {url}")
    return authority, path, credentials


def group_sequence(name):
    """The sequence number of a `json.info_NNNNNNNNNN` member; None for anything else."""
    digits = name[len(GROUP_LABEL):]
    if not name.startswith(GROUP_LABEL) or not digits.isascii() or not digits.isdigit():
        return None
    return int(digits)


class LeaderDetector:
    """Follows the lowest `json.info_` member of the group with a kazoo ChildrenWatch and calls
    `on_change(Leader or None)` (from kazoo's threads) whenever the answer may have changed.

    A session that stays disconnected for the session timeout, or expires, means "no leader"
    (as the Swift detectors do); after reconnecting the group is read again."""

    def __init__(self, url, on_change, session_timeout=10.0):
        from kazoo.client import KazooClient, KazooState  # imported here: only needed when detecting
        from kazoo.handlers.threading import KazooTimeoutError
        self._KazooState, self._KazooTimeout = KazooState, KazooTimeoutError
        self.hosts, self.path, credentials = parse_zk_url(url)
        auth = [("digest", credentials)] if credentials else None
        self.zk = KazooClient(hosts=self.hosts, timeout=session_timeout, auth_data=auth)
        self.session_timeout = session_timeout
        self.on_change = on_change
        self._lock = threading.Lock()
        self._children_watch = None
        self._expiry_timer = None
        self._lost = False
        self._stopped = False

    def start(self, connect_timeout=15.0):
        self.zk.add_listener(self._session_state)
        try:
            self.zk.start(timeout=connect_timeout)
        except self._KazooTimeout:
            self.stop()
            raise TimeoutError(f"cannot connect to ZooKeeper {self.hosts} within {connect_timeout:g} s") from None
        # The group's parent may not exist before the first master joins: wait for it. A children
        # watch stops for good on a missing node, so it is (re)made whenever the parent exists.
        self.zk.DataWatch(self.path, self._parent_changed)

    def stop(self):
        self._stopped = True
        self._cancel_expiry()
        try:
            self.zk.stop()
            self.zk.close()
        except Exception:  # already stopped or never connected
            pass

    def _parent_changed(self, _data, stat):
        if self._stopped:
            return False
        if stat is None:
            self._children_watch = None
            self._report(None, f"{self.path} does not exist (yet)")
        elif self._children_watch is None:
            self._children_watch = self.zk.ChildrenWatch(self.path, self._children_changed)

    def _children_changed(self, _children):
        if self._stopped:
            return False
        self._refresh()

    def _refresh(self):
        """Reads the group afresh under a lock, so results from racing triggers stay in ZooKeeper's
        order, and reports the leader."""
        from kazoo.exceptions import NoNodeError
        with self._lock:
            if self._stopped:
                return
            try:
                children = self.zk.get_children(self.path)
            except NoNodeError:
                return self._report(None, f"{self.path} does not exist")
            except Exception as error:  # connection loss: the session listener reports it
                log.warning("cannot list %s: %s", self.path, error)
                return
            members = sorted((group_sequence(c), c) for c in children if group_sequence(c) is not None)
            for sequence, name in members:
                try:
                    data, _stat = self.zk.get(f"{self.path}/{name}")
                except NoNodeError:
                    continue  # gone meanwhile: the watch fires again
                except Exception as error:
                    log.warning("cannot read %s: %s", name, error)
                    return
                try:
                    pid = json.loads(data.decode("utf-8"))["pid"]
                    host, port = parse_pid(pid)
                except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
                    log.warning("leader znode %s holds no usable MasterInfo JSON: %s", name, error)
                    return self._report(None, f"malformed leader znode {name}")
                return self._report(Leader(epoch=sequence, pid=pid, host=host, port=port), name)
            self._report(None, "no master in the group")

    def _report(self, leader, why):
        log.debug("detected %s (%s)", leader, why)
        self.on_change(leader)

    # kazoo calls this from its connection thread: never block here.
    def _session_state(self, state):
        if self._stopped:
            return
        if state == self._KazooState.SUSPENDED:
            self._cancel_expiry()
            self._expiry_timer = threading.Timer(self.session_timeout, self._expired, args=("disconnected too long",))
            self._expiry_timer.daemon = True
            self._expiry_timer.start()
        elif state == self._KazooState.LOST:
            self._cancel_expiry()
            self._expired("session expired")
        elif state == self._KazooState.CONNECTED:
            self._cancel_expiry()
            if self._lost:
                self._lost = False
                # The ChildrenWatch stays silent when the children did not change: read again.
                self.zk.handler.spawn(self._refresh)

    def _expired(self, why):
        self._lost = True
        log.warning("ZooKeeper %s: no leader until reconnected", why)
        self.on_change(None)

    def _cancel_expiry(self):
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None


class Terminated(Exception):
    """SIGTERM, turned into an exception so that the scheduler still unregisters and closes."""


# ---- the scheduler -----------------------------------------------------------------------------

@dataclasses.dataclass
class Options:
    master: str
    command: str
    until: str = "finished"          # finished | running | failover | failedover
    timeout: float = 60.0
    name: str = "python-scheduler"
    user: str = ""
    cpus: float = 0.1
    mem: float = 32.0
    task_id: str = ""
    listen_ip: str = "127.0.0.1"
    failover_timeout: float = 60.0   # FrameworkInfo.failover_timeout: seconds the master waits for us
    framework_id: str = ""           # resume this framework (a scheduler failover)
    refuse_seconds: float = 10.0
    register_retry: float = 1.0
    reconcile_retry: float = 1.0
    zk_session_timeout: float = 10.0
    teardown: bool = True
    principal: str = ""


def tls_from_environment(env=None):
    """(server context, client context, require a master certificate) from LIBPROCESS_SSL_*
    (or SSL_*); None when TLS is not enabled. Raises ValueError naming a missing or bad variable."""
    env = os.environ if env is None else env

    def value(*names):
        for name in names:
            for prefix in ("LIBPROCESS_SSL_", "SSL_"):
                if prefix + name in env:
                    return prefix + name, env[prefix + name]
        return None, None

    def flag(*names, default=False):
        name, v = value(*names)
        if v is None:
            return default
        if v.lower() in ("true", "1"):
            return True
        if v.lower() in ("false", "0"):
            return False
        raise ValueError(f"{name}={v}: expected true, false, 1 or 0")

    if not flag("ENABLED"):
        return None
    _, cert = value("CERT_FILE")
    _, key = value("KEY_FILE")
    if not cert or not key:
        raise ValueError("LIBPROCESS_SSL_CERT_FILE and LIBPROCESS_SSL_KEY_FILE are required when LIBPROCESS_SSL_ENABLED is true")
    _, ca_file = value("CA_FILE")
    _, ca_dir = value("CA_DIR")
    require_client = flag("REQUIRE_CLIENT_CERT", "REQUIRE_CERT")
    verify_server = flag("VERIFY_SERVER_CERT", "VERIFY_CERT", default=require_client)
    _, scheme = value("HOSTNAME_VALIDATION_SCHEME")
    if scheme not in (None, "legacy", "openssl"):
        raise ValueError(f"LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME={scheme}: expected legacy or openssl")
    downgrade = flag("SUPPORT_DOWNGRADE", "ENABLE_DOWNGRADE")
    _, ciphers = value("CIPHERS")

    def context(purpose):
        c = ssl.SSLContext(purpose)
        c.minimum_version = ssl.TLSVersion.TLSv1_2
        c.load_cert_chain(cert, key)
        if ca_file or ca_dir:
            c.load_verify_locations(cafile=ca_file or None, capath=ca_dir or None)
        else:
            c.load_default_certs()
        if ciphers:
            c.set_ciphers(ciphers)
        return c

    server = context(ssl.PROTOCOL_TLS_SERVER)
    # A certificate a master presents is always verified: only a verified one makes it a master.
    server.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    client = context(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = verify_server and scheme == "openssl"
    client.verify_mode = ssl.CERT_REQUIRED if verify_server else ssl.CERT_NONE
    return server, client, not downgrade


def certificate_roles(cert):
    """The roles of a verified peer certificate (SAN URI:urn:mesos:role:NAME)."""
    prefix = "urn:mesos:role:"
    return {v[len(prefix):] for k, v in (cert or {}).get("subjectAltName", ()) if k == "URI" and v.startswith(prefix)}


class Connection:
    """What an accepted connection proved: its TLS handshake is over and its certificate's roles."""

    def __init__(self, peer, handshaken):
        self.peer = peer
        self.handshaken = handshaken
        self.roles = set()


class Scheduler:
    """Single-threaded event loop over a selector: our listening socket, the connections masters
    open to us, our outbound link to the leader, and a wake-up socket through which the detector
    (kazoo's threads) hands in leader changes. All protocol state is touched by this loop only."""

    def __init__(self, options, out=None, detector_factory=LeaderDetector):
        self.o = options
        self.out = out or sys.stdout
        tls = tls_from_environment()
        self.tls_server, self.tls_client, self.require_master_cert = tls if tls else (None, None, False)
        self.task_id = options.task_id or f"python-task-{uuid.uuid4().hex[:8]}"
        self.framework = mesos_pb2.FrameworkInfo(
            user=options.user or getpass.getuser(), name=options.name, failover_timeout=options.failover_timeout)
        if options.framework_id:
            self.framework.id.value = options.framework_id
        if options.principal:
            self.framework.principal = options.principal
        # True until the first (re)registration is answered: a new instance resuming a framework
        # takes it over (ReregisterFrameworkMessage.failover, Mesos's `force`); afterwards a
        # re-registration is the same instance again (a master change), failover=false.
        self.failover = bool(options.framework_id)
        self.selector = selectors.DefaultSelector()
        self.inbox = queue.SimpleQueue()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_w.setblocking(False)   # kazoo's threads must never block on us
        self.listener = None
        self.pid = None
        self.link = None                 # (socket, decoder) to the leader
        self.leader = None
        self.registered = False
        self.registered_with = None      # Leader we last (re)registered with
        self.next_register = None        # monotonic time of the next (re)registration attempt
        # Resuming a framework, we launch nothing: the task is the one an earlier instance launched,
        # named by --task-id, or else adopted from the first live task reconciliation reports.
        self.launched = bool(options.framework_id and options.task_id)
        self.adopting = bool(options.framework_id and not options.task_id)
        self.task_state = None
        self.running_leader = None       # leader when the task was first seen RUNNING
        self.reconcile_due = None        # next reconciliation while the new leader has not confirmed
        self.reconcile_tries = 0
        self.confirmed_after_failover = False
        self.dropped = {}
        self.result = None               # (exit code, message) once decided
        self.detector = detector_factory(options.master, self._detected, options.zk_session_timeout)

    # -- output --

    def emit(self, line):
        print(line, file=self.out, flush=True)

    # -- lifecycle --

    def run(self):
        deadline = time.monotonic() + self.o.timeout
        try:
            self._listen()
            self.detector.start(connect_timeout=min(15.0, self.o.timeout))
            while self.result is None:
                now = time.monotonic()
                if now >= deadline:
                    self._finish(2, f"timed out after {self.o.timeout:g} s waiting for {self._goal()} ({self._summary()})")
                    break
                wait = min([deadline] + [t for t in (self.next_register, self.reconcile_due) if t is not None]) - now
                for key, _mask in self.selector.select(max(0.0, wait)):
                    key.data(key.fileobj)
                    if self.result is not None:
                        break
                self._drain_inbox()
                self._timers(time.monotonic())
        except KeyboardInterrupt:
            self._finish(130, "interrupted")
        except Terminated:
            self._finish(143, "terminated by SIGTERM")
        except TimeoutError as error:  # ZooKeeper unreachable
            self._finish(2, str(error))
        finally:
            self._shutdown()
        code, message = self.result
        if code == 0:
            self.emit(f"DONE {message}")
        else:
            self.emit(f"FAILED {message}")
            print(f"error: {message}", file=sys.stderr, flush=True)
        return code

    def _goal(self):
        return {"finished": "TASK_FINISHED", "running": "TASK_RUNNING",
                "failover": "TASK_RUNNING confirmed by a new leader",
                "failedover": f"'{FAILED_OVER}' from the master"}[self.o.until]

    def _summary(self):
        return (f"leader={self.leader.pid if self.leader else None} registered={self.registered} "
                f"task={self.task_id if self.launched else 'not launched'} "
                f"state={state_name(self.task_state) if self.task_state is not None else None} dropped={self.dropped or 0}")

    def _finish(self, code, message):
        if self.result is None:
            self.result = (code, message)

    def _listen(self):
        self.listener = socket.create_server((self.o.listen_ip, 0), backlog=64)
        self.listener.setblocking(False)
        host, port = self.listener.getsockname()[:2]
        self.pid = f"scheduler-py@{host}:{port}"
        log.info("listening as %s", self.pid)
        self.selector.register(self.listener, selectors.EVENT_READ, self._accept)
        self.wake_r.setblocking(False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, lambda s: s.recv(4096))

    def _shutdown(self):
        # Not after a framework error: this instance no longer speaks for the framework.
        if self.o.teardown and self.registered and self.framework.HasField("id"):
            # Like SchedulerDriver.stop(failover=false): the master kills our tasks and forgets us.
            msg = messages_pb2.UnregisterFrameworkMessage()
            msg.framework_id.CopyFrom(self.framework.id)
            if self._send("unregister_framework", msg):
                log.info("unregistered framework %s", self.framework.id.value)
        self.detector.stop()
        for key in list(self.selector.get_map().values()):
            self.selector.unregister(key.fileobj)
            key.fileobj.close()
        self.link = None
        self.wake_w.close()
        self.selector.close()

    # -- sockets --

    def _accept(self, listener):
        try:
            conn, address = listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        decoder = FrameDecoder()
        connection = Connection(f"{address[0]}:{address[1]}", handshaken=self.tls_server is None)
        if self.tls_server is not None:
            conn = self.tls_server.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        self.selector.register(conn, selectors.EVENT_READ, lambda s: self._readable(s, decoder, connection.peer, connection))

    def _handshake(self, sock, connection):
        """Advances an accepted connection's TLS handshake; True once it is over (roles known)."""
        try:
            sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except (ssl.SSLError, OSError) as error:
            log.warning("closing connection from %s: TLS handshake failed: %s", connection.peer, error)
            self._close(sock)
            return False
        connection.handshaken = True
        connection.roles = certificate_roles(sock.getpeercert())
        return True

    def _recv(self, sock, peer):
        """What can be read now: bytes, b"" at the end, None when nothing yet. A TLS socket is read
        without blocking until its records are drained (selectors do not see decrypted bytes)."""
        if not isinstance(sock, ssl.SSLSocket):
            try:
                return sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as error:
                log.info("connection from %s failed: %s", peer, error)
                return b""
        timeout = sock.gettimeout()
        sock.settimeout(0)
        chunks = []
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    break
                except OSError as error:
                    log.info("connection from %s failed: %s", peer, error)
                    data = b""
                if not data:
                    return b"".join(chunks) if chunks else b""
                chunks.append(data)
        finally:
            if sock.fileno() >= 0:
                sock.settimeout(timeout)
        return b"".join(chunks) if chunks else None

    def _readable(self, sock, decoder, peer, connection=None):
        """Reads what is there; each complete frame is handled, a partial one waits for more."""
        if connection is not None and not connection.handshaken and not self._handshake(sock, connection):
            return
        data = self._recv(sock, peer)
        if data is None:
            return
        if not data:
            self._close(sock)
            return
        try:
            envelopes = decoder.feed(data)
        except FrameError as error:
            log.warning("closing connection from %s: %s", peer, error)
            self._close(sock)
            return
        for envelope in envelopes:
            if envelope.WhichOneof("payload") == "return_route_offer":
                self._decline_return_route(sock, envelope.return_route_offer.nonce)
                continue
            self._receive(envelope, connection)

    def _decline_return_route(self, sock, nonce):
        """A master offers to write to us over our link to it (messages.proto, ReturnRouteOffer).
        This scheduler reads only the connections it accepts, so it declines at once, on the
        offering connection, and the master goes on over its own."""
        envelope = envelope_pb2.Envelope(epoch=0)
        setattr(envelope, "from", self.pid)
        envelope.return_route_decline.nonce = nonce
        envelope.return_route_decline.reason = "this scheduler reads only the connections it accepts"
        try:
            sock.sendall(encode_frame(envelope))
        except OSError as error:
            log.info("cannot decline a return route: %s", error)

    def _close(self, sock, why="connection closed"):
        if self.link is not None and self.link[0] is sock:
            log.info("link to the master closed (%s); reconnecting on the next send", why)
            self.link = None
            self._link_broken(why)
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def _send(self, field, message):
        """One envelope to the detected leader, at its epoch. False when it could not be written
        (callers retry at their own level, as Mesos does)."""
        if self.leader is None:
            return False
        envelope = envelope_pb2.Envelope(epoch=self.leader.epoch)
        setattr(envelope, "from", self.pid)
        getattr(envelope, field).CopyFrom(message)
        frame = encode_frame(envelope)
        for _attempt in range(2):  # a link that broke since the last send is remade once
            if self.link is None:
                try:
                    sock = socket.create_connection((self.leader.host, self.leader.port), timeout=2.0)
                    if self.tls_client is not None:
                        hostname = self.leader.host if self.tls_client.check_hostname else None
                        sock = self.tls_client.wrap_socket(sock, server_hostname=hostname)
                        if self.require_master_cert and self.tls_client.verify_mode == ssl.CERT_REQUIRED \
                                and "master" not in certificate_roles(sock.getpeercert()):
                            sock.close()
                            raise OSError(f"{self.leader.pid}'s certificate has no master role")
                except OSError as error:
                    log.info("cannot connect to %s: %s", self.leader.pid, error)
                    self._link_broken(f"cannot connect: {error}")
                    return False
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(5.0)
                decoder = FrameDecoder()  # peers answer on their own links, but decode whatever comes
                self.link = (sock, decoder)
                self.selector.register(sock, selectors.EVENT_READ, lambda s: self._readable(s, decoder, "link"))
            try:
                self.link[0].sendall(frame)
                return True
            except OSError as error:
                log.info("send to %s failed: %s", self.leader.pid, error)
                self._close(self.link[0], f"send failed: {error}")
        return False

    def _link_broken(self, why):
        """Our outbound link to the leader broke while registered: what we sent on it may be lost
        (a decline, an acknowledgement), so re-register at once to resynchronize (the master
        rescinds its offers and makes them anew; agents resend unacknowledged updates)."""
        if self.result is None and self.registered and self.leader is not None:
            self._disconnected(f"link to {self.leader.pid} broke: {why}")

    def _disconnected(self, why):
        """Not registered any more (same leader): re-register at once, then retry as usual."""
        log.warning("disconnected: %s; re-registering", why)
        self.registered = False
        self.next_register = time.monotonic()
        self.emit(f"DISCONNECTED {why}")

    # -- leader changes (from kazoo's threads) --

    def _detected(self, leader):
        self.inbox.put(leader)
        try:
            self.wake_w.send(b"!")
        except OSError:  # shutting down
            pass

    def _drain_inbox(self):
        while True:
            try:
                leader = self.inbox.get_nowait()
            except queue.Empty:
                return
            self._leader_changed(leader)

    def _leader_changed(self, leader):
        if leader == self.leader:
            return
        was_registered = self.registered
        self.leader = leader
        self.registered = False
        if was_registered:
            self.emit("DISCONNECTED leader changed")
        if self.link is not None:
            self._close(self.link[0])
        if leader is None:
            self.next_register = None
            self.emit("NO_LEADER")
            return
        self.emit(f"LEADER {leader.pid} epoch={leader.epoch}")
        self.next_register = time.monotonic()  # at once; retried until answered

    # -- timers --

    def _timers(self, now):
        if self.result is not None:
            return
        if self.next_register is not None and now >= self.next_register and not self.registered:
            self.next_register = now + self.o.register_retry
            if self.framework.HasField("id"):
                self._send("reregister_framework", messages_pb2.ReregisterFrameworkMessage(framework=self.framework, failover=self.failover))
            else:
                self._send("register_framework", messages_pb2.RegisterFrameworkMessage(framework=self.framework))
        if self.reconcile_due is not None and now >= self.reconcile_due and self.registered:
            self._reconcile(now)

    def _reconcile(self, now):
        """Implicit reconciliation: the master answers with the latest state of each task it knows.
        Repeated while our task is not confirmed (its agent may not have re-registered yet)."""
        self.reconcile_tries += 1
        if self.reconcile_tries > 15:
            self.reconcile_due = None
            return
        self.reconcile_due = now + self.o.reconcile_retry
        self._send("reconcile_tasks", messages_pb2.ReconcileTasksMessage(framework_id=self.framework.id))
        self.emit(f"RECONCILE {self.framework.id.value}")

    # -- messages from the master --

    def _receive(self, envelope, connection=None):
        sender = getattr(envelope, "from")
        kind = envelope.WhichOneof("payload")
        leader = self.leader
        if self.require_master_cert and kind != "leader_hint" and (connection is None or "master" not in connection.roles):
            reason = "not authenticated as a master"
        elif leader is None:
            reason = "no leader detected"
        elif envelope.epoch != leader.epoch:
            reason = "stale epoch" if envelope.epoch < leader.epoch else "epoch ahead of our detector"
        elif sender != leader.pid:
            reason = "not from the leader"
        else:
            reason = None
        if reason is not None:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
            if kind == "leader_hint":
                self._hint(envelope.leader_hint)
            else:
                log.info("dropped %s from %s at epoch %d: %s", kind, sender, envelope.epoch, reason)
            return
        handler = getattr(self, f"_on_{kind}", None)
        if handler is None:
            log.info("ignored %s from %s", kind, sender)
        else:
            handler(getattr(envelope, kind))

    def _hint(self, hint):
        """Advisory only: ZooKeeper decides who leads. A hint naming the leader we detected, at its
        epoch, comes from a master still recovering its registry: try again a little sooner."""
        leader = hint.leader.pid if hint.HasField("leader") else None
        epoch = hint.leader_epoch if hint.HasField("leader_epoch") else None
        log.info("leader hint: leader=%s epoch=%s reason=%s", leader, epoch, hint.reason)
        if (self.leader is not None and not self.registered and self.next_register is not None
                and (leader, epoch) == (self.leader.pid, self.leader.epoch)):
            self.next_register = min(self.next_register, time.monotonic() + 0.2)

    def _on_leader_hint(self, hint):
        self._hint(hint)

    def _on_framework_registered(self, m):
        self._registered(m, again=False)

    def _on_framework_reregistered(self, m):
        # The master answers every ReregisterFrameworkMessage so. A new instance taking the
        # framework over is REGISTERED; the same instance after a master change is REREGISTERED.
        self._registered(m, again=not self.failover)

    def _registered(self, m, again):
        if self.registered:
            return  # the answer to a retry
        if self.framework.HasField("id") and self.framework.id.value != m.framework_id.value:
            log.warning("ignoring a registration naming framework %s: we are %s",
                        m.framework_id.value, self.framework.id.value)
            return
        self.framework.id.CopyFrom(m.framework_id)
        self.failover = False
        self.registered = True
        self.registered_with = self.leader
        self.next_register = None
        self.emit(f"{'REREGISTERED' if again else 'REGISTERED'} {m.framework_id.value} "
                  f"master={m.master_info.pid or self.leader.pid}")
        if (self.launched or self.adopting) and self.task_state not in TERMINAL:
            self.reconcile_tries = 0
            self._reconcile(time.monotonic())

    def _on_framework_error(self, m):
        """Fatal for this instance ("Framework failed over": another instance took the framework
        over; "Framework has been removed"; an invalid FrameworkInfo...). We stop without sending
        anything more: the framework is not ours to unregister."""
        self.registered = False
        self.next_register = None
        if m.message == FAILED_OVER and self.o.until == "failedover":
            self._finish(0, f"{FAILED_OVER}: framework {self.framework.id.value} is another instance's now")
        else:
            self._finish(1, f"framework error from the master: {m.message}")

    def _on_framework_disconnected(self, m):
        """The master's link to us broke (it may have reconnected since): it counts the framework
        as disconnected and its failover_timeout runs. Still here, we re-register at once (the
        same instance: failover=false). Not registered, a registration is already under way."""
        if self.registered:
            self._disconnected(f"the master says: {m.reason or 'framework disconnected'}")

    def _on_message_refused(self, m):
        """Not fatal: nothing of that message was acted on (an invalid value, or a call we may not make)."""
        log.warning("the master refused our %s: %s", m.kind, m.reason)
        self.emit(f"REFUSED {m.kind} {m.reason}")

    def _on_resource_offers(self, m):
        if not self.registered:
            return  # the master rescinds them when we re-register
        for offer in m.offers:
            scalars = {r.name: r.scalar for r in offer.resources}
            self.emit(f"OFFER {offer.id.value} agent={offer.agent_id.value} host={offer.hostname} "
                      f"cpus={scalars.get('cpus', 0):g} mem={scalars.get('mem', 0):g}")
            if (not self.launched and not self.adopting
                    and scalars.get("cpus", 0) >= self.o.cpus and scalars.get("mem", 0) >= self.o.mem):
                self._launch(offer)
            else:
                decline = messages_pb2.DeclineOffersMessage(
                    framework_id=self.framework.id, offer_ids=[offer.id],
                    filters=messages_pb2.Filters(refuse_seconds=self.o.refuse_seconds))
                if self._send("decline_offers", decline):
                    self.emit(f"DECLINED {offer.id.value}")

    def _launch(self, offer):
        task = mesos_pb2.TaskInfo(
            name=self.o.name + "-task", task_id=mesos_pb2.TaskID(value=self.task_id), agent_id=offer.agent_id,
            resources=[mesos_pb2.Resource(name="cpus", scalar=self.o.cpus), mesos_pb2.Resource(name="mem", scalar=self.o.mem)],
            command=mesos_pb2.CommandInfo(value=self.o.command))
        launch = messages_pb2.LaunchTasksMessage(framework_id=self.framework.id, tasks=[task], offer_ids=[offer.id])
        if self._send("launch_tasks", launch):
            self.launched = True
            self.emit(f"LAUNCHED {self.task_id} offer={offer.id.value} agent={offer.agent_id.value}")

    def _on_rescind_offer(self, m):
        log.info("offer %s rescinded", m.offer_id.value)

    def _on_lost_agent(self, m):
        log.info("agent %s lost", m.agent_id.value)

    def _on_status_update(self, m):
        update, status = m.update, m.update.status
        source = mesos_pb2.TaskStatus.Source.Name(status.source) if status.HasField("source") else "-"
        reason = mesos_pb2.TaskStatus.Reason.Name(status.reason) if status.HasField("reason") else "-"
        self.emit(f"STATUS {status.task_id.value} {state_name(status.state)} source={source} reason={reason} "
                  f"message={json.dumps(status.message)}")
        if update.uuid:  # from an agent: it retries until we acknowledge (through the master)
            agent_id = update.agent_id if update.HasField("agent_id") else status.agent_id
            ack = messages_pb2.StatusUpdateAcknowledgementMessage(
                agent_id=agent_id, framework_id=update.framework_id, task_id=status.task_id, uuid=update.uuid)
            if not ack.IsInitialized():
                log.warning("cannot acknowledge an update without an agent id: %s", status.task_id.value)
            else:
                self._send("status_update_ack", ack)
        if self.adopting and status.state not in TERMINAL:
            # Resuming without --task-id: the first live task of the framework becomes ours.
            self.task_id, self.launched, self.adopting = status.task_id.value, True, False
            log.info("following task %s of framework %s", self.task_id, self.framework.id.value)
        if status.task_id.value != self.task_id:
            return
        self.task_state = status.state
        self.reconcile_due = None  # the leader we (re)registered with knows our task
        if status.state == mesos_pb2.TASK_RUNNING and self.running_leader is None:
            self.running_leader = self.leader
        if status.state == mesos_pb2.TASK_RUNNING and self.registered_with != self.running_leader:
            self.confirmed_after_failover = True  # a leader newer than the one that saw it start
        if status.state == mesos_pb2.TASK_FINISHED and self.o.until == "finished":
            self._finish(0, f"task {self.task_id} finished")
        elif status.state in TERMINAL:
            self._finish(1, f"task {self.task_id} ended in {state_name(status.state)}: {status.message}")
        elif status.state == mesos_pb2.TASK_RUNNING and self.o.until == "running":
            self._finish(0, f"task {self.task_id} running")
        elif self.confirmed_after_failover and self.o.until == "failover":
            self._finish(0, f"task {self.task_id} still running under the new leader {self.leader.pid}")


def parse_args(argv=None):
    """The command line -> (Options, verbose). Bad arguments exit 64 (EX_USAGE: 2 means "timed out")."""
    class Parser(argparse.ArgumentParser):
        def error(self, message):
            self.print_usage(sys.stderr)
            self.exit(64, f"{self.prog}: error: {message}\n")

    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--master", required=True, help="zk://host:port[,host:port...]/path of the master group")
    parser.add_argument("--command", default="echo hello-from-python; sleep 2", help="shell command of the task")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before giving up (exit 2)")
    parser.add_argument("--until", choices=("finished", "running", "failover", "failedover"), default="finished",
                        help="finished: TASK_FINISHED; running: TASK_RUNNING; failover: TASK_RUNNING, then "
                             "re-registered with another leader that confirms the task is still running; "
                             f"failedover: until another instance takes the framework over ('{FAILED_OVER}')")
    parser.add_argument("--framework_id", "--framework-id", default="",
                        help="resume this existing framework (a scheduler failover: the running instance, if any, "
                             "is fenced); launches nothing, follows --task-id or the framework's first live task")
    parser.add_argument("--failover_timeout", "--failover-timeout", type=float, default=60.0,
                        help="FrameworkInfo.failover_timeout: seconds the master keeps the framework and its tasks "
                             "after losing this scheduler (default 60)")
    parser.add_argument("--name", default="python-scheduler")
    parser.add_argument("--principal", default="",
                        help="FrameworkInfo.principal: with TLS, the principal of our certificate (URI:urn:mesos:principal:NAME)")
    parser.add_argument("--user", default="")
    parser.add_argument("--cpus", type=float, default=0.1)
    parser.add_argument("--mem", type=float, default=32.0)
    parser.add_argument("--task-id", default="")
    parser.add_argument("--listen-ip", default="127.0.0.1")
    parser.add_argument("--zk-session-timeout", type=float, default=10.0)
    parser.add_argument("--no-teardown", dest="teardown", action="store_false",
                        help="exit without unregistering (tasks keep running)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics (hints, drops) to stderr")
    args = parser.parse_args(argv)
    try:
        parse_zk_url(args.master)
    except ValueError as error:
        parser.error(str(error))
    if not 0 <= args.failover_timeout <= MAX_WIRE_SECONDS:  # also refuses nan and inf
        parser.error(f"--failover_timeout {args.failover_timeout:g} is not a number of seconds in [0, {MAX_WIRE_SECONDS}]")
    if args.framework_id and (len(args.framework_id.encode()) > 255 or args.framework_id in (".", "..")
                              or any(c == "/" or c.isspace() or not c.isprintable() for c in args.framework_id)):
        parser.error(f"--framework_id {args.framework_id!r} is not a valid id")
    options = Options(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Options) if hasattr(args, f.name)})
    return options, args.verbose


def main(argv=None):
    options, verbose = parse_args(argv)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not verbose:
        logging.getLogger("kazoo").setLevel(logging.ERROR)

    def terminated(_signo, _frame):
        raise Terminated()
    signal.signal(signal.SIGTERM, terminated)
    try:
        return Scheduler(options).run()
    except Exception as error:  # e.g. ZooKeeper unreachable at start
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        print(f"FAILED {type(error).__name__}: {error}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
