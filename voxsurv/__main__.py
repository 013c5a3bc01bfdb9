import sys

from voxsurv.cli import main

sys.exit(main())
