from pgha.cli.main import main

main()
