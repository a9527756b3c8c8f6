from gigagpt.cli import main

raise SystemExit(main())
