import sys

from rdex.cli import main

sys.exit(main())
