from tallow.cli import main

main()
