from xnetmon.cli import main

raise SystemExit(main())
