"""Entry point of the agent payload.

    python3 -I agent.pyz [--state DIR] [--idle-timeout S] [--heartbeat-timeout S]
                                                             serve the protocol on stdin/stdout
    python3 -I agent.pyz bench accept-storm|stream|sink [...]   run a built-in benchmark
    python3 -I agent.pyz service nginx|redis|postgres|fileio ACTION [...]
                                                             set up, start, stop ... a private server
    python3 -I agent.pyz link-forward [...]                  the link emulator's forwarder (link.py)

Without --state the folder is ~/.tunefleet of the user the agent runs as, looked up in the
password database (not $HOME): started through sudo with no arguments, that is root's own.
Also runs as ``python3 -m node_agent`` and as ``python3 path/to/node_agent``.
"""

import os
import sys

if not __package__:  # run as a folder (`python3 path/to/node_agent`): import it as a package
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))


def _serve(argv):
    import argparse
    import logging

    from node_agent import agent

    parser = argparse.ArgumentParser(prog="node_agent", description="tunefleet node agent")
    parser.add_argument("--state", default=None,
                        help="private state folder (journal, lock); default ~/.tunefleet of the effective user")
    parser.add_argument("--idle-timeout", type=float, default=0.0,
                        help="restore and exit after this many seconds without a request (0 = never)")
    parser.add_argument("--heartbeat-timeout", type=float, default=0.0,
                        help="restore and exit after this many seconds in which the controller sent nothing, "
                             "also during a benchmark (0 = never)")
    args = parser.parse_args(argv)
    if args.state is None:
        import pwd
        args.state = os.path.join(pwd.getpwuid(os.geteuid()).pw_dir, ".tunefleet")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="tunefleet-agent[%d] %%(levelname)s %%(message)s" % os.getpid())
    # The protocol owns the original stdout; anything else that prints lands on stderr.
    sys.stdout.flush()
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    server = agent.Agent(args.state, args.idle_timeout, in_fd=0, out_fd=out_fd,
                         heartbeat_timeout=args.heartbeat_timeout)
    try:
        server.start()
    except OSError as e:
        logging.error("cannot use the state folder %s: %s", args.state, e)
        return 1
    server.serve()
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":
        from node_agent import benchmarks
        return sys.exit(benchmarks.main(argv[1:]))
    if argv and argv[0] == "service":
        from node_agent import services
        return sys.exit(services.main(argv[1:]))
    if argv and argv[0] == "link-forward":
        from node_agent import linkfwd
        return sys.exit(linkfwd.main(argv[1:]))
    return sys.exit(_serve(argv))


if __name__ == "__main__":
    main()
