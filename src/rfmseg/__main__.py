from rfmseg.cli import main

main()
