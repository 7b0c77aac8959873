#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Write the C block between <!-- example:begin --> and <!-- example:end -->
# of the README to a file, so the README's example is compiled and run.
import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r"<!-- example:begin -->\s*```c\n(.*?)```\s*<!-- example:end -->",
              text, re.S)
if not m:
    sys.exit("README has no example block")
open(sys.argv[2], "w", encoding="utf-8").write(m.group(1))
