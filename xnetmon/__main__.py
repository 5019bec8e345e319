import signal

from xnetmon.cli import main

try:
    status = main()
    # A Ctrl-C that lands once the command has finished (its summary printed) must not turn
    # the finished run into death by SIGINT: the command's own status stands.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
except KeyboardInterrupt:  # between the command's end and the line above
    status = 130
raise SystemExit(status)
