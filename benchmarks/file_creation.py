"""What creating a file costs in a folder now (kernel CPU a file, 500 new files in a new folder).

On ext4 without a journal the cost depends on how many inodes of the folder's block group
were deleted in the last minutes (benchmarks/README.md, issue 28's goals):

    python benchmarks/file_creation.py [DIR]
"""

import os
import sys
import tempfile
import time

where = tempfile.mkdtemp(dir=sys.argv[1] if len(sys.argv) > 1 else None)
cpu = time.process_time()
for i in range(500):
    os.close(os.open(os.path.join(where, f"f{i}"), os.O_CREAT | os.O_WRONLY, 0o644))
print(f"{where}: {(time.process_time() - cpu) * 1000 / 500:.3f} ms of CPU a file")
