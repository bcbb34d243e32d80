#!/usr/bin/python3
"""Seed corpus for scripts/fuzz: framed envelopes of several payload kinds, built with the
Python classes generated from the same .proto."""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mesos_pb"))
import envelope_pb2  # noqa: E402
import mesos_pb2  # noqa: E402


def frame(env):
    body = env.SerializeToString()
    return struct.pack(">I", len(body)) + body


def main(out):
    seeds = []
    e = envelope_pb2.Envelope(epoch=3)
    setattr(e, "from", "master@127.0.0.1:5050")
    e.ping.connected = True
    seeds.append(e)
    e = envelope_pb2.Envelope(epoch=7)
    setattr(e, "from", "slave(1)@127.0.0.1:5051")
    e.reregister_agent.agent.hostname = "h"
    e.reregister_agent.agent.id.value = "S1"
    t = e.reregister_agent.tasks.add()
    t.name, t.task_id.value, t.framework_id.value, t.agent_id.value, t.state = "t", "t1", "f1", "S1", mesos_pb2.TASK_RUNNING
    seeds.append(e)
    e = envelope_pb2.Envelope(epoch=9)
    setattr(e, "from", "scheduler-1@127.0.0.1:6000")
    e.launch_tasks.framework_id.value = "f1"
    ti = e.launch_tasks.tasks.add()
    ti.name, ti.task_id.value, ti.agent_id.value = "t", "t1", "S1"
    ti.command.value = "sleep 1"
    r = ti.resources.add()
    r.name, r.scalar = "cpus", 0.5
    e.launch_tasks.offer_ids.add().value = "o1"
    seeds.append(e)
    for i, env in enumerate(seeds):
        with open(os.path.join(out, f"seed-{i}"), "wb") as fh:
            fh.write(b"\x00" + frame(env) + frame(env))  # first byte: chunking mode
        with open(os.path.join(out, f"seed-{i}-chunked"), "wb") as fh:
            fh.write(b"\x07" + frame(env))


if __name__ == "__main__":
    main(sys.argv[1])
