#!/usr/bin/python3
"""Cross-language check of the wire contract (run by the Swift tests).

    cross_language.py DIR

DIR holds NAME.bin files written by Swift (protobuf-c): each is parsed here with
the classes protoc generated from the same .proto, must be complete, and must
re-encode to the very same bytes (written back as NAME.py.bin). Then Python
builds messages of its own (python-*.bin) for Swift to decode and check.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mesos_pb"))
import envelope_pb2  # noqa: E402
import mesos_pb2  # noqa: E402
import messages_pb2  # noqa: E402
import v1_mesos_pb2  # noqa: E402
import v1_scheduler_pb2  # noqa: E402


def message_class(name):
    # Swift names Mesos's v1 messages (packages mesos.v1, mesos.v1.scheduler) with a V1 prefix.
    if name.startswith("V1"):
        for module in (v1_mesos_pb2, v1_scheduler_pb2):
            if hasattr(module, name[2:]):
                return getattr(module, name[2:])
    for module in (mesos_pb2, messages_pb2, envelope_pb2):
        if hasattr(module, name):
            return getattr(module, name)
    raise SystemExit(f"no Python class for {name}")


def check_swift_bytes(directory):
    count = 0
    for file in sorted(os.listdir(directory)):
        if not file.endswith(".bin") or file.endswith(".py.bin") or file.startswith("python-"):
            continue
        name = file[:-4].split("#")[0]
        data = open(os.path.join(directory, file), "rb").read()
        msg = message_class(name)()
        msg.ParseFromString(data)
        if not msg.IsInitialized():
            raise SystemExit(f"{file}: missing required fields {msg.FindInitializationErrors()}")
        again = msg.SerializeToString()
        if again != data:
            raise SystemExit(f"{file}: Python re-encodes differently:\n swift  {data.hex()}\n python {again.hex()}")
        with open(os.path.join(directory, file[:-4] + ".py.bin"), "wb") as out:
            out.write(again)
        count += 1
    return count


def write_python_messages(directory):
    env = envelope_pb2.Envelope()
    env.epoch = 42
    setattr(env, "from", "slave(1)@127.0.0.1:5051")
    up = env.status_update.update
    up.framework_id.value = "fw-π"
    up.status.task_id.value = "task-1"
    up.status.state = mesos_pb2.TASK_RUNNING
    up.status.message = "started by python"
    up.status.source = mesos_pb2.TaskStatus.SOURCE_AGENT
    up.status.uuid = bytes([1, 2, 3, 0, 255])
    up.timestamp = 1700000000.5
    up.uuid = bytes([1, 2, 3, 0, 255])
    env.status_update.pid = "slave(1)@127.0.0.1:5051"
    open(os.path.join(directory, "python-status-update.bin"), "wb").write(env.SerializeToString())

    env = envelope_pb2.Envelope()
    env.epoch = 7
    setattr(env, "from", "master@127.0.0.1:5050")
    for i in range(3):
        offer = env.resource_offers.offers.add()
        offer.id.value = f"offer-{i}"
        offer.framework_id.value = "fw-1"
        offer.agent_id.value = f"agent-{i}"
        offer.hostname = "localhost"
        r = offer.resources.add()
        r.name = "cpus"
        r.scalar = 2.5
        env.resource_offers.pids.append(f"slave(1)@127.0.0.1:{6000 + i}")
    open(os.path.join(directory, "python-offers.bin"), "wb").write(env.SerializeToString())


def main():
    directory = sys.argv[1]
    n = check_swift_bytes(directory)
    write_python_messages(directory)
    print(f"python: {n} Swift-made messages parsed and re-encoded byte-identically; 2 Python-made envelopes written")


if __name__ == "__main__":
    main()
