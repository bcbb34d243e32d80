// mesos-slave: the pre-1.0 name of mesos-agent, same flags.
import MesosCommands

await runCommand(AgentCommand.self)
