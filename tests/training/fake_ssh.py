"""Stands in for ssh in the launcher's tests: parses ssh's options, appends
"HOST PORT" to $FAKE_SSH_LOG, and runs the remote command here with ``sh -c``
in an environment as bare as an ssh login's (only PATH and HOME), with stdin
passed through as sshd does."""
import os
import sys

args = sys.argv[1:]
port = "22"
while args and args[0].startswith("-"):
    option = args.pop(0)
    if option in ("-o", "-p", "-i", "-l", "-F"):
        value = args.pop(0)
        if option == "-p":
            port = value
host, command = args[0], " ".join(args[1:])
with open(os.environ["FAKE_SSH_LOG"], "a") as log:
    log.write("%s %s\n" % (host, port))
os.execve("/bin/sh", ["sh", "-c", command],
          {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")})
