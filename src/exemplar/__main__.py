from exemplar.cli.main import main

main()
