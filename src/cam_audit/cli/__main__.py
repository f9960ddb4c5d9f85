import sys

from cam_audit.cli import main

sys.exit(main())
