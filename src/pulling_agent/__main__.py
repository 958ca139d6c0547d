from pulling_agent.cli.entry import main

main()
