#!/usr/bin/env python3
"""A scheduler built on pymesos (PyPI), a v1 scheduler library no one here wrote, run by
Tests/ClusterTests/V1SchedulerAPITests against the real master:

    pymesos_scheduler.py zk://HOST:PORT/mesos

It finds the leader through ZooKeeper (pymesos's own detector, kazoo), SUBSCRIBEs over
/api/v1/scheduler, launches one task on the first offer, acknowledges its updates (pymesos's
implicit acknowledgements), declines other offers, and on every re-subscription (after a leader
failover) asks for implicit reconciliation. Each callback prints an `event=` line for the test.
"""
import logging
import sys
import threading

from addict import Dict
from pymesos import MesosSchedulerDriver, Scheduler

TASK = "pymesos-task"


def say(line):
    print(line, flush=True)


class OneTask(Scheduler):
    def __init__(self):
        self.launched = False
        self.reconciled = threading.Event()

    def registered(self, driver, framework_id, master_info):
        say(f"event=registered framework_id={framework_id['value']} master={master_info['hostname']}:{master_info['port']}")

    def reregistered(self, driver, master_info):
        say(f"event=reregistered master={master_info['hostname']}:{master_info['port']}")
        self.reconciled.clear()

        def reconcile():
            # The new leader answers for the task once its agent is back: ask until it does.
            while not self.reconciled.is_set():
                driver.reconcileTasks([dict(task_id=dict(value=TASK))])
                self.reconciled.wait(1.0)

        threading.Thread(target=reconcile, daemon=True).start()

    def disconnected(self, driver):
        say("event=disconnected")

    def resourceOffers(self, driver, offers):
        for offer in offers:
            if self.launched:
                driver.declineOffer([offer.id], Dict(refuse_seconds=1))
                continue
            task = Dict()
            task.task_id.value = TASK
            task.agent_id.value = offer.agent_id.value
            task.name = TASK
            task.command.value = "sleep 100000"
            task.resources = [
                dict(name="cpus", type="SCALAR", scalar={"value": 0.1}),
                dict(name="mem", type="SCALAR", scalar={"value": 32}),
            ]
            driver.launchTasks([offer.id], [task], Dict(refuse_seconds=1))
            self.launched = True
            say(f"event=launched task_id={TASK} agent_id={offer.agent_id.value}")

    def statusUpdate(self, driver, update):
        if update.get("reason") == "REASON_RECONCILIATION":
            self.reconciled.set()
        say(f"event=status task_id={update.task_id.value} state={update.state} reason={update.get('reason', '')} uuid={'uuid' in update}")

    def error(self, driver, message):
        say(f"event=error message={message!r}")


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    framework = Dict(user="root", name="pymesos-scheduler", failover_timeout=120.0)
    driver = MesosSchedulerDriver(OneTask(), framework, sys.argv[1], use_addict=True)
    driver.run()


if __name__ == "__main__":
    main()
