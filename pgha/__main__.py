from pgha.launch import main

main()
