import sys

from nas_cli.main import main

sys.exit(main())
