from nas.cli import main; import sys; sys.exit(main())
