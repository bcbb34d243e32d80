import MesosCommands

await runCommand(MasterCommand.self)
