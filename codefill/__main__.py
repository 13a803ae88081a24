from codefill.cli.main import main

main()
