"""Stand-in for ansible-test's get-pip bootstrap script.

ansible-test downloads get-pip.py from a host this machine cannot reach; its virtual
environments only need some pip. This bootstraps the pip wheel bundled with the
interpreter (ensurepip) and then installs the version ansible-test asked for from
the package index. `make sanity` copies it to ansible-test's cache path.
"""

import ensurepip
import os
import subprocess
import sys

# get-pip.py options that `pip install` does not know.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

# ensurepip points PIP_CONFIG_FILE at /dev/null for its own run; the install below needs
# the machine's pip configuration (index, certificates) back.
saved_environment = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
os.environ.clear()
os.environ.update(saved_environment)
arguments = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", *arguments]))
