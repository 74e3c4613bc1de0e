"""``refnet`` command line: helper commands around MMF (``mmf_run`` does training)."""

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="refnet", description=__doc__)
    parser.add_argument("command", nargs="?", help="sub-command")
    args, _ = parser.parse_known_args(argv)
    parser.print_help()
    return 0 if args.command is None else 2


if __name__ == "__main__":
    sys.exit(main())
