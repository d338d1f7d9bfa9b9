from llm_ladder.cli.main import main

main()
