#!/usr/bin/python3
"""Read the Mesos master leader group with kazoo, as Mesos tooling would (run by the Swift tests).

    read_leader_kazoo.py CONNECT_STRING PATH

Lists the children of PATH, takes the lowest `json.info_NNNNNNNNNN` member (the leader; other
names are skipped, as Mesos does), reads it and parses its MasterInfo JSON. Prints, one per line:

    CHILDREN ["json.info_0000000000", ...]     all children, sorted
    LEADER json.info_0000000000                 the lowest member
    INFO {"id": ..., "ip": ..., "pid": ..., "port": ...}   its parsed JSON, keys sorted

Exit status: 0 when the leader's JSON has "pid" and "id" (strings), "ip" and "port" (integers);
2 when the group has no member; 1 for a malformed MasterInfo.
"""
import json
import logging
import sys

from kazoo.client import KazooClient

LABEL = "json.info_"


def sequence(name):
    digits = name[len(LABEL):]
    if not name.startswith(LABEL) or not digits or not digits.isascii() or not digits.isdigit():
        return None
    return int(digits)


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 64
    hosts, path = argv[1], argv[2].rstrip("/") or "/"
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    zk = KazooClient(hosts=hosts, timeout=10.0)
    zk.start(timeout=15)
    try:
        children = zk.get_children(path)
        members = sorted((sequence(c), c) for c in children if sequence(c) is not None)
        print("CHILDREN " + json.dumps(sorted(children)))
        if not members:
            print("NO LEADER")
            return 2
        lowest = members[0][1]
        data, _stat = zk.get(f"{path}/{lowest}")
        info = json.loads(data.decode("utf-8"))
        print("LEADER " + lowest)
        print("INFO " + json.dumps(info, sort_keys=True))
        problems = [f"{key} is not a string" for key in ("pid", "id") if not isinstance(info.get(key), str)]
        problems += [f"{key} is not an integer" for key in ("ip", "port") if not isinstance(info.get(key), int)]
        if problems:
            print("INVALID " + "; ".join(problems))
            return 1
        return 0
    finally:
        zk.stop()
        zk.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
