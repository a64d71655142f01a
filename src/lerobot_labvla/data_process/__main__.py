import sys

from lerobot_labvla.data_process.cli import main

sys.exit(main())
