import sys

from s3proxy.cli import main

sys.exit(main())
