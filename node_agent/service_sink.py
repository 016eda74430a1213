"""The stream sink for ``tunefleet-service sink``: the receiving end of a bulk transfer between
two hosts (``tunefleet-bench sink``, node_agent/remote_stream.py), kept running by the tool on
the server of a pair while its client streams to it. It listens on every address of the host
(its partner reaches it over the fleet's network), counts what arrives and answers each sender
with the bytes and seconds it saw. Stdlib only, Python >= 3.7.
"""

import os
import signal
import sys

from node_agent import facts
from node_agent.instance import Instance

KIND = "sink"
PORT = 15201


def add_options(parser):
    parser.add_argument("--bind", default="0.0.0.0", help="address to listen on (default: every address)")


def check_options(args):
    return {"port": args.port, "bind": args.bind}


def instance(parent):
    # the agent's own interpreter runs it: found by that name and the instance's working folder
    return Instance(KIND, parent, (os.path.basename(sys.executable)[:15], "python3"),
                    signals=(signal.SIGTERM, signal.SIGTERM), grace=5.0)


def precheck(inst, opts):
    pass


def setup(inst, opts):
    return dict(opts, python=sys.executable, payload=facts.payload_path()), False


def launch(inst, state):
    argv = [state["python"], "-I", state["payload"], "bench", "sink", "--port", str(state["port"]),
            "--bind", state["bind"]]
    return inst.launch(argv, env=dict(os.environ))


def describe(state):
    return "sink on %s:%d" % (state["bind"], state["port"]), "tunefleet-bench sink"
