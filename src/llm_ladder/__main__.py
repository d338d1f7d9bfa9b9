from llm_ladder.cli import main

main()
