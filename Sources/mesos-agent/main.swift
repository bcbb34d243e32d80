import MesosCommands

await runCommand(AgentCommand.self)
