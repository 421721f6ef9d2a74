import sys

from flowcollect.cli import main

sys.exit(main())
