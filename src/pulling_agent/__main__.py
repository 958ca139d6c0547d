from pulling_agent.entry import main

main()
