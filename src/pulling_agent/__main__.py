from pulling_agent.cli import main

main()
