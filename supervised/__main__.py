from supervised.cli import main

main()
