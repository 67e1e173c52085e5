from pgha.main import main

main()
