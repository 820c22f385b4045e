from famelog.cli import main

main()
